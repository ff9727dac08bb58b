//! Streaming an archive into a bucket: a multipart upload fed by the archive writer.
//!
//! The writer is synchronous and runs on a blocking thread, so [`MultipartSink`] is a plain
//! [`std::io::Write`]: it fills one part buffer, hands full parts to the upload (at most
//! [`MAX_PARTS_IN_FLIGHT`] at a time, so memory stays at a few part sizes whatever the archive's
//! size) and completes the upload in [`MultipartSink::complete`], after COMMIT was written.
//! Until then the object does not exist under its name. Dropped without `complete` (an error,
//! Ctrl-C), the upload is aborted; a killed process leaves an incomplete upload that is never
//! visible as an object, and its marker ([`super::upload_marker`]) lets the next backup to the
//! prefix abort it (a bucket lifecycle rule is the backstop, docs/operations.md).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use object_store::multipart::{MultipartStore, PartId};
use object_store::{MultipartId, PutPayload};
use tokio::task::JoinSet;

use super::lock::HEARTBEAT;
use super::object::{describe, ObjectLocation};
use super::upload_marker;
use crate::dirlock::LockOwner;
use crate::error::{Error, Result};

/// S3's smallest part (all but the last) and largest part.
const MIN_PART: u64 = 5 << 20;
const MAX_PART: u64 = 5 << 30;
/// Parts uploading while the next one fills.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;

/// Part sizes that start small (bounded memory for ordinary archives) and double every
/// `max_parts / 16` parts, so the part limit is never the limit on the archive's size: with
/// 8 MiB first parts, 1 TiB fits in 5,000 of S3's 10,000 parts and in 1,000 parts (for
/// providers with that limit) as well.
#[derive(Debug, Clone, Copy)]
pub struct PartSizes {
    first: u64,
    max_parts: u64,
}

impl PartSizes {
    pub fn new(first: u64, max_parts: u64) -> Result<PartSizes> {
        if !(MIN_PART..=MAX_PART).contains(&first) {
            return Err(Error::Usage(format!(
                "[storage] part_size_mib = {}: parts must be between 5 MiB and 5 GiB",
                first >> 20
            )));
        }
        if max_parts < 16 {
            return Err(Error::Usage(format!(
                "[storage] max_parts = {max_parts}: at least 16 parts are needed"
            )));
        }
        Ok(PartSizes { first, max_parts })
    }

    /// The size of part `index` (0-based).
    pub fn size(&self, index: u64) -> u64 {
        let step = (self.max_parts / 16).max(1);
        let doublings = (index / step).min(20) as u32;
        (self.first << doublings).min(MAX_PART)
    }

    /// The largest archive the part limit allows.
    pub fn capacity(&self) -> u64 {
        (0..self.max_parts).map(|i| self.size(i)).sum()
    }
}

/// A [`Write`] that uploads what it is given as the parts of one multipart upload.
pub struct MultipartSink {
    location: ObjectLocation,
    url: String,
    store: Arc<dyn MultipartStore>,
    /// `None` once completed or aborted.
    upload_id: Option<MultipartId>,
    owner: LockOwner,
    marker_renewed: Instant,
    runtime: tokio::runtime::Handle,
    sizes: PartSizes,
    parts: u64,
    buffer: Vec<u8>,
    in_flight: JoinSet<object_store::Result<(usize, PartId)>>,
    /// Uploaded parts by index (S3 wants them in order when completing).
    done: Vec<Option<PartId>>,
    written: u64,
}

impl MultipartSink {
    /// Starts a multipart upload of `location`, refusing when an object is already there, and
    /// records it in a marker so that the next run can abort it should this one be killed.
    pub async fn create(location: &ObjectLocation) -> Result<MultipartSink> {
        let sizes = PartSizes::new(location.part_size, location.max_parts)?;
        let url = location.url();
        if location.exists().await? {
            return Err(Error::Usage(format!(
                "{url} already exists and an archive is never overwritten: choose another \
                 --output (another backup finished within the same second, so run again)"
            )));
        }
        let store = location.multipart().clone();
        let upload_id = store
            .create_multipart(location.key())
            .await
            .map_err(|e| location.error("starting the upload of", e, false))?;
        let owner = LockOwner::me("backup");
        if let Err(e) = upload_marker::write(location, &upload_id, &owner).await {
            let _ = store.abort_multipart(location.key(), &upload_id).await;
            return Err(e);
        }
        Ok(MultipartSink {
            location: location.clone(),
            url,
            store,
            upload_id: Some(upload_id),
            owner,
            marker_renewed: Instant::now(),
            runtime: tokio::runtime::Handle::current(),
            sizes,
            parts: 0,
            buffer: Vec::with_capacity(sizes.size(0) as usize),
            in_flight: JoinSet::new(),
            done: Vec::new(),
            written: 0,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Runs `fut` from the blocking writer thread.
    fn wait<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(fut)),
            Err(_) => self.runtime.block_on(fut),
        }
    }

    fn upload_id(&self) -> &MultipartId {
        self.upload_id.as_ref().expect("writing after complete")
    }

    /// Sends the buffer as the next part, first waiting for room among the parts in flight.
    fn send_part(&mut self) -> std::io::Result<()> {
        while self.in_flight.len() >= MAX_PARTS_IN_FLIGHT {
            let mut set = std::mem::take(&mut self.in_flight);
            let done = self.wait(set.join_next());
            self.in_flight = set;
            self.check(done)?;
        }
        self.renew_marker();
        let index = self.parts as usize;
        self.parts += 1;
        let next = self.sizes.size(self.parts) as usize;
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(next));
        let (store, key, id) = (
            self.store.clone(),
            self.location.key().clone(),
            self.upload_id().clone(),
        );
        let _guard = self.runtime.enter();
        self.in_flight.spawn(async move {
            let part = store
                .put_part(&key, &id, index, PutPayload::from(data))
                .await?;
            Ok((index, part))
        });
        Ok(())
    }

    /// Pushes the marker's expiry forward while the upload runs, so a long backup's upload is
    /// never taken for an abandoned one.
    fn renew_marker(&mut self) {
        if self.marker_renewed.elapsed() < HEARTBEAT {
            return;
        }
        self.marker_renewed = Instant::now();
        let id = self.upload_id().clone();
        if let Err(e) = self.wait(upload_marker::write(&self.location, &id, &self.owner)) {
            tracing::warn!("could not renew the upload marker of {}: {e}", self.url);
        }
    }

    fn check(
        &mut self,
        done: Option<
            std::result::Result<object_store::Result<(usize, PartId)>, tokio::task::JoinError>,
        >,
    ) -> std::io::Result<()> {
        match done {
            None => Ok(()),
            Some(Ok(Ok((index, part)))) => {
                if self.done.len() <= index {
                    self.done.resize(index + 1, None);
                }
                self.done[index] = Some(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(std::io::Error::other(format!(
                "uploading a part of {}: {}",
                self.url,
                describe(&e)
            ))),
            Some(Err(e)) => Err(std::io::Error::other(e)),
        }
    }

    /// Uploads the last part, waits for every part and completes the upload: only now does the
    /// archive appear under its name. Called after COMMIT was written.
    pub fn complete(mut self) -> Result<String> {
        let result = self.complete_inner();
        if result.is_err() {
            self.abort();
        }
        result.map(|()| self.url.clone())
    }

    fn complete_inner(&mut self) -> Result<()> {
        let io = |url: &str, e| Error::io(format!("uploading {url}"), e);
        if !self.buffer.is_empty() || self.parts == 0 {
            self.send_part().map_err(|e| io(&self.url, e))?;
        }
        let mut set = std::mem::take(&mut self.in_flight);
        while let Some(done) = self.wait(set.join_next()) {
            self.check(Some(done)).map_err(|e| io(&self.url, e))?;
        }
        let parts: Vec<PartId> = std::mem::take(&mut self.done)
            .into_iter()
            .map(|p| p.expect("every part uploaded"))
            .collect();
        let id = self.upload_id().clone();
        let result = self.wait(
            self.store
                .complete_multipart(self.location.key(), &id, parts),
        );
        if let Err(e) = result {
            return Err(io(
                &self.url,
                std::io::Error::other(format!("completing the upload: {}", describe(&e))),
            ));
        }
        self.upload_id = None;
        self.wait(upload_marker::remove(&self.location));
        Ok(())
    }

    /// Cancels the upload so no part is kept, and deletes its marker (best effort: the next
    /// backup to the prefix, or a lifecycle rule, catches the rest).
    fn abort(&mut self) {
        self.in_flight.abort_all();
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let runtime = self.runtime.clone();
        let (store, location) = (self.store.clone(), self.location.clone());
        // Drop may run on an async worker, where blocking on the runtime is not allowed: a
        // thread of its own can.
        let _ = std::thread::spawn(move || {
            runtime.block_on(async {
                match store.abort_multipart(location.key(), &id).await {
                    Ok(()) => upload_marker::remove(&location).await,
                    Err(e) => tracing::warn!(
                        "could not abort the unfinished upload of {}: {}",
                        location.url(),
                        describe(&e)
                    ),
                }
            })
        })
        .join();
    }
}

impl Write for MultipartSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.sizes.size(self.parts) as usize - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        self.written += n as u64;
        if self.buffer.len() == self.sizes.size(self.parts) as usize {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Parts go out when full; completing the upload is what makes the data durable.
        Ok(())
    }
}

impl Drop for MultipartSink {
    fn drop(&mut self) {
        if self.upload_id.is_some() {
            self.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terabyte_fits_in_the_part_limit_at_bounded_part_sizes() {
        const TIB: u64 = 1 << 40;
        for max_parts in [10_000, 1_000] {
            let sizes = PartSizes::new(8 << 20, max_parts).unwrap();
            assert!(sizes.capacity() >= TIB, "{max_parts}: {}", sizes.capacity());
            assert_eq!(sizes.size(0), 8 << 20);
            for i in 0..max_parts {
                assert!((MIN_PART..=MAX_PART).contains(&sizes.size(i)));
            }
        }
        // An ordinary archive (under 5 GiB) only ever uses the first part size.
        let sizes = PartSizes::new(8 << 20, 10_000).unwrap();
        assert_eq!(sizes.size(624), 8 << 20);
        assert!(PartSizes::new(1 << 20, 10_000).is_err());
    }
}
