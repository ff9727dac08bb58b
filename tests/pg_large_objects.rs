//! PostgreSQL large objects: backed up in bounded pieces (memory does not grow with an object's
//! size), restored with their OIDs, bytes, owners, grants and comments, and checked by V2 object
//! by object.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{dbkeeper, PgTestDb};
use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::postgres::large_objects::{compare, CompareOptions};
use dbkeeper::postgres::restore::archive_meta;
use dbkeeper::verify::TargetCheck;
use dbkeeper::Engine;
use predicates::prelude::*;
use serde_json::Value;

/// OIDs of the fixture's objects (fixed, so restore must keep them).
const BIG: u32 = 9_100_001;
const COMMENTED: u32 = 9_100_002;
const EMPTY: u32 = 9_100_003;
const OWNED: u32 = 9_100_004;
/// Over 64 MiB, and not a whole number of pieces.
const BIG_SIZE: i64 = (64 << 20) + 12_345;

/// A large object of `size` bytes of md5 output (incompressible, and every MiB different).
fn big_object_sql(oid: u32, size: i64) -> String {
    format!(
        "SELECT lo_create({oid});
         SELECT lo_put({oid}, i * 1048576,
                       (SELECT decode(string_agg(md5((i * 65536 + g)::text), '' ORDER BY g), 'hex')
                        FROM generate_series(1, 65536) g))
         FROM generate_series(0, {whole} - 1) i;
         SELECT lo_put({oid}, {whole} * 1048576, substr(decode(repeat('ab', {rest}), 'hex'), 1, {rest}));",
        whole = size >> 20,
        rest = size & ((1 << 20) - 1),
    )
}

/// One large object as the tests compare it.
#[derive(Debug, Clone, PartialEq)]
struct LargeObject {
    oid: u32,
    size: i64,
    md5: String,
    owner: String,
    acl: Option<String>,
    comment: Option<String>,
}

/// Every large object, by OID.
async fn large_objects(db: &PgTestDb) -> Vec<LargeObject> {
    db.client()
        .await
        .query(
            "SELECT m.oid, octet_length(lo_get(m.oid)), md5(lo_get(m.oid)),
                    pg_get_userbyid(m.lomowner)::text, m.lomacl::text,
                    obj_description(m.oid, 'pg_largeobject')
             FROM pg_largeobject_metadata m ORDER BY m.oid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| LargeObject {
            oid: r.get(0),
            size: r.get::<_, i32>(1).into(),
            md5: r.get(2),
            owner: r.get(3),
            acl: r.get(4),
            comment: r.get(5),
        })
        .collect()
}

/// A role for owners and grants, dropped with its objects at the end.
struct Role(String, String);

impl Role {
    async fn create(server: &str) -> Role {
        let name = common::unique_name("lo_role");
        common::pg_connect(server)
            .await
            .batch_execute(&format!("CREATE ROLE \"{name}\""))
            .await
            .unwrap();
        Role(name, server.to_string())
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let (name, server) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // The test databases holding its objects are dropped first (their Drop runs
                // before this one), so the role can go.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = common::pg_connect(&server)
                    .await
                    .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                    .await;
            });
        })
        .join()
        .ok();
    }
}

fn only_archive(dir: &Path) -> PathBuf {
    let archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".dbk.tar"))
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    archives.into_iter().next().unwrap()
}

/// Runs `dbkeeper args` to completion and returns its peak RSS in KiB, read from
/// `/proc/<pid>/status` (VmHWM only grows, so the last reading is the peak, give or take the
/// last few milliseconds).
fn run_measuring_rss(dir: &Path, args: &[&str]) -> u64 {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbkeeper"))
        .args(args)
        .current_dir(dir)
        .env_remove("DBKEEPER_PG_URL")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "dbkeeper {args:?} failed: {exit}");
            return peak_kib;
        }
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_round_trip_with_oids_bytes_owners_grants_and_comments() {
    let source = PgTestDb::create().await;
    let role = Role::create(&common::pg_server_url()).await;
    let r = &role.0;
    source
        .client()
        .await
        .batch_execute(&format!(
            "{big}
             CREATE TABLE docs (id int PRIMARY KEY, blob oid);
             INSERT INTO docs VALUES (1, {BIG}), (2, {COMMENTED});
             SELECT lo_from_bytea({COMMENTED}, 'hello, large object');
             COMMENT ON LARGE OBJECT {COMMENTED} IS 'a comment with ''quotes''';
             GRANT SELECT, UPDATE ON LARGE OBJECT {COMMENTED} TO \"{r}\";
             SELECT lo_create({EMPTY});
             SELECT lo_from_bytea({OWNED}, decode(repeat('cd', 2 * 1048576), 'hex'));
             ALTER LARGE OBJECT {OWNED} OWNER TO \"{r}\";",
            big = big_object_sql(BIG, BIG_SIZE),
        ))
        .await
        .unwrap();
    let expected = large_objects(&source).await;
    assert_eq!(expected.len(), 4);
    assert_eq!(expected[0].size, BIG_SIZE);
    assert_eq!(
        expected[3].size,
        2 << 20,
        "exactly two pieces: the edge of the piece loop"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let peak_kib = run_measuring_rss(
        dir.path(),
        &[
            "--pg-url",
            &source.url,
            "backup",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    eprintln!(
        "peak RSS of backup with a {BIG_SIZE}-byte large object: {} MiB",
        peak_kib / 1024
    );
    // Reading the object whole would hold it, its chunk and the compressed chunk at once (about
    // 192 MiB); the design's bound for a backup at default jobs is 100 MiB (measured: 60-70).
    assert!(
        peak_kib < 100 * 1024,
        "backup peaked at {} MiB: memory grows with the object's size",
        peak_kib / 1024
    );
    let archive = only_archive(&out);

    // V0 + V1 offline: the large-object chunks decode and add up.
    dbkeeper(dir.path())
        .arg("verify")
        .arg(&archive)
        .assert()
        .success();

    // Owners and grants kept: everything identical, and V2 (run by restore) is clean.
    let kept = PgTestDb::create().await;
    let assert = dbkeeper(dir.path())
        .args(["--pg-url", &kept.url, "restore", "--mode", "replace"])
        .args(["--keep-owner", "--keep-privileges", "--json"])
        .arg(&archive)
        .assert()
        .success();
    let report: Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(report["postgres"]["large_objects"], 4, "{report}");
    assert_eq!(report["postgres"]["tables"], 1, "{report}");
    assert_eq!(
        report["postgres"]["verify"]["mismatches"],
        Value::Array(vec![])
    );
    assert_eq!(large_objects(&kept).await, expected);
    let docs: i64 = kept
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM docs d JOIN pg_largeobject_metadata m ON m.oid = d.blob",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(docs, 2, "rows still point at their large objects");

    // Default restore: same OIDs, bytes and comments; owners and grants left to the target.
    let plain = PgTestDb::create().await;
    dbkeeper(dir.path())
        .args(["--pg-url", &plain.url, "restore", "--deep"])
        .arg(&archive)
        .assert()
        .success();
    let restored = large_objects(&plain).await;
    let essentials = |objects: &[LargeObject]| {
        objects
            .iter()
            .map(|o| (o.oid, o.size, o.md5.clone(), o.comment.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(essentials(&restored), essentials(&expected));
    assert!(
        restored.iter().all(|o| &o.owner != r && o.acl.is_none()),
        "owners and grants are skipped by default: {restored:?}"
    );
    drop((kept, plain, source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_missing_changed_or_extra_large_object() {
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute(
            "SELECT lo_from_bytea(9200001, 'kept');
             SELECT lo_from_bytea(9200002, 'same size');
             SELECT lo_from_bytea(9200003, 'grows');
             SELECT lo_from_bytea(9200004, 'commented');
             COMMENT ON LARGE OBJECT 9200004 IS 'before';",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    dbkeeper(dir.path())
        .args(["--pg-url", &source.url, "backup", "--output"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "0 rows (0 B raw), 4 large objects",
        ));
    let archive = only_archive(&out);
    let target = PgTestDb::create().await;
    // A database holding a large object is not empty: its OIDs could collide.
    target
        .client()
        .await
        .batch_execute("SELECT lo_from_bytea(9200001, 'stray')")
        .await
        .unwrap();
    dbkeeper(dir.path())
        .args(["--pg-url", &target.url, "restore"])
        .arg(&archive)
        .assert()
        .code(4)
        .stderr(predicate::str::contains("1 large objects"));
    dbkeeper(dir.path())
        .args([
            "--pg-url",
            &target.url,
            "restore",
            "--mode",
            "replace",
            "--deep",
        ])
        .arg(&archive)
        .assert()
        .success();

    let role = Role::create(&common::pg_server_url()).await;
    let r = &role.0;
    target
        .client()
        .await
        .batch_execute(&format!(
            "SELECT lo_unlink(9200001);
             SELECT lo_put(9200002, 0, 'SAME');
             SELECT lo_put(9200003, 5, '!');
             COMMENT ON LARGE OBJECT 9200004 IS 'after';
             SELECT lo_from_bytea(9200005, 'extra');
             ALTER LARGE OBJECT 9200002 OWNER TO \"{r}\";
             GRANT SELECT ON LARGE OBJECT 9200004 TO \"{r}\";"
        ))
        .await
        .unwrap();
    let verify = |deep: bool| {
        let mut cmd = dbkeeper(dir.path());
        cmd.args(["--pg-url", &target.url, "verify", "--json"]);
        if deep {
            cmd.arg("--deep");
        }
        let output = cmd.arg(&archive).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let mut messages: Vec<String> = report["mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap().to_string())
            .collect();
        messages.sort();
        messages
    };
    let counts = verify(false);
    assert_eq!(
        counts,
        [
            "large object 9200001 is missing (the archive has 4 bytes)",
            "large object 9200003 has 6 bytes, the archive has 5",
            "large object 9200004 has a different comment",
            "large object 9200005 is not in the archive",
        ],
        "a same-size change is for --deep; owners and grants only count where restored"
    );
    let deep = verify(true);
    assert!(
        deep.contains(&"large object 9200002: its content differs from the archive".to_string()),
        "{deep:?}"
    );
    assert_eq!(deep.len(), counts.len() + 1, "{deep:?}");

    // After `restore --keep-owner --keep-privileges`, V2 compares owners and ACLs too.
    let opened = VerifiedArchive::open(&archive).unwrap();
    let (_, meta) = archive_meta(&opened).unwrap().unwrap();
    let mut check = TargetCheck::new(Engine::Postgres, target.name.clone(), false);
    let options = CompareOptions {
        deep: false,
        owners: true,
        privileges: true,
    };
    compare(
        &mut check,
        meta.large_objects.as_ref(),
        &target.client().await,
        options,
    )
    .await
    .unwrap();
    let me: String = target
        .client()
        .await
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let messages: Vec<&str> = check
        .mismatches
        .iter()
        .map(|m| m.message.as_str())
        .collect();
    assert!(
        messages.contains(
            &format!("large object 9200002 is owned by {r}, in the archive by {me}").as_str()
        ),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"large object 9200004 has different privileges"),
        "{messages:?}"
    );
    assert_eq!(messages.len(), counts.len() + 2, "{messages:?}");
    drop(target);
}
