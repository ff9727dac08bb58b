//! The archives in a backup directory: what `list` shows and what `prune` may delete.
//!
//! Listing must be quick on a directory of large archives, so it does not hash data members: it
//! walks the tar headers (seeking over data), reads `HEADER.json`, `MANIFEST.json` and `COMMIT`,
//! and calls an archive *complete* when COMMIT is last and holds the manifest's SHA-256. Whether
//! the data itself is intact is what `verify` proves; a passed verification is remembered in a
//! sidecar stamp (`<archive>.verified.json`) tied to the archive's size and modification time, so
//! a file changed afterwards no longer counts as verified.
//!
//! Files still being written (`*.partial`) and anything that is not `*.dbk.tar` are not archives
//! and are never listed as such; `prune` leaves them alone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::crypt::{
    EncryptionInfo, Keyring, OpenError, Unlock, KEY_MEMBER, SEALED_MANIFEST_MEMBER,
};
use super::manifest::{Header, Manifest};
use super::reader::{lacks_tar_magic, printable, NOT_AN_ARCHIVE};
use super::{ARCHIVE_SUFFIX, COMMIT_MEMBER, HEADER_MEMBER, MANIFEST_MEMBER};
use crate::error::{Engine, Error, Result};
use crate::storage::source::FileSource;

/// Suffix of the verification stamp written next to an archive.
pub const STAMP_SUFFIX: &str = ".verified.json";
/// HEADER/MANIFEST/COMMIT larger than this are not read by the quick scan.
const MAX_METADATA_BYTES: u64 = 256 << 20;

/// One archive file as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveSummary {
    pub path: PathBuf,
    pub size: u64,
    /// COMMIT present and matching the manifest.
    pub complete: bool,
    /// Why the archive is not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub engines: Vec<Engine>,
    /// Where the data came from, one `engine host[:port]/database` per engine; retention keeps
    /// each distinct set as its own series.
    pub sources: Vec<String>,
    /// Rows (PostgreSQL) / documents (MongoDB) per engine.
    pub rows: BTreeMap<String, u64>,
    pub datasets: usize,
    /// Encrypted: `rows` and `datasets` are in the encrypted manifest, shown only once it was
    /// opened with the key ([`reveal`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// Why an encrypted archive's counts are not shown (no key given, or the key does not open
    /// it); `None` when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked: Option<String>,
    /// The last passed verification, when the stamp still matches the file.
    pub verified: Option<VerificationStamp>,
}

/// Written after an archive passed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationStamp {
    /// What was checked: "archive" (V0), "decode" (V0+V1), "target" (V0+V1, and V2 against a
    /// database), "restore" (a restore passed V0 and V2 on the restored data).
    pub level: String,
    pub verified_at: DateTime<Utc>,
    pub tool_version: String,
    /// The archive's size and mtime when it was verified.
    pub archive_size: u64,
    pub archive_mtime_secs: i64,
}

/// Every `*.dbk.tar` in `dir`, newest first (by manifest time, else file name).
pub fn list_archives(dir: &Path) -> Result<Vec<ArchiveSummary>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading backup directory {}", dir.display()), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        let is_archive = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(ARCHIVE_SUFFIX));
        if is_archive && path.is_file() {
            out.push(summarize(&path));
        }
    }
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.path.cmp(&a.path))
    });
    Ok(out)
}

/// Reads an archive's metadata without hashing its data. Never fails: problems are reported in
/// the summary, because one damaged file must not hide the others from `list`.
pub fn summarize(path: &Path) -> ArchiveSummary {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut summary = summary_from(path.to_path_buf(), size, read_metadata(path));
    if summary.complete {
        summary.verified = read_stamp(path);
    }
    summary
}

/// The summary of an archive whose metadata was read (or could not be), wherever it is; the
/// caller adds the verification stamp.
pub fn summary_from(
    path: PathBuf,
    size: u64,
    metadata: std::result::Result<(Header, Manifest), String>,
) -> ArchiveSummary {
    let mut summary = ArchiveSummary {
        path,
        size,
        complete: false,
        problem: None,
        created_at: None,
        finished_at: None,
        engines: Vec::new(),
        sources: Vec::new(),
        rows: BTreeMap::new(),
        datasets: 0,
        encrypted: false,
        locked: None,
        verified: None,
    };
    match metadata {
        Ok((header, manifest)) => {
            summary.complete = true;
            summary.created_at = Some(header.created_at);
            summary.finished_at = Some(manifest.finished_at);
            summary.engines = manifest.sources.iter().map(|s| s.engine).collect();
            summary.sources = manifest.sources.iter().map(source_label).collect();
            summary.encrypted = manifest.encryption.is_some();
            match &manifest.encryption {
                Some(info) => summary.locked = Some(needs_key(info)),
                None => count_datasets(&mut summary, &manifest),
            }
        }
        Err(problem) => summary.problem = Some(problem),
    }
    summary
}

/// Rows (documents) per engine and the number of datasets, from a full manifest.
fn count_datasets(summary: &mut ArchiveSummary, manifest: &Manifest) {
    summary.datasets = manifest.datasets.len();
    summary.rows.clear();
    for d in manifest.datasets.iter().filter(|d| d.is_table()) {
        *summary
            .rows
            .entry(d.engine.as_str().to_string())
            .or_default() += d.rows;
    }
}

/// What `list` says instead of an encrypted archive's counts when it has no key.
fn needs_key(info: &EncryptionInfo) -> String {
    if info.passphrase {
        "details need the passphrase: pass --passphrase-file FILE (or DBKEEPER_PASSPHRASE_FILE)"
            .into()
    } else {
        "details need the identity: pass --identity FILE (or DBKEEPER_IDENTITY_FILE, or \
         [encryption] identity_file)"
            .into()
    }
}

/// Opens a complete, encrypted local archive's encrypted manifest with `unlock` and fills in
/// the counts `list` shows (rows per engine, datasets). An archive the key does not open (made
/// for other recipients, another passphrase, damaged) keeps its counts hidden, and `locked`
/// says why: one archive must not hide the others. Only an identity file that cannot be read or
/// parsed is an error, since no archive could be opened with it.
pub fn reveal(summary: &mut ArchiveSummary, unlock: &Unlock) -> Result<()> {
    if !summary.complete || !summary.encrypted {
        return Ok(());
    }
    match open_sealed_manifest(&summary.path, unlock)? {
        Ok(full) => {
            count_datasets(summary, &full);
            summary.locked = None;
        }
        Err(why) => summary.locked = Some(why),
    }
    Ok(())
}

/// The full manifest of an encrypted archive, or why it cannot be read with `unlock`.
fn open_sealed_manifest(
    path: &Path,
    unlock: &Unlock,
) -> Result<std::result::Result<Manifest, String>> {
    let (_, clear) = match read_metadata(path) {
        Ok(metadata) => metadata,
        Err(problem) => return Ok(Err(problem)),
    };
    let Some(info) = clear.encryption.clone() else {
        return Ok(Err("is not encrypted".into()));
    };
    let keyring = match unlock {
        Unlock::IdentityFile(_) if info.passphrase => {
            return Ok(Err(
                "encrypted with a passphrase, not to a recipient: pass --passphrase-file FILE \
                 to see its details"
                    .into(),
            ))
        }
        Unlock::IdentityFile(file) => Keyring::from_identity_file(file)?,
        Unlock::Passphrase(_) if !info.passphrase => {
            return Ok(Err(format!(
                "encrypted to recipients ({}), not with a passphrase: pass --identity FILE to \
                 see its details",
                info.recipients.join(", ")
            )))
        }
        Unlock::Passphrase(passphrase) => {
            let key = match read_checked_member(path, &clear, KEY_MEMBER) {
                Ok(key) => key,
                Err(problem) => return Ok(Err(problem)),
            };
            match Keyring::from_key_member(&key, passphrase) {
                Ok(keyring) => keyring,
                Err(_) => return Ok(Err("the passphrase does not open it".into())),
            }
        }
    };
    let sealed = match read_checked_member(path, &clear, SEALED_MANIFEST_MEMBER) {
        Ok(sealed) => sealed,
        Err(problem) => return Ok(Err(problem)),
    };
    let plain = match keyring.open(&sealed) {
        Ok(plain) => plain,
        Err(OpenError::NoMatchingKey) => {
            return Ok(Err(format!(
                "the identity matches none of its recipients ({})",
                info.recipients.join(", ")
            )))
        }
        Err(OpenError::Damaged(why)) => {
            return Ok(Err(format!(
                "member {SEALED_MANIFEST_MEMBER} {why}: run dbkeeper verify on it"
            )))
        }
    };
    Ok(serde_json::from_slice(&plain)
        .map_err(|e| format!("member {SEALED_MANIFEST_MEMBER} is not a valid manifest: {e}")))
}

/// One member of a local archive whose size and SHA-256 the (COMMIT-checked) clear manifest
/// lists, read by walking the tar headers; an error if it is missing or does not match.
fn read_checked_member(
    path: &Path,
    manifest: &Manifest,
    name: &str,
) -> std::result::Result<Vec<u8>, String> {
    let expected = manifest
        .member(name)
        .ok_or_else(|| format!("has no member {name}"))?;
    if expected.size > MAX_METADATA_BYTES {
        return Err(format!("member {name} is implausibly large"));
    }
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| format!("not a tar archive: {}", printable(&e.to_string(), 120)))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("unreadable tar entry: {e}"))?;
        if entry.path_bytes().as_ref() != name.as_bytes() {
            continue;
        }
        let mut bytes = Vec::with_capacity(expected.size as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("member {name} is truncated: {e}"))?;
        if bytes.len() as u64 != expected.size
            || hex::encode(Sha256::digest(&bytes)) != expected.sha256
        {
            return Err(format!(
                "member {name} does not match its SHA-256 in {MANIFEST_MEMBER}: run dbkeeper \
                 verify on it"
            ));
        }
        return Ok(bytes);
    }
    Err(format!("has no member {name}"))
}

/// `postgres 127.0.0.1:5432/shop`: the engine, the hosts of the (redacted) URL, the database.
fn source_label(source: &crate::archive::Source) -> String {
    let hosts = source.url.split_once("://").map(|(_, rest)| {
        let rest = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
        rest.split(['/', '?']).next().unwrap_or(rest)
    });
    match hosts {
        Some(hosts) => format!("{} {hosts}/{}", source.engine.as_str(), source.database),
        None => format!("{} {}", source.engine.as_str(), source.database),
    }
}

fn read_metadata(path: &Path) -> std::result::Result<(Header, Manifest), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let source = FileSource::new(file).map_err(|e| format!("cannot open: {e}"))?;
    let not_tar = lacks_tar_magic(&source);
    let mut archive = tar::Archive::new(BufReader::new(source.file()));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| format!("not a tar archive: {}", printable(&e.to_string(), 120)))?;
    let (mut header, mut manifest, mut commit, mut last) = (None, None, None, String::new());
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            if last.is_empty() && not_tar {
                NOT_AN_ARCHIVE.to_string()
            } else if last.is_empty() {
                format!(
                    "unreadable first tar entry: {}",
                    printable(&e.to_string(), 120)
                )
            } else {
                format!(
                    "unreadable tar entry after {}: {}",
                    printable(&last, 120),
                    printable(&e.to_string(), 120)
                )
            }
        })?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let wanted = name == HEADER_MEMBER || name == MANIFEST_MEMBER || name == COMMIT_MEMBER;
        if wanted {
            if entry.size() > MAX_METADATA_BYTES {
                return Err(format!(
                    "member {name} is implausibly large ({} bytes)",
                    entry.size()
                ));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("member {name} is truncated: {e}"))?;
            match name.as_str() {
                HEADER_MEMBER => header = Some(bytes),
                MANIFEST_MEMBER => manifest = Some(bytes),
                _ => commit = Some(bytes),
            }
        }
        last = name;
    }
    let commit =
        commit.ok_or("no COMMIT member: the backup did not finish (truncated or interrupted)")?;
    if last != COMMIT_MEMBER {
        return Err(format!(
            "COMMIT is not the last member ({} follows it)",
            printable(&last, 120)
        ));
    }
    let manifest_bytes = manifest.ok_or("no MANIFEST.json member")?;
    let expected = hex::encode(Sha256::digest(&manifest_bytes));
    if String::from_utf8_lossy(&commit).trim() != expected {
        return Err(
            "COMMIT does not match MANIFEST.json: the manifest was altered or truncated".into(),
        );
    }
    let header: Header = serde_json::from_slice(&header.ok_or("no HEADER.json member")?)
        .map_err(|e| format!("HEADER.json is not valid: {e}"))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("MANIFEST.json is not valid: {e}"))?;
    Ok((header, manifest))
}

fn stamp_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_os_string();
    name.push(STAMP_SUFFIX);
    PathBuf::from(name)
}

fn file_identity(archive: &Path) -> Option<(u64, i64)> {
    let meta = std::fs::metadata(archive).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some((meta.len(), mtime))
}

/// Records that `archive` passed verification at `level`.
pub fn write_stamp(archive: &Path, level: &str) -> Result<()> {
    let (archive_size, archive_mtime_secs) = file_identity(archive).ok_or_else(|| {
        Error::bad_input(archive.display().to_string(), "cannot stat the archive")
    })?;
    let stamp = VerificationStamp {
        level: level.to_string(),
        verified_at: Utc::now(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        archive_size,
        archive_mtime_secs,
    };
    let path = stamp_path(archive);
    let text = serde_json::to_vec_pretty(&stamp).expect("stamp serializes");
    crate::private_fs::write_replace(&path, &text)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The archive's stamp, if present and still describing the file as it is now.
pub fn read_stamp(archive: &Path) -> Option<VerificationStamp> {
    let stamp: VerificationStamp =
        serde_json::from_slice(&std::fs::read(stamp_path(archive)).ok()?).ok()?;
    let (size, mtime) = file_identity(archive)?;
    (stamp.archive_size == size && stamp.archive_mtime_secs == mtime).then_some(stamp)
}

/// Deletes an archive and its stamp.
pub fn delete_archive(archive: &Path) -> Result<()> {
    std::fs::remove_file(archive)
        .map_err(|e| Error::io(format!("deleting {}", archive.display()), e))?;
    let _ = std::fs::remove_file(stamp_path(archive));
    Ok(())
}

/// Removes the `*.dbk.tar.partial` files in `dir`, plus `own_partial` (the partial file this
/// backup is about to create, whatever its name), and returns what was removed.
///
/// Only call this while holding the directory's [`crate::dirlock::DirLock`]: the lock
/// guarantees no other backup is writing into `dir`, so every partial file found is left over
/// from a run that was killed (SIGKILL, power loss) before it could delete its own. Without this
/// they would pile up, and a killed `--output FILE.tar` run would block the next one forever
/// (the partial file is created with `O_EXCL`).
pub fn remove_stale_partials(dir: &Path, own_partial: Option<&Path>) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading backup directory {}", dir.display()), e))?;
    let partial_suffix = format!("{ARCHIVE_SUFFIX}{}", super::PARTIAL_SUFFIX);
    let mut stale: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&partial_suffix))
        })
        .collect();
    stale.extend(own_partial.map(Path::to_path_buf));
    stale.sort();
    stale.dedup();
    let mut removed = Vec::new();
    for path in stale {
        if !path.is_file() {
            continue;
        }
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("removing stale {}", path.display()), e))?;
        tracing::warn!(
            "removed {}, left over by a backup that did not finish",
            path.display()
        );
        removed.push(path);
    }
    Ok(removed)
}
