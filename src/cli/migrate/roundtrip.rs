//! `migrate test`: the round trip (up, down to zero, up) on a scratch database per engine,
//! created on the configured server and dropped afterwards.

use serde::Serialize;

use dbkeeper::error::Result;
use dbkeeper::migrate::roundtrip::{round_trip, RoundTripReport};
use dbkeeper::migrate::RunInfo;
use dbkeeper::mongo::migrate::{scratch::MongoScratch, MongoMigrator};
use dbkeeper::postgres::migrate::{scratch::PgScratch, PgMigrator};
use dbkeeper::{mongo, postgres, Engine, ExitCode};

use super::{Context, Output};

#[derive(Serialize)]
struct EngineTest {
    scratch_database: String,
    /// Whether the scratch database was left in place (`--keep` after a failure).
    kept: bool,
    #[serde(flatten)]
    report: RoundTripReport,
}

pub(super) async fn test(ctx: &Context<'_>, out: Output, keep: bool) -> Result<ExitCode> {
    let run = RunInfo::current();
    let scratch_name = format!(
        "dbkeeper_test_{}_{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    );
    let mut results = Vec::new();
    for &engine in &ctx.engines {
        let files = ctx.files(engine);
        let timeout = ctx.lock_timeout;
        let (report, kept) = match engine {
            Engine::Postgres => {
                let server = postgres::PgTarget::new(
                    ctx.settings.require_pg()?,
                    ctx.settings.connect_timeout,
                )?;
                let mut scratch = PgScratch::create(&server, &scratch_name).await?;
                let result = async {
                    let mut migrator = PgMigrator::connect(scratch.target()).await?;
                    round_trip(&mut migrator, &mut scratch, files, timeout, &run).await
                }
                .await;
                let kept = keep && !matches!(&result, Ok(r) if r.failure.is_none());
                if !kept {
                    scratch.drop_database().await?;
                }
                (result?, kept)
            }
            Engine::Mongo => {
                let (url, db) = ctx.settings.require_mongo()?;
                let server = mongo::MongoTarget::new(url, db, ctx.settings.connect_timeout);
                let mut scratch = MongoScratch::create(&server, &scratch_name).await?;
                let result = async {
                    let mut migrator = MongoMigrator::connect(scratch.target()).await?;
                    round_trip(&mut migrator, &mut scratch, files, timeout, &run).await
                }
                .await;
                let kept = keep && !matches!(&result, Ok(r) if r.failure.is_none());
                if !kept {
                    scratch.drop_database().await?;
                }
                (result?, kept)
            }
        };
        results.push(EngineTest {
            scratch_database: scratch_name.clone(),
            kept,
            report,
        });
    }
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
