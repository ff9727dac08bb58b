//! `dbkeeper backup`: dump the configured databases into one archive.
//!
//! The archive goes to `--output`: a directory (a timestamped file is created in it), a file
//! name ending in `.tar`, or `-` for stdout (the summary then goes to stderr). A file is written
//! as `.partial` and renamed only when complete; any failure leaves no archive behind.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use dbkeeper::archive::chunk::DEFAULT_CHUNK_BYTES;
use dbkeeper::archive::writer::ArchiveWriter;
use dbkeeper::archive::{pipeline, Header, Manifest, ARCHIVE_SUFFIX};
use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::postgres::dump::{DumpOptions, PgDump, ENGINE_KEY};
use dbkeeper::postgres::PgTarget;
use dbkeeper::ExitCode;

use super::args::BackupArgs;
use super::output::{human_bytes, Output};

#[derive(Debug, Serialize)]
struct BackupReport {
    /// The archive's path, or `-` for stdout.
    archive: String,
    /// Size of the archive in bytes.
    bytes: u64,
    tables: usize,
    rows: u64,
    /// Uncompressed COPY text bytes.
    raw_bytes: u64,
    chunks: usize,
    server_version: String,
    snapshot: Option<String>,
    seconds: f64,
}

/// Where the archive goes.
enum Destination {
    File(PathBuf),
    Stdout,
}

pub async fn run(args: BackupArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    settings.require_any_engine()?;
    let Some(pg_url) = &settings.pg_url else {
        return Err(Error::NotImplemented("backup of MongoDB"));
    };
    let jobs = args.jobs.unwrap_or(settings.jobs);
    if jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let started = Instant::now();
    let target = PgTarget::new(pg_url, settings.connect_timeout)?;
    let dump = PgDump::begin(
        &target,
        DumpOptions {
            jobs,
            compression_level: args.compression_level.unwrap_or(settings.compression_level),
            chunk_bytes: args.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES).max(1),
            include: args.include.clone(),
            exclude: args.exclude.clone(),
        },
    )
    .await?;
    let created_at = Utc::now();
    let header = Header::new(created_at, vec![dump.source().clone()]);
    let destination = destination(args.output.as_deref(), settings, created_at)?;

    let (manifest, path, bytes) = match &destination {
        Destination::File(path) => {
            let writer = ArchiveWriter::create_file(path, &header)?;
            let (writer, mut manifest) = dump_into(writer, dump, jobs, &header).await?;
            let path =
                blocking(move || writer.finish_file(&mut manifest).map(|p| (p, manifest))).await?;
            let bytes = std::fs::metadata(&path.0).map(|m| m.len()).unwrap_or(0);
            (path.1, path.0.display().to_string(), bytes)
        }
        Destination::Stdout => {
            let out = CountingWriter::new(BufWriter::with_capacity(1 << 20, std::io::stdout()));
            let writer = ArchiveWriter::new(out, &header, "stdout".into())?;
            let (writer, mut manifest) = dump_into(writer, dump, jobs, &header).await?;
            let out = blocking(move || writer.finish(&mut manifest).map(|w| (w, manifest))).await?;
            (out.1, "-".to_string(), out.0.count)
        }
    };

    let report = BackupReport {
        archive: path,
        bytes,
        tables: manifest.datasets.len(),
        rows: manifest.datasets.iter().map(|d| d.rows).sum(),
        raw_bytes: manifest.datasets.iter().map(|d| d.raw_bytes).sum(),
        chunks: manifest.datasets.iter().map(|d| d.chunks.len()).sum(),
        server_version: header.sources[0].server_version.clone(),
        snapshot: header.sources[0].snapshot.clone(),
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    };
    let line = format!(
        "backup: {} tables, {} rows ({} raw) -> {} ({}) in {:.1}s",
        report.tables,
        report.rows,
        human_bytes(report.raw_bytes),
        report.archive,
        human_bytes(report.bytes),
        report.seconds
    );
    if matches!(destination, Destination::Stdout) {
        // stdout carries the archive: the report goes to stderr.
        if out.json {
            let json = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::io("writing JSON output", std::io::Error::other(e)))?;
            eprintln!("{json}");
        } else {
            eprintln!("{line}");
        }
    } else {
        out.emit(&report, || println!("{line}"))?;
    }
    Ok(ExitCode::Ok)
}

/// Runs the dump into `writer` on its own thread; returns the writer (for finishing) and the
/// manifest. A failed dump drops the writer, which removes a `.partial` file.
async fn dump_into<W: Write + Send + 'static>(
    writer: ArchiveWriter<W>,
    dump: PgDump,
    jobs: usize,
    header: &Header,
) -> Result<(ArchiveWriter<W>, Manifest)> {
    let (sender, thread) = pipeline::spawn(writer, jobs * 2);
    let dumped = dump.run(sender).await;
    // The writer's own error (disk full, ...) explains a dump that stopped because the writer
    // did, so it comes first.
    let writer = blocking(move || thread.join()).await?;
    let output = dumped?;
    let mut manifest = Manifest::new(header);
    manifest.datasets = output.datasets;
    manifest.engines.insert(
        ENGINE_KEY.to_string(),
        serde_json::to_value(&output.meta).expect("PostgreSQL metadata serializes"),
    );
    manifest.finished_at = Utc::now();
    Ok((writer, manifest))
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
    let file_name = format!(
        "{}-{}{ARCHIVE_SUFFIX}",
        settings.archive_prefix,
        created_at.format("%Y%m%dT%H%M%SZ")
    );
    let dir = match output {
        Some("-") => return Ok(Destination::Stdout),
        Some(o) if o.ends_with(".tar") && !Path::new(o).is_dir() => {
            return Ok(Destination::File(PathBuf::from(o)))
        }
        Some(o) => PathBuf::from(o),
        None => settings.backup_dir.clone(),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating backup directory {}", dir.display()), e))?;
    Ok(Destination::File(dir.join(file_name)))
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
