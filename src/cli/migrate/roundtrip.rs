//! `migrate test`, rendered.

use dbkeeper::error::Result;
use dbkeeper::ops::migrate::{roundtrip, Context};
use dbkeeper::ExitCode;

use super::Output;

pub(super) async fn test(ctx: &Context<'_>, out: Output, keep: bool) -> Result<ExitCode> {
    let results = roundtrip::test(ctx, keep).await?;
    out.emit(&serde_json::json!({ "engines": &results }), || {
        for r in &results {
            let n = r.report.migrations;
            match &r.report.failure {
                None => println!(
                    "{}: ok: {n} migration(s) applied, rolled back to zero and applied again on \
                     scratch database {}; every down undid its up",
                    r.report.engine, r.scratch_database
                ),
                Some(f) => {
                    println!(
                        "{}: FAILED at V{}__{} ({:?}): {}",
                        r.report.engine, f.version, f.name, f.phase, f.message
                    );
                    if !f.diff.is_empty() {
                        println!("{}", f.diff.trim_end());
                    }
                    if r.kept {
                        println!(
                            "scratch database {} kept for inspection",
                            r.scratch_database
                        );
                    }
                }
            }
        }
    })?;
    Ok(if results.iter().any(|r| r.report.failure.is_some()) {
        ExitCode::CheckFailed
    } else {
        ExitCode::Ok
    })
}
