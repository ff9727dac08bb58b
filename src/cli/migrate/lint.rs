//! `migrate lint`, rendered.

use dbkeeper::error::Result;
use dbkeeper::ops::migrate::{lint, Context};
use dbkeeper::ExitCode;

use super::Output;

/// Lints every migration file of every selected engine. Reads no database.
pub(super) fn lint(ctx: &Context<'_>, out: Output) -> Result<ExitCode> {
    let reports = lint::lint(ctx);
    out.emit(&serde_json::json!({ "engines": &reports }), || {
        for r in &reports {
            for f in &r.report.findings {
                println!("{}", f.render());
            }
            println!(
                "{}: {} file(s) in {} linted: {} error(s), {} warning(s), {} ignored on purpose",
                r.engine,
                r.report.files,
                r.directory.display(),
                r.errors,
                r.warnings,
                r.report.ignored
            );
        }
    })?;
    Ok(if reports.iter().any(|r| r.errors > 0) {
        ExitCode::CheckFailed
    } else {
        ExitCode::Ok
    })
}
