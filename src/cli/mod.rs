//! The thin CLI: turn arguments into [`Settings`] and each subcommand's options, call its one
//! library operation (`dbkeeper::ops`), render the report as text or JSON, map the exit code.

pub mod args;
mod backup;
mod completions;
mod contents;
mod list;
mod man;
mod migrate;
pub mod output;
mod ping;
mod progress;
mod restore;
mod verify;

use std::time::Duration;

use dbkeeper::config::{Overrides, Settings};
use dbkeeper::error::Result;
use dbkeeper::redact::SecretUrl;
use dbkeeper::ExitCode;

use args::{Cli, Command, ConnectOpts};
use output::Output;

/// Runs one parsed command line to an exit code.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    // Generated from the clap definitions; they need no configuration or database.
    match &cli.command {
        Command::Completions { shell } => return completions::print_completions(*shell),
        Command::Man { command, dir } => return man::run(command, dir.as_deref()),
        _ => {}
    }
    let connect = connect_opts(&cli);
    dbkeeper::wait::set_wait_for_servers(Duration::from_secs(connect.wait.unwrap_or(0)));
    progress::install(cli.global.json_events, cli.global.quiet);
    let settings = settings_from(&cli, &connect)?;
    let out = Output {
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    // `verify` compares only databases named on its command line (see verify::run).
    let named_targets = dbkeeper::ops::verify::NamedTargets {
        pg: connect.pg_url.is_some(),
        mongo: connect.mongo_url.is_some(),
        mongo_db: connect.mongo_db.is_some(),
    };
    match cli.command {
        Command::Ping(_) => ping::run(&settings, out).await,
        Command::Migrate(args) => migrate::run(args, &settings, out).await,
        Command::Backup(args) => backup::run(args, &settings, out).await,
        Command::Restore(args) => restore::run(args, &settings, out).await,
        Command::Verify(args) => verify::run(args, &settings, named_targets, out).await,
        Command::List(args) => list::list(args, &settings, out).await,
        Command::Prune(args) => list::prune(args, &settings, out).await,
        Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled before configuration")
        }
    }
}

/// The connection flags, given after the command or before it.
fn connect_opts(cli: &Cli) -> ConnectOpts {
    let after = match &cli.command {
        Command::Migrate(a) => a.connect.clone().into(),
        Command::Backup(a) => a.connect.clone(),
        Command::Restore(a) => a.connect.clone(),
        Command::Verify(a) => a.connect.clone(),
        Command::Ping(a) => a.connect.clone(),
        Command::List(_)
        | Command::Prune(_)
        | Command::Completions { .. }
        | Command::Man { .. } => ConnectOpts::default(),
    };
    after.or(cli.connect.clone())
}

fn settings_from(cli: &Cli, connect: &ConnectOpts) -> Result<Settings> {
    let overrides = Overrides {
        config: cli.global.config.clone(),
        pg_url: connect.pg_url.clone().map(SecretUrl::new),
        mongo_url: connect.mongo_url.clone().map(SecretUrl::new),
        mongo_db: connect.mongo_db.clone(),
        connect_timeout: Some(Duration::from_secs(connect.connect_timeout.unwrap_or(10))),
    };
    Settings::resolve(&overrides, &|key| std::env::var(key).ok())
}
