//! Reading an archive: [`VerifiedArchive::open`] checks the whole file (V0) and only then gives
//! access to its members, so nothing can act on an archive that has not been checked.
//!
//! V0 (structure, every byte): the first member is `HEADER.json`, the last is `COMMIT` and holds
//! the SHA-256 of `MANIFEST.json`; every member is a regular file with a safe name, appears once,
//! and has the size and SHA-256 the manifest lists; there is no member the manifest does not
//! list; every dataset's chunks point at listed members and add up to the dataset's totals.
//! Problems are collected, not stopped at, so one report says everything that is wrong.
//!
//! V1 (decode): [`VerifiedArchive::verify_decode`] decompresses every chunk and re-counts its
//! records and content digest.
//!
//! Members are read back by position (`pread` on a file, a ranged GET on an object, through
//! [`RangedSource`]), re-checking their SHA-256, so parallel restore workers can share one open
//! archive and an archive changed after the check is still caught.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::chunk::{self, DecodedChunk};
use super::crypt::{Keyring, OpenError, Unlock, KEY_MEMBER, SEALED_MANIFEST_MEMBER};
use super::digest::ContentDigest;
use super::manifest::{
    ChunkEntry, Dataset, Header, Manifest, FORMAT_NAME, FORMAT_VERSION, OLDEST_READABLE_VERSION,
};
use super::{is_safe_member_name, COMMIT_MEMBER, HEADER_MEMBER, MANIFEST_MEMBER};
use crate::error::{Error, Result};
use crate::storage::source::{FileSource, RangedSource};

/// The archive argument that means standard input (`backup --output - | restore -`).
pub const STDIN_ARCHIVE: &str = "-";

/// Largest HEADER.json / MANIFEST.json / COMMIT read into memory.
const MAX_METADATA_BYTES: u64 = 256 << 20;
/// Largest uncompressed chunk accepted from a manifest (dbkeeper writes a few MiB).
pub const MAX_CHUNK_RAW_BYTES: u64 = 1 << 30;
/// How many problems one report lists before summarising the rest.
const MAX_LISTED_PROBLEMS: usize = 50;

#[derive(Debug, Clone)]
struct Location {
    offset: u64,
    size: u64,
    sha256: String,
}

/// An archive whose structure and every member's checksum have been verified (V0).
#[derive(Debug)]
pub struct VerifiedArchive {
    path: PathBuf,
    source: Arc<dyn RangedSource>,
    header: Header,
    manifest: Manifest,
    locations: HashMap<String, Location>,
    /// The keys of an encrypted archive, once [`VerifiedArchive::unlock`] succeeded.
    keyring: Option<Keyring>,
}

/// One thing wrong with an archive, found by V0 or V1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveProblem {
    /// The member at fault (`HEADER.json`, `postgres/data/.../000001.copy.gz`, `COMMIT`), or
    /// the dataset (`postgres public.users`) when the problem is a dataset's total.
    pub object: String,
    /// A sentence that names the object and says what is wrong.
    pub message: String,
}

impl std::fmt::Display for ArchiveProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Problems collected while checking; never stops at the first.
#[derive(Debug, Default)]
struct Problems(Vec<ArchiveProblem>);

impl Problems {
    fn add(&mut self, object: impl Into<String>, message: String) {
        self.0.push(ArchiveProblem {
            object: object.into(),
            message,
        });
    }

    /// For the problem that explains the others (no COMMIT: everything else follows from it).
    fn insert_first(&mut self, object: impl Into<String>, message: String) {
        self.0.insert(
            0,
            ArchiveProblem {
                object: object.into(),
                message,
            },
        );
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What V1 found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DecodeReport {
    pub datasets: usize,
    pub chunks: usize,
    pub rows: u64,
    pub raw_bytes: u64,
    /// Every problem found, each naming its member or dataset.
    pub problems: Vec<ArchiveProblem>,
}

/// The outcome of V0: a verified archive, or every problem that prevents using it.
pub enum Checked {
    Verified(Box<VerifiedArchive>),
    Damaged(Vec<ArchiveProblem>),
}

impl VerifiedArchive {
    /// Opens and fully checks an archive (V0). A damaged archive is [`Error::BadInput`] (exit
    /// 2) listing every problem found: for commands that *use* an archive, a damaged one is bad
    /// input. `verify`, whose job is finding damage, uses [`VerifiedArchive::check`].
    pub fn open(path: &Path) -> Result<VerifiedArchive> {
        match VerifiedArchive::check(path)? {
            Checked::Verified(archive) => Ok(*archive),
            Checked::Damaged(problems) => Err(damaged(path, &problems)),
        }
    }

    /// Reads an archive from a stream (`restore -`) into an unlinked temporary file in
    /// `$TMPDIR`, then checks it as [`VerifiedArchive::open`] does. A stream cannot be checked
    /// before it has been read to its end (the manifest and COMMIT come last), and nothing may
    /// touch a target before V0 passed: so the stream is kept whole first. The file disappears
    /// with the archive (or at once, if the process dies). Shown as `-` in messages.
    pub fn open_stream(mut stream: impl Read) -> Result<VerifiedArchive> {
        let spool_error = |e| {
            Error::io(
                format!(
                    "keeping the archive read from standard input in {} (it needs as much free \
                     space as the archive; set TMPDIR to a larger disk)",
                    std::env::temp_dir().display()
                ),
                e,
            )
        };
        let mut file = tempfile::tempfile().map_err(spool_error)?;
        std::io::copy(&mut stream, &mut file).map_err(spool_error)?;
        std::io::Seek::rewind(&mut file).map_err(spool_error)?;
        let path = Path::new(STDIN_ARCHIVE);
        let source = FileSource::new(file).map_err(spool_error)?;
        match VerifiedArchive::check_source(path, Arc::new(source))? {
            Checked::Verified(archive) => Ok(*archive),
            Checked::Damaged(problems) => Err(damaged(path, &problems)),
        }
    }

    /// V0, returning every problem as data. Only a path that is missing or a directory (usage
    /// errors) or failing to read the file at all is an error.
    pub fn check(path: &Path) -> Result<Checked> {
        let file = open_archive_file(path)?;
        let source = FileSource::new(file)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        VerifiedArchive::check_source(path, Arc::new(source))
    }

    /// [`VerifiedArchive::open`] for an archive read through `source` (an object in a bucket);
    /// `name` is how messages call it.
    pub fn open_source(name: &Path, source: Arc<dyn RangedSource>) -> Result<VerifiedArchive> {
        match VerifiedArchive::check_source(name, source)? {
            Checked::Verified(archive) => Ok(*archive),
            Checked::Damaged(problems) => Err(damaged(name, &problems)),
        }
    }

    /// [`VerifiedArchive::check`] for an archive read through `source`.
    pub fn check_source(path: &Path, source: Arc<dyn RangedSource>) -> Result<Checked> {
        let mut problems = Problems::default();
        let scan = scan(source.as_ref(), &mut problems)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let checked = check(scan, &mut problems);
        Ok(match checked {
            Some((header, manifest, locations)) if problems.is_empty() => {
                Checked::Verified(Box::new(VerifiedArchive {
                    path: path.to_path_buf(),
                    source,
                    header,
                    manifest,
                    locations,
                    keyring: None,
                }))
            }
            _ => Checked::Damaged(problems.0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The archive's file name (its whole path if it has none), for messages and the
    /// unfinished-restore marks.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Total size of all members, compressed.
    pub fn member_bytes(&self) -> u64 {
        self.locations.values().map(|l| l.size).sum()
    }

    /// How many members the archive has, `MANIFEST.json` and `COMMIT` included.
    pub fn member_count(&self) -> usize {
        self.locations.len()
    }

    pub fn has_member(&self, name: &str) -> bool {
        self.locations.contains_key(name)
    }

    /// Whether the archive is encrypted (its data needs [`VerifiedArchive::unlock`]).
    pub fn is_encrypted(&self) -> bool {
        self.manifest.encryption.is_some()
    }

    /// Whether the full manifest and every member can be read: unencrypted, or unlocked.
    pub fn is_readable(&self) -> bool {
        !self.is_encrypted() || self.keyring.is_some()
    }

    /// Opens an encrypted archive with `unlock` (an identity file or a passphrase), replacing
    /// the clear manifest by the full one after checking it against what V0 verified. Every
    /// failure is bad input (exit 2) that says what to do; nothing is read from the data yet.
    /// Does nothing for an unencrypted archive.
    pub fn unlock(&mut self, unlock: &Unlock) -> Result<()> {
        let Some(info) = self.manifest.encryption.clone() else {
            return Ok(());
        };
        let archive = format!("archive {}", self.path.display());
        let keyring = match unlock {
            Unlock::IdentityFile(path) if info.passphrase => {
                return Err(Error::bad_input(
                    archive,
                    format!(
                        "is encrypted with a passphrase, not to a recipient, so identity file {}                          cannot open it; pass --passphrase-file FILE (or                          DBKEEPER_PASSPHRASE_FILE)",
                        path.display()
                    ),
                ))
            }
            Unlock::IdentityFile(path) => Keyring::from_identity_file(path)?,
            Unlock::Passphrase(_) if !info.passphrase => {
                return Err(Error::bad_input(
                    archive,
                    format!(
                        "is encrypted to recipients ({}), not with a passphrase; pass --identity                          FILE (or DBKEEPER_IDENTITY_FILE) holding one of their secret keys",
                        info.recipients.join(", ")
                    ),
                ))
            }
            Unlock::Passphrase(passphrase) => {
                Keyring::from_key_member(&self.read_stored_member(KEY_MEMBER)?, passphrase)?
            }
        };
        let sealed = self.read_stored_member(SEALED_MANIFEST_MEMBER)?;
        let plain = keyring.open(&sealed).map_err(|e| match (e, unlock) {
            (OpenError::NoMatchingKey, Unlock::IdentityFile(path)) => Error::bad_input(
                format!("identity file {}", path.display()),
                format!(
                    "matches none of the recipients {archive} was made for ({}); pass the \
                     identity of one of them",
                    info.recipients.join(", ")
                ),
            ),
            (OpenError::NoMatchingKey, Unlock::Passphrase(_)) => Error::bad_input(
                format!("{archive}, member {SEALED_MANIFEST_MEMBER}"),
                "was not encrypted to the archive key that KEY.age holds",
            ),
            (OpenError::Damaged(why), _) => {
                Error::bad_input(format!("{archive}, member {SEALED_MANIFEST_MEMBER}"), why)
            }
        })?;
        let mut full: Manifest = serde_json::from_slice(&plain).map_err(|e| {
            Error::bad_input(
                format!("{archive}, member {SEALED_MANIFEST_MEMBER}"),
                format!("is not a valid manifest: {e}"),
            )
        })?;
        // The full manifest lists every member before itself; the clear one adds it.
        let clear = &self.manifest.members;
        let mut problems = Problems::default();
        if clear.split_last().map(|(_, before)| before) != Some(full.members.as_slice()) {
            problems.add(
                SEALED_MANIFEST_MEMBER,
                format!(
                    "the encrypted manifest and {MANIFEST_MEMBER} list different members: the \
                     archive was altered"
                ),
            );
        }
        full.members = clear.clone();
        full.encryption = Some(info);
        check_datasets(&full, &mut problems);
        if !problems.is_empty() {
            return Err(damaged(&self.path, &problems.0));
        }
        self.manifest = full;
        self.keyring = Some(keyring);
        Ok(())
    }

    /// One member's bytes as an unencrypted archive would hold them: re-checked against its
    /// SHA-256 and, in an encrypted archive, decrypted.
    pub fn read_member(&self, name: &str) -> Result<Vec<u8>> {
        let stored = self.read_stored_member(name)?;
        let in_clear = [HEADER_MEMBER, MANIFEST_MEMBER, COMMIT_MEMBER, KEY_MEMBER].contains(&name);
        if !self.is_encrypted() || in_clear {
            return Ok(stored);
        }
        let what = format!("archive {}, member {name}", self.path.display());
        let Some(keyring) = &self.keyring else {
            return Err(needs_key(&self.path));
        };
        keyring.open(&stored).map_err(|e| match e {
            OpenError::NoMatchingKey => Error::bad_input(
                what,
                "is not encrypted to this archive's recipients: the archive was altered",
            ),
            OpenError::Damaged(why) => Error::bad_input(what, why),
        })
    }

    /// One member's bytes as stored, re-checked against its SHA-256.
    pub fn read_stored_member(&self, name: &str) -> Result<Vec<u8>> {
        let loc = self.locations.get(name).ok_or_else(|| {
            Error::bad_input(
                format!("archive {}", self.path.display()),
                format!("has no member {name}"),
            )
        })?;
        let mut data = vec![0u8; loc.size as usize];
        self.source
            .read_exact_at(&mut data, loc.offset)
            .map_err(|e| {
                Error::io(
                    format!("reading member {name} of {}", self.path.display()),
                    e,
                )
            })?;
        if hex::encode(Sha256::digest(&data)) != loc.sha256 {
            return Err(Error::bad_input(
                format!("archive {}", self.path.display()),
                format!("member {name} changed after the archive was verified"),
            ));
        }
        Ok(data)
    }

    /// Reads and decompresses one chunk of `dataset`, checking its record count.
    pub fn read_chunk(&self, dataset: &Dataset, chunk: &ChunkEntry) -> Result<DecodedChunk> {
        let packed = self.read_member(&chunk.member)?;
        let decoded = chunk::decode(&packed, chunk.codec, chunk.raw_bytes, dataset.format)
            .map_err(|message| {
                Error::bad_input(
                    format!("archive {}, member {}", self.path.display(), chunk.member),
                    message,
                )
            })?;
        if decoded.rows() != chunk.rows {
            return Err(Error::bad_input(
                format!("archive {}, member {}", self.path.display(), chunk.member),
                format!(
                    "holds {} records, the manifest says {}",
                    decoded.rows(),
                    chunk.rows
                ),
            ));
        }
        Ok(decoded)
    }

    /// V1: decompresses every chunk on `jobs` threads, re-counts records and recomputes each
    /// dataset's content digest. Collects every problem.
    pub fn verify_decode(&self, jobs: usize) -> DecodeReport {
        let work: Vec<(usize, &ChunkEntry)> = self
            .manifest
            .datasets
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.chunks.iter().map(move |c| (i, c)))
            .collect();
        let next = AtomicUsize::new(0);
        let digests = Mutex::new(vec![ContentDigest::new(); self.manifest.datasets.len()]);
        let failed = Mutex::new(vec![false; self.manifest.datasets.len()]);
        let problems = Mutex::new(Problems::default());
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(dataset_index, chunk)) = work.get(i) else {
                        break;
                    };
                    let dataset = &self.manifest.datasets[dataset_index];
                    match self.read_chunk(dataset, chunk) {
                        Ok(decoded) => {
                            digests.lock().unwrap()[dataset_index].merge(&decoded.digest)
                        }
                        Err(e) => {
                            failed.lock().unwrap()[dataset_index] = true;
                            problems
                                .lock()
                                .unwrap()
                                .add(chunk.member.clone(), e.to_string());
                        }
                    }
                });
            }
        });
        let mut problems = problems.into_inner().unwrap();
        problems.0.sort_by(|a, b| a.object.cmp(&b.object));
        let digests = digests.into_inner().unwrap();
        let failed = failed.into_inner().unwrap();
        for ((dataset, digest), failed) in self.manifest.datasets.iter().zip(&digests).zip(failed) {
            // A damaged chunk was already reported; its dataset's digest is bound to differ.
            if !failed && digest.to_hex() != dataset.digest {
                problems.add(
                    format!("{} {}", dataset.engine.as_str(), dataset.qualified_name()),
                    format!(
                        "{} {}: content digest {} does not match the manifest's {}",
                        dataset.engine,
                        dataset.qualified_name(),
                        digest.to_hex(),
                        dataset.digest
                    ),
                );
            }
        }
        DecodeReport {
            datasets: self.manifest.datasets.len(),
            chunks: work.len(),
            // Records of tables and collections; large-object pieces are not rows.
            rows: self
                .manifest
                .datasets
                .iter()
                .filter(|d| d.is_table())
                .map(|d| d.rows)
                .sum(),
            raw_bytes: self.manifest.datasets.iter().map(|d| d.raw_bytes).sum(),
            problems: problems.0,
        }
    }
}

/// Opens the file an archive argument names. A path that does not exist or is a directory is
/// bad input (exit 2) said in those words, not reported as an I/O failure or a truncated archive.
fn open_archive_file(path: &Path) -> Result<File> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!(
                "archive {} does not exist",
                path.display()
            )))
        }
        Ok(meta) if meta.is_dir() => {
            return Err(Error::Usage(format!(
                "{} is a directory, not an archive",
                path.display()
            )))
        }
        _ => {}
    }
    File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// The problem reported for a file whose first tar header is unreadable and lacks the tar magic.
pub(crate) const NOT_AN_ARCHIVE: &str =
    "not a dbkeeper archive: it is not a tar file (its first header is unreadable)";

/// What a file that is not a tar at all is, recognised by its first bytes: the formats people
/// mistake for a dbkeeper archive, each with what to do instead.
pub(crate) fn foreign_format(source: &dyn RangedSource) -> Option<&'static str> {
    let mut start = [0u8; 32];
    let n = start
        .len()
        .min(usize::try_from(source.len()).unwrap_or(usize::MAX));
    source.read_exact_at(&mut start[..n], 0).ok()?;
    let start = &start[..n];
    if start.starts_with(b"PGDMP") {
        Some("it is a pg_dump custom-format dump (pg_dump -Fc); restore it with pg_restore")
    } else if start.starts_with(&[0x1f, 0x8b]) {
        Some(
            "it is gzip-compressed (a .tar.gz?); dbkeeper archives are plain tar files: if this \
             one was compressed afterwards, decompress it first (gunzip)",
        )
    } else if start.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(
            "it is zstd-compressed; dbkeeper archives are plain tar files: if this one was \
             compressed afterwards, decompress it first (zstd -d)",
        )
    } else if start.starts_with(b"--\n-- PostgreSQL database dump") {
        Some("it is a pg_dump SQL script; run it with psql")
    } else {
        None
    }
}

/// Whether the file is long enough to hold the `ustar` magic every archive dbkeeper writes
/// carries in its first header, and does not. Such a file whose first header does not parse is
/// not an archive at all; with the magic (or cut before it) it is a damaged or truncated archive,
/// and reported as one.
pub(crate) fn lacks_tar_magic(source: &dyn RangedSource) -> bool {
    let mut start = [0u8; 262];
    source.read_exact_at(&mut start, 0).is_ok() && &start[257..262] != b"ustar"
}

/// `text` safe to print on a terminal: control characters, the replacement character (what
/// lossy UTF-8 decoding makes of binary bytes) and other non-ASCII text are escaped, and the
/// result is cut after about `max` bytes. For messages that may quote bytes of a file that is not
/// an archive, like the tar crate's errors about a garbage header.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() >= max {
            out.push_str("...");
            break;
        }
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// The error for using an encrypted archive without its key: names the flags.
pub fn needs_key(path: &Path) -> Error {
    Error::Usage(format!(
        "archive {} is encrypted: pass --identity FILE (or set DBKEEPER_IDENTITY_FILE, or \
         [encryption] identity_file) with a secret key of one of its recipients, or \
         --passphrase-file FILE (DBKEEPER_PASSPHRASE_FILE) if it was made with a passphrase",
        path.display()
    ))
}

fn damaged(path: &Path, problems: &[ArchiveProblem]) -> Error {
    // A file of another kind is named as such, not called damaged.
    if let [only] = problems {
        if let Some(what) = only.message.strip_prefix("not a dbkeeper archive") {
            return Error::bad_input(
                format!("archive {}", path.display()),
                format!("is not a dbkeeper archive{what}"),
            );
        }
    }
    let mut message = String::from("is damaged or incomplete; refusing to use it:");
    for p in problems.iter().take(MAX_LISTED_PROBLEMS) {
        message.push_str("\n  - ");
        message.push_str(&p.message);
    }
    if problems.len() > MAX_LISTED_PROBLEMS {
        message.push_str(&format!(
            "\n  ... and {} more",
            problems.len() - MAX_LISTED_PROBLEMS
        ));
    }
    Error::bad_input(format!("archive {}", path.display()), message)
}

/// What one pass over the tar stream found.
#[derive(Default)]
struct Scan {
    order: Vec<String>,
    locations: HashMap<String, Location>,
    header: Option<Vec<u8>>,
    manifest: Option<Vec<u8>>,
    commit: Option<Vec<u8>>,
    /// The first tar header was unreadable: the file is not an archive, so "no COMMIT" would
    /// only repeat that.
    not_an_archive: bool,
}

/// Reads every tar entry once, hashing its data. Structural problems go to `problems`; only an
/// I/O error on the file itself is returned as an error.
fn scan(source: &dyn RangedSource, problems: &mut Problems) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    if let Some(what) = foreign_format(source) {
        problems.add("archive", format!("not a dbkeeper archive: {what}"));
        out.not_an_archive = true;
        return Ok(out);
    }
    let file_len = source.len();
    let mut archive = tar::Archive::new(source.sequential()?);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            problems.add(
                "archive",
                format!("not a tar archive: {}", printable(&e.to_string(), 120)),
            );
            return Ok(out);
        }
    };
    for (index, entry) in entries.enumerate() {
        let last = out
            .order
            .last()
            .cloned()
            .unwrap_or_else(|| "(start)".into());
        let mut entry = match entry {
            Ok(entry) => entry,
            // A first header without the tar magic: a random file, not a damaged archive.
            Err(_) if index == 0 && lacks_tar_magic(source) => {
                problems.add("archive", NOT_AN_ARCHIVE.to_string());
                out.not_an_archive = true;
                break;
            }
            Err(e) => {
                problems.add(
                    &last,
                    format!(
                        "unreadable tar entry after member {last}: {}",
                        printable(&e.to_string(), 120)
                    ),
                );
                break;
            }
        };
        let Ok(name) = String::from_utf8(entry.path_bytes().into_owned()) else {
            problems.add(
                &last,
                format!("member after {last} has a name that is not UTF-8"),
            );
            continue;
        };
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            problems.add(
                &name,
                format!("member {name:?} is a {kind:?} entry; only regular files are allowed"),
            );
            continue;
        }
        if !is_safe_member_name(&name) {
            problems.add(
                &name,
                format!(
                    "member {name:?} has an unsafe name (absolute, `..` or control characters)"
                ),
            );
            continue;
        }
        let size = entry.size();
        let offset = entry.raw_file_position();
        if offset.checked_add(size).is_none_or(|end| end > file_len) {
            problems.add(&name, format!(
                "member {name} declares {size} bytes but the file ends first: the archive is truncated"
            ));
            break;
        }
        if index == 0 && name != HEADER_MEMBER {
            problems.add(
                &name,
                format!("the first member is {name}, not {HEADER_MEMBER}"),
            );
        }
        if out.commit.is_some() {
            problems.add(&name, format!("member {name} comes after {COMMIT_MEMBER}"));
        }
        let is_metadata = [HEADER_MEMBER, MANIFEST_MEMBER, COMMIT_MEMBER].contains(&name.as_str());
        if is_metadata && size > MAX_METADATA_BYTES {
            problems.add(
                &name,
                format!("member {name} is implausibly large ({size} bytes)"),
            );
            continue;
        }
        let mut hasher = Sha256::new();
        let mut kept = Vec::new();
        let read = if is_metadata {
            let n = (&mut entry).take(size).read_to_end(&mut kept)? as u64;
            hasher.update(&kept);
            n
        } else {
            std::io::copy(&mut (&mut entry).take(size), &mut hasher)?
        };
        if read != size {
            problems.add(
                &name,
                format!(
                    "member {name} ends after {read} of {size} bytes: the archive is truncated"
                ),
            );
            break;
        }
        let location = Location {
            offset,
            size,
            sha256: hex::encode(hasher.finalize()),
        };
        if out.locations.insert(name.clone(), location).is_some() {
            problems.add(&name, format!("member {name} appears more than once"));
        }
        match name.as_str() {
            HEADER_MEMBER => out.header = Some(kept),
            MANIFEST_MEMBER => out.manifest = Some(kept),
            COMMIT_MEMBER => out.commit = Some(kept),
            _ => {}
        }
        out.order.push(name);
    }
    Ok(out)
}

type CheckedParts = (Header, Manifest, HashMap<String, Location>);

/// Cross-checks what the scan found against COMMIT and the manifest.
fn check(scan: Scan, problems: &mut Problems) -> Option<CheckedParts> {
    if scan.not_an_archive {
        return None;
    }
    let Some(commit) = scan.commit else {
        let ends = match scan.order.last() {
            Some(last) => format!("the archive ends after member {last}"),
            None => "the archive holds no complete member".to_string(),
        };
        problems.insert_first(
            COMMIT_MEMBER,
            format!(
                "no {COMMIT_MEMBER} member: {ends}; it is truncated or the backup that wrote it \
                 did not finish"
            ),
        );
        return None;
    };
    let Some(manifest_bytes) = scan.manifest else {
        problems.add(MANIFEST_MEMBER, format!("no {MANIFEST_MEMBER} member"));
        return None;
    };
    let manifest_sha = hex::encode(Sha256::digest(&manifest_bytes));
    if String::from_utf8_lossy(&commit).trim_end() != manifest_sha {
        problems.add(
            MANIFEST_MEMBER,
            format!(
                "{COMMIT_MEMBER} does not hold the SHA-256 of {MANIFEST_MEMBER}: the manifest was \
             altered or the commit marker is damaged"
            ),
        );
        return None;
    }
    let header: Header = match scan.header.as_deref().map(serde_json::from_slice) {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            problems.add(HEADER_MEMBER, format!("{HEADER_MEMBER} is not valid: {e}"));
            return None;
        }
        None => {
            problems.add(HEADER_MEMBER, format!("no {HEADER_MEMBER} member"));
            return None;
        }
    };
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            problems.add(
                MANIFEST_MEMBER,
                format!("{MANIFEST_MEMBER} is not valid: {e}"),
            );
            return None;
        }
    };
    if manifest.format != FORMAT_NAME
        || !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&manifest.format_version)
    {
        problems.add(
            MANIFEST_MEMBER,
            format!(
                "format {} version {} is not supported by this dbkeeper (it reads {FORMAT_NAME} \
             versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}); use the dbkeeper version \
             that wrote it ({})",
                manifest.format, manifest.format_version, manifest.tool_version
            ),
        );
        return None;
    }

    let mut listed = HashSet::new();
    for entry in &manifest.members {
        if !listed.insert(entry.name.as_str()) {
            problems.add(
                &entry.name,
                format!("the manifest lists member {} twice", entry.name),
            );
        }
        match scan.locations.get(&entry.name) {
            None => problems.add(&entry.name, format!("member {} is missing", entry.name)),
            Some(loc) if loc.size != entry.size => problems.add(
                &entry.name,
                format!(
                    "member {} has {} bytes, the manifest says {}",
                    entry.name, loc.size, entry.size
                ),
            ),
            Some(loc) if loc.sha256 != entry.sha256 => problems.add(
                &entry.name,
                format!(
                    "member {} is corrupt: its SHA-256 does not match the manifest",
                    entry.name
                ),
            ),
            Some(_) => {}
        }
    }
    for name in &scan.order {
        if !listed.contains(name.as_str()) && name != MANIFEST_MEMBER && name != COMMIT_MEMBER {
            problems.add(name, format!("member {name} is not listed in the manifest"));
        }
    }
    check_datasets(&manifest, problems);
    Some((header, manifest, scan.locations))
}

fn check_datasets(manifest: &Manifest, problems: &mut Problems) {
    let mut used = HashSet::new();
    for dataset in &manifest.datasets {
        let name = format!("{} {}", dataset.engine, dataset.qualified_name());
        for chunk in &dataset.chunks {
            if !used.insert(chunk.member.as_str()) {
                problems.add(
                    &chunk.member,
                    format!("{name}: chunk {} is used twice", chunk.member),
                );
            }
            match manifest.member(&chunk.member) {
                Some(m) if m.size == chunk.size && m.sha256 == chunk.sha256 => {}
                Some(_) => problems.add(
                    &chunk.member,
                    format!(
                        "{name}: chunk {} disagrees with its member entry",
                        chunk.member
                    ),
                ),
                None => problems.add(
                    &chunk.member,
                    format!("{name}: chunk {} is not a listed member", chunk.member),
                ),
            }
            if chunk.raw_bytes > MAX_CHUNK_RAW_BYTES {
                problems.add(
                    &chunk.member,
                    format!(
                    "{name}: chunk {} declares {} uncompressed bytes (limit {MAX_CHUNK_RAW_BYTES})",
                    chunk.member, chunk.raw_bytes
                ),
                );
            }
        }
        let rows: u64 = dataset.chunks.iter().map(|c| c.rows).sum();
        let raw: u64 = dataset.chunks.iter().map(|c| c.raw_bytes).sum();
        if rows != dataset.rows || raw != dataset.raw_bytes {
            problems.add(
                &name,
                format!(
                    "{name}: chunks hold {rows} rows / {raw} bytes, the dataset says {} / {}",
                    dataset.rows, dataset.raw_bytes
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// Regression: messages continued over several source lines without `\` carried the next
    /// line's indentation into the text ("or          [encryption] identity_file").
    #[test]
    fn the_missing_key_message_reads_as_one_sentence() {
        let message = super::needs_key(std::path::Path::new("nightly.dbk.tar")).to_string();
        assert!(!message.contains("  "), "{message}");
        assert!(message.contains("--identity FILE") && message.contains("--passphrase-file"));
    }
}
