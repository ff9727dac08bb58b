//! `dbkeeper migrate test`: up, down to zero and up again on a scratch database, against a real
//! PostgreSQL and a real MongoDB-wire server; it must catch a down that does not undo its up.

mod common;

use common::stdout_json as json_of;
use std::path::Path;

use common::{dbkeeper, workdir, MongoTestDb, PgTestDb};
use serde_json::Value;

fn test_pg(db: &PgTestDb, dir: &Path) -> (Option<i32>, Value) {
    let out = dbkeeper(dir.parent().unwrap())
        .args([
            "migrate", "test", "--json", "--engine", "postgres", "--pg-url", &db.url,
        ])
        .arg("--migrations-dir")
        .arg(dir)
        .output()
        .unwrap();
    (out.status.code(), json_of(&out))
}

fn test_mongo(db: &MongoTestDb, dir: &Path) -> (Option<i32>, Value) {
    let out = dbkeeper(dir.parent().unwrap())
        .args([
            "--mongo-url",
            &db.url,
            "migrate",
            "test",
            "--json",
            "--engine",
            "mongo",
        ])
        .arg("--mongo-migrations-dir")
        .arg(dir)
        .output()
        .unwrap();
    (out.status.code(), json_of(&out))
}

async fn pg_database_exists(db: &PgTestDb, name: &str) -> bool {
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

const V1_UP: &str =
    "CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, name text);\n";
const V1_DOWN: &str = "DROP TABLE customers;\n";
const V2_UP: &str = "CREATE INDEX customers_email ON customers (email);\nALTER TABLE customers ADD COLUMN phone text;\n";

#[tokio::test]
async fn pg_a_set_whose_downs_undo_their_ups_passes_and_the_scratch_database_is_dropped() {
    let db = PgTestDb::create().await;
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__customers.sql", V1_UP),
            ("V1__customers.down.sql", V1_DOWN),
            ("V2__email_index.sql", V2_UP),
            (
                "V2__email_index.down.sql",
                "ALTER TABLE customers DROP COLUMN phone;\nDROP INDEX customers_email;\n",
            ),
        ],
    );
    let (code, json) = test_pg(&db, &dir);
    assert_eq!(code, Some(0), "{json:#}");
    let engine = &json["engines"][0];
    assert_eq!(engine["migrations"], 2);
    assert!(engine["failure"].is_null(), "{json:#}");
    let scratch = engine["scratch_database"].as_str().unwrap();
    assert!(
        !pg_database_exists(&db, scratch).await,
        "{scratch} was left behind"
    );
    // The database given on the command line is not touched.
    let row = db
        .client()
        .await
        .query_one("SELECT to_regclass('customers') IS NULL", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
}

#[tokio::test]
async fn pg_a_down_that_forgets_an_index_is_reported_with_the_difference() {
    let db = PgTestDb::create().await;
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__customers.sql", V1_UP),
            ("V1__customers.down.sql", V1_DOWN),
            ("V2__email_index.sql", V2_UP),
            (
                "V2__email_index.down.sql",
                "ALTER TABLE customers DROP COLUMN phone;\n",
            ),
        ],
    );
    let (code, json) = test_pg(&db, &dir);
    assert_eq!(code, Some(1), "{json:#}");
    let failure = &json["engines"][0]["failure"];
    assert_eq!(failure["version"], 2);
    assert_eq!(failure["name"], "email_index");
    assert_eq!(failure["phase"], "down");
    let diff = failure["diff"].as_str().unwrap();
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("CREATE INDEX customers_email")),
        "{diff}"
    );
}

#[tokio::test]
async fn pg_a_down_that_drops_a_column_its_up_did_not_add_is_reported() {
    let db = PgTestDb::create().await;
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__customers.sql", V1_UP),
            ("V1__customers.down.sql", V1_DOWN),
            ("V2__phone.sql", "ALTER TABLE customers ADD COLUMN phone text;\n"),
            ("V2__phone.down.sql", "ALTER TABLE customers DROP COLUMN phone;\nALTER TABLE customers DROP COLUMN name;\n"),
        ],
    );
    let (code, json) = test_pg(&db, &dir);
    assert_eq!(code, Some(1), "{json:#}");
    let failure = &json["engines"][0]["failure"];
    assert_eq!(failure["version"], 2);
    assert_eq!(failure["phase"], "down");
    let diff = failure["diff"].as_str().unwrap();
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("name text")),
        "{diff}"
    );
}

#[tokio::test]
async fn pg_the_repository_examples_round_trip() {
    let db = PgTestDb::create().await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let (code, json) = test_pg(&db, &examples);
    assert_eq!(code, Some(0), "{json:#}");
}

#[tokio::test]
async fn mongo_a_down_that_forgets_an_index_is_reported_and_a_good_one_passes() {
    let db = MongoTestDb::create().await;
    let good_down = r#"[{"dropIndexes": "users", "index": "users_email"}]"#;
    let (_work, dir) = workdir(
        "mongo_migrations",
        &[
            (
                "V1__users.json",
                r#"[{"create": "users", "validator": {"$jsonSchema": {"required": ["email"]}}}]"#,
            ),
            ("V1__users.down.json", r#"[{"drop": "users"}]"#),
            (
                "V2__email_index.json",
                r#"[{"createIndexes": "users", "indexes": [{"key": {"email": 1}, "name": "users_email", "unique": true}]}]"#,
            ),
            ("V2__email_index.down.json", good_down),
        ],
    );
    let (code, json) = test_mongo(&db, &dir);
    assert_eq!(code, Some(0), "{json:#}");

    std::fs::write(
        dir.join("V2__email_index.down.json"),
        r#"[{"collMod": "users", "validator": {"$jsonSchema": {"required": ["email"]}}}]"#,
    )
    .unwrap();
    let (code, json) = test_mongo(&db, &dir);
    assert_eq!(code, Some(1), "{json:#}");
    let failure = &json["engines"][0]["failure"];
    assert_eq!(failure["version"], 2);
    assert_eq!(failure["phase"], "down");
    assert!(
        failure["diff"].as_str().unwrap().contains("users_email"),
        "{json:#}"
    );
    let scratch = json["engines"][0]["scratch_database"].as_str().unwrap();
    let names = common::mongo_client(&common::mongo_server_url())
        .await
        .list_database_names()
        .await
        .unwrap();
    assert!(!names.iter().any(|n| n == scratch), "{scratch} left behind");
}

#[tokio::test]
async fn mongo_the_repository_examples_round_trip() {
    let db = MongoTestDb::create().await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("mongo_migrations");
    let (code, json) = test_mongo(&db, &examples);
    assert_eq!(code, Some(0), "{json:#}");
}
