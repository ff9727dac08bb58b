//! The runner against an in-memory engine: what the loop itself guarantees (order, the lock,
//! stopping at the first failure, captured down scripts, dirty versions, drift, baselines),
//! without a database. The engines' own tests prove their primitives on real servers.

use std::time::Duration;

use super::*;

/// An engine whose history is a vector. `failing` versions fail to apply; with
/// `dirty_on_failure` they are left recorded dirty, as a no-transaction SQL migration or a
/// MongoDB migration that stopped part-way would be.
#[derive(Default)]
struct FakeEngine {
    history: Vec<AppliedMigration>,
    failing: Vec<i64>,
    dirty_on_failure: bool,
    locked: bool,
    /// What ran, in order: `up V1`, `down V1: <script>`.
    ran: Vec<String>,
}

#[async_trait::async_trait]
impl MigrationEngine for FakeEngine {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    async fn read_history(&mut self) -> Result<Vec<AppliedMigration>> {
        Ok(self.history.clone())
    }

    async fn lock(&mut self, _timeout: Duration) -> Result<()> {
        assert!(!self.locked, "the runner took the lock twice");
        self.locked = true;
        Ok(())
    }

    async fn unlock(&mut self) -> Result<()> {
        assert!(self.locked, "the runner released a lock it did not hold");
        self.locked = false;
        Ok(())
    }

    async fn prepare_history(&mut self) -> Result<()> {
        assert!(self.locked, "history is prepared under the lock");
        Ok(())
    }

    async fn apply(&mut self, migration: &Migration, _run: &RunInfo) -> Result<()> {
        assert!(self.locked, "migrations run under the lock");
        if self.failing.contains(&migration.version) {
            if self.dirty_on_failure {
                self.history.push(applied(migration, AppliedState::Dirty));
            }
            return Err(Error::db(Engine::Postgres, "boom"));
        }
        self.ran.push(format!("up V{}", migration.version));
        self.history.push(applied(migration, AppliedState::Applied));
        Ok(())
    }

    async fn revert(&mut self, applied: &AppliedMigration, _run: &RunInfo) -> Result<()> {
        assert!(self.locked, "migrations are reverted under the lock");
        let script = applied.down.clone().unwrap_or_default();
        self.ran
            .push(format!("down V{}: {script}", applied.version));
        self.history.retain(|a| a.version != applied.version);
        Ok(())
    }

    async fn record_baseline(&mut self, migrations: &[&Migration], _run: &RunInfo) -> Result<()> {
        for m in migrations {
            self.history.push(applied(m, AppliedState::Applied));
        }
        Ok(())
    }

    async fn repair(&mut self, action: &RepairAction, _run: &RunInfo) -> Result<()> {
        match action {
            RepairAction::UpdateChecksum {
                version,
                new_checksum,
                ..
            } => {
                let row = self.history.iter_mut().find(|a| a.version == *version);
                row.expect("a recorded version").checksum = new_checksum.clone();
            }
            RepairAction::MarkApplied { version, .. } => {
                let row = self.history.iter_mut().find(|a| a.version == *version);
                row.expect("a recorded version").state = AppliedState::Applied;
            }
            RepairAction::ForgetDirty { version, .. } => {
                self.history.retain(|a| a.version != *version)
            }
        }
        Ok(())
    }
}

fn applied(m: &Migration, state: AppliedState) -> AppliedMigration {
    AppliedMigration {
        version: m.version,
        name: m.name.clone(),
        checksum: m.checksum.clone(),
        applied_on: Some("now".into()),
        state,
        down: m.down.clone(),
        dirty_detail: None,
    }
}

fn file(version: i64, up: &str, down: &str) -> Migration {
    Migration {
        version,
        name: format!("step{version}"),
        up: up.into(),
        up_path: format!("V{version}__step{version}.sql").into(),
        down: Some(down.into()),
        down_path: Some(format!("V{version}__step{version}.down.sql").into()),
        checksum: format!("sum of {up}"),
        no_transaction: false,
    }
}

fn three_files() -> Vec<Migration> {
    (1..=3)
        .map(|v| file(v, &format!("create t{v}"), &format!("drop t{v}")))
        .collect()
}

fn versions(engine: &FakeEngine) -> Vec<i64> {
    engine.history.iter().map(|a| a.version).collect()
}

const WAIT: Duration = Duration::from_secs(1);

async fn up_all(engine: &mut FakeEngine, files: &[Migration]) -> Result<RunReport> {
    up(engine, files, &[], None, false, WAIT, &RunInfo::current()).await
}

#[tokio::test]
async fn up_applies_pending_migrations_in_order_under_the_lock_and_releases_it() {
    let mut engine = FakeEngine::default();
    let files = three_files();
    let report = up_all(&mut engine, &files[..2]).await.unwrap();
    assert_eq!(report.steps.len(), 2);
    let report = up_all(&mut engine, &files).await.unwrap();
    let labels: Vec<String> = report.steps.iter().map(|s| s.label()).collect();
    assert_eq!(labels, ["V3__step3"], "only what is pending runs");
    assert_eq!(engine.ran, ["up V1", "up V2", "up V3"]);
    assert!(!engine.locked);
}

#[tokio::test]
async fn a_dry_run_lists_every_script_and_changes_nothing() {
    let mut engine = FakeEngine::default();
    let files = three_files();
    let report = up(
        &mut engine,
        &files,
        &[],
        Some(2),
        true,
        WAIT,
        &RunInfo::current(),
    )
    .await
    .unwrap();
    let scripts: Vec<_> = report.steps.iter().map(|s| s.script.clone()).collect();
    assert_eq!(
        scripts,
        [Some("create t1".to_string()), Some("create t2".to_string())]
    );
    assert!(engine.history.is_empty() && engine.ran.is_empty());
}

#[tokio::test]
async fn the_first_failure_stops_the_run_keeps_what_completed_and_releases_the_lock() {
    let mut engine = FakeEngine {
        failing: vec![2],
        ..FakeEngine::default()
    };
    let report = up_all(&mut engine, &three_files()).await.unwrap();
    assert_eq!(report.steps.len(), 1);
    let failure = report.failure.as_ref().expect("V2 failed");
    assert_eq!(
        (failure.version, failure.message.contains("boom")),
        (2, true)
    );
    assert_ne!(report.exit_code(), ExitCode::Ok);
    assert_eq!(
        versions(&engine),
        [1],
        "nothing after the failed migration ran"
    );
    assert!(!engine.locked);
}

#[tokio::test]
async fn down_runs_the_script_captured_at_apply_time_even_without_the_files() {
    let mut engine = FakeEngine::default();
    up_all(&mut engine, &three_files()).await.unwrap();
    let run = RunInfo::current();
    let report = down(&mut engine, &[], Some(2), None, false, WAIT, &run)
        .await
        .unwrap();
    assert_eq!(report.steps.len(), 2);
    assert_eq!(&engine.ran[3..], ["down V3: drop t3", "down V2: drop t2"]);
    assert_eq!(versions(&engine), [1]);
    assert!(!engine.locked);
}

#[tokio::test]
async fn a_dirty_version_refuses_up_until_repair_resolves_it() {
    let mut engine = FakeEngine {
        failing: vec![2],
        dirty_on_failure: true,
        ..FakeEngine::default()
    };
    let files = three_files();
    up_all(&mut engine, &files).await.unwrap();
    engine.failing.clear();
    let refused = up_all(&mut engine, &files).await.unwrap_err();
    assert_eq!(refused.exit_code(), ExitCode::Refused, "{refused}");
    assert!(refused.to_string().contains("V2__step2"), "{refused}");
    assert!(!engine.locked, "a refused plan releases the lock");

    let run = RunInfo::current();
    let actions = repair(&mut engine, &files, None, false, WAIT, &run).await;
    assert!(
        actions.is_err(),
        "a dirty version needs the operator's --dirty choice"
    );
    let actions = repair(
        &mut engine,
        &files,
        Some(DirtyResolution::RolledBack),
        false,
        WAIT,
        &run,
    )
    .await
    .unwrap();
    assert!(matches!(
        actions[..],
        [RepairAction::ForgetDirty { version: 2, .. }]
    ));
    up_all(&mut engine, &files).await.unwrap();
    assert_eq!(versions(&engine), [1, 2, 3]);
}

#[tokio::test]
async fn an_applied_file_that_changed_refuses_up_until_its_checksum_is_repaired() {
    let mut engine = FakeEngine::default();
    let mut files = three_files();
    up_all(&mut engine, &files[..1]).await.unwrap();
    files[0] = file(1, "create t1 -- edited", "drop t1");
    let refused = up_all(&mut engine, &files).await.unwrap_err();
    assert_eq!(refused.exit_code(), ExitCode::Refused, "{refused}");
    assert_eq!(versions(&engine), [1]);

    let run = RunInfo::current();
    let actions = repair(&mut engine, &files, None, false, WAIT, &run)
        .await
        .unwrap();
    assert!(matches!(
        actions[..],
        [RepairAction::UpdateChecksum { version: 1, .. }]
    ));
    up_all(&mut engine, &files).await.unwrap();
    assert_eq!(versions(&engine), [1, 2, 3]);
}

#[tokio::test]
async fn baseline_records_without_running_and_only_on_an_empty_history() {
    let mut engine = FakeEngine::default();
    let files = three_files();
    let run = RunInfo::current();
    let recorded = baseline(&mut engine, &files, 2, WAIT, &run).await.unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(engine.ran.is_empty(), "a baseline runs nothing");
    up_all(&mut engine, &files).await.unwrap();
    assert_eq!(engine.ran, ["up V3"]);
    let history = engine.history.clone();
    assert!(check_baseline(&files, &history, 2).is_err());
}
