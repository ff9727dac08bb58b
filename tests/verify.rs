//! Verification, proven: a clean restore verifies at every level; each kind of damage done to the
//! restored databases is reported by the level that should catch it (counts miss a changed
//! value, `--deep` catches it), every mismatch at once; and a flipped byte or a truncation in any
//! member of the archive is caught offline, naming the member.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{dbkeeper, MongoTestDb, PgTestDb};
use mongodb::bson::{doc, Document};
use serde_json::Value;

/// Data that is awkward for COPY text and a schema with most object kinds.
const PG_FIXTURE: &str = r#"
CREATE SCHEMA shop;
CREATE TYPE shop.status AS ENUM ('new', 'paid');
CREATE DOMAIN shop.price AS numeric(12,2) CHECK (VALUE >= 0);
CREATE TABLE shop.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text,
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED
);
CREATE INDEX customers_name_idx ON shop.customers (name);
CREATE TABLE shop.orders (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers (id),
    status shop.status NOT NULL DEFAULT 'new',
    total shop.price,
    tags text[],
    payload jsonb,
    blob bytea,
    note text
);
CREATE INDEX orders_customer_idx ON shop.orders (customer_id);
CREATE TABLE shop.events (id bigserial, at date NOT NULL, what text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE shop.events_old PARTITION OF shop.events FOR VALUES FROM ('2000-01-01') TO ('2024-01-01');
CREATE TABLE shop.events_new PARTITION OF shop.events DEFAULT;
CREATE VIEW shop.big_orders AS SELECT id, total FROM shop.orders WHERE total > 100;
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, '') || '!'; RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.touch();

INSERT INTO shop.customers (email, name)
SELECT 'c' || g || '@example.com', CASE WHEN g % 7 = 0 THEN NULL ELSE 'Ünïcødé ' || g END
FROM generate_series(1, 300) g;
INSERT INTO shop.orders (customer_id, status, total, tags, payload, blob, note)
SELECT 1 + g % 300, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'new' END::shop.status, g * 1.5,
       ARRAY['a', 'b c', NULL], jsonb_build_object('n', g, 'q', 'say "hi"'),
       decode(md5(g::text), 'hex'), E'tab\there\nnewline \\ backslash ' || g
FROM generate_series(1, 2000) g;
INSERT INTO shop.events (at, what)
SELECT DATE '2023-06-01' + (g % 400), 'event ' || g FROM generate_series(1, 1000) g;
"#;

async fn seed(pg: &PgTestDb, mongo: &MongoTestDb) {
    pg.client().await.batch_execute(PG_FIXTURE).await.unwrap();
    let db = mongo.db().await;
    db.run_command(doc! {
        "create": "users",
        "validator": { "$jsonSchema": {
            "bsonType": "object", "required": ["email"],
            "properties": { "email": { "bsonType": "string" } } } },
        "validationLevel": "strict",
    })
    .await
    .unwrap();
    let users: Vec<Document> = (0..200)
        .map(|i| doc! { "email": format!("u{i}@example.com"), "age": i % 90, "tags": ["x", i] })
        .collect();
    db.collection::<Document>("users")
        .insert_many(users)
        .await
        .unwrap();
    db.run_command(doc! { "createIndexes": "users", "indexes": [
        { "key": { "email": 1 }, "name": "email_1", "unique": true },
        { "key": { "age": -1, "email": 1 }, "name": "age_email" },
    ] })
    .await
    .unwrap();
    let orders: Vec<Document> = (0..500)
        .map(|i| doc! { "n": i, "amount": i as f64 * 2.5, "user": format!("u{}", i % 200) })
        .collect();
    db.collection::<Document>("orders")
        .insert_many(orders)
        .await
        .unwrap();
    db.run_command(doc! {
        "create": "adults", "viewOn": "users", "pipeline": [ { "$match": { "age": { "$gte": 18 } } } ],
    })
    .await
    .unwrap();
}

/// `dbkeeper backup` of both databases; returns the archive's path.
fn backup(dir: &Path, pg: &PgTestDb, mongo: &MongoTestDb) -> PathBuf {
    let out = dbkeeper(dir)
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url, "--json"])
        .args(["backup", "--output", ".", "--chunk-bytes", "16384"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: Value = serde_json::from_slice(&out).unwrap();
    dir.join(report["archive"].as_str().unwrap())
}

/// Runs `dbkeeper verify` with `args`; returns the exit code and the JSON report.
fn verify(dir: &Path, archive: &Path, args: &[&str]) -> (i32, Value) {
    let out = dbkeeper(dir)
        .arg("verify")
        .arg(archive)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// `(level, kind, engine, object)` of every mismatch.
fn found(report: &Value) -> BTreeSet<(String, String, String, String)> {
    report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
            (s("level"), s("kind"), s("engine"), s("object"))
        })
        .collect()
}

fn set(items: &[(&str, &str, &str, &str)]) -> BTreeSet<(String, String, String, String)> {
    items
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restore_verifies_and_each_change_is_caught_by_its_level() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &mongo);

    // Restore with --deep: the restore proves itself, content included.
    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let targets = ["--pg-url", &pg2.url, "--mongo-url", &mongo2.url];
    let out = dbkeeper(dir.path())
        .args(targets)
        .args(["restore", "--mode", "replace", "--deep", "--json"])
        .arg(&archive)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let restored: Value = serde_json::from_slice(&out).unwrap();
    for engine in ["postgres", "mongo"] {
        let check = &restored[engine]["verify"];
        assert_eq!(check["mismatches"], serde_json::json!([]), "{restored}");
        assert_eq!(check["deep"], true, "{restored}");
    }
    // customers, orders and the two partitions of events (the parent holds no rows).
    assert_eq!(restored["postgres"]["verify"]["objects"], 4, "{restored}");
    assert_eq!(restored["mongo"]["verify"]["objects"], 3, "{restored}");

    // Offline only, then every level against the restored databases.
    let (code, offline) = verify(dir.path(), &archive, &[]);
    assert_eq!(code, 0, "{offline}");
    assert_eq!(offline["levels"], serde_json::json!(["V0", "V1"]));
    for deep in [&[][..], &["--deep"][..]] {
        let (code, clean) = verify(dir.path(), &archive, &[&targets[..], deep].concat());
        assert_eq!(code, 0, "{clean}");
        assert_eq!(clean["ok"], true);
        assert_eq!(clean["levels"], serde_json::json!(["V0", "V1", "V2"]));
        assert_eq!(clean["targets"].as_array().unwrap().len(), 2, "{clean}");
        assert!(clean["checks"].as_u64().unwrap() > 40, "{clean}");
    }

    // Damage the restored databases in every way the issue lists, all at once.
    pg2.client()
        .await
        .batch_execute(
            "DELETE FROM shop.orders WHERE id = 11;
             UPDATE shop.customers SET name = 'changed' WHERE id = 7;
             SELECT nextval('shop.orders_id_seq');
             DROP INDEX shop.customers_name_idx;",
        )
        .await
        .unwrap();
    let db2 = mongo2.db().await;
    db2.collection::<Document>("orders")
        .delete_one(doc! { "n": 3 })
        .await
        .unwrap();
    let changed = db2
        .collection::<Document>("users")
        .update_one(
            doc! { "email": "u5@example.com" },
            doc! { "$set": { "age": 99 } },
        )
        .await
        .unwrap();
    assert_eq!(changed.modified_count, 1);
    db2.run_command(doc! {
        "collMod": "users",
        "validator": { "$jsonSchema": { "bsonType": "object", "required": ["email", "age"] } },
    })
    .await
    .unwrap();
    db2.collection::<Document>("users")
        .drop_index("age_email")
        .await
        .unwrap();

    // Counts (the default): counts, sequence, indexes, validator; not the changed values.
    let (code, counts) = verify(dir.path(), &archive, &targets);
    assert_eq!(code, 1, "{counts}");
    assert_eq!(counts["ok"], false);
    let mongo_db = &mongo2.name;
    let users = format!("{mongo_db}.users");
    let orders = format!("{mongo_db}.orders");
    let users_index = format!("{mongo_db}.users.age_email");
    let expected = set(&[
        ("V2", "count", "postgres", "shop.orders"),
        ("V2", "sequence", "postgres", "shop.orders_id_seq"),
        ("V2", "index", "postgres", "shop.customers_name_idx"),
        ("V2", "count", "mongo", &orders),
        ("V2", "validator", "mongo", &users),
        ("V2", "index", "mongo", &users_index),
    ]);
    assert_eq!(found(&counts), expected, "{counts:#}");
    let orders_count = counts["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["object"] == "shop.orders")
        .unwrap();
    assert_eq!(
        (&orders_count["expected"], &orders_count["found"]),
        (&2000.into(), &1999.into())
    );

    // --deep: the same, plus the content of every table/collection that changed, including the
    // ones whose counts are still right.
    let (code, deep) = verify(dir.path(), &archive, &[&targets[..], &["--deep"]].concat());
    assert_eq!(code, 1, "{deep}");
    let mut with_content = expected.clone();
    with_content.extend(set(&[
        ("V2", "content", "postgres", "shop.customers"),
        ("V2", "content", "postgres", "shop.orders"),
        ("V2", "content", "mongo", &orders),
        ("V2", "content", "mongo", &users),
    ]));
    assert_eq!(found(&deep), with_content, "{deep:#}");

    // The human report lists every mismatch, one per line.
    let human = dbkeeper(dir.path())
        .args(targets)
        .arg("verify")
        .arg(&archive)
        .arg("--deep")
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let human = String::from_utf8(human).unwrap();
    assert!(human.contains("FAILED"), "{human}");
    assert_eq!(
        human.lines().filter(|l| l.starts_with("  - [V2 ")).count(),
        with_content.len(),
        "{human}"
    );
    assert!(
        human.contains("table shop.orders has 1999 rows, the archive has 2000"),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_are_named_object_by_object() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &mongo);
    let pg2 = PgTestDb::create().await;
    dbkeeper(dir.path())
        .args(["--pg-url", &pg2.url, "restore", "--mode", "replace"])
        .arg(&archive)
        .assert()
        .success();
    pg2.client()
        .await
        .batch_execute(
            "ALTER TABLE shop.orders ALTER COLUMN note SET DEFAULT 'x';
             CREATE OR REPLACE VIEW shop.big_orders AS SELECT id, total FROM shop.orders WHERE total > 1000;
             DROP TRIGGER orders_touch ON shop.orders;
             CREATE TABLE public.stray (x int);",
        )
        .await
        .unwrap();
    let (code, report) = verify(dir.path(), &archive, &["--pg-url", &pg2.url]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        found(&report),
        set(&[
            ("V2", "schema", "postgres", "table shop.orders"),
            ("V2", "schema", "postgres", "view shop.big_orders"),
            (
                "V2",
                "schema",
                "postgres",
                "trigger shop.orders.orders_touch"
            ),
            ("V2", "schema", "postgres", "table public.stray"),
        ]),
        "{report:#}"
    );

    // A URL from the environment (or dbkeeper.toml) is not compared: that is usually the
    // production database, and `verify ARCHIVE` from cron must stay offline.
    let out = dbkeeper(dir.path())
        .env("DBKEEPER_PG_URL", &pg2.url)
        .args(["verify", "--json"])
        .arg(&archive)
        .output()
        .unwrap();
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{offline}");
    assert_eq!(offline["levels"], serde_json::json!(["V0", "V1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_or_truncation_in_any_member_is_caught_offline_naming_it() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &mongo);
    let bytes = std::fs::read(&archive).unwrap();
    let mut spans = Vec::new();
    for entry in tar::Archive::new(bytes.as_slice()).entries().unwrap() {
        let entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        spans.push((
            name,
            entry.raw_file_position() as usize,
            entry.size() as usize,
        ));
    }
    // One member of every kind.
    let pick = |wanted: &dyn Fn(&str) -> bool| {
        spans
            .iter()
            .find(|(n, _, _)| wanted(n))
            .unwrap_or_else(|| panic!("no such member in {spans:?}"))
            .clone()
    };
    let members = [
        pick(&|n| n == "HEADER.json"),
        pick(&|n| n.starts_with("postgres/schema/")),
        pick(&|n| n.starts_with("postgres/data/") && n.ends_with(".copy.zst")),
        pick(&|n| n.starts_with("mongo/data/") && n.ends_with(".bson.zst")),
        pick(&|n| n.ends_with(".metadata.json")),
        pick(&|n| n == "MANIFEST.json"),
        pick(&|n| n == "COMMIT"),
    ];
    for (name, offset, size) in &members {
        let mut flipped = bytes.clone();
        flipped[offset + size / 2] ^= 0x01;
        let truncated = bytes[..offset + size / 2].to_vec();
        // Cut-off copies often still end on a tar block boundary.
        let mut block_aligned = truncated.clone();
        block_aligned.resize(truncated.len().div_ceil(512) * 512, 0);
        for (damage, data) in [
            ("flipped byte", flipped),
            ("truncation", truncated),
            ("block-aligned truncation", block_aligned),
        ] {
            let path = dir.path().join("damaged.dbk.tar");
            std::fs::write(&path, data).unwrap();
            let (code, report) = verify(dir.path(), &path, &[]);
            assert_eq!(code, 1, "{damage} in {name}: {report}");
            assert_eq!(report["ok"], false);
            assert_eq!(report["levels"], serde_json::json!(["V0"]), "{report}");
            let mismatches = report["mismatches"].as_array().unwrap();
            assert!(
                mismatches
                    .iter()
                    .all(|m| m["level"] == "V0" && m["kind"] == "archive"),
                "{report}"
            );
            assert!(
                mismatches.iter().any(|m| m["object"] == name.as_str()
                    || m["message"].as_str().unwrap().contains(name.as_str())),
                "{damage} in {name} is not named: {report:#}"
            );
        }
    }
    // Damage V0 cannot see, because the manifest and COMMIT were rewritten to agree with it, is
    // V1's: a chunk with one row fewer than its entry says, and a chunk with one row changed.
    let chunk = members[2].0.clone();
    let rows = unzstd(&bytes[members[2].1..members[2].1 + members[2].2]);
    let lines: Vec<&[u8]> = rows.split_inclusive(|&b| b == b'\n').collect();
    assert!(lines.len() > 2);
    // One row fewer in exactly as many bytes (the next row's last column grows by as much), so
    // only re-counting the records can tell.
    let mut one_fewer = lines[1].strip_suffix(b"\n").unwrap().to_vec();
    one_fewer.extend(std::iter::repeat_n(b'x', lines[0].len()));
    one_fewer.push(b'\n');
    one_fewer.extend(lines[2..].concat());
    assert_eq!(one_fewer.len(), rows.len());
    let mut one_changed = rows.clone();
    let tab = one_changed.iter().position(|&b| b == b'\t').unwrap();
    one_changed[tab - 1] = if one_changed[tab - 1] == b'9' {
        b'8'
    } else {
        b'9'
    };
    for (damage, data, expect) in [
        ("one row fewer", one_fewer, "records, the manifest says"),
        ("one row changed", one_changed, "content digest"),
    ] {
        let path = dir.path().join("forged.dbk.tar");
        std::fs::write(&path, forge(&bytes, &chunk, &zstd_frame(&data))).unwrap();
        let (code, report) = verify(dir.path(), &path, &[]);
        assert_eq!(code, 1, "{damage}: {report}");
        assert_eq!(
            report["levels"],
            serde_json::json!(["V0", "V1"]),
            "{report}"
        );
        let m = &report["mismatches"][0];
        assert_eq!(
            (&m["level"], &m["kind"]),
            (&"V1".into(), &"decode".into()),
            "{report}"
        );
        assert!(
            m["message"].as_str().unwrap().contains(expect),
            "{damage}: {report:#}"
        );
        assert_eq!(
            report["mismatches"].as_array().unwrap().len(),
            1,
            "{report:#}"
        );
    }
    let (code, report) = verify(dir.path(), &archive, &[]);
    assert_eq!(code, 0, "the original is untouched: {report}");
}

fn unzstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(data).unwrap()
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 1).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The archive with `member` replaced by `data`, and MANIFEST.json (member and chunk entries)
/// and COMMIT rewritten to match, as a forger who knows the format would.
fn forge(archive: &[u8], member: &str, data: &[u8]) -> Vec<u8> {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        entries.push((name, bytes));
    }
    let (size, sha) = (data.len() as u64, sha256_hex(data));
    let mut manifest: Value = serde_json::from_slice(
        &entries
            .iter()
            .find(|(n, _)| n == "MANIFEST.json")
            .unwrap()
            .1,
    )
    .unwrap();
    let patch = |entry: &mut Value| {
        // Member entries have `name`, chunk entries `member`.
        if entry.get("name").or(entry.get("member")) == Some(&Value::from(member)) {
            entry["size"] = size.into();
            entry["sha256"] = sha.clone().into();
        }
    };
    manifest["members"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .for_each(patch);
    for dataset in manifest["datasets"].as_array_mut().unwrap() {
        dataset["chunks"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .for_each(patch);
    }
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let commit = format!("{}\n", sha256_hex(&manifest)).into_bytes();
    let mut out = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let bytes = match name.as_str() {
            "MANIFEST.json" => manifest.clone(),
            "COMMIT" => commit.clone(),
            n if n == member => data.to_vec(),
            _ => bytes,
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, &name, bytes.as_slice())
            .unwrap();
    }
    out.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renaming_restore_is_verified_under_the_new_names() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &mongo);
    let mongo2 = MongoTestDb::create().await;
    let out = dbkeeper(dir.path())
        .args(["--mongo-url", &mongo2.url, "--json", "restore", "--deep"])
        .args(["--ns-from", "users", "--ns-to", "people"])
        .arg(&archive)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let restored: Value = serde_json::from_slice(&out).unwrap();
    let check = &restored["mongo"]["verify"];
    assert_eq!(check["mismatches"], serde_json::json!([]), "{restored:#}");
    assert_eq!(check["objects"], 3);
    assert!(restored["postgres"].is_null());
    assert_eq!(restored["not_restored"], serde_json::json!(["postgres"]));
    // The renamed collection really is where V2 looked.
    let people = mongo2.db().await.collection::<Document>("people");
    assert_eq!(people.count_documents(doc! {}).await.unwrap(), 200);
}

/// A materialized view's state is compared: the one populated at backup time must be populated
/// after the restore (restore refreshes it), and one created `WITH NO DATA` must not be.
#[tokio::test]
async fn materialized_views_keep_their_populated_state() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    pg.client()
        .await
        .batch_execute(
            "CREATE MATERIALIZED VIEW public.mv_full AS SELECT 1 AS one;
             CREATE MATERIALIZED VIEW public.mv_nodata AS SELECT 2 AS two WITH NO DATA;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = backup(dir.path(), &pg, &mongo);
    let pg2 = PgTestDb::create().await;
    dbkeeper(dir.path())
        .args(["--pg-url", &pg2.url, "restore"])
        .arg(&archive)
        .assert()
        .success();
    let (code, report) = verify(dir.path(), &archive, &["--pg-url", &pg2.url]);
    assert_eq!(code, 0, "a clean restore keeps both states: {report:#}");

    pg2.client()
        .await
        .batch_execute("REFRESH MATERIALIZED VIEW public.mv_nodata")
        .await
        .unwrap();
    let (code, report) = verify(dir.path(), &archive, &["--pg-url", &pg2.url]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        found(&report),
        set(&[(
            "V2",
            "schema",
            "postgres",
            "materialized view public.mv_nodata"
        )]),
        "{report:#}"
    );
}
