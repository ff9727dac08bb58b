//! `migrate test`: proves that every down script undoes its up script.
//!
//! On a scratch database: apply the migrations one at a time, recording the schema before each;
//! then revert them one at a time, newest first, comparing the schema after each down with the
//! schema recorded before the matching up; then apply everything again (a down that leaves
//! something behind often makes the second up fail). The first migration that breaks the round
//! trip is reported with the difference.

use std::time::Duration;

use serde::Serialize;

use super::model::{Migration, RunInfo};
use super::runner::{self, MigrationEngine};
use crate::error::{Engine, Result};

/// What an engine must provide to compare schemas: a text description of everything migrations
/// create (tables, indexes, constraints / collections, options, validators, indexes), without
/// dbkeeper's own history, stable between two calls on an unchanged database.
#[async_trait::async_trait]
pub trait SchemaSnapshot: Send {
    async fn schema(&mut self) -> Result<String>;
}

/// Which step of the round trip failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The first up failed.
    Up,
    /// The down failed, or left a schema other than the one before the up.
    Down,
    /// The up after the down failed, or left a schema other than the first up did.
    Reapply,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundTripFailure {
    pub version: i64,
    pub name: String,
    pub phase: Phase,
    /// What went wrong, in one sentence.
    pub message: String,
    /// Unified diff, expected (before the up) to found (after the down); empty when a script
    /// failed.
    pub diff: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundTripReport {
    pub engine: Engine,
    pub migrations: usize,
    pub failure: Option<RoundTripFailure>,
}

/// Runs the round trip on `engine` (a scratch database) for `files`.
pub async fn round_trip(
    engine: &mut dyn MigrationEngine,
    schema: &mut dyn SchemaSnapshot,
    files: &[Migration],
    lock_timeout: Duration,
    run: &RunInfo,
) -> Result<RoundTripReport> {
    let mut report = RoundTripReport {
        engine: engine.engine(),
        migrations: files.len(),
        failure: None,
    };
    let fail = |m: &Migration, phase, message: String, diff: String| {
        Some(RoundTripFailure {
            version: m.version,
            name: m.name.clone(),
            phase,
            message,
            diff,
        })
    };
    let mut before = Vec::with_capacity(files.len() + 1);
    before.push(schema.schema().await?);
    for m in files {
        let up = runner::up(
            engine,
            files,
            &[],
            Some(m.version),
            false,
            lock_timeout,
            run,
        )
        .await?;
        if let Some(f) = up.failure {
            report.failure = fail(m, Phase::Up, f.message, String::new());
            return Ok(report);
        }
        before.push(schema.schema().await?);
    }
    for (i, m) in files.iter().enumerate().rev() {
        let down = runner::down(engine, files, Some(1), None, false, lock_timeout, run).await?;
        if let Some(f) = down.failure {
            report.failure = fail(m, Phase::Down, f.message, String::new());
            return Ok(report);
        }
        let after = schema.schema().await?;
        if after != before[i] {
            report.failure = fail(
                m,
                Phase::Down,
                format!(
                    "{}'s down script does not undo its up script: the schema after it differs \
                     from the schema before the up",
                    m.label()
                ),
                diff(&before[i], &after),
            );
            return Ok(report);
        }
    }
    let again = runner::up(engine, files, &[], None, false, lock_timeout, run).await?;
    if let Some(f) = again.failure {
        let m = files
            .iter()
            .find(|m| m.version == f.version)
            .unwrap_or(&files[0]);
        report.failure = fail(
            m,
            Phase::Reapply,
            format!("applying again after rolling back: {}", f.message),
            String::new(),
        );
        return Ok(report);
    }
    let last = schema.schema().await?;
    if let Some(expected) = before.last().filter(|b| **b != last) {
        let m = files.last().expect("a changed schema means migrations ran");
        report.failure = fail(
            m,
            Phase::Reapply,
            "applying every migration again gives another schema than the first time".into(),
            diff(expected, &last),
        );
    }
    Ok(report)
}

/// A unified diff, expected -> found, with a little context.
pub fn diff(expected: &str, found: &str) -> String {
    similar::TextDiff::from_lines(expected, found)
        .unified_diff()
        .context_radius(2)
        .header("expected (before the up)", "found (after the down)")
        .to_string()
}
