//! Hostile PostgreSQL migrations, beyond what tests/pg_migrate.rs and tests/mongo_migrate.rs
//! already prove (a migration failing half-way, eight concurrent runners per engine, the
//! migration lock's timeout, a killed MongoDB runner's lease expiring):
//! - a migration that waits forever for a table lock gives up at `--lock-timeout`, rolled back;
//! - a runner SIGKILLed in the middle of a long statement does not keep the migration lock (or
//!   its half-done transaction) alive: the next runner gets through at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{dbkeeper, PgTestDb};
use predicates::prelude::*;

fn migrations(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    common::files_in("migrations", files)
}

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
        .arg(dir)
        .timeout(Duration::from_secs(30));
    cmd
}

async fn applied_versions(client: &tokio_postgres::Client) -> Vec<i32> {
    client
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_waiting_forever_for_a_table_lock_gives_up_at_the_lock_timeout() {
    let db = PgTestDb::create().await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);")
        .await
        .unwrap();
    // A long transaction (a report, a stuck session) holds the table.
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS SHARE MODE;")
        .await
        .unwrap();
    let (_root, dir) = migrations(&[
        ("V1__audit.sql", "CREATE TABLE audit (id int);"),
        (
            "V2__add_note.sql",
            "ALTER TABLE orders ADD COLUMN note text;",
        ),
    ]);
    let started = Instant::now();
    migrate(&db, &dir, &["up", "--lock-timeout", "2"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("V2__add_note"))
        .stderr(predicate::str::contains("lock timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    // V1 stays applied, V2 left nothing behind; once the table is free V2 goes through.
    assert_eq!(applied_versions(&client).await, vec![1]);
    holder.batch_execute("COMMIT").await.unwrap();
    migrate(&db, &dir, &["up", "--lock-timeout", "2"])
        .assert()
        .success();
    assert_eq!(applied_versions(&client).await, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_statement_releases_the_migration_lock_at_once() {
    let db = PgTestDb::create().await;
    let slow = "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);\n";
    let (_root, dir) = migrations(&[("V1__slow.sql", slow)]);
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
    while client
        .query_opt(
            "SELECT 1 FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%'",
            &[],
        )
        .await
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "the migration never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The fixed file applies right away: the dead runner's session (and with it the lock and
    // its uncommitted CREATE TABLE) is gone within seconds, not after its 60 s statement.
    std::fs::write(dir.join("V1__slow.sql"), "CREATE TABLE slow (id int);\n").unwrap();
    let started = Instant::now();
    migrate(&db, &dir, &["up", "--lock-timeout", "10"])
        .assert()
        .success();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(applied_versions(&client).await, vec![1]);
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .success();
}
