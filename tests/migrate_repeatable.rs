//! Repeatable migrations (`R__{name}.sql`, Flyway's meaning) against a real PostgreSQL: applied
//! after the versioned ones, not again while unchanged, again when changed, a failure rolls back
//! and records nothing, `down` leaves them alone but the next `up` re-creates what a rollback
//! dropped, `status`, `lint` and dry runs show them; MongoDB refuses `R__` files clearly.

mod common;

use common::stdout_json as json_of;
use std::path::Path;

use common::{dbkeeper, stderr, workdir, MongoTestDb, PgTestDb};

const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, active boolean NOT NULL);\n\
                     INSERT INTO users VALUES (1, true), (2, false);\n";
const USERS_DOWN: &str = "DROP TABLE users CASCADE;\n";
const VIEW_V1: &str = "CREATE OR REPLACE VIEW active_users AS SELECT id FROM users WHERE active;\n";
const VIEW_V2: &str =
    "CREATE OR REPLACE VIEW active_users AS SELECT id, active FROM users WHERE active;\n";
const FUNC: &str = "CREATE OR REPLACE FUNCTION active_count() RETURNS bigint\n\
                    LANGUAGE sql AS $$ SELECT count(*) FROM active_users $$;\n";

fn migrate(db: &PgTestDb, dir: &Path, args: &[&str]) -> std::process::Output {
    dbkeeper(dir.parent().unwrap())
        .arg("migrate")
        .args(args)
        .args([
            "--engine",
            "postgres",
            "--pg-url",
            &db.url,
            "--migrations-dir",
        ])
        .arg(dir)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (name, checksum, applied_on) of dbkeeper_schema_repeatable, or nothing if it does not exist.
async fn recorded(db: &PgTestDb) -> Vec<(String, String, String)> {
    let client = db.client().await;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('dbkeeper_schema_repeatable') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if !exists {
        return Vec::new();
    }
    client
        .query(
            "SELECT name, checksum, applied_on::text FROM dbkeeper_schema_repeatable ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn view_columns(db: &PgTestDb) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_name = 'active_users' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn applied_after_versioned_once_while_unchanged_and_again_when_changed() {
    let db = PgTestDb::create().await;
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__users.sql", USERS),
            ("V1__users.down.sql", USERS_DOWN),
            // `b` uses the view `a` creates: name order is apply order.
            ("R__b_count.sql", FUNC),
            ("R__a_active_users.sql", VIEW_V1),
        ],
    );

    let dry = migrate(&db, &dir, &["up", "--dry-run"]);
    let dry = ok(&dry);
    assert!(dry.contains("would apply R__a_active_users"), "{dry}");
    assert!(recorded(&db).await.is_empty(), "a dry run records nothing");

    let first = ok(&migrate(&db, &dir, &["up"]));
    let (v1, a, b) = (
        first.find("applied V1__users").expect(&first),
        first.find("applied R__a_active_users").expect(&first),
        first.find("applied R__b_count").expect(&first),
    );
    assert!(v1 < a && a < b, "versioned first, then by name: {first}");
    assert_eq!(view_columns(&db).await, vec!["id"]);
    let count: i64 = db
        .client()
        .await
        .query_one("SELECT active_count()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    let rows = recorded(&db).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "a_active_users");
    // refinery's history holds versioned migrations only.
    let refinery: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(refinery, 1);

    // Unchanged: not applied again.
    let again = ok(&migrate(&db, &dir, &["up"]));
    assert!(again.contains("nothing to do"), "{again}");
    assert_eq!(recorded(&db).await, rows);

    let status = json_of(&migrate(&db, &dir, &["status", "--json"]));
    let reps = &status["engines"][0]["repeatables"];
    assert_eq!(reps[0]["name"], "a_active_users");
    assert_eq!(reps[0]["status"], "applied");
    assert_eq!(status["engines"][0]["pending"], 0);

    // Changed: shown as changed, applied again (only that one), recorded with the new checksum.
    std::fs::write(dir.join("R__a_active_users.sql"), VIEW_V2).unwrap();
    let status = json_of(&migrate(&db, &dir, &["status", "--json"]));
    assert_eq!(
        status["engines"][0]["repeatables"][0]["status"], "changed",
        "{status}"
    );
    assert_eq!(status["engines"][0]["pending"], 1);
    let text = ok(&migrate(&db, &dir, &["status"]));
    assert!(
        text.contains("changed") && text.contains("R__a_active_users"),
        "{text}"
    );
    // `validate` is about drift of applied versions; a changed repeatable is not drift.
    ok(&migrate(&db, &dir, &["validate"]));

    let third = migrate(&db, &dir, &["up", "--json"]);
    let json = json_of(&third);
    let steps = json["runs"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{json}");
    assert_eq!(steps[0]["name"], "a_active_users");
    assert_eq!(steps[0]["repeatable"], true);
    assert_eq!(view_columns(&db).await, vec!["id", "active"]);
    let after = recorded(&db).await;
    assert_ne!(after[0].1, rows[0].1, "new checksum recorded");
    assert_eq!(after[1], rows[1], "the unchanged one was not applied again");
}

#[tokio::test]
async fn a_failing_repeatable_rolls_back_and_is_not_recorded() {
    let db = PgTestDb::create().await;
    let bad = "CREATE OR REPLACE VIEW half_done AS SELECT 1 AS x;\n\
               SELECT id FROM no_such_table;\n";
    let (_work, dir) = workdir(
        "migrations",
        &[("V1__users.sql", USERS), ("R__broken.sql", bad)],
    );
    let out = migrate(&db, &dir, &["up"]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("R__broken failed"), "{err}");
    assert!(
        err.contains("R__broken.sql:2:"),
        "names file and line: {err}"
    );
    assert!(err.contains("no_such_table"), "{err}");
    let client = db.client().await;
    let half: bool = client
        .query_one("SELECT to_regclass('half_done') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !half,
        "the failed repeatable's first statement was rolled back"
    );
    assert!(recorded(&db).await.is_empty());
    // The versioned migration before it stays applied (it committed on its own).
    let users: bool = client
        .query_one("SELECT to_regclass('users') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(users);

    // A good version applies; a later bad change keeps the good definition and its record.
    std::fs::write(dir.join("R__broken.sql"), VIEW_V1).unwrap();
    ok(&migrate(&db, &dir, &["up"]));
    let good = recorded(&db).await;
    assert_eq!(good.len(), 1);
    std::fs::write(
        dir.join("R__broken.sql"),
        "DROP VIEW active_users;\nSELECT 1/0;\n",
    )
    .unwrap();
    let out = migrate(&db, &dir, &["up", "--json"]);
    assert_ne!(out.status.code(), Some(0));
    let json = json_of(&out);
    assert_eq!(json["runs"][0]["failure"]["repeatable"], true, "{json}");
    assert_eq!(json["runs"][0]["failure"]["name"], "broken");
    assert_eq!(view_columns(&db).await, vec!["id"], "the view survived");
    assert_eq!(recorded(&db).await, good);
}

#[tokio::test]
async fn down_does_not_revert_them_but_the_next_up_applies_them_again() {
    let db = PgTestDb::create().await;
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__users.sql", USERS),
            ("V1__users.down.sql", USERS_DOWN),
            ("R__active_users.sql", VIEW_V1),
        ],
    );
    ok(&migrate(&db, &dir, &["up"]));
    // The down script's CASCADE drops the view with its table.
    let down = ok(&migrate(&db, &dir, &["down", "--to", "0"]));
    assert!(down.contains("reverted V1__users"), "{down}");
    assert!(
        !down.contains("R__"),
        "down never reverts a repeatable: {down}"
    );
    assert!(view_columns(&db).await.is_empty());
    let status = json_of(&migrate(&db, &dir, &["status", "--json"]));
    assert_eq!(status["engines"][0]["repeatables"][0]["status"], "pending");
    let up = ok(&migrate(&db, &dir, &["up"]));
    assert!(up.contains("applied R__active_users"), "{up}");
    assert_eq!(view_columns(&db).await, vec!["id"]);
}

#[tokio::test]
async fn an_up_to_an_older_version_leaves_repeatables_for_later() {
    let db = PgTestDb::create().await;
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__users.sql", USERS),
            ("V2__more.sql", "CREATE TABLE more (id int);\n"),
            ("R__active_users.sql", VIEW_V1),
        ],
    );
    let first = ok(&migrate(&db, &dir, &["up", "--to", "1"]));
    assert!(!first.contains("R__"), "{first}");
    assert!(recorded(&db).await.is_empty());
    let rest = ok(&migrate(&db, &dir, &["up"]));
    assert!(rest.contains("applied R__active_users"), "{rest}");
}

#[test]
fn lint_covers_repeatables_and_malformed_ones_are_refused() {
    let (_work, dir) = workdir(
        "migrations",
        &[
            ("V1__users.sql", USERS),
            (
                "R__users_index.sql",
                "CREATE INDEX users_active ON users (active);\n",
            ),
        ],
    );
    let out = dbkeeper(dir.parent().unwrap())
        .args([
            "migrate",
            "lint",
            "--engine",
            "postgres",
            "--migrations-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let expected = format!(
        "{}:1:1: error[require-concurrent-index-creation]",
        dir.join("R__users_index.sql").display()
    );
    assert!(stdout.contains(&expected), "{stdout}");

    // Transaction control cannot work in a file that commits with its record.
    std::fs::write(
        dir.join("R__users_index.sql"),
        "BEGIN;\nCREATE OR REPLACE VIEW v AS SELECT 1;\nCOMMIT;\n",
    )
    .unwrap();
    let out = dbkeeper(dir.parent().unwrap())
        .args([
            "migrate",
            "lint",
            "--engine",
            "postgres",
            "--migrations-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("R__users_index.sql:1"), "{err}");
}

#[tokio::test]
async fn mongo_refuses_repeatable_files_naming_them() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = workdir(
        "mongo_migrations",
        &[
            ("V1__users.json", r#"[{"create": "users"}]"#),
            ("R__users_view.json", r#"[{"collMod": "users"}]"#),
        ],
    );
    let out = dbkeeper(dir.parent().unwrap())
        .args([
            "migrate",
            "status",
            "--engine",
            "mongo",
            "--mongo-url",
            &db.url,
            "--mongo-migrations-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("R__users_view.json"), "{err}");
    assert!(err.contains("PostgreSQL only"), "{err}");
}
