//! `dbkeeper verify ARCHIVE`: V0 (structure, sizes, SHA-256 of every member, COMMIT) and V1
//! (every chunk decompresses, record counts and content digests match the manifest), offline.
//! With `--pg-url` / `--mongo-url`, V2 compares those live databases with the archive (exact
//! counts, sequences, indexes, validators and options, schema fingerprint; `--deep`: content
//! digests). Every mismatch is listed; any mismatch exits 1, a damaged archive included.

use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::ops::keys::UnlockKeys;
use dbkeeper::ops::verify::{self, NamedTargets, Verified, VerifyRequest};
use dbkeeper::verify::{show, Kind, Level, Mismatch, VerifyReport};
use dbkeeper::ExitCode;

use super::args::VerifyArgs;
use super::output::{count, human_bytes, Output};

pub async fn run(
    args: VerifyArgs,
    settings: &Settings,
    named: NamedTargets,
    out: Output,
) -> Result<ExitCode> {
    let request = VerifyRequest {
        archive: args.archive,
        deep: args.deep,
        jobs: args.jobs,
        keys: UnlockKeys {
            identity: args.keys.identity,
            passphrase_file: args.keys.passphrase_file,
        },
        named,
    };
    let Verified { report, offline_ok } = verify::verify(&request, settings).await?;
    out.emit(&report, || print_human(&report))?;
    if report.ok {
        return Ok(ExitCode::Ok);
    }
    // stderr alone (cron mail, CI logs) should say what is wrong, not only that something is.
    const SHOWN: usize = 3;
    let mut first: Vec<&str> = report
        .mismatches
        .iter()
        .take(SHOWN)
        .map(|m| m.message.as_str())
        .collect();
    if report.mismatches.len() > SHOWN {
        first.push("...");
    }
    let verdict = if offline_ok {
        "failed verification"
    } else {
        // The same words restore uses for an archive it will not touch.
        "is damaged or incomplete; refusing to use it"
    };
    Err(Error::CheckFailed(format!(
        "archive {} {verdict}: {} mismatch(es): {}",
        report.archive,
        report.mismatches.len(),
        first.join("; ")
    )))
}

fn print_human(report: &VerifyReport) {
    let levels: Vec<String> = report.levels.iter().map(|l| format!("{l:?}")).collect();
    let f = &report.facts;
    if report.ok && !report.levels.contains(&Level::V1) {
        println!(
            "verify: {} OK (V0): {} members ({}) intact, COMMIT matches, {} checks; the archive \
             is encrypted: V1 needs the key (--identity FILE or --passphrase-file FILE)",
            report.archive,
            f.members,
            human_bytes(f.member_bytes),
            report.checks
        );
    } else if report.ok {
        println!(
            "verify: {} OK ({}): {} ({}), {}, {}, {} decoded, {}",
            report.archive,
            levels.join("+"),
            count(f.members as u64, "member"),
            human_bytes(f.member_bytes),
            count(f.datasets as u64, "dataset"),
            count(f.chunks as u64, "chunk"),
            count(f.rows, "row"),
            count(report.checks, "check")
        );
    } else {
        println!(
            "verify: {} FAILED ({}): {} in {}",
            report.archive,
            levels.join("+"),
            count(report.mismatches.len() as u64, "mismatch"),
            count(report.checks, "check")
        );
    }
    for t in &report.targets {
        println!(
            "  {} {}: {}, {}, {}{} in {:.2} s",
            t.engine,
            t.target,
            count(t.objects as u64, "object"),
            count(t.checks, "check"),
            count(t.mismatches as u64, "mismatch"),
            if report.deep {
                ", content compared"
            } else {
                ""
            },
            t.seconds
        );
    }
    print_mismatches(&report.mismatches);
}

/// One line per mismatch; definitions (indexes, validators, options) also show both sides.
pub fn print_mismatches(mismatches: &[Mismatch]) {
    for m in mismatches {
        let kind = serde_json::to_value(m.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let engine = m.engine.map(|e| format!("{e} ")).unwrap_or_default();
        println!("  - [{:?} {kind}] {engine}{}", m.level, m.message);
        if matches!(m.kind, Kind::Index | Kind::Validator | Kind::Options) {
            println!("      archive: {}", show(&m.expected));
            println!("      found:   {}", show(&m.found));
        }
    }
}
