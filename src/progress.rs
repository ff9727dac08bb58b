//! Progress of long operations (backup, restore, verify), reported from where the work happens.
//!
//! Every chunk of every engine passes through exactly two functions: it is compressed when
//! dumped ([`crate::archive::chunk::RawChunk::compress`]) and decoded when restored or verified
//! ([`crate::archive::chunk::decode`]). Those report to one process-wide [`ProgressSink`] that
//! the CLI installs once (progress bars on a terminal, NDJSON events with `--json-events`,
//! nothing otherwise), so no engine code threads a progress handle through its workers. Without
//! a sink, reporting costs an atomic load.

use std::sync::OnceLock;

/// Receives progress; called from worker threads.
pub trait ProgressSink: Send + Sync {
    /// A phase (`backup`, `restore`, `verify`) begins; totals are exact when known.
    fn start(&self, phase: &str, total_records: Option<u64>, total_raw_bytes: Option<u64>);
    /// One more chunk of `records` rows/documents and `raw_bytes` uncompressed bytes is done.
    fn chunk(&self, records: u64, raw_bytes: u64);
    /// The phase ended (successfully or not).
    fn finish(&self);
}

static SINK: OnceLock<Box<dyn ProgressSink>> = OnceLock::new();

/// Installs the process's sink; later calls are ignored.
pub fn install(sink: Box<dyn ProgressSink>) {
    let _ = SINK.set(sink);
}

pub fn start(phase: &str, total_records: Option<u64>, total_raw_bytes: Option<u64>) {
    if let Some(sink) = SINK.get() {
        sink.start(phase, total_records, total_raw_bytes);
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
