//! `dbkeeper restore ARCHIVE`: check the archive completely, then restore it into the database
//! named by `--pg-url` (created if absent), then verify row counts.

use std::sync::Arc;

use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::postgres::restore::{self as pg_restore, ExistingTarget, RestoreOptions};
use dbkeeper::postgres::PgTarget;
use dbkeeper::ExitCode;

use super::args::{RestoreArgs, RestoreMode};
use super::output::human_bytes;
use super::output::Output;

pub async fn run(args: RestoreArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    if args.deep {
        return Err(Error::NotImplemented("restore --deep"));
    }
    let jobs = args.jobs.unwrap_or(settings.jobs);
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    // V0 before anything touches a database.
    let path = args.archive.clone();
    let archive = tokio::task::spawn_blocking(move || VerifiedArchive::open(&path))
        .await
        .map_err(|e| Error::io("verifying the archive", std::io::Error::other(e)))??;
    let archive = Arc::new(archive);
    if pg_restore::archive_meta(&archive)?.is_none() {
        return Err(Error::NotImplemented("restore of MongoDB archives"));
    }
    let url = settings.require_pg()?;
    let target = PgTarget::new(url, settings.connect_timeout)?;
    let options = RestoreOptions {
        jobs,
        existing: match args.mode {
            RestoreMode::Create => ExistingTarget::Refuse,
            RestoreMode::Replace => ExistingTarget::Replace,
        },
        keep_owner: args.keep_owner,
        keep_privileges: args.keep_privileges,
        verify: !args.no_verify,
    };
    let report = pg_restore::restore(archive.clone(), &target, &options).await?;
    let mismatches = report
        .verify
        .as_ref()
        .map(|v| v.mismatches.clone())
        .unwrap_or_default();
    out.emit(&report, || {
        let verified = match &report.verify {
            Some(v) if v.mismatches.is_empty() => {
                format!(", counts verified ({} tables)", v.tables_checked)
            }
            Some(v) => format!(", {} COUNT MISMATCHES", v.mismatches.len()),
            None => ", not verified".to_string(),
        };
        let skipped = report.skipped_owner_statements + report.skipped_privilege_statements;
        let skipped = if skipped > 0 {
            format!(
                "; skipped {} owner and {} privilege statements (--keep-owner/--keep-privileges \
                 to apply them)",
                report.skipped_owner_statements, report.skipped_privilege_statements
            )
        } else {
            String::new()
        };
        println!(
            "restore: {} tables, {} rows ({}) into {} ({}){verified}{skipped}",
            report.tables,
            report.rows,
            human_bytes(report.raw_bytes),
            report.target,
            report.database_action,
        );
        for m in &mismatches {
            println!(
                "  mismatch: {} has {} rows, the archive has {}",
                m.table, m.actual, m.expected
            );
        }
    })?;
    if !mismatches.is_empty() {
        return Err(Error::CheckFailed(format!(
            "{} table(s) do not have the archived row count",
            mismatches.len()
        )));
    }
    Ok(ExitCode::Ok)
}
