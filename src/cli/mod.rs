//! The thin CLI: turn arguments into [`Settings`], call one verb function per subcommand, print.

pub mod args;
mod backup;
mod completions;
mod keys;
mod list;
mod migrate;
pub mod output;
mod ping;
mod progress;
mod restore;
mod targets;
mod verify;

use std::time::Duration;

use dbkeeper::config::{Overrides, Settings};
use dbkeeper::error::Result;
use dbkeeper::redact::SecretUrl;
use dbkeeper::ExitCode;

use args::{Cli, Command};
use output::Output;

/// Runs one parsed command line to an exit code.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    // Generated from the clap definitions; they need no configuration or database.
    match &cli.command {
        Command::Completions { shell } => return completions::print_completions(*shell),
        Command::Man => return completions::print_man(),
        _ => {}
    }
    dbkeeper::wait::set_wait_for_servers(Duration::from_secs(cli.global.wait));
    progress::install(cli.global.json_events, cli.global.quiet);
    let settings = settings_from(&cli)?;
    let out = Output {
        json: cli.global.json,
    };
    // `verify` compares only databases named on its command line (see verify::run).
    let named_targets = verify::NamedTargets {
        pg: cli.global.pg_url.is_some(),
        mongo: cli.global.mongo_url.is_some(),
        mongo_db: cli.global.mongo_db.is_some(),
    };
    match cli.command {
        Command::Ping => ping::run(&settings, out).await,
        Command::Migrate(args) => migrate::run(args, &settings, out).await,
        Command::Backup(args) => backup::run(args, &settings, out).await,
        Command::Restore(args) => restore::run(args, &settings, out).await,
        Command::Verify(args) => verify::run(args, &settings, named_targets, out).await,
        Command::List(args) => list::list(args, &settings, out),
        Command::Prune(args) => list::prune(args, &settings, out),
        Command::Completions { .. } | Command::Man => unreachable!("handled before configuration"),
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
