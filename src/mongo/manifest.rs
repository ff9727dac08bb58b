//! What a MongoDB dump records in `MANIFEST.json` besides its datasets: the `engines.mongo`
//! entry (database, consistency, cluster time, and every collection and view with its
//! metadata member), and how restore and verify read it back.
//!
//! Each collection is also a [`Dataset`] (namespace = database, name = collection) holding its
//! documents; views have no dataset.

use serde::{Deserialize, Serialize};

use super::metadata::{CollectionKind, CollectionMetadata};
use crate::archive::reader::VerifiedArchive;
use crate::archive::{Dataset, Manifest};
use crate::error::{Engine, Error, Result};

/// How the collections of one dump relate in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// Every collection was read with snapshot read concern at one cluster time.
    Snapshot,
    /// The server refused snapshot reads: collections were read one after another, each at its
    /// own point in time.
    Sequential,
}

/// A MongoDB cluster time (`Timestamp(t, i)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTime {
    pub t: u32,
    pub i: u32,
}

impl std::fmt::Display for ClusterTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Timestamp({}, {})", self.t, self.i)
    }
}

/// `engines.mongo` in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MongoManifest {
    pub database: String,
    pub consistency: Consistency,
    /// The cluster time every collection was read at (only with [`Consistency::Snapshot`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_time: Option<ClusterTime>,
    /// Why snapshot reads were not used (only with [`Consistency::Sequential`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_unavailable: Option<String>,
    /// Collections and views, by name.
    pub collections: Vec<CollectionEntry>,
}

/// One collection or view of the dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: CollectionKind,
    /// The `<coll>.metadata.json` member (options, validator, indexes).
    pub metadata_member: String,
}

impl MongoManifest {
    /// The `engines.mongo` entry of `manifest`, if the archive holds a MongoDB dump.
    pub fn from_manifest(manifest: &Manifest) -> Result<Option<MongoManifest>> {
        let Some(value) = manifest.engines.get(Engine::Mongo.as_str()) else {
            return Ok(None);
        };
        serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| {
                Error::bad_input(
                    "MANIFEST.json",
                    format!("engines.mongo is not a MongoDB dump description: {e}"),
                )
            })
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the MongoDB manifest always serializes")
    }

    /// The dataset holding `collection`'s documents.
    pub fn dataset<'m>(&self, manifest: &'m Manifest, collection: &str) -> Option<&'m Dataset> {
        manifest
            .datasets_of(Engine::Mongo)
            .find(|d| d.namespace == self.database && d.name == collection)
    }
}

/// Every collection and view of the archive's MongoDB dump with its parsed definition, in
/// manifest order. Checks that each collection has exactly its dataset and the definition names
/// the same collection, so nothing downstream has to.
pub fn load_collections(
    archive: &VerifiedArchive,
    mongo: &MongoManifest,
) -> Result<Vec<(CollectionMetadata, Option<Dataset>)>> {
    let manifest = archive.manifest();
    let mut out = Vec::with_capacity(mongo.collections.len());
    for entry in &mongo.collections {
        let bytes = archive.read_member(&entry.metadata_member)?;
        let meta = CollectionMetadata::from_json(&bytes, &entry.metadata_member)?;
        if meta.name != entry.name || meta.kind != entry.kind {
            return Err(Error::bad_input(
                format!("archive member {}", entry.metadata_member),
                format!(
                    "describes {} {}, the manifest says {} {}",
                    meta.kind.as_str(),
                    meta.name,
                    entry.kind.as_str(),
                    entry.name
                ),
            ));
        }
        let dataset = mongo.dataset(manifest, &entry.name).cloned();
        if (meta.kind == CollectionKind::Collection) != dataset.is_some() {
            return Err(Error::bad_input(
                "MANIFEST.json",
                format!(
                    "MongoDB {} {}: a collection needs exactly one dataset and a view none",
                    meta.kind.as_str(),
                    meta.name
                ),
            ));
        }
        out.push((meta, dataset));
    }
    Ok(out)
}
