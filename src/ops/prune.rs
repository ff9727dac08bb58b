//! `prune` and `backup --prune`: retention over the complete archives of a backup directory or
//! bucket prefix, under its lock.

use std::path::PathBuf;

use serde::Serialize;

use crate::archive::catalog::ArchiveSummary;
use crate::config::Settings;
use crate::error::Result;
use crate::retention::{self, Candidate, Decision, Policy};
use crate::storage::{self, Location};

use super::list::{backup_location, require_backup_dir};

/// What `prune` kept and deleted.
#[derive(Serialize)]
pub struct PruneReport {
    pub directory: String,
    pub dry_run: bool,
    pub policy: Policy,
    pub kept: Vec<Decision>,
    pub deleted: Vec<Decision>,
    /// Files that look like archives but are not complete: never deleted by prune.
    pub ignored: Vec<ArchiveSummary>,
}

/// Applies `policy` to the archives in `dir` (default: the configured backup directory),
/// under the directory's or prefix's lock; `dry_run` only says what would go.
pub async fn prune(
    dir: Option<PathBuf>,
    policy: &Policy,
    dry_run: bool,
    settings: &Settings,
) -> Result<PruneReport> {
    policy.validate()?;
    let location = backup_location(dir, settings)?;
    prune_dir(&location, policy, dry_run, Locking::Take).await
}

/// Whether `prune_dir` takes the directory lock or runs under one its caller holds.
enum Locking {
    Take,
    HeldByCaller,
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
    let store = storage::archive_store(location);
    let _lock = match (dry_run, locking) {
        (false, Locking::Take) => Some(store.lock("prune").await?),
        _ => None,
    };
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
        crate::Error::Usage(
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
