//! `dbkeeper backup` and `restore` with both engines: one archive, each engine's point in time,
//! every target checked before any is touched, `--prune` and the directory lock.

mod common;

use common::{dbkeeper, pg_url_with_db, MongoTestDb, PgTestDb};
use mongodb::bson::{doc, Document};
use predicates::prelude::*;

async fn seed(pg: &PgTestDb, mongo: &MongoTestDb) {
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
             INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 250) g;",
        )
        .await
        .unwrap();
    let db = mongo.db().await;
    let docs: Vec<Document> = (0..120).map(|i| doc! { "n": i, "tag": "x" }).collect();
    db.collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
    db.collection::<Document>("users")
        .insert_one(doc! { "email": "a@example.com" })
        .await
        .unwrap();
}

fn backup(dir: &std::path::Path, pg: &PgTestDb, mongo: &MongoTestDb) -> serde_json::Value {
    let out = dbkeeper(dir)
        .args([
            "--pg-url",
            &pg.url,
            "--mongo-url",
            &mongo.url,
            "backup",
            "--output",
            ".",
        ])
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[tokio::test]
async fn one_archive_holds_both_engines_and_restores_into_fresh_databases() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let report = backup(dir.path(), &pg, &mongo);
    assert_eq!(report["postgres"]["rows"], 250, "{report}");
    assert_eq!(report["mongo"]["documents"], 121, "{report}");
    let archive = report["archive"].as_str().unwrap().to_string();

    let listed = dbkeeper(dir.path())
        .args(["list", ".", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed["archives"][0]["engines"],
        serde_json::json!(["postgres", "mongo"])
    );
    assert_eq!(listed["archives"][0]["rows"]["mongo"], 121);

    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let out = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &pg2.url,
            "--mongo-url",
            &mongo2.url,
            "restore",
            &archive,
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let restored: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        restored["postgres"]["verify"]["mismatches"],
        serde_json::json!([])
    );
    assert_eq!(
        restored["mongo"]["verify"]["mismatches"],
        serde_json::json!([])
    );
    assert_eq!(restored["mongo"]["verify"]["objects"], 2);
    assert_eq!(restored["postgres"]["verify"]["objects"], 1);
    let n: i64 = pg2
        .client()
        .await
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 250);
    let events = mongo2.db().await.collection::<Document>("events");
    assert_eq!(events.count_documents(doc! {}).await.unwrap(), 120);
}

#[tokio::test]
async fn a_refusal_for_one_engine_touches_neither_target() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &mongo)["archive"]
        .as_str()
        .unwrap()
        .to_string();

    // The MongoDB target already has `events`; the PostgreSQL target does not exist yet.
    let mongo2 = MongoTestDb::create().await;
    mongo2
        .db()
        .await
        .collection::<Document>("events")
        .insert_one(doc! { "keep": "me" })
        .await
        .unwrap();
    let fresh_pg = common::unique_name("dbk_never");
    let fresh_pg_url = pg_url_with_db(&common::pg_server_url(), &fresh_pg);
    dbkeeper(dir.path())
        .args([
            "--pg-url",
            &fresh_pg_url,
            "--mongo-url",
            &mongo2.url,
            "restore",
            &archive,
        ])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("events").and(predicate::str::contains("--mode replace")));
    let admin = common::pg_connect(&common::pg_server_url()).await;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&fresh_pg])
        .await
        .unwrap();
    assert!(
        exists.is_none(),
        "PostgreSQL target was created although MongoDB refused"
    );
    let events = mongo2.db().await.collection::<Document>("events");
    assert_eq!(events.count_documents(doc! {}).await.unwrap(), 1);
}

#[tokio::test]
async fn backup_prune_applies_the_configured_policy_and_overlapping_runs_are_refused() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    // Without a policy, --prune is refused before any dump starts.
    dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "backup", "--output", ".", "--prune"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("[retention]"));
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[retention]\nkeep_last = 1\n",
    )
    .unwrap();
    for _ in 0..2 {
        // Archive names have one-second resolution.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        dbkeeper(dir.path())
            .args(["--pg-url", &pg.url, "backup", "--output", ".", "--prune"])
            .assert()
            .success();
    }
    let archives: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dbk.tar"))
        .collect();
    assert_eq!(archives.len(), 1, "keep_last = 1 after the second backup");

    let _held = dbkeeper::dirlock::DirLock::acquire(dir.path(), "backup").unwrap();
    dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "backup", "--output", "."])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("locked by another dbkeeper run"));
}

#[tokio::test]
async fn backup_first_takes_a_verified_backup_that_undoes_a_destructive_migration() {
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 40) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    std::fs::write(
        dir.path().join("migrations/V1__drop_notes.sql"),
        "DROP TABLE notes;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[backup]\noutput = \"archives\"\n",
    )
    .unwrap();

    let out = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &pg.url,
            "migrate",
            "up",
            "--backup-first",
            "--json",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("backup before migrating"))
        .stderr(predicate::str::contains(
            "--mode replace --overwrite-source",
        ))
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let archive = report["backup_first"].as_str().unwrap().to_string();
    assert!(archive.contains("archives"), "{report}");
    assert_eq!(report["runs"][0]["steps"][0]["version"], 1);
    let archive_path = dir.path().join(&archive);
    let archive_path = if archive_path.exists() {
        archive_path
    } else {
        archive.clone().into()
    };
    assert!(
        dbkeeper::archive::catalog::read_stamp(&archive_path).is_some(),
        "the backup was verified and stamped"
    );

    // The migration destroyed the data; the archive brings it back.
    let restored = PgTestDb::create().await;
    dbkeeper(dir.path())
        .args([
            "--pg-url",
            &restored.url,
            "restore",
            archive_path.to_str().unwrap(),
        ])
        .assert()
        .success();
    let n: i64 = restored
        .client()
        .await
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40);

    // The undo the migration printed works on the migrated database itself: refused without
    // --overwrite-source (4), done with it.
    let undo = |extra: &[&str]| {
        let mut cmd = dbkeeper(dir.path());
        cmd.args([
            "--pg-url",
            &pg.url,
            "restore",
            archive_path.to_str().unwrap(),
        ])
        .args(["--mode", "replace"])
        .args(extra);
        cmd
    };
    undo(&[]).assert().code(4);
    undo(&["--overwrite-source"]).assert().success();
    let n: i64 = pg
        .client()
        .await
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 40,
        "the source is back to its state before the migration"
    );
}

#[tokio::test]
async fn backup_first_failure_applies_nothing() {
    let pg = PgTestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    std::fs::write(
        dir.path().join("migrations/V1__t.sql"),
        "CREATE TABLE t (id int);\n",
    )
    .unwrap();
    // MongoDB is configured but unreachable: the backup fails, so no migration may run.
    dbkeeper(dir.path())
        .args([
            "--pg-url",
            &pg.url,
            "--mongo-url",
            "mongodb://127.0.0.1:1/x",
            "--connect-timeout",
            "1",
        ])
        .args(["migrate", "up", "--engine", "postgres", "--backup-first"])
        .assert()
        .code(3);
    let client = pg.client().await;
    let exists = client
        .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 't'", &[])
        .await
        .unwrap();
    assert!(exists.is_none(), "migration ran although the backup failed");
}

/// `--json-events` output: one JSON object per stderr line, nothing else.
fn ndjson_events(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not NDJSON: {l}: {e}")))
        .collect()
}

#[tokio::test]
async fn json_events_stream_progress_and_cron_output_is_one_line() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();

    // Not a terminal and no --json-events: one summary line, nothing on stderr.
    let quiet = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &pg.url,
            "--mongo-url",
            &mongo.url,
            "backup",
            "--output",
            ".",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(String::from_utf8_lossy(&quiet.stdout).lines().count(), 1);
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let archive = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".dbk.tar"))
        .unwrap();

    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let out = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &pg2.url,
            "--mongo-url",
            &mongo2.url,
            "--json-events",
            "restore",
        ])
        .arg(&archive)
        .assert()
        .success()
        .get_output()
        .clone();
    let all_events = ndjson_events(&out.stderr);
    // The archive check, the data phase, then the comparison with the archive.
    let phases: Vec<&serde_json::Value> = all_events
        .iter()
        .filter(|e| e["event"] == "start")
        .map(|e| &e["phase"])
        .collect();
    assert_eq!(phases, ["check", "restore", "compare"], "{all_events:?}");
    let events: Vec<serde_json::Value> = all_events
        .iter()
        .filter(|e| e["phase"] == "restore")
        .cloned()
        .collect();
    assert_eq!(events.first().unwrap()["event"], "start");
    assert_eq!(events.first().unwrap()["phase"], "restore");
    assert_eq!(events.first().unwrap()["total_records"], 250 + 121);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finish");
    assert_eq!(
        last["records"],
        250 + 121,
        "every restored record was reported: {last}"
    );
    assert!(events.iter().any(|e| e["event"] == "progress"));
    assert!(events.iter().all(|e| e["totals_exact"] == true));

    // A backup's totals are the databases' estimates (exact here once the table is analyzed),
    // flagged as such; the records reported are the ones written.
    pg.client()
        .await
        .batch_execute("ANALYZE items")
        .await
        .unwrap();
    // Its own directory: archive names have one-second resolution.
    let second = tempfile::tempdir().unwrap();
    let out = dbkeeper(second.path())
        .args([
            "--pg-url",
            &pg.url,
            "--mongo-url",
            &mongo.url,
            "--json-events",
            "backup",
            "--output",
            ".",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let events = ndjson_events(&out.stderr);
    // Something shows from the start, before the snapshot and estimates are ready.
    assert_eq!(events.first().unwrap()["phase"], "prepare");
    let start = events
        .iter()
        .find(|e| e["event"] == "start" && e["phase"] == "backup")
        .unwrap();
    assert_eq!(start["phase"], "backup");
    assert_eq!(start["totals_exact"], false);
    assert_eq!(start["total_records"], 250 + 121, "{start}");
    assert_eq!(events.last().unwrap()["records"], 250 + 121);
}

/// Selections that match nothing are typos, refused (2) before anything is written or touched:
/// a backup whose filters select no table and no collection, a restore whose `--ns-from`
/// matches no collection, a `verify --mongo-url` naming no database (it would otherwise compare
/// with the source), an invalid MongoDB database name.
#[tokio::test]
async fn selections_that_match_nothing_are_refused() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], expected: &str| {
        let out = dbkeeper(dir.path()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };

    let empty = dir.path().join("empty");
    refused(
        &[
            "--pg-url",
            &pg.url,
            "--mongo-url",
            &mongo.url,
            "backup",
            "--include",
            "public.nosuch",
            "--output",
            empty.to_str().unwrap(),
        ],
        "selected no table and no collection",
    );
    let archives = std::fs::read_dir(&empty).map(|d| d.count()).unwrap_or(0);
    assert_eq!(archives, 0, "no archive was written");

    let archive = backup(dir.path(), &pg, &mongo)["archive"]
        .as_str()
        .unwrap()
        .to_string();
    let target = MongoTestDb::create().await;
    refused(
        &[
            "--mongo-url",
            &target.url,
            "restore",
            &archive,
            "--ns-from",
            "nomatch",
            "--ns-to",
            "other",
        ],
        "--ns-from \"nomatch\" matches no collection",
    );
    let collections = target.db().await.list_collection_names().await.unwrap();
    assert!(collections.is_empty(), "target untouched: {collections:?}");

    let server_only = common::mongo_server_url();
    refused(
        &["verify", &archive, "--mongo-url", &server_only],
        "name the database to compare",
    );
    refused(
        &["verify", &archive, "--mongo-db", &target.name],
        "also give --mongo-url",
    );
    refused(
        &[
            "--mongo-url",
            &server_only,
            "--mongo-db",
            "",
            "restore",
            &archive,
        ],
        "is not valid",
    );
}

/// `--mode replace` recreates the whole PostgreSQL database: from an archive of only some
/// tables it would empty the others, so it is refused (4) naming them, and nothing changes.
#[tokio::test]
async fn replacing_from_a_partial_archive_never_empties_other_tables() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    pg.client()
        .await
        .batch_execute("CREATE TABLE other (id int); INSERT INTO other VALUES (1), (2);")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let partial = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &pg.url,
            "backup",
            "--include",
            "items",
            "--output",
            ".",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let archive = serde_json::from_slice::<serde_json::Value>(&partial).unwrap()["archive"]
        .as_str()
        .unwrap()
        .to_string();
    let target = PgTestDb::create().await;
    target
        .client()
        .await
        .batch_execute("CREATE TABLE other (id int); INSERT INTO other VALUES (7);")
        .await
        .unwrap();
    let out = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &target.url,
            "restore",
            &archive,
            "--mode",
            "replace",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("public.other"), "{stderr}");
    let kept: i64 = target
        .client()
        .await
        .query_one("SELECT count(*) FROM other", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "the target was not touched");
}
