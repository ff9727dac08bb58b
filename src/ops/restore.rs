//! `restore ARCHIVE`: check the archive completely, check every target, then restore each
//! engine the archive holds into its configured target and prove the result with V2 (the one
//! implementation `verify` uses): exact counts, sequences, indexes, validators and schema by
//! default, content digests with `deep`, nothing with `no_verify`.
//!
//! Nothing is touched before the archive passed V0 and every engine's target passed its
//! preflight (not the source, not non-empty without `replace`): a restore that would be refused
//! for MongoDB must not have already replaced the PostgreSQL database.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::archive::manifest::{MaskedField, MaskingRecord};
use crate::archive::reader::{VerifiedArchive, STDIN_ARCHIVE};
use crate::archive::selection::Selection;
use crate::config::Settings;
use crate::engine::{
    self, CompareOptions, Database, Masks, MongoRestoreReport, PgRestoreReport, Rename,
    RestoreOptions,
};
use crate::error::{Error, Result};
use crate::progress;
use crate::storage::{self, Location};
use crate::verify::TargetCheck;
use crate::Engine;

use super::keys::{self, UnlockKeys};
use super::targets;

/// What `restore` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// The archive: a path, an object URL, or `-` for standard input.
    pub archive: PathBuf,
    /// Restore only this engine's data.
    pub engine: Option<Engine>,
    /// Only open the archive (V0, unlock) for its table of contents: touch no database.
    pub list_only: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub schema_only: bool,
    pub data_only: bool,
    /// `--mode replace`.
    pub replace: bool,
    pub no_verify: bool,
    pub deep: bool,
    pub jobs: Option<usize>,
    pub keep_owner: bool,
    pub keep_privileges: bool,
    pub overwrite_source: bool,
    /// `--ns-from` / `--ns-to`, pairwise.
    pub ns_from: Vec<String>,
    pub ns_to: Vec<String>,
    /// `--mask RULES`: mask records on their way into the targets.
    pub mask: Option<PathBuf>,
    pub keys: UnlockKeys,
}

/// What `restore` did.
pub enum RestoreOutcome {
    /// `list_only`: the opened archive.
    Listed(Arc<VerifiedArchive>),
    Restored(Box<RestoreReport>),
}

#[derive(Serialize)]
pub struct RestoreReport {
    pub archive: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PgReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongo: Option<MongoReport>,
    /// Engines in the archive that were not restored because no target was configured.
    pub not_restored: Vec<Engine>,
    /// `--mask`: what was masked on the way in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masking: Option<MaskReport>,
    /// The archive itself was written masked (`backup --mask`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_masking: Option<MaskingRecord>,
}

impl RestoreReport {
    /// Differences V2 found between the restored databases and the archive.
    pub fn mismatches(&self) -> usize {
        self.checks().map(|c| c.mismatches.len()).sum()
    }

    fn checks(&self) -> impl Iterator<Item = &TargetCheck> {
        [
            self.postgres.as_ref().and_then(|r| r.verify.as_ref()),
            self.mongo.as_ref().and_then(|r| r.verify.as_ref()),
        ]
        .into_iter()
        .flatten()
    }
}

#[derive(Serialize)]
pub struct MaskReport {
    pub rules_file: String,
    pub fields: Vec<MaskedField>,
    /// What `--deep` compared masked tables and collections with: the digests of the masked
    /// rows and documents this restore streamed into them (the archive's are of the originals).
    pub content_digests: &'static str,
}

#[derive(Serialize)]
pub struct PgReport {
    #[serde(flatten)]
    pub restore: PgRestoreReport,
    /// V2 against the restored database; `null` with `--no-verify`.
    pub verify: Option<TargetCheck>,
}

#[derive(Serialize)]
pub struct MongoReport {
    #[serde(flatten)]
    pub restore: MongoRestoreReport,
    /// V2 against the restored database; `null` with `--no-verify`.
    pub verify: Option<TargetCheck>,
}

/// Runs a restore; see the module documentation. V2 mismatches are in the report
/// ([`RestoreReport::mismatches`]), not an error.
pub async fn restore(args: &RestoreRequest, settings: &Settings) -> Result<RestoreOutcome> {
    let jobs = args.jobs.unwrap_or(settings.jobs);
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let renames = renames(args)?;
    if args.data_only && args.replace {
        return Err(Error::Usage(
            "--data-only loads into existing, empty tables and never drops anything: drop \
             --mode replace (empty the tables first if they hold rows)"
                .into(),
        ));
    }
    if args.overwrite_source && !args.replace {
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
            match keys::unlock(&keys, &settings_for_keys)? {
                Some(unlock) => archive.unlock(&unlock)?,
                None => return Err(crate::archive::reader::needs_key(archive.path())),
            }
            Ok(archive)
        })
        .await
        .map_err(|e| Error::io("opening the archive", std::io::Error::other(e)))??;
    }
    let archive = Arc::new(archive);
    let manifest = archive.manifest();
    if args.list_only {
        return Ok(RestoreOutcome::Listed(archive));
    }

    // An engine the command was not asked for is not even looked up: its configured URL may
    // well be the archive's source.
    let wanted = |engine: Engine| args.engine.is_none_or(|e| e == engine);
    if let Some(engine) = args.engine {
        if manifest.source(engine).is_none() {
            return Err(Error::Usage(format!(
                "--engine {}: archive {} holds no {engine} data",
                engine.as_str(),
                archive.path().display()
            )));
        }
    }
    let mut targets: Vec<Box<dyn Database>> = Vec::new();
    for entry in &engine::REGISTRY {
        if wanted(entry.engine) {
            targets.extend(engine::for_archive(entry.engine, settings, manifest)?);
        }
    }
    if targets.is_empty() {
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
    let has_target = |engine: Engine| targets.iter().any(|t| t.engine() == engine);
    let not_restored: Vec<Engine> = manifest
        .sources
        .iter()
        .map(|s| s.engine)
        .filter(|e| wanted(*e) && !has_target(*e))
        .collect();

    let selection = Selection::new(&args.include, &args.exclude)?;
    let selected = manifest
        .datasets
        .iter()
        .filter(|d| wanted(d.engine) && selection.selects_dataset(d))
        .count();
    if selected == 0 && !selection.is_everything() {
        return Err(Error::Usage(format!(
            "--include {:?} / --exclude {:?} select no table or collection of archive {}; \
             `dbkeeper restore {} --list` shows what it holds",
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
                let engines: Vec<Engine> = targets.iter().map(|t| t.engine()).collect();
                // Reads schema members and each collection's first chunk: off the async workers.
                let archive = archive.clone();
                let planned = tokio::task::spawn_blocking(move || {
                    let rules = crate::mask::Rules::load(&path)?;
                    let masks = Masks::plan(&archive, &rules, &engines)?;
                    Ok::<_, Error>((path.display().to_string(), masks))
                });
                Some(planned.await.map_err(|e| {
                    Error::io("checking the masking rules", std::io::Error::other(e))
                })??)
            }
            None => None,
        };
    let options = RestoreOptions {
        jobs,
        replace: args.replace,
        keep_owner: args.keep_owner,
        keep_privileges: args.keep_privileges,
        overwrite_source: args.overwrite_source,
        selection: selection.clone(),
        schema_only: args.schema_only,
        data_only: args.data_only,
        renames: renames.clone(),
        masks: masks.as_ref().map(|(_, m)| m.clone()).unwrap_or_default(),
    };
    for target in &targets {
        target.preflight(&archive, &options).await?;
    }

    let restored = manifest
        .datasets
        .iter()
        .filter(|d| !args.schema_only && selection.selects_dataset(d) && has_target(d.engine));
    let (records, raw_bytes) = restored.fold((0, 0), |(r, b), d| (r + d.rows, b + d.raw_bytes));
    progress::start("restore", progress::Totals::exact(records, raw_bytes));
    let restored = restore_each(&archive, &targets, &options).await;
    progress::finish();
    let restored = restored?;

    // V2 on what was just restored: the same check `dbkeeper verify --pg-url ...` runs.
    let mut checks = Vec::new();
    if !args.no_verify {
        let compare = CompareOptions {
            jobs,
            // Masked tables and collections are compared with the digests of what the masks
            // wrote into them, not with the archive's digests of the originals.
            deep: args.deep,
            renames,
            keep_owner: args.keep_owner,
            keep_privileges: args.keep_privileges,
            selection,
            schema_only: args.schema_only,
            data_only: args.data_only,
            masks: options.masks.clone(),
        };
        checks = targets::compare(&archive, &targets, &compare).await?;
    }
    let check_of = |engine: Engine| checks.iter().find(|c| c.engine == engine).cloned();

    let mut report = RestoreReport {
        archive: archive.path().display().to_string(),
        postgres: None,
        mongo: None,
        not_restored,
        masking: masks.as_ref().map(|(rules_file, masks)| {
            mask_report(
                rules_file,
                masks,
                args.deep && !args.no_verify && !args.schema_only,
            )
        }),
        archive_masking: manifest.masking.clone(),
    };
    for engine_report in restored {
        match engine_report {
            engine::RestoreReport::Postgres(restore) => {
                report.postgres = Some(PgReport {
                    restore,
                    verify: check_of(Engine::Postgres),
                })
            }
            engine::RestoreReport::Mongo(restore) => {
                report.mongo = Some(MongoReport {
                    restore,
                    verify: check_of(Engine::Mongo),
                })
            }
        }
    }
    if let Some(location) = location
        .as_ref()
        .filter(|_| report.checks().next().is_some() && report.mismatches() == 0)
    {
        // Remembered for `list`/`prune`; failing to write it changes nothing.
        if let Err(e) = storage::write_stamp(location, "restore").await {
            tracing::warn!("could not record the verification next to the archive: {e}");
        }
    }
    Ok(RestoreOutcome::Restored(Box::new(report)))
}

fn mask_report(rules_file: &str, masks: &Masks, deep: bool) -> MaskReport {
    MaskReport {
        rules_file: rules_file.to_string(),
        fields: masks.applied(),
        content_digests: match deep {
            true => "compared with the digests of the masked stream this restore wrote",
            false => "not compared (--deep compares them with the masked stream)",
        },
    }
}

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

fn renames(args: &RestoreRequest) -> Result<Vec<Rename>> {
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

/// Restores into each target in registry order (PostgreSQL first). Verification comes after,
/// on everything at once.
async fn restore_each(
    archive: &Arc<VerifiedArchive>,
    targets: &[Box<dyn Database>],
    options: &RestoreOptions,
) -> Result<Vec<engine::RestoreReport>> {
    let mut reports = Vec::new();
    for target in targets {
        reports.push(target.restore(archive, options).await?);
    }
    Ok(reports)
}
