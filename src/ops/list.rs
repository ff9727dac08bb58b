//! `list`: the archives in a backup directory or bucket prefix.

use std::path::PathBuf;

use crate::archive::catalog::{self, ArchiveSummary};
use crate::archive::crypt::Unlock;
use crate::config::Settings;
use crate::error::Result;
use crate::storage::{self, Location};

use super::keys::{self, UnlockKeys};

/// What `list` found.
pub struct Listing {
    /// The directory or prefix, as messages name it.
    pub directory: String,
    pub archives: Vec<ArchiveSummary>,
}

/// Lists the archives in `dir` (default: the configured backup directory). With a key, the
/// counts of encrypted archives are filled in.
pub async fn list(dir: Option<PathBuf>, keys: &UnlockKeys, settings: &Settings) -> Result<Listing> {
    let location = backup_location(dir, settings)?;
    require_backup_dir(&location, "list")?;
    let store = storage::archive_store(&location);
    let mut archives = store.list().await?;
    if let Some(unlock) = keys::unlock(keys, settings)? {
        reveal_encrypted(&mut archives, &location, &unlock)?;
    }
    Ok(Listing {
        directory: store.display(),
        archives,
    })
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

/// The directory or bucket prefix a `list`/`prune` argument (or `[backup] output`) names.
pub(super) fn backup_location(dir: Option<PathBuf>, settings: &Settings) -> Result<Location> {
    match dir {
        Some(dir) => Location::parse(&dir, "DIR", &settings.storage),
        None => Location::parse(&settings.backup_dir, "[backup] output", &settings.storage),
    }
}

/// A backup directory argument that is missing or is a file is a usage error (exit 2) that says
/// which, not an I/O failure. (A bucket prefix is checked by listing it.)
pub(super) fn require_backup_dir(location: &Location, command: &str) -> Result<()> {
    let Location::Local(dir) = location else {
        return Ok(());
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(crate::Error::Usage(format!(
            "{} is a file, not a directory; {command} takes the directory holding archives",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(crate::Error::Usage(format!(
            "backup directory {} does not exist; pass the directory your backups are in",
            dir.display()
        ))),
        // Permission denied and the like: reading it will say what is wrong.
        Err(_) => Ok(()),
    }
}
