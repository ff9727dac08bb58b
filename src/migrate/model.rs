//! The migration model shared by both engines.

use std::path::PathBuf;

use serde::Serialize;

/// A migration file as found on disk, parsed by its engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    /// The up script's text, exactly as in the file.
    pub up: String,
    pub up_path: PathBuf,
    /// The down script's text, if a `.down.` file exists.
    pub down: Option<String>,
    pub down_path: Option<PathBuf>,
    /// Engine-defined checksum (refinery's SipHash for SQL, SHA-256 of canonical BSON for Mongo).
    pub checksum: String,
    /// `-- dbkeeper:no-transaction` on the first line (SQL only).
    pub no_transaction: bool,
}

impl Migration {
    /// `V3__add_orders`, as in file names and messages.
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }
}

/// Whether a recorded migration completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliedState {
    Applied,
    /// Started but not known to have finished: a no-transaction migration that crashed, or a
    /// MongoDB migration that failed after some commands ran. Needs `repair`.
    Dirty,
}

/// A row of migration history, as an engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub applied_on: Option<String>,
    pub state: AppliedState,
    /// The down script captured when the migration was applied.
    #[serde(skip)]
    pub down: Option<String>,
    /// For dirty migrations: what is known about where it stopped.
    pub dirty_detail: Option<String>,
}

impl AppliedMigration {
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }
}

/// Who is running, recorded with every history row dbkeeper writes.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Unique per process run, to tie together everything one `migrate up` did.
    pub run_id: String,
    /// `user@host` (pid N).
    pub actor: String,
}

impl RunInfo {
    pub fn current() -> RunInfo {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let pid = std::process::id();
        let now = chrono::Utc::now();
        RunInfo {
            run_id: format!("{}-{pid}-{}", now.format("%Y%m%dT%H%M%S%.3fZ"), &host),
            actor: format!("{user}@{host} (pid {pid})"),
        }
    }
}
