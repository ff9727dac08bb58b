//! `dbkeeper migrate ...`: one verb function per subcommand, the same for both engines.
//!
//! The engine-specific parts are exactly two: how files are loaded (SQL vs JSON) and which
//! [`MigrationEngine`] is opened. Everything else goes through `dbkeeper::migrate`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::migrate::runner::{self, DirtyResolution, RepairAction, RunReport};
use dbkeeper::migrate::{
    self as core, Migration, MigrationEngine, RunInfo, StatusEntry, StatusKind,
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
                eprintln!(
                    "backup before migrating: {} (verified; undo with `dbkeeper restore {} \
                     --mode replace --overwrite-source`)",
                    archive.display(),
                    archive.display()
                );
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
        };
        if !matches!(args.command, MigrateCommand::New { .. }) {
            // `down` runs the scripts captured at apply time: it works without the files (an
            // operator's machine without the repository).
            let files_needed = !matches!(args.command, MigrateCommand::Down { .. });
            ctx.files = load_all(&ctx.engines, &pg_dir, &mongo_dir, files_needed)?;
            ctx.engines = ctx.files.iter().map(|(engine, _)| *engine).collect();
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

#[derive(Serialize)]
struct StatusReport {
    engine: Engine,
    target: String,
    directory: PathBuf,
    migrations: Vec<StatusEntry>,
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
        reports.push(StatusReport {
            engine,
            target,
            directory: ctx.dir(engine).to_path_buf(),
            pending: migrations
                .iter()
                .filter(|m| m.status == StatusKind::Pending)
                .count(),
            problems: migrations.iter().filter(|m| m.is_drift()).count(),
            migrations,
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
            if validate {
                match r.problems {
                    0 => println!("  ok: every applied migration matches its file"),
                    n => println!("  {n} problem(s); see `dbkeeper migrate repair --help`"),
                }
            } else if r.migrations.is_empty() {
                println!("  no migrations");
            } else {
                println!(
                    "  {} applied, {} pending, {} problem(s)",
                    r.migrations.len() - r.pending - r.problems,
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

/// Runs `up` or `down` on each engine in turn, stopping after the first engine whose run failed.
async fn run_moves(
    ctx: &Context<'_>,
    out: Output,
    movement: Move,
    dry_run: bool,
    backup: Option<PathBuf>,
) -> Result<ExitCode> {
    let run = RunInfo::current();
    let mut reports = Vec::new();
    for &engine in &ctx.engines {
        let files = ctx.files(engine);
        let (_, mut migrator) = ctx.open(engine).await?;
        let migrator = migrator.as_mut();
        let (timeout, run) = (ctx.lock_timeout, &run);
        let report = match movement {
            Move::Up { to } => runner::up(migrator, files, to, dry_run, timeout, run).await?,
            Move::Down { steps, to } => {
                runner::down(migrator, files, steps, to, dry_run, timeout, run).await?
            }
        };
        let failed = report.failure.is_some();
        reports.push(report);
        if failed {
            break;
        }
    }
    print_runs(out, &reports, backup)
}

/// `backup`: the archive `--backup-first` took, reported with the runs.
fn print_runs(out: Output, reports: &[RunReport], backup: Option<PathBuf>) -> Result<ExitCode> {
    let mut json = serde_json::json!({ "runs": reports });
    if let Some(path) = &backup {
        json["backup_first"] = serde_json::json!(path);
    }
    out.emit(&json, || {
        for r in reports {
            let verb = match (r.direction, r.dry_run) {
                (runner::Direction::Up, false) => "applied",
                (runner::Direction::Up, true) => "would apply",
                (runner::Direction::Down, false) => "reverted",
                (runner::Direction::Down, true) => "would revert",
            };
            if r.steps.is_empty() && r.failure.is_none() {
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
    })?;
    // On stderr in both output modes: a pipeline reading --json still logs why it failed.
    for f in reports.iter().filter_map(|r| r.failure.as_ref()) {
        // The message starts with the engine's name already.
        eprintln!(
            "dbkeeper: error: V{}__{} failed: {}",
            f.version, f.name, f.message
        );
    }
    Ok(reports
        .iter()
        .map(RunReport::exit_code)
        .find(|c| *c != ExitCode::Ok)
        .unwrap_or(ExitCode::Ok))
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
    for &engine in &ctx.engines {
        let files = ctx.files(engine);
        let (_, mut migrator) = ctx.open(engine).await?;
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
    for &engine in &ctx.engines {
        let files = ctx.files(engine);
        let (_, mut migrator) = ctx.open(engine).await?;
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
