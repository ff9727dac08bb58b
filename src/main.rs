//! The `dbkeeper` binary: parse, run, print the error chain, exit with the documented code.

mod cli;

use clap::Parser;
use tokio::signal::unix::SignalKind;

use dbkeeper::ExitCode;

fn main() {
    let cli = cli::args::Cli::parse();
    let interrupted = interrupted_message(&cli.command);
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
        // SIGTERM (systemd, docker stop, a CI timeout) is handled like Ctrl-C: installed before
        // the command starts, so no signal finds the default handler that ends the process on
        // the spot.
        let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate()).ok();
        let terminated = async {
            match sigterm.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        // Either signal drops the `cli::run` future before the handler below runs: its
        // destructors release the directory lock. A backup's `.partial` file may still be held
        // by its writer thread, which the process does not wait for: the handler removes it.
        tokio::select! {
            result = cli::run(cli) => match result {
                Ok(code) => code,
                Err(err) => {
                    let code = err.exit_code();
                    eprintln!("dbkeeper: error: {}", error_chain(anyhow::Error::new(err)));
                    code
                }
            },
            _ = tokio::signal::ctrl_c() => {
                dbkeeper::archive::writer::remove_unfinished();
                eprintln!("{interrupted}");
                ExitCode::Interrupted
            }
            _ = terminated => {
                dbkeeper::archive::writer::remove_unfinished();
                eprintln!("{interrupted}");
                ExitCode::Interrupted
            }
        }
    });
    // Dropping the runtime would wait for blocking tasks (a COPY worker, a pg_dump pipe); the
    // exit code is decided, so leave now.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code.code());
}

/// What an interrupted command left behind, in one line.
fn interrupted_message(command: &cli::args::Command) -> &'static str {
    use cli::args::Command;
    match command {
        Command::Restore(_) => {
            "dbkeeper: interrupted; the restore target is incomplete (marked so for PostgreSQL): \
             run the restore again with --mode replace"
        }
        Command::Backup(_) => {
            "dbkeeper: interrupted; the backup did not finish, so this run left no archive"
        }
        Command::Migrate(_) => {
            "dbkeeper: interrupted; `dbkeeper migrate status` shows what was applied and anything \
             left dirty"
        }
        _ => "dbkeeper: interrupted",
    }
}

/// The error and its causes on one line, `outer: cause: cause`. A cause whose text the line
/// already ends with is left out: several errors (ours with a context, tar's wrapping of an I/O
/// error) repeat their source in their own message, and "No space left on device" once is enough.
fn error_chain(err: anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(28);
        let err = dbkeeper::error::Error::io("writing archive x.partial", io);
        let line = error_chain(anyhow::Error::new(err));
        assert_eq!(line.matches("os error 28").count(), 1, "{line}");
        assert!(line.starts_with("writing archive x.partial: "), "{line}");

        let outer = anyhow::Error::new(std::io::Error::other("inner cause")).context("outer");
        assert_eq!(error_chain(outer), "outer: inner cause");
    }
}
