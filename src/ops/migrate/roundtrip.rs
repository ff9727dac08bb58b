//! `migrate test`: the round trip (up, down to zero, up) on a scratch database per engine,
//! created on the configured server and dropped afterwards.

use serde::Serialize;

use crate::engine;
use crate::error::Result;
use crate::migrate::roundtrip::{round_trip, RoundTripReport};
use crate::migrate::RunInfo;

use super::Context;

#[derive(Serialize)]
pub struct EngineTest {
    pub scratch_database: String,
    /// Whether the scratch database was left in place (`--keep` after a failure).
    pub kept: bool,
    #[serde(flatten)]
    pub report: RoundTripReport,
}

/// Runs the round trip of every selected engine's migrations; `keep` leaves a failed run's
/// scratch database in place for inspection.
pub async fn test(ctx: &Context<'_>, keep: bool) -> Result<Vec<EngineTest>> {
    let run = RunInfo::current();
    let scratch_name = format!(
        "dbkeeper_test_{}_{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    );
    let mut results = Vec::new();
    for &engine in &ctx.engines {
        let files = ctx.files(engine);
        let server = engine::open(engine, ctx.settings)?;
        let mut scratch = server.create_scratch(&scratch_name).await?;
        let result = async {
            let mut migrator = scratch.migrator().await?;
            round_trip(
                migrator.as_mut(),
                scratch.schema(),
                files,
                ctx.lock_timeout,
                &run,
            )
            .await
        }
        .await;
        let kept = keep && !matches!(&result, Ok(r) if r.failure.is_none());
        if !kept {
            scratch.drop_database().await?;
        }
        results.push(EngineTest {
            scratch_database: scratch_name.clone(),
            kept,
            report: result?,
        });
    }
    Ok(results)
}
