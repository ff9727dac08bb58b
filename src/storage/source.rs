//! Reading an archive by byte ranges, wherever it is: a local file (`pread`) or an object
//! (ranged GETs). The archive reader only ever needs "these bytes at this offset" and one
//! sequential pass for V0.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

/// An archive's bytes, readable at any offset from several threads at once.
pub trait RangedSource: Send + Sync + std::fmt::Debug {
    /// Total length in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`; fewer bytes available is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;

    /// One pass over every byte from the start (V0 hashes them all). The default reads ranges
    /// of 8 MiB; an object store streams one GET instead.
    fn sequential(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(std::io::BufReader::with_capacity(
            8 << 20,
            RangeReader {
                source: self,
                pos: 0,
            },
        )))
    }
}

/// Reads a [`RangedSource`] front to back.
struct RangeReader<'a, S: ?Sized> {
    source: &'a S,
    pos: u64,
}

impl<S: RangedSource + ?Sized> Read for RangeReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.source.len().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.source.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A local archive file.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    pub fn new(file: File) -> std::io::Result<FileSource> {
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl RangedSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn sequential(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            &self.file,
        )))
    }
}
