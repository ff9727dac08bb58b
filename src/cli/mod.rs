//! The thin CLI: turn arguments into [`Settings`], call one verb function per subcommand, print.

pub mod args;
mod backup;
mod migrate;
pub mod output;
mod ping;
mod restore;
mod verify;

use std::time::Duration;

use dbkeeper::config::{Overrides, Settings};
use dbkeeper::error::{Error, Result};
use dbkeeper::redact::SecretUrl;
use dbkeeper::ExitCode;

use args::{Cli, Command};
use output::Output;

/// Runs one parsed command line to an exit code.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let settings = settings_from(&cli)?;
    let out = Output {
        json: cli.global.json,
    };
    match cli.command {
        Command::Ping => ping::run(&settings, out).await,
        Command::Migrate(args) => migrate::run(args, &settings, out).await,
        Command::Backup(args) => backup::run(args, &settings, out).await,
        Command::Restore(args) => restore::run(args, &settings, out).await,
        Command::Verify(args) => verify::run(args, &settings, out).await,
        Command::List(_) => Err(Error::NotImplemented("list")),
        Command::Prune(_) => Err(Error::NotImplemented("prune")),
    }
}

fn settings_from(cli: &Cli) -> Result<Settings> {
    let g = &cli.global;
    let overrides = Overrides {
        config: g.config.clone(),
        pg_url: g.pg_url.clone().map(SecretUrl::new),
        mongo_url: g.mongo_url.clone().map(SecretUrl::new),
        mongo_db: g.mongo_db.clone(),
        connect_timeout: Some(Duration::from_secs(g.connect_timeout)),
    };
    Settings::resolve(&overrides, &|key| std::env::var(key).ok())
}
