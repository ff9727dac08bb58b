//! `migrate` with both engines configured: a deploy checks every engine before it applies
//! anything, and a run that still stops part-way says per engine what ran and what is left.
//! (Regression: with MongoDB down, `migrate up` applied the PostgreSQL migrations, exited 3 and
//! printed nothing on stdout with `--json`.)

mod common;

use common::stdout_json;
use std::path::Path;

use common::{dbkeeper, stderr, MongoTestDb, PgTestDb};

/// A work directory with `migrations/` and `mongo_migrations/` holding the given files.
fn project(pg: &[(&str, &str)], mongo: &[(&str, &str)]) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    for (dir, files) in [("migrations", pg), ("mongo_migrations", mongo)] {
        let dir = work.path().join(dir);
        std::fs::create_dir(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    work
}

/// A MongoDB URL on a port nothing listens on (bound, then closed).
fn closed_mongo_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("mongodb://127.0.0.1:{port}/app")
}

async fn pg_versions(db: &PgTestDb) -> Vec<i32> {
    db.client()
        .await
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

fn both(work: &Path, pg_url: &str, mongo_url: &str, args: &[&str]) -> std::process::Output {
    dbkeeper(work)
        .args(["--pg-url", pg_url, "--mongo-url", mongo_url])
        .args(["--connect-timeout", "3", "migrate"])
        .args(args)
        .output()
        .unwrap()
}

const PG_V1: (&str, &str) = ("V1__accounts.sql", "CREATE TABLE accounts (id int);");
const PG_V1_DOWN: (&str, &str) = ("V1__accounts.down.sql", "DROP TABLE accounts;");

#[tokio::test]
async fn migrate_up_with_mongodb_unreachable_applies_nothing_on_postgresql() {
    let pg = PgTestDb::create().await;
    let work = project(
        &[PG_V1, PG_V1_DOWN],
        &[("V1__users.json", r#"[{"create": "users"}]"#)],
    );
    let mongo_url = closed_mongo_url();

    let out = both(work.path(), &pg.url, &mongo_url, &["up", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("MongoDB") && stderr(&out).contains("nothing was run"),
        "{}",
        stderr(&out)
    );
    assert!(pg_versions(&pg).await.is_empty(), "PostgreSQL was migrated");
    let has_table = pg
        .client()
        .await
        .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'accounts'", &[])
        .await
        .unwrap();
    assert!(has_table.is_none(), "V1 ran on PostgreSQL");

    let json = stdout_json(&out);
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{json}");
    assert_eq!(runs[0]["engine"], "postgres");
    assert_eq!(runs[0]["outcome"], "not_started");
    assert_eq!(runs[0]["steps"].as_array().unwrap().len(), 0);
    assert_eq!(runs[0]["pending"][0]["name"], "accounts", "{json}");
    assert_eq!(runs[1]["engine"], "mongo");
    assert_eq!(runs[1]["outcome"], "not_started");
    assert!(runs[1]["pending"].is_null(), "{json}");
    assert!(
        runs[1]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{json}"
    );

    // A dry run says the same: no plan is shown as done while another engine is unreachable.
    let out = both(work.path(), &pg.url, &mongo_url, &["up", "--dry-run"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PostgreSQL: not started; applied nothing; left: V1__accounts"),
        "{text}"
    );

    // The same for `down`: PostgreSQL migrated alone, then a two-engine rollback with MongoDB
    // down reverts nothing.
    dbkeeper(work.path())
        .args(["--pg-url", &pg.url, "migrate", "up", "--engine", "postgres"])
        .assert()
        .success();
    let out = both(work.path(), &pg.url, &mongo_url, &["down"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        pg_versions(&pg).await,
        vec![1],
        "PostgreSQL was rolled back"
    );
}

#[tokio::test]
async fn a_run_stopped_part_way_reports_what_each_engine_applied_and_what_is_left() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    let work = project(
        &[
            PG_V1,
            PG_V1_DOWN,
            ("V2__orders.sql", "CREATE TABLE orders (id int);"),
            ("V2__orders.down.sql", "DROP TABLE orders;"),
        ],
        &[
            ("V1__users.json", r#"[{"create": "users"}]"#),
            ("V1__users.down.json", r#"[{"drop": "users"}]"#),
            (
                "V2__broken.json",
                r#"[{"create": "first"}, {"frobnicate": "users"}]"#,
            ),
            ("V2__broken.down.json", r#"[{"drop": "first"}]"#),
            ("V3__later.json", r#"[{"create": "later"}]"#),
        ],
    );

    let out = both(work.path(), &pg.url, &mongo.url, &["up", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let json = stdout_json(&out);
    let runs = json["runs"].as_array().unwrap();
    let labels = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| format!("V{}__{}", s["version"], s["name"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(runs[0]["outcome"], "done", "{json}");
    assert_eq!(
        labels(&runs[0]["steps"]),
        ["V1__accounts", "V2__orders"],
        "{json}"
    );
    assert_eq!(labels(&runs[0]["pending"]), Vec::<String>::new());
    assert_eq!(runs[1]["outcome"], "failed", "{json}");
    assert_eq!(labels(&runs[1]["steps"]), ["V1__users"], "{json}");
    assert_eq!(
        labels(&runs[1]["pending"]),
        ["V2__broken", "V3__later"],
        "{json}"
    );
    assert_eq!(runs[1]["failure"]["name"], "broken");
    assert_eq!(pg_versions(&pg).await, vec![1, 2]);

    // The text report says the same, one line per engine.
    let out = both(
        work.path(),
        &pg.url,
        &mongo.url,
        &["repair", "--dirty", "rolled-back"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = both(work.path(), &pg.url, &mongo.url, &["up"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PostgreSQL: done; applied nothing; nothing left"),
        "{text}"
    );
    assert!(
        text.contains("MongoDB: FAILED; applied nothing; left: V2__broken, V3__later"),
        "{text}"
    );
}
