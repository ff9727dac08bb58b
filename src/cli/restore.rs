//! `dbkeeper restore ARCHIVE`: check the archive completely, check every target, then restore
//! each engine the archive holds into its configured target and prove the result with V2 (the
//! one implementation `verify` uses): exact counts, sequences, indexes, validators and schema by
//! default, content digests with `--deep`, nothing with `--no-verify`. A mismatch exits 1.
//!
//! Nothing is touched before the archive passed V0 and every engine's target passed its
//! preflight (not the source, not non-empty without `--mode replace`): a restore that would be
//! refused for MongoDB must not have already replaced the PostgreSQL database.

use std::io::IsTerminal;
use std::sync::Arc;

use serde::Serialize;

use dbkeeper::archive::manifest::{MaskedField, MaskingRecord};
use dbkeeper::archive::reader::{VerifiedArchive, STDIN_ARCHIVE};
use dbkeeper::archive::selection::Selection;
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
use dbkeeper::storage::{self, Location};
use dbkeeper::verify::TargetCheck;
use dbkeeper::{Engine, ExitCode};

use super::args::{EngineArg, RestoreArgs, RestoreMode};
use super::contents;
use super::output::{count, human_bytes, Output};
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
    /// `--mask`: what was masked on the way in.
    #[serde(skip_serializing_if = "Option::is_none")]
    masking: Option<MaskReport>,
    /// The archive itself was written masked (`backup --mask`).
    #[serde(skip_serializing_if = "Option::is_none")]
    archive_masking: Option<MaskingRecord>,
}

#[derive(Serialize)]
struct MaskReport {
    rules_file: String,
    fields: Vec<MaskedField>,
    /// What `--deep` compared masked tables and collections with: the digests of the masked
    /// rows and documents this restore streamed into them (the archive's are of the originals).
    content_digests: &'static str,
}

/// The masks of a `--mask` restore, checked against the archive before anything is touched.
struct Masks {
    rules_file: String,
    pg: Option<Arc<dbkeeper::mask::PgMask>>,
    mongo: Option<Arc<dbkeeper::mask::MongoMask>>,
}

impl Masks {
    fn plan(
        archive: &Arc<VerifiedArchive>,
        path: &std::path::Path,
        pg: bool,
        mongo: bool,
    ) -> Result<Masks> {
        let rules = dbkeeper::mask::Rules::load(path)?;
        Ok(Masks {
            rules_file: path.display().to_string(),
            pg: match pg {
                true => Some(Arc::new(dbkeeper::postgres::mask_schema::plan(
                    archive, &rules,
                )?)),
                false => None,
            },
            mongo: match mongo {
                true => Some(Arc::new(dbkeeper::mongo::mask_schema::plan(
                    archive, &rules,
                )?)),
                false => None,
            },
        })
    }

    fn report(&self, deep: bool) -> MaskReport {
        let mut fields = self.pg.as_ref().map(|m| m.applied()).unwrap_or_default();
        fields.extend(self.mongo.as_ref().map(|m| m.applied()).unwrap_or_default());
        MaskReport {
            rules_file: self.rules_file.clone(),
            fields,
            content_digests: match deep {
                true => "compared with the digests of the masked stream this restore wrote",
                false => "not compared (--deep compares them with the masked stream)",
            },
        }
    }
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
    if args.data_only && args.mode == RestoreMode::Replace {
        return Err(Error::Usage(
            "--data-only loads into existing, empty tables and never drops anything: drop \
             --mode replace (empty the tables first if they hold rows)"
                .into(),
        ));
    }
    if args.overwrite_source && args.mode != RestoreMode::Replace {
        return Err(Error::Usage(
            "--overwrite-source only makes sense with --mode replace".into(),
        ));
    }
    // V0 (and, encrypted, the key) before anything touches a database.
    let from_stdin = args.archive.as_os_str() == STDIN_ARCHIVE;
    let location = match from_stdin {
        true => None,
        false => Some(Location::parse(
            &args.archive,
            "ARCHIVE",
            &settings.storage,
        )?),
    };
    // Reading every member's SHA-256 (and, from a pipe, the whole stream) takes a while on a
    // big archive: shown as its own phase.
    progress::start("check", progress::Totals::default());
    progress::item(&match &location {
        Some(location) => format!("archive {}", location.describe()),
        None => "archive from standard input".to_string(),
    });
    let opened = open_archive(location.as_ref()).await;
    progress::finish();
    let mut archive = opened?;
    if archive.is_encrypted() {
        let (keys, settings_for_keys) = (args.keys.clone(), settings.clone());
        archive = tokio::task::spawn_blocking(move || {
            match super::keys::unlock(&keys, &settings_for_keys)? {
                Some(unlock) => archive.unlock(&unlock)?,
                None => return Err(dbkeeper::archive::reader::needs_key(archive.path())),
            }
            Ok(archive)
        })
        .await
        .map_err(|e| Error::io("opening the archive", std::io::Error::other(e)))??;
    }
    let archive = Arc::new(archive);
    let manifest = archive.manifest();
    if args.list {
        return contents::print(&archive, out);
    }

    // An engine the command was not asked for is not even looked up: its configured URL may
    // well be the archive's source.
    let wanted = |engine: Engine| args.engine.is_none_or(|e| engine_of(e) == engine);
    if let Some(engine) = args.engine.map(engine_of) {
        if manifest.source(engine).is_none() {
            return Err(Error::Usage(format!(
                "--engine {}: archive {} holds no {engine} data",
                engine.as_str(),
                archive.path().display()
            )));
        }
    }
    let pg = match wanted(Engine::Postgres) {
        true => targets::pg_target(settings, manifest)?,
        false => None,
    };
    let mongo = match wanted(Engine::Mongo) {
        true => targets::mongo_target(settings, manifest),
        false => None,
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
        .filter(|e| wanted(*e))
        .filter(|e| match e {
            Engine::Postgres => pg.is_none(),
            Engine::Mongo => mongo.is_none(),
        })
        .collect();

    let selection = Selection::new(&args.include, &args.exclude)?;
    let selected = manifest
        .datasets
        .iter()
        .filter(|d| wanted(d.engine) && selection.selects_dataset(d))
        .count();
    if selected == 0 && !selection.is_everything() {
        return Err(Error::Usage(format!(
            "--include {:?} / --exclude {:?} select no table or collection of archive {};              `dbkeeper restore {} --list` shows what it holds",
            args.include,
            args.exclude,
            archive.path().display(),
            archive.path().display()
        )));
    }
    // Rules are checked against the archive before any target is touched.
    let masks =
        match args.mask.clone() {
            Some(path) => {
                // Reads schema members and each collection's first chunk: off the async workers.
                let (archive, pg, mongo) = (archive.clone(), pg.is_some(), mongo.is_some());
                let planned =
                    tokio::task::spawn_blocking(move || Masks::plan(&archive, &path, pg, mongo));
                Some(planned.await.map_err(|e| {
                    Error::io("checking the masking rules", std::io::Error::other(e))
                })??)
            }
            None => None,
        };
    let pg_options = RestoreOptions {
        jobs,
        existing: match args.mode {
            RestoreMode::Create => ExistingTarget::Refuse,
            RestoreMode::Replace => ExistingTarget::Replace,
        },
        keep_owner: args.keep_owner,
        keep_privileges: args.keep_privileges,
        overwrite_source: args.overwrite_source,
        selection: selection.clone(),
        schema_only: args.schema_only,
        data_only: args.data_only,
        mask: masks.as_ref().and_then(|m| m.pg.clone()),
    };
    let mongo_options = mongo_restore::RestoreOptions {
        jobs,
        mode: match args.mode {
            RestoreMode::Create => mongo_restore::RestoreMode::Create,
            RestoreMode::Replace => mongo_restore::RestoreMode::Replace,
        },
        renames: renames.clone(),
        overwrite_source: args.overwrite_source,
        selection: selection.clone(),
        schema_only: args.schema_only,
        data_only: args.data_only,
        mask: masks.as_ref().and_then(|m| m.mongo.clone()),
        ..Default::default()
    };
    if let Some(target) = &pg {
        pg_restore::preflight(&archive, target, &pg_options).await?;
    }
    if let Some(target) = &mongo {
        mongo_restore::preflight(&archive, target, &mongo_options).await?;
    }

    let restored = manifest.datasets.iter().filter(|d| {
        !args.schema_only
            && selection.selects_dataset(d)
            && match d.engine {
                Engine::Postgres => pg.is_some(),
                Engine::Mongo => mongo.is_some(),
            }
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
            // Masked tables and collections are compared with the digests of what the masks
            // wrote into them, not with the archive's digests of the originals.
            deep: args.deep,
            masked_pg: masks.as_ref().and_then(|m| m.pg.clone()),
            masked_mongo: masks.as_ref().and_then(|m| m.mongo.clone()),
            renames,
            keep_owner: args.keep_owner,
            keep_privileges: args.keep_privileges,
            selection,
            schema_only: args.schema_only,
            data_only: args.data_only,
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
        masking: masks
            .as_ref()
            .map(|m| m.report(args.deep && !args.no_verify && !args.schema_only)),
        archive_masking: manifest.masking.clone(),
    };
    let checks: Vec<&TargetCheck> = [
        report.postgres.as_ref().and_then(|r| r.verify.as_ref()),
        report.mongo.as_ref().and_then(|r| r.verify.as_ref()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mismatches: usize = checks.iter().map(|c| c.mismatches.len()).sum();
    if let Some(location) = location
        .as_ref()
        .filter(|_| !checks.is_empty() && mismatches == 0)
    {
        // Remembered for `list`/`prune`; failing to write it changes nothing.
        if let Err(e) = storage::write_stamp(location, "restore").await {
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

/// The archive argument, checked (V0): a file, or `-` for standard input.
/// V0 on the archive at `location` (a file or an object), or on standard input when there is
/// none (`restore -`).
async fn open_archive(location: Option<&Location>) -> Result<VerifiedArchive> {
    if let Some(location) = location {
        return storage::open_archive(location).await;
    }
    if std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "restore -: standard input is a terminal; pipe an archive in (`dbkeeper backup \
             --output - | dbkeeper restore -`) or name the archive file"
                .into(),
        ));
    }
    tokio::task::spawn_blocking(|| VerifiedArchive::open_stream(std::io::stdin().lock()))
        .await
        .map_err(|e| Error::io("verifying the archive", std::io::Error::other(e)))?
}

fn engine_of(arg: EngineArg) -> Engine {
    match arg {
        EngineArg::Postgres => Engine::Postgres,
        EngineArg::Mongo => Engine::Mongo,
    }
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
