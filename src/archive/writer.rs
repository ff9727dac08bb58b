//! Writing an archive: one [`ArchiveWriter`] owns the output and appends complete members.
//!
//! tar needs each member's size before its data, so members arrive as finished byte buffers
//! ([`Member`], hashed when built, typically on a worker thread). Exactly one writer exists per
//! archive; parallel dump workers send it members through a bounded channel.
//!
//! Finality: [`ArchiveWriter::finish`] writes `MANIFEST.json` (listing every member) and then
//! `COMMIT`. For files, [`ArchiveWriter::create_file`] writes to `<final>.partial`, and only
//! [`ArchiveWriter::finish_file`] flushes, fsyncs and renames it. Dropping the writer on an error
//! path removes the `.partial` file and never renames anything.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::crypt::{Sealer, KEY_MEMBER, SEALED_MANIFEST_MEMBER};
use super::manifest::{Header, Manifest, MemberEntry};
use super::write_behind::WriteBehind;
use super::{is_safe_member_name, COMMIT_MEMBER, HEADER_MEMBER, MANIFEST_MEMBER, PARTIAL_SUFFIX};
use crate::error::{Error, Result};

/// A complete member: name, bytes and their SHA-256 (computed here, so they always agree).
#[derive(Debug)]
pub struct Member {
    name: String,
    data: Vec<u8>,
    sha256: String,
    /// Already encrypted (an age file): the writer of an encrypted archive stores it as is.
    sealed: bool,
}

impl Member {
    pub fn new(name: impl Into<String>, data: Vec<u8>) -> Member {
        let sha256 = hex::encode(Sha256::digest(&data));
        Member {
            name: name.into(),
            data,
            sha256,
            sealed: false,
        }
    }

    /// A member whose bytes are already encrypted for the archive.
    pub fn sealed(name: impl Into<String>, data: Vec<u8>) -> Member {
        Member {
            sealed: true,
            ..Member::new(name, data)
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn entry(&self) -> MemberEntry {
        MemberEntry {
            name: self.name.clone(),
            size: self.data.len() as u64,
            sha256: self.sha256.clone(),
        }
    }
}

/// Appends members to a tar stream and finishes it with MANIFEST.json and COMMIT.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
    members: Vec<MemberEntry>,
    names: HashSet<String>,
    mtime: u64,
    /// Where the archive goes, for error messages.
    destination: String,
    /// Set for an encrypted archive: every member but HEADER.json, MANIFEST.json, COMMIT and
    /// KEY.age is stored encrypted.
    sealer: Option<Arc<Sealer>>,
}

impl ArchiveWriter<PartialFile> {
    /// Starts an archive at `<final_path>.partial` (which must not exist) and writes its header.
    pub fn create_file(final_path: &Path, header: &Header) -> Result<ArchiveWriter<PartialFile>> {
        let file = PartialFile::create(final_path)?;
        let destination = file.partial_path().display().to_string();
        ArchiveWriter::new(file, header, destination)
    }

    /// Finishes the archive, fsyncs it and renames it to its final name. Returns that path.
    pub fn finish_file(self, manifest: &mut Manifest) -> Result<PathBuf> {
        self.finish(manifest)?.commit()
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive on `out` by writing `HEADER.json`. `destination` names `out` in errors.
    pub fn new(out: W, header: &Header, destination: String) -> Result<ArchiveWriter<W>> {
        let mut writer = ArchiveWriter {
            tar: tar::Builder::new(out),
            members: Vec::new(),
            names: HashSet::new(),
            mtime: header.created_at.timestamp().max(0) as u64,
            destination,
            sealer: None,
        };
        let json = to_json(header)?;
        writer.write_member(&Member::new(HEADER_MEMBER, json))?;
        Ok(writer)
    }

    /// Makes this an encrypted archive: from now on every member is stored encrypted with
    /// `sealer` (chunks arrive already encrypted by their worker, see
    /// [`super::chunk::Encoding::seal`]). In passphrase mode this writes `KEY.age`. Call it
    /// right after creating the writer, before any other member.
    pub fn encrypt_with(&mut self, sealer: Arc<Sealer>) -> Result<()> {
        if self.members.len() > 1 {
            return Err(Error::io(
                "encrypting the archive",
                std::io::Error::other("encryption must be set before the first data member"),
            ));
        }
        if let Some(key) = sealer.key_member() {
            self.write_member(&Member::new(KEY_MEMBER, key.to_vec()))?;
        }
        self.sealer = Some(sealer);
        Ok(())
    }

    /// Appends one member. Names must be safe, unique and not one of the reserved names.
    pub fn append(&mut self, member: Member) -> Result<MemberEntry> {
        if [
            HEADER_MEMBER,
            MANIFEST_MEMBER,
            COMMIT_MEMBER,
            KEY_MEMBER,
            SEALED_MANIFEST_MEMBER,
        ]
        .contains(&member.name.as_str())
        {
            return Err(Error::bad_input(
                &member.name,
                "is a reserved archive member name",
            ));
        }
        let member = self.seal(member)?;
        self.write_member(&member)
    }

    /// `member` as an encrypted archive stores it.
    fn seal(&self, member: Member) -> Result<Member> {
        match &self.sealer {
            Some(sealer) if !member.sealed => {
                let sealed = sealer.seal(&member.data).map_err(|e| {
                    Error::io(format!("encrypting archive member {}", member.name), e)
                })?;
                Ok(Member::sealed(member.name, sealed))
            }
            _ => Ok(member),
        }
    }

    /// The members written so far, in order.
    pub fn members(&self) -> &[MemberEntry] {
        &self.members
    }

    /// Writes `MANIFEST.json` (with `members` filled in from what was written) and `COMMIT`,
    /// ends the tar stream and flushes. Returns the output, which the caller still has to make
    /// durable (see [`ArchiveWriter::finish_file`]).
    ///
    /// Encrypted, the full manifest goes into the encrypted member `MANIFEST.json.age` and
    /// `MANIFEST.json` is its [`Manifest::clear_view`]; `manifest` stays the full one.
    pub fn finish(mut self, manifest: &mut Manifest) -> Result<W> {
        manifest.members = self.members.clone();
        let manifest_json = match self.sealer.clone() {
            None => to_json(manifest)?,
            Some(sealer) => {
                manifest.encryption = Some(sealer.info().clone());
                let full = Member::new(SEALED_MANIFEST_MEMBER, to_json(manifest)?);
                let full = self.seal(full)?;
                self.write_member(&full)?;
                to_json(&manifest.clear_view(self.members.clone(), sealer.info().clone()))?
            }
        };
        let manifest_member = Member::new(MANIFEST_MEMBER, manifest_json);
        let commit = format!("{}\n", manifest_member.sha256);
        self.write_member(&manifest_member)?;
        self.write_member(&Member::new(COMMIT_MEMBER, commit.into_bytes()))?;
        let mut out = self
            .tar
            .into_inner()
            .map_err(|e| Error::io(format!("finishing archive {}", self.destination), e))?;
        out.flush()
            .map_err(|e| Error::io(format!("flushing archive {}", self.destination), e))?;
        Ok(out)
    }

    fn write_member(&mut self, member: &Member) -> Result<MemberEntry> {
        if !is_safe_member_name(&member.name) {
            return Err(Error::bad_input(
                &member.name,
                "is not a safe archive member name",
            ));
        }
        if !self.names.insert(member.name.clone()) {
            return Err(Error::bad_input(
                &member.name,
                "was added to the archive twice",
            ));
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(member.data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut header, &member.name, member.data.as_slice())
            .map_err(|e| {
                Error::io(
                    format!(
                        "writing member {} to archive {}",
                        member.name, self.destination
                    ),
                    e,
                )
            })?;
        let entry = member.entry();
        self.members.push(entry.clone());
        Ok(entry)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut json = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::io("serializing archive metadata", std::io::Error::other(e)))?;
    json.push(b'\n');
    Ok(json)
}

/// The `.partial` files this process is writing. An interrupted command drops its future, but a
/// backup's writer thread may still hold its file when the process exits: the signal handler
/// removes these ([`remove_unfinished`]) so an interrupted backup never leaves one behind.
static UNFINISHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes every `.partial` file still being written. For the signal handler, just before the
/// process exits: a writer still holding one writes into an unlinked file.
pub fn remove_unfinished() {
    let paths = std::mem::take(&mut *UNFINISHED.lock().unwrap_or_else(|e| e.into_inner()));
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

fn forget_unfinished(path: &Path) {
    UNFINISHED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| p != path);
}

/// A file written under `<final>.partial` and renamed to `<final>` only by [`PartialFile::commit`],
/// after an fsync. Dropped uncommitted, it deletes itself.
pub struct PartialFile {
    final_path: PathBuf,
    partial_path: PathBuf,
    file: Option<BufWriter<WriteBehind>>,
}

impl PartialFile {
    pub fn create(final_path: &Path) -> Result<PartialFile> {
        if final_path.exists() {
            return Err(Error::Usage(format!(
                "{} already exists and an archive is never overwritten: choose another --output",
                final_path.display()
            )));
        }
        let mut partial = final_path.as_os_str().to_owned();
        partial.push(PARTIAL_SUFFIX);
        let partial_path = PathBuf::from(partial);
        // 0600 whatever the umask: an archive is a copy of production.
        let file = crate::private_fs::create_new(&partial_path)
            .map_err(|e| Error::io(format!("creating {}", partial_path.display()), e))?;
        UNFINISHED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(partial_path.clone());
        Ok(PartialFile {
            final_path: final_path.to_path_buf(),
            partial_path,
            file: Some(BufWriter::with_capacity(1 << 20, WriteBehind::new(file))),
        })
    }

    pub fn partial_path(&self) -> &Path {
        &self.partial_path
    }

    /// Flushes, fsyncs, renames to the final name and fsyncs the directory so the rename itself
    /// survives a crash.
    pub fn commit(mut self) -> Result<PathBuf> {
        let file = self
            .file
            .take()
            .expect("a PartialFile is committed at most once");
        let result = self.sync_and_rename(file);
        forget_unfinished(&self.partial_path);
        if result.is_err() {
            // Never leave a half-committed archive behind.
            let _ = std::fs::remove_file(&self.partial_path);
        }
        result
    }

    fn sync_and_rename(&self, file: BufWriter<WriteBehind>) -> Result<PathBuf> {
        let partial = self.partial_path.display().to_string();
        let file = file
            .into_inner()
            .map_err(|e| Error::io(format!("writing {partial}"), e.into_error()))?
            .into_inner();
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {partial} to disk"), e))?;
        drop(file);
        std::fs::rename(&self.partial_path, &self.final_path).map_err(|e| {
            Error::io(
                format!("renaming {partial} to {}", self.final_path.display()),
                e,
            )
        })?;
        let dir = match self.final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Ok(dir) = File::open(&dir) {
            // Best effort: some filesystems refuse to fsync a directory; the data itself is synced.
            let _ = dir.sync_all();
        }
        Ok(self.final_path.clone())
    }
}

impl Write for PartialFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("writing after commit").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("flushing after commit").flush()
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial_path);
            forget_unfinished(&self.partial_path);
        }
    }
}
