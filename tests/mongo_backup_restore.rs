//! MongoDB backup -> restore into a fresh database -> every document byte-identical, same
//! options, validators, index specs and views. The fixture holds every BSON type (the
//! deprecated ones written as raw bytes), nested documents and arrays, a near-16 MB document,
//! a `$jsonSchema` validator with documents that violate it, a capped collection, TTL, 2dsphere,
//! partial unique, sparse and collated indexes, a collection with a default collation, an empty
//! collection and a view.
//!
//! Text indexes are not in the fixture: the test server (SecantusDB) refuses to build them.

#![recursion_limit = "512"]

mod common;

use std::collections::BTreeMap;

use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::mongo::dump::DumpOptions;
use dbkeeper::mongo::inspect;
use dbkeeper::mongo::manifest::{Consistency, MongoManifest};
use dbkeeper::mongo::namespace::Rename;
use dbkeeper::mongo::restore::{RestoreMode, RestoreOptions};
use dbkeeper::{Engine, ExitCode};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{
    doc, oid::ObjectId, rawdoc, Binary, Bson, DateTime, Decimal128, Document, RawArrayBuf, RawBson,
    RawDocumentBuf, RawJavaScriptCodeWithScope, Regex, Timestamp,
};
use mongodb::options::InsertManyOptions;

use common::mongo_archive::*;
use common::MongoTestDb;

/// Appends one element given as raw bytes (type, key, payload) to a finished document, for the
/// deprecated types the driver will not build (DBPointer, Undefined, Symbol).
fn with_raw_element(doc: RawDocumentBuf, kind: u8, key: &str, payload: &[u8]) -> RawDocumentBuf {
    let mut bytes = doc.into_bytes();
    bytes.pop(); // the terminating NUL
    bytes.push(kind);
    bytes.extend_from_slice(key.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(payload);
    bytes.push(0);
    let len = bytes.len() as i32;
    bytes[..4].copy_from_slice(&len.to_le_bytes());
    RawDocumentBuf::from_bytes(bytes).unwrap()
}

fn bson_string(s: &str) -> Vec<u8> {
    let mut out = ((s.len() + 1) as i32).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    out
}

fn binary(subtype: BinarySubtype, bytes: &[u8]) -> RawBson {
    RawBson::Binary(Binary {
        subtype,
        bytes: bytes.to_vec(),
    })
}

/// Documents with every BSON type, awkward values and deep nesting; field order deliberately
/// not alphabetical.
fn every_type_documents() -> Vec<RawDocumentBuf> {
    let mut nested = rawdoc! { "leaf": 1_i32 };
    for depth in 0..30 {
        let mut array = RawArrayBuf::new();
        array.push(RawBson::Document(nested));
        array.push(RawBson::Int32(depth));
        array.push(RawBson::Array(RawArrayBuf::new()));
        nested = rawdoc! { "z": array, "a": RawDocumentBuf::new() };
    }
    let mut mixed = RawArrayBuf::new();
    for value in [
        RawBson::Null,
        RawBson::Boolean(true),
        RawBson::Double(f64::NAN),
        RawBson::String("ünïcødé \u{0} not a terminator? no: inside a string is fine".into()),
    ] {
        mixed.push(value);
    }
    let scope = rawdoc! { "x": 1_i32, "y": "scope" };
    let first = rawdoc! {
        "_id": 1_i32,
        "zebra": "first field, not sorted",
        "double": 1.5_f64,
        "negative_zero": -0.0_f64,
        "infinity": f64::INFINITY,
        "neg_infinity": f64::NEG_INFINITY,
        "nan": f64::NAN,
        "subnormal": 5e-324_f64,
        "whole_double": 2.0_f64,
        "string": "hello",
        "empty_string": "",
        "document": { "b": 1_i32, "a": { "deep": [1_i32, 2_i64, 3.0_f64] } },
        "empty_document": {},
        "array": [1_i32, "two", { "three": 3_i32 }, [4_i32, [5_i32]]],
        "empty_array": [],
        "bin_generic": binary(BinarySubtype::Generic, b"\x00\x01\x02\xff"),
        "bin_uuid": binary(BinarySubtype::Uuid, &[0x11; 16]),
        "bin_md5": binary(BinarySubtype::Md5, &[0x22; 16]),
        "bin_user": binary(BinarySubtype::UserDefined(0x80), b"user defined"),
        "bin_empty": binary(BinarySubtype::Generic, b""),
        "oid": ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap(),
        "true": true,
        "false": false,
        "date": DateTime::from_millis(1_700_000_000_123),
        "date_negative": DateTime::from_millis(-62_135_596_800_000),
        "date_far_future": DateTime::from_millis(253_402_300_799_999),
        "null": RawBson::Null,
        "regex": Regex { pattern: "^a.*b$".into(), options: "imsx".into() },
        "code": RawBson::JavaScriptCode("function () { return 1; }".into()),
        "code_with_scope": RawBson::JavaScriptCodeWithScope(RawJavaScriptCodeWithScope {
            code: "function () { return x; }".into(),
            scope,
        }),
        "int32": i32::MIN,
        "int32_max": i32::MAX,
        "timestamp": Timestamp { time: 1_700_000_000, increment: 7 },
        "timestamp_zero": Timestamp { time: 0, increment: 0 },
        "int64": i64::MIN,
        "int64_max": i64::MAX,
        "int64_small": 1_i64,
        "decimal": Decimal128::from_bytes([
            0x39, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3c, 0x30,
        ]),
        "decimal_nan": Decimal128::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7c]),
        "min": RawBson::MinKey,
        "max": RawBson::MaxKey,
        "mixed": mixed,
        "nested": nested,
        "a": "last field, not sorted",
    };
    let mut pointer = bson_string("otherdb.othercoll");
    pointer.extend_from_slice(&[0x5a; 12]);
    let deprecated = with_raw_element(
        rawdoc! { "_id": 2_i32 },
        0x0E,
        "symbol",
        &bson_string("sym"),
    );
    let deprecated = with_raw_element(deprecated, 0x06, "undefined", &[]);
    let deprecated = with_raw_element(deprecated, 0x0C, "dbpointer", &pointer);

    let mut documents = vec![first, deprecated];
    // _id of several types.
    documents.push(rawdoc! { "_id": "string id", "v": 1_i32 });
    documents.push(rawdoc! { "_id": ObjectId::parse_str("000000000000000000000001").unwrap() });
    documents.push(rawdoc! { "_id": { "compound": 1_i32, "key": "x" }, "v": 2_i64 });
    documents.push(rawdoc! { "_id": 3_i64, "v": 3.0_f64 });
    documents.push(rawdoc! { "_id": binary(BinarySubtype::Uuid, &[0x33; 16]) });
    for i in 100..400_i32 {
        documents.push(
            rawdoc! { "_id": i, "n": i64::from(i) * 1_000_003, "s": "x".repeat((i % 50) as usize) },
        );
    }
    documents
}

/// ~15.5 MB, just under the 16 MiB document limit (one: the shared in-memory test server has a
/// 1 GB cache, and every byte here is written four times per run), next to a small one.
fn large_documents() -> Vec<RawDocumentBuf> {
    let mut documents = vec![
        rawdoc! { "_id": 1_i32, "blob": binary(BinarySubtype::Generic, b"small"), "tail": "end" },
    ];
    documents.extend((0..1_u8)
        .map(|i| {
            let blob = vec![i.wrapping_mul(31).wrapping_add(7); 15_500_000];
            rawdoc! { "_id": i32::from(i), "blob": binary(BinarySubtype::Generic, &blob), "tail": "end" }
        }));
    documents
}

async fn insert_raw(db: &mongodb::Database, collection: &str, documents: &[RawDocumentBuf]) {
    db.collection::<RawDocumentBuf>(collection)
        .insert_many(documents)
        .with_options(
            InsertManyOptions::builder()
                .ordered(true)
                .bypass_document_validation(true)
                .build(),
        )
        .await
        .unwrap_or_else(|e| panic!("inserting the fixture into {collection}: {e}"));
}

async fn command(db: &mongodb::Database, command: Document) {
    db.run_command(command.clone())
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"));
}

/// Builds the fixture. Returns the collection names (views excluded).
async fn build_fixture(db: &mongodb::Database) -> Vec<&'static str> {
    insert_raw(db, "every_type", &every_type_documents()).await;
    insert_raw(db, "large", &large_documents()).await;

    // Documents that break the validator exist before it does (as after a schema tightening).
    let people: Vec<RawDocumentBuf> = (0..20_i32)
        .map(|i| match i {
            3 => rawdoc! { "_id": i, "name": "no email" },
            7 => rawdoc! { "_id": i, "email": 42_i32, "age": 30_i32 },
            _ => rawdoc! { "_id": i, "email": format!("p{i}@example.com"), "age": 10 + i },
        })
        .collect();
    insert_raw(db, "people", &people).await;
    command(
        db,
        doc! {
            "collMod": "people",
            "validator": { "$jsonSchema": {
                "bsonType": "object",
                "required": ["email"],
                "properties": { "email": { "bsonType": "string", "pattern": "@" },
                                "age": { "bsonType": ["int", "long"], "minimum": 0 } },
            } },
            "validationLevel": "strict",
            "validationAction": "error",
        },
    )
    .await;
    command(
        db,
        doc! { "createIndexes": "people", "indexes": [
            { "key": { "email": 1 }, "name": "email_unique", "unique": true,
              "partialFilterExpression": { "email": { "$type": "string" } } },
            { "key": { "age": -1, "name": 1 }, "name": "age_name", "sparse": true },
            { "key": { "name": 1 }, "name": "name_fr", "collation": { "locale": "fr", "strength": 1 } },
        ] },
    )
    .await;

    command(
        db,
        doc! { "create": "capped_log", "capped": true, "size": 65_536_i64, "max": 50_i64 },
    )
    .await;
    let log: Vec<RawDocumentBuf> = (0..80_i32)
        .map(|i| rawdoc! { "_id": i, "line": format!("entry {i}") })
        .collect();
    insert_raw(db, "capped_log", &log).await;

    let sessions: Vec<RawDocumentBuf> = (0..10_i32)
        .map(|i| rawdoc! { "_id": i, "created": DateTime::from_millis(4_102_444_800_000 + i64::from(i)) })
        .collect();
    insert_raw(db, "sessions", &sessions).await;
    command(
        db,
        doc! { "createIndexes": "sessions", "indexes": [
            { "key": { "created": 1 }, "name": "ttl_created", "expireAfterSeconds": 3600 },
        ] },
    )
    .await;

    let places: Vec<RawDocumentBuf> = (0..10_i32)
        .map(|i| {
            rawdoc! { "_id": i, "loc": { "type": "Point", "coordinates": [f64::from(i), 45.5] } }
        })
        .collect();
    insert_raw(db, "places", &places).await;
    command(
        db,
        doc! { "createIndexes": "places", "indexes": [
            { "key": { "loc": "2dsphere" }, "name": "loc_2dsphere" },
        ] },
    )
    .await;

    command(
        db,
        doc! { "create": "names", "collation": { "locale": "en", "strength": 2 } },
    )
    .await;
    insert_raw(
        db,
        "names",
        &[
            rawdoc! { "_id": 1_i32, "n": "Ada" },
            rawdoc! { "_id": 2_i32, "n": "ada" },
        ],
    )
    .await;

    command(db, doc! { "create": "empty" }).await;
    command(
        db,
        doc! { "create": "adults", "viewOn": "people",
        "pipeline": [{ "$match": { "age": { "$gte": 18 } } }, { "$project": { "email": 1 } }] },
    )
    .await;

    vec![
        "capped_log",
        "empty",
        "every_type",
        "large",
        "names",
        "people",
        "places",
        "sessions",
    ]
}

async fn assert_same_database(
    source: &mongodb::Database,
    restored: &mongodb::Database,
    collections: &[&str],
    renames: &BTreeMap<&str, &str>,
) {
    let name_in_restored = |c: &str| renames.get(c).copied().unwrap_or(c).to_string();
    for &collection in collections {
        let restored_name = name_in_restored(collection);
        let want = raw_documents(source, collection).await;
        let got = raw_documents(restored, &restored_name).await;
        assert_eq!(
            got.len(),
            want.len(),
            "{collection}: restored {} documents, source has {}",
            got.len(),
            want.len()
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w,
                "{collection}: document {i} differs byte for byte ({} vs {} bytes)",
                g.len(),
                w.len()
            );
        }
        let want_specs = inspect::collection_specs(source, collection).await.unwrap();
        let got_specs = inspect::collection_specs(restored, &restored_name)
            .await
            .unwrap();
        assert_eq!(
            got_specs, want_specs,
            "{collection}: options or indexes differ"
        );
    }
    let view = inspect::collection_specs(source, "adults").await.unwrap();
    let mut restored_view = inspect::collection_specs(restored, "adults").await.unwrap();
    if let Some(original) = renames.get("people") {
        assert_eq!(
            restored_view.options.get_str("viewOn").unwrap(),
            *original,
            "the view follows its renamed collection"
        );
        restored_view.options.insert("viewOn", "people");
    }
    assert_eq!(restored_view, view, "the view differs");
}

fn counts_of(summary: &dbkeeper::mongo::dump::DumpSummary, collection: &str) -> u64 {
    summary
        .collections
        .iter()
        .find(|c| c.name == collection)
        .unwrap_or_else(|| panic!("{collection} was not dumped"))
        .documents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_round_trip_is_byte_identical() {
    let source = MongoTestDb::create().await;
    let restored = MongoTestDb::create().await;
    let source_db = source.db().await;
    let collections = build_fixture(&source_db).await;
    let dir = tempfile::tempdir().unwrap();

    // Small chunks, so collections span many members; the large documents get one each.
    let options = DumpOptions {
        chunk_bytes: 8 << 10,
        jobs: 3,
        ..DumpOptions::default()
    };
    let (path, summary) =
        common::mongo_archive::dump_to_archive(&source, dir.path(), &options).await;

    // The manifest: exact counts (what was written), a digest per collection, the point in time.
    let archive = VerifiedArchive::open(&path).unwrap();
    let manifest = archive.manifest();
    let mongo = MongoManifest::from_manifest(manifest).unwrap().unwrap();
    assert_eq!(mongo.consistency, Consistency::Snapshot, "{mongo:?}");
    let cluster_time = mongo
        .cluster_time
        .expect("a snapshot dump has a cluster time");
    let source_entry = manifest.source(Engine::Mongo).unwrap();
    assert_eq!(
        source_entry.snapshot.as_deref(),
        Some(cluster_time.to_string().as_str())
    );
    assert_eq!(summary.views, ["adults"]);
    let large = summary
        .collections
        .iter()
        .find(|c| c.name == "large")
        .unwrap();
    assert_eq!(large.documents, 2);
    assert!(large.raw_bytes > 15_500_000, "{large:?}");
    assert_eq!(counts_of(&summary, "every_type"), 307);
    // (Real MongoDB keeps only the last 50 of the 80 log entries; the test server ignores
    // `max`. Either way the archive must hold what the collection holds, checked below.)
    assert!(counts_of(&summary, "capped_log") >= 50);
    assert_eq!(counts_of(&summary, "empty"), 0);
    let counts = inspect::collection_counts(&source_db).await.unwrap();
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>(),
        collections
    );
    for dataset in manifest.datasets_of(Engine::Mongo) {
        assert_eq!(dataset.rows, counts[&dataset.name], "{}", dataset.name);
        let live = inspect::collection_digest(&source_db, &dataset.name)
            .await
            .unwrap();
        assert_eq!(dataset.digest, live.to_hex(), "{}", dataset.name);
    }
    assert!(
        manifest
            .datasets_of(Engine::Mongo)
            .find(|d| d.name == "every_type")
            .unwrap()
            .chunks
            .len()
            > 1
    );
    let v1 = archive.verify_decode(2);
    assert!(v1.problems.is_empty(), "{:?}", v1.problems);
    drop(archive);

    let report = restore_from(&path, &restored, &RestoreOptions::default())
        .await
        .expect("restore");
    assert_eq!(report.documents, summary.documents);
    assert_eq!(report.views, ["adults"]);
    let people = report
        .collections
        .iter()
        .find(|c| c.name == "people")
        .unwrap();
    assert_eq!(
        people.failing_validator,
        Some(2),
        "the two documents that violate the validator are restored and counted: {people:?}"
    );
    assert_eq!(report.documents_failing_validator, 2);
    assert_eq!(people.indexes, 3);

    let restored_db = restored.db().await;
    assert_same_database(&source_db, &restored_db, &collections, &BTreeMap::new()).await;
    // Capped collections keep their insertion order, not just their set of documents.
    assert_eq!(
        raw_documents_in_order(&restored_db, "capped_log").await,
        raw_documents_in_order(&source_db, "capped_log").await
    );
    assert_eq!(
        inspect::collection_counts(&restored_db).await.unwrap(),
        counts
    );

    // Restoring again into the same database is refused and changes nothing...
    let refused = restore_from(&path, &restored, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(refused.exit_code(), ExitCode::Refused, "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains("--mode replace") && message.contains("people"),
        "{message}"
    );
    assert_eq!(
        inspect::collection_counts(&restored_db).await.unwrap(),
        counts
    );

    // ...unless asked to replace: the extra document disappears, unrelated collections stay.
    restored_db
        .collection::<Document>("people")
        .insert_one(doc! { "_id": 999, "email": "extra@example.com" })
        .await
        .unwrap();
    restored_db
        .collection::<Document>("unrelated")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    let replace = RestoreOptions {
        mode: RestoreMode::Replace,
        ..RestoreOptions::default()
    };
    let report = restore_from(&path, &restored, &replace).await.unwrap();
    assert_eq!(report.dropped.len(), collections.len() + 1);
    assert_same_database(&source_db, &restored_db, &collections, &BTreeMap::new()).await;
    assert_eq!(
        restored_db
            .collection::<Document>("unrelated")
            .count_documents(doc! {})
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_renames_collections_and_follows_views() {
    let source = MongoTestDb::create().await;
    let restored = MongoTestDb::create().await;
    let source_db = source.db().await;
    source_db
        .collection::<Document>("people")
        .insert_many((0..5).map(|i| doc! { "_id": i, "age": 20 + i, "email": format!("{i}@x") }))
        .await
        .unwrap();
    source_db
        .collection::<Document>("audit_2024_log")
        .insert_one(doc! { "_id": 1, "x": Bson::Int64(1) })
        .await
        .unwrap();
    source_db
        .collection::<Document>("skipped_tmp")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    command(
        &source_db,
        doc! { "create": "adults", "viewOn": "people", "pipeline": [{ "$match": { "age": { "$gte": 21 } } }] },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let options = DumpOptions {
        exclude: vec!["*_tmp".into()],
        snapshot_reads: false,
        ..DumpOptions::default()
    };
    let (path, summary) =
        common::mongo_archive::dump_to_archive(&source, dir.path(), &options).await;
    // Without snapshot reads the manifest says the collections were read one after another.
    let archive = VerifiedArchive::open(&path).unwrap();
    let mongo = MongoManifest::from_manifest(archive.manifest())
        .unwrap()
        .unwrap();
    assert_eq!(mongo.consistency, Consistency::Sequential);
    assert_eq!(mongo.cluster_time, None);
    assert!(mongo.snapshot_unavailable.is_some());
    let source_entry = archive.manifest().source(Engine::Mongo).unwrap();
    assert_eq!(source_entry.snapshot, None);
    assert!(
        source_entry.consistency.contains("one after another"),
        "{}",
        source_entry.consistency
    );
    drop(archive);
    assert_eq!(
        summary
            .collections
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["audit_2024_log", "people"]
    );

    let renames = vec![
        Rename::new("people", "persons").unwrap(),
        Rename::new("audit_*_log", "old_audit_*").unwrap(),
    ];
    let report = restore_from(
        &path,
        &restored,
        &RestoreOptions {
            renames,
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        collection_names(&restored.db().await).await,
        ["adults", "old_audit_2024", "persons"]
    );
    let persons = report
        .collections
        .iter()
        .find(|c| c.name == "persons")
        .unwrap();
    assert_eq!(persons.renamed_from.as_deref(), Some("people"));
    let restored_db = restored.db().await;
    let renamed: BTreeMap<&str, &str> =
        [("people", "persons"), ("audit_2024_log", "old_audit_2024")].into();
    assert_same_database(
        &source_db,
        &restored_db,
        &["audit_2024_log", "people"],
        &renamed,
    )
    .await;
    // The view reads the renamed collection.
    let adults = restored_db
        .collection::<Document>("adults")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(adults, 4);
}
