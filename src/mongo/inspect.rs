//! Read-only questions about a live MongoDB database, asked the same way the dump answers them,
//! so a restored database can be compared with an archive: exact document counts, the
//! order-independent content digest of every document's raw BSON, and the collection's options
//! and index specs.
//!
//! Counts are `countDocuments({})` (an aggregation that reads every document), never the
//! metadata estimate, which can be wrong after an unclean shutdown.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Database;

use super::connect::short_error;
use super::metadata::{CollectionKind, CollectionMetadata, CollectionSpecs};
use crate::archive::digest::ContentDigest;
use crate::error::{Engine, Error, Result};

/// Collections whose names start with this belong to the server, not to the application.
pub const SYSTEM_PREFIX: &str = "system.";

pub(crate) fn db_error(what: impl std::fmt::Display, e: &mongodb::error::Error) -> Error {
    Error::db(Engine::Mongo, format!("{what}: {}", short_error(e)))
}

/// Every collection and view of `db` (not `system.*`, nor the unfinished-restore marks of
/// [`super::restore_mark`]), as `listCollections` documents, by name.
pub async fn list_collections(db: &Database) -> Result<Vec<Document>> {
    let mut infos: Vec<Document> = db
        .list_collections()
        .await
        .map_err(|e| db_error(format!("listing collections of {}", db.name()), &e))?
        .with_type::<Document>()
        .try_collect()
        .await
        .map_err(|e| db_error(format!("listing collections of {}", db.name()), &e))?;
    infos.retain(|info| {
        info.get_str("name").is_ok_and(|n| {
            !n.starts_with(SYSTEM_PREFIX) && n != super::restore_mark::MARKS_COLLECTION
        })
    });
    infos.sort_by(|a, b| a.get_str("name").ok().cmp(&b.get_str("name").ok()));
    Ok(infos)
}

/// Exact document count of every collection (views are not counted: they hold no documents).
pub async fn collection_counts(db: &Database) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for info in list_collections(db).await? {
        if info.get_str("type").unwrap_or("collection") != "collection" {
            continue;
        }
        let name = info.get_str("name").unwrap_or_default().to_string();
        let count = db
            .collection::<Document>(&name)
            .count_documents(doc! {})
            .await
            .map_err(|e| db_error(format!("counting documents of {}.{name}", db.name()), &e))?;
        counts.insert(name, count);
    }
    Ok(counts)
}

/// The content digest of every document of one collection, over the raw BSON bytes exactly as
/// the server returns them (what [`crate::archive::chunk::ChunkBuilder`] hashes during a dump).
pub async fn collection_digest(db: &Database, collection: &str) -> Result<ContentDigest> {
    let context = || format!("reading {}.{collection}", db.name());
    let mut cursor = db
        .collection::<RawDocumentBuf>(collection)
        .find(doc! {})
        .await
        .map_err(|e| db_error(context(), &e))?;
    let mut digest = ContentDigest::new();
    while cursor
        .advance()
        .await
        .map_err(|e| db_error(context(), &e))?
    {
        digest.add(cursor.current().as_bytes());
    }
    Ok(digest)
}

/// One collection's or view's full definition as the server reports it now.
pub async fn collection_metadata(db: &Database, collection: &str) -> Result<CollectionMetadata> {
    let context = || format!("reading the definition of {}.{collection}", db.name());
    let info = db
        .list_collections()
        .filter(doc! { "name": collection })
        .await
        .map_err(|e| db_error(context(), &e))?
        .with_type::<Document>()
        .try_next()
        .await
        .map_err(|e| db_error(context(), &e))?
        .ok_or_else(|| {
            Error::db(
                Engine::Mongo,
                format!("{}: no collection {collection}", context()),
            )
        })?;
    let is_view = info.get_str("type") == Ok(CollectionKind::View.as_str());
    let indexes = if is_view {
        Vec::new()
    } else {
        index_specs(db, collection).await?
    };
    CollectionMetadata::from_list_collections(&info, indexes)
        .map_err(|message| Error::db(Engine::Mongo, format!("{}: {message}", context())))
}

/// One collection's options and index specs, normalized for comparison.
pub async fn collection_specs(db: &Database, collection: &str) -> Result<CollectionSpecs> {
    Ok(collection_metadata(db, collection).await?.specs())
}

/// `listIndexes` of one collection, in the server's order.
pub async fn index_specs(db: &Database, collection: &str) -> Result<Vec<Document>> {
    let context = || format!("listing indexes of {}.{collection}", db.name());
    let cursor = db
        .run_cursor_command(doc! { "listIndexes": collection })
        .await
        .map_err(|e| db_error(context(), &e))?;
    cursor
        .try_collect()
        .await
        .map_err(|e| db_error(context(), &e))
}
