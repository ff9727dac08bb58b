//! V2 for MongoDB: a live database compared with the archive's MongoDB dump.
//!
//! For every archived collection and view, under the name a restore gives it (`--ns-from` /
//! `--ns-to` renames applied, as [`super::restore`] plans them):
//! - counts: exact `countDocuments({})`, never the metadata estimate;
//! - `deep`: instead of counting, every document is read back and its raw BSON hashed exactly as
//!   at dump time ([`inspect::collection_digest`]); the digest's count replaces the count;
//! - validator: `validator`, `validationLevel`, `validationAction` as archived;
//! - options: every other `listCollections` option (capped, size, collation, a view's `viewOn`
//!   and `pipeline`, ...), compared as BSON bytes so types and key order count;
//! - indexes: every `listIndexes` spec by name (missing, unexpected, different).
//!
//! After `restore --mask`, a masked collection's documents are compared with the digest of the
//! masked documents the restore streamed into it
//! ([`crate::mask::document::CollectionMask::streamed_digest`]).
//!
//! Collections the archive does not have are not reported: a restore may legitimately go into a
//! database that holds other collections.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;
use serde_json::Value;

use super::inspect::{self, db_error};
use super::manifest::{load_collections, MongoManifest};
use super::metadata::{CollectionKind, CollectionMetadata, CollectionSpecs};
use super::restore::{plan, selected, Planned};
use super::restore_mark;
use super::MongoTarget;
use crate::archive::reader::VerifiedArchive;
use crate::error::{Engine, Error, Result};
use crate::verify::{Kind, TargetCheck};

/// Options that make up a collection's validation; the rest are compared as [`Kind::Options`].
const VALIDATION_OPTIONS: [&str; 3] = ["validator", "validationLevel", "validationAction"];

/// How much to compare: the options every engine's V2 takes.
pub use crate::engine::CompareOptions as VerifyOptions;

/// Compares `target`'s database with the archive's MongoDB dump. Errors only when the server
/// cannot be reached or the archive holds no MongoDB dump; every difference is in the check.
pub async fn verify_target(
    archive: &VerifiedArchive,
    target: &MongoTarget,
    options: &VerifyOptions,
) -> Result<TargetCheck> {
    let started = Instant::now();
    let mongo = MongoManifest::from_manifest(archive.manifest())?.ok_or_else(|| {
        Error::Usage(format!(
            "archive {} holds no MongoDB dump to compare with {}; drop --mongo-url",
            archive.path().display(),
            target.describe()
        ))
    })?;
    let loaded = selected(
        archive,
        load_collections(archive, &mongo)?,
        &options.selection,
    );
    let mut planned = plan(loaded, &options.renames)?;
    if options.data_only {
        planned.retain(|p| p.dataset.is_some());
    }
    let db = target.database().await?;
    let live: BTreeMap<String, Document> = inspect::list_collections(&db)
        .await?
        .into_iter()
        .filter_map(|info| Some((info.get_str("name").ok()?.to_string(), info)))
        .collect();

    let mut check = TargetCheck::new(Engine::Mongo, target.describe(), options.deep);
    check.objects = planned.len();
    // A restore killed before its index builds leaves every document: counts alone would pass,
    // so the restore's own unfinished marks are checked first.
    let names: Vec<String> = planned.iter().map(|p| p.target_name.clone()).collect();
    let marks = restore_mark::unfinished(&db, &names).await?;
    for (name, mark) in &marks {
        check.mismatch(
            Kind::IncompleteRestore,
            format!("{}.{name}", db.name()),
            "finished restore",
            mark.clone(),
            format!(
                "a restore into {}.{name} started ({mark}) and never finished; run the restore \
                 again with --mode replace",
                db.name()
            ),
        );
    }
    if marks.is_empty() {
        check.checked();
    }
    let queue: VecDeque<(Planned, Option<Document>)> = planned
        .into_iter()
        .map(|p| {
            let info = live.get(&p.target_name).cloned();
            (p, info)
        })
        .collect();
    let workers = options.jobs.max(1).min(queue.len().max(1));
    let queue = Arc::new(Mutex::new(queue));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (db, queue, deep, target) = (db.clone(), queue.clone(), options.deep, target.clone());
        let documents = !options.schema_only;
        let masked = options.masks.mongo.clone();
        let definitions = !options.data_only;
        set.spawn(async move {
            let mut part = TargetCheck::new(Engine::Mongo, target.describe(), deep);
            loop {
                let next = queue.lock().expect("verify queue").pop_front();
                let Some((item, info)) = next else {
                    return Ok::<_, Error>(part);
                };
                let compare = Compare {
                    deep,
                    documents,
                    definitions,
                    masked: masked.as_deref(),
                };
                check_one(&mut part, &db, &item, info.as_ref(), compare).await?;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        let part = joined
            .map_err(|e| Error::db(Engine::Mongo, format!("a verify worker failed: {e}")))??;
        check.checks += part.checks;
        check.mismatches.extend(part.mismatches);
    }
    check.sort();
    check.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    Ok(check)
}

/// What [`check_one`] compares.
#[derive(Clone, Copy)]
struct Compare<'a> {
    /// Content digests instead of counts.
    deep: bool,
    /// Documents at all (not after `--schema-only`).
    documents: bool,
    /// Options, validators and indexes (not after `--data-only`).
    definitions: bool,
    /// After `restore --mask`: the masks whose streamed digests masked collections are
    /// compared with.
    masked: Option<&'a crate::mask::MongoMask>,
}

/// Every check of one archived collection or view.
async fn check_one(
    check: &mut TargetCheck,
    db: &Database,
    item: &Planned,
    info: Option<&Document>,
    compare: Compare<'_>,
) -> Result<()> {
    let Compare {
        deep,
        documents,
        definitions,
        masked,
    } = compare;
    let name = format!("{}.{}", db.name(), item.target_name);
    let archived = &item.definition;
    let Some(info) = info else {
        let expected = match &item.dataset {
            Some(d) => Value::from(d.rows),
            None => Value::from("view"),
        };
        check.mismatch(
            Kind::Missing,
            &name,
            expected,
            Value::Null,
            format!("{} {name} is missing", archived.kind.as_str()),
        );
        return Ok(());
    };
    let is_view = info.get_str("type") == Ok(CollectionKind::View.as_str());
    let indexes = if is_view {
        Vec::new()
    } else {
        inspect::index_specs(db, &item.target_name).await?
    };
    let found = CollectionMetadata::from_list_collections(info, indexes)
        .map_err(|message| Error::db(Engine::Mongo, format!("{name}: {message}")))?;
    if found.kind != archived.kind {
        check.mismatch(
            Kind::Options,
            &name,
            archived.kind.as_str(),
            found.kind.as_str(),
            format!(
                "{name} is a {}, the archive has a {}",
                found.kind.as_str(),
                archived.kind.as_str()
            ),
        );
        return Ok(());
    }
    if definitions {
        compare_specs(check, &name, &archived.specs(), &found.specs());
    }
    let Some(dataset) = item.dataset.as_ref().filter(|_| documents) else {
        return Ok(()); // a view holds no documents; a schema-only restore restored none
    };
    if deep {
        let digest = inspect::collection_digest(db, &item.target_name).await?;
        check.compare(Kind::Count, &name, dataset.rows, digest.count(), |e, f| {
            format!("collection {name} has {f} documents, the archive has {e}")
        });
        match masked.and_then(|m| m.collection(&dataset.name)) {
            None => check.compare(
                Kind::Content,
                &name,
                dataset.digest.clone(),
                digest.to_hex(),
                |_, _| {
                    format!(
                        "collection {name}: the content of its documents differs from the archive"
                    )
                },
            ),
            Some(mask) => check.compare(
                Kind::Content,
                &name,
                mask.streamed_digest().to_hex(),
                digest.to_hex(),
                |_, _| {
                    format!(
                        "collection {name}: the content of its documents differs from the masked \
                         documents the restore wrote into it"
                    )
                },
            ),
        }
    } else {
        let count = db
            .collection::<Document>(&item.target_name)
            .count_documents(doc! {})
            .await
            .map_err(|e| db_error(format!("counting documents of {name}"), &e))?;
        check.compare(Kind::Count, &name, dataset.rows, count, |e, f| {
            format!("collection {name} has {f} documents, the archive has {e}")
        });
    }
    Ok(())
}

/// Options (validation apart from the rest) and indexes, each difference on its own.
fn compare_specs(
    check: &mut TargetCheck,
    name: &str,
    archived: &CollectionSpecs,
    found: &CollectionSpecs,
) {
    let keys: std::collections::BTreeSet<&str> = archived
        .options
        .keys()
        .chain(found.options.keys())
        .map(String::as_str)
        .collect();
    for key in keys {
        let (expected, actual) = (archived.options.get(key), found.options.get(key));
        let kind = if VALIDATION_OPTIONS.contains(&key) {
            Kind::Validator
        } else {
            Kind::Options
        };
        if same_bson(expected, actual) {
            check.checked();
        } else {
            check.mismatch(
                kind,
                name,
                json_of(expected),
                json_of(actual),
                format!("collection {name}: option {key} differs from the archive"),
            );
        }
    }
    let by_name = |specs: &[Document]| -> BTreeMap<String, Document> {
        specs
            .iter()
            .map(|s| (s.get_str("name").unwrap_or_default().to_string(), s.clone()))
            .collect()
    };
    let (archived, found) = (by_name(&archived.indexes), by_name(&found.indexes));
    let names: std::collections::BTreeSet<&String> = archived.keys().chain(found.keys()).collect();
    for index in names {
        let (expected, actual) = (archived.get(index), found.get(index));
        let (expected, actual) = (
            expected.cloned().map(Bson::Document),
            actual.cloned().map(Bson::Document),
        );
        if same_bson(expected.as_ref(), actual.as_ref()) {
            check.checked();
            continue;
        }
        let what = match (&expected, &actual) {
            (Some(_), None) => "is missing",
            (None, Some(_)) => "is not in the archive",
            _ => "has a different definition",
        };
        check.mismatch(
            Kind::Index,
            format!("{name}.{index}"),
            json_of(expected.as_ref()),
            json_of(actual.as_ref()),
            format!("index {index} of {name} {what}"),
        );
    }
}

/// Byte equality of two BSON values: types and key order at every level count (a `Document`'s
/// `==` ignores key order, which would hide a reordered index key).
fn same_bson(a: Option<&Bson>, b: Option<&Bson>) -> bool {
    let bytes = |v: &Bson| {
        let mut out = Vec::new();
        doc! { "v": v.clone() }
            .to_writer(&mut out)
            .expect("a document always serializes");
        out
    };
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => bytes(a) == bytes(b),
        _ => false,
    }
}

/// A BSON value as relaxed Extended JSON, for the report; `null` when absent.
fn json_of(value: Option<&Bson>) -> Value {
    value
        .cloned()
        .map(Bson::into_relaxed_extjson)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_options_and_indexes_are_reported_separately() {
        let archived = CollectionSpecs::new(
            doc! { "validator": { "a": { "$type": "string" } }, "capped": false },
            vec![
                doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
                doc! { "v": 2, "key": { "a": 1, "b": 1 }, "name": "a_b" },
                doc! { "v": 2, "key": { "c": 1 }, "name": "c_1" },
            ],
        );
        let found = CollectionSpecs::new(
            doc! { "capped": false, "validator": { "a": { "$type": "int" } } },
            vec![
                doc! { "name": "_id_", "key": { "_id": 1 }, "v": 2 },
                doc! { "v": 2, "key": { "b": 1, "a": 1 }, "name": "a_b" },
                doc! { "v": 2, "key": { "d": 1 }, "name": "d_1" },
            ],
        );
        let mut check = TargetCheck::new(Engine::Mongo, "h/db".into(), false);
        compare_specs(&mut check, "db.users", &archived, &found);
        check.sort();
        let got: Vec<(Kind, &str)> = check
            .mismatches
            .iter()
            .map(|m| (m.kind, m.object.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Index, "db.users.a_b"),
                (Kind::Index, "db.users.c_1"),
                (Kind::Index, "db.users.d_1"),
                (Kind::Validator, "db.users"),
            ]
        );
        assert_eq!(check.checks, 2 + 4, "2 options and 4 index names compared");
        assert_eq!(check.mismatches[3].expected["a"]["$type"], "string");
        assert!(check.mismatches[2].expected.is_null());

        let mut same = TargetCheck::new(Engine::Mongo, "h/db".into(), false);
        compare_specs(&mut same, "db.users", &archived, &archived.clone());
        assert!(same.is_ok());
    }
}
