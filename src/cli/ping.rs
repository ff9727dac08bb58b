//! `dbkeeper ping`: connect to each configured database and print its server version. Also the
//! quickest way to check a configuration.

use serde::Serialize;

use dbkeeper::config::Settings;
use dbkeeper::error::Result;
use dbkeeper::{mongo, postgres, Engine, ExitCode};

use super::output::Output;

#[derive(Serialize)]
struct PingReport {
    servers: Vec<ServerInfo>,
}

#[derive(Serialize)]
struct ServerInfo {
    engine: Engine,
    target: String,
    version: String,
}

pub async fn run(settings: &Settings, out: Output) -> Result<ExitCode> {
    settings.require_any_engine()?;
    let mut servers = Vec::new();
    if let Some(url) = &settings.pg_url {
        let target = postgres::PgTarget::new(url, settings.connect_timeout)?;
        let client = target.connect().await?;
        servers.push(ServerInfo {
            engine: Engine::Postgres,
            target: target.describe(),
            version: postgres::connect::server_version(&client).await?,
        });
    }
    if settings.mongo_url.is_some() {
        let (url, db) = settings.require_mongo()?;
        let target = mongo::MongoTarget::new(url, db, settings.connect_timeout);
        let client = target.connect().await?;
        servers.push(ServerInfo {
            engine: Engine::Mongo,
            target: target.describe(),
            version: mongo::connect::server_version(&client).await?,
        });
    }
    let report = PingReport { servers };
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
