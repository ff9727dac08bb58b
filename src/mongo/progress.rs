//! Progress of a dump or restore, injected by the caller (the CLI draws bars with indicatif;
//! tests and scripts pass [`NoProgress`]). Called from worker tasks, hence `Send + Sync`.

pub trait Progress: Send + Sync {
    /// A collection's documents are about to be read (dump) or inserted (restore).
    fn collection_started(&self, _collection: &str) {}
    /// Another chunk of `documents` documents (`raw_bytes` of BSON) of `collection` is done.
    fn chunk_done(&self, _collection: &str, _documents: u64, _raw_bytes: u64) {}
    /// All of `collection`'s `documents` documents are done.
    fn collection_finished(&self, _collection: &str, _documents: u64) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
