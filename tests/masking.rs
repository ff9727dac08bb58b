//! `--mask`: deterministic masking on restore and backup, against real PostgreSQL and MongoDB.
//! Every original value of a masked column or field is searched for in the whole target (a
//! full `pg_dump`, every document) or the whole archive (every member, decompressed).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{dbkeeper, pg_url_with_db, MongoTestDb, PgTestDb};
use dbkeeper::archive::reader::VerifiedArchive;
use mongodb::bson::{doc, Document};
use predicates::prelude::*;

const PEOPLE: i64 = 300;
const MONGO_PEOPLE: i32 = 50;
/// Pieces of every original personal value (e-mail domain, names, phone numbers, streets),
/// chosen so no masked value (hex digits, names from lists, `+99` digits) can contain them.
const ORIGINALS: [&str; 4] = ["corp.test", "Person Number", "+44 20", "Main St"];

async fn seed(pg: &PgTestDb, mongo: &MongoTestDb) {
    pg.client()
        .await
        .batch_execute(&format!(
            r"CREATE DOMAIN person_name AS varchar(120) CHECK (length(VALUE) > 0);
              CREATE TABLE customers (
                  id serial PRIMARY KEY,
                  email text NOT NULL UNIQUE CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
                  full_name person_name NOT NULL,
                  phone text,
                  plan text NOT NULL);
              CREATE TABLE orders (
                  id serial PRIMARY KEY,
                  customer_email text NOT NULL REFERENCES customers (email),
                  total_cents integer NOT NULL);
              INSERT INTO customers (email, full_name, phone, plan)
                  SELECT 'person' || g || '@corp.test', 'Person Number ' || g,
                         '+44 20 7946 ' || lpad(g::text, 4, '0'), 'gold'
                  FROM generate_series(1, {PEOPLE}) g;
              INSERT INTO orders (customer_email, total_cents)
                  SELECT 'person' || (g % {PEOPLE} + 1) || '@corp.test', g
                  FROM generate_series(1, 3 * {PEOPLE}) g;"
        ))
        .await
        .unwrap();
    let db = mongo.db().await;
    db.run_command(doc! {
        "create": "users",
        "validator": { "$jsonSchema": {
            "bsonType": "object",
            "required": ["email", "n"],
            "properties": {
                "email": { "bsonType": "string", "pattern": "^[^@\\s]+@[^@\\s]+$" },
                "n": { "bsonType": "int" },
            },
        } },
    })
    .await
    .unwrap();
    let users = db.collection::<Document>("users");
    let docs: Vec<Document> = (1..=MONGO_PEOPLE)
        .map(|i| {
            doc! {
                "n": i,
                "email": format!("person{i}@corp.test"),
                "name": format!("Person Number {i}"),
                "profile": { "phone": format!("+44 20 7946 {i:04}"), "tz": "UTC" },
                "addresses": [ { "street": format!("{i} Main St") }, { "street": format!("{i} Main St, back") } ],
                "plan": "gold",
            }
        })
        .collect();
    users.insert_many(docs).await.unwrap();
    users
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "email": 1 })
                .options(
                    mongodb::options::IndexOptions::builder()
                        .unique(true)
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
}

const RULES: &str = r#"
[postgres."public.customers"]
email = "email"
full_name = "name"
phone = "null"

[mongo.users]
email = "email"
name = "name"
"profile.phone" = "null"
"addresses.street" = "hash"
"#;

/// Writes a key file and a rules file using it (`extra` is appended) into `dir`.
fn rules_file(dir: &Path, name: &str, key: &str, extra: &str) -> String {
    std::fs::write(dir.join(format!("{name}.key")), format!("{key}\n")).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("key_file = \"{name}.key\"\n{RULES}{extra}")).unwrap();
    path.display().to_string()
}

fn backup(dir: &Path, pg: &PgTestDb, mongo: &MongoTestDb, extra: &[&str]) -> serde_json::Value {
    let out = dbkeeper(dir)
        .args([
            "--pg-url",
            &pg.url,
            "--mongo-url",
            &mongo.url,
            "backup",
            "--output",
            ".",
        ])
        .args(extra)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

fn restore(
    dir: &Path,
    archive: &str,
    pg: &PgTestDb,
    mongo: &MongoTestDb,
    extra: &[&str],
) -> serde_json::Value {
    let out = dbkeeper(dir)
        .args([
            "--pg-url",
            &pg.url,
            "--mongo-url",
            &mongo.url,
            "restore",
            archive,
            "--json",
        ])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

/// A full plain-text pg_dump of the database.
fn pg_dump(pg: &PgTestDb) -> String {
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .arg(&pg.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn all_documents(mongo: &MongoTestDb) -> Vec<Document> {
    use futures::TryStreamExt;
    let db = mongo.db().await;
    let mut all = Vec::new();
    for name in db.list_collection_names().await.unwrap() {
        let docs: Vec<Document> = db
            .collection::<Document>(&name)
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        all.extend(docs);
    }
    all
}

fn assert_no_original(text: &str, place: &str) {
    for original in ORIGINALS {
        assert!(!text.contains(original), "{place} still holds {original:?}");
    }
}

/// Masked e-mail by customer id (PostgreSQL) and by `n` (MongoDB).
async fn masked_emails(
    pg: &PgTestDb,
    mongo: &MongoTestDb,
) -> (BTreeMap<i32, String>, BTreeMap<i32, String>) {
    let rows = pg
        .client()
        .await
        .query("SELECT id, email FROM customers", &[])
        .await
        .unwrap();
    let pg_emails = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mongo_emails = all_documents(mongo)
        .await
        .iter()
        .map(|d| {
            (
                d.get_i32("n").unwrap(),
                d.get_str("email").unwrap().to_string(),
            )
        })
        .collect();
    (pg_emails, mongo_emails)
}

#[tokio::test]
async fn restore_mask_is_deterministic_across_engines_and_runs_and_keeps_joins() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &mongo, &[])["archive"]
        .as_str()
        .unwrap()
        .to_string();
    let rules = rules_file(dir.path(), "rules", "first-key-0123456789abcdef", "");

    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let report = restore(
        dir.path(),
        &archive,
        &pg2,
        &mongo2,
        &["--mask", &rules, "--deep"],
    );
    assert_eq!(
        report["postgres"]["verify"]["mismatches"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(
        report["mongo"]["verify"]["mismatches"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(
        report["mongo"]["documents_failing_validator"], 0,
        "{report}"
    );
    let fields = report["masking"]["fields"].as_array().unwrap();
    let inherited = fields
        .iter()
        .find(|f| f["dataset"] == "public.orders" && f["field"] == "customer_email")
        .unwrap_or_else(|| panic!("the foreign key's rule is not reported: {report}"));
    assert_eq!(inherited["transform"], "email");
    assert_eq!(inherited["inherited_from"], "public.customers.email");
    assert_eq!(inherited["changed"], 3 * PEOPLE);
    let street = fields
        .iter()
        .find(|f| f["field"] == "addresses.street")
        .unwrap();
    assert_eq!(street["changed"], 2 * MONGO_PEOPLE);
    assert!(
        report["masking"]["content_digests"]
            .as_str()
            .unwrap()
            .contains("not compared"),
        "{report}"
    );

    // No original value is left anywhere in the targets.
    assert_no_original(&pg_dump(&pg2), "the restored PostgreSQL database");
    for document in all_documents(&mongo2).await {
        assert_no_original(&format!("{document}"), "a restored document");
        assert!(document
            .get_document("profile")
            .unwrap()
            .get("phone")
            .is_none());
        assert_eq!(document.get_str("plan").unwrap(), "gold");
    }
    let client = pg2.client().await;
    let joined: i64 = client
        .query_one(
            "SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(joined, 3 * PEOPLE);
    let bad: i64 = client
        .query_one(
            r"SELECT count(*) FROM customers WHERE email !~ '^[^@\s]+@[^@\s]+$' OR phone IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);

    // The same person's e-mail masks the same way in both engines.
    let (pg_emails, mongo_emails) = masked_emails(&pg2, &mongo2).await;
    assert_eq!(mongo_emails.len(), MONGO_PEOPLE as usize);
    for (n, email) in &mongo_emails {
        assert_eq!(Some(email), pg_emails.get(n), "person {n}");
    }

    // The same key again gives identical data; another key gives other data.
    let (pg3, mongo3) = (PgTestDb::create().await, MongoTestDb::create().await);
    restore(dir.path(), &archive, &pg3, &mongo3, &["--mask", &rules]);
    assert_eq!(
        masked_emails(&pg3, &mongo3).await,
        (pg_emails.clone(), mongo_emails.clone())
    );
    let other = rules_file(dir.path(), "other", "second-key-0123456789abcdef", "");
    let (pg4, mongo4) = (PgTestDb::create().await, MongoTestDb::create().await);
    restore(dir.path(), &archive, &pg4, &mongo4, &["--mask", &other]);
    let (pg_other, mongo_other) = masked_emails(&pg4, &mongo4).await;
    assert!(pg_other.iter().all(|(id, e)| pg_emails[id] != *e));
    assert!(mongo_other.iter().all(|(n, e)| mongo_emails[n] != *e));
}

#[tokio::test]
async fn backup_mask_writes_no_original_value_and_restores_without_mask() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let key = "masked-backup-key-0123456789";
    let rules = rules_file(dir.path(), "rules", key, "");
    let report = backup(dir.path(), &pg, &mongo, &["--mask", &rules]);
    let archive = report["archive"].as_str().unwrap().to_string();
    assert_eq!(report["masking"]["rules_file"], "rules.toml", "{report}");

    // Every member, decompressed, holds no original value and nothing of the key.
    let opened = VerifiedArchive::open(&dir.path().join(&archive)).unwrap();
    let manifest = opened.manifest().clone();
    let mut seen = 0;
    for member in &manifest.members {
        let chunk = manifest.datasets.iter().find_map(|d| {
            d.chunks
                .iter()
                .find(|c| c.member == member.name)
                .map(|c| (d, c))
        });
        let bytes = match chunk {
            Some((dataset, chunk)) => opened.read_chunk(dataset, chunk).unwrap().data,
            None => opened.read_member(&member.name).unwrap(),
        };
        let text = String::from_utf8_lossy(&bytes);
        assert_no_original(&text, &member.name);
        assert!(!text.contains(key), "{} holds the key", member.name);
        seen += 1;
    }
    assert!(seen >= 4, "{seen} members");
    let masking = manifest
        .masking
        .as_ref()
        .expect("the manifest marks the archive masked");
    assert!(masking.fields.iter().any(|f| f.field == "customer_email"));
    let manifest_text = serde_json::to_string(&manifest).unwrap();
    assert!(!manifest_text.contains(key));

    // It restores (and verifies deeply: its digests are of the masked rows) without --mask.
    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let restored = restore(dir.path(), &archive, &pg2, &mongo2, &["--deep"]);
    assert_eq!(
        restored["postgres"]["verify"]["mismatches"],
        serde_json::json!([]),
        "{restored}"
    );
    assert_eq!(
        restored["mongo"]["verify"]["mismatches"],
        serde_json::json!([]),
        "{restored}"
    );
    assert_eq!(
        restored["archive_masking"]["rules_file"], "rules.toml",
        "{restored}"
    );
    assert_no_original(&pg_dump(&pg2), "the restored PostgreSQL database");
    for document in all_documents(&mongo2).await {
        assert_no_original(&format!("{document}"), "a restored document");
    }
    // Masked the same way as a restore --mask with the same key would.
    let (pg_emails, mongo_emails) = masked_emails(&pg2, &mongo2).await;
    for (n, email) in &mongo_emails {
        assert_eq!(Some(email), pg_emails.get(n));
    }
    let human = dbkeeper(dir.path())
        .args([
            "--pg-url",
            &PgTestDb::create().await.url,
            "restore",
            &archive,
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&human).contains("the archive is masked"));
}

#[tokio::test]
async fn bad_rules_and_unruled_personal_columns_are_refused_before_anything_is_touched() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &mongo, &[])["archive"]
        .as_str()
        .unwrap()
        .to_string();
    let fresh = common::unique_name("dbk_never");
    let fresh_url = pg_url_with_db(&common::pg_server_url(), &fresh);
    let mongo2 = MongoTestDb::create().await;
    let key = "refusal-test-key-0123456789";
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join("k.key"), key).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, format!("key_file = \"k.key\"\n{text}")).unwrap();
        path.display().to_string()
    };
    let cases: Vec<(String, i32, Vec<&str>)> = vec![
        // A personal-looking column without a rule: fail closed, listing it.
        (
            write("unruled.toml", &RULES.replace("phone = \"null\"\n", "")),
            4,
            vec!["public.customers.phone", "keep"],
        ),
        (
            write(
                "unruled_mongo.toml",
                &RULES.replace("name = \"name\"\n\"profile", "\"profile"),
            ),
            4,
            vec!["users.name"],
        ),
        (
            write(
                "missing.toml",
                &format!("{RULES}\n[postgres.\"public.nope\"]\nx = \"hash\"\n"),
            ),
            2,
            vec!["public.nope"],
        ),
        (
            write(
                "notnull.toml",
                &RULES.replace("full_name = \"name\"", "full_name = \"null\""),
            ),
            2,
            vec!["public.customers.full_name is NOT NULL"],
        ),
        (
            write(
                "required.toml",
                &RULES.replace("email = \"email\"\nname", "email = \"null\"\nname"),
            ),
            2,
            vec!["users.email is required"],
        ),
        (
            write(
                "nofield.toml",
                &format!("{RULES}\"profile.fax\" = \"null\"\n"),
            ),
            2,
            vec!["profile.fax"],
        ),
        (
            write(
                "typo.toml",
                "[postgres.\"public.customers\"]\nemail = \"scramble\"\n",
            ),
            2,
            vec!["scramble"],
        ),
    ];
    for (rules, code, expected) in cases {
        let assert = dbkeeper(dir.path())
            .args([
                "--pg-url",
                &fresh_url,
                "--mongo-url",
                &mongo2.url,
                "restore",
                &archive,
            ])
            .args(["--mask", &rules])
            .assert()
            .code(code);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        for e in expected {
            assert!(stderr.contains(e), "{rules}: {e:?} not in {stderr}");
        }
        assert!(!stderr.contains(key));
    }
    // Nothing was touched: the PostgreSQL target was never created, MongoDB got nothing.
    let exists = common::pg_connect(&common::pg_server_url())
        .await
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&fresh])
        .await
        .unwrap();
    assert!(exists.is_none());
    assert!(mongo2
        .db()
        .await
        .list_collection_names()
        .await
        .unwrap()
        .is_empty());
    // A backup with the same bad rules writes no archive.
    let before = std::fs::read_dir(dir.path()).unwrap().count();
    dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "backup", "--output", ".", "--mask"])
        .arg(dir.path().join("unruled.toml"))
        .assert()
        .code(4)
        .stderr(predicate::str::contains("public.customers.phone"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
}
