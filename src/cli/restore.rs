//! `dbkeeper restore ARCHIVE`: check the archive completely, check every target, then restore
//! each engine the archive holds into its configured target and prove the result with V2 (the
//! one implementation `verify` uses): exact counts, sequences, indexes, validators and schema by
//! default, content digests with `--deep`, nothing with `--no-verify`. A mismatch exits 1.
//!
//! Nothing is touched before the archive passed V0 and every engine's target passed its
//! preflight (not the source, not non-empty without `--mode replace`): a restore that would be
//! refused for MongoDB must not have already replaced the PostgreSQL database.

use std::sync::Arc;

use serde::Serialize;

use dbkeeper::archive::catalog;
use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::mongo::namespace::Rename;
use dbkeeper::mongo::restore::{self as mongo_restore, MongoRestoreReport};
use dbkeeper::mongo::MongoTarget;
use dbkeeper::postgres::restore::{
    self as pg_restore, ExistingTarget, RestoreOptions, RestoreReport,
};
use dbkeeper::postgres::PgTarget;
use dbkeeper::progress;
use dbkeeper::verify::TargetCheck;
use dbkeeper::{Engine, ExitCode};

use super::args::{RestoreArgs, RestoreMode};
use super::output::{human_bytes, Output};
use super::targets::{self, TargetOptions};
use super::verify::print_mismatches;

#[derive(Serialize)]
struct Report {
    archive: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<PgReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mongo: Option<MongoReport>,
    /// Engines in the archive that were not restored because no target was configured.
    not_restored: Vec<Engine>,
}

#[derive(Serialize)]
struct PgReport {
    #[serde(flatten)]
    restore: RestoreReport,
    /// V2 against the restored database; `null` with `--no-verify`.
    verify: Option<TargetCheck>,
}

#[derive(Serialize)]
struct MongoReport {
    #[serde(flatten)]
    restore: MongoRestoreReport,
    /// V2 against the restored database; `null` with `--no-verify`.
    verify: Option<TargetCheck>,
}

pub async fn run(args: RestoreArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let jobs = args.jobs.unwrap_or(settings.jobs);
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let renames = renames(&args)?;
    if args.overwrite_source && args.mode != RestoreMode::Replace {
        return Err(Error::Usage(
            "--overwrite-source only makes sense with --mode replace".into(),
        ));
    }
    // V0 (and, encrypted, the key) before anything touches a database.
    let path = args.archive.clone();
    let keys = args.keys.clone();
    let settings_for_keys = settings.clone();
    let archive = tokio::task::spawn_blocking(move || {
        let mut archive = VerifiedArchive::open(&path)?;
        if archive.is_encrypted() {
            match super::keys::unlock(&keys, &settings_for_keys)? {
                Some(unlock) => archive.unlock(&unlock)?,
                None => return Err(dbkeeper::archive::reader::needs_key(&path)),
            }
        }
        Ok(archive)
    })
    .await
    .map_err(|e| Error::io("verifying the archive", std::io::Error::other(e)))??;
    let archive = Arc::new(archive);
    let manifest = archive.manifest();

    let pg = targets::pg_target(settings, manifest)?;
    let mongo = targets::mongo_target(settings, manifest);
    if pg.is_none() && mongo.is_none() {
        let held: Vec<&str> = manifest
            .sources
            .iter()
            .map(|s| s.engine.display_name())
            .collect();
        return Err(Error::Usage(format!(
            "nothing to restore into: archive {} holds {} data; pass the matching --pg-url / \
             --mongo-url (or DBKEEPER_PG_URL / DBKEEPER_MONGO_URL)",
            archive.path().display(),
            held.join(" and ")
        )));
    }
    let not_restored: Vec<Engine> = manifest
        .sources
        .iter()
        .map(|s| s.engine)
        .filter(|e| match e {
            Engine::Postgres => pg.is_none(),
            Engine::Mongo => mongo.is_none(),
        })
        .collect();

    let pg_options = RestoreOptions {
        jobs,
        existing: match args.mode {
            RestoreMode::Create => ExistingTarget::Refuse,
            RestoreMode::Replace => ExistingTarget::Replace,
        },
        keep_owner: args.keep_owner,
        keep_privileges: args.keep_privileges,
        overwrite_source: args.overwrite_source,
    };
    let mongo_options = mongo_restore::RestoreOptions {
        jobs,
        mode: match args.mode {
            RestoreMode::Create => mongo_restore::RestoreMode::Create,
            RestoreMode::Replace => mongo_restore::RestoreMode::Replace,
        },
        renames: renames.clone(),
        overwrite_source: args.overwrite_source,
        ..Default::default()
    };
    if let Some(target) = &pg {
        pg_restore::preflight(&archive, target, &pg_options).await?;
    }
    if let Some(target) = &mongo {
        mongo_restore::preflight(&archive, target, &mongo_options).await?;
    }

    let restored = manifest.datasets.iter().filter(|d| match d.engine {
        Engine::Postgres => pg.is_some(),
        Engine::Mongo => mongo.is_some(),
    });
    let (records, raw_bytes) = restored.fold((0, 0), |(r, b), d| (r + d.rows, b + d.raw_bytes));
    progress::start("restore", progress::Totals::exact(records, raw_bytes));
    let restored = restore_engines(
        &archive,
        pg.as_ref(),
        mongo.as_ref(),
        &pg_options,
        &mongo_options,
    )
    .await;
    progress::finish();
    let (pg_report, mongo_report) = restored?;

    // V2 on what was just restored: the same check `dbkeeper verify --pg-url ...` runs.
    let (mut pg_verify, mut mongo_verify) = (None, None);
    if !args.no_verify {
        let options = TargetOptions {
            jobs,
            deep: args.deep,
            renames,
        };
        for check in
            targets::verify_targets(&archive, pg.as_ref(), mongo.as_ref(), &options).await?
        {
            match check.engine {
                Engine::Postgres => pg_verify = Some(check),
                Engine::Mongo => mongo_verify = Some(check),
            }
        }
    }

    let report = Report {
        archive: archive.path().display().to_string(),
        postgres: pg_report.map(|restore| PgReport {
            restore,
            verify: pg_verify,
        }),
        mongo: mongo_report.map(|restore| MongoReport {
            restore,
            verify: mongo_verify,
        }),
        not_restored,
    };
    let checks: Vec<&TargetCheck> = [
        report.postgres.as_ref().and_then(|r| r.verify.as_ref()),
        report.mongo.as_ref().and_then(|r| r.verify.as_ref()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mismatches: usize = checks.iter().map(|c| c.mismatches.len()).sum();
    if !checks.is_empty() && mismatches == 0 {
        // Remembered for `list`/`prune`; failing to write it changes nothing.
        if let Err(e) = catalog::write_stamp(archive.path(), "restore") {
            tracing::warn!("could not record the verification next to the archive: {e}");
        }
    }
    out.emit(&report, || print_human(&report))?;
    if mismatches > 0 {
        return Err(Error::CheckFailed(format!(
            "the restored database(s) differ from the archive: {mismatches} mismatch(es)"
        )));
    }
    Ok(ExitCode::Ok)
}

fn renames(args: &RestoreArgs) -> Result<Vec<Rename>> {
    if args.ns_from.len() != args.ns_to.len() {
        return Err(Error::Usage(format!(
            "--ns-from and --ns-to come in pairs: got {} --ns-from and {} --ns-to",
            args.ns_from.len(),
            args.ns_to.len()
        )));
    }
    args.ns_from
        .iter()
        .zip(&args.ns_to)
        .map(|(from, to)| Rename::new(from, to))
        .collect()
}

fn verified(check: &Option<TargetCheck>, objects: &str) -> String {
    match check {
        None => ", not verified".to_string(),
        Some(c) if c.is_ok() => format!(
            ", counts {}verified ({} {objects}, {} checks with definitions)",
            if c.deep { "and content " } else { "" },
            c.objects,
            c.checks
        ),
        Some(c) => format!(", VERIFICATION FAILED: {} mismatch(es)", c.mismatches.len()),
    }
}

fn print_human(report: &Report) {
    if let Some(PgReport { restore: r, verify }) = &report.postgres {
        let skipped = r.skipped_owner_statements + r.skipped_privilege_statements;
        let skipped = if skipped > 0 {
            format!(
                "; skipped {} owner and {} privilege statements (--keep-owner/--keep-privileges \
                 to apply them)",
                r.skipped_owner_statements, r.skipped_privilege_statements
            )
        } else {
            String::new()
        };
        println!(
            "restore: PostgreSQL {} tables, {} rows ({}) into {} ({}){}{skipped}",
            r.tables,
            r.rows,
            human_bytes(r.raw_bytes),
            r.target,
            r.database_action,
            verified(verify, "tables"),
        );
        if let Some(check) = verify {
            print_mismatches(&check.mismatches);
        }
    }
    if let Some(MongoReport { restore: m, verify }) = &report.mongo {
        let failing = match m.documents_failing_validator {
            0 => String::new(),
            n => format!(
                "; {n} document(s) fail their collection's validator (restored as archived)"
            ),
        };
        println!(
            "restore: MongoDB {} collections, {} views, {} documents into {}{}{failing}",
            m.collections.len(),
            m.views.len(),
            m.documents,
            m.database,
            verified(verify, "collections and views"),
        );
        if let Some(check) = verify {
            print_mismatches(&check.mismatches);
        }
    }
    for engine in &report.not_restored {
        println!("note: the archive's {engine} data was not restored (no target configured)");
    }
}

type Restored = (Option<RestoreReport>, Option<MongoRestoreReport>);

/// Restores each engine that has a target, PostgreSQL first. (Verification comes after, on
/// everything at once.)
async fn restore_engines(
    archive: &Arc<VerifiedArchive>,
    pg: Option<&PgTarget>,
    mongo: Option<&MongoTarget>,
    pg_options: &RestoreOptions,
    mongo_options: &mongo_restore::RestoreOptions,
) -> Result<Restored> {
    let pg_report = match pg {
        Some(target) => Some(pg_restore::restore(archive.clone(), target, pg_options).await?),
        None => None,
    };
    let mongo_report = match mongo {
        Some(target) => {
            Some(mongo_restore::restore_database(archive, target, mongo_options).await?)
        }
        None => None,
    };
    Ok((pg_report, mongo_report))
}
