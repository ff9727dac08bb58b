//! PostgreSQL backup -> restore, proven: the restored schema dumps identically, every table's
//! rows are identical, a backup taken under concurrent writes restores consistently, and a
//! damaged archive or an unsafe target is refused before anything is touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{dbkeeper, pg_connect, pg_server_url, pg_url_with_db, unique_name, PgTestDb};
use predicates::prelude::*;

/// Every object kind a real schema has, and data that is awkward for COPY text.
const FIXTURE: &str = r#"
CREATE EXTENSION citext;
CREATE SCHEMA shop;
COMMENT ON SCHEMA shop IS 'the shop';
CREATE TYPE shop.status AS ENUM ('new', 'paid', 'shipped');
CREATE DOMAIN shop.price AS numeric(14,2) CHECK (VALUE >= 0);

CREATE TABLE shop.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    name text,
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED
);
COMMENT ON COLUMN shop.customers.email IS 'case-insensitive, unique';

CREATE TABLE shop.orders (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers (id),
    status shop.status NOT NULL DEFAULT 'new',
    total shop.price,
    note text
);
CREATE INDEX orders_customer_idx ON shop.orders (customer_id);
COMMENT ON TABLE shop.orders IS 'Orders, with ''quotes''';

CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.note := coalesce(NEW.note, '') || ' (touched; GRANT nothing)';
    RETURN NEW;
END $$;
CREATE TRIGGER orders_touch BEFORE INSERT ON shop.orders
    FOR EACH ROW EXECUTE FUNCTION shop.touch();

ALTER TABLE shop.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_visible ON shop.orders USING (status <> 'shipped');

CREATE TABLE shop.events (
    id bigserial,
    at date NOT NULL,
    payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE shop.events_2023 PARTITION OF shop.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE shop.events_rest PARTITION OF shop.events DEFAULT;
CREATE INDEX events_at_idx ON shop.events (at);

CREATE TABLE shop.base (id int, label text);
CREATE TABLE shop.derived (extra text) INHERITS (shop.base);

CREATE VIEW shop.order_totals AS
    SELECT customer_id, sum(total) AS total, count(*) AS orders FROM shop.orders GROUP BY customer_id;
CREATE MATERIALIZED VIEW shop.totals_mv AS SELECT * FROM shop.order_totals;
CREATE UNIQUE INDEX totals_mv_customer ON shop.totals_mv (customer_id);
CREATE MATERIALIZED VIEW shop.totals_of_mv AS SELECT count(*) AS n FROM shop.totals_mv;
CREATE MATERIALIZED VIEW shop.never_filled AS SELECT 1 AS x WITH NO DATA;

CREATE SEQUENCE shop.invoice_no START 1000;
SELECT nextval('shop.invoice_no') FROM generate_series(1, 3);
CREATE SEQUENCE shop.untouched;

GRANT USAGE ON SCHEMA shop TO PUBLIC;
GRANT SELECT ON shop.order_totals TO PUBLIC;

CREATE TABLE public."We""ird tab.le/../x" ("Col A" text, "tab	col" int);
CREATE TABLE public.awkward (
    id int PRIMARY KEY,
    t text, b bytea, n numeric, ts timestamptz, d date, f float8, arr text[], j jsonb
);
CREATE TABLE public.no_columns ();

INSERT INTO shop.customers (email, name)
    SELECT 'user' || i || '@example.com', 'name ' || i FROM generate_series(1, 300) i;
INSERT INTO shop.customers (email, name) VALUES ('ÜNICODE@example.com', 'Zoë 日本語 🎉'), ('null@example.com', NULL);
INSERT INTO shop.orders (customer_id, status, total, note)
    SELECT 1 + i % 300, (ARRAY['new','paid','shipped'])[1 + i % 3]::shop.status, i * 1.25, 'order ' || i
    FROM generate_series(1, 2000) i;
INSERT INTO shop.events (at, payload)
    SELECT DATE '2023-01-01' + (i % 700), jsonb_build_object('i', i, 's', repeat('x', i % 50))
    FROM generate_series(1, 3000) i;
INSERT INTO shop.base VALUES (1, 'base');
INSERT INTO shop.derived VALUES (2, 'derived', 'extra');
INSERT INTO public."We""ird tab.le/../x" VALUES ('a	b', 1), (E'line\nbreak', 2), (NULL, NULL);
INSERT INTO public.no_columns DEFAULT VALUES;
INSERT INTO public.no_columns DEFAULT VALUES;
INSERT INTO public.awkward VALUES
    (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (2, E'tab\there\nnewline\\backslash\r\ncrlf', '\x00ff10', 'NaN', 'infinity', '-infinity', 'Infinity', ARRAY['a,b', NULL, '"q"'], '{"k": [1, null, "\u00e9"]}'),
    (3, 'ünïcødé ✓ 𝄞', decode(repeat('00010203fdfeff', 100), 'hex'), '-0.000000000000000000000000000001', '-infinity', 'infinity', '-Infinity', '{}', 'null'),
    (4, repeat('huge text ', 200000), '', '123456789012345678901234567890.123456789', '1999-12-31 23:59:59.999999+00', '0001-01-01 BC', 'NaN', ARRAY[''], '[]'),
    (5, '\.', '\x5c2e', '1e-1000', '2000-01-01', '2000-01-01', 1e308, ARRAY['\N'], '"\\N"');
REFRESH MATERIALIZED VIEW shop.totals_mv;
REFRESH MATERIALIZED VIEW shop.totals_of_mv;
"#;

async fn load_fixture(db: &PgTestDb) {
    db.client()
        .await
        .batch_execute(FIXTURE)
        .await
        .unwrap_or_else(|e| panic!("fixture: {e:?}"));
}

/// Drops a database created by a restore (by name) when the test ends, unless it failed.
struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: keeping database {}", self.0);
            return;
        }
        let name = self.0.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let admin = pg_connect(&pg_server_url()).await;
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                })
        })
        .join()
        .ok();
    }
}

async fn database_exists(name: &str) -> bool {
    pg_connect(&pg_server_url())
        .await
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

/// Backs `url` up into `dir` and returns the archive's path.
fn backup(dir: &Path, url: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join("out");
    let assert = dbkeeper(dir)
        .args(["--pg-url", url, "backup", "--output"])
        .arg(&out)
        .args(extra)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    let archives: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".dbk.tar"))
        .collect();
    assert_eq!(archives.len(), 1, "{stdout}");
    archives.into_iter().next().unwrap()
}

/// `pg_dump --schema-only`, without the random `\restrict` keys.
fn schema_of(url: &str) -> String {
    let output = Command::new("pg_dump")
        .args(["--schema-only", "--dbname", url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every table's rows (its own, not children's) in text form, sorted; plus sequence states and
/// which materialized views are populated.
async fn contents_of(url: &str) -> Vec<(String, Vec<String>)> {
    let client = pg_connect(url).await;
    let tables = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for row in tables {
        let (name, kind): (String, String) = (row.get(0), row.get(1));
        let rows: Vec<String> = match kind.as_str() {
            "S" => {
                let r = client
                    .query_one(
                        &format!("SELECT last_value::text, is_called::text FROM {name}"),
                        &[],
                    )
                    .await
                    .unwrap();
                vec![format!(
                    "{} {}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1)
                )]
            }
            "m" => {
                let populated: bool = client
                    .query_one(
                        "SELECT relispopulated FROM pg_class WHERE oid = $1::text::regclass",
                        &[&name],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if !populated {
                    vec!["(not populated)".to_string()]
                } else {
                    sorted_rows(&client, &name).await
                }
            }
            _ => sorted_rows(&client, &name).await,
        };
        out.push((name, rows));
    }
    out
}

async fn sorted_rows(client: &tokio_postgres::Client, name: &str) -> Vec<String> {
    client
        .query(
            &format!("SELECT whole_row__::text FROM ONLY {name} whole_row__ ORDER BY 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_round_trip_is_identical() {
    let source = PgTestDb::create().await;
    load_fixture(&source).await;
    let dir = tempfile::tempdir().unwrap();
    // Small chunks and three workers: tables are split into several chunks and ctid ranges.
    let archive = backup(
        dir.path(),
        &source.url,
        &[
            "--jobs",
            "3",
            "--chunk-bytes",
            "4096",
            "--compression-level",
            "6",
        ],
    );
    assert!(!archive.to_string_lossy().contains(".partial"));

    dbkeeper(dir.path())
        .args(["verify"])
        .arg(&archive)
        .assert()
        .success()
        .stdout(predicate::str::contains("OK"));

    // Restore into a database that does not exist yet, keeping owners and grants so the schema
    // dump is comparable line for line.
    let target_name = unique_name("dbk_restored");
    let _guard = DropDb(target_name.clone());
    let target_url = pg_url_with_db(&pg_server_url(), &target_name);
    let assert = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &target_url,
            "--json",
            "restore",
            "--keep-owner",
            "--keep-privileges",
        ])
        .arg(&archive)
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(report["postgres"]["database_action"], "created");
    assert_eq!(report["postgres"]["skipped_owner_statements"], 0);
    assert_eq!(
        report["postgres"]["verify"]["mismatches"],
        serde_json::json!([])
    );
    assert!(
        report["postgres"]["chunks"].as_u64().unwrap() > 10,
        "{report}"
    );

    assert_eq!(schema_of(&source.url), schema_of(&target_url));
    let (expected, actual) = (
        contents_of(&source.url).await,
        contents_of(&target_url).await,
    );
    assert_eq!(expected.len(), actual.len());
    for ((name, rows), (name2, rows2)) in expected.iter().zip(&actual) {
        assert_eq!(name, name2);
        assert!(rows == rows2, "table {name} differs after restore");
    }
    // The fixture's awkward rows are really there (not just equal because both are empty).
    let awkward = expected
        .iter()
        .find(|(n, _)| n == "public.awkward")
        .unwrap();
    assert_eq!(awkward.1.len(), 5);
    let orders = expected.iter().find(|(n, _)| n == "shop.orders").unwrap();
    assert_eq!(orders.1.len(), 2000);

    // Default restore over it (replace): owners and grants are skipped and counted.
    let assert = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &target_url,
            "--json",
            "restore",
            "--mode",
            "replace",
        ])
        .arg(&archive)
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(report["postgres"]["database_action"], "replaced");
    assert!(
        report["postgres"]["skipped_owner_statements"]
            .as_u64()
            .unwrap()
            > 5,
        "{report}"
    );
    assert!(
        report["postgres"]["skipped_privilege_statements"]
            .as_u64()
            .unwrap()
            >= 2,
        "{report}"
    );
    assert_eq!(contents_of(&target_url).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_concurrent_writes_restores_consistently() {
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute(
            "CREATE TABLE parent (id bigserial PRIMARY KEY, filler text);
             CREATE TABLE child (id bigserial PRIMARY KEY,
                                 parent_id bigint NOT NULL REFERENCES parent ON DELETE CASCADE,
                                 amount int NOT NULL);
             INSERT INTO parent (filler) SELECT repeat('p', 200) FROM generate_series(1, 20000);
             INSERT INTO child (parent_id, amount) SELECT id, 7 FROM parent;
             INSERT INTO child (parent_id, amount) SELECT id, -7 FROM parent;",
        )
        .await
        .unwrap();

    // A writer that keeps the invariant (every parent has children summing to 0) in each of its
    // transactions, and would break it for any reader that mixes snapshots.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (source.url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut client = pg_connect(&url).await;
            let mut committed = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tx = client.transaction().await.unwrap();
                tx.batch_execute(
                    "WITH p AS (INSERT INTO parent (filler) VALUES ('new') RETURNING id)
                     INSERT INTO child (parent_id, amount) SELECT id, v FROM p, (VALUES (5), (-5)) x(v);
                     DELETE FROM parent WHERE id = (SELECT min(id) FROM parent);",
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                committed += 1;
            }
            committed
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, url) = (dir.path().to_path_buf(), source.url.clone());
    let archive = tokio::task::spawn_blocking(move || {
        backup(&path, &url, &["--jobs", "2", "--chunk-bytes", "8192"])
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let committed = writer.await.unwrap();
    assert!(committed > 0, "the writer never ran");

    // Restoring re-creates the foreign key after the data: it fails if any child lost its
    // parent, which is what a mixed snapshot produces.
    let target = PgTestDb::create().await;
    dbkeeper(dir.path())
        .args(["--pg-url", &target.url, "restore"])
        .arg(&archive)
        .assert()
        .success();
    let client = target.client().await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM parent), (SELECT count(*) FROM child),
                    (SELECT coalesce(sum(amount), 0) FROM child),
                    (SELECT count(*) FROM parent p WHERE NOT EXISTS
                        (SELECT 1 FROM child c WHERE c.parent_id = p.id))",
            &[],
        )
        .await
        .unwrap();
    let (parents, children, sum, orphans): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(parents, 20000, "the writer deletes one parent per insert");
    assert_eq!(children, 2 * parents);
    assert_eq!(sum, 0);
    assert_eq!(orphans, 0);
    // The sequence was restored past every restored id.
    let next: i64 = client
        .query_one("SELECT nextval('parent_id_seq')", &[])
        .await
        .unwrap()
        .get(0);
    let max: i64 = client
        .query_one("SELECT max(id) FROM parent", &[])
        .await
        .unwrap()
        .get(0);
    assert!(next > max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_archives_are_refused_before_touching_the_target() {
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 5000) i;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &source.url, &["--chunk-bytes", "16384"]);
    let bytes = std::fs::read(&archive).unwrap();

    let mut spans = Vec::new();
    let mut tar = tar::Archive::new(bytes.as_slice());
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        spans.push((name, entry.raw_file_position(), entry.size()));
    }
    let names: Vec<&str> = spans.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(names.contains(&"postgres/schema/pre-data.sql"), "{names:?}");
    assert!(
        names.iter().filter(|n| n.ends_with(".copy.zst")).count() > 3,
        "{names:?}"
    );

    let mut damaged_versions: Vec<(String, Vec<u8>)> = spans
        .iter()
        .map(|(name, offset, size)| {
            let mut damaged = bytes.clone();
            damaged[(offset + size / 2) as usize] ^= 0x20;
            (format!("corrupt {name}"), damaged)
        })
        .collect();
    let (_, commit_offset, _) = spans.last().unwrap();
    for cut in [bytes.len() / 2, *commit_offset as usize] {
        damaged_versions.push((format!("truncated at {cut}"), bytes[..cut].to_vec()));
    }

    let target_name = unique_name("dbk_never");
    let _guard = DropDb(target_name.clone());
    let target_url = pg_url_with_db(&pg_server_url(), &target_name);
    for (what, damaged) in damaged_versions {
        let path = dir.path().join("damaged.dbk.tar");
        std::fs::write(&path, damaged).unwrap();
        dbkeeper(dir.path())
            .args(["--pg-url", &target_url, "restore"])
            .arg(&path)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("refusing to use it"));
        assert!(
            !database_exists(&target_name).await,
            "{what}: the target was created"
        );
        dbkeeper(dir.path())
            .arg("verify")
            .arg(&path)
            .assert()
            .code(1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_targets_are_refused_and_replace_recreates() {
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &source.url, &[]);

    // The source itself.
    dbkeeper(dir.path())
        .args(["--pg-url", &source.url, "restore", "--mode", "replace"])
        .arg(&archive)
        .assert()
        .code(4)
        .stderr(predicate::str::contains("taken from"));

    // A non-empty target.
    let target = PgTestDb::create().await;
    target
        .client()
        .await
        .batch_execute("CREATE TABLE precious (x int); INSERT INTO precious VALUES (42);")
        .await
        .unwrap();
    dbkeeper(dir.path())
        .args(["--pg-url", &target.url, "restore"])
        .arg(&archive)
        .assert()
        .code(4)
        .stderr(
            predicate::str::contains("not empty").and(predicate::str::contains("--mode replace")),
        );
    let still: i32 = target
        .client()
        .await
        .query_one("SELECT x FROM precious", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, 42);

    dbkeeper(dir.path())
        .args(["--pg-url", &target.url, "restore", "--mode", "replace"])
        .arg(&archive)
        .assert()
        .success()
        .stdout(predicate::str::contains("replaced"));
    let client = target.client().await;
    assert!(client.query("SELECT 1 FROM precious", &[]).await.is_err());
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_stdout_and_table_filters() {
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute(
            "CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (1);
             CREATE TABLE audit_log (id int); INSERT INTO audit_log VALUES (1), (2);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let assert = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &source.url,
            "backup",
            "--output",
            "-",
            "--exclude",
            "*_log",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(": 1 table, 1 row"));
    let path = dir.path().join("stdout.dbk.tar");
    std::fs::write(&path, &assert.get_output().stdout).unwrap();
    dbkeeper(dir.path())
        .arg("verify")
        .arg(&path)
        .assert()
        .success();

    let target = PgTestDb::create().await;
    dbkeeper(dir.path())
        .args(["--pg-url", &target.url, "restore"])
        .arg(&path)
        .assert()
        .success();
    let client = target.client().await;
    let kept: i64 = client
        .query_one("SELECT count(*) FROM keep_me", &[])
        .await
        .unwrap()
        .get(0);
    let excluded: i64 = client
        .query_one("SELECT count(*) FROM audit_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (kept, excluded),
        (1, 0),
        "excluded tables keep their schema, not their rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_pg_dump_leaves_no_archive() {
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("old-bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n").unwrap();
    let mut perms = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).unwrap();

    let out = dir.path().join("out");
    dbkeeper(dir.path())
        .env("DBKEEPER_PG_BIN", &bin)
        .args(["--pg-url", &source.url, "backup", "--output"])
        .arg(&out)
        .assert()
        .code(3)
        .stderr(predicate::str::contains("9.6.24").and(predicate::str::contains("15 or newer")));
    dbkeeper(dir.path())
        .env("DBKEEPER_PG_BIN", dir.path().join("missing"))
        .args(["--pg-url", &source.url, "backup", "--output"])
        .arg(&out)
        .assert()
        .code(3)
        .stderr(predicate::str::contains("not found"));
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
