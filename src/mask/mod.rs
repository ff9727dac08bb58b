//! Masking: deterministic, keyed transforms of personal data while it streams into a target
//! (`restore --mask`) or into an archive (`backup --mask`). Database-free: engines hand in
//! what their schema says ([`plan::PgTableShape`], [`plan::MongoCollectionShape`]) and call
//! [`mask_chunk`] on each decoded chunk; nothing is staged, so memory stays at a few chunks.
//!
//! - [`rules`]: the TOML rules file and its key;
//! - [`key`]: the keyed pseudo-random function (SipHash-2-4, 128 bits) and the keyed integer
//!   permutation every transform derives from;
//! - [`transform`]: what `hash`, `email`, `name`, `phone`, ... do to one value;
//! - [`copy_text`], [`document`]: rewriting COPY text lines and raw BSON documents;
//! - [`plan`]: checking rules against an archive (missing names, types, NOT NULL, foreign
//!   keys, personal-looking columns without a rule) before anything is touched;
//! - [`personal`]: which names look personal.
//!
//! The same key and value give the same output in every table, collection, engine and run.

pub mod copy_text;
pub mod document;
pub mod key;
pub mod personal;
pub mod plan;
pub mod rules;
pub mod transform;

pub use plan::{AppliedRule, MongoMask, PgMask};
pub use rules::Rules;

use crate::archive::chunk::{DecodedChunk, RawChunk};
use crate::archive::digest::ContentDigest;
use crate::error::{Error, Result};

/// What masks one dataset's chunks.
#[derive(Debug, Clone, Copy)]
pub enum ChunkMask<'a> {
    Table(&'a copy_text::TableMask),
    Collection(&'a document::CollectionMask),
}

/// Masks a decoded chunk (COPY text or raw BSON, by the mask's kind). The chunk keeps the
/// digest of what the archive holds, which is what restore checks its reading against; the
/// row count does not change. The digest of the masked records goes to the mask's streamed
/// digest, which `restore --mask --deep` compares the target with. `what` names the archive
/// member for errors.
pub fn mask_chunk(mask: ChunkMask<'_>, chunk: DecodedChunk, what: &str) -> Result<DecodedChunk> {
    let (masked, _) = mask_records(mask, &chunk.data, what)?;
    Ok(DecodedChunk {
        data: masked,
        digest: chunk.digest,
    })
}

/// Masks a chunk a dump is about to compress (`backup --mask`): the archive then holds, and
/// its digests describe, the masked records only.
pub fn mask_raw_chunk(mask: ChunkMask<'_>, chunk: RawChunk, what: &str) -> Result<RawChunk> {
    let (data, digest) = mask_records(mask, &chunk.data, what)?;
    Ok(RawChunk {
        format: chunk.format,
        data,
        digest,
    })
}

/// The masked records and their digest (hashed as the archive hashes records).
fn mask_records(mask: ChunkMask<'_>, data: &[u8], what: &str) -> Result<(Vec<u8>, ContentDigest)> {
    match mask {
        ChunkMask::Table(table) => table.mask_chunk_digested(data),
        ChunkMask::Collection(collection) => collection.mask_chunk_digested(data),
    }
    .map_err(|message| Error::bad_input(what, format!("cannot mask it: {message}")))
}
