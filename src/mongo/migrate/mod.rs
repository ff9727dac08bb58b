//! MongoDB migrations: JSON arrays of database commands ([`files`]), history in a collection
//! ([`history`]), a lease document as the lock ([`lease`]). The loop that decides what runs is
//! the engine-neutral one in [`crate::migrate::runner`]; this module only runs one migration's
//! commands and records them.
//!
//! File format, history and lease documents: docs/mongo-migrations.md.

pub mod files;
pub mod history;
pub mod lease;
pub mod scratch;

use std::time::{Duration, Instant};

use mongodb::bson::{Bson, Document};
use mongodb::{Client, Database};

use crate::error::{Engine, Error, Result};
use crate::migrate::{AppliedMigration, Migration, MigrationEngine, RepairAction, RunInfo};
use crate::mongo::connect::short_error;
use crate::mongo::MongoTarget;

pub use files::{load_migrations, new_migration_template, parse_commands, FILE_EXTENSION};
use history::History;
use lease::Lease;

pub struct MongoMigrator {
    client: Client,
    db: Database,
    history: History,
    lease: Lease,
}

impl MongoMigrator {
    /// Connects, with the lease duration from `DBKEEPER_MONGO_LEASE_SECS` (default 30 s).
    pub async fn connect(target: &MongoTarget) -> Result<MongoMigrator> {
        let lease = lease::lease_from_env()?;
        MongoMigrator::connect_with_lease(target, lease).await
    }

    pub async fn connect_with_lease(
        target: &MongoTarget,
        lease_duration: Duration,
    ) -> Result<MongoMigrator> {
        let client = target.connect().await?;
        let db = client.database(target.db_name());
        let run = RunInfo::current();
        Ok(MongoMigrator {
            history: History::new(&db),
            lease: Lease::new(
                &db,
                format!("{} (run {})", run.actor, run.run_id),
                lease_duration,
            ),
            client,
            db,
        })
    }

    /// Runs `commands` in order, recording progress after each; on failure records the index
    /// and the server's error and returns an error naming `source` and the index. Nothing after
    /// a failed command runs.
    async fn run_all(&self, version: i64, source: &str, commands: &[Document]) -> Result<()> {
        for (index, command) in commands.iter().enumerate() {
            if let Err(e) = self.lease.ensure_held() {
                let message = format!("not run: {e}");
                let _ = self.history.fail(version, index, &message).await;
                return Err(e);
            }
            if let Err(message) = self.run_one(command).await {
                // The command's error is what the operator must act on; a failure to record it
                // is appended rather than allowed to replace it.
                let unrecorded = match self.history.fail(version, index, &message).await {
                    Ok(()) => String::new(),
                    Err(e) => format!(" (recording the failure also failed: {e})"),
                };
                let total = commands.len();
                return Err(Error::db(
                    Engine::Mongo,
                    format!(
                        "{source}: command at index {index} (`{}`, {} of {total}) failed: {message}. \
                         {index} command(s) before it ran and were not undone; the version is marked dirty. \
                         Fix the database, then run `dbkeeper migrate repair --engine mongo --dirty applied` \
                         (it is complete now) or `--dirty rolled-back` (you undid its effects){unrecorded}",
                        command_name(command),
                        index + 1,
                    ),
                ));
            }
            self.history.progress(version, index + 1).await?;
        }
        Ok(())
    }

    /// One `runCommand`, against the database named by a top-level `$db` if there is one.
    /// Write commands report per-document failures in a successful reply (`writeErrors`); those
    /// count as failures too, or a migration whose inserts were all rejected would be "applied".
    async fn run_one(&self, command: &Document) -> std::result::Result<(), String> {
        let mut command = command.clone();
        // A lint directive is for `migrate lint`, not for the server.
        command.remove(crate::migrate::lint::ignore::JSON_KEY);
        let db = match command.remove("$db") {
            None => self.db.clone(),
            Some(Bson::String(name)) => self.client.database(&name),
            Some(other) => return Err(format!("`$db` must be a database name, not {other}")),
        };
        let reply = db.run_command(command).await.map_err(|e| short_error(&e))?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            if let Some(Bson::Document(first)) = errors.first() {
                return Err(format!(
                    "{} write error(s), the first: {} (code {})",
                    errors.len(),
                    first.get_str("errmsg").unwrap_or("unknown"),
                    first.get("code").map(|c| c.to_string()).unwrap_or_default()
                ));
            }
        }
        if let Ok(wce) = reply.get_document("writeConcernError") {
            return Err(format!(
                "write concern error: {}",
                wce.get_str("errmsg").unwrap_or("unknown")
            ));
        }
        Ok(())
    }
}

fn command_name(command: &Document) -> &str {
    command.keys().next().map(String::as_str).unwrap_or("?")
}

#[async_trait::async_trait]
impl MigrationEngine for MongoMigrator {
    fn engine(&self) -> Engine {
        Engine::Mongo
    }

    async fn read_history(&mut self) -> Result<Vec<AppliedMigration>> {
        self.history.read().await
    }

    async fn lock(&mut self, timeout: Duration) -> Result<()> {
        self.lease.acquire(timeout).await
    }

    async fn unlock(&mut self) -> Result<()> {
        self.lease.release().await
    }

    async fn prepare_history(&mut self) -> Result<()> {
        self.history.prepare(&self.db).await
    }

    async fn apply(&mut self, m: &Migration, run: &RunInfo) -> Result<()> {
        let source = m.up_path.display().to_string();
        let commands = parse_commands(&m.up).map_err(|e| e.in_file(&source))?;
        self.lease.ensure_held()?;
        let started = Instant::now();
        self.history.start_up(m, commands.len(), run).await?;
        self.run_all(m.version, &source, &commands).await?;
        self.history.finish_up(m.version, started.elapsed()).await
    }

    async fn revert(&mut self, a: &AppliedMigration, run: &RunInfo) -> Result<()> {
        let source = format!(
            "{} (down commands captured at apply time in {})",
            a.label(),
            self.history.namespace()
        );
        let Some(text) = &a.down else {
            return Err(Error::Refused(format!(
                "{source}: none were captured; nothing was run"
            )));
        };
        let commands = parse_commands(text).map_err(|e| e.in_file(&source))?;
        self.lease.ensure_held()?;
        let started = Instant::now();
        self.history.start_down(a, commands.len(), run).await?;
        self.run_all(a.version, &source, &commands).await?;
        self.history.finish_down(a, started.elapsed(), run).await
    }

    async fn record_baseline(&mut self, migrations: &[&Migration], run: &RunInfo) -> Result<()> {
        self.lease.ensure_held()?;
        self.history.baseline(migrations, run).await
    }

    async fn repair(&mut self, action: &RepairAction, run: &RunInfo) -> Result<()> {
        self.lease.ensure_held()?;
        match action {
            RepairAction::UpdateChecksum {
                version,
                name,
                old_checksum,
                new_checksum,
                down,
            } => {
                self.history
                    .update_checksum(
                        *version,
                        name,
                        old_checksum,
                        new_checksum,
                        down.as_deref(),
                        run,
                    )
                    .await
            }
            RepairAction::MarkApplied { version, name } => {
                self.history.mark_applied(*version, name, run).await
            }
            RepairAction::ForgetDirty { version, name } => {
                self.history.forget_dirty(*version, name, run).await
            }
        }
    }
}
