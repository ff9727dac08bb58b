//! Errors of the dbkeeper library, and the one place they become exit codes.
//!
//! Policy: library code returns [`Error`], typed by what the operator has to do next, never by
//! where it happened. Every variant maps to exactly one documented exit code
//! ([`Error::exit_code`]); the binary adds context with `anyhow` and prints the whole chain.
//! Messages name the file, member, table or flag at fault and, where there is one, the next step.
//! They never contain a password: URLs are only ever formatted through [`crate::redact`].

use std::path::PathBuf;

/// Process exit codes, as documented in the README. Stable: scripts depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[repr(u8)]
pub enum ExitCode {
    /// Everything asked for was done and every check passed.
    Ok = 0,
    /// A check failed: verify mismatch, migration drift, pending migrations with `--exit-code`.
    CheckFailed = 1,
    /// Usage, configuration or bad input file (including a damaged archive).
    Usage = 2,
    /// Runtime failure: connection, SQL, I/O, lock timeout.
    Runtime = 3,
    /// Refused for safety: non-empty target, target is the source, dirty state.
    Refused = 4,
    /// Interrupted by a signal.
    Interrupted = 130,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The database engines dbkeeper manages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mongo,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mongo => "mongo",
        }
    }

    /// The name people use in messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Mongo => "MongoDB",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.display_name())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line asks for something impossible; the message names the flag.
    #[error("{0}")]
    Usage(String),

    /// `dbkeeper.toml` (or another config source) is malformed.
    #[error("config file {}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// An input file or archive member is malformed. `what` names it (path or member).
    #[error("{what}: {message}")]
    BadInput { what: String, message: String },

    /// A check ran and found problems; the report has already said which.
    #[error("{0}")]
    CheckFailed(String),

    /// Could not reach a database. `target` is the redacted URL or host.
    #[error("cannot connect to {engine} at {target}: {message}")]
    Connect {
        engine: Engine,
        target: String,
        message: String,
    },

    /// A database operation failed after connecting.
    #[error("{engine}: {message}")]
    Database { engine: Engine, message: String },

    /// Local I/O failed; `context` says on what.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A lock (migration lock, backup directory lock) was not obtained in time.
    #[error("{0}")]
    LockTimeout(String),

    /// Refused because going on could lose data; the message says how to proceed on purpose.
    #[error("{0}")]
    Refused(String),

    /// An external PostgreSQL client program (pg_dump, psql) failed or is unusable. The
    /// message names PostgreSQL: a pg_dump that lost its server only says "server closed the
    /// connection", and the user must learn which engine went away.
    #[error("{program} (PostgreSQL client): {message}")]
    Tool { program: String, message: String },

    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::Config { .. } | Error::BadInput { .. } => ExitCode::Usage,
            Error::CheckFailed(_) => ExitCode::CheckFailed,
            Error::Connect { .. }
            | Error::Database { .. }
            | Error::Io { .. }
            | Error::LockTimeout(_)
            | Error::Tool { .. } => ExitCode::Runtime,
            Error::Refused(_) => ExitCode::Refused,
            Error::Interrupted => ExitCode::Interrupted,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn bad_input(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadInput {
            what: what.into(),
            message: message.into(),
        }
    }

    pub fn db(engine: Engine, message: impl Into<String>) -> Self {
        Error::Database {
            engine,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Up to ten of `names`, comma-separated, then how many more: for messages that name what a
/// check refused without flooding the terminal.
pub fn name_list(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}
