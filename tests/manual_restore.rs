//! docs/archive-format.md promises a restore with stock tools only (tar, zstd, age, jq, psql).
//! This test runs the shell block of its "Manual restore with stock tools" section, as written,
//! on an encrypted archive of a database with a sequence, a materialized view and a table
//! without columns, and checks the result.

mod common;

use std::path::Path;
use std::process::Command;

use common::{dbkeeper, pg_url_with_db, PgTestDb};

/// The first ```sh block after the section heading, without its example `A=`/`KEY=`/`DB=`.
fn documented_commands() -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/archive-format.md"),
    )
    .unwrap();
    let section = doc
        .split("## Manual restore with stock tools")
        .nth(1)
        .expect("docs/archive-format.md lost its manual restore section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the section has a ```sh block");
    block
        .lines()
        .filter(|l| !(l.starts_with("A=") || l.starts_with("KEY=") || l.starts_with("DB=")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// PostgreSQL's client tools (psql, createdb) on PATH.
fn path_with_pg_bin() -> String {
    let mut dirs: Vec<String> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").display().to_string())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs.push(std::env::var("PATH").unwrap_or_default());
    dirs.join(":")
}

#[tokio::test]
async fn the_documented_manual_restore_works_with_stock_tools() {
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, note text);
             INSERT INTO items (name, note)
               SELECT 'item ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE E'tab\\there' END
               FROM generate_series(1, 300) g;
             SELECT setval('items_id_seq', 1000);
             CREATE MATERIALIZED VIEW item_names AS SELECT name FROM items WHERE id <= 10;
             CREATE TABLE no_columns ();
             INSERT INTO no_columns DEFAULT VALUES;
             INSERT INTO no_columns DEFAULT VALUES;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    assert!(Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen (apt-get install age)")
        .status
        .success());
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    let public = String::from_utf8(public.stdout).unwrap();
    let archive = dir.path().join("manual.dbk.tar");
    dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "backup", "--chunk-bytes", "2048"])
        .args(["--recipient", public.trim(), "--output"])
        .arg(&archive)
        .assert()
        .success();

    let target = common::unique_name("dbk_manual");
    let server = url::Url::parse(&common::pg_server_url()).unwrap();
    let script = format!("set -euo pipefail\n{}", documented_commands());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path_with_pg_bin())
        .env("A", &archive)
        .env("KEY", &key)
        .env("DB", &target)
        .env("PGHOST", server.host_str().unwrap())
        .env("PGPORT", server.port().unwrap_or(5432).to_string())
        .env("PGUSER", server.username())
        .output()
        .unwrap();
    let restored = PgTestDb::adopt(&target, pg_url_with_db(&common::pg_server_url(), &target));
    assert!(
        out.status.success(),
        "the documented commands failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let client = restored.client().await;
    let one = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(one("SELECT count(*) FROM items").await, 300);
    assert_eq!(
        one("SELECT count(*) FROM items WHERE note IS NULL").await,
        100
    );
    assert_eq!(one("SELECT count(*) FROM item_names").await, 10);
    assert_eq!(one("SELECT count(*) FROM no_columns").await, 2);
    assert_eq!(one("SELECT nextval('items_id_seq')").await, 1001);
}
