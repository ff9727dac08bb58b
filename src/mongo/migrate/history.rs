//! The history collection (`dbkeeper_migrations`): one document per applied or dirty version,
//! `_id` = version, so two runners can never record the same version twice.
//!
//! MongoDB cannot run a migration's commands and its history write atomically, so a version is
//! written *dirty* before its first command and updated after every command; whatever stops the
//! run (a failed command, a killed process) leaves a document that says how far it got.
//! Repairs, baselines and rollbacks also append to `dbkeeper_migrations_audit`, because a
//! rollback or a forgotten dirty version deletes its history document.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::{Collection, Database};

use crate::error::{Engine, Error, Result};
use crate::migrate::{AppliedMigration, AppliedState, Migration, RunInfo};
use crate::mongo::connect::short_error;

pub const HISTORY_COLLECTION: &str = "dbkeeper_migrations";
pub const AUDIT_COLLECTION: &str = "dbkeeper_migrations_audit";

/// Which way a run was going when it left a version dirty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

pub struct History {
    history: Collection<Document>,
    audit: Collection<Document>,
    /// `db.collection`, for messages.
    namespace: String,
}

impl History {
    pub fn new(db: &Database) -> History {
        History {
            history: db.collection(HISTORY_COLLECTION),
            audit: db.collection(AUDIT_COLLECTION),
            namespace: format!("{}.{HISTORY_COLLECTION}", db.name()),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Every recorded version, oldest first. Only reads: an absent collection is no history.
    pub async fn read(&self) -> Result<Vec<AppliedMigration>> {
        let docs: Vec<Document> = self
            .history
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(|e| self.error("reading", &e))?
            .try_collect()
            .await
            .map_err(|e| self.error("reading", &e))?;
        docs.iter().map(|d| self.to_applied(d)).collect()
    }

    /// Creates the collection (explicitly, so it exists even before the first migration).
    pub async fn prepare(&self, db: &Database) -> Result<()> {
        match db.create_collection(HISTORY_COLLECTION).await {
            Ok(()) => Ok(()),
            Err(e) if is_code(&e, 48) => Ok(()), // NamespaceExists
            Err(e) => Err(self.error("creating", &e)),
        }
    }

    /// Records `migration` as dirty before its first command runs. An insert, not an upsert: a
    /// version that is already recorded means another runner got past the lock, which must stop
    /// this one.
    pub async fn start_up(&self, m: &Migration, commands: usize, run: &RunInfo) -> Result<()> {
        let now = DateTime::now();
        let record = doc! {
            "_id": m.version,
            "version": m.version,
            "name": &m.name,
            "checksum": &m.checksum,
            "state": "dirty",
            "direction": Direction::Up.as_str(),
            "started_at": now,
            "commands": commands as i64,
            "completed_commands": 0_i64,
            "down": m.down.as_deref().map(Bson::from).unwrap_or(Bson::Null),
            "run_id": &run.run_id,
            "actor": &run.actor,
        };
        self.history.insert_one(record).await.map_err(|e| {
            if is_code(&e, 11000) {
                Error::Refused(format!(
                    "V{}__{} is already recorded in {}: another runner applied it while this one \
                     held the lock. Run `dbkeeper migrate status --engine mongo` and check the lock",
                    m.version, m.name, self.namespace
                ))
            } else {
                self.error("recording the start of a migration in", &e)
            }
        })?;
        Ok(())
    }

    /// Marks an applied version dirty before its down commands run.
    pub async fn start_down(
        &self,
        applied: &AppliedMigration,
        commands: usize,
        run: &RunInfo,
    ) -> Result<()> {
        let result = self
            .history
            .update_one(
                doc! { "_id": applied.version, "state": "applied" },
                doc! {
                    "$set": {
                        "state": "dirty",
                        "direction": Direction::Down.as_str(),
                        "started_at": DateTime::now(),
                        "commands": commands as i64,
                        "completed_commands": 0_i64,
                        "run_id": &run.run_id,
                        "actor": &run.actor,
                    },
                    "$unset": { "failed_command": "", "error": "" },
                },
            )
            .await
            .map_err(|e| self.error("recording the start of a rollback in", &e))?;
        if result.matched_count == 0 {
            return Err(Error::Refused(format!(
                "{} is no longer recorded as applied in {}; another runner changed history. Nothing was run",
                applied.label(),
                self.namespace
            )));
        }
        Ok(())
    }

    /// After each command: how many have completed, so a crash leaves an exact record.
    pub async fn progress(&self, version: i64, completed: usize) -> Result<()> {
        self.history
            .update_one(
                doc! { "_id": version },
                doc! { "$set": { "completed_commands": completed as i64 } },
            )
            .await
            .map_err(|e| self.error("recording progress in", &e))?;
        Ok(())
    }

    /// A command failed: the version stays dirty, with the failed command's index and the
    /// server's error.
    pub async fn fail(&self, version: i64, index: usize, message: &str) -> Result<()> {
        self.history
            .update_one(
                doc! { "_id": version },
                doc! { "$set": {
                    "failed_command": index as i64,
                    "error": message,
                    "failed_at": DateTime::now(),
                } },
            )
            .await
            .map_err(|e| self.error("recording a failed command in", &e))?;
        Ok(())
    }

    pub async fn finish_up(&self, version: i64, duration: Duration) -> Result<()> {
        self.history
            .update_one(
                doc! { "_id": version },
                doc! {
                    "$set": {
                        "state": "applied",
                        "applied_at": DateTime::now(),
                        "duration_ms": duration.as_millis() as i64,
                    },
                    "$unset": { "direction": "" },
                },
            )
            .await
            .map_err(|e| self.error("recording an applied migration in", &e))?;
        Ok(())
    }

    /// The rollback completed: the version is no longer applied.
    pub async fn finish_down(
        &self,
        applied: &AppliedMigration,
        duration: Duration,
        run: &RunInfo,
    ) -> Result<()> {
        self.history
            .delete_one(doc! { "_id": applied.version })
            .await
            .map_err(|e| self.error("removing a reverted migration from", &e))?;
        self.audit(
            "reverted",
            applied,
            doc! { "duration_ms": duration.as_millis() as i64, "checksum": &applied.checksum },
            run,
        )
        .await
    }

    /// Records migrations as applied without running them.
    pub async fn baseline(&self, migrations: &[&Migration], run: &RunInfo) -> Result<()> {
        if migrations.is_empty() {
            return Ok(());
        }
        let now = DateTime::now();
        let records: Vec<Document> = migrations
            .iter()
            .map(|m| {
                doc! {
                    "_id": m.version,
                    "version": m.version,
                    "name": &m.name,
                    "checksum": &m.checksum,
                    "state": "applied",
                    "applied_at": now,
                    "duration_ms": 0_i64,
                    "baseline": true,
                    "down": m.down.as_deref().map(Bson::from).unwrap_or(Bson::Null),
                    "run_id": &run.run_id,
                    "actor": &run.actor,
                }
            })
            .collect();
        self.history
            .insert_many(records)
            .await
            .map_err(|e| self.error("recording a baseline in", &e))?;
        for m in migrations {
            self.audit_event(
                "baselined",
                m.version,
                &m.name,
                doc! { "checksum": &m.checksum },
                run,
            )
            .await?;
        }
        Ok(())
    }

    /// Records the file's checksum, name and down commands for an applied version.
    pub async fn update_checksum(
        &self,
        version: i64,
        name: &str,
        old_checksum: &str,
        new_checksum: &str,
        down: Option<&str>,
        run: &RunInfo,
    ) -> Result<()> {
        let mut set = doc! { "checksum": new_checksum, "name": name };
        if let Some(down) = down {
            set.insert("down", down);
        }
        self.update_existing(version, doc! { "$set": set }).await?;
        self.audit_event(
            "checksum_updated",
            version,
            name,
            doc! { "old_checksum": old_checksum, "new_checksum": new_checksum },
            run,
        )
        .await
    }

    /// The operator says a dirty version is in fact applied.
    pub async fn mark_applied(&self, version: i64, name: &str, run: &RunInfo) -> Result<()> {
        let current = self.dirty_record(version, name).await?;
        let mut set = doc! { "state": "applied" };
        // A dirty rollback keeps the time it was first applied; a dirty apply gets one now.
        if !current.contains_key("applied_at") {
            set.insert("applied_at", DateTime::now());
        }
        self.update_existing(
            version,
            doc! {
                "$set": set,
                "$unset": { "direction": "", "failed_command": "", "error": "", "failed_at": "" },
            },
        )
        .await?;
        self.audit_event(
            "dirty_marked_applied",
            version,
            name,
            dirty_summary(&current),
            run,
        )
        .await
    }

    /// The operator undid a dirty version's effects: forget it.
    pub async fn forget_dirty(&self, version: i64, name: &str, run: &RunInfo) -> Result<()> {
        let current = self.dirty_record(version, name).await?;
        self.history
            .delete_one(doc! { "_id": version, "state": "dirty" })
            .await
            .map_err(|e| self.error("removing a dirty migration from", &e))?;
        self.audit_event(
            "dirty_forgotten",
            version,
            name,
            dirty_summary(&current),
            run,
        )
        .await
    }

    async fn dirty_record(&self, version: i64, name: &str) -> Result<Document> {
        self.history
            .find_one(doc! { "_id": version, "state": "dirty" })
            .await
            .map_err(|e| self.error("reading", &e))?
            .ok_or_else(|| {
                Error::Refused(format!(
                    "V{version}__{name} is no longer dirty in {}; another runner changed history",
                    self.namespace
                ))
            })
    }

    async fn update_existing(&self, version: i64, update: Document) -> Result<()> {
        let result = self
            .history
            .update_one(doc! { "_id": version }, update)
            .await
            .map_err(|e| self.error("updating", &e))?;
        if result.matched_count == 0 {
            return Err(Error::Refused(format!(
                "version {version} is no longer recorded in {}; another runner changed history",
                self.namespace
            )));
        }
        Ok(())
    }

    async fn audit(
        &self,
        action: &str,
        applied: &AppliedMigration,
        detail: Document,
        run: &RunInfo,
    ) -> Result<()> {
        self.audit_event(action, applied.version, &applied.name, detail, run)
            .await
    }

    async fn audit_event(
        &self,
        action: &str,
        version: i64,
        name: &str,
        detail: Document,
        run: &RunInfo,
    ) -> Result<()> {
        self.audit
            .insert_one(doc! {
                "at": DateTime::now(),
                "action": action,
                "version": version,
                "name": name,
                "detail": detail,
                "run_id": &run.run_id,
                "actor": &run.actor,
            })
            .await
            .map_err(|e| self.error("writing the audit record to", &e))?;
        Ok(())
    }

    fn to_applied(&self, d: &Document) -> Result<AppliedMigration> {
        let malformed = |field: &str| {
            Error::db(
                Engine::Mongo,
                format!(
                    "history document {} in {} has no valid `{field}`; it was not written by dbkeeper \
                     or was edited by hand. Fix or remove it",
                    d.get("_id").map(|v| v.to_string()).unwrap_or_default(),
                    self.namespace
                ),
            )
        };
        let version = int_field(d, "_id").ok_or_else(|| malformed("_id"))?;
        let name = d
            .get_str("name")
            .map_err(|_| malformed("name"))?
            .to_string();
        let checksum = d
            .get_str("checksum")
            .map_err(|_| malformed("checksum"))?
            .to_string();
        let state = match d.get_str("state") {
            Ok("applied") => AppliedState::Applied,
            Ok("dirty") => AppliedState::Dirty,
            _ => return Err(malformed("state")),
        };
        let applied_on = d
            .get_datetime("applied_at")
            .or_else(|_| d.get_datetime("started_at"))
            .ok()
            .map(|t| t.try_to_rfc3339_string().unwrap_or_else(|_| t.to_string()));
        Ok(AppliedMigration {
            version,
            name,
            checksum,
            applied_on,
            state,
            down: d.get_str("down").ok().map(str::to_string),
            dirty_detail: (state == AppliedState::Dirty).then(|| describe_dirty(d)),
        })
    }

    fn error(&self, doing: &str, e: &mongodb::error::Error) -> Error {
        Error::db(
            Engine::Mongo,
            format!("{doing} {}: {}", self.namespace, short_error(e)),
        )
    }
}

/// What is known about where a dirty version stopped, in the words `status` prints.
fn describe_dirty(d: &Document) -> String {
    let direction = d.get_str("direction").unwrap_or("up");
    let verb = if direction == "down" {
        "rolling back"
    } else {
        "applying"
    };
    let total = int_field(d, "commands").unwrap_or(0);
    let completed = int_field(d, "completed_commands").unwrap_or(0);
    let who = d.get_str("actor").unwrap_or("unknown");
    match (int_field(d, "failed_command"), d.get_str("error")) {
        (Some(index), error) => format!(
            "{verb}: {direction} command at index {index} of {total} failed: {}; the {completed} before it ran (by {who})",
            error.unwrap_or("unknown error")
        ),
        (None, _) => format!(
            "{verb}: {completed} of {total} {direction} commands completed, then the run stopped (by {who}; \
             the process may have died)"
        ),
    }
}

fn dirty_summary(d: &Document) -> Document {
    doc! { "was": describe_dirty(d), "checksum": d.get_str("checksum").unwrap_or_default() }
}

fn int_field(d: &Document, key: &str) -> Option<i64> {
    match d.get(key)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) if v.fract() == 0.0 => Some(*v as i64),
        _ => None,
    }
}

/// The server error code of a command or write error.
pub fn is_code(e: &mongodb::error::Error, code: i32) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Command(c) => c.code == code,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == code,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == code)),
        _ => false,
    }
}
