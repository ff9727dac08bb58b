//! Codecs and file modes: zstd by default, gzip and none on request, archives of format
//! version 1 (all gzip, written by dbkeeper before codecs existed) still verify and restore,
//! members readable with stock `tar` + `zstd`, and what dbkeeper writes is private.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{dbkeeper, MongoTestDb, PgTestDb};
use mongodb::bson::{doc, Document};
use predicates::prelude::*;

/// Written by dbkeeper 0.1.0 at format version 1 (the last build before codecs, with
/// `--chunk-bytes 2048` so `items` spans three gzip members) from the database [`seed_sql`]
/// builds and a MongoDB database whose collection `events` (40 documents `{n, tag}`, an index
/// on `n`) a dbkeeper Mongo migration created: its history collections are archived too.
const V1_FIXTURE: &str = "tests/fixtures/v1-gzip.dbk.tar";

/// What the fixture's PostgreSQL database held: a sequence past its rows, a populated
/// materialized view and a table without columns.
fn seed_sql() -> &'static str {
    "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, note text);
     INSERT INTO items (name, note)
       SELECT 'item ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE E'tab\\there' END
       FROM generate_series(1, 300) g;
     SELECT setval('items_id_seq', 1000);
     CREATE MATERIALIZED VIEW item_names AS SELECT name FROM items WHERE id <= 10;
     CREATE TABLE no_columns ();
     INSERT INTO no_columns DEFAULT VALUES;
     INSERT INTO no_columns DEFAULT VALUES;"
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(V1_FIXTURE)
}

async fn seed(pg: &PgTestDb) {
    pg.client().await.batch_execute(seed_sql()).await.unwrap();
}

/// The names of an archive's members, in order.
fn member_names(archive: &Path) -> Vec<String> {
    let file = std::fs::File::open(archive).unwrap();
    tar::Archive::new(file)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn manifest(archive: &Path) -> serde_json::Value {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("MANIFEST.json") {
            return serde_json::from_reader(entry).unwrap();
        }
    }
    panic!("no MANIFEST.json in {}", archive.display())
}

fn backup(dir: &Path, pg: &PgTestDb, extra: &[&str]) -> PathBuf {
    let out = dbkeeper(dir)
        .args(["--pg-url", &pg.url, "backup", "--output", ".", "--json"])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    dir.join(report["archive"].as_str().unwrap())
}

async fn count(pg: &PgTestDb, sql: &str) -> i64 {
    pg.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_format_1_gzip_archive_still_verifies_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    // A copy: verify writes its stamp beside the archive, which must not touch the repository.
    let archive = dir.path().join("v1-gzip.dbk.tar");
    std::fs::copy(fixture(), &archive).unwrap();
    assert_eq!(manifest(&archive)["format_version"], 1);
    assert!(member_names(&archive)
        .iter()
        .any(|n| n.ends_with(".copy.gz")));
    dbkeeper(dir.path())
        .arg("verify")
        .arg(&archive)
        .assert()
        .success()
        .stdout(predicate::str::contains("OK (V0+V1)"));

    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url, "restore"])
        .arg(&archive)
        .assert()
        .success();
    assert_eq!(count(&pg, "SELECT count(*) FROM items").await, 300);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM items WHERE note IS NULL").await,
        100
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM item_names").await, 10);
    assert_eq!(count(&pg, "SELECT count(*) FROM no_columns").await, 2);
    assert_eq!(count(&pg, "SELECT nextval('items_id_seq')").await, 1001);
    let events = mongo.db().await.collection::<Document>("events");
    assert_eq!(events.count_documents(doc! {}).await.unwrap(), 40);
}

#[tokio::test]
async fn backups_are_zstd_by_default_and_stock_zstd_reads_a_chunk() {
    let pg = PgTestDb::create().await;
    seed(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &[]);
    let manifest = manifest(&archive);
    assert_eq!(manifest["format_version"], 2);
    let items = manifest["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "items")
        .unwrap();
    let chunk = &items["chunks"][0];
    assert_eq!(chunk["codec"], "zstd", "{chunk}");
    let member = chunk["member"].as_str().unwrap();
    assert!(member.ends_with(".copy.zst"), "{member}");

    // tar + zstd, nothing of dbkeeper's.
    let extracted = dir.path().join("x");
    std::fs::create_dir(&extracted).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&extracted)
        .arg(member)
        .status()
        .unwrap();
    assert!(tar.success());
    let out = std::process::Command::new("zstd")
        .args(["-d", "-c"])
        .arg(extracted.join(member))
        .output()
        .expect("the zstd CLI (apt-get install zstd)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count() as u64, chunk["rows"].as_u64().unwrap());
    assert!(text.starts_with("1\titem 1\ttab\\there\n"), "{text:.80}");

    dbkeeper(dir.path())
        .arg("verify")
        .arg(&archive)
        .assert()
        .success();
}

#[tokio::test]
async fn gzip_and_none_round_trip_and_are_recorded_per_chunk() {
    let pg = PgTestDb::create().await;
    seed(&pg).await;
    for (codec, suffix) in [("gzip", ".copy.gz"), ("none", ".copy")] {
        let dir = tempfile::tempdir().unwrap();
        let archive = backup(dir.path(), &pg, &["--compression", codec]);
        let manifest = manifest(&archive);
        for dataset in manifest["datasets"].as_array().unwrap() {
            for chunk in dataset["chunks"].as_array().unwrap() {
                assert_eq!(chunk["codec"], codec);
                assert!(chunk["member"].as_str().unwrap().ends_with(suffix));
            }
        }
        let restored = PgTestDb::create().await;
        dbkeeper(dir.path())
            .args(["--pg-url", &restored.url, "restore"])
            .arg(&archive)
            .assert()
            .success();
        assert_eq!(count(&restored, "SELECT count(*) FROM items").await, 300);
    }
}

#[test]
fn bad_codecs_and_levels_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://nobody@127.0.0.1:1/none";
    dbkeeper(dir.path())
        .args(["--pg-url", url, "backup", "--compression-level", "25"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--compression-level").and(predicate::str::contains("1-19")),
        );
    dbkeeper(dir.path())
        .args(["--pg-url", url, "backup", "--compression", "gzip"])
        .args(["--compression-level", "12"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("0-9"));
    dbkeeper(dir.path())
        .args(["--pg-url", url, "backup", "--compression", "lz4"])
        .assert()
        .code(2);
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[backup]\ncompression = \"lz4\"\n",
    )
    .unwrap();
    dbkeeper(dir.path())
        .args(["--pg-url", url, "backup"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("backup.compression"));
    assert!(!dir.path().join("backups").exists());
}

/// dbkeeper run by a shell that set umask 0 first; arguments follow.
fn under_umask_0(workdir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 0 && exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin("dbkeeper"))
        .current_dir(workdir);
    for var in [
        "DBKEEPER_PG_URL",
        "DATABASE_URL",
        "DBKEEPER_MONGO_URL",
        "MONGODB_URI",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[tokio::test]
async fn archives_stamps_and_created_directories_are_private_whatever_the_umask() {
    let pg = PgTestDb::create().await;
    seed(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("nightly/pg");
    // The configured backup directory is created with its parents (an `--output` path must have
    // an existing parent): both levels must come out private.
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[backup]\noutput = \"nightly/pg\"\n",
    )
    .unwrap();
    // Under umask 0 everything would be world-writable if dbkeeper relied on the umask.
    let out = under_umask_0(dir.path())
        .args(["--pg-url", &pg.url, "backup"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("nightly")), 0o700);
    assert_eq!(mode(&out_dir), 0o700);
    let archive = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".dbk.tar"))
        .unwrap();
    assert_eq!(mode(&archive), 0o600);
    let verify = under_umask_0(dir.path())
        .arg("verify")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(verify.status.success());
    let stamp = PathBuf::from(format!("{}.verified.json", archive.display()));
    assert_eq!(mode(&stamp), 0o600);
    // The lock file is gone after the run; while held it is private too.
    let _lock = dbkeeper::dirlock::DirLock::acquire(&out_dir, "test").unwrap();
    let lock = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("lock"))
        .unwrap();
    assert_eq!(mode(&lock), 0o600);
}
