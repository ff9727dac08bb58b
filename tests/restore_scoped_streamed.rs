//! Restores as everyday use needs them: from a stream (`backup --output - | restore -`), scoped
//! to one engine (the other engine's configured URL is never looked at), an archive's contents
//! listed without restoring, and backups started together never colliding on a name.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{dbkeeper, pg_connect, pg_server_url, stderr, MongoTestDb, PgTestDb};
use mongodb::bson::{doc, Document};

async fn seed(pg: &PgTestDb) {
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
             INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 300) g;",
        )
        .await
        .unwrap();
}

async fn seed_mongo(mongo: &MongoTestDb) {
    let docs: Vec<Document> = (0..50).map(|i| doc! { "n": i }).collect();
    mongo
        .db()
        .await
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
}

/// A PostgreSQL database name that does not exist yet (dropped again when the test ends).
async fn absent_pg_db() -> PgTestDb {
    let db = PgTestDb::create().await;
    pg_connect(&pg_server_url())
        .await
        .batch_execute(&format!("DROP DATABASE \"{}\"", db.name))
        .await
        .unwrap();
    db
}

async fn pg_db_exists(db: &PgTestDb) -> bool {
    pg_connect(&pg_server_url())
        .await
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db.name])
        .await
        .unwrap()
        .is_some()
}

fn backup_to_stdout(work: &Path, pg: &PgTestDb) -> Vec<u8> {
    let out = dbkeeper(work)
        .args(["--pg-url", &pg.url, "backup", "--output", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out.stdout
}

fn restore_from_stdin(work: &Path, target: &PgTestDb, stream: Vec<u8>) -> std::process::Output {
    dbkeeper(work)
        .args(["--pg-url", &target.url, "restore", "-"])
        .write_stdin(stream)
        .output()
        .unwrap()
}

#[tokio::test]
async fn restore_reads_a_streamed_backup_and_a_damaged_stream_changes_nothing() {
    let source = PgTestDb::create().await;
    seed(&source).await;
    let work = tempfile::tempdir().unwrap();
    let stream = backup_to_stdout(work.path(), &source);

    // Truncated: cut in the middle of the data.
    let target = absent_pg_db().await;
    let out = restore_from_stdin(work.path(), &target, stream[..stream.len() / 2].to_vec());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("archive -"), "{}", stderr(&out));
    assert!(
        !pg_db_exists(&target).await,
        "a truncated stream created the target"
    );

    // Corrupted: one flipped byte inside a data member, the length unchanged.
    let mut corrupted = stream.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    let out = restore_from_stdin(work.path(), &target, corrupted);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !pg_db_exists(&target).await,
        "a corrupted stream created the target"
    );

    // Whole: restored and verified, and no stamp file is written for `-`.
    let out = restore_from_stdin(work.path(), &target, stream);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let n: i64 = target
        .client()
        .await
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 300);
    let stray: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn an_empty_stream_is_bad_input_and_touches_no_database() {
    // The target's port is closed: the stream is rejected (exit 2) before any connection.
    let work = tempfile::tempdir().unwrap();
    let out = dbkeeper(work.path())
        .args(["--pg-url", "postgres://u@127.0.0.1:1/x", "restore", "-"])
        .write_stdin(Vec::new())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Both engines in the archive, a dbkeeper.toml naming the source MongoDB: `--engine postgres`
/// restores PostgreSQL only and never looks at the MongoDB URL (which, unscoped, is refused as
/// the archive's own source).
#[tokio::test]
async fn restore_engine_scopes_to_one_engine_and_list_shows_the_contents() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg).await;
    seed_mongo(&mongo).await;
    let work = tempfile::tempdir().unwrap();
    dbkeeper(work.path())
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url])
        .args(["backup", "--output", "both.dbk.tar"])
        .assert()
        .success();
    let archive = work.path().join("both.dbk.tar");
    let pg_only = work.path().join("pg.dbk.tar");
    dbkeeper(work.path())
        .args(["--pg-url", &pg.url, "backup", "--output"])
        .arg(&pg_only)
        .assert()
        .success();

    // --list: every table and collection with its count, the codec; nothing touched.
    let out = dbkeeper(work.path())
        .args(["restore", "--list", "both.dbk.tar", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["codecs"], serde_json::json!(["zstd"]), "{json}");
    assert_eq!(json["sources"][0]["engine"], "postgres");
    assert_eq!(json["sources"][0]["datasets"][0]["name"], "public.items");
    assert_eq!(json["sources"][0]["datasets"][0]["rows"], 300);
    assert_eq!(json["sources"][1]["engine"], "mongo");
    assert_eq!(json["sources"][1]["datasets"][0]["name"], "events");
    assert_eq!(json["sources"][1]["datasets"][0]["rows"], 50);
    let text = dbkeeper(work.path())
        .args(["restore", "--list", "both.dbk.tar"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("public.items") && text.contains("300 rows"),
        "{text}"
    );
    assert!(
        text.contains("events") && text.contains("50 docs"),
        "{text}"
    );

    std::fs::write(
        work.path().join("dbkeeper.toml"),
        format!("[mongo]\nurl = \"{}\"\n", mongo.url),
    )
    .unwrap();
    let target = absent_pg_db().await;
    // Unscoped, the configured MongoDB is the archive's source: refused before anything.
    let out = dbkeeper(work.path())
        .args(["--pg-url", &target.url, "restore"])
        .arg(&archive)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(!pg_db_exists(&target).await);

    let out = dbkeeper(work.path())
        .args(["--pg-url", &target.url, "restore", "--engine", "postgres"])
        .arg(&archive)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.get("mongo").is_none(), "{report}");
    assert_eq!(report["not_restored"], serde_json::json!([]), "{report}");
    assert_eq!(report["postgres"]["rows"], 300, "{report}");

    // An engine the archive does not hold is a usage error naming it.
    let out = dbkeeper(work.path())
        .args(["restore", "--engine", "mongo"])
        .arg(&pg_only)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds no MongoDB data"),
        "{}",
        stderr(&out)
    );
}

/// Regression: two backups in the same second got the same name; the second exited 2 ("already
/// exists ... run again"). Back-to-back backups of a tiny database finish several per second.
/// Started at the same moment, one waits for nobody: the directory lock refuses the other (exit
/// 4, a documented overlap refusal), never a name collision.
#[tokio::test]
async fn backups_in_the_same_second_into_one_directory_all_succeed() {
    let pg = PgTestDb::create().await;
    let work = tempfile::tempdir().unwrap();
    let backup = || {
        dbkeeper(work.path())
            .args(["--pg-url", &pg.url, "backup", "--output", "out"])
            .output()
            .unwrap()
    };
    for _ in 0..6 {
        let out = backup();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".dbk.tar"))
            .collect()
    };
    assert_eq!(names(&work.path().join("out")).len(), 6);
    // `list` reads them all as archives.
    let out = dbkeeper(work.path())
        .args(["list", "out", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["archives"].as_array().unwrap().len(), 6, "{json}");

    // Two at once: each either succeeds or is refused by the directory lock.
    let bin = assert_cmd::cargo::cargo_bin("dbkeeper");
    let runs: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&bin)
                .current_dir(work.path())
                .env_remove("DBKEEPER_MONGO_URL")
                .env_remove("MONGODB_URI")
                .args(["--pg-url", &pg.url, "backup", "--output", "together"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<_> = runs
        .into_iter()
        .map(|run| {
            let out = run.wait_with_output().unwrap();
            let code = out.status.code();
            assert!(
                code == Some(0) || (code == Some(4) && stderr(&out).contains("locked")),
                "{}",
                stderr(&out)
            );
            code
        })
        .collect();
    let succeeded = codes.iter().filter(|c| **c == Some(0)).count();
    assert_eq!(names(&work.path().join("together")).len(), succeeded);
}

/// `--include`/`--exclude` on restore, with the same patterns as backup: PostgreSQL gets the
/// whole schema and only the selected tables' rows, MongoDB only the selected collections, and
/// the V2 check afterwards compares only what was restored (so it passes).
#[tokio::test]
async fn restore_include_and_exclude_scope_tables_and_collections() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg).await;
    seed_mongo(&mongo).await;
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             INSERT INTO notes SELECT g, 'n' FROM generate_series(1, 20) g;",
        )
        .await
        .unwrap();
    mongo
        .db()
        .await
        .collection::<Document>("users")
        .insert_one(doc! { "email": "a@example.com" })
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    dbkeeper(work.path())
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url])
        .args(["backup", "--output", "all.dbk.tar"])
        .assert()
        .success();

    let (pg_target, mongo_target) = (absent_pg_db().await, MongoTestDb::create().await);
    let out = dbkeeper(work.path())
        .args(["--pg-url", &pg_target.url, "--mongo-url", &mongo_target.url])
        .args(["restore", "all.dbk.tar", "--include", "public.items"])
        .args(["--include", "events", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["postgres"]["tables"], 1, "{report}");
    assert_eq!(report["postgres"]["verify"]["objects"], 1, "{report}");
    assert_eq!(report["mongo"]["documents"], 50, "{report}");
    let client = pg_target.client().await;
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM items").await, 300);
    assert_eq!(count("SELECT count(*) FROM notes").await, 0, "schema only");
    let names = mongo_target
        .db()
        .await
        .list_collection_names()
        .await
        .unwrap();
    assert!(names.contains(&"events".to_string()), "{names:?}");
    assert!(!names.contains(&"users".to_string()), "{names:?}");

    // --exclude, the other way round, into fresh targets.
    let (pg_target, mongo_target) = (absent_pg_db().await, MongoTestDb::create().await);
    let out = dbkeeper(work.path())
        .args(["--pg-url", &pg_target.url, "--mongo-url", &mongo_target.url])
        .args([
            "restore",
            "all.dbk.tar",
            "--exclude",
            "items",
            "--exclude",
            "events",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let client = pg_target.client().await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20);
    let names = mongo_target
        .db()
        .await
        .list_collection_names()
        .await
        .unwrap();
    assert!(names.contains(&"users".to_string()), "{names:?}");
    assert!(!names.contains(&"events".to_string()), "{names:?}");

    // --schema-only: every definition, no rows or documents; V2 checks definitions (exit 0).
    mongo
        .db()
        .await
        .collection::<Document>("events")
        .create_index(mongodb::IndexModel::builder().keys(doc! { "n": 1 }).build())
        .await
        .unwrap();
    dbkeeper(work.path())
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url])
        .args(["backup", "--output", "indexed.dbk.tar"])
        .assert()
        .success();
    let (pg_target, mongo_target) = (absent_pg_db().await, MongoTestDb::create().await);
    let out = dbkeeper(work.path())
        .args(["--pg-url", &pg_target.url, "--mongo-url", &mongo_target.url])
        .args(["restore", "indexed.dbk.tar", "--schema-only", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mongo"]["documents"], 0, "{report}");
    let client = pg_target.client().await;
    for table in ["items", "notes"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    let indexes: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename IN ('items', 'notes')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 2, "primary keys built");
    let events = mongo_target.db().await.collection::<Document>("events");
    assert_eq!(events.count_documents(doc! {}).await.unwrap(), 0);
    let index_names = events.list_index_names().await.unwrap();
    assert!(index_names.contains(&"n_1".to_string()), "{index_names:?}");

    // A pattern that selects nothing is a usage error, before any database is touched.
    let target = absent_pg_db().await;
    let out = dbkeeper(work.path())
        .args(["--pg-url", &target.url, "restore", "all.dbk.tar"])
        .args(["--engine", "postgres", "--include", "nope*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope*"), "{}", stderr(&out));
    assert!(!pg_db_exists(&target).await);
}

/// `--data-only` (pg_restore's meaning): rows, documents and sequence values into the existing,
/// empty tables and collections of a schema made beforehand (here by `--schema-only`, in
/// practice by migrations). Refused before anything is written: a missing database, table or
/// collection (exit 2, named), tables or collections that hold rows (exit 4, named), and
/// `--mode replace`. A child table larger than its parent loads first (`--jobs 1`, largest
/// first), so the load only passes with foreign keys off for it.
#[tokio::test]
async fn restore_data_only_loads_into_an_existing_empty_schema_and_refuses_otherwise() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE parent (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE child (id serial PRIMARY KEY,
                                 parent_id int NOT NULL REFERENCES parent, body text);
             INSERT INTO parent (name) SELECT 'p' || g FROM generate_series(1, 10) g;
             INSERT INTO child (parent_id, body)
               SELECT 1 + g % 10, repeat('x', 200) FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    seed_mongo(&mongo).await;
    let events = mongo.db().await.collection::<Document>("events");
    events
        .create_index(mongodb::IndexModel::builder().keys(doc! { "n": 1 }).build())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    dbkeeper(work.path())
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url])
        .args(["backup", "--output", "all.dbk.tar"])
        .assert()
        .success();
    let restore = |pg_url: &str, mongo_url: &str, extra: &[&str]| {
        let mut cmd = dbkeeper(work.path());
        if !pg_url.is_empty() {
            cmd.args(["--pg-url", pg_url]);
        }
        if !mongo_url.is_empty() {
            cmd.args(["--mongo-url", mongo_url]);
        }
        cmd.args(["restore", "all.dbk.tar"])
            .args(extra)
            .output()
            .unwrap()
    };

    // The schema first, as migrations would make it.
    let (pg_target, mongo_target) = (absent_pg_db().await, MongoTestDb::create().await);
    let out = restore(&pg_target.url, &mongo_target.url, &["--schema-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = restore(
        &pg_target.url,
        &mongo_target.url,
        &["--data-only", "--jobs", "1", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["postgres"]["database_action"], "existing",
        "{report}"
    );
    assert_eq!(report["postgres"]["rows"], 2010, "{report}");
    assert_eq!(
        report["postgres"]["verify"]["mismatches"],
        serde_json::json!([])
    );
    assert_eq!(report["mongo"]["documents"], 50, "{report}");
    assert_eq!(
        report["mongo"]["verify"]["mismatches"],
        serde_json::json!([])
    );
    let client = pg_target.client().await;
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM child").await, 2000);
    assert_eq!(count("SELECT count(*) FROM parent").await, 10);
    // The sequence continues after the restored rows.
    assert_eq!(
        count("SELECT nextval('parent_id_seq')").await,
        11,
        "sequence value restored"
    );
    let restored = mongo_target.db().await.collection::<Document>("events");
    assert_eq!(restored.count_documents(doc! {}).await.unwrap(), 50);

    // Again: the tables and collections now hold rows. Refused, nothing loaded twice.
    let out = restore(&pg_target.url, "", &["--data-only", "--engine", "postgres"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("public.child") && err.contains("hold rows"),
        "{err}"
    );
    assert!(err.contains("TRUNCATE"), "{err}");
    assert_eq!(count("SELECT count(*) FROM child").await, 2000);
    let out = restore("", &mongo_target.url, &["--data-only", "--engine", "mongo"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("events"), "{}", stderr(&out));
    assert_eq!(restored.count_documents(doc! {}).await.unwrap(), 50);

    // No schema: a database with no tables, a database that does not exist, an empty MongoDB
    // database. Usage errors naming what is missing; nothing is created.
    let empty = PgTestDb::create().await;
    let out = restore(&empty.url, "", &["--data-only", "--engine", "postgres"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("table public.parent"),
        "{}",
        stderr(&out)
    );
    let absent = absent_pg_db().await;
    let out = restore(&absent.url, "", &["--data-only", "--engine", "postgres"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!pg_db_exists(&absent).await);
    let bare = MongoTestDb::create().await;
    let out = restore("", &bare.url, &["--data-only", "--engine", "mongo"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("lacks"), "{}", stderr(&out));
    assert!(bare
        .db()
        .await
        .list_collection_names()
        .await
        .unwrap()
        .is_empty());

    // Flags that contradict it.
    for extra in [["--mode", "replace"], ["--schema-only", "--jobs=1"]] {
        let mut args = vec!["--data-only"];
        args.extend(extra);
        let out = restore(&pg_target.url, "", &args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
    }
}

/// A truncated or corrupted stream given to `restore - --mode replace` leaves existing targets
/// exactly as they were: nothing is dropped before the whole stream passed V0.
#[tokio::test]
async fn a_damaged_stream_leaves_replaced_targets_as_they_were() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg).await;
    seed_mongo(&mongo).await;
    let work = tempfile::tempdir().unwrap();
    let out = dbkeeper(work.path())
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url])
        .args(["backup", "--output", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stream = out.stdout;

    // Targets holding other data, which a replace would drop.
    let (pg_target, mongo_target) = (PgTestDb::create().await, MongoTestDb::create().await);
    pg_target
        .client()
        .await
        .batch_execute("CREATE TABLE items (keep int); INSERT INTO items VALUES (7);")
        .await
        .unwrap();
    mongo_target
        .db()
        .await
        .collection::<Document>("events")
        .insert_one(doc! { "keep": 7 })
        .await
        .unwrap();
    let mut corrupted = stream.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    for (label, damaged) in [
        ("truncated", stream[..stream.len() - 700].to_vec()),
        ("corrupted", corrupted),
    ] {
        let out = dbkeeper(work.path())
            .args(["--pg-url", &pg_target.url, "--mongo-url", &mongo_target.url])
            .args(["restore", "-", "--mode", "replace"])
            .write_stdin(damaged)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{label}: {}", stderr(&out));
        let kept: i32 = pg_target
            .client()
            .await
            .query_one("SELECT keep FROM items", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, 7, "{label}");
        let events = mongo_target.db().await.collection::<Document>("events");
        let docs: Vec<Document> =
            futures::TryStreamExt::try_collect(events.find(doc! {}).await.unwrap())
                .await
                .unwrap();
        assert_eq!(docs.len(), 1, "{label}");
        assert_eq!(docs[0].get_i32("keep").unwrap(), 7, "{label}");
    }
}
