//! `dbkeeper backup`: the flags into [`BackupOptions`], [`ops::backup`], one summary line (or the
//! JSON report). With `--output -` the archive is stdout, so the report goes to stderr.

use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::ops::backup::{self, BackupOptions, BackupReport};
use dbkeeper::ops::keys::SealKeys;
use dbkeeper::ExitCode;

use super::args::BackupArgs;
use super::output::{count, human_bytes, Output};

pub async fn run(args: BackupArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let to_stdout = args.output.as_deref() == Some("-");
    let report = backup::backup(&options(args), settings).await?;
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

fn options(args: BackupArgs) -> BackupOptions {
    BackupOptions {
        output: args.output,
        jobs: args.jobs,
        compression: args.compression,
        compression_level: args.compression_level,
        include: args.include,
        exclude: args.exclude,
        prune: args.prune,
        chunk_bytes: args.chunk_bytes,
        mask: args.mask,
        keys: SealKeys {
            recipients: args.recipient,
            recipients_file: args.recipients_file,
            passphrase_file: args.passphrase_file,
        },
    }
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
