//! The overlapping-run lock in a bucket: `<prefix>/.dbkeeper.lock`, created with a conditional
//! PUT (`If-None-Match: *`, `PutMode::Create`) so exactly one of two racing runs gets it.
//!
//! A bucket has no process table, so besides the owner (pid, host, command, start) the lock
//! carries an expiry that a heartbeat pushes forward while the run lives. A lock past its expiry,
//! or left by a dead process of this host, is stale and taken over with a warning; any other is
//! respected, with the same message and exit code (4) as the directory lock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::object::{describe, ObjectLocation};
use crate::dirlock::{locked_by, LockOwner, LOCK_FILE_NAME};
use crate::error::{Error, Result};

/// How long a lock lasts without a heartbeat.
pub(crate) const LEASE: Duration = Duration::from_secs(15 * 60);
/// How often a live run renews it.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(60);

/// Whether what a run left in a bucket (its lock, its upload marker) belongs to a run that is
/// gone: past its expiry, or its process is dead on this host.
pub(crate) fn is_stale(owner: &LockOwner, expires_at: DateTime<Utc>) -> bool {
    expires_at < Utc::now() || owner.is_dead()
}

#[derive(Debug, Serialize, Deserialize)]
struct LockRecord {
    #[serde(flatten)]
    owner: LockOwner,
    expires_at: DateTime<Utc>,
}

/// Held while alive; deleted on drop.
pub struct BucketLock {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    heartbeat: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Handle,
}

impl BucketLock {
    /// Takes the lock on the prefix `dir` for `command`.
    pub async fn acquire(dir: &ObjectLocation, command: &str) -> Result<BucketLock> {
        let lock = dir.child(LOCK_FILE_NAME);
        let store = dir.store().clone();
        let me = LockOwner::me(command);
        // Two attempts: the second after removing a stale lock.
        for _ in 0..2 {
            let record = record(&me);
            let options = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match store.put_opts(lock.key(), record, options).await {
                Ok(_) => {
                    let heartbeat = tokio::spawn(renew(store.clone(), lock.key().clone(), me));
                    return Ok(BucketLock {
                        store,
                        key: lock.key().clone(),
                        heartbeat,
                        runtime: tokio::runtime::Handle::current(),
                    });
                }
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => {
                    let held = read(&store, lock.key()).await;
                    match held {
                        Some(held) if is_stale(&held.owner, held.expires_at) => {
                            tracing::warn!(
                                "taking over stale lock {} left by {} (pid {} on {}, started {}), which is no longer running",
                                lock.url(),
                                held.owner.command,
                                held.owner.pid,
                                held.owner.host,
                                held.owner.started_at
                            );
                            let _ = store.delete(lock.key()).await;
                        }
                        Some(held) => return Err(locked_by(&dir.url(), &held.owner, &lock.url())),
                        None => {
                            return Err(Error::Refused(format!(
                                "{} is locked ({} exists but is unreadable). If no dbkeeper run \
                                 is active, delete it",
                                dir.url(),
                                lock.url()
                            )))
                        }
                    }
                }
                Err(e) => return Err(dir.error("locking", e, false)),
            }
        }
        Err(Error::Refused(format!(
            "could not take the lock {} (another run keeps recreating it)",
            lock.url()
        )))
    }
}

fn record(owner: &LockOwner) -> PutPayload {
    let record = LockRecord {
        owner: owner.clone(),
        expires_at: Utc::now() + LEASE,
    };
    PutPayload::from(serde_json::to_vec(&record).expect("lock record serializes"))
}

async fn read(store: &Arc<dyn ObjectStore>, key: &ObjectPath) -> Option<LockRecord> {
    let bytes = store.get(key).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Pushes the expiry forward while the run lives.
async fn renew(store: Arc<dyn ObjectStore>, key: ObjectPath, me: LockOwner) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(e) = store.put(&key, record(&me)).await {
            tracing::warn!("could not renew the lock {key}: {}", describe(&e));
        }
    }
}

impl Drop for BucketLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
        let (store, key, runtime) = (self.store.clone(), self.key.clone(), self.runtime.clone());
        // Drop may run on an async worker, where blocking on the runtime is not allowed.
        let _ = std::thread::spawn(move || {
            let _ = runtime.block_on(store.delete(&key));
        })
        .join();
    }
}
