//! What masking needs to know about an archive's MongoDB collections: the field paths each is
//! known to have (its validator's `$jsonSchema` and the documents of its first chunk) and the
//! paths the validator requires. Read from the archive, before any database is touched.

use std::sync::Arc;

use mongodb::bson::RawDocument;

use super::manifest::{load_collections, MongoManifest};
use crate::archive::reader::VerifiedArchive;
use crate::error::{Error, Result};
use crate::mask::document::{add_document_paths, add_schema_paths};
use crate::mask::plan::MongoCollectionShape;
use crate::mask::{MongoMask, Rules};

/// Checks `rules` against the archive's MongoDB collections and builds their masks.
pub fn plan(archive: &Arc<VerifiedArchive>, rules: &Rules) -> Result<MongoMask> {
    let Some(mongo) = MongoManifest::from_manifest(archive.manifest())? else {
        return crate::mask::plan::plan_mongo(rules, &[]);
    };
    let mut shapes = Vec::new();
    for (definition, dataset) in load_collections(archive, &mongo)? {
        let Some(dataset) = dataset else { continue };
        let mut shape = MongoCollectionShape {
            name: definition.name.clone(),
            bookkeeping: crate::mongo::mask_schema::is_bookkeeping(&definition.name),
            ..Default::default()
        };
        if let Some(validator) = definition.validator() {
            add_schema_paths(validator, &mut shape.known_paths, &mut shape.required_paths);
        }
        // The first chunk is a sample of the documents: bounded work whatever the size.
        if let Some(first) = dataset.chunks.first() {
            let chunk = archive.read_chunk(&dataset, first)?;
            dataset
                .format
                .for_each_record(&chunk.data, |record| {
                    if let Ok(document) = RawDocument::from_bytes(record) {
                        add_document_paths(document, "", &mut shape.known_paths);
                    }
                })
                .map_err(|message| Error::bad_input(first.member.clone(), message))?;
        }
        shapes.push(shape);
    }
    crate::mask::plan::plan_mongo(rules, &shapes)
}

/// dbkeeper's own migration collections: no personal data, so not subject to fail-closed.
pub fn is_bookkeeping(collection: &str) -> bool {
    use crate::mongo::migrate::history::{AUDIT_COLLECTION, HISTORY_COLLECTION};
    use crate::mongo::migrate::lease::LOCK_COLLECTION;
    [HISTORY_COLLECTION, AUDIT_COLLECTION, LOCK_COLLECTION].contains(&collection)
}
