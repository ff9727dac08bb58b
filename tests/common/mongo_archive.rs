//! Shared by the MongoDB backup/restore tests: writing a complete archive (HEADER, members,
//! MANIFEST, COMMIT) with the library's dump, restoring one, and reading a collection's raw BSON.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::archive::Header;
use dbkeeper::engine::DumpReport;
use dbkeeper::mongo::dump::{self, DumpOptions, DumpSummary};
use dbkeeper::mongo::restore::{self, MongoRestoreReport, RestoreOptions};
use dbkeeper::mongo::MongoTarget;
use dbkeeper::ops::backup;
use dbkeeper::redact::SecretUrl;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document, RawDocumentBuf};

use super::MongoTestDb;

pub fn target(db: &MongoTestDb) -> MongoTarget {
    MongoTarget::new(&SecretUrl::new(&db.url), &db.name, Duration::from_secs(10))
}

/// Dumps `db` into a new archive at `dir/<name>.dbk.tar`, the way `dbkeeper backup` does it for
/// MongoDB alone: prepare (fixes the snapshot), header, then the library's
/// [`backup::dump_to_file`].
pub async fn dump_to_archive(
    db: &MongoTestDb,
    dir: &Path,
    options: &DumpOptions,
) -> (PathBuf, DumpSummary) {
    let prepared = dump::prepare(&target(db), options).await.expect("prepare");
    let header = Header::new(chrono::Utc::now(), vec![prepared.source().clone()]);
    let path = dir.join(format!("{}.dbk.tar", db.name));
    let (path, _, reports) = backup::dump_to_file(
        &path,
        &header,
        vec![Box::new(prepared)],
        options.jobs,
        None,
        || None,
    )
    .await
    .expect("dump");
    match reports.into_iter().next() {
        Some(DumpReport::Mongo(summary)) => (path, summary),
        other => panic!("expected a MongoDB dump report, got {other:?}"),
    }
}

/// Opens (V0) and restores an archive, as `dbkeeper restore` does.
pub async fn restore_from(
    path: &Path,
    db: &MongoTestDb,
    options: &RestoreOptions,
) -> dbkeeper::Result<MongoRestoreReport> {
    let archive = Arc::new(VerifiedArchive::open(path)?);
    restore::restore_database(&archive, &target(db), options).await
}

/// Every document of a collection as raw BSON, sorted by bytes (an order-independent, exact
/// comparison: two collections are equal iff these lists are).
pub async fn raw_documents(db: &mongodb::Database, collection: &str) -> Vec<Vec<u8>> {
    let mut cursor = db
        .collection::<RawDocumentBuf>(collection)
        .find(doc! {})
        .await
        .unwrap();
    let mut out = Vec::new();
    while cursor.advance().await.unwrap() {
        out.push(cursor.current().as_bytes().to_vec());
    }
    out.sort();
    out
}

/// Documents of a collection in natural order (for capped collections, insertion order).
pub async fn raw_documents_in_order(db: &mongodb::Database, collection: &str) -> Vec<Vec<u8>> {
    let mut cursor = db
        .collection::<RawDocumentBuf>(collection)
        .find(doc! {})
        .await
        .unwrap();
    let mut out = Vec::new();
    while cursor.advance().await.unwrap() {
        out.push(cursor.current().as_bytes().to_vec());
    }
    out
}

pub async fn collection_names(db: &mongodb::Database) -> Vec<String> {
    let mut names: Vec<String> = db
        .list_collections()
        .await
        .unwrap()
        .with_type::<Document>()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|d| d.get_str("name").ok().map(str::to_string))
        .filter(|n| !n.starts_with("system."))
        .collect();
    names.sort();
    names
}
