//! Damaged and hostile archives, through the CLI, with both engines in one archive.
//!
//! Damaged: truncation at every member boundary and inside every member, a flipped byte in
//! every member, a missing COMMIT, a manifest that lies about counts (with every hash and the
//! COMMIT recomputed, so only decoding can tell). Hostile: `../` and absolute names, symlinks,
//! hardlinks, duplicate names, huge declared sizes, SQL in table, schema and column names.
//! `verify` and `restore` refuse naming the member; restore touches no target (the PostgreSQL
//! database is never created, the MongoDB database gets no collection) and nothing is written
//! anywhere but where it should be.
//!
//! Existing coverage this builds on: tests/archive_format.rs (library-level damage and unsafe
//! entries, proptests), tests/pg_backup_restore.rs and tests/mongo_restore_refusals.rs
//! (per-engine damaged archives).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::{
    dbkeeper, pg_connect, pg_server_url, pg_url_with_db, unique_name, MongoTestDb, PgTestDb,
};
use mongodb::bson::{doc, Document};
use predicates::prelude::*;
use sha2::{Digest, Sha256};

/// One tar entry: name, data, and where it sits in the file.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    data: Vec<u8>,
    header_at: u64,
    data_at: u64,
}

fn entries(bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let (header_at, data_at) = (e.raw_header_position(), e.raw_file_position());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Entry {
                name,
                data,
                header_at,
                data_at,
            }
        })
        .collect()
}

/// A tar of regular members, in order (names may be anything: no checks here).
fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        if name.len() < 100 {
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            out.append(&h, data.as_slice()).unwrap();
        } else {
            out.append_data(&mut h, name, data.as_slice()).unwrap();
        }
    }
    out.into_inner().unwrap()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Rebuilds a valid-looking archive: `edit` may change the members (other than MANIFEST.json
/// and COMMIT) and the manifest; every member entry, chunk entry and the COMMIT are then
/// recomputed, exactly as a forger would.
fn forge(
    bytes: &[u8],
    edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>, &mut serde_json::Value),
) -> Vec<u8> {
    let all = entries(bytes);
    let manifest_entry = all.iter().find(|e| e.name == "MANIFEST.json").unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&manifest_entry.data).unwrap();
    let mut members: Vec<(String, Vec<u8>)> = all
        .iter()
        .filter(|e| e.name != "MANIFEST.json" && e.name != "COMMIT")
        .map(|e| (e.name.clone(), e.data.clone()))
        .collect();
    edit(&mut members, &mut manifest);
    let listed: Vec<serde_json::Value> = members
        .iter()
        .map(|(n, d)| serde_json::json!({ "name": n, "size": d.len(), "sha256": sha(d) }))
        .collect();
    manifest["members"] = serde_json::Value::Array(listed);
    for dataset in manifest["datasets"].as_array_mut().unwrap() {
        for chunk in dataset["chunks"].as_array_mut().unwrap() {
            let member = chunk["member"].as_str().unwrap().to_string();
            if let Some((_, d)) = members.iter().find(|(n, _)| *n == member) {
                chunk["size"] = d.len().into();
                chunk["sha256"] = sha(d).into();
            }
        }
    }
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let commit = format!("{}\n", sha(&manifest_bytes));
    members.push(("MANIFEST.json".into(), manifest_bytes));
    members.push(("COMMIT".into(), commit.into_bytes()));
    tar_of(&members)
}

/// Both engines' targets; `untouched` checks neither was written to.
struct Targets {
    pg_name: String,
    pg_url: String,
    mongo: MongoTestDb,
}

impl Targets {
    async fn new() -> Targets {
        let pg_name = unique_name("dbk_target");
        Targets {
            pg_url: pg_url_with_db(&pg_server_url(), &pg_name),
            pg_name,
            mongo: MongoTestDb::create().await,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--pg-url".into(),
            self.pg_url.clone(),
            "--mongo-url".into(),
            self.mongo.url.clone(),
        ]
    }

    async fn assert_untouched(&self, what: &str) {
        let admin = pg_connect(&pg_server_url()).await;
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&self.pg_name],
            )
            .await
            .unwrap()
            .is_some();
        assert!(!exists, "{what}: the PostgreSQL target was created");
        let collections = self.mongo.db().await.list_collection_names().await.unwrap();
        assert!(
            collections.is_empty(),
            "{what}: the MongoDB target got {collections:?}"
        );
    }
}

/// A real two-engine archive, several chunks per dataset.
async fn two_engine_archive(dir: &Path) -> Vec<u8> {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
             INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 3000) g;",
        )
        .await
        .unwrap();
    let docs: Vec<Document> = (0..1500).map(|i| doc! { "n": i, "tag": "x" }).collect();
    mongo
        .db()
        .await
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
    let path = dir.join("good.dbk.tar");
    dbkeeper(dir)
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url, "backup"])
        .args(["--chunk-bytes", "16384", "--output"])
        .arg(&path)
        .assert()
        .success();
    std::fs::read(&path).unwrap()
}

/// Runs `verify` (exit 1) and `restore` (exit 2) on `bytes`; both must mention `expected`.
async fn assert_refused(dir: &Path, targets: &Targets, what: &str, bytes: &[u8], expected: &str) {
    let path = dir.join("damaged.dbk.tar");
    std::fs::write(&path, bytes).unwrap();
    let verify = dbkeeper(dir).arg("verify").arg(&path).output().unwrap();
    let verify_err = String::from_utf8_lossy(&verify.stderr);
    let verify_out = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{what}: verify {verify_err}");
    assert!(
        verify_err.contains(expected) || verify_out.contains(expected),
        "{what}: verify does not say {expected:?}: {verify_err}{verify_out}"
    );
    let restore = dbkeeper(dir)
        .args(targets.args())
        .arg("restore")
        .arg(&path)
        .output()
        .unwrap();
    let restore_err = String::from_utf8_lossy(&restore.stderr);
    assert_eq!(
        restore.status.code(),
        Some(2),
        "{what}: restore {restore_err}"
    );
    assert!(
        restore_err.contains(expected),
        "{what}: restore does not say {expected:?}: {restore_err}"
    );
    targets.assert_untouched(what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_at_every_boundary_and_inside_every_member_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = two_engine_archive(dir.path()).await;
    let targets = Targets::new().await;
    let all = entries(&bytes);
    assert!(
        all.len() >= 8,
        "{:?}",
        all.iter().map(|e| &e.name).collect::<Vec<_>>()
    );
    for (i, e) in all.iter().enumerate() {
        let end = e.data_at + e.data.len() as u64;
        // Before the member's header (the previous member is whole), inside its header, after
        // the header, inside the data, right after the data.
        let mut cuts = vec![
            (e.header_at, "before"),
            (e.header_at + 100, "inside the header of"),
            (e.data_at, "after the header of"),
            (end, "right after"),
        ];
        if !e.data.is_empty() {
            cuts.push((e.data_at + e.data.len() as u64 / 2, "inside"));
        }
        for (cut, place) in cuts {
            if cut == 0 {
                continue;
            }
            let what = format!("cut {place} {} at {cut}", e.name);
            // Whatever is missing, the archive never counts as complete; cut inside a member,
            // the message names it.
            let expected = if place == "inside" && i + 1 < all.len() {
                e.name.as_str()
            } else {
                "refusing to use it"
            };
            assert_refused(
                dir.path(),
                &targets,
                &what,
                &bytes[..cut as usize],
                expected,
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_every_member_kind_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = two_engine_archive(dir.path()).await;
    let targets = Targets::new().await;
    let all = entries(&bytes);
    let kinds = [
        "HEADER.json",
        "pre-data.sql",
        ".copy.zst",
        "post-data.sql",
        ".metadata.json",
        ".bson.zst",
        "MANIFEST.json",
        "COMMIT",
    ];
    for kind in kinds {
        let e = all
            .iter()
            .find(|e| e.name.ends_with(kind))
            .unwrap_or_else(|| panic!("no {kind} member"));
        let mut damaged = bytes.clone();
        damaged[(e.data_at + e.data.len() as u64 / 2) as usize] ^= 0x04;
        let expected = match kind {
            "MANIFEST.json" | "COMMIT" => "COMMIT does not hold the SHA-256".to_string(),
            // Parsed (and refused as invalid JSON) before member hashes are compared.
            "HEADER.json" => "HEADER.json".to_string(),
            _ => format!("member {} is corrupt", e.name),
        };
        assert_refused(
            dir.path(),
            &targets,
            &format!("flip in {}", e.name),
            &damaged,
            &expected,
        )
        .await;
    }
    // A flipped byte in a tar header breaks its checksum.
    let e = &all[2];
    let mut damaged = bytes.clone();
    damaged[e.header_at as usize + 10] ^= 0x04;
    assert_refused(
        dir.path(),
        &targets,
        "flip in a tar header",
        &damaged,
        "unreadable tar entry",
    )
    .await;
    // No COMMIT at all, everything else intact.
    let without_commit: Vec<(String, Vec<u8>)> = all
        .iter()
        .filter(|e| e.name != "COMMIT")
        .map(|e| (e.name.clone(), e.data.clone()))
        .collect();
    assert_refused(
        dir.path(),
        &targets,
        "missing COMMIT",
        &tar_of(&without_commit),
        "no COMMIT member",
    )
    .await;
}

/// Regression: a forged manifest that lies about a chunk's row count (dataset total adjusted,
/// every hash and the COMMIT recomputed) passes V0, so restore used to create the target and
/// load part of it before decoding the lying chunk. Restore now drops a database it created
/// itself when the archive turns out to lie, so the target is as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_lying_about_counts_is_caught_naming_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = two_engine_archive(dir.path()).await;
    for engine in ["postgres", "mongo"] {
        let targets = Targets::new().await;
        let mut liar = String::new();
        let forged = forge(&bytes, |_, manifest| {
            let dataset = manifest["datasets"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|d| d["engine"] == engine)
                .unwrap();
            let chunks = dataset["chunks"].as_array_mut().unwrap();
            let last = chunks.last_mut().unwrap();
            liar = last["member"].as_str().unwrap().to_string();
            last["rows"] = (last["rows"].as_u64().unwrap() + 1).into();
            dataset["rows"] = (dataset["rows"].as_u64().unwrap() + 1).into();
        });
        let path = dir.path().join("liar.dbk.tar");
        std::fs::write(&path, &forged).unwrap();
        dbkeeper(dir.path())
            .arg("verify")
            .arg(&path)
            .assert()
            .code(1)
            .stdout(predicate::str::contains(&liar))
            .stdout(predicate::str::contains("the manifest says"));
        let only_this_engine = match engine {
            "postgres" => vec!["--pg-url".to_string(), targets.pg_url.clone()],
            _ => vec!["--mongo-url".to_string(), targets.mongo.url.clone()],
        };
        dbkeeper(dir.path())
            .args(&only_this_engine)
            .arg("restore")
            .arg(&path)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(&liar))
            .stderr(predicate::str::contains("the manifest says"));
        targets.assert_untouched(&format!("{engine} liar")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_members_are_refused_and_nothing_is_written_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = two_engine_archive(dir.path()).await;
    let targets = Targets::new().await;
    let all = entries(&bytes);
    let members: Vec<(String, Vec<u8>)> = all
        .iter()
        .map(|e| (e.name.clone(), e.data.clone()))
        .collect();
    let chunk = all.iter().find(|e| e.name.ends_with(".copy.zst")).unwrap();

    // Path tricks and duplicate names, each listed in a forged (self-consistent) manifest.
    let cases: Vec<(&str, String, &str)> = vec![
        ("dot-dot", "../../escaped.sql".into(), "unsafe name"),
        ("absolute", "/tmp/dbk-escaped.sql".into(), "unsafe name"),
        (
            "inner dot-dot",
            "postgres/../../escaped".into(),
            "unsafe name",
        ),
        ("duplicate", chunk.name.clone(), "appears more than once"),
    ];
    for (what, name, expected) in cases {
        let forged = forge(&bytes, |members, _| {
            let at = members.len() - 1;
            members.insert(at, (name.clone(), b"DROP TABLE items;\n".to_vec()));
        });
        assert_refused(dir.path(), &targets, what, &forged, expected).await;
    }

    // Symlinks and hardlinks pointing out of the directory, with a valid-looking tail.
    for (kind, what) in [
        (tar::EntryType::Symlink, "symlink"),
        (tar::EntryType::Link, "hardlink"),
    ] {
        let mut out = tar::Builder::new(Vec::new());
        for (i, (name, data)) in members.iter().enumerate() {
            if i == 1 {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(kind);
                h.set_size(0);
                h.set_mode(0o777);
                out.append_link(&mut h, "postgres/evil", "/etc/passwd")
                    .unwrap();
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            out.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        let bytes = out.into_inner().unwrap();
        assert_refused(dir.path(), &targets, what, &bytes, "only regular files").await;
    }

    // A member whose header declares a huge size (1 TiB) the file does not have.
    let mut huge = bytes.clone();
    let header_at = chunk.header_at as usize;
    let mut header = tar::Header::from_byte_slice(&huge[header_at..header_at + 512]).clone();
    header.set_size(1 << 40);
    header.set_cksum();
    huge[header_at..header_at + 512].copy_from_slice(header.as_bytes());
    assert_refused(
        dir.path(),
        &targets,
        "huge size",
        &huge,
        "the file ends first",
    )
    .await;

    // A manifest declaring a chunk inflates to 100 GiB: refused before any allocation.
    let forged = forge(&bytes, |_, manifest| {
        let dataset = &mut manifest["datasets"][0];
        dataset["chunks"][0]["raw_bytes"] = (100u64 << 30).into();
    });
    assert_refused(
        dir.path(),
        &targets,
        "huge raw size",
        &forged,
        "uncompressed bytes",
    )
    .await;

    // dbkeeper never extracts members: nothing but the test's own files exist.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["damaged.dbk.tar", "good.dbk.tar"]);
    assert!(!Path::new("/tmp/dbk-escaped.sql").exists());
    assert!(!dir.path().parent().unwrap().join("escaped.sql").exists());
}

/// Table, schema and column names are only ever used quoted: a table really named like an
/// injection restores under that literal name, and a forged manifest naming tables that way
/// fails cleanly without running any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_table_names_is_never_executed() {
    const EVIL: &str = r#"x"; DROP TABLE victim; --"#;
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute(&format!(
            r#"CREATE TABLE victim (id int PRIMARY KEY);
               INSERT INTO victim SELECT generate_series(1, 10);
               CREATE SCHEMA "{s}";
               CREATE TABLE "{s}"."{t}" ("{c}" int);
               INSERT INTO "{s}"."{t}" VALUES (1), (2);
               CREATE TABLE plain (id int);
               INSERT INTO plain VALUES (7);"#,
            s = EVIL.replace('"', "\"\""),
            t = EVIL.replace('"', "\"\""),
            c = EVIL.replace('"', "\"\""),
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("evil.dbk.tar");
    dbkeeper(dir.path())
        .args(["--pg-url", &source.url, "backup", "--output"])
        .arg(&archive)
        .assert()
        .success();

    // The genuine thing: restored under its literal name, victim intact.
    let target = PgTestDb::create().await;
    dbkeeper(dir.path())
        .args(["--pg-url", &target.url, "restore"])
        .arg(&archive)
        .assert()
        .success()
        .stdout(predicate::str::contains("counts verified"));
    let client = target.client().await;
    let evil_rows: i64 = client
        .query_one(
            &format!(
                r#"SELECT count(*) FROM "{0}"."{0}""#,
                EVIL.replace('"', "\"\"")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(evil_rows, 2);
    let victims: i64 = client
        .query_one("SELECT count(*) FROM victim", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(victims, 10);

    // Forged: the plain table's dataset renamed to the injection, its column list too.
    let bytes = std::fs::read(&archive).unwrap();
    let forged = forge(&bytes, |_, manifest| {
        for dataset in manifest["datasets"].as_array_mut().unwrap() {
            if dataset["name"] == "plain" {
                dataset["name"] = EVIL.into();
                dataset["extra"]["columns"] =
                    serde_json::json!([r#"id") FROM STDIN; DROP TABLE victim; --"#]);
            }
        }
        let sequences = &mut manifest["engines"]["postgres"]["sequences"];
        if let Some(list) = sequences.as_array_mut() {
            list.push(serde_json::json!({
                "schema": "public'); DROP TABLE victim; --",
                "name": EVIL, "last_value": 1, "is_called": true
            }));
        }
    });
    let forged_path = dir.path().join("forged.dbk.tar");
    std::fs::write(&forged_path, forged).unwrap();
    let target = PgTestDb::create().await;
    let out = dbkeeper(dir.path())
        .args(["--pg-url", &target.url, "restore"])
        .arg(&forged_path)
        .args(["--jobs", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    let client = target.client().await;
    let victim_exists = client
        .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'victim'", &[])
        .await
        .unwrap()
        .is_some();
    assert!(victim_exists, "the injected DROP TABLE ran: {stderr}");
    let _ = PathBuf::new();
}
