//! `dbkeeper migrate lint` (offline) and the lint `migrate up` runs on pending migrations,
//! against a real PostgreSQL and a real MongoDB-wire server.

mod common;

use common::stdout_json as json_of;
use std::path::Path;

use common::{dbkeeper, workdir, MongoTestDb, PgTestDb};

fn lint_sql(dir: &Path, json: bool) -> std::process::Output {
    let mut cmd = dbkeeper(dir.parent().unwrap());
    cmd.args([
        "migrate",
        "lint",
        "--engine",
        "postgres",
        "--migrations-dir",
    ])
    .arg(dir);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

const CREATE_ORDERS: &str = "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint);\n";
const INDEX_ORDERS: &str =
    "-- speed up the customer page\nCREATE INDEX orders_customer ON orders (customer_id);\n";

#[test]
fn lint_names_file_line_rule_why_and_fix_and_exits_1() {
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__orders.sql", CREATE_ORDERS),
            ("V2__index.sql", INDEX_ORDERS),
        ],
    );
    let out = lint_sql(&dir, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let expected = format!(
        "{}:2:1: error[require-concurrent-index-creation]: ",
        dir.join("V2__index.sql").display()
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(
        stdout.contains("fix: use CREATE INDEX CONCURRENTLY"),
        "{stdout}"
    );
    assert!(stdout.contains("1 error(s)"), "{stdout}");
}

#[test]
fn lint_json_lists_findings() {
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__orders.sql", CREATE_ORDERS),
            ("V2__index.sql", INDEX_ORDERS),
        ],
    );
    let out = lint_sql(&dir, true);
    assert_eq!(out.status.code(), Some(1));
    let json = json_of(&out);
    let engine = &json["engines"][0];
    assert_eq!(engine["engine"], "postgres");
    assert_eq!(engine["files"], 2);
    assert_eq!(engine["errors"], 1);
    let finding = &engine["findings"][0];
    assert_eq!(finding["rule"], "require-concurrent-index-creation");
    assert_eq!(finding["level"], "error");
    assert_eq!(finding["line"], 2);
    assert!(finding["file"].as_str().unwrap().ends_with("V2__index.sql"));
    assert!(finding["why"].as_str().unwrap().contains("blocked"));
    assert!(finding["fix"].as_str().unwrap().contains("CONCURRENTLY"));
}

#[test]
fn ignore_directive_silences_one_finding_and_needs_a_reason() {
    let ignored = format!(
        "-- dbkeeper:lint-ignore require-concurrent-index-creation orders has 20 rows\n{INDEX_ORDERS}"
    );
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__orders.sql", CREATE_ORDERS),
            ("V2__index.sql", &ignored),
        ],
    );
    let out = lint_sql(&dir, true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let json = json_of(&out);
    assert_eq!(json["engines"][0]["ignored"], 1);
    assert_eq!(json["engines"][0]["errors"], 0);

    // One directive, one finding: a second index is still reported.
    let two = format!("{ignored}CREATE INDEX orders_id2 ON orders (id);\n");
    std::fs::write(dir.join("V2__index.sql"), two).unwrap();
    let json = json_of(&lint_sql(&dir, true));
    assert_eq!(json["engines"][0]["errors"], 1);
    assert_eq!(json["engines"][0]["findings"][0]["line"], 4);

    let no_reason =
        format!("-- dbkeeper:lint-ignore require-concurrent-index-creation\n{INDEX_ORDERS}");
    std::fs::write(dir.join("V2__index.sql"), no_reason).unwrap();
    let json = json_of(&lint_sql(&dir, true));
    let rules: Vec<&str> = json["engines"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        vec![
            "lint-ignore-without-reason",
            "require-concurrent-index-creation"
        ]
    );
}

#[test]
fn mongo_rules_and_the_json_directive() {
    let validator = r#"[
  {"collMod": "users", "validator": {"$jsonSchema": {"required": ["email"]}}}
]"#;
    let (_work, dir) = workdir("mongo_migrations", &[("V1__require_email.json", validator)]);
    let lint = || {
        dbkeeper(dir.parent().unwrap())
            .args(["migrate", "lint", "--json", "--engine", "mongo"])
            .output()
            .unwrap()
    };
    let out = lint();
    assert_eq!(out.status.code(), Some(1));
    let json = json_of(&out);
    assert_eq!(
        json["engines"][0]["findings"][0]["rule"],
        "adding-validator-with-error-action"
    );
    assert_eq!(json["engines"][0]["findings"][0]["line"], 2);

    let warned = r#"[
  {"collMod": "users", "validator": {"$jsonSchema": {"required": ["email"]}}, "validationAction": "warn"}
]"#;
    std::fs::write(dir.join("V1__require_email.json"), warned).unwrap();
    assert_eq!(lint().status.code(), Some(0));

    let ignored = r#"[
  {"collMod": "users", "validator": {"$jsonSchema": {"required": ["email"]}},
   "$lintIgnore": "adding-validator-with-error-action every user has an email since 2024"}
]"#;
    std::fs::write(dir.join("V1__require_email.json"), ignored).unwrap();
    let out = lint();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json_of(&out)["engines"][0]["ignored"], 1);
}

#[tokio::test]
async fn the_json_directive_is_not_sent_to_the_server() {
    let db = MongoTestDb::create().await;
    let files = [(
        "V1__users.json",
        r#"[{"create": "users"},
            {"collMod": "users", "validator": {"$jsonSchema": {"required": ["email"]}},
             "$lintIgnore": "adding-validator-with-error-action created just above"}]"#,
    )];
    let (_work, dir) = workdir("mongo_migrations", &files);
    let out = dbkeeper(dir.parent().unwrap())
        .args(["--mongo-url", &db.url, "migrate", "up", "--engine", "mongo"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = db.db().await.list_collection_names().await.unwrap();
    assert!(names.contains(&"users".to_string()), "{names:?}");
}

fn up_pg(db: &PgTestDb, dir: &Path) -> std::process::Output {
    dbkeeper(dir.parent().unwrap())
        .args(["migrate", "up", "--engine", "postgres", "--pg-url", &db.url])
        .output()
        .unwrap()
}

#[tokio::test]
async fn up_warns_about_pending_migrations_only() {
    let db = PgTestDb::create().await;
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__orders.sql", CREATE_ORDERS),
            ("V2__index.sql", INDEX_ORDERS),
        ],
    );
    let out = up_pg(&db, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("lint: ") && stderr.contains("error[require-concurrent-index-creation]"),
        "{stderr}"
    );
    // V2 is applied now: the next run does not lint it again.
    std::fs::write(
        dir.join("V3__note.sql"),
        "ALTER TABLE orders ADD COLUMN note text;\n",
    )
    .unwrap();
    let out = up_pg(&db, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("lint:"), "{stderr}");
}

#[tokio::test]
async fn up_refuses_with_lint_error_and_applies_nothing() {
    let db = PgTestDb::create().await;
    let (work, dir) = workdir(
        "migrations",
        &[
            ("V1__orders.sql", CREATE_ORDERS),
            ("V2__index.sql", INDEX_ORDERS),
        ],
    );
    std::fs::write(
        work.path().join("dbkeeper.toml"),
        "[migrate]\nlint = \"error\"\n",
    )
    .unwrap();
    let out = up_pg(&db, &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("migrate up refused: 1 lint error(s)"),
        "{stderr}"
    );
    let client = db.client().await;
    let row = client
        .query_one("SELECT to_regclass('orders') IS NULL", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "V1 must not have been applied");
}

#[test]
fn the_repository_examples_have_no_lint_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dbkeeper(root)
        .args(["migrate", "lint", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let json = json_of(&out);
    let engines = json["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 2, "{json:#}");
    assert_eq!(engines[1]["ignored"], 3, "{json:#}");
}
