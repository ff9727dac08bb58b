//! `dbkeeper backup`: dump the configured databases into one archive.
//!
//! The archive goes to `--output`: a directory (a timestamped file is created in it), a file
//! name ending in `.tar`, `-` for stdout (the summary then goes to stderr), or a bucket prefix
//! or key (`s3://bucket/nightly/`). A file is written as `.partial` and renamed only when
//! complete; an object is a multipart upload completed only after COMMIT. Any failure leaves no
//! archive behind.

use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::archive::chunk::{Encoding, DEFAULT_CHUNK_BYTES};
use crate::archive::codec::{Codec, Compression};
use crate::archive::crypt::Sealer;
use crate::archive::manifest::MaskingRecord;
use crate::archive::reader::VerifiedArchive;
use crate::archive::writer::{ArchiveWriter, PartialFile};
use crate::archive::{pipeline, Header, Manifest, ARCHIVE_SUFFIX};
use crate::config::Settings;
use crate::engine::{self, DumpOptions, DumpReport, Masks, MongoDumpSummary, PgDumpSummary};
use crate::error::{Error, Result};
use crate::progress;
use crate::storage::object::ObjectLocation;
use crate::storage::sink::{ArchiveSink, StdoutSink};
use crate::storage::upload::MultipartSink;
use crate::storage::{self, Location};

use super::keys::{self, SealKeys};

/// What `backup` is asked to do; `None` takes the configured value.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// `--output`: a directory, a `.tar` file name, `-` (stdout) or a bucket prefix or key.
    pub output: Option<String>,
    pub jobs: Option<usize>,
    /// `--compression`: `zstd`, `gzip` or `none`.
    pub compression: Option<String>,
    pub compression_level: Option<i32>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Apply the configured retention afterwards, under the backup's lock.
    pub prune: bool,
    pub chunk_bytes: Option<usize>,
    /// `--mask RULES`: mask the records before they reach the archive.
    pub mask: Option<PathBuf>,
    pub keys: SealKeys,
}

/// What a backup wrote.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    /// The archive's path, or `-` for stdout.
    pub archive: String,
    /// Size of the archive in bytes.
    pub bytes: u64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PgDumpSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongo: Option<MongoDumpSummary>,
    /// `--prune`: what retention deleted afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Vec<String>>,
    /// `--mask`: the rules applied (also recorded in the manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masking: Option<MaskingRecord>,
}

/// Where the archive goes.
enum Destination {
    File(PathBuf),
    Stdout,
    /// An archive object, and the prefix it goes under (what is locked and pruned).
    Object {
        archive: ObjectLocation,
        prefix: std::sync::Arc<ObjectLocation>,
    },
}

/// Takes the backup lock on the directory or prefix; under it no other backup writes there, so
/// what a killed run left (a `.partial` file, an abandoned upload) is removed.
async fn lock_and_clean(
    store: &dyn storage::ArchiveStore,
    archive: Option<&str>,
) -> Result<storage::RunLock> {
    let lock = store.lock("backup").await?;
    store.remove_abandoned(archive).await?;
    Ok(lock)
}

/// `migrate up --backup-first`: a backup into the configured directory, then checked as
/// `verify` checks it (V0 and V1), so the migration only starts once a restorable copy exists.
/// Returns the archive's path (or URL).
pub async fn verified_backup(settings: &Settings) -> Result<PathBuf> {
    let report = backup(&BackupOptions::default(), settings).await?;
    let path = PathBuf::from(&report.archive);
    let location = Location::parse(&path, "[backup] output", &settings.storage)?;
    let archive = storage::open_archive(&location).await?;
    let jobs = settings.jobs;
    let checked = path.clone();
    let unlock = keys::unlock(&Default::default(), settings)?;
    let level = blocking(move || {
        let mut archive: VerifiedArchive = archive;
        if archive.is_encrypted() {
            let Some(unlock) = unlock else {
                // Encrypted to recipients whose keys this host does not hold: V0 is what it can
                // prove, and it proves every byte is as written.
                tracing::info!(
                    "the backup taken before migrating is encrypted and no identity is configured: \
                     checked its integrity (V0), not its decoding (V1)"
                );
                return Ok("archive");
            };
            archive.unlock(&unlock)?;
        }
        let decoded = archive.verify_decode(jobs);
        if !decoded.problems.is_empty() {
            return Err(Error::CheckFailed(format!(
                "the backup taken before migrating, {}, does not verify: {}",
                checked.display(),
                decoded
                    .problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        Ok("decode")
    })
    .await?;
    storage::write_stamp(&location, level).await?;
    Ok(path)
}

/// Dumps every configured database into one archive; see the module documentation.
pub async fn backup(args: &BackupOptions, settings: &Settings) -> Result<BackupReport> {
    // A bad codec or level is a usage error whatever else is missing.
    compression(args, settings)?;
    settings.require_any_engine()?;
    // A directory this run creates and then fails in (an unreachable database, say) is removed
    // again, empty as it is: a failed run leaves nothing behind.
    let new_dir = output_dir(args.output.as_deref(), settings).filter(|d| !d.exists());
    let result = perform_inner(args, settings).await;
    progress::finish();
    if let (Err(_), Some(dir)) = (&result, new_dir) {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

/// `--compression` / `--compression-level` over `[backup]`. A flag that changes the codec
/// without a level takes that codec's default level, not the file's level for another codec.
fn compression(args: &BackupOptions, settings: &Settings) -> Result<Compression> {
    let codec = match args.compression.as_deref() {
        Some(name) => Codec::parse(name)
            .ok_or_else(|| Error::Usage(format!("--compression {name}: use zstd, gzip or none")))?,
        None => settings.compression.codec,
    };
    let level = match (args.compression_level, codec == settings.compression.codec) {
        (Some(level), _) => Some(level),
        (None, true) => Some(settings.compression.level),
        (None, false) => None,
    };
    Compression::new(codec, level).map_err(|e| Error::Usage(format!("--compression-level: {e}")))
}

async fn perform_inner(args: &BackupOptions, settings: &Settings) -> Result<BackupReport> {
    let jobs = args.jobs.unwrap_or(settings.jobs);
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let sealer = keys::sealer(&args.keys, settings)?;
    let encoding = Encoding {
        compression: compression(args, settings)?,
        seal: sealer.clone(),
    };
    let chunk_bytes = args.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES).max(1);
    if args.prune {
        // Checked now, not after a long dump: the run would otherwise fail at the very end.
        super::prune::configured_policy(settings)?;
    }
    let rules = match &args.mask {
        Some(path) => Some(Arc::new(crate::mask::Rules::load(path)?)),
        None => None,
    };
    let started = Instant::now();
    // Connecting, exporting the snapshot and reading the catalog take a moment before the first
    // row: show that something is happening from the start.
    progress::start("prepare", progress::Totals::default());
    let created_at = Utc::now();
    let destination = destination(args.output.as_deref(), settings, created_at)?;
    // Two overlapping runs (cron meeting a slow previous run) must not share a directory.
    let _lock = match &destination {
        Destination::File(path) => {
            let store = storage::archive_store(&Location::Local(parent_dir(path).to_path_buf()));
            Some(lock_and_clean(store.as_ref(), Some(&path.display().to_string())).await?)
        }
        // Taking it also proves the bucket exists and the credentials work, before any
        // database is touched.
        Destination::Object { prefix, .. } => {
            let store = storage::archive_store(&Location::Object(prefix.clone()));
            Some(lock_and_clean(store.as_ref(), None).await?)
        }
        Destination::Stdout => None,
    };

    // Fix every engine's point in time before the header, which records them, is written.
    let options = DumpOptions {
        jobs,
        encoding,
        chunk_bytes,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        mask: rules,
        ..DumpOptions::default()
    };
    let mut dumps = Vec::new();
    for database in engine::configured(settings)? {
        dumps.push(database.prepare_dump(&options).await?);
    }
    let selected: usize = dumps.iter().map(|d| d.selected()).sum();
    if selected == 0 && !(args.include.is_empty() && args.exclude.is_empty()) {
        // A nightly job whose pattern has a typo must not report success on an empty archive.
        return Err(Error::Usage(format!(
            "--include {:?} / --exclude {:?} selected no table and no collection, so there is \
             nothing to back up; patterns match `schema.table` or `table` (PostgreSQL) and \
             `db.collection` or `collection` (MongoDB), `*` as a wildcard",
            args.include, args.exclude
        )));
    }
    let header = Header::new(
        created_at,
        dumps.iter().map(|d| d.source().clone()).collect(),
    );
    // Exact totals are only known once everything has been read; until then the bar runs
    // against the databases' own estimates.
    let estimate = if progress::is_shown() {
        let mut total = Some(0);
        for dump in &dumps {
            total = total
                .zip(dump.estimated_records().await)
                .map(|(a, b)| a + b);
        }
        total
    } else {
        None
    };
    progress::finish();
    progress::start("backup", progress::Totals::estimated(estimate));
    let mut masks = Masks::default();
    dumps.iter().for_each(|d| masks.merge(d.masks()));
    let masking = |masks: &Masks| {
        let path = args.mask.as_deref()?;
        Some(MaskingRecord {
            rules_file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            fields: masks.applied(),
        })
    };

    let (sink, name): (Box<dyn ArchiveSink>, String) = match &destination {
        Destination::File(path) => {
            let file = PartialFile::create(path)?;
            let name = file.partial_path().display().to_string();
            (Box::new(file), name)
        }
        Destination::Stdout => (Box::new(StdoutSink::new()), "stdout".to_string()),
        Destination::Object { archive, .. } => (
            Box::new(MultipartSink::create(archive).await?),
            archive.url(),
        ),
    };
    let masking = || masking(&masks);
    let written = write_archive(sink, name, &header, dumps, jobs, sealer, masking).await?;
    let Written {
        archive: path,
        bytes,
        manifest,
        reports,
    } = written;

    let pruned = match (&destination, args.prune) {
        (Destination::File(path), true) => Some(
            super::prune::prune_after_backup(
                &Location::Local(parent_dir(path).to_path_buf()),
                settings,
            )
            .await?,
        ),
        (Destination::Object { prefix, .. }, true) => Some(
            super::prune::prune_after_backup(&Location::Object(prefix.clone()), settings).await?,
        ),
        (Destination::Stdout, true) => {
            return Err(Error::Usage(
                "--prune needs a backup directory, not --output -".into(),
            ))
        }
        _ => None,
    };

    let (mut postgres, mut mongo) = (None, None);
    for report in reports {
        match report {
            DumpReport::Postgres(summary) => postgres = Some(summary),
            DumpReport::Mongo(summary) => mongo = Some(summary),
        }
    }
    Ok(BackupReport {
        archive: path,
        bytes,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        postgres,
        mongo,
        pruned,
        masking: manifest.masking.clone(),
    })
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// What [`write_archive`] wrote.
pub struct Written {
    /// The archive's final name: a path, an object URL, or `-`.
    pub archive: String,
    pub bytes: u64,
    pub manifest: Manifest,
    pub reports: Vec<DumpReport>,
}

/// Streams prepared dumps into `sink` as one archive: header (and, with a sealer, the
/// encryption), every engine's members, the manifest (with `masking()`'s record, asked once the
/// dumps are done) and COMMIT; then commits the sink, so the archive appears under its final
/// name. `name` names the sink in errors.
pub async fn write_archive(
    sink: Box<dyn ArchiveSink>,
    name: String,
    header: &Header,
    dumps: Vec<Box<dyn engine::PreparedDump>>,
    jobs: usize,
    sealer: Option<Arc<Sealer>>,
    masking: impl FnOnce() -> Option<MaskingRecord>,
) -> Result<Written> {
    let mut writer = ArchiveWriter::new(sink, header, name)?;
    if let Some(sealer) = sealer {
        writer.encrypt_with(sealer)?;
    }
    let (writer, mut manifest, reports) = dump_into(writer, dumps, jobs, header).await?;
    manifest.masking = masking();
    let (archive, bytes, manifest) = blocking(move || {
        crate::faultpoint::pause("manifest");
        let (archive, bytes) = writer.finish(&mut manifest)?.commit()?;
        Ok((archive, bytes, manifest))
    })
    .await?;
    Ok(Written {
        archive,
        bytes,
        manifest,
        reports,
    })
}

/// [`write_archive`] into a new file at `path` (written as `path.partial`, renamed when
/// complete). Returns the final path, the manifest and each engine's report.
pub async fn dump_to_file(
    path: &Path,
    header: &Header,
    dumps: Vec<Box<dyn engine::PreparedDump>>,
    jobs: usize,
    sealer: Option<Arc<Sealer>>,
    masking: impl FnOnce() -> Option<MaskingRecord>,
) -> Result<(PathBuf, Manifest, Vec<DumpReport>)> {
    let file = PartialFile::create(path)?;
    let name = file.partial_path().display().to_string();
    let written = write_archive(Box::new(file), name, header, dumps, jobs, sealer, masking);
    let written = written.await?;
    Ok((written.archive.into(), written.manifest, written.reports))
}

/// Runs the dumps into `writer` through the archive's one writer thread; returns the writer
/// (for finishing), the manifest and each engine's report. A failed dump drops the writer,
/// which removes a `.partial` file.
async fn dump_into<W: Write + Send + 'static>(
    writer: ArchiveWriter<W>,
    dumps: Vec<Box<dyn engine::PreparedDump>>,
    jobs: usize,
    header: &Header,
) -> Result<(ArchiveWriter<W>, Manifest, Vec<DumpReport>)> {
    let mut manifest = Manifest::new(header);
    let (sender, thread) = pipeline::spawn(writer, jobs * 2);
    let dumped = engine::run_dumps(dumps, sender, &mut manifest).await;
    // The writer's own error (disk full, ...) explains a dump that stopped because the writer
    // did, so it comes first.
    let writer = blocking(move || thread.join()).await?;
    let reports = dumped?;
    manifest.finished_at = Utc::now();
    Ok((writer, manifest, reports))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("writing the archive", std::io::Error::other(e)))?
}

/// `--output`: `-`, a `.tar` file name, or a directory (created if needed).
fn destination(
    output: Option<&str>,
    settings: &Settings,
    created_at: DateTime<Utc>,
) -> Result<Destination> {
    let file_name = archive_file_name(&settings.archive_prefix, created_at)?;
    let (origin, raw) = match output {
        Some(o) => ("--output", PathBuf::from(o)),
        None => ("[backup] output", settings.backup_dir.clone()),
    };
    if let Location::Object(location) = Location::parse(&raw, origin, &settings.storage)? {
        return Ok(if location.is_archive_key() {
            Destination::Object {
                archive: (*location).clone(),
                prefix: std::sync::Arc::new(location.parent()),
            }
        } else {
            Destination::Object {
                archive: location.child(&file_name),
                prefix: location,
            }
        });
    }
    let Some(dir) = output_dir(output, settings) else {
        return match output {
            Some("-") if std::io::stdout().is_terminal() => Err(Error::Usage(
                "--output -: refusing to write a binary archive to a terminal; redirect stdout \
                 (`> backup.dbk.tar`, `| ssh host 'cat > ...'`) or give --output DIR"
                    .into(),
            )),
            Some("-") => Ok(Destination::Stdout),
            // `output_dir` is `None` only for `-` and for a `.tar` file name.
            file => Ok(Destination::File(PathBuf::from(file.unwrap_or_default()))),
        };
    };
    create_backup_dir(&dir, output.is_none())?;
    Ok(Destination::File(dir.join(file_name)))
}

/// `<prefix>-<UTC second>-<6 random hex digits>.dbk.tar`: the time sorts and reads well; the
/// random part keeps two runs in the same second (two cron entries, a retry) from colliding.
/// Nothing parses the name (`list` and `prune` read each archive's header), so older names
/// without the suffix keep working.
fn archive_file_name(prefix: &str, created_at: DateTime<Utc>) -> Result<String> {
    let mut random = [0u8; 3];
    getrandom::fill(&mut random).map_err(|e| {
        Error::io(
            "choosing a unique archive name",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(format!(
        "{prefix}-{}-{}{ARCHIVE_SUFFIX}",
        created_at.format("%Y%m%dT%H%M%SZ"),
        hex::encode(random)
    ))
}

/// Creates a missing backup directory. The configured one is created with all its parents; one
/// named by `--output` only when its parent exists, and with a note on stderr: a mistyped path
/// must not quietly collect tonight's backup where nobody looks.
fn create_backup_dir(dir: &Path, configured: bool) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let creating = |e| Error::io(format!("creating backup directory {}", dir.display()), e);
    if configured {
        return crate::private_fs::create_dir_all(dir).map_err(creating);
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::Usage(format!(
            "--output {}: {} does not exist; check the path, or create the directory first \
             (mkdir -p {})",
            dir.display(),
            parent.display(),
            dir.display()
        )));
    }
    // The parent exists (checked above): this creates the one directory, 0700.
    crate::private_fs::create_dir_all(dir).map_err(creating)?;
    tracing::warn!("created backup directory {}", dir.display());
    Ok(())
}

/// The directory the archive goes into, when `--output` names a directory (or is absent);
/// `None` for `-` (stdout) and for a file name ending in `.tar`.
fn output_dir(output: Option<&str>, settings: &Settings) -> Option<PathBuf> {
    match output {
        Some("-") => None,
        Some(o) if Location::is_object_url(o) => None,
        None if settings
            .backup_dir
            .to_str()
            .is_some_and(Location::is_object_url) =>
        {
            None
        }
        Some(o) if o.ends_with(".tar") && !Path::new(o).is_dir() => None,
        Some(o) => Some(PathBuf::from(o)),
        None => Some(settings.backup_dir.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::archive_file_name;

    /// Regression: two backups in the same second got one name, and the second exited 2.
    #[test]
    fn two_backups_in_the_same_second_get_different_names() {
        let at = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 24, 2, 30, 0).unwrap();
        let first = archive_file_name("dbkeeper", at).unwrap();
        let second = archive_file_name("dbkeeper", at).unwrap();
        assert_ne!(first, second);
        for name in [&first, &second] {
            assert!(name.starts_with("dbkeeper-20261124T023000Z-"), "{name}");
            assert!(name.ends_with(".dbk.tar"), "{name}");
        }
    }
}
