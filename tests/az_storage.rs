//! `az://` against Azure's blob storage emulator, Azurite (`scripts/services.sh start azurite`
//! exports `DBKEEPER_TEST_AZURITE_URL` and a container): backup -> list -> verify -> restore ->
//! compare for both engines, through the same `object_store` seam as `s3://`.
//!
//! dbkeeper is pointed at the emulator the way a user would: `AZURE_STORAGE_USE_EMULATOR=true`
//! and `AZURITE_BLOB_STORAGE_URL`, with the emulator's published development account.

mod common;

use std::path::Path;

use common::{dbkeeper, pg_url_with_db, unique_name, MongoTestDb, PgTestDb};
use mongodb::bson::{doc, Document};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start Azure's emulator with \
             `eval \"$(scripts/services.sh start azurite)\"`"
        )
    })
}

fn dbk(dir: &Path) -> assert_cmd::Command {
    let mut cmd = dbkeeper(dir);
    cmd.env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env("AZURITE_BLOB_STORAGE_URL", var("DBKEEPER_TEST_AZURITE_URL"))
        .env_remove("AZURE_STORAGE_ACCOUNT_NAME")
        .env_remove("AZURE_STORAGE_ACCOUNT_KEY");
    cmd
}

fn json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    let out = cmd.arg("--json").assert().success().get_output().clone();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_list_verify_restore_on_azure_blob_storage() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    let docs: Vec<Document> = (0..300).map(|i| doc! { "n": i }).collect();
    mongo
        .db()
        .await
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
    let container = var("DBKEEPER_TEST_AZURITE_CONTAINER");
    let prefix = format!("az://{container}/{}/", unique_name("az"));
    let dir = tempfile::tempdir().unwrap();

    let report = json(dbk(dir.path()).args([
        "--pg-url",
        &pg.url,
        "--mongo-url",
        &mongo.url,
        "backup",
        "--output",
        &prefix,
    ]));
    let archive = report["archive"].as_str().unwrap().to_string();
    assert!(
        archive.starts_with(&prefix) && archive.ends_with(".dbk.tar"),
        "{report}"
    );
    assert!(!dir.path().join("az:").exists());

    let list = json(dbk(dir.path()).args(["list", &prefix]));
    let archives = list["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 1, "{list}");
    assert_eq!(archives[0]["complete"], true, "{list}");
    assert_eq!(archives[0]["rows"]["postgres"], 2000, "{list}");
    assert_eq!(archives[0]["rows"]["mongo"], 300, "{list}");

    let verify = json(dbk(dir.path()).args(["verify", &archive]));
    assert_eq!(verify["ok"], true, "{verify}");
    let list = json(dbk(dir.path()).args(["list", &prefix]));
    assert_eq!(list["archives"][0]["verified"]["level"], "decode", "{list}");

    let (pg_target, mongo_target) = (unique_name("az_restored"), unique_name("az_restored"));
    let pg_url = pg_url_with_db(&common::pg_server_url(), &pg_target);
    let mongo_url = common::mongo_url_with_db(&common::mongo_server_url(), &mongo_target);
    let restored = json(dbk(dir.path()).args([
        "--pg-url",
        &pg_url,
        "--mongo-url",
        &mongo_url,
        "restore",
        &archive,
    ]));
    for engine in ["postgres", "mongo"] {
        assert_eq!(
            restored[engine]["verify"]["mismatches"],
            serde_json::json!([]),
            "{restored}"
        );
    }
    let client = common::pg_connect(&pg_url).await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2000);
    let mongo_db = common::mongo_client(&mongo_url)
        .await
        .database(&mongo_target);
    let count = mongo_db
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(count, 300);

    // Retention works there too: of two newer archives only the newest is kept, and so is the
    // verified one (the newest verified archive is never deleted).
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        json(dbk(dir.path()).args(["--pg-url", &pg.url, "backup", "--output", &prefix]));
    }
    let pruned = json(dbk(dir.path()).args(["prune", &prefix, "--keep-last", "1"]));
    assert_eq!(pruned["deleted"].as_array().unwrap().len(), 1, "{pruned}");
    let list = json(dbk(dir.path()).args(["list", &prefix]));
    let kept: Vec<&str> = list["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{list}");
    assert!(kept.contains(&archive.as_str()), "{list}");

    drop(client);
    let admin = common::pg_connect(&common::pg_server_url()).await;
    let _ = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{pg_target}\" WITH (FORCE)"
        ))
        .await;
    let _ = mongo_db.drop().await;
}
