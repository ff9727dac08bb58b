//! Progress of long operations (backup, restore, verify), reported from where the work happens.
//!
//! Every chunk of every engine passes through exactly two functions: it is compressed when
//! dumped ([`crate::archive::chunk::RawChunk::compress`]) and decoded when restored or verified
//! ([`crate::archive::chunk::decode`]). Those report to one process-wide [`ProgressSink`] that
//! the CLI installs once (progress bars on a terminal, NDJSON events with `--json-events`,
//! nothing otherwise), so no engine code threads a progress handle through its workers. Without
//! a sink, reporting costs an atomic load.

use std::sync::OnceLock;

/// What a phase is expected to process. Restore and verify read exact totals from the manifest;
/// a backup only has the databases' own estimates (`pg_class.reltuples`, collection metadata
/// counts) until it has read everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub records: Option<u64>,
    pub raw_bytes: Option<u64>,
    /// False when the totals are the databases' estimates.
    pub exact: bool,
}

impl Totals {
    pub fn exact(records: u64, raw_bytes: u64) -> Totals {
        Totals {
            records: Some(records),
            raw_bytes: Some(raw_bytes),
            exact: true,
        }
    }

    pub fn estimated(records: Option<u64>) -> Totals {
        Totals {
            records,
            raw_bytes: None,
            exact: false,
        }
    }
}

/// Receives progress; called from worker threads.
pub trait ProgressSink: Send + Sync {
    /// A phase (`backup`, `restore`, `verify`) begins.
    fn start(&self, phase: &str, totals: Totals);
    /// One more chunk of `records` rows/documents and `raw_bytes` uncompressed bytes is done.
    fn chunk(&self, records: u64, raw_bytes: u64);
    /// The phase ended (successfully or not).
    fn finish(&self);
    /// The phase moved on to a step that processes no chunks (index builds after the data,
    /// reading the snapshot's catalog before it): shown instead of a bar that sits still.
    fn step(&self, _step: &str) {}
    /// Records read from a database that are not in a chunk yet (negative once a chunk holds
    /// them): MongoDB fills a chunk of several MiB from many cursor batches, and the bar should
    /// move while it does.
    fn reading(&self, _delta: i64) {}
    /// Work on one table or collection began (`restore`/`backup` show the current one).
    fn item(&self, _name: &str) {}
    /// One table or collection is done: `verb` is "dumped" or "restored".
    fn item_done(&self, _verb: &str, _name: &str, _records: u64) {}
}

static SINK: OnceLock<Box<dyn ProgressSink>> = OnceLock::new();

/// Installs the process's sink; later calls are ignored.
pub fn install(sink: Box<dyn ProgressSink>) {
    let _ = SINK.set(sink);
}

/// True when progress goes somewhere (a terminal bar or `--json-events`): worth asking the
/// databases for estimates.
pub fn is_shown() -> bool {
    SINK.get().is_some()
}

pub fn start(phase: &str, totals: Totals) {
    if let Some(sink) = SINK.get() {
        sink.start(phase, totals);
    }
}

pub fn chunk(records: u64, raw_bytes: u64) {
    if let Some(sink) = SINK.get() {
        sink.chunk(records, raw_bytes);
    }
}

pub fn finish() {
    if let Some(sink) = SINK.get() {
        sink.finish();
    }
}

pub fn step(step: &str) {
    if let Some(sink) = SINK.get() {
        sink.step(step);
    }
}

pub fn reading(delta: i64) {
    if let Some(sink) = SINK.get() {
        sink.reading(delta);
    }
}

pub fn item(name: &str) {
    if let Some(sink) = SINK.get() {
        sink.item(name);
    }
}

/// Also logged (`-v` shows each table and collection as it is done).
pub fn item_done(verb: &str, name: &str, records: u64) {
    tracing::info!("{verb} {name}: {records} records");
    if let Some(sink) = SINK.get() {
        sink.item_done(verb, name, records);
    }
}
