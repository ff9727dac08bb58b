//! `dbkeeper restore ARCHIVE --list`: what an archive holds, as `pg_restore -l` shows a dump's
//! table of contents. Read from the checked manifest; no database is touched.

use serde::Serialize;

use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::error::Result;
use dbkeeper::{Engine, ExitCode};

use super::output::{human_bytes, Output};

#[derive(Serialize)]
struct Contents {
    archive: String,
    created_at: chrono::DateTime<chrono::Utc>,
    tool_version: String,
    /// Compression of the data members, from their names (`gzip`, `zstd`, `none`).
    codecs: Vec<String>,
    /// Whether data members are encrypted (`none` until an archive can be).
    encryption: &'static str,
    sources: Vec<SourceContents>,
}

#[derive(Serialize)]
struct SourceContents {
    engine: Engine,
    /// The source URL, password redacted.
    url: String,
    database: String,
    server_version: String,
    datasets: Vec<DatasetContents>,
}

#[derive(Serialize)]
struct DatasetContents {
    /// `schema.table` or the collection name.
    name: String,
    /// Rows (PostgreSQL) or documents (MongoDB).
    rows: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    chunks: usize,
}

pub fn print(archive: &VerifiedArchive, out: Output) -> Result<ExitCode> {
    let manifest = archive.manifest();
    let mut codecs: Vec<String> = manifest
        .datasets
        .iter()
        .flat_map(|d| &d.chunks)
        .map(|c| codec_of(&c.member).to_string())
        .collect();
    codecs.sort();
    codecs.dedup();
    let contents = Contents {
        archive: archive.path().display().to_string(),
        created_at: manifest.created_at,
        tool_version: manifest.tool_version.clone(),
        codecs,
        encryption: "none",
        sources: manifest
            .sources
            .iter()
            .map(|s| SourceContents {
                engine: s.engine,
                url: s.url.clone(),
                database: s.database.clone(),
                server_version: s.server_version.clone(),
                datasets: manifest
                    .datasets_of(s.engine)
                    .map(|d| DatasetContents {
                        name: match d.engine {
                            Engine::Postgres => d.qualified_name(),
                            Engine::Mongo => d.name.clone(),
                        },
                        rows: d.rows,
                        raw_bytes: d.raw_bytes,
                        stored_bytes: d.chunks.iter().map(|c| c.size).sum(),
                        chunks: d.chunks.len(),
                    })
                    .collect(),
            })
            .collect(),
    };
    out.emit(&contents, || print_human(&contents))?;
    Ok(ExitCode::Ok)
}

fn print_human(c: &Contents) {
    println!(
        "archive {} (taken {}, dbkeeper {}; codec {}; encryption {})",
        c.archive,
        c.created_at.format("%Y-%m-%d %H:%M:%SZ"),
        c.tool_version,
        if c.codecs.is_empty() {
            "none".to_string()
        } else {
            c.codecs.join(", ")
        },
        c.encryption
    );
    for s in &c.sources {
        let (kind, unit) = match s.engine {
            Engine::Postgres => ("table", "rows"),
            Engine::Mongo => ("collection", "docs"),
        };
        println!(
            "{} {} ({}, {}): {} {kind}(s)",
            s.engine,
            s.database,
            s.url,
            s.server_version,
            s.datasets.len()
        );
        for d in &s.datasets {
            println!(
                "  {:<40} {:>12} {unit} {:>10} raw {:>10} stored",
                d.name,
                d.rows,
                human_bytes(d.raw_bytes),
                human_bytes(d.stored_bytes)
            );
        }
    }
}

/// The codec a data member was written with, from its file name.
fn codec_of(member: &str) -> &'static str {
    if member.ends_with(".gz") {
        "gzip"
    } else if member.ends_with(".zst") {
        "zstd"
    } else {
        "none"
    }
}
