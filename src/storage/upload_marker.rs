//! Markers of unfinished multipart uploads, so the next backup can abort a killed run's upload
//! the way it removes a killed run's `.partial` file.
//!
//! An upload that was never completed is invisible (no object under the archive's name) but its
//! parts cost storage, and `object_store` cannot list a bucket's multipart uploads. So a backup
//! records its upload id in `<prefix>/.dbkeeper-uploads/<archive name>.json` when the upload
//! starts, renews the marker's expiry while it runs and deletes it on complete or abort. The next
//! backup to the prefix, holding the bucket lock, aborts the upload of every stale marker (owner
//! dead on this host, or expired: the lock's staleness rule) and deletes the marker.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::lock::{is_stale, LEASE};
use super::object::{describe, ObjectLocation};
use crate::dirlock::LockOwner;
use crate::error::Result;

/// The folder under a backup prefix that holds the markers.
pub const MARKER_DIR: &str = ".dbkeeper-uploads";

#[derive(Debug, Serialize, Deserialize)]
struct UploadMarker {
    /// The archive's key (`nightly/NAME.dbk.tar`).
    key: String,
    upload_id: String,
    #[serde(flatten)]
    owner: LockOwner,
    expires_at: DateTime<Utc>,
}

/// The marker key of the upload of `archive`.
pub fn marker_key(archive: &ObjectLocation) -> ObjectPath {
    let name = archive.key().filename().unwrap_or("archive");
    archive
        .parent()
        .key()
        .clone()
        .join(MARKER_DIR)
        .join(format!("{name}.json"))
}

/// Writes (or renews) the marker of this process's upload `upload_id` of `archive`.
pub async fn write(archive: &ObjectLocation, upload_id: &str, owner: &LockOwner) -> Result<()> {
    let marker = UploadMarker {
        key: archive.key().to_string(),
        upload_id: upload_id.to_string(),
        owner: owner.clone(),
        expires_at: Utc::now() + LEASE,
    };
    let bytes = serde_json::to_vec(&marker).expect("upload marker serializes");
    archive
        .store()
        .put(&marker_key(archive), PutPayload::from(bytes))
        .await
        .map_err(|e| archive.error("recording the upload of", e, false))?;
    Ok(())
}

/// Deletes the marker of `archive`'s upload (best effort: a marker left behind only makes the
/// next run try to abort an upload that is already gone).
pub async fn remove(archive: &ObjectLocation) {
    if let Err(e) = archive.store().delete(&marker_key(archive)).await {
        tracing::warn!(
            "could not delete the upload marker of {}: {}",
            archive.url(),
            describe(&e)
        );
    }
}

/// Aborts the unfinished uploads that dead or expired runs left under the prefix `dir`; returns
/// how many. Call it holding the bucket lock, before starting an upload of one's own.
pub async fn abort_abandoned(dir: &ObjectLocation) -> Result<usize> {
    let markers = dir.child(MARKER_DIR);
    let metas: Vec<_> = dir
        .store()
        .list(Some(markers.key()))
        .try_collect()
        .await
        .map_err(|e| dir.error("listing unfinished uploads under", e, false))?;
    let mut aborted = 0;
    for meta in metas {
        let Some(marker) = read(dir, &meta.location).await else {
            continue;
        };
        if !is_stale(&marker.owner, marker.expires_at) {
            continue;
        }
        let key = ObjectPath::from(marker.key.as_str());
        match dir
            .multipart()
            .abort_multipart(&key, &marker.upload_id)
            .await
        {
            // Already gone (completed, aborted, or removed by a lifecycle rule): only the
            // marker is left to delete.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(
                    "could not abort the unfinished upload of {} left by pid {} on {}: {}",
                    marker.key,
                    marker.owner.pid,
                    marker.owner.host,
                    describe(&e)
                );
                continue;
            }
        }
        tracing::warn!(
            "aborted the unfinished upload of {} left by {} (pid {} on {}, started {}), which is \
             no longer running",
            marker.key,
            marker.owner.command,
            marker.owner.pid,
            marker.owner.host,
            marker.owner.started_at
        );
        let _ = dir.store().delete(&meta.location).await;
        aborted += 1;
    }
    Ok(aborted)
}

async fn read(dir: &ObjectLocation, key: &ObjectPath) -> Option<UploadMarker> {
    let bytes = dir.store().get(key).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}
