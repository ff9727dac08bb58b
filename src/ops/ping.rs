//! `ping`: connect to each configured database and ask its server version. Also the quickest
//! way to check a configuration.

use serde::Serialize;

use crate::config::Settings;
use crate::engine;
use crate::error::Result;
use crate::Engine;

#[derive(Serialize)]
pub struct PingReport {
    pub servers: Vec<ServerInfo>,
}

#[derive(Serialize)]
pub struct ServerInfo {
    pub engine: Engine,
    pub target: String,
    pub version: String,
}

pub async fn ping(settings: &Settings) -> Result<PingReport> {
    settings.require_any_engine()?;
    let mut servers = Vec::new();
    for database in engine::configured(settings)? {
        servers.push(ServerInfo {
            engine: database.engine(),
            target: database.describe(),
            version: database.server_version().await?,
        });
    }
    Ok(PingReport { servers })
}
