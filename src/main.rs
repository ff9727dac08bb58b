//! The `dbkeeper` binary: parse, run, print the error chain, exit with the documented code.

mod cli;

use clap::Parser;

use dbkeeper::ExitCode;

fn main() {
    let cli = cli::args::Cli::parse();
    cli::output::init_logging(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dbkeeper: error: cannot start the async runtime: {e}");
            std::process::exit(ExitCode::Runtime.code());
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            result = cli::run(cli) => match result {
                Ok(code) => code,
                Err(err) => {
                    let code = err.exit_code();
                    eprintln!("dbkeeper: error: {:#}", anyhow::Error::new(err));
                    code
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("dbkeeper: interrupted");
                ExitCode::Interrupted
            }
        }
    });
    // Dropping the runtime would wait for blocking tasks (a COPY worker, a pg_dump pipe); the
    // exit code is decided, so leave now.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code.code());
}
