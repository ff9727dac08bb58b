//! `dbkeeper ping`: [`ops::ping`], one line per server.

use dbkeeper::config::Settings;
use dbkeeper::error::Result;
use dbkeeper::ops::ping;
use dbkeeper::ExitCode;

use super::output::Output;

pub async fn run(settings: &Settings, out: Output) -> Result<ExitCode> {
    let report = ping::ping(settings).await?;
    out.emit(&report, || {
        for s in &report.servers {
            println!(
                "{:<10} {:<40} {}",
                s.engine.to_string(),
                s.target,
                s.version
            );
        }
    })?;
    Ok(ExitCode::Ok)
}
