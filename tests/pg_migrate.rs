//! `dbkeeper migrate` against a real PostgreSQL: refinery compatibility, every subcommand, failure
//! mid-file, drift, missing files, dirty no-transaction migrations, rollback from captured down
//! scripts, JSON output, the advisory lock under eight concurrent runners and its timeout.

mod common;

use common::stdout_json as json_of;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{dbkeeper, PgTestDb};
use predicates::prelude::*;
use serde_json::Value;

const EXAMPLE_TABLES: [&str; 7] = [
    "customers",
    "products",
    "warehouses",
    "stock",
    "orders",
    "order_items",
    "stock_movements",
];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// `dbkeeper migrate ARGS --engine postgres --pg-url URL --migrations-dir DIR`, run in `dir`'s parent.
fn migrate(db: &PgTestDb, dir: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = dbkeeper(dir.parent().unwrap());
    cmd.arg("migrate")
        .args(args)
        .args([
            "--engine",
            "postgres",
            "--pg-url",
            &db.url,
            "--migrations-dir",
        ])
        .arg(dir);
    cmd
}

/// A fresh migrations directory (inside its own temp dir) holding `files`.
fn migrations(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    common::files_in("migrations", files)
}

/// The example migrations copied, so a test may change them.
fn copy_examples() -> (tempfile::TempDir, PathBuf) {
    let (root, dir) = migrations(&[]);
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    (root, dir)
}

/// (version, name, checksum) rows of refinery's table.
async fn refinery_rows(client: &tokio_postgres::Client) -> Vec<(i32, String, String)> {
    client
        .query(
            "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn table_exists(client: &tokio_postgres::Client, name: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .unwrap()
        .get(0)
}

async fn user_tables(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn statuses(status_json: &Value) -> Vec<(i64, String)> {
    status_json["engines"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_i64().unwrap(),
                m["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refinery_and_dbkeeper_share_history_in_both_directions() {
    let by_refinery = PgTestDb::create().await;
    let by_dbkeeper = PgTestDb::create().await;
    let dir = examples_dir();

    // Refinery's own loader and runner; V5 is CREATE INDEX CONCURRENTLY, which refinery can only
    // run inside a transaction (and so cannot run at all), hence --to 4 on both sides.
    let files = refinery::load_sql_migrations(&dir).unwrap();
    let mut refinery_client = by_refinery.client().await;
    let report = refinery::Runner::new(&files)
        .set_target(refinery::Target::Version(4))
        .run_async(&mut refinery_client)
        .await
        .unwrap();
    assert_eq!(report.applied_migrations().len(), 4);

    migrate(&by_dbkeeper, &dir, &["up", "--to", "4"])
        .assert()
        .success();
    let dbkeeper_client = by_dbkeeper.client().await;

    // Same rows, same table definition.
    let theirs = refinery_rows(&refinery_client).await;
    let ours = refinery_rows(&dbkeeper_client).await;
    assert_eq!(theirs.len(), 4);
    assert_eq!(ours, theirs);
    let columns =
        "SELECT column_name::text, data_type::text, character_maximum_length, is_nullable::text
                   FROM information_schema.columns WHERE table_name = 'refinery_schema_history'
                   ORDER BY ordinal_position";
    let describe = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, Option<i32>>(2),
                    r.get::<_, String>(3)
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        describe(dbkeeper_client.query(columns, &[]).await.unwrap()),
        describe(refinery_client.query(columns, &[]).await.unwrap())
    );
    // applied_on: both RFC 3339 as the `time` crate formats it (parse and re-format round-trips).
    for client in [&refinery_client, &dbkeeper_client] {
        for row in client
            .query("SELECT applied_on FROM refinery_schema_history", &[])
            .await
            .unwrap()
        {
            let text: String = row.get(0);
            let parsed =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .unwrap();
            assert_eq!(
                parsed
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
                text
            );
            assert!(text.ends_with('Z'), "{text}");
        }
    }

    // dbkeeper adopts the refinery-migrated database: 1-4 applied, only V5 runs.
    let before: Vec<String> = refinery_client
        .query(
            "SELECT applied_on FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let out = migrate(&by_refinery, &dir, &["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let status = statuses(&json_of(&out));
    assert_eq!(
        status,
        vec![
            (1, "applied".into()),
            (2, "applied".into()),
            (3, "applied".into()),
            (4, "applied".into()),
            (5, "pending".into())
        ]
    );
    let out = migrate(&by_refinery, &dir, &["up", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let steps = json_of(&out)["runs"][0]["steps"].clone();
    assert_eq!(steps.as_array().unwrap().len(), 1, "{steps}");
    assert_eq!(steps[0]["version"], 5);
    let after: Vec<String> = refinery_client
        .query(
            "SELECT applied_on FROM refinery_schema_history WHERE version <= 4 ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(after, before, "rows refinery wrote must stay untouched");

    // And refinery accepts what dbkeeper wrote: nothing divergent, nothing to apply.
    migrate(&by_dbkeeper, &dir, &["up"]).assert().success();
    let mut dbkeeper_client = by_dbkeeper.client().await;
    let report = refinery::Runner::new(&files)
        .run_async(&mut dbkeeper_client)
        .await
        .unwrap();
    assert!(report.applied_migrations().is_empty());
}

#[tokio::test]
async fn status_is_read_only_and_exit_code_flags_pending() {
    let db = PgTestDb::create().await;
    let dir = examples_dir();
    let out = migrate(&db, &dir, &["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    let json = json_of(&out);
    assert_eq!(json["engines"][0]["pending"], 5);
    assert!(statuses(&json).iter().all(|(_, s)| s == "pending"));
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "pending    V1__create_customers_and_products",
        ));
    let client = db.client().await;
    assert!(
        user_tables(&client).await.is_empty(),
        "status must not create anything"
    );

    migrate(&db, &dir, &["up"]).assert().success();
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "5 applied, 0 pending, 0 problem(s)",
        ));
}

#[tokio::test]
async fn examples_apply_work_and_roll_back_completely() {
    let db = PgTestDb::create().await;
    let dir = examples_dir();
    migrate(&db, &dir, &["up"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "applied V5__index_order_items_concurrently",
        ));
    let client = db.client().await;
    for t in EXAMPLE_TABLES {
        assert!(table_exists(&client, t).await, "{t}");
    }
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'order_items_product_idx'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid, "the concurrently built index must be valid");

    // The transaction-handling example: a transfer moves stock atomically, a short one changes
    // nothing, and the check constraint backs it up.
    client
        .batch_execute(
            "INSERT INTO products (sku, name, price_cents) VALUES ('SKU-1', 'Widget', 250);
             INSERT INTO warehouses (code, city) VALUES ('BER', 'Berlin'), ('LIS', 'Lisbon');
             INSERT INTO stock (warehouse_id, product_id, quantity) VALUES (1, 1, 10);
             CALL transfer_stock(1, 1, 2, 4);",
        )
        .await
        .unwrap();
    let quantities = || async {
        client
            .query(
                "SELECT warehouse_id, quantity FROM stock ORDER BY warehouse_id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i32>(1)))
            .collect::<Vec<_>>()
    };
    assert_eq!(quantities().await, vec![(1, 6), (2, 4)]);
    let err = client
        .batch_execute("CALL transfer_stock(1, 2, 1, 5)")
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("cannot move 5"),
        "{err}"
    );
    assert_eq!(quantities().await, vec![(1, 6), (2, 4)]);
    client
        .batch_execute("TRUNCATE stock, stock_movements, warehouses, products CASCADE")
        .await
        .unwrap();

    migrate(&db, &dir, &["down", "--to", "0"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "reverted V1__create_customers_and_products",
        ));
    assert_eq!(
        user_tables(&client).await,
        vec![
            "dbkeeper_schema_history",
            "dbkeeper_schema_log",
            "refinery_schema_history"
        ]
    );
    assert!(refinery_rows(&client).await.is_empty());
    // The down scripts really undo everything: the set applies again from scratch.
    migrate(&db, &dir, &["up"]).assert().success();
    assert_eq!(refinery_rows(&client).await.len(), 5);
}

#[tokio::test]
async fn failure_mid_file_names_file_line_and_leaves_no_trace() {
    let db = PgTestDb::create().await;
    let (_root, dir) = migrations(&[
        ("V1__first.sql", "CREATE TABLE first (id int);\n"),
        (
            "V2__broken.sql",
            "CREATE TABLE second (id int);\n\n-- a comment\nINSERT INTO second VALUES (1);\nSELECT nope\n  FROM second;\n",
        ),
        ("V3__third.sql", "CREATE TABLE third (id int);\n"),
    ]);
    migrate(&db, &dir, &["up"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("applied V1__first"))
        .stderr(
            predicate::str::contains("V2__broken.sql:5:8")
                .and(predicate::str::contains("column \"nope\" does not exist"))
                .and(predicate::str::contains("5 | SELECT nope"))
                .and(predicate::str::contains("rolled back")),
        );
    let client = db.client().await;
    let rows = refinery_rows(&client).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, 1);
    assert!(table_exists(&client, "first").await);
    assert!(
        !table_exists(&client, "second").await,
        "the failed migration must leave nothing"
    );
    assert!(
        !table_exists(&client, "third").await,
        "the run must stop at the failure"
    );
    let logged: i64 = client
        .query_one(
            "SELECT count(*) FROM dbkeeper_schema_log WHERE version = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 0);

    // A runtime error has no position: the statement's line is reported.
    std::fs::write(
        dir.join("V2__broken.sql"),
        "CREATE TABLE second (id int CHECK (id > 0));\nINSERT INTO second\n  VALUES (1), (-1);\n",
    )
    .unwrap();
    migrate(&db, &dir, &["up", "--json"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains(
            "V2__broken.sql:2: ERROR: new row for relation",
        ));
    // Fixed, it applies along with what follows.
    std::fs::write(
        dir.join("V2__broken.sql"),
        "CREATE TABLE second (id int);\n",
    )
    .unwrap();
    migrate(&db, &dir, &["up"]).assert().success();
    assert_eq!(refinery_rows(&client).await.len(), 3);
}

#[tokio::test]
async fn drift_and_missing_files_are_listed_refused_and_repaired_with_an_audit_trail() {
    let db = PgTestDb::create().await;
    let (_root, dir) = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);\n"),
        ("V1__a.down.sql", "DROP TABLE a;\n"),
        ("V2__b.sql", "CREATE TABLE b (id int);\n"),
    ]);
    migrate(&db, &dir, &["up"]).assert().success();
    std::fs::write(
        dir.join("V1__a.sql"),
        "CREATE TABLE a (id int); -- edited after it ran\n",
    )
    .unwrap();
    std::fs::write(dir.join("V1__a.down.sql"), "DROP TABLE a; -- new down\n").unwrap();
    std::fs::remove_file(dir.join("V2__b.sql")).unwrap();

    // validate lists every problem, not just the first.
    let out = migrate(&db, &dir, &["validate", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json = json_of(&out);
    assert_eq!(json["engines"][0]["problems"], 2);
    assert_eq!(
        statuses(&json),
        vec![(1, "divergent".into()), (2, "missing".into())]
    );
    migrate(&db, &dir, &["validate"]).assert().code(1).stdout(
        predicate::str::contains("divergent  V1__a")
            .and(predicate::str::contains("missing    V2__b")),
    );
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .code(1);
    migrate(&db, &dir, &["up"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("repair"));

    // Repair records the edited file (dry run first: it changes nothing).
    let client = db.client().await;
    let recorded_before = refinery_rows(&client).await;
    migrate(&db, &dir, &["repair", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("would record V1__a checksum"));
    assert_eq!(refinery_rows(&client).await, recorded_before);
    migrate(&db, &dir, &["repair"])
        .assert()
        .success()
        .stdout(predicate::str::contains("record V1__a checksum"));
    let (detail, down): (String, String) = {
        let row = client
            .query_one(
                "SELECT l.detail, c.down_sql FROM dbkeeper_schema_log l
                 JOIN dbkeeper_schema_history c USING (version)
                 WHERE l.action = 'repair_checksum' AND version = 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(detail.contains(&recorded_before[0].2), "{detail}");
    assert!(down.contains("new down"), "{down}");
    // V2's file is still missing: that is reported, not silently forgotten.
    migrate(&db, &dir, &["validate"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("missing    V2__b"));
    std::fs::write(dir.join("V2__b.sql"), "CREATE TABLE b (id int);\n").unwrap();
    migrate(&db, &dir, &["validate"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ok: every applied migration matches its file",
        ));
}

#[tokio::test]
async fn interrupted_no_transaction_migration_is_dirty_until_repaired() {
    let db = PgTestDb::create().await;
    let slow = "-- dbkeeper:no-transaction\nCREATE TABLE slow (id int);\nSELECT pg_sleep(60);\nCREATE INDEX CONCURRENTLY slow_idx ON slow (id);\n";
    let (_root, dir) = migrations(&[("V1__slow_index.sql", slow)]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dbkeeper"))
        .args(["migrate", "up", "--engine", "postgres", "--pg-url", &db.url])
        .arg("--migrations-dir")
        .arg(&dir)
        .env_remove("DBKEEPER_PG_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let backend_pid: i32 = loop {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            break row.get(0);
        }
        assert!(Instant::now() < deadline, "the migration never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The crash: the runner dies mid-file. The operator then ends its orphaned session.
    child.kill().unwrap();
    child.wait().unwrap();
    client
        .execute("SELECT pg_terminate_backend($1)", &[&backend_pid])
        .await
        .unwrap();

    let out = migrate(&db, &dir, &["status", "--json"]).output().unwrap();
    let json = json_of(&out);
    assert_eq!(statuses(&json), vec![(1, "dirty".into())]);
    let detail = json["engines"][0]["migrations"][0]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("did not record completion"), "{detail}");
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("dirty      V1__slow_index"));
    migrate(&db, &dir, &["up"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("V1__slow_index is dirty"));
    migrate(&db, &dir, &["repair"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--dirty applied"));
    // The operator undoes the partial work, tells dbkeeper so, and the fixed file applies.
    client.batch_execute("DROP TABLE slow").await.unwrap();
    migrate(&db, &dir, &["repair", "--dirty", "rolled-back"])
        .assert()
        .success()
        .stdout(predicate::str::contains("forget dirty V1__slow_index"));
    std::fs::write(
        dir.join("V1__slow_index.sql"),
        slow.replace("SELECT pg_sleep(60);\n", ""),
    )
    .unwrap();
    migrate(&db, &dir, &["up"]).assert().success();
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .success();
    let actions: Vec<String> = client
        .query("SELECT action FROM dbkeeper_schema_log ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, vec!["repair_forget_dirty", "apply"]);
}

#[tokio::test]
async fn failed_no_transaction_migration_is_dirty_with_its_error() {
    let db = PgTestDb::create().await;
    let (_root, dir) = migrations(&[(
        "V1__index.sql",
        "-- dbkeeper:no-transaction\nCREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY a_idx ON missing (id);\n",
    )]);
    migrate(&db, &dir, &["up"]).assert().code(3).stderr(
        predicate::str::contains("V1__index.sql:3:")
            .and(predicate::str::contains("recorded as dirty"))
            .and(predicate::str::contains("--dirty rolled-back")),
    );
    let out = migrate(&db, &dir, &["status", "--json"]).output().unwrap();
    let json = json_of(&out);
    assert_eq!(statuses(&json), vec![(1, "dirty".into())]);
    let detail = json["engines"][0]["migrations"][0]["detail"]
        .as_str()
        .unwrap();
    assert!(
        detail.contains("relation \"missing\" does not exist"),
        "{detail}"
    );
    // The operator finishes the work by hand and marks it applied.
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE missing (id int); CREATE INDEX a_idx ON missing (id)")
        .await
        .unwrap();
    migrate(&db, &dir, &["repair", "--dirty", "applied"])
        .assert()
        .success()
        .stdout(predicate::str::contains("mark dirty V1__index as applied"));
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .success();
    assert_eq!(refinery_rows(&client).await.len(), 1);
}

#[tokio::test]
async fn rollback_uses_the_recorded_down_script_after_the_files_are_deleted() {
    let db = PgTestDb::create().await;
    let (_root, dir) = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);\n"),
        ("V1__a.down.sql", "DROP TABLE a;\n"),
        ("V2__b.sql", "CREATE TABLE b (id int);\n"),
        ("V2__b.down.sql", "DROP TABLE b;\n"),
    ]);
    migrate(&db, &dir, &["up"]).assert().success();
    std::fs::remove_file(dir.join("V2__b.sql")).unwrap();
    std::fs::remove_file(dir.join("V2__b.down.sql")).unwrap();
    migrate(&db, &dir, &["down", "--dry-run"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("would revert V2__b")
                .and(predicate::str::contains("DROP TABLE b;")),
        );
    migrate(&db, &dir, &["down"])
        .assert()
        .success()
        .stdout(predicate::str::contains("reverted V2__b"));
    let client = db.client().await;
    assert!(!table_exists(&client, "b").await);
    assert!(table_exists(&client, "a").await);
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .success();
}

#[tokio::test]
async fn rollback_without_a_down_script_is_refused_before_anything_runs() {
    let db = PgTestDb::create().await;
    let (_root, dir) = migrations(&[
        ("V1__no_down.sql", "CREATE TABLE a (id int);\n"),
        ("V2__b.sql", "CREATE TABLE b (id int);\n"),
        ("V2__b.down.sql", "DROP TABLE b;\n"),
    ]);
    migrate(&db, &dir, &["up"]).assert().success();
    migrate(&db, &dir, &["down", "--steps", "2"])
        .assert()
        .code(4)
        .stderr(
            predicate::str::contains("V1__no_down")
                .and(predicate::str::contains("Nothing was run")),
        );
    let client = db.client().await;
    assert!(
        table_exists(&client, "b").await,
        "V2 must not have been reverted"
    );
    assert_eq!(refinery_rows(&client).await.len(), 2);
    // A failing down script is undone as a whole; the migration stays applied.
    client.batch_execute("DROP TABLE b").await.unwrap();
    migrate(&db, &dir, &["down"]).assert().code(3).stderr(
        predicate::str::contains("V2__b down script")
            .and(predicate::str::contains("stays applied")),
    );
    assert_eq!(refinery_rows(&client).await.len(), 2);
}

#[tokio::test]
async fn baseline_records_without_running_and_only_once() {
    let db = PgTestDb::create().await;
    let (_root, dir) = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);\n"),
        ("V2__b.sql", "CREATE TABLE b (id int);\n"),
        ("V3__c.sql", "CREATE TABLE c (id int);\n"),
    ]);
    let out = migrate(&db, &dir, &["baseline", "2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json = json_of(&out);
    assert_eq!(
        json["baselines"][0]["recorded"].as_array().unwrap().len(),
        2
    );
    let client = db.client().await;
    assert!(
        !table_exists(&client, "a").await,
        "baseline must not run anything"
    );
    let out = migrate(&db, &dir, &["status", "--json"]).output().unwrap();
    assert_eq!(
        statuses(&json_of(&out)),
        vec![
            (1, "applied".into()),
            (2, "applied".into()),
            (3, "pending".into())
        ]
    );
    migrate(&db, &dir, &["baseline", "3"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("already recorded"));
    migrate(&db, &dir, &["up"]).assert().success();
    assert!(table_exists(&client, "c").await && !table_exists(&client, "a").await);
}

#[tokio::test]
async fn dry_runs_print_the_sql_and_touch_nothing() {
    let db = PgTestDb::create().await;
    let dir = examples_dir();
    migrate(&db, &dir, &["up", "--dry-run", "--to", "2"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("would apply V1__create_customers_and_products")
                .and(predicate::str::contains("CREATE TABLE customers ("))
                .and(predicate::str::contains(
                    "would apply V2__create_warehouses_and_stock",
                ))
                .and(predicate::str::contains("V3__").not()),
        );
    let client = db.client().await;
    assert!(user_tables(&client).await.is_empty());

    migrate(&db, &dir, &["up"]).assert().success();
    migrate(&db, &dir, &["down", "--dry-run", "--steps", "1"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("would revert V5__index_order_items_concurrently").and(
                predicate::str::contains("DROP INDEX CONCURRENTLY IF EXISTS orders_pending_idx"),
            ),
        );
    assert_eq!(refinery_rows(&client).await.len(), 5);
    assert!(table_exists(&client, "orders_pending_idx").await);
}

#[tokio::test]
async fn every_subcommand_speaks_json() {
    let db = PgTestDb::create().await;
    let (_root, dir) = copy_examples();
    let run = |args: &[&str]| {
        let out = migrate(&db, &dir, args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_of(&out)
    };
    let status = run(&["status", "--json"]);
    assert_eq!(status["engines"][0]["engine"], "postgres");
    assert_eq!(status["engines"][0]["migrations"][0]["has_down"], true);

    let up = run(&["up", "--json", "--dry-run"]);
    assert_eq!(up["runs"][0]["dry_run"], true);
    assert!(up["runs"][0]["steps"][4]["script"]
        .as_str()
        .unwrap()
        .contains("CONCURRENTLY"));
    assert_eq!(up["runs"][0]["steps"][4]["no_transaction"], true);

    let up = run(&["up", "--json"]);
    assert_eq!(up["runs"][0]["steps"].as_array().unwrap().len(), 5);
    assert!(up["runs"][0]["failure"].is_null());

    let validate = run(&["validate", "--json"]);
    assert_eq!(validate["engines"][0]["problems"], 0);

    let down = run(&["down", "--json"]);
    assert_eq!(down["runs"][0]["direction"], "down");
    assert_eq!(down["runs"][0]["steps"][0]["version"], 5);

    let new = run(&["new", "add_invoices", "--json"]);
    assert_eq!(new["version"], 6);
    assert!(dir.join("V6__add_invoices.sql").exists());
    assert!(dir.join("V6__add_invoices.down.sql").exists());

    std::fs::write(
        dir.join("V1__create_customers_and_products.sql"),
        std::fs::read_to_string(dir.join("V1__create_customers_and_products.sql")).unwrap()
            + "\n-- reviewed\n",
    )
    .unwrap();
    let repair = run(&["repair", "--json"]);
    let action = &repair["repairs"][0]["actions"][0];
    assert_eq!(action["action"], "update_checksum");
    assert_eq!(action["version"], 1);
    assert_ne!(action["old_checksum"], action["new_checksum"]);

    let fresh = PgTestDb::create().await;
    let out = migrate(&fresh, &dir, &["baseline", "1", "--json"])
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["baselines"][0]["recorded"][0]["version"], 1);
}

#[test]
fn new_writes_the_next_numbered_pair() {
    let (_root, dir) = copy_examples();
    let mut cmd = dbkeeper(dir.parent().unwrap());
    cmd.args([
        "migrate",
        "new",
        "add_invoices",
        "--engine",
        "postgres",
        "--migrations-dir",
    ])
    .arg(&dir)
    .assert()
    .success()
    .stdout(predicate::str::contains("V6__add_invoices.sql"));
    let up = std::fs::read_to_string(dir.join("V6__add_invoices.sql")).unwrap();
    assert!(
        up.contains("dbkeeper:no-transaction"),
        "the template explains the directive"
    );
    assert!(dir.join("V6__add_invoices.down.sql").exists());
    // The new pair loads (an empty migration is valid) and sorts last.
    let loaded = dbkeeper::postgres::migrate::load_migrations(&dir).unwrap();
    assert_eq!(loaded.last().unwrap().version, 6);
    assert!(loaded.last().unwrap().down.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_runners_apply_every_migration_exactly_once() {
    let db = PgTestDb::create().await;
    let dir = examples_dir();
    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_dbkeeper"))
                .args([
                    "migrate", "up", "--engine", "postgres", "--json", "--pg-url", &db.url,
                ])
                .arg("--migrations-dir")
                .arg(&dir)
                .env_remove("DBKEEPER_PG_URL")
                .env_remove("DATABASE_URL")
                .env_remove("RUST_LOG")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied_versions = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        for step in json_of(&out)["runs"][0]["steps"].as_array().unwrap() {
            applied_versions.push(step["version"].as_i64().unwrap());
        }
    }
    applied_versions.sort();
    assert_eq!(applied_versions, vec![1, 2, 3, 4, 5]);
    let client = db.client().await;
    assert_eq!(refinery_rows(&client).await.len(), 5);
    let applies: i64 = client
        .query_one(
            "SELECT count(*) FROM dbkeeper_schema_log WHERE action = 'apply'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(applies, 5);
}

#[tokio::test]
async fn lock_timeout_names_the_holder_and_status_does_not_wait() {
    let db = PgTestDb::create().await;
    let dir = examples_dir();
    let holder = common::pg_connect(&format!("{}?application_name=schema-freeze", db.url)).await;
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&dbkeeper::postgres::migrate::MIGRATION_LOCK_KEY],
        )
        .await
        .unwrap();
    let started = Instant::now();
    migrate(&db, &dir, &["up", "--lock-timeout", "1"])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("waiting for the migration lock")
                .and(predicate::str::contains("gave up after 1s"))
                .and(predicate::str::contains("schema-freeze"))
                .and(predicate::str::contains(format!("pid {holder_pid}"))),
        );
    assert!(started.elapsed() < Duration::from_secs(15));
    // Reading never takes the lock.
    migrate(&db, &dir, &["status"]).assert().success();
    let client = db.client().await;
    assert!(refinery_rows_absent(&client).await);
    // Released, the next runner goes through.
    holder
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&dbkeeper::postgres::migrate::MIGRATION_LOCK_KEY],
        )
        .await
        .unwrap();
    migrate(&db, &dir, &["up", "--lock-timeout", "5"])
        .assert()
        .success();
}

async fn refinery_rows_absent(client: &tokio_postgres::Client) -> bool {
    !table_exists(client, "refinery_schema_history").await
}

/// Regression: migrations applied by refinery have no captured down script; `down` must use the
/// `.down` file as long as the up file is the one that was applied, and refuse when it changed.
#[tokio::test]
async fn refinery_applied_migrations_roll_back_with_the_unchanged_files_down_script() {
    let db = PgTestDb::create().await;
    let (_root, dir) = migrations(&[
        ("V1__a.sql", "CREATE TABLE a (id int);\n"),
        ("V1__a.down.sql", "DROP TABLE a;\n"),
        ("V2__b.sql", "CREATE TABLE b (id int);\n"),
        ("V2__b.down.sql", "DROP TABLE b;\n"),
    ]);
    let files = refinery::load_sql_migrations(&dir).unwrap();
    let mut client = db.client().await;
    refinery::Runner::new(&files)
        .run_async(&mut client)
        .await
        .unwrap();

    migrate(&db, &dir, &["down"]).assert().success();
    assert!(
        !table_exists(&client, "b").await,
        "V2 reverted with V2__b.down.sql"
    );
    assert_eq!(refinery_rows(&client).await.len(), 1);

    // The up file changed since refinery applied it: its .down file may not fit any more.
    std::fs::write(dir.join("V1__a.sql"), "CREATE TABLE a (id bigint);\n").unwrap();
    migrate(&db, &dir, &["down"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("V1__a"));
    assert!(table_exists(&client, "a").await);
}

/// The down script of a no-transaction migration runs outside a transaction as well, even when
/// the `.down` file does not repeat the directive: `DROP INDEX CONCURRENTLY` undoes `CREATE
/// INDEX CONCURRENTLY` (inside a transaction PostgreSQL refuses it, and the captured script
/// could never run).
#[tokio::test]
async fn a_no_transaction_migrations_down_script_runs_outside_a_transaction_too() {
    let db = PgTestDb::create().await;
    db.client()
        .await
        .batch_execute("CREATE TABLE t3 (a int)")
        .await
        .unwrap();
    let (_work, dir) = migrations(&[
        (
            "V1__idx.sql",
            "-- dbkeeper:no-transaction\nCREATE INDEX CONCURRENTLY t3_a ON t3 (a);\n",
        ),
        ("V1__idx.down.sql", "DROP INDEX CONCURRENTLY t3_a;\n"),
    ]);
    migrate(&db, &dir, &["up"]).assert().success();
    let indexes = |client: tokio_postgres::Client| async move {
        client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 't3_a'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(indexes(db.client().await).await, 1);
    // The file is gone: the captured script (with the inherited directive) is what runs.
    std::fs::remove_file(dir.join("V1__idx.down.sql")).unwrap();
    migrate(&db, &dir, &["down"]).assert().success();
    assert_eq!(indexes(db.client().await).await, 0);
}
