//! `dbkeeper verify ARCHIVE`: offline checks of an archive. V0 (structure, sizes, SHA-256 of
//! every member, COMMIT) and V1 (every chunk decompresses, record counts and content digests
//! match the manifest). Every problem is listed; any problem exits 1.

use serde::Serialize;

use dbkeeper::archive::reader::{DecodeReport, VerifiedArchive};
use dbkeeper::config::Settings;
use dbkeeper::error::{Error, Result};
use dbkeeper::ExitCode;

use super::args::VerifyArgs;
use super::output::human_bytes;
use super::output::Output;

#[derive(Debug, Serialize)]
struct VerifyReport {
    archive: String,
    ok: bool,
    /// Levels that ran: `V0` (archive), `V1` (decode).
    levels: Vec<&'static str>,
    members: usize,
    member_bytes: u64,
    #[serde(flatten)]
    decode: DecodeReport,
}

pub async fn run(args: VerifyArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    if args.deep {
        return Err(Error::NotImplemented("verify --deep"));
    }
    let path = args.archive.clone();
    let jobs = settings.jobs;
    let checked = tokio::task::spawn_blocking(move || {
        VerifiedArchive::open(&path).map(|archive| {
            let datasets = &archive.manifest().datasets;
            dbkeeper::progress::start(
                "verify",
                Some(datasets.iter().map(|d| d.rows).sum()),
                Some(datasets.iter().map(|d| d.raw_bytes).sum()),
            );
            let decode = archive.verify_decode(jobs);
            dbkeeper::progress::finish();
            (
                archive.manifest().members.len(),
                archive.member_bytes(),
                decode,
            )
        })
    })
    .await
    .map_err(|e| Error::io("verifying the archive", std::io::Error::other(e)))?;
    let (members, member_bytes, decode) = match checked {
        Ok(found) => found,
        // The archive is what verify checks: damage is a failed check, not bad input.
        Err(Error::BadInput { what, message }) => {
            return Err(Error::CheckFailed(format!("{what} {message}")))
        }
        Err(other) => return Err(other),
    };
    let report = VerifyReport {
        archive: args.archive.display().to_string(),
        ok: decode.problems.is_empty(),
        levels: vec!["V0", "V1"],
        members,
        member_bytes,
        decode,
    };
    out.emit(&report, || {
        if report.ok {
            println!(
                "verify: {} OK: {} members ({}), {} datasets, {} chunks, {} rows decoded",
                report.archive,
                report.members,
                human_bytes(report.member_bytes),
                report.decode.datasets,
                report.decode.chunks,
                report.decode.rows
            );
        } else {
            println!(
                "verify: {} FAILED: {} problem(s)",
                report.archive,
                report.decode.problems.len()
            );
            for p in &report.decode.problems {
                println!("  - {p}");
            }
        }
    })?;
    if report.ok {
        Ok(ExitCode::Ok)
    } else {
        Err(Error::CheckFailed(format!(
            "archive {} failed verification",
            report.archive
        )))
    }
}
