//! `--mask`: deterministic masking on restore and backup, against real PostgreSQL and MongoDB.
//! Every original value of a masked column or field is searched for in the whole target (a
//! full `pg_dump`, every document) or the whole archive (every member, decompressed).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{dbkeeper, pg_url_with_db, MongoTestDb, PgTestDb};
use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::engine::{Compare, CompareOptions, Database, Masks, RestoreOptions};
use dbkeeper::mongo::MongoTarget;
use dbkeeper::postgres::PgTarget;
use dbkeeper::redact::SecretUrl;
use dbkeeper::verify::Kind;
use mongodb::bson::{doc, Document};
use predicates::prelude::*;

const PEOPLE: i64 = 300;
/// Customers without a phone (every tenth): a `null` rule changes nothing there.
const NO_PHONE: i64 = PEOPLE / 10;
const BADGES: i64 = 40;
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
              -- Padded and length-limited text, to mask in the form PostgreSQL gives back.
              CREATE TABLE badges (
                  id integer PRIMARY KEY,
                  code character(24) NOT NULL UNIQUE,
                  label varchar(6));
              INSERT INTO customers (email, full_name, phone, plan)
                  SELECT 'person' || g || '@corp.test', 'Person Number ' || g,
                         CASE WHEN g % 10 = 0 THEN NULL
                              ELSE '+44 20 7946 ' || lpad(g::text, 4, '0') END, 'gold'
                  FROM generate_series(1, {PEOPLE}) g;
              INSERT INTO badges SELECT g, 'B' || g, 'L' || g FROM generate_series(1, {BADGES}) g;
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

/// Rules for the padded and limited text of `badges` (appended to [`RULES`]).
const BADGE_RULES: &str = "\n[postgres.\"public.badges\"]\ncode = \"hash\"\n\
                           label = \"constant:tab\\there, cut\"\n";

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
    let rules = rules_file(
        dir.path(),
        "rules",
        "first-key-0123456789abcdef",
        BADGE_RULES,
    );

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
    // --deep compared every table and collection, the masked ones with the masked stream.
    assert_eq!(report["postgres"]["verify"]["deep"], true, "{report}");
    assert_eq!(report["mongo"]["verify"]["deep"], true, "{report}");
    assert!(
        report["masking"]["content_digests"]
            .as_str()
            .unwrap()
            .contains("masked stream"),
        "{report}"
    );
    // Per column and field, how many values changed (NULLs stay NULL and are not counted).
    let fields = report["masking"]["fields"].as_array().unwrap();
    let changed: BTreeMap<String, i64> = fields
        .iter()
        .map(|f| {
            (
                format!(
                    "{}.{}",
                    f["dataset"].as_str().unwrap(),
                    f["field"].as_str().unwrap()
                ),
                f["changed"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, i64> = [
        ("public.customers.email", PEOPLE),
        ("public.customers.full_name", PEOPLE),
        ("public.customers.phone", PEOPLE - NO_PHONE),
        ("public.orders.customer_email", 3 * PEOPLE),
        ("public.badges.code", BADGES),
        ("public.badges.label", BADGES),
        ("users.email", i64::from(MONGO_PEOPLE)),
        ("users.name", i64::from(MONGO_PEOPLE)),
        ("users.profile.phone", i64::from(MONGO_PEOPLE)),
        ("users.addresses.street", 2 * i64::from(MONGO_PEOPLE)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(changed, expected, "{report}");
    let inherited = fields
        .iter()
        .find(|f| f["dataset"] == "public.orders" && f["field"] == "customer_email")
        .unwrap_or_else(|| panic!("the foreign key's rule is not reported: {report}"));
    assert_eq!(inherited["transform"], "email");
    assert_eq!(inherited["inherited_from"], "public.customers.email");

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
    // character(24) holds the 20 masked hex digits padded; varchar(6) the constant cut to 6.
    let badge = client
        .query_one("SELECT code, label FROM badges WHERE id = 1", &[])
        .await
        .unwrap();
    let (code, label): (String, String) = (badge.get(0), badge.get(1));
    assert_eq!(code.len(), 24);
    assert!(
        code.trim_end().len() == 20 && code.trim_end() != "B1",
        "{code:?}"
    );
    assert_eq!(label, "tab\the");

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
        (
            write(
                "nocolumn.toml",
                &format!("{RULES}\n[postgres.\"public.orders\"]\nshipping = \"hash\"\n"),
            ),
            2,
            vec!["public.orders", "shipping", "no such column"],
        ),
        (
            write(
                "wrongtype.toml",
                &format!("{RULES}\n[postgres.\"public.orders\"]\ntotal_cents = \"email\"\n"),
            ),
            2,
            vec!["public.orders.total_cents", "email cannot mask this type"],
        ),
        (
            write("broken.toml", "[postgres.\"public.customers\"\nemail = 1\n"),
            2,
            vec!["broken.toml", "not a valid masking rules file"],
        ),
        (
            {
                let path = dir.path().join("nokey.toml");
                std::fs::write(&path, format!("key_file = \"absent.key\"\n{RULES}")).unwrap();
                path.display().to_string()
            },
            2,
            vec!["nokey.toml", "absent.key"],
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

/// Restores the archive with these masks through the library (as `restore --mask` does), so the
/// masks' digests of what they streamed stay at hand for a later comparison.
async fn restore_masked(
    archive: &Arc<VerifiedArchive>,
    masks: (
        &Arc<dbkeeper::mask::PgMask>,
        &Arc<dbkeeper::mask::MongoMask>,
    ),
    targets: (&PgTarget, &MongoTarget),
) {
    let options = RestoreOptions {
        jobs: 2,
        masks: Masks {
            postgres: Some(masks.0.clone()),
            mongo: Some(masks.1.clone()),
        },
        ..RestoreOptions::default()
    };
    let databases: [&dyn Database; 2] = [targets.0, targets.1];
    for database in databases {
        database.preflight(archive, &options).await.unwrap();
        database.restore(archive, &options).await.unwrap();
    }
}

/// Deep V2 of both targets, content compared with the masks' streams (or, without masks, with
/// the archive's digests of the originals). Returns the content mismatches' objects.
async fn deep_content_mismatches(
    archive: &Arc<VerifiedArchive>,
    masks: Option<(
        &Arc<dbkeeper::mask::PgMask>,
        &Arc<dbkeeper::mask::MongoMask>,
    )>,
    targets: (&PgTarget, &MongoTarget),
) -> Vec<String> {
    let options = CompareOptions {
        jobs: 2,
        deep: true,
        masks: Masks {
            postgres: masks.map(|m| m.0.clone()),
            mongo: masks.map(|m| m.1.clone()),
        },
        ..CompareOptions::default()
    };
    let pg = targets.0.compare(archive, &options).await.unwrap();
    let mongo = targets.1.compare(archive, &options).await.unwrap();
    let mut found = Vec::new();
    for mismatch in pg.mismatches.iter().chain(&mongo.mismatches) {
        assert_eq!(mismatch.kind, Kind::Content, "{mismatch:?}");
        if masks.is_some() {
            assert!(mismatch.message.contains("masked"), "{}", mismatch.message);
        }
        found.push(mismatch.object.clone());
    }
    found.sort();
    found
}

#[tokio::test]
async fn deep_after_a_masked_restore_compares_the_masked_stream_and_sees_a_changed_target() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let name = backup(dir.path(), &pg, &mongo, &[])["archive"]
        .as_str()
        .unwrap()
        .to_string();
    let archive = Arc::new(VerifiedArchive::open(&dir.path().join(name)).unwrap());
    let rules = rules_file(
        dir.path(),
        "rules",
        "deep-key-0123456789abcdef",
        BADGE_RULES,
    );
    let rules = dbkeeper::mask::Rules::load(Path::new(&rules)).unwrap();
    let pg_mask = Arc::new(dbkeeper::postgres::mask_schema::plan(&archive, &rules).unwrap());
    let mongo_mask = Arc::new(dbkeeper::mongo::mask_schema::plan(&archive, &rules).unwrap());
    let masks = (&pg_mask, &mongo_mask);

    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let timeout = Duration::from_secs(10);
    let pg_target = PgTarget::new(&SecretUrl::new(&pg2.url), timeout).unwrap();
    let mongo_target = MongoTarget::new(&SecretUrl::new(&mongo2.url), &mongo2.name, timeout);
    let targets = (&pg_target, &mongo_target);
    restore_masked(&archive, masks, targets).await;

    // Just restored: every table and collection matches, the masked ones their masked stream.
    assert_eq!(
        deep_content_mismatches(&archive, Some(masks), targets).await,
        Vec::<String>::new()
    );
    // The masked stream's digests are not the archive's: compared with those, exactly the
    // masked tables and collections differ.
    let pg_db = &pg2.name;
    assert_eq!(
        deep_content_mismatches(&archive, None, targets).await,
        [
            format!("{}.users", mongo2.name),
            "public.badges".to_string(),
            "public.customers".to_string(),
            "public.orders".to_string(),
        ],
        "{pg_db}"
    );

    // A value changed after the restore, in a column and a field no rule touches: found.
    pg2.client()
        .await
        .batch_execute("UPDATE customers SET plan = 'silver' WHERE id = 7")
        .await
        .unwrap();
    mongo2
        .db()
        .await
        .collection::<Document>("users")
        .update_one(doc! { "n": 7 }, doc! { "$set": { "plan": "silver" } })
        .await
        .unwrap();
    assert_eq!(
        deep_content_mismatches(&archive, Some(masks), targets).await,
        [
            format!("{}.users", mongo2.name),
            "public.customers".to_string()
        ]
    );
}
