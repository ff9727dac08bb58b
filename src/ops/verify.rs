//! `dbkeeper verify ARCHIVE`: V0 (structure, sizes, SHA-256 of every member, COMMIT) and V1
//! (every chunk decompresses, record counts and content digests match the manifest), offline.
//! With `--pg-url` / `--mongo-url`, V2 compares those live databases with the archive (exact
//! counts, sequences, indexes, validators and options, schema fingerprint; `--deep`: content
//! digests). Every mismatch is listed; any mismatch exits 1, a damaged archive included.

use std::path::PathBuf;

use crate::archive::crypt::Unlock;
use crate::archive::reader::{Checked, VerifiedArchive};
use crate::config::Settings;
use crate::engine::CompareOptions;
use crate::error::{Error, Result};
use crate::storage::{self, Location};
use crate::verify::{ArchiveFacts, Level, VerifyReport};

use super::keys::{self, UnlockKeys};
use super::targets;

/// What `verify` is asked to do.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub archive: PathBuf,
    pub deep: bool,
    pub jobs: Option<usize>,
    pub keys: UnlockKeys,
    /// The database URLs given on the command line: the only ones V2 compares.
    pub named: NamedTargets,
}

/// What `verify` found.
pub struct Verified {
    pub report: VerifyReport,
    /// V0 and V1 passed: any mismatch is the databases'.
    pub offline_ok: bool,
}

/// Which database URLs were given as flags on the command line.
#[derive(Debug, Clone, Copy)]
pub struct NamedTargets {
    pub pg: bool,
    pub mongo: bool,
    /// `--mongo-db` was given: it needs `--mongo-url` to mean anything to verify.
    pub mongo_db: bool,
}

/// Runs `verify`. V2 compares only databases whose URL was given as a flag: a URL from the
/// environment or dbkeeper.toml is usually the production database the archive came from, and
/// a routine `dbkeeper verify ARCHIVE` from cron must stay offline, not report its drift.
pub async fn verify(args: &VerifyRequest, settings: &Settings) -> Result<Verified> {
    let named = args.named;
    let mut settings = settings.clone();
    for (named, url, flag) in [
        (named.pg, &mut settings.pg_url, "--pg-url"),
        (named.mongo, &mut settings.mongo_url, "--mongo-url"),
    ] {
        if !named && url.take().is_some() {
            tracing::info!(
                "not comparing with the configured database: verify only connects to {flag} given \
                 on its command line"
            );
        }
    }
    if named.mongo_db && !named.mongo {
        return Err(Error::Usage(
            "verify --mongo-db: also give --mongo-url; verify only connects to databases named \
             on its command line"
                .into(),
        ));
    }
    if settings.mongo_url.is_some() && settings.mongo_db.is_none() {
        // restore defaults to the archived database's name; verify must not, or a URL without
        // a path would quietly compare the archive with the database it was taken from.
        return Err(Error::Usage(
            "verify --mongo-url: name the database to compare, in the URL's path \
             (mongodb://host/restored_db) or with --mongo-db NAME"
                .into(),
        ));
    }
    let settings = &settings;
    let jobs = args.jobs.unwrap_or(settings.jobs);
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let mut report = VerifyReport::new(args.archive.display().to_string(), args.deep);
    let location = Location::parse(&args.archive, "ARCHIVE", &settings.storage)?;
    let keys = (args.keys.clone(), settings.clone());
    let unlock = move || keys::unlock(&keys.0, &keys.1);
    let archive = offline(&location, jobs, unlock, &mut report).await?;
    let offline_ok = report.ok;
    if let Some(archive) = &archive {
        let options = CompareOptions {
            jobs,
            deep: args.deep,
            ..CompareOptions::default()
        };
        for check in targets::compare_configured(archive, settings, &options).await? {
            report.add_target(check);
        }
    }
    if report.ok {
        let level = if report.levels.contains(&Level::V2) {
            "target"
        } else if report.levels.contains(&Level::V1) {
            "decode"
        } else {
            "archive"
        };
        // The stamp only saves `list`/`prune` a re-check; failing to write it changes nothing.
        if let Err(e) = storage::write_stamp(&location, level).await {
            tracing::warn!("could not record the verification next to the archive: {e}");
        }
    }
    if args.deep && offline_ok && report.targets.is_empty() {
        tracing::warn!(
            "--deep compares databases, and none was given (--pg-url/--mongo-url); offline, V1 \
             already recomputed every content digest of the archive"
        );
    }
    Ok(Verified { report, offline_ok })
}

/// V0, then V1 when V0 passed. Returns the verified archive when both passed.
///
/// An encrypted archive is unlocked between the two. Without a key, V0 is all that can be
/// checked (every member's size and SHA-256, COMMIT): it is reported and the archive is not
/// returned, so nothing needing the data runs.
async fn offline(
    location: &Location,
    jobs: usize,
    unlock: impl FnOnce() -> Result<Option<Unlock>> + Send + 'static,
    report: &mut VerifyReport,
) -> Result<Option<VerifiedArchive>> {
    // V0 reads every member's SHA-256: on a big archive, a phase of its own.
    crate::progress::start("check", crate::progress::Totals::default());
    crate::progress::item(&format!("archive {}", location.describe()));
    let checked = storage::check_archive(location).await;
    crate::progress::finish();
    let checked = checked?;
    let name = location.describe();
    let (checked, decode) = tokio::task::spawn_blocking(move || {
        let mut checked = checked;
        if let Checked::Verified(archive) = &mut checked {
            if archive.is_encrypted() {
                match unlock()? {
                    Some(unlock) => archive.unlock(&unlock)?,
                    None => {
                        tracing::warn!(
                            "archive {} is encrypted: checked V0 (every member's size and \
                             SHA-256, COMMIT); V1 (decoding) and V2 need the key: pass \
                             --identity FILE or --passphrase-file FILE",
                            name
                        );
                    }
                }
            }
        }
        let decode = match &checked {
            Checked::Verified(archive) if !archive.is_readable() => None,
            Checked::Verified(archive) => {
                let datasets = &archive.manifest().datasets;
                crate::progress::start(
                    "verify",
                    crate::progress::Totals::exact(
                        datasets.iter().map(|d| d.rows).sum(),
                        datasets.iter().map(|d| d.raw_bytes).sum(),
                    ),
                );
                let decode = archive.verify_decode(jobs);
                crate::progress::finish();
                Some(decode)
            }
            Checked::Damaged(_) => None,
        };
        Ok::<_, Error>((checked, decode))
    })
    .await
    .map_err(|e| Error::io("verifying the archive", std::io::Error::other(e)))??;
    let archive = match checked {
        Checked::Damaged(problems) => {
            report.add_archive_level(Level::V0, 1, &problems);
            return Ok(None);
        }
        Checked::Verified(archive) => *archive,
    };
    // One check per member (size and SHA-256) plus COMMIT against the manifest.
    report.add_archive_level(Level::V0, archive.member_count() as u64 + 1, &[]);
    let Some(decode) = decode else {
        // Encrypted, no key: V0 is the whole verdict.
        report.facts = ArchiveFacts {
            members: archive.member_count(),
            member_bytes: archive.member_bytes(),
            ..Default::default()
        };
        return Ok(None);
    };
    report.add_archive_level(
        Level::V1,
        (decode.chunks + decode.datasets) as u64,
        &decode.problems,
    );
    report.facts = ArchiveFacts {
        members: archive.member_count(),
        member_bytes: archive.member_bytes(),
        datasets: decode.datasets,
        chunks: decode.chunks,
        rows: decode.rows,
        raw_bytes: decode.raw_bytes,
    };
    Ok(report.ok.then_some(archive))
}
