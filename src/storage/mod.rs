//! Where archives live: a local directory (or stdout), or a prefix in object storage
//! (`s3://bucket/prefix/`, `gs://…`, `az://…`, through the `object_store` crate).
//!
//! Every verb that takes a backup directory or an archive path parses it with
//! [`Location::parse`] first, so an object URL is never mistaken for a local path (a backup to
//! `s3://bucket/x/` once wrote into a directory named `s3:`) and a malformed URL is refused
//! with exit 2 naming the flag or config key it came from.
//!
//! [`ArchiveStore`] is the seam: create an archive that appears under its final name only when
//! complete, open one for ranged reads, list, delete, lock, and keep verification stamps beside
//! the archive. [`object::ObjectDir`] implements it for buckets; the local directory keeps its
//! implementation in `archive::writer` / `archive::catalog` / `dirlock`, which the
//! [`local::LocalDir`] adapter exposes through the same trait.

pub mod local;
pub mod lock;
pub mod object;
pub mod sink;
pub mod source;
pub mod upload;
pub mod upload_marker;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::archive::catalog::{ArchiveSummary, VerificationStamp};
use crate::error::{Error, Result};

pub use source::RangedSource;

/// The URL schemes that name object storage.
pub const OBJECT_SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// Where a backup directory or an archive is: local, or in object storage.
#[derive(Debug, Clone)]
pub enum Location {
    Local(PathBuf),
    Object(Arc<object::ObjectLocation>),
}

impl Location {
    /// Parses a directory or archive argument. `origin` names where it came from (`--output`,
    /// `[backup] output`, `ARCHIVE`) for the error a malformed URL gets.
    pub fn parse(raw: &std::path::Path, origin: &str, settings: &StorageSection) -> Result<Self> {
        let Some(text) = raw.to_str() else {
            return Ok(Location::Local(raw.to_path_buf()));
        };
        match scheme_of(text) {
            None => Ok(Location::Local(raw.to_path_buf())),
            Some(_) => Ok(Location::Object(Arc::new(object::ObjectLocation::parse(
                text, origin, settings,
            )?))),
        }
    }

    /// How messages name it: the path, or the object's URL.
    pub fn describe(&self) -> String {
        match self {
            Location::Local(path) => path.display().to_string(),
            Location::Object(object) => object.url(),
        }
    }

    /// Whether `raw` names object storage (`s3://…`, or a malformed attempt at one such as
    /// `s3:bucket`), rather than a local path.
    pub fn is_object_url(raw: &str) -> bool {
        scheme_of(raw).is_some()
    }
}

/// `Some(scheme)` when `text` starts with `<scheme>:` for a scheme that is not a plausible
/// local path: the object schemes, and any `word://`.
fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, rest) = text.split_once(':')?;
    let is_word = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_word {
        return None;
    }
    if OBJECT_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) || rest.starts_with("//") {
        Some(scheme)
    } else {
        None
    }
}

/// A secret from the config file: never shown by `Debug` or in any message.
#[derive(Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[storage]` in dbkeeper.toml. Every field is optional: the standard environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`; `GOOGLE_*`; `AZURE_*`) are read first and a key set
/// here overrides them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// S3-compatible endpoint (`http://127.0.0.1:9000`); `http://` is allowed for it.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// Virtual-hosted-style requests (`bucket.endpoint`) instead of path style.
    pub virtual_hosted_style: Option<bool>,
    /// First multipart part size in MiB (default 8). Later parts grow, see [`upload::PartSizes`].
    pub part_size_mib: Option<u64>,
    /// The provider's limit on parts per upload (default 10000; some allow only 1000).
    pub max_parts: Option<u64>,
    /// Retries of a failed request (throttling, 5xx, connection reset), with backoff (default 10).
    pub max_retries: Option<usize>,
}

/// What the seam offers for one backup directory or bucket prefix.
#[async_trait::async_trait]
pub trait ArchiveStore: Send + Sync {
    /// How the location is shown to the user (`backups`, `s3://bucket/nightly/`).
    fn display(&self) -> String;
    /// Every complete or damaged `*.dbk.tar`, newest first.
    async fn list(&self) -> Result<Vec<ArchiveSummary>>;
    /// Deletes an archive (by the id [`ArchiveStore::list`] gave it) and its stamp.
    async fn delete(&self, id: &str) -> Result<()>;
    /// Records a passed verification beside the archive.
    async fn write_stamp(&self, id: &str, level: &str) -> Result<()>;
    /// The stamp of an archive, when it still matches the archive.
    async fn read_stamp(&self, id: &str) -> Option<VerificationStamp>;
    /// Takes the overlapping-run lock for `command` (`backup`, `prune`), with the same exit code
    /// and message wherever the archives live; held until the returned guard drops.
    async fn lock(&self, command: &str) -> Result<RunLock>;
    /// Under the lock: removes what killed runs left behind (`.partial` files, abandoned
    /// multipart uploads), except `current`, this run's own archive id.
    async fn remove_abandoned(&self, current: Option<&str>) -> Result<()>;
}

/// An overlapping-run lock on a directory or prefix, released on drop.
pub struct RunLock {
    _held: Box<dyn Send + Sync>,
}

impl RunLock {
    pub fn new(held: impl Send + Sync + 'static) -> RunLock {
        RunLock {
            _held: Box::new(held),
        }
    }
}

/// The archives at a directory or bucket-prefix location.
pub fn archive_store(location: &Location) -> Box<dyn ArchiveStore> {
    match location {
        Location::Local(dir) => Box::new(local::LocalDir::new(dir.clone())),
        Location::Object(prefix) => Box::new(object::ObjectDir::new(prefix.clone())),
    }
}

/// V0 of the archive at `location` (a file, or an object read by ranged GETs), as data.
pub async fn check_archive(location: &Location) -> Result<crate::archive::reader::Checked> {
    use crate::archive::reader::VerifiedArchive;
    match location {
        Location::Local(path) => {
            let path = path.clone();
            blocking(move || VerifiedArchive::check(&path)).await
        }
        Location::Object(object) => {
            let source: Arc<dyn RangedSource> = Arc::new(object.open_source().await?);
            let name = PathBuf::from(object.url());
            blocking(move || VerifiedArchive::check_source(&name, source)).await
        }
    }
}

/// The archive at `location`, checked (V0): a damaged one is bad input (exit 2).
pub async fn open_archive(location: &Location) -> Result<crate::archive::reader::VerifiedArchive> {
    use crate::archive::reader::VerifiedArchive;
    match location {
        Location::Local(path) => {
            let path = path.clone();
            blocking(move || VerifiedArchive::open(&path)).await
        }
        Location::Object(object) => {
            let source: Arc<dyn RangedSource> = Arc::new(object.open_source().await?);
            let name = PathBuf::from(object.url());
            blocking(move || VerifiedArchive::open_source(&name, source)).await
        }
    }
}

/// Records a passed verification beside the archive at `location`.
pub async fn write_stamp(location: &Location, level: &str) -> Result<()> {
    match location {
        Location::Local(path) => crate::archive::catalog::write_stamp(path, level),
        Location::Object(object) => object::write_stamp(object, level).await,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("reading the archive", std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let section: StorageSection = toml::from_str(
            "access_key_id = \"AKIA\"\nsecret_access_key = \"hunter2\"\nsession_token = \"tok3n\"",
        )
        .unwrap();
        let shown = format!("{section:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert_eq!(section.secret_access_key.unwrap().expose(), "hunter2");
    }

    #[test]
    fn object_urls_are_told_from_local_paths() {
        for url in [
            "s3://b/x/",
            "gs://b/",
            "az://c/p",
            "s3:bucket",
            "S3://b",
            "ftp://h/x",
        ] {
            assert!(Location::is_object_url(url), "{url}");
        }
        for path in [
            "backups",
            "/var/backups",
            "./s3",
            "c:backups",
            "a:b/c.tar",
            "-",
        ] {
            assert!(!Location::is_object_url(path), "{path}");
        }
    }
}
