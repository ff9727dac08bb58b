//! Where a backup streams its archive. Every destination makes the archive appear under its
//! final name only when [`ArchiveSink::commit`] runs, after COMMIT was written: a local file is
//! renamed from `.partial` after an fsync, an object's multipart upload is completed, standard
//! output is flushed (the reader decides what a cut-off stream is: V0 refuses it).

use std::io::{BufWriter, Stdout, Write};

use crate::archive::writer::PartialFile;
use crate::error::{Error, Result};

use super::upload::MultipartSink;

/// An archive being written; dropped uncommitted, it leaves nothing under a final name.
pub trait ArchiveSink: Write + Send {
    /// Makes the finished archive appear under its final name. Returns that name (a path, an
    /// object URL, or `-`) and the archive's size in bytes.
    fn commit(self: Box<Self>) -> Result<(String, u64)>;
}

impl ArchiveSink for PartialFile {
    fn commit(self: Box<Self>) -> Result<(String, u64)> {
        let path = PartialFile::commit(*self)?;
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok((path.display().to_string(), bytes))
    }
}

impl ArchiveSink for MultipartSink {
    fn commit(self: Box<Self>) -> Result<(String, u64)> {
        let bytes = self.written();
        // The object appears under its name only now.
        let url = self.complete()?;
        Ok((url, bytes))
    }
}

/// The archive on standard output (`backup --output -`), counted for the report.
pub struct StdoutSink {
    out: BufWriter<Stdout>,
    written: u64,
}

impl StdoutSink {
    pub fn new() -> StdoutSink {
        StdoutSink {
            out: BufWriter::with_capacity(1 << 20, std::io::stdout()),
            written: 0,
        }
    }
}

impl Default for StdoutSink {
    fn default() -> StdoutSink {
        StdoutSink::new()
    }
}

impl Write for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl ArchiveSink for StdoutSink {
    fn commit(mut self: Box<Self>) -> Result<(String, u64)> {
        self.out
            .flush()
            .map_err(|e| Error::io("writing the archive to standard output", e))?;
        Ok(("-".to_string(), self.written))
    }
}
