//! `migrate lint`, and the lint `migrate up` runs on the migrations it is about to apply.

use serde::Serialize;

use crate::config::LintOnUp;
use crate::error::{Error, Result};
use crate::migrate::lint::{self, LintReport};
use crate::migrate::{plan_up, repeatable};
use crate::Engine;

use super::Context;

#[derive(Serialize)]
pub struct EngineLint<'a> {
    pub engine: Engine,
    pub directory: &'a std::path::Path,
    pub errors: usize,
    pub warnings: usize,
    #[serde(flatten)]
    pub report: LintReport,
}

/// Lints every migration file of every selected engine. Reads no database.
pub fn lint<'c>(ctx: &'c Context<'_>) -> Vec<EngineLint<'c>> {
    ctx.engines
        .iter()
        .map(|&engine| {
            let files: Vec<_> = ctx.files(engine).iter().collect();
            let mut report = lint::lint(engine, &files);
            let repeatables: Vec<_> = ctx.repeatables(engine).iter().collect();
            lint::lint_repeatables(&mut report, engine, &repeatables);
            EngineLint {
                engine,
                directory: ctx.dir(engine),
                errors: report.errors(),
                warnings: report.warnings(),
                report,
            }
        })
        .collect()
}

/// Before `migrate up`: lints the migrations each engine would apply (applied ones are not
/// re-linted) and prints the findings on stderr. With `[migrate] lint = "error"`, error-level
/// findings refuse the run (exit 4) before anything is applied.
pub async fn before_up(ctx: &Context<'_>, to: Option<i64>) -> Result<()> {
    let mode = ctx.settings.lint_on_up;
    if mode == LintOnUp::Off {
        return Ok(());
    }
    let mut errors = 0;
    for &engine in &ctx.engines {
        let files = ctx.files(engine);
        // An engine that cannot be reached, and a plan that cannot be made (drift, dirty), are
        // reported by the run's own preflight, which says per engine what was (not) applied.
        let Ok((_, mut migrator)) = ctx.open(engine).await else {
            continue;
        };
        let Ok(history) = migrator.read_history().await else {
            continue;
        };
        let Ok(pending) = plan_up(files, &history, to) else {
            continue;
        };
        let mut report = lint::lint(engine, &pending);
        if let Ok(recorded) = migrator.read_repeatables().await {
            let changed = repeatable::plan(ctx.repeatables(engine), &recorded);
            lint::lint_repeatables(&mut report, engine, &changed);
        }
        for f in &report.findings {
            tracing::warn!("lint: {}", f.render());
        }
        errors += report.errors();
    }
    if errors > 0 && mode == LintOnUp::Error {
        return Err(Error::Refused(format!(
            "migrate up refused: {errors} lint error(s) in the migrations to apply (listed above; \
             [migrate] lint = \"error\" in the config). Fix them, silence one on purpose with \
             `-- dbkeeper:lint-ignore RULE reason`, or set lint = \"warn\""
        )));
    }
    Ok(())
}
