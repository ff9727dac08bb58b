//! `dbkeeper list` and `dbkeeper prune`: the archives in a backup directory or bucket prefix,
//! and retention.

use std::path::PathBuf;

use serde::Serialize;

use dbkeeper::archive::catalog::{self, ArchiveSummary};
use dbkeeper::archive::crypt::Unlock;
use dbkeeper::config::Settings;
use dbkeeper::dirlock::DirLock;
use dbkeeper::error::Result;
use dbkeeper::retention::{self, Candidate, Decision, Policy};
use dbkeeper::storage::lock::BucketLock;
use dbkeeper::storage::{self, Location};
use dbkeeper::ExitCode;

use super::args::{ListArgs, PruneArgs};
use super::output::{human_bytes, Output};

pub async fn list(args: ListArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let location = backup_location(args.dir, settings)?;
    require_backup_dir(&location, "list")?;
    let store = storage::archive_store(&location);
    let mut archives = store.list().await?;
    if let Some(unlock) = super::keys::unlock(&args.keys, settings)? {
        reveal_encrypted(&mut archives, &location, &unlock)?;
    }
    let dir = store.display();
    out.emit(
        &serde_json::json!({ "directory": dir, "archives": archives }),
        || {
            if archives.is_empty() {
                println!("no archives in {dir}");
            }
            for a in &archives {
                println!("{}", describe(a));
            }
        },
    )?;
    Ok(ExitCode::Ok)
}

/// Fills in the counts of the encrypted archives `unlock` opens (the others say why not).
fn reveal_encrypted(
    archives: &mut [ArchiveSummary],
    location: &Location,
    unlock: &Unlock,
) -> Result<()> {
    for summary in archives.iter_mut().filter(|a| a.complete && a.encrypted) {
        match location {
            Location::Local(_) => catalog::reveal(summary, unlock)?,
            Location::Object(_) => {
                summary.locked = Some(
                    "details of an encrypted archive in a bucket are not read by list: run \
                     dbkeeper restore --list --identity FILE on it"
                        .into(),
                )
            }
        }
    }
    Ok(())
}

/// One line per archive: name, time, size, engines, counts, verification.
fn describe(a: &ArchiveSummary) -> String {
    let name = a
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !a.complete {
        return format!(
            "{name}  {}  INCOMPLETE: {}",
            human_bytes(a.size),
            a.problem.as_deref().unwrap_or("unknown problem")
        );
    }
    let when = a
        .created_at
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default();
    let counts: Vec<String> = match (&a.locked, a.encrypted) {
        (Some(why), _) => vec![format!("encrypted ({why})")],
        (None, encrypted) => {
            let mut counts: Vec<String> = a
                .rows
                .iter()
                .map(|(engine, n)| {
                    format!(
                        "{engine} {n} {}",
                        if engine == "mongo" { "docs" } else { "rows" }
                    )
                })
                .collect();
            if encrypted {
                counts.push("encrypted".to_string());
            }
            counts
        }
    };
    let verified = match &a.verified {
        Some(s) => format!(
            "verified ({}, {})",
            s.level,
            s.verified_at.format("%Y-%m-%d %H:%M")
        ),
        None => "not verified".to_string(),
    };
    format!(
        "{name}  {when}  {:>9}  {}  {verified}",
        human_bytes(a.size),
        counts.join(", ")
    )
}

/// The directory or bucket prefix a `list`/`prune` argument (or `[backup] output`) names.
fn backup_location(dir: Option<PathBuf>, settings: &Settings) -> Result<Location> {
    match dir {
        Some(dir) => Location::parse(&dir, "DIR", &settings.storage),
        None => Location::parse(&settings.backup_dir, "[backup] output", &settings.storage),
    }
}

#[derive(Serialize)]
struct PruneReport {
    directory: String,
    dry_run: bool,
    policy: Policy,
    kept: Vec<Decision>,
    deleted: Vec<Decision>,
    /// Files that look like archives but are not complete: never deleted by prune.
    ignored: Vec<ArchiveSummary>,
}

/// The policy from flags, falling back to `[retention]` in the config file.
pub fn policy_from(args: &PruneArgs, settings: &Settings) -> Policy {
    let flags_given = args.keep_last.is_some()
        || args.keep_daily.is_some()
        || args.keep_weekly.is_some()
        || args.keep_monthly.is_some();
    if flags_given {
        Policy {
            keep_last: args.keep_last,
            keep_daily: args.keep_daily,
            keep_weekly: args.keep_weekly,
            keep_monthly: args.keep_monthly,
        }
    } else {
        Policy::from_config(&settings.retention)
    }
}

pub async fn prune(args: PruneArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let policy = policy_from(&args, settings);
    policy.validate()?;
    let location = backup_location(args.dir.clone(), settings)?;
    let report = prune_dir(&location, &policy, args.dry_run, Locking::Take).await?;
    out.emit(&report, || {
        let verb = if report.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        // With archives of several sources in the directory, say which series each belongs to.
        let groups: std::collections::BTreeSet<&str> = report
            .kept
            .iter()
            .chain(&report.deleted)
            .map(|d| d.group.as_str())
            .collect();
        let series = |d: &Decision| {
            if groups.len() > 1 {
                format!("  [{}]", d.group)
            } else {
                String::new()
            }
        };
        for d in &report.kept {
            let reasons: Vec<&str> = d.keep_reasons.iter().map(|r| r.describe()).collect();
            println!("keep    {}  ({}){}", d.id, reasons.join(", "), series(d));
        }
        for d in &report.deleted {
            println!("{verb:<7} {}{}", d.id, series(d));
        }
        for a in &report.ignored {
            println!(
                "ignored {}  (not a complete archive: {})",
                a.path.display(),
                a.problem.as_deref().unwrap_or("?")
            );
        }
        println!(
            "{} kept, {} {verb}",
            report.kept.len(),
            report.deleted.len()
        );
    })?;
    Ok(ExitCode::Ok)
}

/// A backup directory argument that is missing or is a file is a usage error (exit 2) that says
/// which, not an I/O failure. (A bucket prefix is checked by listing it.)
fn require_backup_dir(location: &Location, command: &str) -> Result<()> {
    let Location::Local(dir) = location else {
        return Ok(());
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(dbkeeper::Error::Usage(format!(
            "{} is a file, not a directory; {command} takes the directory holding archives",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(dbkeeper::Error::Usage(format!(
            "backup directory {} does not exist; pass the directory your backups are in",
            dir.display()
        ))),
        // Permission denied and the like: reading it will say what is wrong.
        Err(_) => Ok(()),
    }
}

/// Whether `prune_dir` takes the directory lock or runs under one its caller holds.
enum Locking {
    Take,
    HeldByCaller,
}

/// The lock `prune` holds, on a directory or a bucket prefix.
enum PruneLock {
    Dir(#[allow(dead_code)] DirLock),
    Bucket(#[allow(dead_code)] BucketLock),
}

/// Applies `policy` to the complete archives in `location` (under its lock).
async fn prune_dir(
    location: &Location,
    policy: &Policy,
    dry_run: bool,
    locking: Locking,
) -> Result<PruneReport> {
    // The lock would create a missing directory: a mistyped path must not "prune" nothing.
    require_backup_dir(location, "prune")?;
    let _lock = match (dry_run, locking, location) {
        (false, Locking::Take, Location::Local(dir)) => {
            Some(PruneLock::Dir(DirLock::acquire(dir, "prune")?))
        }
        (false, Locking::Take, Location::Object(prefix)) => Some(PruneLock::Bucket(
            BucketLock::acquire(prefix, "prune").await?,
        )),
        _ => None,
    };
    let store = storage::archive_store(location);
    let archives = store.list().await?;
    let (complete, ignored): (Vec<_>, Vec<_>) = archives.into_iter().partition(|a| a.complete);
    let candidates: Vec<Candidate> = complete
        .iter()
        .map(|a| Candidate {
            id: a.path.display().to_string(),
            group: a.sources.join(" + "),
            created_at: a
                .created_at
                .expect("complete archives have a creation time"),
            verified: a.verified.is_some(),
        })
        .collect();
    let decisions = retention::decide(policy, &candidates);
    let (kept, deleted): (Vec<_>, Vec<_>) = decisions.into_iter().partition(Decision::keep);
    if !dry_run {
        for d in &deleted {
            store.delete(&d.id).await?;
        }
    }
    Ok(PruneReport {
        directory: store.display(),
        dry_run,
        policy: *policy,
        kept,
        deleted,
        ignored,
    })
}

/// The `[retention]` policy of the config file, refused when it keeps nothing.
pub fn configured_policy(settings: &Settings) -> Result<Policy> {
    let policy = Policy::from_config(&settings.retention);
    policy.validate().map_err(|_| {
        dbkeeper::Error::Usage(
            "backup --prune: no retention policy configured; set [retention] keep_last / \
             keep_daily / keep_weekly / keep_monthly in dbkeeper.toml"
                .into(),
        )
    })?;
    Ok(policy)
}

/// `backup --prune`: the configured policy after a successful backup, under the backup's lock.
/// Returns the deleted archives.
pub async fn prune_after_backup(location: &Location, settings: &Settings) -> Result<Vec<String>> {
    let policy = configured_policy(settings)?;
    let report = prune_dir(location, &policy, false, Locking::HeldByCaller).await?;
    Ok(report.deleted.into_iter().map(|d| d.id).collect())
}
