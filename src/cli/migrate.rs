//! `dbkeeper migrate ...`: the flags into a [`Scope`], one [`ops::migrate`] function per
//! subcommand, the reports rendered.

use std::path::PathBuf;
use std::time::Duration;

use dbkeeper::config::Settings;
use dbkeeper::error::Result;
use dbkeeper::migrate::runner::{self, DirtyResolution, RepairAction};
use dbkeeper::ops::migrate::{
    self, undo_command, Context, EngineRun, Move, Moved, Outcome, Planned, Purpose, Scope,
};
use dbkeeper::ExitCode;

mod lint;
mod roundtrip;

use super::args::{DirtyArg, MigrateArgs, MigrateCommand};
use super::output::Output;

pub async fn run(args: MigrateArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let ctx = Context::new(&scope(&args), settings)?;
    match args.command {
        MigrateCommand::Status { exit_code } => status(&ctx, out, exit_code, false).await,
        MigrateCommand::Validate => status(&ctx, out, true, true).await,
        MigrateCommand::Up {
            to,
            dry_run,
            backup_first,
        } => {
            migrate::lint::before_up(&ctx, to).await?;
            let backup = if backup_first {
                // Before the lock and before anything is applied: a data-destroying migration
                // can then be undone with `dbkeeper restore`.
                let archive = dbkeeper::ops::backup::verified_backup(settings).await?;
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

fn scope(args: &MigrateArgs) -> Scope {
    Scope {
        purpose: match args.command {
            MigrateCommand::New { .. } => Purpose::New,
            MigrateCommand::Lint => Purpose::Lint,
            MigrateCommand::Down { .. } => Purpose::Down,
            _ => Purpose::Other,
        },
        engine: args.engine.map(dbkeeper::Engine::from),
        lock_timeout: args.lock_timeout.map(Duration::from_secs),
        migrations_dir: args.migrations_dir.clone(),
        mongo_migrations_dir: args.mongo_migrations_dir.clone(),
    }
}

async fn status(
    ctx: &Context<'_>,
    out: Output,
    exit_on_findings: bool,
    validate: bool,
) -> Result<ExitCode> {
    let reports = migrate::status(ctx).await?;
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

/// Runs `up` or `down` and reports per engine what ran and what is left.
async fn run_moves(
    ctx: &Context<'_>,
    out: Output,
    movement: Move,
    dry_run: bool,
    backup: Option<PathBuf>,
) -> Result<ExitCode> {
    let Moved {
        runs,
        error,
        refused_by,
    } = migrate::run_moves(ctx, movement, dry_run).await;
    if let Some(engine) = refused_by {
        eprintln!(
            "dbkeeper: checking {engine} before migrating failed; nothing was run on any engine"
        );
    }
    let code = print_runs(out, &runs, backup)?;
    match error {
        Some(e) => Err(e),
        None => Ok(code),
    }
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
    let created = migrate::new(ctx, name)?;
    out.emit(&created, || {
        println!("created {}", created.up.display());
        println!("created {}", created.down.display());
    })?;
    Ok(ExitCode::Ok)
}

async fn baseline(ctx: &Context<'_>, out: Output, version: i64) -> Result<ExitCode> {
    let results = migrate::baseline(ctx, version).await?;
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
    let results = migrate::repair(ctx, dirty, dry_run).await?;
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
