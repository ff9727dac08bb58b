//! The one way into a backup's archive for every engine: [`EncodeAhead`] compresses (and masks,
//! and encrypts) a worker's chunk on the blocking pool while the worker fills the next, and the
//! one writer thread appends the members workers send over a bounded channel.
//!
//! Workers (any engine, any number) hold a cloned [`MemberSender`]; the thread owns the
//! [`ArchiveWriter`] and appends members in arrival order. The channel is bounded, so a slow disk
//! makes workers wait instead of piling compressed chunks up in memory: peak memory is about
//! (workers + capacity) × chunk size.
//!
//! If appending fails the thread stops, the channel closes, and the next `send` fails with
//! "archive writer stopped"; [`WriterThread::join`] then returns the real error.

use std::io::Write;

use tokio::sync::mpsc;

use tokio::task::JoinHandle;

use super::chunk::CompressedChunk;
use super::writer::{ArchiveWriter, Member};
use crate::error::{Error, Result};

/// One chunk being encoded on the blocking pool while its worker fills the next: at most one
/// in flight per worker, so memory stays at about two chunks per worker.
#[derive(Default)]
pub struct EncodeAhead {
    in_flight: Option<JoinHandle<Result<CompressedChunk>>>,
}

impl EncodeAhead {
    /// Waits for the chunk in flight, if any: deliver it before [`EncodeAhead::start`]ing the
    /// next, so chunks reach the archive in the order they were cut.
    pub async fn finished(&mut self) -> Result<Option<CompressedChunk>> {
        match self.in_flight.take() {
            Some(handle) => Ok(Some(handle.await.map_err(|e| {
                Error::io("compressing a chunk", std::io::Error::other(e.to_string()))
            })??)),
            None => Ok(None),
        }
    }

    /// Starts `encode` (mask, compress, seal one chunk) on the blocking pool. Call
    /// [`EncodeAhead::finished`] first.
    pub fn start(&mut self, encode: impl FnOnce() -> Result<CompressedChunk> + Send + 'static) {
        debug_assert!(self.in_flight.is_none(), "one chunk in flight at a time");
        self.in_flight = Some(tokio::task::spawn_blocking(encode));
    }
}

/// A handle for sending finished members to the writer thread.
#[derive(Clone)]
pub struct MemberSender {
    tx: mpsc::Sender<Member>,
}

impl MemberSender {
    /// Queues a member, waiting while the channel is full.
    pub async fn send(&self, member: Member) -> Result<()> {
        self.tx.send(member).await.map_err(|_| {
            Error::io(
                "writing the archive",
                std::io::Error::other("archive writer stopped"),
            )
        })
    }
}

/// The running writer thread.
pub struct WriterThread<W: Write + Send + 'static> {
    handle: std::thread::JoinHandle<Result<ArchiveWriter<W>>>,
}

/// Moves `writer` to its own thread, fed by a channel holding up to `capacity` members.
pub fn spawn<W: Write + Send + 'static>(
    mut writer: ArchiveWriter<W>,
    capacity: usize,
) -> (MemberSender, WriterThread<W>) {
    let (tx, mut rx) = mpsc::channel::<Member>(capacity.max(1));
    let handle = std::thread::Builder::new()
        .name("archive-writer".into())
        .spawn(move || {
            while let Some(member) = rx.blocking_recv() {
                writer.append(member)?;
            }
            Ok(writer)
        })
        .expect("spawning the archive writer thread");
    (MemberSender { tx }, WriterThread { handle })
}

impl<W: Write + Send + 'static> WriterThread<W> {
    /// Waits until every sender is dropped and every member written; returns the writer for
    /// `finish`. Blocks: call it from a blocking context (`spawn_blocking`).
    pub fn join(self) -> Result<ArchiveWriter<W>> {
        self.handle.join().unwrap_or_else(|_| {
            Err(Error::io(
                "writing the archive",
                std::io::Error::other("archive writer thread panicked"),
            ))
        })
    }
}
