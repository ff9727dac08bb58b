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

    /// Connection flags given before the command (`dbkeeper --pg-url URL backup`).
    #[command(flatten)]
    pub connect: ConnectOpts,

    #[command(subcommand)]
    pub command: Command,
}

/// Defines a connection-flags group; `global` says whether the flags also work after a nested
/// subcommand (`migrate up --pg-url URL`). One list of flags, two groups: only commands that
/// connect to a database list them in their help.
macro_rules! connect_opts {
    ($(#[$meta:meta])* $name:ident, global = $global:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Args)]
        pub struct $name {
            /// PostgreSQL URL; TLS with libpq's sslmode, sslrootcert, sslcert, sslkey [env: DBKEEPER_PG_URL, then DATABASE_URL]
            #[arg(long, global = $global, value_name = "URL", hide_env_values = true)]
            pub pg_url: Option<String>,

            /// MongoDB URL; the database comes from its path or --mongo-db [env: DBKEEPER_MONGO_URL, then MONGODB_URI]
            #[arg(long, global = $global, value_name = "URL")]
            pub mongo_url: Option<String>,

            /// MongoDB database name (overrides the URL path) [env: DBKEEPER_MONGO_DB]
            #[arg(long, global = $global, value_name = "NAME")]
            pub mongo_db: Option<String>,

            /// Seconds to wait for a database connection before failing [default: 10]
            #[arg(long, global = $global, value_name = "SECS")]
            pub connect_timeout: Option<u64>,

            /// Wait up to SECS for the databases to accept connections (for deploys next to a booting database) [default: 0]
            #[arg(long, global = $global, value_name = "SECS")]
            pub wait: Option<u64>,
        }
    };
}

connect_opts!(
    /// How to reach the databases, for a command without subcommands.
    ConnectOpts,
    global = false
);
connect_opts!(
    /// The same flags for `migrate`, accepted after its subcommand too.
    MigrateConnectOpts,
    global = true
);

impl ConnectOpts {
    /// These flags where given, else `fallback`'s (flags before the command name).
    pub fn or(self, fallback: ConnectOpts) -> ConnectOpts {
        ConnectOpts {
            pg_url: self.pg_url.or(fallback.pg_url),
            mongo_url: self.mongo_url.or(fallback.mongo_url),
            mongo_db: self.mongo_db.or(fallback.mongo_db),
            connect_timeout: self.connect_timeout.or(fallback.connect_timeout),
            wait: self.wait.or(fallback.wait),
        }
    }
}

impl From<MigrateConnectOpts> for ConnectOpts {
    fn from(o: MigrateConnectOpts) -> ConnectOpts {
        ConnectOpts {
            pg_url: o.pg_url,
            mongo_url: o.mongo_url,
            mongo_db: o.mongo_db,
            connect_timeout: o.connect_timeout,
            wait: o.wait,
        }
    }
}

#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Config file (default: ./dbkeeper.toml when present)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Machine-readable output: one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Progress of long operations as NDJSON events on stderr (start/progress/finish)
    #[arg(long, global = true)]
    pub json_events: bool,

    /// More log output on stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print nothing on success: no report, no progress, only errors
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
    Ping(PingArgs),
    /// Print a shell completion script (e.g. `dbkeeper completions bash > /etc/bash_completion.d/dbkeeper`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff) to stdout, or write every page into a directory
    Man {
        /// Write dbkeeper.1 and one page per command (dbkeeper-migrate-up.1, ...) into DIR
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The command whose page to print (e.g. `migrate up`); none for dbkeeper(1)
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Postgres,
    Mongo,
}

impl From<EngineArg> for dbkeeper::Engine {
    fn from(arg: EngineArg) -> dbkeeper::Engine {
        match arg {
            EngineArg::Postgres => dbkeeper::Engine::Postgres,
            EngineArg::Mongo => dbkeeper::Engine::Mongo,
        }
    }
}

#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub connect: ConnectOpts,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,

    #[command(flatten)]
    pub connect: MigrateConnectOpts,

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
    /// Check migration files for statements that would block or break a live database; exit 1
    /// on error-level findings (offline: needs no database)
    Lint,
    /// On a scratch database created (and dropped) on the configured server: apply every
    /// migration, roll all back and apply again, checking that each down undoes its up
    Test {
        /// Keep the scratch database after a failure, to inspect it
        #[arg(long)]
        keep: bool,
    },
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
    #[command(flatten)]
    pub connect: ConnectOpts,

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

    /// Write masked values only, by this rules file (docs/masking.md)
    #[arg(long, value_name = "RULES")]
    pub mask: Option<PathBuf>,

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
    #[command(flatten)]
    pub connect: ConnectOpts,

    /// The archive to restore, or - to read it from standard input (kept in $TMPDIR until
    /// checked: nothing is touched before the whole archive verified)
    pub archive: PathBuf,

    /// Only restore this engine's data; the other engine's connection is not even read
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,

    /// Print the archive's contents (engines, codec, tables and collections with rows and
    /// sizes) and restore nothing
    #[arg(long)]
    pub list: bool,

    /// Only the tables/collections matching these glob patterns (schema.table or collection, as
    /// for backup); PostgreSQL gets the whole schema and only these tables' rows
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,

    /// Leave out the tables/collections matching these glob patterns
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// Only definitions: tables, indexes, constraints, collections with their options and
    /// indexes, views; no rows, documents or sequence values (as pg_restore --schema-only)
    #[arg(long)]
    pub schema_only: bool,

    /// Only rows, documents and sequence values, into the existing, empty tables and
    /// collections of the target (its schema comes from migrations; as pg_restore --data-only)
    #[arg(long, conflicts_with = "schema_only")]
    pub data_only: bool,

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

    /// Mask personal data on its way into the target with this rules file (docs/masking.md)
    #[arg(long, value_name = "RULES")]
    pub mask: Option<PathBuf>,

    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectOpts,

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

    /// With a key, encrypted archives show their counts too
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Backup directory [default: backups/]
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the N newest archives [config: retention.keep_last]
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the newest archive of each of the last N days that have one [config: retention.keep_daily]
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the newest archive of each of the last N ISO weeks that have one [config: retention.keep_weekly]
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the newest archive of each of the last N months that have one [config: retention.keep_monthly]
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Say what would be deleted; delete nothing
    #[arg(long)]
    pub dry_run: bool,
}
