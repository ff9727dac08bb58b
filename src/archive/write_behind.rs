//! Writing a large file without filling the page cache with it.
//!
//! A backup writes an archive as large as the compressed database, usually on the database's
//! own host. Left to the kernel, every byte stays in the page cache, first dirty (flushed in one
//! long fsync at commit) and then clean, pushing out the pages PostgreSQL was serving queries
//! from. [`WriteBehind`] does what PostgreSQL's own `backend_flush_after` does: once a window of
//! the file is written it starts that window's writeback, and once the next window is done it
//! waits for the previous one to reach the disk and drops its pages. Dirty memory stays at about
//! two windows, the final fsync has almost nothing left to do, and the pages dropped are reused
//! for the next windows instead of taking fresh ones.
//!
//! Best effort: on systems without `sync_file_range` it is a plain file, and errors from the
//! hints are ignored because the fsync at commit reports any real write error.

use std::fs::File;
use std::io::Write;

/// Bytes written between writeback hints.
const WINDOW: u64 = 8 << 20;

/// A file writer that pushes what it wrote to disk behind itself (see the module docs).
pub struct WriteBehind {
    file: File,
    written: u64,
    /// Where the window now being written starts; everything before it has writeback started.
    window_start: u64,
    /// Everything before this offset is on disk and out of the page cache.
    dropped: u64,
}

impl WriteBehind {
    pub fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            written: 0,
            window_start: 0,
            dropped: 0,
        }
    }

    /// The file, for the final fsync.
    pub fn into_inner(self) -> File {
        self.file
    }

    fn window_done(&mut self) {
        write_back(
            &self.file,
            self.window_start,
            self.written - self.window_start,
        );
        if self.window_start > self.dropped {
            drop_written(&self.file, self.dropped, self.window_start - self.dropped);
            self.dropped = self.window_start;
        }
        self.window_start = self.written;
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.window_start >= WINDOW {
            self.window_done();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Starts writeback of `len` bytes at `offset` without waiting for it.
#[cfg(target_os = "linux")]
fn write_back(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a hint on a file descriptor this struct owns; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Waits until `len` bytes at `offset` are on disk, then drops them from the page cache.
#[cfg(target_os = "linux")]
fn drop_written(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: hints on a file descriptor this struct owns; no memory is passed.
    unsafe {
        libc::sync_file_range(
            fd,
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        );
        libc::posix_fadvise(
            fd,
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn write_back(_: &File, _: u64, _: u64) {}

#[cfg(not(target_os = "linux"))]
fn drop_written(_: &File, _: u64, _: u64) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn what_is_written_behind_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        let mut writer = WriteBehind::new(File::create(&path).unwrap());
        let block: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        for _ in 0..7 {
            writer.write_all(&block).unwrap();
        }
        // Seven 3 MiB writes close windows at 9 and 18 MiB: the first is dropped once the
        // second is done.
        assert_eq!(writer.dropped, 9 << 20);
        writer.into_inner().sync_all().unwrap();
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 21 << 20);
        assert!(back.chunks(block.len()).all(|c| c == block.as_slice()));
    }
}
