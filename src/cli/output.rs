//! Where results go: human text or one JSON document on stdout; logs on stderr.

use serde::Serialize;

use dbkeeper::error::{Error, Result};

/// The output mode chosen by `--json` and `-q`.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    /// `-q`: no human-readable report (errors still go to stderr; `--json` is still printed,
    /// having been asked for).
    pub quiet: bool,
}

impl Output {
    /// Prints `value` as pretty JSON when `--json` was given, else calls `human` unless `-q`.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce()) -> Result<()> {
        if self.json {
            let text = serde_json::to_string_pretty(value)
                .map_err(|e| Error::io("writing JSON output", std::io::Error::other(e)))?;
            println!("{text}");
        } else if !self.quiet {
            human();
        }
        Ok(())
    }
}

/// Sets up logging on stderr: warnings by default, `-v` info, `-vv` debug, `-q` errors only;
/// `RUST_LOG` overrides all of it. Colours only when stderr is a terminal (and `NO_COLOR` is
/// unset): a log file, a pipe or cron mail gets plain text.
pub fn init_logging(verbose: u8, quiet: bool) {
    use std::io::IsTerminal;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("dbkeeper={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .with_target(false)
        .without_time()
        .try_init();
}

/// `1.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1 table`, `2 tables`: a count with its noun, singular when it is one.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else if noun.ends_with('h') || noun.ends_with('s') {
        format!("{n} {noun}es")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_are_singular_only_for_one() {
        assert_eq!(count(1u64, "table"), "1 table");
        assert_eq!(count(0u64, "table"), "0 tables");
        assert_eq!(count(2u64, "mismatch"), "2 mismatches");
        assert_eq!(count(1u64, "mismatch"), "1 mismatch");
    }
}
