//! The command line, as clap derive definitions. Shared option groups are flattened into the
//! subcommands that use them, so a flag means the same thing everywhere.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "dbkeeper",
    version,
    about = "Versioned migrations, self-verifying backups and proven restores for PostgreSQL and MongoDB",
    long_about = "dbkeeper keeps a PostgreSQL database and a MongoDB database safe through change: it applies \
and rolls back versioned migrations for both, streams compressed backups of both into one \
self-verifying archive, restores it, and proves the restore by comparing counts and content.\n\n\
Connections come from --pg-url/--mongo-url, then DBKEEPER_PG_URL (or DATABASE_URL) and \
DBKEEPER_MONGO_URL (or MONGODB_URI), then dbkeeper.toml.",
    after_help = "Exit codes: 0 ok, 1 a check failed, 2 usage/config/bad input, 3 runtime failure, \
4 refused for safety, 130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Config file (default: ./dbkeeper.toml when present)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// PostgreSQL URL [env: DBKEEPER_PG_URL, then DATABASE_URL]
    #[arg(long, global = true, value_name = "URL", hide_env_values = true)]
    pub pg_url: Option<String>,

    /// MongoDB URL; the database comes from its path or --mongo-db [env: DBKEEPER_MONGO_URL, then MONGODB_URI]
    #[arg(long, global = true, value_name = "URL")]
    pub mongo_url: Option<String>,

    /// MongoDB database name (overrides the URL path)
    #[arg(long, global = true, value_name = "NAME")]
    pub mongo_db: Option<String>,

    /// Seconds to wait for a database connection before failing
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10)]
    pub connect_timeout: u64,

    /// Wait up to SECS for the databases to accept connections (for deploys next to a booting database)
    #[arg(long, global = true, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,

    /// Machine-readable output: one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Progress of long operations as NDJSON events on stderr (start/progress/finish)
    #[arg(long, global = true)]
    pub json_events: bool,

    /// More log output on stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply, roll back and inspect versioned migrations
    Migrate(MigrateArgs),
    /// Dump the configured databases into one compressed, self-verifying archive
    Backup(BackupArgs),
    /// Restore an archive into a PostgreSQL and/or MongoDB database
    Restore(RestoreArgs),
    /// Check an archive offline, and optionally compare it with restored databases
    Verify(VerifyArgs),
    /// List the archives in a backup directory
    List(ListArgs),
    /// Delete old archives according to a retention policy
    Prune(PruneArgs),
    /// Connect to the configured databases and print their server versions
    Ping,
    /// Print a shell completion script (e.g. `dbkeeper completions bash > /etc/bash_completion.d/dbkeeper`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout (e.g. `dbkeeper man > dbkeeper.1`)
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Postgres,
    Mongo,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,

    /// Which engine's migrations (default: every configured engine)
    #[arg(long, global = true, value_enum)]
    pub engine: Option<EngineArg>,

    /// Seconds to wait for another runner's migration lock (and, on PostgreSQL, the longest a
    /// migration statement waits for a table lock)
    #[arg(long, global = true, value_name = "SECS")]
    pub lock_timeout: Option<u64>,

    /// SQL migrations directory [default: migrations]
    #[arg(long, global = true, value_name = "DIR")]
    pub migrations_dir: Option<PathBuf>,

    /// MongoDB migrations directory [default: mongo_migrations]
    #[arg(long, global = true, value_name = "DIR")]
    pub mongo_migrations_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Show applied, pending, divergent, missing and dirty migrations (read-only)
    Status {
        /// Exit 1 when anything is pending or drifted
        #[arg(long)]
        exit_code: bool,
    },
    /// Apply pending migrations, each in its own transaction
    Up {
        /// Stop after this version
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        /// First take a backup of the configured databases and verify it; print its path
        #[arg(long, conflicts_with = "dry_run")]
        backup_first: bool,
        /// Print the plan and the scripts that would run; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Roll back applied migrations, newest first, with the down scripts captured at apply time
    Down {
        /// How many migrations to roll back [default: 1]
        #[arg(long, value_name = "N", conflicts_with = "to")]
        steps: Option<usize>,
        /// Roll back everything above this version (0 = everything)
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        /// Print the plan and the scripts that would run; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare migration files with recorded checksums; exit 1 on any drift (read-only)
    Validate,
    /// Create the next migration file pair (up and down)
    New {
        /// Name: letters, digits and underscores
        name: String,
    },
    /// Record an existing schema as migrated up to VERSION without running anything
    Baseline { version: i64 },
    /// Reconcile history with the files: record changed checksums, resolve a dirty migration
    Repair {
        /// How a dirty migration ended, after you checked the database
        #[arg(long, value_enum, value_name = "OUTCOME")]
        dirty: Option<DirtyArg>,
        /// Show what would change; change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirtyArg {
    /// The migration did complete: mark it applied
    Applied,
    /// Its partial effects were undone: forget it so `up` runs it again
    RolledBack,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory for the archive, an archive file name, or - for stdout [default: backups/]
    #[arg(long, short, value_name = "DIR|FILE|-")]
    pub output: Option<String>,

    /// Parallel workers
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,

    /// Chunk codec [default: zstd, or [backup] compression]
    #[arg(long, value_name = "CODEC", value_parser = ["zstd", "gzip", "none"])]
    pub compression: Option<String>,

    /// Codec level: zstd 1-19 (default 1), gzip 0-9 (default 1)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub compression_level: Option<i32>,

    /// Only tables/collections matching these glob patterns (schema.table or collection)
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,

    /// Skip tables/collections matching these glob patterns
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// After a successful backup, delete old archives by the [retention] policy in dbkeeper.toml
    #[arg(long)]
    pub prune: bool,

    /// Uncompressed bytes per chunk (for tests and tuning; the default was measured)
    #[arg(long, value_name = "BYTES", hide = true)]
    pub chunk_bytes: Option<usize>,

    /// Encrypt the archive to this public key: age1… or ssh-ed25519/ssh-rsa … (repeatable)
    #[arg(long, value_name = "KEY")]
    pub recipient: Vec<String>,

    /// Encrypt the archive to every public key in FILE (one per line, # comments)
    #[arg(long, value_name = "FILE")]
    pub recipients_file: Option<PathBuf>,

    /// Encrypt the archive with the passphrase on FILE's first line
    #[arg(long, value_name = "FILE", env = "DBKEEPER_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// How to open an encrypted archive.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyArgs {
    /// Open an encrypted archive with this secret key: an age identity file (age-keygen) or an
    /// unencrypted OpenSSH private key
    #[arg(long, value_name = "FILE", env = "DBKEEPER_IDENTITY_FILE")]
    pub identity: Option<PathBuf>,

    /// Open an archive encrypted with a passphrase: the passphrase is FILE's first line
    #[arg(long, value_name = "FILE", env = "DBKEEPER_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestoreMode {
    /// Refuse a non-empty target
    Create,
    /// Replace the target: PostgreSQL drops and recreates the whole database; MongoDB drops the
    /// archive's collections and views first (others are kept)
    Replace,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive to restore
    pub archive: PathBuf,

    /// What to do with an existing, non-empty target
    #[arg(long, value_enum, default_value_t = RestoreMode::Create)]
    pub mode: RestoreMode,

    /// Verify counts against the manifest after restoring (default)
    #[arg(long, overrides_with = "no_verify")]
    pub verify: bool,

    /// Skip verification after restoring
    #[arg(long)]
    pub no_verify: bool,

    /// Also compare content digests of every row and document (reads the restored data once)
    #[arg(long, conflicts_with = "no_verify")]
    pub deep: bool,

    /// Parallel workers
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,

    /// Apply the archive's ALTER ... OWNER TO statements (skipped by default: the roles of the
    /// source rarely exist in a test environment)
    #[arg(long)]
    pub keep_owner: bool,

    /// Apply the archive's GRANT/REVOKE statements (skipped by default)
    #[arg(long)]
    pub keep_privileges: bool,

    /// With --mode replace: allow replacing the very database the archive was taken from (to undo
    /// a migration with the backup `migrate up --backup-first` took); refused otherwise
    #[arg(long)]
    pub overwrite_source: bool,

    /// Rename collections on restore: a name or pattern with one `*` (repeatable, paired with --ns-to)
    #[arg(long, value_name = "NAME")]
    pub ns_from: Vec<String>,

    /// New collection name for the matching --ns-from (`*` takes what the pattern's `*` matched)
    #[arg(long, value_name = "NAME")]
    pub ns_to: Vec<String>,

    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive to verify
    pub archive: PathBuf,

    /// With --pg-url/--mongo-url: also compare the content of every row and document
    #[arg(long)]
    pub deep: bool,

    /// Parallel workers (decompressing chunks, reading tables and collections)
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,

    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Backup directory [default: backups/]
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Backup directory [default: backups/]
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Say what would be deleted; delete nothing
    #[arg(long)]
    pub dry_run: bool,
}
