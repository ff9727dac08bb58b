//! The one apply/revert loop. Engines provide the primitives; this module takes the lock, reads
//! history under it (so racing deploys plan against the same truth), plans, runs, and always
//! releases the lock, returning what it managed even when a step fails.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::model::{AppliedMigration, AppliedState, Migration, RunInfo};
use super::plan::{plan_down, plan_up};
use super::repeatable::{self, AppliedRepeatable, Repeatable};
use crate::error::{Engine, Error, ExitCode, Result};

/// What an engine must provide. Reads never write; writes happen only under [`lock`].
///
/// [`lock`]: MigrationEngine::lock
#[async_trait::async_trait]
pub trait MigrationEngine: Send {
    fn engine(&self) -> Engine;

    /// History rows, oldest first. Creates nothing: an absent history table/collection is `[]`.
    async fn read_history(&mut self) -> Result<Vec<AppliedMigration>>;

    /// Serializes runners. Waits up to `timeout`, saying who holds the lock while it waits;
    /// `Error::LockTimeout` after that.
    async fn lock(&mut self, timeout: Duration) -> Result<()>;

    async fn unlock(&mut self) -> Result<()>;

    /// Creates the history table/collection if needed. Called under the lock.
    async fn prepare_history(&mut self) -> Result<()>;

    /// Runs one migration and records it. Either the migration and its history rows commit
    /// together, or (when the engine cannot be atomic) the version is recorded dirty first.
    async fn apply(&mut self, migration: &Migration, run: &RunInfo) -> Result<()>;

    /// Runs the captured down script of one applied migration and removes its history.
    async fn revert(&mut self, applied: &AppliedMigration, run: &RunInfo) -> Result<()>;

    /// Records migrations as applied without running them.
    async fn record_baseline(&mut self, migrations: &[&Migration], run: &RunInfo) -> Result<()>;

    /// Carries out one repair action.
    async fn repair(&mut self, action: &RepairAction, run: &RunInfo) -> Result<()>;

    /// What was recorded when each repeatable migration was last applied, by name. Creates
    /// nothing. An engine without repeatable migrations has none.
    async fn read_repeatables(&mut self) -> Result<Vec<AppliedRepeatable>> {
        Ok(Vec::new())
    }

    /// Runs one repeatable migration and records its checksum, atomically: a failure leaves
    /// neither its effects nor a record. Called under the lock.
    async fn apply_repeatable(&mut self, r: &Repeatable, _run: &RunInfo) -> Result<()> {
        Err(Error::Usage(format!(
            "{}: {} has no repeatable migrations; remove the file",
            r.path.display(),
            self.engine()
        )))
    }

    /// Forgets what was recorded for every repeatable migration, so the next `up` applies them
    /// all again. Called after a `down` reverted something. Under the lock.
    async fn forget_repeatables(&mut self, _run: &RunInfo) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
}

/// One migration the loop ran (or, in a dry run, would run).
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    /// 0 for a repeatable migration.
    pub version: i64,
    pub name: String,
    /// An `R__` migration (applied after the versioned ones when its checksum changed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeatable: bool,
    pub direction: Direction,
    pub duration_ms: u64,
    pub no_transaction: bool,
    /// The script, included in dry runs so the operator sees exactly what would run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

impl StepOutcome {
    pub fn label(&self) -> String {
        step_label(self.version, &self.name, self.repeatable)
    }
}

/// `V3__add_orders`, or `R__active_users` for a repeatable migration.
pub fn step_label(version: i64, name: &str, repeatable: bool) -> String {
    if repeatable {
        repeatable::label(name)
    } else {
        format!("V{version}__{name}")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    pub version: i64,
    pub name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeatable: bool,
    pub message: String,
    #[serde(skip)]
    pub exit_code: ExitCode,
}

/// What `up`/`down` did. A failed run still lists the steps that completed before it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub engine: Engine,
    pub direction: Direction,
    pub dry_run: bool,
    pub steps: Vec<StepOutcome>,
    pub failure: Option<StepFailure>,
}

impl RunReport {
    pub fn exit_code(&self) -> ExitCode {
        self.failure
            .as_ref()
            .map(|f| f.exit_code)
            .unwrap_or(ExitCode::Ok)
    }
}

/// How `repair` resolves a dirty migration, chosen by the operator who checked the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirtyResolution {
    /// The migration did complete: mark it applied.
    Applied,
    /// The operator undid its partial effects: forget it, so `up` runs it again.
    RolledBack,
}

/// One change `repair` makes to history, reported before and after it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RepairAction {
    /// Record the file's current checksum (and name) for an applied version.
    UpdateChecksum {
        version: i64,
        name: String,
        old_checksum: String,
        new_checksum: String,
        #[serde(skip)]
        down: Option<String>,
    },
    MarkApplied {
        version: i64,
        name: String,
    },
    ForgetDirty {
        version: i64,
        name: String,
    },
}

/// Applies pending migrations up to `to`, then (unless `to` stops before the newest file) the
/// repeatable migrations that are new or changed, in name order.
pub async fn up(
    engine: &mut dyn MigrationEngine,
    files: &[Migration],
    repeatables: &[Repeatable],
    to: Option<i64>,
    dry_run: bool,
    lock_timeout: Duration,
    run: &RunInfo,
) -> Result<RunReport> {
    let mut report = RunReport {
        engine: engine.engine(),
        direction: Direction::Up,
        dry_run,
        steps: Vec::new(),
        failure: None,
    };
    if dry_run {
        let history = engine.read_history().await?;
        for m in plan_up(files, &history, to)? {
            report.steps.push(step(
                m.version,
                &m.name,
                Direction::Up,
                m.no_transaction,
                Some(m.up.clone()),
                Duration::ZERO,
            ));
        }
        if reaches_newest(files, to) {
            let recorded = engine.read_repeatables().await?;
            for r in repeatable::plan(repeatables, &recorded) {
                let mut s = step(0, &r.name, Direction::Up, false, None, Duration::ZERO);
                s.repeatable = true;
                s.script = Some(r.script.clone());
                report.steps.push(s);
            }
        }
        return Ok(report);
    }
    engine.lock(lock_timeout).await?;
    let result = up_locked(engine, files, repeatables, to, run, &mut report).await;
    release(engine, result).await.map(|()| report)
}

async fn up_locked(
    engine: &mut dyn MigrationEngine,
    files: &[Migration],
    repeatables: &[Repeatable],
    to: Option<i64>,
    run: &RunInfo,
    report: &mut RunReport,
) -> Result<()> {
    engine.prepare_history().await?;
    let history = engine.read_history().await?;
    for m in plan_up(files, &history, to)? {
        tracing::info!(engine = %engine.engine(), "applying {}", m.label());
        let started = Instant::now();
        match engine.apply(m, run).await {
            Ok(()) => report.steps.push(step(
                m.version,
                &m.name,
                Direction::Up,
                m.no_transaction,
                None,
                started.elapsed(),
            )),
            Err(e) => {
                report.failure = Some(failure(m.version, &m.name, e));
                return Ok(());
            }
        }
    }
    if reaches_newest(files, to) {
        apply_repeatables(engine, repeatables, run, report).await?;
    }
    Ok(())
}

/// Whether an `up` to `to` ends at the newest migration file: only then do repeatable
/// migrations run, since they are written against the newest schema.
fn reaches_newest(files: &[Migration], to: Option<i64>) -> bool {
    let newest = files.iter().map(|f| f.version).max().unwrap_or(0);
    to.is_none_or(|to| to >= newest)
}

/// After the versioned migrations: every repeatable that is new or changed, in name order,
/// each in its own transaction with its record. The first failure stops the run (a failed
/// deploy); the ones before it stay applied.
async fn apply_repeatables(
    engine: &mut dyn MigrationEngine,
    repeatables: &[Repeatable],
    run: &RunInfo,
    report: &mut RunReport,
) -> Result<()> {
    if repeatables.is_empty() {
        return Ok(());
    }
    let recorded = engine.read_repeatables().await?;
    for r in repeatable::plan(repeatables, &recorded) {
        tracing::info!(engine = %engine.engine(), "applying {}", r.label());
        let started = Instant::now();
        match engine.apply_repeatable(r, run).await {
            Ok(()) => {
                let mut s = step(0, &r.name, Direction::Up, false, None, started.elapsed());
                s.repeatable = true;
                report.steps.push(s);
            }
            Err(e) => {
                let mut f = failure(0, &r.name, e);
                f.repeatable = true;
                report.failure = Some(f);
                break;
            }
        }
    }
    Ok(())
}

/// Reverts applied migrations, newest first, with the down scripts captured at apply time.
/// A migration applied without a captured script (by refinery, or before its `.down` file
/// existed) uses the `.down` file on disk, but only when its up file is unchanged: a down script
/// written for a different up script must not run.
pub async fn down(
    engine: &mut dyn MigrationEngine,
    files: &[Migration],
    steps: Option<usize>,
    to: Option<i64>,
    dry_run: bool,
    lock_timeout: Duration,
    run: &RunInfo,
) -> Result<RunReport> {
    let mut report = RunReport {
        engine: engine.engine(),
        direction: Direction::Down,
        dry_run,
        steps: Vec::new(),
        failure: None,
    };
    if dry_run {
        let mut history = engine.read_history().await?;
        adopt_file_down_scripts(&mut history, files);
        for a in plan_down(&history, steps, to)? {
            report.steps.push(step(
                a.version,
                &a.name,
                Direction::Down,
                false,
                a.down.clone(),
                Duration::ZERO,
            ));
        }
        return Ok(report);
    }
    engine.lock(lock_timeout).await?;
    let result = down_locked(engine, files, steps, to, run, &mut report).await;
    release(engine, result).await.map(|()| report)
}

async fn down_locked(
    engine: &mut dyn MigrationEngine,
    files: &[Migration],
    steps: Option<usize>,
    to: Option<i64>,
    run: &RunInfo,
    report: &mut RunReport,
) -> Result<()> {
    let mut history = engine.read_history().await?;
    adopt_file_down_scripts(&mut history, files);
    for a in plan_down(&history, steps, to)? {
        tracing::info!(engine = %engine.engine(), "reverting {}", a.label());
        let started = Instant::now();
        match engine.revert(a, run).await {
            Ok(()) => report.steps.push(step(
                a.version,
                &a.name,
                Direction::Down,
                false,
                None,
                started.elapsed(),
            )),
            Err(e) => {
                report.failure = Some(failure(a.version, &a.name, e));
                break;
            }
        }
    }
    if !report.steps.is_empty() {
        // `down` does not revert repeatable migrations, but the down scripts may have dropped
        // what they created (a view goes with its table's `DROP ... CASCADE`); repeatables are
        // written to be applied again, so the next `up` does.
        engine.forget_repeatables(run).await?;
    }
    Ok(())
}

/// Records every migration file up to and including `version` as applied, running nothing.
/// Refuses when history already has entries: a baseline describes a database dbkeeper never saw.
pub async fn baseline(
    engine: &mut dyn MigrationEngine,
    files: &[Migration],
    version: i64,
    lock_timeout: Duration,
    run: &RunInfo,
) -> Result<Vec<(i64, String)>> {
    check_baseline(files, &[], version)?;
    engine.lock(lock_timeout).await?;
    let result = baseline_locked(engine, files, version, run).await;
    release(engine, result).await
}

async fn baseline_locked(
    engine: &mut dyn MigrationEngine,
    files: &[Migration],
    version: i64,
    run: &RunInfo,
) -> Result<Vec<(i64, String)>> {
    engine.prepare_history().await?;
    check_baseline(files, &engine.read_history().await?, version)?;
    let chosen: Vec<&Migration> = files.iter().filter(|f| f.version <= version).collect();
    engine.record_baseline(&chosen, run).await?;
    Ok(chosen.iter().map(|m| (m.version, m.name.clone())).collect())
}

/// Refuses a baseline of a database that already has history (read it without the lock to
/// check every engine before any is baselined; it is checked again under the lock).
pub fn check_baseline(
    files: &[Migration],
    history: &[AppliedMigration],
    version: i64,
) -> Result<()> {
    if !files.iter().any(|f| f.version == version) {
        return Err(Error::Usage(format!(
            "baseline {version}: no migration file has version {version}"
        )));
    }
    if !history.is_empty() {
        return Err(Error::Refused(format!(
            "baseline refused: {} migration(s) are already recorded (newest V{}); baseline is for a \
             database that has never been migrated by dbkeeper or refinery",
            history.len(),
            history.iter().map(|a| a.version).max().unwrap_or(0)
        )));
    }
    Ok(())
}

/// Works out what `repair` would change: checksums of divergent files, and the operator's
/// resolution of a dirty migration. Read-only.
pub fn plan_repair(
    files: &[Migration],
    history: &[AppliedMigration],
    dirty: Option<DirtyResolution>,
) -> Result<Vec<RepairAction>> {
    let mut actions = Vec::new();
    for a in history {
        let file = files.iter().find(|f| f.version == a.version);
        if a.state == AppliedState::Dirty {
            match dirty {
                Some(DirtyResolution::Applied) => actions.push(RepairAction::MarkApplied {
                    version: a.version,
                    name: a.name.clone(),
                }),
                Some(DirtyResolution::RolledBack) => actions.push(RepairAction::ForgetDirty {
                    version: a.version,
                    name: a.name.clone(),
                }),
                None => {
                    return Err(Error::Usage(format!(
                    "{} is dirty; say how it ended after checking the database: `--dirty applied` \
                         (it completed) or `--dirty rolled-back` (its effects were undone)",
                    a.label()
                )))
                }
            }
            continue;
        }
        if let Some(f) = file {
            if f.checksum != a.checksum || f.name != a.name {
                actions.push(RepairAction::UpdateChecksum {
                    version: a.version,
                    name: f.name.clone(),
                    old_checksum: a.checksum.clone(),
                    new_checksum: f.checksum.clone(),
                    down: f.down.clone(),
                });
            }
        }
    }
    Ok(actions)
}

/// Carries out `repair` under the lock, re-planning against history read under it.
pub async fn repair(
    engine: &mut dyn MigrationEngine,
    files: &[Migration],
    dirty: Option<DirtyResolution>,
    dry_run: bool,
    lock_timeout: Duration,
    run: &RunInfo,
) -> Result<Vec<RepairAction>> {
    if dry_run {
        let history = engine.read_history().await?;
        return plan_repair(files, &history, dirty);
    }
    engine.lock(lock_timeout).await?;
    let result = repair_locked(engine, files, dirty, run).await;
    release(engine, result).await
}

async fn repair_locked(
    engine: &mut dyn MigrationEngine,
    files: &[Migration],
    dirty: Option<DirtyResolution>,
    run: &RunInfo,
) -> Result<Vec<RepairAction>> {
    let history = engine.read_history().await?;
    let actions = plan_repair(files, &history, dirty)?;
    for action in &actions {
        engine.repair(action, run).await?;
    }
    Ok(actions)
}

/// Fills in missing down scripts from `.down` files whose up file still has the recorded checksum.
fn adopt_file_down_scripts(history: &mut [AppliedMigration], files: &[Migration]) {
    for applied in history.iter_mut().filter(|a| a.down.is_none()) {
        let matching = files
            .iter()
            .find(|f| f.version == applied.version && f.checksum == applied.checksum);
        if let Some(file) = matching {
            applied.down = file.down.clone();
        }
    }
}

/// Releases the lock taken for `result`'s work, whatever that work returned. The work's own
/// error wins over an unlock error: it is the one the operator must act on.
async fn release<T>(engine: &mut dyn MigrationEngine, result: Result<T>) -> Result<T> {
    let unlocked = engine.unlock().await;
    match (result, unlocked) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e),
    }
}

fn step(
    version: i64,
    name: &str,
    direction: Direction,
    no_transaction: bool,
    script: Option<String>,
    elapsed: Duration,
) -> StepOutcome {
    StepOutcome {
        version,
        name: name.to_string(),
        repeatable: false,
        direction,
        duration_ms: elapsed.as_millis() as u64,
        no_transaction,
        script,
    }
}

fn failure(version: i64, name: &str, e: Error) -> StepFailure {
    StepFailure {
        version,
        name: name.to_string(),
        repeatable: false,
        exit_code: e.exit_code(),
        message: e.to_string(),
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
