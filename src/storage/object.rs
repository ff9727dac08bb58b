//! Object storage (`s3://`, `gs://`, `az://`) through the `object_store` crate: parsing the URL,
//! building the client from the standard environment variables and `[storage]`, and what
//! `list`, `prune`, `verify` and `restore` need from a bucket prefix.
//!
//! Objects are immutable and a multipart upload becomes visible only when completed, so an
//! archive in a bucket is never seen half-written: the final name appears after COMMIT or not
//! at all (see [`super::upload`]).

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use super::{Secret, StorageSection};
use crate::archive::catalog::{self, ArchiveSummary, VerificationStamp, STAMP_SUFFIX};
use crate::archive::manifest::{Header, Manifest};
use crate::archive::{ARCHIVE_SUFFIX, COMMIT_MEMBER, HEADER_MEMBER, MANIFEST_MEMBER};
use crate::error::{Error, Result};

/// Default first part size; see [`super::upload::PartSizes`].
pub const DEFAULT_PART_SIZE_MIB: u64 = 8;
/// S3's limit on parts per multipart upload.
pub const DEFAULT_MAX_PARTS: u64 = 10_000;
/// Retries of a throttled (503 SlowDown), failed (5xx) or dropped request.
pub const DEFAULT_MAX_RETRIES: usize = 10;

/// A bucket and a key (an archive) or key prefix (a backup "directory") in it.
#[derive(Clone)]
pub struct ObjectLocation {
    /// `s3://bucket` (no credentials: URLs carrying any are refused).
    base: String,
    key: ObjectPath,
    store: Arc<dyn ObjectStore>,
    /// The same client, for multipart uploads addressed by id (so a dead run's upload can be
    /// aborted by the next one, see [`super::upload`]).
    multipart: Arc<dyn MultipartStore>,
    pub part_size: u64,
    pub max_parts: u64,
}

impl std::fmt::Debug for ObjectLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The store's own Debug shows its configuration, secrets included: never print it.
        f.debug_struct("ObjectLocation")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl ObjectLocation {
    /// Parses `s3://bucket/prefix/...` and builds its client. Nothing is contacted yet.
    pub fn parse(text: &str, origin: &str, settings: &StorageSection) -> Result<ObjectLocation> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "{origin}: {} is not a usable storage URL: {why}; write it as \
                 s3://BUCKET/PREFIX/ (or gs://, az://)",
                shown(text)
            ))
        };
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let scheme = url.scheme().to_ascii_lowercase();
        if !super::OBJECT_SCHEMES.contains(&scheme.as_str()) {
            return Err(bad(&format!("the scheme {scheme}:// is not supported")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL; set AWS_ACCESS_KEY_ID / \
                 AWS_SECRET_ACCESS_KEY or [storage] in dbkeeper.toml",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("it has a ?query or #fragment"));
        }
        let bucket = match url.host_str() {
            Some(b) if !b.is_empty() && text[scheme.len()..].starts_with("://") => b.to_string(),
            _ => return Err(bad("it names no bucket")),
        };
        if scheme == "s3" && !valid_s3_bucket(&bucket) {
            return Err(bad(&format!(
                "{bucket:?} is not a valid bucket name (3-63 lowercase letters, digits, `.`, `-`)"
            )));
        }
        let raw_key = url.path().trim_matches('/');
        let key = ObjectPath::parse(raw_key).map_err(|e| bad(&e.to_string()))?;
        let (store, multipart) = build_store(&scheme, &bucket, settings).map_err(|e| {
            Error::Usage(format!(
                "{origin}: cannot set up a client for {scheme}://{bucket}: {}",
                describe(&e)
            ))
        })?;
        Ok(ObjectLocation {
            base: format!("{scheme}://{bucket}"),
            key,
            store,
            multipart,
            part_size: settings.part_size_mib.unwrap_or(DEFAULT_PART_SIZE_MIB) << 20,
            max_parts: settings.max_parts.unwrap_or(DEFAULT_MAX_PARTS),
        })
    }

    /// `s3://bucket/prefix/name`, as the user wrote it (without a trailing slash).
    pub fn url(&self) -> String {
        if self.key.as_ref().is_empty() {
            format!("{}/", self.base)
        } else {
            format!("{}/{}", self.base, self.key)
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn multipart(&self) -> &Arc<dyn MultipartStore> {
        &self.multipart
    }

    pub fn key(&self) -> &ObjectPath {
        &self.key
    }

    /// The location of `name` under this prefix.
    pub fn child(&self, name: &str) -> ObjectLocation {
        let mut child = self.clone();
        child.key = self.key.clone().join(name);
        child
    }

    /// The prefix this key is in.
    pub fn parent(&self) -> ObjectLocation {
        let mut parent = self.clone();
        parent.key = match self.key.as_ref().rsplit_once('/') {
            Some((prefix, _)) => ObjectPath::from(prefix),
            None => ObjectPath::default(),
        };
        parent
    }

    /// Whether the key names an archive (`*.dbk.tar`) rather than a prefix.
    pub fn is_archive_key(&self) -> bool {
        self.key.as_ref().ends_with(".tar")
    }

    /// Opens an archive for ranged reads: its size comes from a HEAD request.
    pub async fn open_source(&self) -> Result<ObjectSource> {
        let meta = self
            .store
            .head(&self.key)
            .await
            .map_err(|e| self.error("reading archive", e, true))?;
        Ok(ObjectSource {
            store: self.store.clone(),
            key: self.key.clone(),
            len: meta.size,
            url: self.url(),
            runtime: tokio::runtime::Handle::current(),
            downloaded: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether an object exists under exactly this key.
    pub async fn exists(&self) -> Result<bool> {
        match self.store.head(&self.key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("checking", e, false)),
        }
    }

    /// Fails unless the bucket exists and can be listed: called before a backup starts, so a
    /// missing bucket or wrong credentials stop it before any database work.
    pub async fn check_reachable(&self) -> Result<()> {
        let prefix = (!self.key.as_ref().is_empty()).then_some(&self.key);
        self.store
            .list_with_delimiter(prefix)
            .await
            .map(|_| ())
            .map_err(|e| self.error("listing", e, false))
    }

    /// One line naming the URL and saying what to do. A missing bucket, refused credentials
    /// and an archive that is not there are bad input (exit 2); the rest is a runtime failure.
    pub fn error(&self, doing: &str, e: object_store::Error, key_expected: bool) -> Error {
        let url = self.url();
        let text = describe(&e);
        if text.contains("NoSuchBucket") || text.contains("bucket does not exist") {
            return Error::Usage(format!(
                "{doing} {url}: the bucket {} does not exist; create it or fix the URL",
                self.base
            ));
        }
        // object_store reports a refused list request as a generic error: the S3 code says it.
        let refused = [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ]
        .iter()
        .any(|code| text.contains(&format!("<Code>{code}</Code>")));
        if refused {
            return Error::Usage(format!(
                "{doing} {url}: access denied ({text}); check AWS_ACCESS_KEY_ID / \
                 AWS_SECRET_ACCESS_KEY (or [storage]) and the bucket policy"
            ));
        }
        match e {
            object_store::Error::NotFound { .. } if key_expected => {
                Error::Usage(format!("archive {url} does not exist"))
            }
            object_store::Error::NotFound { .. } => Error::Usage(format!(
                "{doing} {url}: not found ({text}); check the bucket name and prefix"
            )),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::Usage(format!(
                "{doing} {url}: access denied ({text}); check AWS_ACCESS_KEY_ID / \
                 AWS_SECRET_ACCESS_KEY (or [storage]) and the bucket policy"
            )),
            _ => Error::io(format!("{doing} {url}"), std::io::Error::other(text)),
        }
    }
}

/// An error's text and its causes on one line (object_store nests the HTTP error).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text.replace('\n', " ")
}

/// A URL as it may be shown: anything between `://` and `@` (credentials) is cut out.
fn shown(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, after)) => format!("{scheme}://***@{after}"),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

fn valid_s3_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn retry_config(settings: &StorageSection) -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: settings.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        retry_timeout: Duration::from_secs(3 * 60),
    }
}

/// The client for `scheme://bucket`, as an object store and as a multipart store.
type Clients = (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>);

fn clients<T: ObjectStore + MultipartStore>(store: T) -> Clients {
    let store = Arc::new(store);
    (store.clone(), store)
}

fn build_store(
    scheme: &str,
    bucket: &str,
    settings: &StorageSection,
) -> object_store::Result<Clients> {
    // reqwest's rustls takes the process-wide provider: ring, as for PostgreSQL's TLS. A
    // second install (another store, or the driver's) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(300));
    let expose = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_string());
    Ok(match scheme {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config(settings));
            let env_endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .ok();
            let endpoint = settings.endpoint.clone().or(env_endpoint);
            // A plain-HTTP endpoint is one somebody chose explicitly (a local test server).
            let allow_http = endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
            b = b.with_client_options(client.with_allow_http(allow_http));
            if let Some(endpoint) = endpoint {
                b = b.with_endpoint(endpoint);
            }
            let region = settings
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
            if let Some(region) = region {
                b = b.with_region(region);
            }
            if let Some(id) = &settings.access_key_id {
                b = b.with_access_key_id(id);
            }
            if let Some(secret) = expose(&settings.secret_access_key) {
                b = b.with_secret_access_key(secret);
            }
            if let Some(token) = expose(&settings.session_token) {
                b = b.with_token(token);
            }
            if let Some(v) = settings.virtual_hosted_style {
                b = b.with_virtual_hosted_style_request(v);
            }
            clients(b.build()?)
        }
        "gs" => clients(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config(settings))
                .with_client_options(client)
                .build()?,
        ),
        _ => clients(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(retry_config(settings))
                .with_client_options(client)
                .build()?,
        ),
    })
}

/// An archive object read by ranged GETs (restore workers) or one streamed GET (V0's pass).
#[derive(Debug)]
pub struct ObjectSource {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    len: u64,
    url: String,
    runtime: tokio::runtime::Handle,
    /// Bytes received so far (ranged GETs and the streamed one), reported at `-v`: what a
    /// restore or verify costs in transfer, relative to the archive's size.
    downloaded: Arc<AtomicU64>,
}

impl Drop for ObjectSource {
    fn drop(&mut self) {
        let bytes = self.downloaded.load(Ordering::Relaxed);
        if bytes > 0 {
            tracing::info!(
                "downloaded {bytes} bytes of {} ({:.2}x its {} bytes)",
                self.url,
                bytes as f64 / self.len.max(1) as f64,
                self.len
            );
        }
    }
}

impl ObjectSource {
    /// Runs `fut` to completion from synchronous code: archive readers run on blocking
    /// threads (and scoped threads of V1), never on the async workers.
    fn wait<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            // A runtime thread (a `spawn_blocking` one, or an async worker): let tokio know.
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(fut)),
            Err(_) => self.runtime.block_on(fut),
        }
    }
}

impl super::RangedSource for ObjectSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset + buf.len() as u64;
        if end > self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ends before byte {end}", self.url),
            ));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let bytes = self
            .wait(self.store.get_range(&self.key, offset..end))
            .map_err(|e| {
                std::io::Error::other(format!("reading {}: {}", self.url, describe(&e)))
            })?;
        self.downloaded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() != buf.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{} returned {} bytes for {}",
                    self.url,
                    bytes.len(),
                    buf.len()
                ),
            ));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn sequential(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        // Ranged GETs, several in flight and delivered in order through a small channel: one
        // streamed GET is as slow as the server's single-request throughput, while V0 has to
        // read every byte before the restore may begin. Memory stays at
        // (SEQUENTIAL_AHEAD + channel) x SEQUENTIAL_RANGE; nothing is staged on disk.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
        let store = self.store.clone();
        let key = self.key.clone();
        let url = self.url.clone();
        let downloaded = self.downloaded.clone();
        let ranges: Vec<std::ops::Range<u64>> = (0..self.len)
            .step_by(SEQUENTIAL_RANGE as usize)
            .map(|start| start..(start + SEQUENTIAL_RANGE).min(self.len))
            .collect();
        self.runtime.spawn(async move {
            let mut parts = futures::stream::iter(ranges)
                .map(|range| {
                    let (store, key) = (store.clone(), key.clone());
                    async move { store.get_range(&key, range).await }
                })
                .buffered(SEQUENTIAL_AHEAD);
            while let Some(part) = parts.next().await {
                let part = part
                    .map_err(|e| std::io::Error::other(format!("reading {url}: {}", describe(&e))));
                if let Ok(bytes) = &part {
                    downloaded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                let failed = part.is_err();
                if tx.send(part).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            current: Bytes::new(),
        }))
    }
}

/// V0's pass over an object: the size of each ranged GET, and how many are in flight.
const SEQUENTIAL_RANGE: u64 = 4 << 20;
const SEQUENTIAL_AHEAD: usize = 4;

/// The synchronous end of a streamed GET.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let next = match tokio::runtime::Handle::try_current() {
                Ok(_) => tokio::task::block_in_place(|| self.rx.blocking_recv()),
                Err(_) => self.rx.blocking_recv(),
            };
            match next {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// A backup "directory" in a bucket: the archives directly under one prefix.
pub struct ObjectDir {
    location: Arc<ObjectLocation>,
}

impl ObjectDir {
    pub fn new(location: Arc<ObjectLocation>) -> ObjectDir {
        ObjectDir { location }
    }

    pub fn location(&self) -> &Arc<ObjectLocation> {
        &self.location
    }

    /// The archive an id from [`super::ArchiveStore::list`] names (its URL).
    fn archive(&self, id: &str) -> ObjectLocation {
        let name = id.rsplit('/').next().unwrap_or(id);
        self.location.child(name)
    }

    fn stamp_key(archive: &ObjectLocation) -> ObjectPath {
        ObjectPath::from(format!("{}{STAMP_SUFFIX}", archive.key))
    }
}

#[async_trait::async_trait]
impl super::ArchiveStore for ObjectDir {
    fn display(&self) -> String {
        format!("{}/", self.location.url().trim_end_matches('/'))
    }

    async fn list(&self) -> Result<Vec<ArchiveSummary>> {
        let loc = &self.location;
        let prefix = (!loc.key.as_ref().is_empty()).then_some(&loc.key);
        let listing = loc
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| loc.error("listing", e, false))?;
        let names: std::collections::HashSet<String> = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect();
        let mut out = Vec::new();
        for meta in &listing.objects {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if !name.ends_with(ARCHIVE_SUFFIX) {
                continue;
            }
            let archive = loc.child(name);
            let mut summary = match archive.open_source().await {
                Ok(source) => {
                    let url = archive.url();
                    tokio::task::spawn_blocking(move || summarize(&url, &source))
                        .await
                        .map_err(|e| Error::io("listing", std::io::Error::other(e)))?
                }
                Err(e) => catalog::summary_from(
                    PathBuf::from(archive.url()),
                    meta.size,
                    Err(e.to_string()),
                ),
            };
            if summary.complete && names.contains(&format!("{name}{STAMP_SUFFIX}")) {
                summary.verified = read_object_stamp(&archive, meta).await;
            }
            out.push(summary);
        }
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.path.cmp(&a.path))
        });
        Ok(out)
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let archive = self.archive(id);
        archive
            .store
            .delete(&archive.key)
            .await
            .map_err(|e| archive.error("deleting", e, false))?;
        let _ = archive.store.delete(&Self::stamp_key(&archive)).await;
        Ok(())
    }

    async fn write_stamp(&self, id: &str, level: &str) -> Result<()> {
        write_stamp(&self.archive(id), level).await
    }

    async fn read_stamp(&self, id: &str) -> Option<VerificationStamp> {
        let archive = self.archive(id);
        let meta = archive.store.head(&archive.key).await.ok()?;
        read_object_stamp(&archive, &meta).await
    }

    async fn lock(&self, command: &str) -> Result<super::RunLock> {
        // Taking it also proves the bucket exists and the credentials work.
        let lock = super::lock::BucketLock::acquire(&self.location, command).await?;
        Ok(super::RunLock::new(lock))
    }

    async fn remove_abandoned(&self, _current: Option<&str>) -> Result<()> {
        // A stale upload marker is a killed run's, whose parts would otherwise cost storage
        // until a lifecycle rule ran; this run has not started its upload yet.
        super::upload_marker::abort_abandoned(&self.location)
            .await
            .map(|_| ())
    }
}

/// Records a passed verification beside an archive object, tied to its size and time.
pub async fn write_stamp(archive: &ObjectLocation, level: &str) -> Result<()> {
    let meta = archive
        .store
        .head(&archive.key)
        .await
        .map_err(|e| archive.error("reading", e, true))?;
    let stamp = VerificationStamp {
        level: level.to_string(),
        verified_at: Utc::now(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        archive_size: meta.size,
        archive_mtime_secs: meta.last_modified.timestamp(),
    };
    let text = serde_json::to_vec_pretty(&stamp).expect("stamp serializes");
    archive
        .store
        .put(&ObjectDir::stamp_key(archive), PutPayload::from(text))
        .await
        .map_err(|e| archive.error("writing the verification stamp of", e, false))?;
    Ok(())
}

async fn read_object_stamp(
    archive: &ObjectLocation,
    meta: &object_store::ObjectMeta,
) -> Option<VerificationStamp> {
    let bytes = archive
        .store
        .get(&ObjectDir::stamp_key(archive))
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    let stamp: VerificationStamp = serde_json::from_slice(&bytes).ok()?;
    (stamp.archive_size == meta.size && stamp.archive_mtime_secs == meta.last_modified.timestamp())
        .then_some(stamp)
}

/// `list`'s quick look at an archive object: HEADER.json from the front, COMMIT and
/// MANIFEST.json from the back (a few ranged GETs, whatever the archive's size). Whether the
/// data is intact is what `verify` proves.
fn summarize(url: &str, source: &ObjectSource) -> ArchiveSummary {
    use super::RangedSource;
    catalog::summary_from(PathBuf::from(url), source.len(), read_tail_metadata(source))
}

const BLOCK: u64 = 512;
/// Largest tail read while looking for MANIFEST.json.
const MAX_TAIL: u64 = 256 << 20;

fn read_tail_metadata(
    source: &dyn super::RangedSource,
) -> std::result::Result<(Header, Manifest), String> {
    let len = source.len();
    if crate::archive::reader::lacks_tar_magic(source) {
        return Err(crate::archive::reader::NOT_AN_ARCHIVE.to_string());
    }
    let incomplete = "no COMMIT member: the backup did not finish (truncated or interrupted)";
    // The writer ends the stream with two zero blocks after COMMIT's one data block.
    if len < 6 * BLOCK || !len.is_multiple_of(BLOCK) {
        return Err(incomplete.into());
    }
    let commit_at = len - 4 * BLOCK;
    let (name, size) = tar_header_at(source, commit_at).ok_or(incomplete)?;
    if name != COMMIT_MEMBER || size > BLOCK {
        return Err(incomplete.into());
    }
    let mut commit = vec![0u8; size as usize];
    read(source, &mut commit, commit_at + BLOCK)?;
    // MANIFEST.json's header is the block whose member ends exactly where COMMIT starts.
    let mut window = (1u64 << 20).min(commit_at);
    let manifest = loop {
        let start = commit_at - window;
        let mut tail = vec![0u8; window as usize];
        read(source, &mut tail, start)?;
        let mut at = commit_at;
        let mut found = None;
        while at >= start + BLOCK {
            at -= BLOCK;
            let block = &tail[(at - start) as usize..(at - start + BLOCK) as usize];
            if let Some((name, size)) = parse_header(block) {
                if name == MANIFEST_MEMBER && at + BLOCK + size.div_ceil(BLOCK) * BLOCK == commit_at
                {
                    let data = (at + BLOCK - start) as usize;
                    found = Some(tail[data..data + size as usize].to_vec());
                    break;
                }
            }
        }
        match found {
            Some(bytes) => break bytes,
            None if window < commit_at && window < MAX_TAIL => {
                window = (window * 8).min(commit_at).min(MAX_TAIL)
            }
            None => return Err("no MANIFEST.json member before COMMIT".into()),
        }
    };
    if String::from_utf8_lossy(&commit).trim() != hex::encode(Sha256::digest(&manifest)) {
        return Err(
            "COMMIT does not match MANIFEST.json: the manifest was altered or truncated".into(),
        );
    }
    let (name, size) = tar_header_at(source, 0).ok_or("unreadable first tar entry")?;
    if name != HEADER_MEMBER || size > MAX_TAIL {
        return Err(format!("the first member is not {HEADER_MEMBER}"));
    }
    let mut header = vec![0u8; size as usize];
    read(source, &mut header, BLOCK)?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|e| format!("HEADER.json is not valid: {e}"))?;
    let manifest: Manifest = serde_json::from_slice(&manifest)
        .map_err(|e| format!("MANIFEST.json is not valid: {e}"))?;
    Ok((header, manifest))
}

fn read(
    source: &dyn super::RangedSource,
    buf: &mut [u8],
    at: u64,
) -> std::result::Result<(), String> {
    source
        .read_exact_at(buf, at)
        .map_err(|e| format!("cannot read: {e}"))
}

fn tar_header_at(source: &dyn super::RangedSource, at: u64) -> Option<(String, u64)> {
    let mut block = [0u8; BLOCK as usize];
    source.read_exact_at(&mut block, at).ok()?;
    parse_header(&block)
}

/// A tar header block's member name and size, if the block is a header with a valid checksum.
fn parse_header(block: &[u8]) -> Option<(String, u64)> {
    let block: &[u8; 512] = block.try_into().ok()?;
    let header = tar::Header::from_byte_slice(block);
    let stored = header.cksum().ok()?;
    let mut check = header.clone();
    check.set_cksum();
    if check.cksum().ok()? != stored || stored == 0 {
        return None;
    }
    let name = String::from_utf8(header.path_bytes().into_owned()).ok()?;
    Some((name, header.size().ok()?))
}
