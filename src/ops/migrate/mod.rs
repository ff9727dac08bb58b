//! `migrate ...`: one function per subcommand, the same for every engine.
//!
//! The engine-specific parts come from the registry ([`crate::engine`]): how files are read
//! ([`crate::engine::MigrationFiles`]) and which [`MigrationEngine`] is opened. Everything else
//! goes through [`crate::migrate`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::Settings;
use crate::engine;
use crate::error::{Error, Result};
use crate::migrate::repeatable::{self, RepeatableStatus};
use crate::migrate::runner::{self, DirtyResolution, RepairAction, RunReport};
use crate::migrate::{
    self as core, Migration, MigrationEngine, Repeatable, RunInfo, StatusEntry, StatusKind,
};
use crate::Engine;

pub mod lint;
pub mod roundtrip;

/// Which subcommand a [`Context`] is for: what it reads before any database is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `new`: picks one engine, reads no files.
    New,
    /// `lint`: reads files only; without a database it lints every engine's directory.
    Lint,
    /// `down`: runs the scripts captured at apply time, so the files may be missing.
    Down,
    /// Everything else: reads every engine's files first.
    Other,
}

/// The command line's choice of engines and directories.
#[derive(Debug, Clone)]
pub struct Scope {
    pub purpose: Purpose,
    /// `--engine`: only this one.
    pub engine: Option<Engine>,
    pub lock_timeout: Option<Duration>,
    pub migrations_dir: Option<PathBuf>,
    pub mongo_migrations_dir: Option<PathBuf>,
}

/// The engines a migrate command acts on, and where their files are.
pub struct Context<'a> {
    pub settings: &'a Settings,
    /// The engines acted on, in registry order.
    pub engines: Vec<Engine>,
    pub lock_timeout: Duration,
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
    pub fn new(args: &Scope, settings: &'a Settings) -> Result<Context<'a>> {
        let engines = match args.engine {
            Some(engine) => vec![engine],
            None => {
                let mut e = engine::configured_engines(settings);
                if e.is_empty() && args.purpose == Purpose::Lint {
                    // Linting reads files only: CI can run it without any database.
                    e = engine::REGISTRY.iter().map(|r| r.engine).collect();
                }
                if e.is_empty() {
                    if args.purpose == Purpose::New {
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
        if args.purpose == Purpose::New && engines.len() > 1 {
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
            lock_timeout: args.lock_timeout.unwrap_or(settings.lock_timeout),
            pg_dir: pg_dir.path.clone(),
            mongo_dir: mongo_dir.path.clone(),
            files: Vec::new(),
            repeatables: Vec::new(),
        };
        if args.purpose != Purpose::New {
            // `down` runs the scripts captured at apply time: it works without the files (an
            // operator's machine without the repository).
            let files_needed = args.purpose != Purpose::Down;
            ctx.files = load_all(&ctx.engines, &pg_dir, &mongo_dir, files_needed)?;
            ctx.engines = ctx.files.iter().map(|(engine, _)| *engine).collect();
            ctx.repeatables = load_repeatables(&ctx.engines, &pg_dir, &mongo_dir)?;
        }
        Ok(ctx)
    }

    pub fn dir(&self, engine: Engine) -> &Path {
        match engine {
            Engine::Postgres => &self.pg_dir,
            Engine::Mongo => &self.mongo_dir,
        }
    }

    /// The engine's migration files, as read when the command started.
    pub fn files(&self, engine: Engine) -> &[Migration] {
        self.files
            .iter()
            .find(|(e, _)| *e == engine)
            .map(|(_, files)| files.as_slice())
            .unwrap_or_default()
    }

    /// The engine's repeatable migrations, as read when the command started.
    pub fn repeatables(&self, engine: Engine) -> &[Repeatable] {
        self.repeatables
            .iter()
            .find(|(e, _)| *e == engine)
            .map(|(_, r)| r.as_slice())
            .unwrap_or_default()
    }

    /// Connects to `engine`'s configured database: its description and its migrator.
    pub async fn open(&self, engine: Engine) -> Result<(String, Box<dyn MigrationEngine>)> {
        let database = engine::open(engine, self.settings)?;
        Ok((database.describe(), database.migrator().await?))
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
        let files = engine::migration_files(engine).load(&dir.path)?;
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

/// Each engine's repeatable (`R__`) migrations.
fn load_repeatables(
    engines: &[Engine],
    pg_dir: &MigrationsDir,
    mongo_dir: &MigrationsDir,
) -> Result<Vec<(Engine, Vec<Repeatable>)>> {
    engines
        .iter()
        .map(|&engine| {
            let dir = match engine {
                Engine::Postgres => pg_dir,
                Engine::Mongo => mongo_dir,
            };
            let found = engine::migration_files(engine).load_repeatables(&dir.path)?;
            Ok((engine, found))
        })
        .collect()
}

#[derive(Serialize)]
pub struct StatusReport {
    pub engine: Engine,
    pub target: String,
    pub directory: PathBuf,
    pub migrations: Vec<StatusEntry>,
    /// `R__` migrations: applied, pending, changed (applied again by the next `up`), removed.
    pub repeatables: Vec<RepeatableStatus>,
    pub pending: usize,
    pub problems: usize,
}

/// Each engine's migrations compared with its history (`status`, `validate`).
pub async fn status(ctx: &Context<'_>) -> Result<Vec<StatusReport>> {
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
    Ok(reports)
}

/// What `up` or `down` asks of each engine.
#[derive(Clone, Copy)]
pub enum Move {
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
pub struct EngineRun {
    #[serde(flatten)]
    pub report: RunReport,
    /// `done`, `failed`, or `not_started` (an earlier engine failed, or the checks before the
    /// run did).
    pub outcome: Outcome,
    /// Planned migrations this run did not complete (the failed one first). `null` when the
    /// engine could not be checked (unreachable), so its plan is unknown.
    pub pending: Option<Vec<Planned>>,
    /// Why the engine failed when no single migration did (connection, lock timeout, a refused
    /// plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Failed,
    NotStarted,
}

#[derive(Clone, Serialize)]
pub struct Planned {
    pub version: i64,
    pub name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeatable: bool,
}

impl Planned {
    pub fn label(&self) -> String {
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

/// What `up`/`down` did on each engine, and the error that stopped it.
pub struct Moved {
    pub runs: Vec<EngineRun>,
    pub error: Option<Error>,
    /// The engine whose check before the run failed: nothing was run anywhere.
    pub refused_by: Option<Engine>,
}

/// Runs `up` or `down` on each engine in turn. First every engine is connected to and its plan
/// worked out from its history (dirty state, drift, missing down scripts, a bad `--to` all
/// refuse here), so nothing is applied anywhere unless every engine can go. An engine that
/// still fails part-way stops the run; the report says per engine what ran and what is left.
pub async fn run_moves(ctx: &Context<'_>, movement: Move, dry_run: bool) -> Moved {
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
                return Moved {
                    runs,
                    error: Some(e),
                    refused_by: Some(engine),
                };
            }
        }
    }
    if dry_run {
        // Only now: a dry run whose second engine is unreachable shows no plan as "done".
        for (entry, plan) in runs.iter_mut().zip(plans) {
            entry.report = plan;
            entry.outcome = Outcome::Done;
        }
        return Moved {
            runs,
            error: None,
            refused_by: None,
        };
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
    Moved {
        runs,
        error: engine_error,
        refused_by: None,
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
pub fn undo_command(backup: &Path, runs: &[EngineRun]) -> Option<String> {
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

/// `migrate new NAME`: the next version's up and down files, from the engine's template.
pub fn new(ctx: &Context<'_>, name: &str) -> Result<NewFiles> {
    let engine = ctx.engines[0];
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(Error::Usage(format!(
            "migrate new: name `{name}` must be letters, digits and underscores (e.g. add_orders)"
        )));
    }
    let dir = ctx.dir(engine);
    let files = engine::migration_files(engine);
    let (ext, (up_text, down_text)) = (files.extension(), files.template(name));
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
    Ok(NewFiles {
        engine,
        version,
        up: up_path,
        down: down_path,
    })
}

/// The files `migrate new` created.
#[derive(Serialize)]
pub struct NewFiles {
    pub engine: Engine,
    pub version: i64,
    pub up: PathBuf,
    pub down: PathBuf,
}

/// `migrate baseline VERSION`: records every migration up to `version` as applied without
/// running it, on every engine (all checked first). Returns what each engine recorded.
pub async fn baseline(
    ctx: &Context<'_>,
    version: i64,
) -> Result<Vec<(Engine, Vec<(i64, String)>)>> {
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
    Ok(results)
}

/// `migrate repair`: realigns history with the files (checksums, a dirty migration resolved
/// as `dirty` says), planned on every engine before any is changed.
pub async fn repair(
    ctx: &Context<'_>,
    dirty: Option<DirtyResolution>,
    dry_run: bool,
) -> Result<Vec<(Engine, Vec<RepairAction>)>> {
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
    Ok(results)
}
