//! `dbkeeper backup`: dump the configured databases into one archive.
//!
//! The archive goes to `--output`: a directory (a timestamped file is created in it), a file
//! name ending in `.tar`, `-` for stdout (the summary then goes to stderr), or a bucket prefix
//! or key (`s3://bucket/nightly/`). A file is written as `.partial` and renamed only when
//! complete; an object is a multipart upload completed only after COMMIT. Any failure leaves no
//! archive behind.

use std::io::IsTerminal;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use dbkeeper::archive::chunk::{Encoding, DEFAULT_CHUNK_BYTES};
use dbkeeper::archive::codec::{Codec, Compression};
use dbkeeper::archive::manifest::MaskingRecord;
use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::archive::writer::ArchiveWriter;
use dbkeeper::archive::{catalog, pipeline, Header, Manifest, ARCHIVE_SUFFIX, PARTIAL_SUFFIX};
use dbkeeper::config::Settings;
use dbkeeper::dirlock::DirLock;
use dbkeeper::error::{Error, Result};
use dbkeeper::mask::{MongoMask, PgMask};
use dbkeeper::mongo::dump::{self as mongo_dump, DumpSummary};
use dbkeeper::mongo::MongoTarget;
use dbkeeper::postgres::dump::{DumpOptions, PgArchiveMeta, PgDump, ENGINE_KEY};
use dbkeeper::postgres::PgTarget;
use dbkeeper::progress;
use dbkeeper::storage::lock::BucketLock;
use dbkeeper::storage::object::ObjectLocation;
use dbkeeper::storage::upload::MultipartSink;
use dbkeeper::storage::{self, Location};
use dbkeeper::{Engine, ExitCode};

use super::args::BackupArgs;
use super::output::{count, human_bytes, Output};

#[derive(Debug, Serialize)]
struct BackupReport {
    /// The archive's path, or `-` for stdout.
    archive: String,
    /// Size of the archive in bytes.
    bytes: u64,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<PgSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mongo: Option<DumpSummary>,
    /// `--prune`: what retention deleted afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pruned: Option<Vec<String>>,
    /// `--mask`: the rules applied (also recorded in the manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    masking: Option<MaskingRecord>,
}

#[derive(Debug, Serialize)]
struct PgSummary {
    database: String,
    tables: usize,
    rows: u64,
    /// Uncompressed COPY text bytes.
    raw_bytes: u64,
    chunks: usize,
    /// Large objects (their data chunks are not counted in `chunks`).
    large_objects: usize,
    server_version: String,
    snapshot: Option<String>,
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

/// The lock a backup holds on its directory or bucket prefix.
enum RunLock {
    Dir(#[allow(dead_code)] DirLock),
    Bucket(#[allow(dead_code)] BucketLock),
}

/// The engines' dumps, each with its point in time already fixed.
struct Dumps {
    postgres: Option<PgDump>,
    mongo: Option<mongo_dump::PreparedDump>,
}

pub async fn run(args: BackupArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let to_stdout = args.output.as_deref() == Some("-");
    let report = perform(args, settings).await?;
    let line = summary_line(&report);
    if to_stdout {
        // stdout carries the archive: the report goes to stderr.
        if out.json {
            let json = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::io("writing JSON output", std::io::Error::other(e)))?;
            eprintln!("{json}");
        } else if !out.quiet {
            eprintln!("{line}");
        }
    } else {
        out.emit(&report, || println!("{line}"))?;
    }
    Ok(ExitCode::Ok)
}

/// `migrate up --backup-first`: a backup into the configured directory, then checked as
/// `verify` checks it (V0 and V1), so the migration only starts once a restorable copy exists.
/// Returns the archive's path (or URL).
pub async fn verified_backup(settings: &Settings) -> Result<PathBuf> {
    let args = BackupArgs {
        connect: Default::default(),
        output: None,
        jobs: None,
        compression: None,
        compression_level: None,
        include: Vec::new(),
        exclude: Vec::new(),
        prune: false,
        chunk_bytes: None,
        mask: None,
        recipient: Vec::new(),
        recipients_file: None,
        passphrase_file: None,
    };
    let report = perform(args, settings).await?;
    let path = PathBuf::from(&report.archive);
    let location = Location::parse(&path, "[backup] output", &settings.storage)?;
    let archive = storage::open_archive(&location).await?;
    let jobs = settings.jobs;
    let checked = path.clone();
    let unlock = super::keys::unlock(&Default::default(), settings)?;
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

async fn perform(args: BackupArgs, settings: &Settings) -> Result<BackupReport> {
    // A bad codec or level is a usage error whatever else is missing.
    compression(&args, settings)?;
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
fn compression(args: &BackupArgs, settings: &Settings) -> Result<Compression> {
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

async fn perform_inner(args: BackupArgs, settings: &Settings) -> Result<BackupReport> {
    let jobs = args.jobs.unwrap_or(settings.jobs);
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let sealer = super::keys::sealer(&args, settings)?;
    let encoding = Encoding {
        compression: compression(&args, settings)?,
        seal: sealer.clone(),
    };
    let chunk_bytes = args.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES).max(1);
    if args.prune {
        // Checked now, not after a long dump: the run would otherwise fail at the very end.
        super::list::configured_policy(settings)?;
    }
    let rules = match &args.mask {
        Some(path) => Some(std::sync::Arc::new(dbkeeper::mask::Rules::load(path)?)),
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
            let lock = DirLock::acquire(parent_dir(path), "backup")?;
            // Under the lock no other backup writes here: partial files are leftovers of a
            // killed run.
            catalog::remove_stale_partials(parent_dir(path), Some(&partial_path(path)))?;
            Some(RunLock::Dir(lock))
        }
        // Taking it also proves the bucket exists and the credentials work, before any
        // database is touched.
        Destination::Object { prefix, .. } => {
            let lock = BucketLock::acquire(prefix, "backup").await?;
            // Under the lock no other backup uploads here: a stale upload marker is a killed
            // run's, whose parts would otherwise cost storage until a lifecycle rule ran.
            dbkeeper::storage::upload_marker::abort_abandoned(prefix).await?;
            Some(RunLock::Bucket(lock))
        }
        Destination::Stdout => None,
    };

    // Fix every engine's point in time before the header, which records them, is written.
    let postgres = match &settings.pg_url {
        Some(url) => {
            let target = PgTarget::new(url, settings.connect_timeout)?;
            let options = DumpOptions {
                jobs,
                encoding: encoding.clone(),
                chunk_bytes,
                include: args.include.clone(),
                exclude: args.exclude.clone(),
                mask: rules.clone(),
            };
            Some(PgDump::begin(&target, options).await?)
        }
        None => None,
    };
    let mongo = match &settings.mongo_url {
        Some(_) => {
            let (url, db) = settings.require_mongo()?;
            let target = MongoTarget::new(url, db, settings.connect_timeout);
            let options = mongo_dump::DumpOptions {
                jobs,
                encoding: encoding.clone(),
                chunk_bytes,
                include: args.include.clone(),
                exclude: args.exclude.clone(),
                mask: rules.clone(),
                ..Default::default()
            };
            Some(mongo_dump::prepare(&target, &options).await?)
        }
        None => None,
    };
    let selected = postgres.as_ref().map_or(0, |d| d.tables().len())
        + mongo.as_ref().map_or(0, |d| d.definitions().len());
    if selected == 0 && !(args.include.is_empty() && args.exclude.is_empty()) {
        // A nightly job whose pattern has a typo must not report success on an empty archive.
        return Err(Error::Usage(format!(
            "--include {:?} / --exclude {:?} selected no table and no collection, so there is \
             nothing to back up; patterns match `schema.table` or `table` (PostgreSQL) and \
             `db.collection` or `collection` (MongoDB), `*` as a wildcard",
            args.include, args.exclude
        )));
    }
    let mut sources = Vec::new();
    sources.extend(postgres.as_ref().map(|d| d.source().clone()));
    sources.extend(mongo.as_ref().map(|d| d.source().clone()));
    let header = Header::new(created_at, sources);
    // Exact totals are only known once everything has been read; until then the bar runs
    // against the databases' own estimates.
    let estimate = if progress::is_shown() {
        let mongo_documents = match &mongo {
            Some(mongo) => mongo.estimated_documents().await,
            None => Some(0),
        };
        let pg_rows = postgres.as_ref().map_or(Some(0), |pg| pg.estimated_rows());
        pg_rows.zip(mongo_documents).map(|(a, b)| a + b)
    } else {
        None
    };
    progress::finish();
    progress::start("backup", progress::Totals::estimated(estimate));
    let masks = (
        postgres.as_ref().and_then(PgDump::mask),
        mongo.as_ref().and_then(mongo_dump::PreparedDump::mask),
    );
    let masking = |masks: &(Option<Arc<PgMask>>, Option<Arc<MongoMask>>)| {
        let path = args.mask.as_deref()?;
        let mut fields = masks.0.as_ref().map(|m| m.applied()).unwrap_or_default();
        fields.extend(masks.1.as_ref().map(|m| m.applied()).unwrap_or_default());
        Some(MaskingRecord {
            rules_file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            fields,
        })
    };
    let dumps = Dumps { postgres, mongo };

    let (manifest, mongo_summary, path, bytes) = match &destination {
        Destination::File(path) => {
            let mut writer = ArchiveWriter::create_file(path, &header)?;
            if let Some(sealer) = &sealer {
                writer.encrypt_with(sealer.clone())?;
            }
            let (writer, mut manifest, mongo) = dump_into(writer, dumps, jobs, &header).await?;
            manifest.masking = masking(&masks);
            let (path, manifest) = blocking(move || {
                dbkeeper::faultpoint::pause("manifest");
                writer.finish_file(&mut manifest).map(|p| (p, manifest))
            })
            .await?;
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (manifest, mongo, path.display().to_string(), bytes)
        }
        Destination::Stdout => {
            let out = CountingWriter::new(BufWriter::with_capacity(1 << 20, std::io::stdout()));
            let mut writer = ArchiveWriter::new(out, &header, "stdout".into())?;
            if let Some(sealer) = &sealer {
                writer.encrypt_with(sealer.clone())?;
            }
            let (writer, mut manifest, mongo) = dump_into(writer, dumps, jobs, &header).await?;
            manifest.masking = masking(&masks);
            let (out, manifest) =
                blocking(move || writer.finish(&mut manifest).map(|w| (w, manifest))).await?;
            (manifest, mongo, "-".to_string(), out.count)
        }
        Destination::Object { archive, .. } => {
            let sink = MultipartSink::create(archive).await?;
            let writer = ArchiveWriter::new(sink, &header, archive.url())?;
            let (writer, mut manifest, mongo) = dump_into(writer, dumps, jobs, &header).await?;
            let (url, bytes, manifest) = blocking(move || {
                dbkeeper::faultpoint::pause("manifest");
                let sink = writer.finish(&mut manifest)?;
                let bytes = sink.written();
                // The object appears under its name only now, after COMMIT.
                sink.complete().map(|url| (url, bytes, manifest))
            })
            .await?;
            (manifest, mongo, url, bytes)
        }
    };

    let pruned = match (&destination, args.prune) {
        (Destination::File(path), true) => Some(
            super::list::prune_after_backup(
                &Location::Local(parent_dir(path).to_path_buf()),
                settings,
            )
            .await?,
        ),
        (Destination::Object { prefix, .. }, true) => Some(
            super::list::prune_after_backup(&Location::Object(prefix.clone()), settings).await?,
        ),
        (Destination::Stdout, true) => {
            return Err(Error::Usage(
                "--prune needs a backup directory, not --output -".into(),
            ))
        }
        _ => None,
    };

    let report = BackupReport {
        archive: path,
        bytes,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        postgres: manifest.source(Engine::Postgres).map(|source| {
            let datasets: Vec<_> = manifest.tables_of(Engine::Postgres).collect();
            PgSummary {
                database: source.database.clone(),
                tables: datasets.len(),
                rows: datasets.iter().map(|d| d.rows).sum(),
                raw_bytes: datasets.iter().map(|d| d.raw_bytes).sum(),
                chunks: datasets.iter().map(|d| d.chunks.len()).sum(),
                large_objects: large_object_count(&manifest),
                server_version: source.server_version.clone(),
                snapshot: source.snapshot.clone(),
            }
        }),
        mongo: mongo_summary,
        pruned,
        masking: manifest.masking.clone(),
    };
    Ok(report)
}

/// How many large objects the manifest lists.
fn large_object_count(manifest: &Manifest) -> usize {
    manifest
        .engines
        .get(ENGINE_KEY)
        .and_then(|meta| serde_json::from_value::<PgArchiveMeta>(meta.clone()).ok())
        .and_then(|meta| meta.large_objects)
        .map_or(0, |l| l.objects.len())
}

/// One line for cron logs: what was dumped, where, how big, how long.
fn summary_line(report: &BackupReport) -> String {
    let mut parts = Vec::new();
    if let Some(pg) = &report.postgres {
        let mut part = format!(
            "PostgreSQL {}: {}, {} ({} raw)",
            pg.database,
            count(pg.tables as u64, "table"),
            count(pg.rows, "row"),
            human_bytes(pg.raw_bytes)
        );
        if pg.large_objects > 0 {
            part.push_str(&format!(", {} large objects", pg.large_objects));
        }
        parts.push(part);
    }
    if let Some(m) = &report.mongo {
        parts.push(format!(
            "MongoDB {}: {}, {} ({} raw)",
            m.database,
            count(m.collections.len() as u64, "collection"),
            count(m.documents, "document"),
            human_bytes(m.raw_bytes)
        ));
    }
    let pruned = match &report.pruned {
        Some(p) => format!("; pruned {}", count(p.len() as u64, "old archive")),
        None => String::new(),
    };
    let masked = match &report.masking {
        Some(m) => format!(
            "; masked by {}: {} column(s)/field(s), {} value(s) changed",
            m.rules_file,
            m.fields.len(),
            m.fields.iter().map(|f| f.changed).sum::<u64>()
        ),
        None => String::new(),
    };
    format!(
        "backup: {} -> {} ({}) in {:.1}s{pruned}{masked}",
        parts.join("; "),
        report.archive,
        human_bytes(report.bytes),
        report.seconds
    )
}

/// Where [`ArchiveWriter::create_file`] writes `path` until it is complete.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Runs the dumps into `writer`; returns the writer (for finishing), the manifest and the
/// MongoDB summary. A failed dump drops the writer, which removes a `.partial` file.
///
/// MongoDB goes first: a snapshot read is only possible while the server keeps the history of
/// its cluster time (minutes on a default mongod), whereas PostgreSQL's exported snapshot lasts
/// as long as the leader transaction that `PgDump` holds open.
async fn dump_into<W: Write + Send + 'static>(
    mut writer: ArchiveWriter<W>,
    dumps: Dumps,
    jobs: usize,
    header: &Header,
) -> Result<(ArchiveWriter<W>, Manifest, Option<DumpSummary>)> {
    let mut manifest = Manifest::new(header);
    let mut mongo_summary = None;
    if let Some(mongo) = dumps.mongo {
        let dumped = mongo.run(&mut writer).await?;
        mongo_summary = Some(dumped.summary.clone());
        dumped.record(&mut manifest);
    }
    if let Some(pg) = dumps.postgres {
        let (sender, thread) = pipeline::spawn(writer, jobs * 2);
        let dumped = pg.run(sender).await;
        // The writer's own error (disk full, ...) explains a dump that stopped because the
        // writer did, so it comes first.
        writer = blocking(move || thread.join()).await?;
        let output = dumped?;
        manifest.datasets.extend(output.datasets);
        manifest.engines.insert(
            ENGINE_KEY.to_string(),
            serde_json::to_value(&output.meta).expect("PostgreSQL metadata serializes"),
        );
    }
    manifest.finished_at = Utc::now();
    Ok((writer, manifest, mongo_summary))
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
        return dbkeeper::private_fs::create_dir_all(dir).map_err(creating);
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
    dbkeeper::private_fs::create_dir_all(dir).map_err(creating)?;
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

/// Counts what goes to stdout, for the report.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W> CountingWriter<W> {
    fn new(inner: W) -> Self {
        CountingWriter { inner, count: 0 }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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
