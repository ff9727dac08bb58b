//! `dbkeeper completions SHELL`: generated from the clap definitions, so it can never disagree
//! with `--help`.

use clap::CommandFactory;

use dbkeeper::error::Result;
use dbkeeper::ExitCode;

use super::args::Cli;

pub fn print_completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "dbkeeper", &mut std::io::stdout());
    Ok(ExitCode::Ok)
}
