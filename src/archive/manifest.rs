//! The archive's JSON documents: `HEADER.json` (written first, before any data) and
//! `MANIFEST.json` (written last, describing every member). Engine-neutral: what only one engine
//! needs lives in the free-form `extra` values, typed by that engine's module.
//!
//! Compatibility: readers refuse a `format_version` they do not know; fields added later must be
//! optional (`#[serde(default)]`) so older archives keep reading.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::chunk::RecordFormat;
use super::codec::Codec;
use super::crypt::EncryptionInfo;
use crate::error::Engine;

/// Identifies the file type inside HEADER.json and MANIFEST.json.
pub const FORMAT_NAME: &str = "dbkeeper-archive";
/// The archive format this build writes. Version 2 added per-chunk codecs (zstd by default);
/// version 1 archives (every chunk gzip) are still read.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest archive format this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// `HEADER.json`: what a reader can learn before scanning the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    pub tool_version: String,
    pub created_at: DateTime<Utc>,
    pub sources: Vec<Source>,
}

impl Header {
    pub fn new(created_at: DateTime<Utc>, sources: Vec<Source>) -> Header {
        Header {
            format: FORMAT_NAME.to_string(),
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at,
            sources,
        }
    }
}

/// One database that was dumped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub engine: Engine,
    /// The connection URL with its password redacted.
    pub url: String,
    pub database: String,
    pub server_version: String,
    /// Identifies the server instance (PostgreSQL's system identifier), so restore can refuse to
    /// overwrite the very database the archive came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// The snapshot the data was read at (PostgreSQL exported snapshot id, MongoDB cluster time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// What consistency the dump guarantees, in words.
    pub consistency: String,
}

/// `MANIFEST.json`: everything needed to check and restore the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub tool_version: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub sources: Vec<Source>,
    /// Every member before `MANIFEST.json`, in archive order. Filled in by the writer.
    pub members: Vec<MemberEntry>,
    /// Tables and collections, each with its chunks.
    pub datasets: Vec<Dataset>,
    /// Per-engine data that is not a dataset (PostgreSQL: schema members, sequence values,
    /// materialized views; MongoDB: metadata members). Keyed by [`Engine::as_str`].
    #[serde(default)]
    pub engines: BTreeMap<String, serde_json::Value>,
    /// Present when the archive was written by `backup --mask`: it holds masked values only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masking: Option<MaskingRecord>,
    /// Set when the archive is encrypted: then this clear manifest lists members only, and the
    /// full one (datasets, engines) is the encrypted member [`super::crypt::SEALED_MANIFEST_MEMBER`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
}

impl Manifest {
    /// An empty manifest for a backup that started at `header.created_at`.
    pub fn new(header: &Header) -> Manifest {
        Manifest {
            format: header.format.clone(),
            format_version: header.format_version,
            tool_version: header.tool_version.clone(),
            created_at: header.created_at,
            finished_at: header.created_at,
            sources: header.sources.clone(),
            members: Vec::new(),
            datasets: Vec::new(),
            engines: BTreeMap::new(),
            masking: None,
            encryption: None,
        }
    }

    /// What an encrypted archive shows in clear: everything V0 needs (every member's name,
    /// size and SHA-256) and nothing derived from the data (no datasets, counts, digests,
    /// sequence values, schema or index specs).
    pub fn clear_view(&self, members: Vec<MemberEntry>, encryption: EncryptionInfo) -> Manifest {
        Manifest {
            members,
            datasets: Vec::new(),
            engines: BTreeMap::new(),
            // The applied rules carry per-field counts of changed values: sealed with the rest.
            masking: None,
            encryption: Some(encryption),
            ..self.clone()
        }
    }

    pub fn source(&self, engine: Engine) -> Option<&Source> {
        self.sources.iter().find(|s| s.engine == engine)
    }

    pub fn datasets_of(&self, engine: Engine) -> impl Iterator<Item = &Dataset> {
        self.datasets.iter().filter(move |d| d.engine == engine)
    }

    /// The engine's tables or collections: its datasets without large-object data.
    pub fn tables_of(&self, engine: Engine) -> impl Iterator<Item = &Dataset> {
        self.datasets_of(engine).filter(|d| d.is_table())
    }

    pub fn member(&self, name: &str) -> Option<&MemberEntry> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// One member's name, size and SHA-256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// A table or collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub engine: Engine,
    /// Schema (PostgreSQL) or database (MongoDB).
    pub namespace: String,
    /// Table or collection name, exactly as in the database.
    pub name: String,
    pub format: RecordFormat,
    /// Rows or documents.
    pub rows: u64,
    /// Uncompressed bytes of all records.
    pub raw_bytes: u64,
    /// [`super::digest::ContentDigest::to_hex`] of every record.
    pub digest: String,
    pub chunks: Vec<ChunkEntry>,
    /// Engine-specific details (PostgreSQL: the COPY column list).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub extra: serde_json::Value,
}

impl Dataset {
    /// `namespace.name`, for messages (not quoted: never use it to build SQL).
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// Whether the dataset holds a table's rows or a collection's documents; the other kind is
    /// PostgreSQL large-object data ([`RecordFormat::LargeObject`]), which is restored and
    /// verified object by object, not as a table.
    pub fn is_table(&self) -> bool {
        self.format != RecordFormat::LargeObject
    }
}

/// One chunk of a dataset: its member and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub member: String,
    pub rows: u64,
    pub raw_bytes: u64,
    pub size: u64,
    pub sha256: String,
    /// How the member is compressed (absent in format version 1, whose chunks are all gzip).
    #[serde(default = "Codec::legacy")]
    pub codec: Codec,
}

/// What the manifest of a masked archive records: which rules were applied, by name and
/// transform kind only (never the key, nor anything derived from a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskingRecord {
    /// The rules file's name (not its path, which can say whose machine it was on).
    pub rules_file: String,
    pub fields: Vec<MaskedField>,
}

/// One masked column or field, with how many values its rule changed in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedField {
    pub engine: Engine,
    /// `schema.table` or the collection.
    pub dataset: String,
    /// Column, or dotted field path.
    pub field: String,
    pub transform: String,
    /// The column whose rule this one took over along a foreign key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherited_from: Option<String>,
    #[serde(default)]
    pub changed: u64,
}
