//! What long operations show while they run (`--json-events`, the stream a terminal's bars are
//! drawn from), and what `-v` and `-q` print.

mod common;

use common::{dbkeeper, MongoTestDb, PgTestDb};
use mongodb::bson::{doc, Document};

async fn seed(pg: &PgTestDb, mongo: &MongoTestDb) {
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
             CREATE INDEX items_name ON items (name);
             INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 300) g;",
        )
        .await
        .unwrap();
    // Enough documents for read progress before the collection's only chunk is cut.
    let docs: Vec<Document> = (0..2500).map(|i| doc! { "n": i }).collect();
    mongo
        .db()
        .await
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
}

fn events(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not NDJSON: {l}: {e}")))
        .collect()
}

fn has(events: &[serde_json::Value], event: &str, key: &str, value: &str) -> bool {
    events
        .iter()
        .any(|e| e["event"] == event && e[key].as_str() == Some(value))
}

#[tokio::test]
async fn every_phase_reports_itself_and_each_table_and_collection() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let connect = ["--pg-url", &pg.url, "--mongo-url", &mongo.url];

    let out = dbkeeper(dir.path())
        .args(connect)
        .args(["--json-events", "backup", "--output", "out.dbk.tar"])
        .assert()
        .success()
        .get_output()
        .clone();
    let backup = events(&out.stderr);
    assert!(has(&backup, "start", "phase", "prepare"), "{backup:?}");
    assert!(has(&backup, "start", "phase", "backup"), "{backup:?}");
    assert!(
        has(&backup, "item", "item", "table public.items"),
        "{backup:?}"
    );
    let collection = format!("collection {}.events", mongo.name);
    assert!(has(&backup, "item", "item", &collection), "{backup:?}");
    assert!(
        backup.iter().any(|e| e["event"] == "done"
            && e["verb"] == "dumped"
            && e["item"] == "table public.items"
            && e["item_records"] == 300),
        "{backup:?}"
    );
    // The collection fits in one chunk, yet reading it moves the bar before that chunk exists.
    assert!(
        backup
            .iter()
            .any(|e| e["event"] == "reading" && e["read_ahead"].as_i64() >= Some(1000)),
        "{backup:?}"
    );
    let finish = backup
        .iter()
        .rfind(|e| e["event"] == "finish" && e["phase"] == "backup")
        .unwrap();
    assert_eq!(finish["records"], 300 + 2500, "{finish}");

    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let out = dbkeeper(dir.path())
        .args(["--pg-url", &pg2.url, "--mongo-url", &mongo2.url])
        .args(["--json-events", "restore", "out.dbk.tar", "--deep"])
        .assert()
        .success()
        .get_output()
        .clone();
    let restore = events(&out.stderr);
    // Before anything is restored, the archive's check shows (reading every member's
    // SHA-256); then the schema before the data bar; after it the index builds, the
    // constraints, then the comparison.
    assert!(has(&restore, "start", "phase", "check"), "{restore:?}");
    assert!(
        has(&restore, "item", "item", "archive out.dbk.tar"),
        "{restore:?}"
    );
    for step in ["schema", "data", "indexes", "constraints"] {
        assert!(has(&restore, "step", "step", step), "{restore:?}");
    }
    assert!(
        has(&restore, "done", "item", "table public.items"),
        "{restore:?}"
    );
    assert!(
        has(&restore, "done", "item", "collection events"),
        "{restore:?}"
    );
    assert!(has(&restore, "start", "phase", "compare"), "{restore:?}");

    // verify --deep compares the whole database: that phase shows too.
    let out = dbkeeper(dir.path())
        .args(["--pg-url", &pg2.url])
        .args(["--json-events", "verify", "out.dbk.tar", "--deep"])
        .assert()
        .success()
        .get_output()
        .clone();
    let verify = events(&out.stderr);
    assert!(has(&verify, "start", "phase", "check"), "{verify:?}");
    assert!(has(&verify, "start", "phase", "compare"), "{verify:?}");
    assert!(
        verify
            .iter()
            .any(|e| e["event"] == "item" && e["item"].as_str().unwrap().starts_with("PostgreSQL")),
        "{verify:?}"
    );
}

#[tokio::test]
async fn verbose_logs_each_table_and_quiet_prints_nothing_on_success() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();

    let out = dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url])
        .args(["-v", "backup", "--output", "v.dbk.tar"])
        .assert()
        .success()
        .get_output()
        .clone();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("dumped table public.items: 300"), "{log}");
    assert!(
        log.contains(&format!("dumped collection {}.events: 2500", mongo.name)),
        "{log}"
    );

    let out = dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "-q", "backup", "--output", "q.dbk.tar"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let out = dbkeeper(dir.path())
        .args(["--pg-url", &pg2.url, "--mongo-url", &mongo2.url])
        .args(["-v", "restore", "v.dbk.tar"])
        .assert()
        .success()
        .get_output()
        .clone();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("restored table public.items: 300"), "{log}");
    assert!(log.contains("restored collection events: 2500"), "{log}");

    let pg3 = PgTestDb::create().await;
    let out = dbkeeper(dir.path())
        .args(["--pg-url", &pg3.url, "-q", "restore", "q.dbk.tar"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
