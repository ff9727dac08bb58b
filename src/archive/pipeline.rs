//! The one writer thread of a backup, and the bounded channel dump workers send members into.
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

use super::writer::{ArchiveWriter, Member};
use crate::error::{Error, Result};

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
