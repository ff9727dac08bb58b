//! `dbkeeper restore ARCHIVE`: the flags into a [`RestoreRequest`], [`ops::restore`], the
//! report as text or JSON; a V2 mismatch exits 1 after the report is printed.

use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::ops::keys::UnlockKeys;
use dbkeeper::ops::restore::{
    self, MongoReport, PgReport, RestoreOutcome, RestoreReport, RestoreRequest,
};
use dbkeeper::verify::TargetCheck;
use dbkeeper::{Engine, ExitCode};

use super::args::{RestoreArgs, RestoreMode};
use super::contents;
use super::output::{count, human_bytes, Output};
use super::verify::print_mismatches;

pub async fn run(args: RestoreArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let report = match restore::restore(&request(args), settings).await? {
        RestoreOutcome::Listed(archive) => return contents::print(&archive, out),
        RestoreOutcome::Restored(report) => report,
    };
    out.emit(&report, || print_human(&report))?;
    match report.mismatches() {
        0 => Ok(ExitCode::Ok),
        mismatches => Err(Error::CheckFailed(format!(
            "the restored database(s) differ from the archive: {mismatches} mismatch(es)"
        ))),
    }
}

fn request(args: RestoreArgs) -> RestoreRequest {
    RestoreRequest {
        archive: args.archive,
        engine: args.engine.map(Engine::from),
        list_only: args.list,
        include: args.include,
        exclude: args.exclude,
        schema_only: args.schema_only,
        data_only: args.data_only,
        replace: args.mode == RestoreMode::Replace,
        no_verify: args.no_verify,
        deep: args.deep,
        jobs: args.jobs,
        keep_owner: args.keep_owner,
        keep_privileges: args.keep_privileges,
        overwrite_source: args.overwrite_source,
        ns_from: args.ns_from,
        ns_to: args.ns_to,
        mask: args.mask,
        keys: UnlockKeys {
            identity: args.keys.identity,
            passphrase_file: args.keys.passphrase_file,
        },
    }
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

fn print_human(report: &RestoreReport) {
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
            "restore: PostgreSQL {}, {} ({}) into {} ({}){}{skipped}",
            count(r.tables as u64, "table"),
            count(r.rows, "row"),
            human_bytes(r.raw_bytes),
            r.target,
            r.database_action,
            verified(verify, "tables"),
        );
        if let Some(check) = verify {
            print_mismatches(&check.mismatches);
            check.warnings.iter().for_each(|w| println!("  note: {w}"));
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
            "restore: MongoDB {}, {}, {} into {}{}{failing}",
            count(m.collections.len() as u64, "collection"),
            count(m.views.len() as u64, "view"),
            count(m.documents, "document"),
            m.database,
            verified(verify, "collections and views"),
        );
        if let Some(check) = verify {
            print_mismatches(&check.mismatches);
            check.warnings.iter().for_each(|w| println!("  note: {w}"));
        }
    }
    for engine in &report.not_restored {
        println!("note: the archive's {engine} data was not restored (no target configured)");
    }
    if let Some(masking) = &report.archive_masking {
        println!(
            "note: the archive is masked (written by backup --mask with {}: {} field(s))",
            masking.rules_file,
            masking.fields.len()
        );
    }
    if let Some(masking) = &report.masking {
        println!(
            "masked with {}: {} column(s) and field(s); content digests {}",
            masking.rules_file,
            masking.fields.len(),
            masking.content_digests
        );
        for field in &masking.fields {
            let via = match &field.inherited_from {
                Some(from) => format!(", same as {from} by foreign key"),
                None => String::new(),
            };
            println!(
                "  {}.{} ({}{via}): {} value(s) changed",
                field.dataset, field.field, field.transform, field.changed
            );
        }
    }
}
