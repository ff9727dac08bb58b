//! PostgreSQL migrations: refinery-compatible history plus dbkeeper's companion table.
//!
//! Files are parsed and checksummed by refinery-core, so the `refinery_schema_history` rows
//! dbkeeper writes are the rows refinery's runner writes. [`PgMigrator`] implements the core's
//! [`MigrationEngine`] on one dedicated connection, which also holds the migration lock.

mod files;
mod history;
mod lock;
pub mod scratch;
pub mod script;

use std::time::{Duration, Instant};

use tokio_postgres::{Client, GenericClient};

use crate::error::{Engine, Error, Result};
use crate::migrate::{
    AppliedMigration, AppliedRepeatable, Migration, MigrationEngine, RepairAction, Repeatable,
    RunInfo,
};
use crate::postgres::connect::describe_error;
use crate::postgres::PgTarget;
use history::{db_error, CompanionRow, State, Tables};

pub use files::{checksum, load_migrations, load_repeatables, FILE_EXTENSION};
pub use history::{COMPANION_TABLE, LOG_TABLE, REFINERY_TABLE, REPEATABLE_TABLE};
pub use lock::MIGRATION_LOCK_KEY;
pub use script::NO_TRANSACTION_DIRECTIVE;

/// The up and down file bodies `migrate new` writes.
pub fn new_migration_template(name: &str) -> (String, String) {
    (
        format!("-- {name}: up\n-- Runs in one transaction with its history row. For CREATE INDEX CONCURRENTLY,\n-- make the first line: {NO_TRANSACTION_DIRECTIVE}\n\n"),
        format!("-- {name}: down (undo everything the up file did)\n\n"),
    )
}

/// The PostgreSQL [`MigrationEngine`]: one dedicated connection for history, lock and scripts.
pub struct PgMigrator {
    client: Client,
    database: String,
    /// `None` when no schema on the search path exists: nothing can be recorded, but reading
    /// (finding no history) still works.
    tables: Option<Tables>,
    tables_ready: bool,
}

impl PgMigrator {
    pub async fn connect(target: &PgTarget) -> Result<PgMigrator> {
        let client = target.connect().await?;
        if target.config().get_application_name() == Some("dbkeeper") {
            // Names this runner (user@host and pid) in pg_stat_activity, which is what lock
            // waiters report. PostgreSQL truncates it to 63 bytes.
            let name = format!("dbkeeper migrate {}", RunInfo::current().actor);
            client
                .execute("SELECT set_config('application_name', $1, false)", &[&name])
                .await
                .map_err(|e| db_error("setting application_name", &e))?;
        }
        // A runner killed in the middle of a long statement must not keep this session (and
        // with it the migration lock and a half-done transaction) alive until the statement
        // ends: from PostgreSQL 14 the server checks every second that the client is still
        // there. Older servers notice only when they next write to the socket.
        client
            .batch_execute(
                "SELECT pg_catalog.set_config('client_connection_check_interval', '1000', false) \
                 WHERE pg_catalog.current_setting('server_version_num')::int >= 140000",
            )
            .await
            .map_err(|e| db_error("setting client_connection_check_interval", &e))?;
        let schema: Option<String> = client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(|e| db_error("reading current_schema()", &e))?
            .get(0);
        Ok(PgMigrator {
            client,
            database: target.describe(),
            tables: schema.as_deref().map(Tables::in_schema),
            tables_ready: false,
        })
    }

    fn tables(&self) -> Result<&Tables> {
        self.tables.as_ref().ok_or_else(|| {
            Error::db(
                Engine::Postgres,
                format!(
                    "{}: no schema on the search_path exists, so there is nowhere to keep migration \
                     history; create one or fix search_path in the URL (options=-csearch_path=...)",
                    self.database
                ),
            )
        })
    }

    /// Creates the history tables once per run; every writer calls this first.
    async fn ensure_tables(&mut self) -> Result<()> {
        if !self.tables_ready {
            self.tables()?.create(&self.client).await?;
            self.tables_ready = true;
        }
        Ok(())
    }

    /// Before recording a version beyond int4 (a timestamp version): the history's version
    /// columns become int8, as refinery's `int8-versions` feature creates them.
    async fn widen_for(&mut self, version: i64) -> Result<()> {
        if version > i64::from(i32::MAX) && self.tables()?.widen_versions(&self.client).await? {
            tracing::warn!(
                "{}: migration history now has int8 versions (for V{version}); refinery reads it \
                 only when built with its int8-versions feature",
                self.database
            );
        }
        Ok(())
    }

    async fn apply_in_transaction(&mut self, m: &Migration, run: &RunInfo) -> Result<()> {
        let tables = self.tables()?.clone();
        let version = m.version;
        let applied_on = history::refinery_timestamp();
        let origin = m.up_path.display().to_string();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("starting a transaction", &e))?;
        let result = async {
            let started = Instant::now();
            run_script(&tx, &origin, &m.up).await?;
            let duration_ms = started.elapsed().as_millis() as i64;
            tables
                .insert_refinery_row(&tx, version, &m.name, &m.checksum, &applied_on)
                .await?;
            tables
                .upsert_companion(
                    &tx,
                    &companion(m, version, State::Applied, Some(duration_ms), run),
                )
                .await?;
            tables.log(&tx, version, &m.name, "apply", None, run).await
        }
        .await;
        // The failed migration leaves no trace: its statements and rows go together.
        commit_or_undo(
            tx,
            result,
            &format!("committing {}", m.label()),
            &format!(
                "{} was rolled back and left nothing behind; migrations before it stay \
                 applied. Fix the file and run `dbkeeper migrate up` again",
                m.label()
            ),
        )
        .await
    }

    /// For `CREATE INDEX CONCURRENTLY` and friends: recorded `in_progress` first, run statement by
    /// statement in autocommit, recorded applied last. A crash in between leaves it dirty.
    async fn apply_outside_transaction(&mut self, m: &Migration, run: &RunInfo) -> Result<()> {
        let tables = self.tables()?.clone();
        let version = m.version;
        let applied_on = history::refinery_timestamp();
        tables
            .upsert_companion(
                &self.client,
                &companion(m, version, State::InProgress, None, run),
            )
            .await?;
        let started = Instant::now();
        if let Err(e) = run_script(&self.client, &m.up_path.display().to_string(), &m.up).await {
            let _ = tables
                .set_dirty_detail(&self.client, version, &format!("failed: {e}"))
                .await;
            return Err(dirty_failure(e, &m.label(), "it"));
        }
        let duration_ms = started.elapsed().as_millis() as i64;
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("starting a transaction", &e))?;
        tables
            .insert_refinery_row(&tx, version, &m.name, &m.checksum, &applied_on)
            .await?;
        tables
            .set_state(&tx, version, State::Applied, Some(duration_ms))
            .await?;
        tables
            .log(&tx, version, &m.name, "apply", Some("no transaction"), run)
            .await?;
        tx.commit()
            .await
            .map_err(|e| db_error(&format!("recording {} as applied", m.label()), &e))
    }
}

#[async_trait::async_trait]
impl MigrationEngine for PgMigrator {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    async fn read_history(&mut self) -> Result<Vec<AppliedMigration>> {
        match &self.tables {
            Some(tables) => tables.read(&self.client).await,
            None => Ok(Vec::new()),
        }
    }

    async fn lock(&mut self, timeout: Duration) -> Result<()> {
        lock::acquire(&self.client, &self.database, timeout).await?;
        // The same patience for the migrations' own locks: an `ALTER TABLE` queued behind a
        // long transaction would otherwise wait forever, and every query on that table would
        // queue behind it. A file can still `SET lock_timeout` itself. 0 means "do not wait"
        // for the migration lock, but would mean "wait forever" here, so it is left alone.
        if !timeout.is_zero() {
            self.client
                .execute(
                    "SELECT pg_catalog.set_config('lock_timeout', $1, false)",
                    &[&format!("{}ms", timeout.as_millis())],
                )
                .await
                .map_err(|e| db_error("setting lock_timeout", &e))?;
        }
        Ok(())
    }

    async fn unlock(&mut self) -> Result<()> {
        lock::release(&self.client).await
    }

    async fn prepare_history(&mut self) -> Result<()> {
        self.ensure_tables().await
    }

    async fn apply(&mut self, m: &Migration, run: &RunInfo) -> Result<()> {
        self.ensure_tables().await?;
        self.widen_for(m.version).await?;
        if m.no_transaction {
            self.apply_outside_transaction(m, run).await
        } else {
            self.apply_in_transaction(m, run).await
        }
    }

    async fn revert(&mut self, a: &AppliedMigration, run: &RunInfo) -> Result<()> {
        self.ensure_tables().await?;
        let tables = self.tables()?.clone();
        let version = a.version;
        let Some(down) = a.down.as_deref() else {
            return Err(Error::Refused(format!(
                "{} has no recorded down script; nothing was run",
                a.label()
            )));
        };
        let origin = format!("{} down script (as recorded when applied)", a.label());
        if script::has_no_transaction_directive(down) {
            tables
                .set_state(&self.client, version, State::Reverting, None)
                .await?;
            if let Err(e) = run_script(&self.client, &origin, down).await {
                let _ = tables
                    .set_dirty_detail(&self.client, version, &format!("rollback failed: {e}"))
                    .await;
                return Err(dirty_failure(e, &a.label(), "its rollback"));
            }
            let tx = self
                .client
                .transaction()
                .await
                .map_err(|e| db_error("starting a transaction", &e))?;
            tables.delete(&tx, version).await?;
            tables
                .log(&tx, version, &a.name, "revert", Some("no transaction"), run)
                .await?;
            return tx
                .commit()
                .await
                .map_err(|e| db_error(&format!("recording {} as reverted", a.label()), &e));
        }
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("starting a transaction", &e))?;
        let result = async {
            run_script(&tx, &origin, down).await?;
            tables.delete(&tx, version).await?;
            tables.log(&tx, version, &a.name, "revert", None, run).await
        }
        .await;
        commit_or_undo(
            tx,
            result,
            &format!("committing the rollback of {}", a.label()),
            &format!(
                "the rollback was undone as a whole: {} stays applied",
                a.label()
            ),
        )
        .await
    }

    async fn record_baseline(&mut self, migrations: &[&Migration], run: &RunInfo) -> Result<()> {
        self.ensure_tables().await?;
        if let Some(newest) = migrations.iter().map(|m| m.version).max() {
            self.widen_for(newest).await?;
        }
        let tables = self.tables()?.clone();
        let applied_on = history::refinery_timestamp();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("starting a transaction", &e))?;
        for m in migrations {
            let version = m.version;
            tables
                .insert_refinery_row(&tx, version, &m.name, &m.checksum, &applied_on)
                .await?;
            tables
                .upsert_companion(&tx, &companion(m, version, State::Applied, None, run))
                .await?;
            tables
                .log(
                    &tx,
                    version,
                    &m.name,
                    "baseline",
                    Some("recorded as applied; not run"),
                    run,
                )
                .await?;
        }
        tx.commit()
            .await
            .map_err(|e| db_error("committing the baseline", &e))
    }

    async fn repair(&mut self, action: &RepairAction, run: &RunInfo) -> Result<()> {
        self.ensure_tables().await?;
        let tables = self.tables()?.clone();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("starting a transaction", &e))?;
        match action {
            RepairAction::UpdateChecksum {
                version,
                name,
                old_checksum,
                new_checksum,
                down,
            } => {
                let v = *version;
                tables
                    .update_checksum(&tx, v, name, new_checksum, down.as_deref(), run)
                    .await?;
                let detail = format!("checksum {old_checksum} -> {new_checksum}");
                tables
                    .log(&tx, v, name, "repair_checksum", Some(&detail), run)
                    .await?;
            }
            RepairAction::MarkApplied { version, name } => {
                let v = *version;
                if !tables.has_refinery_row(&tx, v).await? {
                    let (name, checksum) =
                        tables.companion_identity(&tx, v).await?.ok_or_else(|| {
                            Error::db(
                                Engine::Postgres,
                                format!(
                                    "V{version}__{name} is no longer recorded; run status again"
                                ),
                            )
                        })?;
                    tables
                        .insert_refinery_row(
                            &tx,
                            v,
                            &name,
                            &checksum,
                            &history::refinery_timestamp(),
                        )
                        .await?;
                }
                tables.set_state(&tx, v, State::Applied, None).await?;
                tables
                    .log(
                        &tx,
                        v,
                        name,
                        "repair_mark_applied",
                        Some("dirty -> applied"),
                        run,
                    )
                    .await?;
            }
            RepairAction::ForgetDirty { version, name } => {
                let v = *version;
                tables.delete(&tx, v).await?;
                tables
                    .log(
                        &tx,
                        v,
                        name,
                        "repair_forget_dirty",
                        Some("dirty -> not applied"),
                        run,
                    )
                    .await?;
            }
        }
        tx.commit()
            .await
            .map_err(|e| db_error("committing the repair", &e))
    }

    async fn read_repeatables(&mut self) -> Result<Vec<AppliedRepeatable>> {
        match &self.tables {
            Some(tables) => tables.read_repeatables(&self.client).await,
            None => Ok(Vec::new()),
        }
    }

    async fn apply_repeatable(&mut self, r: &Repeatable, run: &RunInfo) -> Result<()> {
        self.ensure_tables().await?;
        let tables = self.tables()?.clone();
        let label = r.label();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("starting a transaction", &e))?;
        let result = async {
            let started = Instant::now();
            run_script(&tx, &r.path.display().to_string(), &r.script).await?;
            let duration_ms = started.elapsed().as_millis() as i64;
            tables
                .record_repeatable(&tx, &r.name, &r.checksum, duration_ms, run)
                .await?;
            let detail = format!("checksum {}", r.checksum);
            tables
                .log(&tx, 0, &label, "apply_repeatable", Some(&detail), run)
                .await
        }
        .await;
        commit_or_undo(
            tx,
            result,
            &format!("committing {label}"),
            &format!(
                "{label} was rolled back and left nothing behind (its previous version, if any, \
                 stays in place); migrations before it stay applied. Fix the file and run \
                 `dbkeeper migrate up` again"
            ),
        )
        .await
    }

    async fn forget_repeatables(&mut self, run: &RunInfo) -> Result<()> {
        let Some(tables) = self.tables.clone() else {
            return Ok(());
        };
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("starting a transaction", &e))?;
        let forgotten = tables.forget_repeatables(&tx).await?;
        if forgotten > 0 {
            let detail = format!(
                "{forgotten} repeatable migration record(s) cleared after a rollback; the next up \
                 applies them again"
            );
            tables
                .log(&tx, 0, "R__*", "forget_repeatables", Some(&detail), run)
                .await?;
        }
        tx.commit()
            .await
            .map_err(|e| db_error("committing the cleared repeatable records", &e))
    }
}

fn companion<'a>(
    m: &'a Migration,
    version: i64,
    state: State,
    duration_ms: Option<i64>,
    run: &'a RunInfo,
) -> CompanionRow<'a> {
    CompanionRow {
        version,
        name: &m.name,
        checksum: &m.checksum,
        state,
        no_transaction: m.no_transaction,
        down_sql: m.down.as_deref(),
        duration_ms,
        run,
    }
}

/// Runs `sql` statement by statement. A failure names `origin:line:col`, shows the line, and
/// carries PostgreSQL's message, detail, hint and context.
async fn run_script(client: &impl GenericClient, origin: &str, sql: &str) -> Result<()> {
    for stmt in script::split_statements(sql) {
        if let Err(e) = client.batch_execute(stmt.text).await {
            return Err(script_error(origin, sql, stmt, &e));
        }
    }
    Ok(())
}

fn script_error(
    origin: &str,
    sql: &str,
    stmt: script::Statement<'_>,
    e: &tokio_postgres::Error,
) -> Error {
    let position = e.as_db_error().and_then(|db| match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
        _ => None,
    });
    let offset = stmt.offset + position.map_or(0, |p| script::position_to_offset(stmt.text, p));
    let (location, excerpt) = script::render_location(origin, sql, offset, position.is_some());
    let mut message = format!("{location}: {}", describe_error(e));
    if let Some(context) = e.as_db_error().and_then(|db| db.where_()) {
        message.push_str(&format!("\nCONTEXT: {context}"));
    }
    message.push_str(&format!("\n{excerpt}"));
    if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
        message.push_str(
            "\nanother session held a lock this statement needs for longer than --lock-timeout \
             (see pg_locks / pg_stat_activity); retry when it is gone, or raise --lock-timeout",
        );
    }
    Error::db(Engine::Postgres, message)
}

/// Appends what happened to the database to a script failure.
/// Commits `tx` when its work succeeded; otherwise rolls it back and adds `note` (what that means
/// for the operator) to the error.
async fn commit_or_undo(
    tx: tokio_postgres::Transaction<'_>,
    result: Result<()>,
    committing: &str,
    note: &str,
) -> Result<()> {
    match result {
        Ok(()) => tx.commit().await.map_err(|e| db_error(committing, &e)),
        Err(e) => {
            let _ = tx.rollback().await;
            Err(with_note(e, note))
        }
    }
}

fn with_note(e: Error, note: &str) -> Error {
    match e {
        Error::Database { engine, message } => Error::Database {
            engine,
            message: format!("{message}\n{note}"),
        },
        other => other,
    }
}

/// A no-transaction script failed: statements before the failing one stayed, so the version is
/// dirty until an operator has looked.
fn dirty_failure(e: Error, label: &str, what: &str) -> Error {
    let message = match e {
        Error::Database { message, .. } => message,
        other => other.to_string(),
    };
    Error::db(
        Engine::Postgres,
        format!(
            "{message}\n{label} ran outside a transaction, so statements before the failing one \
             stayed applied; {what} is now recorded as dirty. Check the database (an interrupted \
             CREATE INDEX CONCURRENTLY leaves an INVALID index to drop), then run `dbkeeper \
             migrate repair --dirty rolled-back` (effects undone) or `--dirty applied` (completed)"
        ),
    )
}
