//! How the process asks the allocator for memory.
//!
//! A backup or restore moves its data in buffers of a few MiB (a chunk's records, its compressed
//! and sealed forms) that live for milliseconds on whichever thread encodes them. glibc's
//! malloc raises its mmap threshold dynamically up to 32 MiB once such a buffer is freed, so
//! later ones come from per-thread arenas, whose freed memory stays in the process: peak RSS
//! then grows with the number of threads that ever held a chunk (101 MiB for a gzip backup of
//! bench/pg.sh's dataset at two jobs). A fixed threshold keeps every buffer from 1 MiB up in its
//! own mapping, returned to the system when freed: the same backup peaks at 55 MiB, in the same
//! time (docs/performance.md).

/// Buffers at least this large are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD: usize = 1 << 20;

/// Applies the allocator settings above; call once, first thing in `main`.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists. A failure (0) leaves glibc's defaults, which are correct, only hungrier.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}
