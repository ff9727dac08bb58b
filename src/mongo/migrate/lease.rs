//! The migration lock: a lease document in `dbkeeper_migrations_lock`.
//!
//! MongoDB has no session-scoped lock, so the lock is a document `{_id: "migrate", owner, token,
//! acquired_at, heartbeat_at, expires_at}` taken with one atomic upsert whose filter matches only
//! an expired lease (or our own). A live lease makes the upsert try to insert a second `_id:
//! "migrate"`, which fails with a duplicate key: held. While held, a background task renews the
//! lease every third of its duration; a holder that dies stops renewing and its lease expires, so
//! a crashed deploy blocks others for at most one lease duration.
//!
//! Times come from the server (`hello.localTime`), never from the runners' clocks, so runners on
//! machines whose clocks disagree still agree on whether a lease has expired.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, DateTime, Document};
use mongodb::{Collection, Database};
use tokio::task::JoinHandle;

use super::history::is_code;
use crate::error::{Engine, Error, Result};
use crate::mongo::connect::short_error;

pub const LOCK_COLLECTION: &str = "dbkeeper_migrations_lock";
const LOCK_ID: &str = "migrate";
/// How long a lease lasts without a heartbeat.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Overrides [`DEFAULT_LEASE`], in seconds (tests use short leases to prove expiry).
pub const LEASE_ENV: &str = "DBKEEPER_MONGO_LEASE_SECS";
const POLL: Duration = Duration::from_millis(200);
/// How often a waiting runner says who it is waiting for.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The lease duration from [`LEASE_ENV`], else the default.
pub fn lease_from_env() -> Result<Duration> {
    match std::env::var(LEASE_ENV) {
        Err(_) => Ok(DEFAULT_LEASE),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(Error::Usage(format!(
                "{LEASE_ENV}={v}: expected a whole number of seconds above 0"
            ))),
        },
    }
}

pub struct Lease {
    db: Database,
    locks: Collection<Document>,
    /// Who we are, as other runners will see it while they wait.
    owner: String,
    duration: Duration,
    held: Option<Held>,
}

/// A lease we hold: its unique token and the heartbeat keeping it alive.
struct Held {
    token: String,
    state: Arc<HeldState>,
    heartbeat: JoinHandle<()>,
}

struct HeldState {
    /// Set when a renewal found the lease gone (expired and taken over).
    lost: AtomicBool,
    /// When the lease was last renewed, by our clock: if renewals keep failing, we stop
    /// trusting the lease once this is a whole duration old.
    renewed_at: Mutex<Instant>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Lease {
    pub fn new(db: &Database, owner: String, duration: Duration) -> Lease {
        Lease {
            db: db.clone(),
            locks: db.collection(LOCK_COLLECTION),
            owner,
            duration,
            held: None,
        }
    }

    /// Takes the lease, waiting up to `timeout` for a holder to release it or let it expire.
    pub async fn acquire(&mut self, timeout: Duration) -> Result<()> {
        if self.held.is_some() {
            return Ok(());
        }
        let token = mongodb::bson::oid::ObjectId::new().to_hex();
        let started = Instant::now();
        let mut last_report: Option<Instant> = None;
        loop {
            let attempted_at = Instant::now();
            if self.try_take(&token).await? {
                self.start_heartbeat(token, attempted_at);
                return Ok(());
            }
            let holder = self.describe_holder().await?;
            if started.elapsed() >= timeout {
                return Err(Error::LockTimeout(format!(
                    "MongoDB migration lock ({}.{LOCK_COLLECTION}) is held by {holder}; gave up after {}s. \
                     If that runner is still working, wait and retry (or raise --lock-timeout); if it died, \
                     its lease expires on its own",
                    self.db.name(),
                    timeout.as_secs()
                )));
            }
            if last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                tracing::warn!("waiting for the MongoDB migration lock, held by {holder}");
                last_report = Some(Instant::now());
            }
            tokio::time::sleep(POLL.min(timeout.saturating_sub(started.elapsed()))).await;
        }
    }

    /// One atomic attempt: take the lease if it is absent, expired, or already ours.
    async fn try_take(&self, token: &str) -> Result<bool> {
        let now = server_now(&self.db).await?;
        let expires = DateTime::from_millis(now.timestamp_millis() + self.duration_millis());
        let attempt = self
            .locks
            .update_one(
                doc! {
                    "_id": LOCK_ID,
                    // A lease without an expiry (edited by hand) must not block runners forever.
                    "$or": [
                        { "expires_at": { "$lt": now } },
                        { "expires_at": { "$exists": false } },
                        { "token": token },
                    ],
                },
                doc! { "$set": {
                    "owner": &self.owner,
                    "token": token,
                    "acquired_at": now,
                    "heartbeat_at": now,
                    "expires_at": expires,
                } },
            )
            .upsert(true)
            .await;
        match attempt {
            Ok(_) => {}
            Err(e) if is_code(&e, 11000) => return Ok(false), // a live lease exists
            Err(e) => return Err(self.error("taking", &e)),
        }
        // Belt and braces: confirm the document now carries our token.
        let current = self
            .locks
            .find_one(doc! { "_id": LOCK_ID })
            .await
            .map_err(|e| self.error("reading", &e))?;
        Ok(current.is_some_and(|d| d.get_str("token").ok() == Some(token)))
    }

    async fn describe_holder(&self) -> Result<String> {
        let current = self
            .locks
            .find_one(doc! { "_id": LOCK_ID })
            .await
            .map_err(|e| self.error("reading", &e))?;
        Ok(match current {
            None => "nobody (it was just released)".to_string(),
            Some(d) => {
                let owner = d.get_str("owner").unwrap_or("an unknown runner");
                let since = rfc3339(d.get_datetime("acquired_at").ok());
                let until = rfc3339(d.get_datetime("expires_at").ok());
                format!("{owner} since {since} (lease expires {until} unless renewed)")
            }
        })
    }

    /// `taken_at`: when the winning attempt was sent, which is no later than the server's idea
    /// of when the lease started.
    fn start_heartbeat(&mut self, token: String, taken_at: Instant) {
        let state = Arc::new(HeldState {
            lost: AtomicBool::new(false),
            renewed_at: Mutex::new(taken_at),
        });
        let heartbeat = tokio::spawn(heartbeat(
            self.db.clone(),
            self.locks.clone(),
            token.clone(),
            self.duration,
            state.clone(),
        ));
        self.held = Some(Held {
            token,
            state,
            heartbeat,
        });
    }

    /// Errors unless the lease is still ours; checked before every command, so a runner that
    /// lost its lease (paused longer than the lease) stops instead of racing the new holder.
    pub fn ensure_held(&self) -> Result<()> {
        let Some(held) = &self.held else {
            return Err(Error::db(
                Engine::Mongo,
                "internal: a migration step ran without the migration lock",
            ));
        };
        // Stop trusting the lease a fifth of its duration before the server would expire it, so
        // a runner cut off from renewals never sends a command after another runner took over.
        let trusted_for = self.duration - self.duration / 5;
        let stale = held
            .state
            .renewed_at
            .lock()
            .map(|t| t.elapsed() >= trusted_for)
            .unwrap_or(true);
        if held.state.lost.load(Ordering::SeqCst) || stale {
            return Err(Error::LockTimeout(format!(
                "lost the MongoDB migration lock: its {}s lease could not be renewed (another runner may \
                 hold it now). Stopped before the next command; check `dbkeeper migrate status --engine mongo`",
                self.duration.as_secs()
            )));
        }
        Ok(())
    }

    /// Gives the lease up, if it is still ours.
    pub async fn release(&mut self) -> Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        held.heartbeat.abort();
        let deleted = self
            .locks
            .delete_one(doc! { "_id": LOCK_ID, "token": &held.token })
            .await
            .map_err(|e| self.error("releasing", &e))?;
        if deleted.deleted_count == 0 {
            tracing::warn!(
                "the MongoDB migration lease had already expired or been taken over when it was released"
            );
        }
        Ok(())
    }

    fn duration_millis(&self) -> i64 {
        self.duration.as_millis() as i64
    }

    fn error(&self, doing: &str, e: &mongodb::error::Error) -> Error {
        Error::db(
            Engine::Mongo,
            format!(
                "{doing} the migration lock in {}.{LOCK_COLLECTION}: {}",
                self.db.name(),
                short_error(e)
            ),
        )
    }
}

/// Renews the lease every third of its duration until aborted or the lease is found lost.
async fn heartbeat(
    db: Database,
    locks: Collection<Document>,
    token: String,
    duration: Duration,
    state: Arc<HeldState>,
) {
    let every = duration / 3;
    loop {
        tokio::time::sleep(every).await;
        let sent_at = Instant::now();
        let renewed = async {
            let now = server_now(&db).await?;
            let expires =
                DateTime::from_millis(now.timestamp_millis() + duration.as_millis() as i64);
            let result = locks
                .update_one(
                    doc! { "_id": LOCK_ID, "token": &token },
                    doc! { "$set": { "heartbeat_at": now, "expires_at": expires } },
                )
                .await
                .map_err(|e| Error::db(Engine::Mongo, short_error(&e)))?;
            Ok::<bool, Error>(result.matched_count == 1)
        }
        .await;
        match renewed {
            Ok(true) => {
                if let Ok(mut t) = state.renewed_at.lock() {
                    *t = sent_at;
                }
            }
            Ok(false) => {
                tracing::error!("the MongoDB migration lease was taken over by another runner");
                state.lost.store(true, Ordering::SeqCst);
                return;
            }
            // A blip: keep trying; `ensure_held` stops trusting the lease when it is stale.
            Err(e) => tracing::warn!("renewing the MongoDB migration lease failed: {e}"),
        }
    }
}

/// The server's clock, so every runner judges expiry by the same time.
async fn server_now(db: &Database) -> Result<DateTime> {
    let reply = db
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(|e| Error::db(Engine::Mongo, format!("hello: {}", short_error(&e))))?;
    reply.get_datetime("localTime").copied().map_err(|_| {
        Error::db(
            Engine::Mongo,
            "the server's `hello` reply has no localTime; cannot time the migration lease",
        )
    })
}

fn rfc3339(t: Option<&DateTime>) -> String {
    t.and_then(|t| t.try_to_rfc3339_string().ok())
        .unwrap_or_else(|| "an unknown time".into())
}
