//! `dbkeeper completions SHELL` and `dbkeeper man`: generated from the clap definitions, so they
//! can never disagree with `--help`.

use clap::CommandFactory;

use dbkeeper::error::{Error, Result};
use dbkeeper::ExitCode;

use super::args::Cli;

pub fn print_completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "dbkeeper", &mut std::io::stdout());
    Ok(ExitCode::Ok)
}

pub fn print_man() -> Result<ExitCode> {
    let man = clap_mangen::Man::new(Cli::command());
    man.render(&mut std::io::stdout())
        .map_err(|e| Error::io("writing the man page to stdout", e))?;
    Ok(ExitCode::Ok)
}
