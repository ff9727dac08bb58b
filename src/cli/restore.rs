//! `dbkeeper restore ARCHIVE`: check the archive completely, check every target, then restore
//! each engine the archive holds into its configured target and verify the counts.
//!
//! Nothing is touched before the archive passed V0 and every engine's target passed its
//! preflight (not the source, not non-empty without `--mode replace`): a restore that would be
//! refused for MongoDB must not have already replaced the PostgreSQL database.

use std::sync::Arc;

use serde::Serialize;

use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::mongo::namespace::{renamed, Rename};
use dbkeeper::mongo::progress::NoProgress;
use dbkeeper::mongo::restore::{self as mongo_restore, MongoRestoreReport};
use dbkeeper::mongo::{inspect as mongo_inspect, MongoTarget};
use dbkeeper::postgres::restore::{
    self as pg_restore, CountMismatch, ExistingTarget, RestoreOptions, RestoreReport,
};
use dbkeeper::postgres::PgTarget;
use dbkeeper::progress;
use dbkeeper::{Engine, ExitCode};

use super::args::{RestoreArgs, RestoreMode};
use super::output::{human_bytes, Output};

#[derive(Serialize)]
struct Report {
    archive: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<RestoreReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mongo: Option<MongoReport>,
    /// Engines in the archive that were not restored because no target was configured.
    not_restored: Vec<Engine>,
}

#[derive(Serialize)]
struct MongoReport {
    #[serde(flatten)]
    restore: MongoRestoreReport,
    /// Exact document counts compared with the manifest; `null` with `--no-verify`.
    verify: Option<MongoCountReport>,
}

#[derive(Serialize)]
struct MongoCountReport {
    collections_checked: usize,
    mismatches: Vec<CountMismatch>,
}

pub async fn run(args: RestoreArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    if args.deep {
        return Err(Error::NotImplemented("restore --deep"));
    }
    let jobs = args.jobs.unwrap_or(settings.jobs);
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let renames = renames(&args)?;
    // V0 before anything touches a database.
    let path = args.archive.clone();
    let archive = tokio::task::spawn_blocking(move || VerifiedArchive::open(&path))
        .await
        .map_err(|e| Error::io("verifying the archive", std::io::Error::other(e)))??;
    let archive = Arc::new(archive);
    let manifest = archive.manifest();
    let has = |engine| manifest.source(engine).is_some();

    let pg = match (&settings.pg_url, has(Engine::Postgres)) {
        (Some(url), true) => Some(PgTarget::new(url, settings.connect_timeout)?),
        _ => None,
    };
    let mongo = match (&settings.mongo_url, has(Engine::Mongo)) {
        (Some(url), true) => {
            // Without a database in the URL or --mongo-db, restore under the archived name.
            let db = match &settings.mongo_db {
                Some(db) => db.clone(),
                None => manifest
                    .source(Engine::Mongo)
                    .map(|s| s.database.clone())
                    .unwrap_or_default(),
            };
            Some(MongoTarget::new(url, &db, settings.connect_timeout))
        }
        _ => None,
    };
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
        verify: !args.no_verify,
    };
    let mongo_options = mongo_restore::RestoreOptions {
        jobs,
        mode: match args.mode {
            RestoreMode::Create => mongo_restore::RestoreMode::Create,
            RestoreMode::Replace => mongo_restore::RestoreMode::Replace,
        },
        renames: renames.clone(),
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
    progress::start("restore", Some(records), Some(raw_bytes));
    let restored = restore_engines(
        &archive,
        pg.as_ref(),
        mongo.as_ref(),
        &pg_options,
        &mongo_options,
        &args,
        &renames,
    )
    .await;
    progress::finish();
    let (pg_report, mongo_report) = restored?;

    let report = Report {
        archive: archive.path().display().to_string(),
        postgres: pg_report,
        mongo: mongo_report,
        not_restored,
    };
    let mismatches = report
        .postgres
        .as_ref()
        .and_then(|r| r.verify.as_ref())
        .map(|v| v.mismatches.len())
        .unwrap_or(0)
        + report
            .mongo
            .as_ref()
            .and_then(|r| r.verify.as_ref())
            .map(|v| v.mismatches.len())
            .unwrap_or(0);
    out.emit(&report, || print_human(&report))?;
    if mismatches > 0 {
        return Err(Error::CheckFailed(format!(
            "{mismatches} table(s)/collection(s) do not have the archived count"
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

/// Exact document counts of every restored collection against the manifest.
async fn mongo_counts(
    archive: &VerifiedArchive,
    target: &MongoTarget,
    renames: &[Rename],
) -> Result<MongoCountReport> {
    let db = target.database().await?;
    let counts = mongo_inspect::collection_counts(&db).await?;
    let mut report = MongoCountReport {
        collections_checked: 0,
        mismatches: Vec::new(),
    };
    for dataset in archive.manifest().datasets_of(Engine::Mongo) {
        let name = renamed(renames, &dataset.name);
        let actual = counts.get(&name).copied().unwrap_or(0);
        report.collections_checked += 1;
        if actual != dataset.rows {
            report.mismatches.push(CountMismatch {
                table: format!("{}.{name}", target.db_name()),
                expected: dataset.rows,
                actual,
            });
        }
    }
    Ok(report)
}

fn print_human(report: &Report) {
    if let Some(r) = &report.postgres {
        let verified = match &r.verify {
            Some(v) if v.mismatches.is_empty() => {
                format!(", counts verified ({} tables)", v.tables_checked)
            }
            Some(v) => format!(", {} COUNT MISMATCHES", v.mismatches.len()),
            None => ", not verified".to_string(),
        };
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
            "restore: PostgreSQL {} tables, {} rows ({}) into {} ({}){verified}{skipped}",
            r.tables,
            r.rows,
            human_bytes(r.raw_bytes),
            r.target,
            r.database_action,
        );
        for m in r.verify.iter().flat_map(|v| &v.mismatches) {
            println!(
                "  mismatch: {} has {} rows, the archive has {}",
                m.table, m.actual, m.expected
            );
        }
    }
    if let Some(m) = &report.mongo {
        let verified = match &m.verify {
            Some(v) if v.mismatches.is_empty() => {
                format!(", counts verified ({} collections)", v.collections_checked)
            }
            Some(v) => format!(", {} COUNT MISMATCHES", v.mismatches.len()),
            None => ", not verified".to_string(),
        };
        let failing = match m.restore.documents_failing_validator {
            0 => String::new(),
            n => format!(
                "; {n} document(s) fail their collection's validator (restored as archived)"
            ),
        };
        println!(
            "restore: MongoDB {} collections, {} views, {} documents into {}{verified}{failing}",
            m.restore.collections.len(),
            m.restore.views.len(),
            m.restore.documents,
            m.restore.database,
        );
        for x in m.verify.iter().flat_map(|v| &v.mismatches) {
            println!(
                "  mismatch: {} has {} documents, the archive has {}",
                x.table, x.actual, x.expected
            );
        }
    }
    for engine in &report.not_restored {
        println!("note: the archive's {engine} data was not restored (no target configured)");
    }
}

type Restored = (Option<RestoreReport>, Option<MongoReport>);

/// Restores each engine that has a target, PostgreSQL first.
async fn restore_engines(
    archive: &Arc<VerifiedArchive>,
    pg: Option<&PgTarget>,
    mongo: Option<&MongoTarget>,
    pg_options: &RestoreOptions,
    mongo_options: &mongo_restore::RestoreOptions,
    args: &RestoreArgs,
    renames: &[Rename],
) -> Result<Restored> {
    let pg_report = match pg {
        Some(target) => Some(pg_restore::restore(archive.clone(), target, pg_options).await?),
        None => None,
    };
    let mongo_report = match mongo {
        Some(target) => {
            let restore = mongo_restore::restore_database(
                archive,
                target,
                mongo_options,
                Arc::new(NoProgress),
            )
            .await?;
            let verify = if args.no_verify {
                None
            } else {
                Some(mongo_counts(archive, target, renames).await?)
            };
            Some(MongoReport { restore, verify })
        }
        None => None,
    };
    Ok((pg_report, mongo_report))
}
