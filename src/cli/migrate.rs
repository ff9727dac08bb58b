//! `dbkeeper migrate ...`: one verb function per subcommand, the same for both engines.
//!
//! The engine-specific parts are exactly two: how files are loaded (SQL vs JSON) and which
//! [`MigrationEngine`] is opened. Everything else goes through `dbkeeper::migrate`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::migrate::repeatable::{self, RepeatableStatus};
use dbkeeper::migrate::runner::{self, DirtyResolution, RepairAction, RunReport};
use dbkeeper::migrate::{
    self as core, Migration, MigrationEngine, Repeatable, RunInfo, StatusEntry, StatusKind,
};
use dbkeeper::{mongo, postgres, Engine, ExitCode};

mod lint;
mod roundtrip;

use super::args::{DirtyArg, EngineArg, MigrateArgs, MigrateCommand};
use super::output::Output;

pub async fn run(args: MigrateArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let ctx = Context::new(&args, settings)?;
    match args.command {
        MigrateCommand::Status { exit_code } => status(&ctx, out, exit_code, false).await,
        MigrateCommand::Validate => status(&ctx, out, true, true).await,
        MigrateCommand::Up {
            to,
            dry_run,
            backup_first,
        } => {
            lint::before_up(&ctx, to).await?;
            let backup = if backup_first {
                // Before the lock and before anything is applied: a data-destroying migration
                // can then be undone with `dbkeeper restore`.
                let archive = super::backup::verified_backup(settings).await?;
                eprintln!("backup before migrating: {} (verified)", archive.display());
                Some(archive)
            } else {
                None
            };
            run_moves(&ctx, out, Move::Up { to }, dry_run, backup).await
        }
        MigrateCommand::Down { steps, to, dry_run } => {
            run_moves(&ctx, out, Move::Down { steps, to }, dry_run, None).await
        }
        MigrateCommand::New { name } => new(&ctx, out, &name),
        MigrateCommand::Baseline { version } => baseline(&ctx, out, version).await,
        MigrateCommand::Lint => lint::lint(&ctx, out),
        MigrateCommand::Test { keep } => roundtrip::test(&ctx, out, keep).await,
        MigrateCommand::Repair { dirty, dry_run } => {
            let dirty = dirty.map(|d| match d {
                DirtyArg::Applied => DirtyResolution::Applied,
                DirtyArg::RolledBack => DirtyResolution::RolledBack,
            });
            repair(&ctx, out, dirty, dry_run).await
        }
    }
}

/// The engines a migrate command acts on, and where their files are.
struct Context<'a> {
    settings: &'a Settings,
    engines: Vec<Engine>,
    lock_timeout: Duration,
    pg_dir: PathBuf,
    mongo_dir: PathBuf,
    /// Each engine's migration files, read and checked before any database is touched (a bad
    /// MongoDB file must not be found after the PostgreSQL migrations were applied). Empty for
    /// `migrate new`, which reads its directory itself.
    files: Vec<(Engine, Vec<Migration>)>,
    /// Each engine's repeatable (`R__`) migrations, read with the files.
    repeatables: Vec<(Engine, Vec<Repeatable>)>,
}

impl<'a> Context<'a> {
    fn new(args: &MigrateArgs, settings: &'a Settings) -> Result<Context<'a>> {
        let engines = match args.engine {
            Some(EngineArg::Postgres) => vec![Engine::Postgres],
            Some(EngineArg::Mongo) => vec![Engine::Mongo],
            None => {
                let mut e = Vec::new();
                if settings.pg_url.is_some() {
                    e.push(Engine::Postgres);
                }
                if settings.mongo_url.is_some() {
                    e.push(Engine::Mongo);
                }
                if e.is_empty() && matches!(args.command, MigrateCommand::Lint) {
                    // Linting reads files only: CI can run it without any database.
                    e = vec![Engine::Postgres, Engine::Mongo];
                }
                if e.is_empty() {
                    if matches!(args.command, MigrateCommand::New { .. }) {
                        return Err(Error::Usage(
                            "migrate new: pass --engine postgres or --engine mongo (no database is configured \
                             to choose from)"
                                .into(),
                        ));
                    }
                    settings.require_any_engine()?;
                }
                e
            }
        };
        if matches!(args.command, MigrateCommand::New { .. }) && engines.len() > 1 {
            return Err(Error::Usage(
                "migrate new: both engines are configured; pass --engine postgres or --engine mongo".into(),
            ));
        }
        let pg_dir = MigrationsDir::chosen(
            args.migrations_dir.as_ref(),
            &settings.migrations_dir,
            "migrations",
            "--migrations-dir",
        );
        let mongo_dir = MigrationsDir::chosen(
            args.mongo_migrations_dir.as_ref(),
            &settings.mongo_migrations_dir,
            "mongo_migrations",
            "--mongo-migrations-dir",
        );
        let mut ctx = Context {
            settings,
            engines,
            lock_timeout: args
                .lock_timeout
                .map(Duration::from_secs)
                .unwrap_or(settings.lock_timeout),
            pg_dir: pg_dir.path.clone(),
            mongo_dir: mongo_dir.path.clone(),
            files: Vec::new(),
            repeatables: Vec::new(),
        };
        if !matches!(args.command, MigrateCommand::New { .. }) {
            // `down` runs the scripts captured at apply time: it works without the files (an
            // operator's machine without the repository).
            let files_needed = !matches!(args.command, MigrateCommand::Down { .. });
            ctx.files = load_all(&ctx.engines, &pg_dir, &mongo_dir, files_needed)?;
            ctx.engines = ctx.files.iter().map(|(engine, _)| *engine).collect();
            ctx.repeatables = load_repeatables(&ctx.engines, &pg_dir.path)?;
        }
        Ok(ctx)
    }

    fn dir(&self, engine: Engine) -> &Path {
        match engine {
            Engine::Postgres => &self.pg_dir,
            Engine::Mongo => &self.mongo_dir,
        }
    }

    /// The engine's migration files, as read when the command started.
    fn files(&self, engine: Engine) -> &[Migration] {
        self.files
            .iter()
            .find(|(e, _)| *e == engine)
            .map(|(_, files)| files.as_slice())
            .unwrap_or_default()
    }

    /// The engine's repeatable migrations, as read when the command started.
    fn repeatables(&self, engine: Engine) -> &[Repeatable] {
        self.repeatables
            .iter()
            .find(|(e, _)| *e == engine)
            .map(|(_, r)| r.as_slice())
            .unwrap_or_default()
    }

    async fn open(&self, engine: Engine) -> Result<(String, Box<dyn MigrationEngine>)> {
        match engine {
            Engine::Postgres => {
                let url = self.settings.require_pg()?;
                let target = postgres::PgTarget::new(url, self.settings.connect_timeout)?;
                let migrator = postgres::migrate::PgMigrator::connect(&target).await?;
                Ok((target.describe(), Box::new(migrator)))
            }
            Engine::Mongo => {
                let (url, db) = self.settings.require_mongo()?;
                let target = mongo::MongoTarget::new(url, db, self.settings.connect_timeout);
                let migrator = mongo::migrate::MongoMigrator::connect(&target).await?;
                Ok((target.describe(), Box::new(migrator)))
            }
        }
    }
}

/// A migrations directory and whether the user chose it (flag, env or config file) or it is
/// the default.
struct MigrationsDir {
    path: PathBuf,
    chosen_by: Option<&'static str>,
}

impl MigrationsDir {
    fn chosen(
        flag_value: Option<&PathBuf>,
        configured: &Path,
        default: &str,
        flag: &'static str,
    ) -> MigrationsDir {
        match flag_value {
            Some(path) => MigrationsDir {
                path: path.clone(),
                chosen_by: Some(flag),
            },
            None => MigrationsDir {
                path: configured.to_path_buf(),
                chosen_by: (configured != Path::new(default)).then_some("dbkeeper.toml"),
            },
        }
    }
}

/// Reads every selected engine's migrations. A directory the user named must exist; a default
/// directory that is missing means that engine has no migrations and is left out (a project
/// with a MongoDB URL only for backups), unless no engine has a directory at all, which is
/// almost always the wrong working directory. Without `files_needed` a missing default
/// directory is simply no files.
fn load_all(
    engines: &[Engine],
    pg_dir: &MigrationsDir,
    mongo_dir: &MigrationsDir,
    files_needed: bool,
) -> Result<Vec<(Engine, Vec<Migration>)>> {
    let mut loaded = Vec::new();
    let mut missing = Vec::new();
    for &engine in engines {
        let dir = match engine {
            Engine::Postgres => pg_dir,
            Engine::Mongo => mongo_dir,
        };
        if dir.path.is_file() {
            return Err(Error::Usage(format!(
                "migrations directory {} is a file, not a directory; pass the directory holding \
                 the V{{n}}__{{name}} files",
                dir.path.display()
            )));
        }
        if !dir.path.exists() {
            if let Some(source) = dir.chosen_by {
                return Err(Error::Usage(format!(
                    "{engine} migrations directory {} (from {source}) does not exist; check the \
                     path, or create the first migration with `dbkeeper migrate new NAME --engine \
                     {}`",
                    dir.path.display(),
                    engine.as_str()
                )));
            }
            if files_needed {
                missing.push(dir.path.display().to_string());
            } else {
                loaded.push((engine, Vec::new()));
            }
            continue;
        }
        let files = match engine {
            Engine::Postgres => postgres::migrate::load_migrations(&dir.path)?,
            Engine::Mongo => mongo::migrate::load_migrations(&dir.path)?,
        };
        loaded.push((engine, files));
    }
    if loaded.is_empty() && !missing.is_empty() {
        return Err(Error::Usage(format!(
            "no migrations directory here: {} not found in {}; run dbkeeper from the project \
             directory or pass --migrations-dir / --mongo-migrations-dir",
            missing.join(" and "),
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| ".".into())
        )));
    }
    for path in &missing {
        tracing::info!("{path} does not exist: no migrations for that engine");
    }
    Ok(loaded)
}

/// Repeatable migrations exist for PostgreSQL (MongoDB's loader refuses `R__` files).
fn load_repeatables(engines: &[Engine], pg_dir: &Path) -> Result<Vec<(Engine, Vec<Repeatable>)>> {
    engines
        .iter()
        .map(|&engine| {
            let found = match engine {
                Engine::Postgres => postgres::migrate::load_repeatables(pg_dir)?,
                Engine::Mongo => Vec::new(),
            };
            Ok((engine, found))
        })
        .collect()
}

#[derive(Serialize)]
struct StatusReport {
    engine: Engine,
    target: String,
    directory: PathBuf,
    migrations: Vec<StatusEntry>,
    /// `R__` migrations: applied, pending, changed (applied again by the next `up`), removed.
    repeatables: Vec<RepeatableStatus>,
    pending: usize,
    problems: usize,
}

async fn status(
    ctx: &Context<'_>,
    out: Output,
    exit_on_findings: bool,
    validate: bool,
) -> Result<ExitCode> {
    let mut reports = Vec::new();
    for &engine in &ctx.engines {
        let files = ctx.files(engine);
        let (target, mut migrator) = ctx.open(engine).await?;
        let history = migrator.read_history().await?;
        let migrations = core::compare(files, &history);
        let recorded = migrator.read_repeatables().await?;
        let repeatables = repeatable::compare(ctx.repeatables(engine), &recorded);
        reports.push(StatusReport {
            engine,
            target,
            directory: ctx.dir(engine).to_path_buf(),
            pending: migrations
                .iter()
                .filter(|m| m.status == StatusKind::Pending)
                .count()
                + repeatables.iter().filter(|r| r.is_pending()).count(),
            problems: migrations.iter().filter(|m| m.is_drift()).count(),
            migrations,
            repeatables,
        });
    }
    let findings = reports
        .iter()
        .map(|r| {
            if validate {
                r.problems
            } else {
                r.problems + r.pending
            }
        })
        .sum::<usize>();
    out.emit(&serde_json::json!({ "engines": &reports }), || {
        for r in &reports {
            println!(
                "{} {} (files in {})",
                r.engine,
                r.target,
                r.directory.display()
            );
            let shown = r.migrations.iter().filter(|m| !validate || m.is_drift());
            for m in shown {
                let when = m.applied_on.as_deref().unwrap_or("");
                println!(
                    "  {:<10} {:<40} {}",
                    format!("{:?}", m.status).to_lowercase(),
                    m.label(),
                    when
                );
                if let Some(detail) = &m.detail {
                    println!("             {detail}");
                }
            }
            for rep in r.repeatables.iter().filter(|_| !validate) {
                println!(
                    "  {:<10} {:<40} {}",
                    format!("{:?}", rep.status).to_lowercase(),
                    rep.label(),
                    rep.applied_on.as_deref().unwrap_or("")
                );
            }
            if validate {
                match r.problems {
                    0 => println!("  ok: every applied migration matches its file"),
                    n => println!("  {n} problem(s); see `dbkeeper migrate repair --help`"),
                }
            } else if r.migrations.is_empty() && r.repeatables.is_empty() {
                println!("  no migrations");
            } else {
                println!(
                    "  {} applied, {} pending, {} problem(s)",
                    r.migrations.len() + r.repeatables.len() - r.pending - r.problems,
                    r.pending,
                    r.problems
                );
            }
        }
    })?;
    Ok(if exit_on_findings && findings > 0 {
        ExitCode::CheckFailed
    } else {
        ExitCode::Ok
    })
}

/// What `up` or `down` asks of each engine.
#[derive(Clone, Copy)]
enum Move {
    Up {
        to: Option<i64>,
    },
    Down {
        steps: Option<usize>,
        to: Option<i64>,
    },
}

/// One engine's part of an `up`/`down`: what ran, and what is left, so a pipeline can act on a
/// run that stopped part-way.
#[derive(Serialize)]
struct EngineRun {
    #[serde(flatten)]
    report: RunReport,
    /// `done`, `failed`, or `not_started` (an earlier engine failed, or the checks before the
    /// run did).
    outcome: Outcome,
    /// Planned migrations this run did not complete (the failed one first). `null` when the
    /// engine could not be checked (unreachable), so its plan is unknown.
    pending: Option<Vec<Planned>>,
    /// Why the engine failed when no single migration did (connection, lock timeout, a refused
    /// plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Done,
    Failed,
    NotStarted,
}

#[derive(Clone, Serialize)]
struct Planned {
    version: i64,
    name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    repeatable: bool,
}

impl Planned {
    fn label(&self) -> String {
        runner::step_label(self.version, &self.name, self.repeatable)
    }
}

impl EngineRun {
    fn not_started(engine: Engine, movement: Move, dry_run: bool) -> EngineRun {
        EngineRun {
            report: RunReport {
                engine,
                direction: movement.direction(),
                dry_run,
                steps: Vec::new(),
                failure: None,
            },
            outcome: Outcome::NotStarted,
            pending: None,
            error: None,
        }
    }
}

impl Move {
    fn direction(self) -> runner::Direction {
        match self {
            Move::Up { .. } => runner::Direction::Up,
            Move::Down { .. } => runner::Direction::Down,
        }
    }

    /// Runs the move on one engine (a dry run only plans it: reads history, writes nothing).
    async fn run(
        self,
        migrator: &mut dyn MigrationEngine,
        files: (&[Migration], &[Repeatable]),
        dry_run: bool,
        lock_timeout: Duration,
        run: &RunInfo,
    ) -> Result<RunReport> {
        let (files, repeatables) = files;
        match self {
            Move::Up { to } => {
                runner::up(migrator, files, repeatables, to, dry_run, lock_timeout, run).await
            }
            Move::Down { steps, to } => {
                runner::down(migrator, files, steps, to, dry_run, lock_timeout, run).await
            }
        }
    }
}

impl Move {
    /// Plans the move on one engine without changing it. Read without the lock, a concurrent
    /// runner's migration in progress looks dirty: a refused plan is read again holding the
    /// lock (waiting for that runner, as the run itself would), and only then refuses.
    async fn check(
        self,
        migrator: &mut dyn MigrationEngine,
        files: (&[Migration], &[Repeatable]),
        lock_timeout: Duration,
        run: &RunInfo,
    ) -> Result<RunReport> {
        match self.run(migrator, files, true, lock_timeout, run).await {
            Err(Error::Refused(_)) => {
                migrator.lock(lock_timeout).await?;
                let again = self.run(migrator, files, true, lock_timeout, run).await;
                let unlocked = migrator.unlock().await;
                let plan = again?;
                unlocked.map(|()| plan)
            }
            other => other,
        }
    }
}

/// Opens every selected engine before any of them is changed: an unreachable MongoDB must be
/// found before the PostgreSQL migrations are applied, not after.
async fn open_all(ctx: &Context<'_>) -> Result<Vec<(Engine, Box<dyn MigrationEngine>)>> {
    let mut opened = Vec::new();
    for &engine in &ctx.engines {
        let (_, migrator) = ctx.open(engine).await?;
        opened.push((engine, migrator));
    }
    Ok(opened)
}

/// Runs `up` or `down` on each engine in turn. First every engine is connected to and its plan
/// worked out from its history (dirty state, drift, missing down scripts, a bad `--to` all
/// refuse here), so nothing is applied anywhere unless every engine can go. An engine that
/// still fails part-way stops the run; the report says per engine what ran and what is left.
async fn run_moves(
    ctx: &Context<'_>,
    out: Output,
    movement: Move,
    dry_run: bool,
    backup: Option<PathBuf>,
) -> Result<ExitCode> {
    let run = RunInfo::current();
    let mut runs: Vec<EngineRun> = ctx
        .engines
        .iter()
        .map(|&engine| EngineRun::not_started(engine, movement, dry_run))
        .collect();

    let (mut migrators, mut plans) = (Vec::new(), Vec::new());
    for (i, &engine) in ctx.engines.iter().enumerate() {
        let checked = async {
            let (_, mut migrator) = ctx.open(engine).await?;
            let files = (ctx.files(engine), ctx.repeatables(engine));
            let plan = movement.check(migrator.as_mut(), files, ctx.lock_timeout, &run);
            let plan = plan.await?;
            Ok::<_, Error>((migrator, plan))
        }
        .await;
        match checked {
            Ok((migrator, plan)) => {
                runs[i].pending = Some(planned(&plan));
                plans.push(plan);
                migrators.push(migrator);
            }
            Err(e) => {
                runs[i].error = Some(e.to_string());
                eprintln!(
                    "dbkeeper: checking {engine} before migrating failed; nothing was run on any \
                     engine"
                );
                print_runs(out, &runs, backup)?;
                return Err(e);
            }
        }
    }
    if dry_run {
        // Only now: a dry run whose second engine is unreachable shows no plan as "done".
        for (entry, plan) in runs.iter_mut().zip(plans) {
            entry.report = plan;
            entry.outcome = Outcome::Done;
        }
        return print_runs(out, &runs, backup);
    }

    let mut engine_error = None;
    for (i, mut migrator) in migrators.into_iter().enumerate() {
        let engine = ctx.engines[i];
        let result = movement
            .run(
                migrator.as_mut(),
                (ctx.files(engine), ctx.repeatables(engine)),
                false,
                ctx.lock_timeout,
                &run,
            )
            .await;
        let entry = &mut runs[i];
        match result {
            Ok(report) => {
                let done: Vec<String> = report.steps.iter().map(|s| s.label()).collect();
                if let Some(pending) = entry.pending.as_mut() {
                    pending.retain(|p| !done.contains(&p.label()));
                }
                if report.failure.is_none() {
                    // The plan was read before the lock; what counts is what ran under it.
                    entry.pending = Some(Vec::new());
                }
                entry.outcome = if report.failure.is_some() {
                    Outcome::Failed
                } else {
                    Outcome::Done
                };
                entry.report = report;
            }
            Err(e) => {
                entry.outcome = Outcome::Failed;
                entry.error = Some(e.to_string());
                engine_error = Some(e);
            }
        }
        if entry.outcome == Outcome::Failed {
            break;
        }
    }
    let code = print_runs(out, &runs, backup)?;
    match engine_error {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

fn planned(plan: &RunReport) -> Vec<Planned> {
    plan.steps
        .iter()
        .map(|s| Planned {
            version: s.version,
            name: s.name.clone(),
            repeatable: s.repeatable,
        })
        .collect()
}

/// The command that undoes this run with the `--backup-first` archive: it restores only the
/// engines this run changed (a failed step may have left part of its work on MongoDB), so the
/// other engine keeps the writes made since the backup. `None` when nothing changed.
fn undo_command(backup: &Path, runs: &[EngineRun]) -> Option<String> {
    let changed: Vec<Engine> = runs
        .iter()
        .filter(|r| !r.report.dry_run)
        .filter(|r| !r.report.steps.is_empty() || r.report.failure.is_some())
        .map(|r| r.report.engine)
        .collect();
    let engine = match changed.as_slice() {
        [] => return None,
        [only] => format!(" --engine {}", only.as_str()),
        _ => String::new(),
    };
    Some(format!(
        "dbkeeper restore {} --mode replace --overwrite-source{engine}",
        backup.display()
    ))
}

/// `backup`: the archive `--backup-first` took, reported with the runs and the command that
/// undoes them.
fn print_runs(out: Output, runs: &[EngineRun], backup: Option<PathBuf>) -> Result<ExitCode> {
    let mut json = serde_json::json!({ "runs": runs });
    if let Some(path) = &backup {
        json["backup_first"] = serde_json::json!(path);
        let undo = undo_command(path, runs);
        match &undo {
            Some(command) => eprintln!("undo with `{command}`"),
            None => eprintln!(
                "nothing was migrated; the backup {} is not needed to undo anything",
                path.display()
            ),
        }
        json["undo"] = serde_json::json!(undo);
    }
    let stopped = runs.iter().any(|r| r.outcome != Outcome::Done);
    out.emit(&json, || {
        for r in runs.iter().map(|r| &r.report) {
            let verb = match (r.direction, r.dry_run) {
                (runner::Direction::Up, false) => "applied",
                (runner::Direction::Up, true) => "would apply",
                (runner::Direction::Down, false) => "reverted",
                (runner::Direction::Down, true) => "would revert",
            };
            if r.steps.is_empty() && r.failure.is_none() && !stopped {
                println!("{}: nothing to do", r.engine);
            }
            for s in &r.steps {
                if r.dry_run {
                    println!(
                        "{}: {verb} {}{}",
                        r.engine,
                        s.label(),
                        if s.no_transaction {
                            " (no transaction)"
                        } else {
                            ""
                        }
                    );
                    if let Some(script) = &s.script {
                        for line in script.lines() {
                            println!("    {line}");
                        }
                    }
                } else {
                    println!("{}: {verb} {} in {} ms", r.engine, s.label(), s.duration_ms);
                }
            }
        }
        if stopped {
            for r in runs {
                println!("{}", summary(r));
            }
        }
    })?;
    // On stderr in both output modes: a pipeline reading --json still logs why it failed.
    for f in runs.iter().filter_map(|r| r.report.failure.as_ref()) {
        // The message starts with the engine's name already.
        eprintln!(
            "dbkeeper: error: {} failed: {}",
            runner::step_label(f.version, &f.name, f.repeatable),
            f.message
        );
    }
    Ok(runs
        .iter()
        .map(|r| r.report.exit_code())
        .find(|c| *c != ExitCode::Ok)
        .unwrap_or(ExitCode::Ok))
}

/// One line per engine of a run that stopped: what it did and what is left.
fn summary(run: &EngineRun) -> String {
    let r = &run.report;
    let verb = match r.direction {
        runner::Direction::Up => "applied",
        runner::Direction::Down => "reverted",
    };
    let done = match r.steps.len() {
        0 => format!("{verb} nothing"),
        n => format!(
            "{verb} {n} ({})",
            r.steps
                .iter()
                .map(|s| s.label())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let state = match run.outcome {
        Outcome::Done => "done".to_string(),
        Outcome::Failed => "FAILED".to_string(),
        Outcome::NotStarted => "not started".to_string(),
    };
    let left = match &run.pending {
        None => "left: unknown (its plan was not read)".to_string(),
        Some(p) if p.is_empty() => "nothing left".to_string(),
        Some(p) => format!(
            "left: {}",
            p.iter().map(Planned::label).collect::<Vec<_>>().join(", ")
        ),
    };
    format!("{}: {state}; {done}; {left}", r.engine)
}

fn new(ctx: &Context<'_>, out: Output, name: &str) -> Result<ExitCode> {
    let engine = ctx.engines[0];
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(Error::Usage(format!(
            "migrate new: name `{name}` must be letters, digits and underscores (e.g. add_orders)"
        )));
    }
    let dir = ctx.dir(engine);
    let (ext, (up_text, down_text)) = match engine {
        Engine::Postgres => (
            postgres::migrate::FILE_EXTENSION,
            postgres::migrate::new_migration_template(name),
        ),
        Engine::Mongo => (
            mongo::migrate::FILE_EXTENSION,
            mongo::migrate::new_migration_template(name),
        ),
    };
    let version = core::next_version(&core::discover(dir, ext)?);
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let up_path = dir.join(format!("V{version}__{name}.{ext}"));
    let down_path = dir.join(format!("V{version}__{name}.down.{ext}"));
    for (path, text) in [(&up_path, up_text), (&down_path, down_text)] {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    let report = serde_json::json!({ "engine": engine, "version": version, "up": up_path, "down": down_path });
    out.emit(&report, || {
        println!("created {}", up_path.display());
        println!("created {}", down_path.display());
    })?;
    Ok(ExitCode::Ok)
}

async fn baseline(ctx: &Context<'_>, out: Output, version: i64) -> Result<ExitCode> {
    let run = RunInfo::current();
    let mut results = Vec::new();
    let mut opened = open_all(ctx).await?;
    for (engine, migrator) in &mut opened {
        let history = migrator.read_history().await?;
        runner::check_baseline(ctx.files(*engine), &history, version)?;
    }
    for (engine, mut migrator) in opened {
        let files = ctx.files(engine);
        let recorded =
            runner::baseline(migrator.as_mut(), files, version, ctx.lock_timeout, &run).await?;
        results.push((engine, recorded));
    }
    let json: Vec<_> = results
        .iter()
        .map(|(engine, rec)| {
            serde_json::json!({
                "engine": engine,
                "recorded": rec.iter().map(|(v, n)| serde_json::json!({"version": v, "name": n})).collect::<Vec<_>>(),
            })
        })
        .collect();
    out.emit(&serde_json::json!({ "baselines": json }), || {
        for (engine, rec) in &results {
            for (v, n) in rec {
                println!("{engine}: recorded V{v}__{n} as applied (not run)");
            }
        }
    })?;
    Ok(ExitCode::Ok)
}

async fn repair(
    ctx: &Context<'_>,
    out: Output,
    dirty: Option<DirtyResolution>,
    dry_run: bool,
) -> Result<ExitCode> {
    let run = RunInfo::current();
    let mut results: Vec<(Engine, Vec<RepairAction>)> = Vec::new();
    let mut opened = open_all(ctx).await?;
    // Every engine's repair is planned (read-only) before any is carried out: a dirty MongoDB
    // migration without `--dirty` must not be found after PostgreSQL's history was rewritten.
    for (engine, migrator) in &mut opened {
        runner::repair(
            migrator.as_mut(),
            ctx.files(*engine),
            dirty,
            true,
            ctx.lock_timeout,
            &run,
        )
        .await?;
    }
    for (engine, mut migrator) in opened {
        let files = ctx.files(engine);
        let actions = runner::repair(
            migrator.as_mut(),
            files,
            dirty,
            dry_run,
            ctx.lock_timeout,
            &run,
        )
        .await?;
        results.push((engine, actions));
    }
    let json: Vec<_> = results
        .iter()
        .map(|(engine, actions)| serde_json::json!({ "engine": engine, "dry_run": dry_run, "actions": actions }))
        .collect();
    out.emit(&serde_json::json!({ "repairs": json }), || {
        let verb = if dry_run { "would " } else { "" };
        for (engine, actions) in &results {
            if actions.is_empty() {
                println!("{engine}: nothing to repair");
            }
            for a in actions {
                match a {
                    RepairAction::UpdateChecksum { version, name, old_checksum, new_checksum, .. } => println!(
                        "{engine}: {verb}record V{version}__{name} checksum {new_checksum} (was {old_checksum})"
                    ),
                    RepairAction::MarkApplied { version, name } => {
                        println!("{engine}: {verb}mark dirty V{version}__{name} as applied")
                    }
                    RepairAction::ForgetDirty { version, name } => println!(
                        "{engine}: {verb}forget dirty V{version}__{name} (the next `up` runs it again)"
                    ),
                }
            }
        }
    })?;
    Ok(ExitCode::Ok)
}
