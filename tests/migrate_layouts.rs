//! Migration sets written for other tools, run as they are against a real PostgreSQL and a real
//! MongoDB-wire server: golang-migrate (a generated set of 300 migrations with timestamp versions
//! and hyphenated names), dbmate (sections, `transaction:false`) and sqlx (simple and
//! reversible, `-- no-transaction`).

mod common;

use std::path::Path;

use common::{dbkeeper, workdir, MongoTestDb, PgTestDb};

fn migrate_pg(db: &PgTestDb, dir: &Path, args: &[&str]) -> std::process::Output {
    let out = dbkeeper(dir.parent().unwrap())
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
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "migrate {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn count(db: &PgTestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

const USER_TABLES: &str =
    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '%schema_%'";

/// A golang-migrate directory the way a long-lived service accumulates one: 300 migrations
/// with `YYYYMMDDhhmmss` versions and hyphenated titles; tables, columns, indexes, data, and
/// some files wrapped in their own BEGIN/COMMIT (golang-migrate sends a file as it is).
fn golang_migrate_set() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut version: i64 = 20240101000000;
    for i in 0..100 {
        let table = format!("svc_{i:03}");
        let steps = [
            (
                format!("create-{}-table", table.replace('_', "-")),
                format!(
                    "CREATE TABLE {table} (\n  id bigserial PRIMARY KEY,\n  owner_id bigint NOT NULL,\n  created_at timestamptz NOT NULL DEFAULT now()\n);\n"
                ),
                format!("DROP TABLE {table};\n"),
            ),
            (
                format!("add-{table}-status"),
                format!(
                    "BEGIN;\nALTER TABLE {table} ADD COLUMN status text NOT NULL DEFAULT 'new';\nINSERT INTO {table} (owner_id, status) VALUES ({i}, 'seed');\nCOMMIT;\n"
                ),
                format!("BEGIN;\nDELETE FROM {table} WHERE status = 'seed';\nALTER TABLE {table} DROP COLUMN status;\nCOMMIT;\n"),
            ),
            (
                format!("index-{table}-owner"),
                format!("CREATE INDEX {table}_owner ON {table} (owner_id, created_at);\n"),
                format!("DROP INDEX {table}_owner;\n"),
            ),
        ];
        for (title, up, down) in steps {
            files.push((format!("{version}_{title}.up.sql"), up));
            files.push((format!("{version}_{title}.down.sql"), down));
            version += 7; // seconds apart
        }
    }
    files
}

#[tokio::test]
async fn a_golang_migrate_set_of_300_runs_up_down_to_zero_and_up_again() {
    let db = PgTestDb::create().await;
    let (_work, dir) = workdir("migrations", &golang_migrate_set());
    migrate_pg(&db, &dir, &["up"]);
    assert_eq!(count(&db, USER_TABLES).await, 100);
    assert_eq!(
        count(&db, "SELECT count(*) FROM refinery_schema_history").await,
        300
    );
    let row = db
        .client()
        .await
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'refinery_schema_history'::regclass AND attname = 'version'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "bigint",
        "64-bit versions need int8"
    );
    let name: String = db
        .client()
        .await
        .query_one(
            "SELECT name FROM refinery_schema_history WHERE version = 20240101000000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "create-svc-000-table");

    let status = migrate_pg(&db, &dir, &["status", "--exit-code"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("300 applied, 0 pending"));

    migrate_pg(&db, &dir, &["down", "--to", "0"]);
    assert_eq!(count(&db, USER_TABLES).await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM refinery_schema_history").await,
        0
    );

    migrate_pg(&db, &dir, &["up"]);
    assert_eq!(count(&db, USER_TABLES).await, 100);
    assert_eq!(
        count(&db, "SELECT count(*) FROM svc_042 WHERE status = 'seed'").await,
        1
    );
}

#[tokio::test]
async fn dbmate_sections_and_transaction_false() {
    let db = PgTestDb::create().await;
    let files = vec![
        (
            "20260717060208_create-orders.sql".to_string(),
            "-- migrate:up\nCREATE TABLE orders (id bigint PRIMARY KEY, customer bigint);\n\n-- migrate:down\nDROP TABLE orders;\n".to_string(),
        ),
        (
            "20260717060300_index-orders.sql".to_string(),
            "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY orders_customer ON orders (customer);\n\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY orders_customer;\n".to_string(),
        ),
    ];
    let (_work, dir) = workdir("db/migrations", &files);
    migrate_pg(&db, &dir, &["up"]);
    let index = "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer'";
    assert_eq!(count(&db, index).await, 1);
    let no_tx = "SELECT count(*) FROM dbkeeper_schema_history WHERE no_transaction";
    assert_eq!(count(&db, no_tx).await, 1);
    migrate_pg(&db, &dir, &["down"]);
    assert_eq!(count(&db, index).await, 0);
    migrate_pg(&db, &dir, &["down"]);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn sqlx_simple_and_reversible_files() {
    let db = PgTestDb::create().await;
    let files = vec![
        (
            "20260101000000_users.sql".to_string(),
            "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n".to_string(),
        ),
        (
            "20260102000000_user_email_index.up.sql".to_string(),
            "-- no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n"
                .to_string(),
        ),
        (
            "20260102000000_user_email_index.down.sql".to_string(),
            "DROP INDEX CONCURRENTLY users_email;\n".to_string(),
        ),
    ];
    let (_work, dir) = workdir("migrations", &files);
    migrate_pg(&db, &dir, &["up"]);
    let index = "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'";
    assert_eq!(count(&db, index).await, 1);
    migrate_pg(&db, &dir, &["down"]);
    assert_eq!(count(&db, index).await, 0);
    // The simple file has no down script: rolling it back is refused, nothing runs.
    let out = dbkeeper(dir.parent().unwrap())
        .args([
            "migrate",
            "down",
            "--engine",
            "postgres",
            "--pg-url",
            &db.url,
            "--migrations-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'users'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn golang_migrate_mongo_files() {
    let db = MongoTestDb::create().await;
    let files = vec![
        (
            "1_create-users.up.json".to_string(),
            r#"[{"create": "users"}, {"createIndexes": "users", "indexes": [{"key": {"email": 1}, "name": "users_email", "unique": true}]}]"#.to_string(),
        ),
        ("1_create-users.down.json".to_string(), r#"[{"drop": "users"}]"#.to_string()),
        (
            "20260717060208_seed-admin.up.json".to_string(),
            r#"[{"insert": "users", "documents": [{"email": "admin@example.com"}]}]"#.to_string(),
        ),
        (
            "20260717060208_seed-admin.down.json".to_string(),
            r#"[{"delete": "users", "deletes": [{"q": {"email": "admin@example.com"}, "limit": 1}]}]"#.to_string(),
        ),
    ];
    let (_work, dir) = workdir("mongo_migrations", &files);
    let run = |args: &[&str]| {
        let out = dbkeeper(dir.parent().unwrap())
            .args(["--mongo-url", &db.url, "migrate"])
            .args(args)
            .args(["--engine", "mongo"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["up"]);
    let users = db.db().await.collection::<mongodb::bson::Document>("users");
    assert_eq!(
        users.count_documents(mongodb::bson::doc! {}).await.unwrap(),
        1
    );
    run(&["down", "--to", "0"]);
    let names = db.db().await.list_collection_names().await.unwrap();
    assert!(!names.contains(&"users".to_string()), "{names:?}");
}
