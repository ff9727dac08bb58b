//! The engine contract and the one registry of engines.
//!
//! Every verb reaches a database through the small traits here, one per capability:
//! [`Ping`] (connect, describe, server version), [`Dump`] (fix a point in time, then stream
//! chunks into the archive through one [`MemberSender`]), [`Restore`] (a preflight that changes
//! nothing, then the restore), [`Compare`] (V2: the target against the archive) and
//! [`Migrate`] (open the [`MigrationEngine`] the one migration runner drives, and the
//! [`MigrationFiles`] format). `postgres/engine.rs` and `mongo/engine.rs` implement them.
//!
//! [`REGISTRY`] lists the engines in the order commands act on them; [`configured`] is the one
//! "for each configured engine" loop. Adding an engine: a module implementing the traits, an
//! entry in [`REGISTRY`] (and a variant in the report enums below), a section in the config.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::archive::chunk::Encoding;
use crate::archive::manifest::MaskedField;
use crate::archive::pipeline::MemberSender;
use crate::archive::reader::VerifiedArchive;
use crate::archive::selection::Selection;
use crate::archive::{Dataset, Manifest, Source};
use crate::config::Settings;
use crate::error::Result;
use crate::mask::{MongoMask, PgMask, Rules};
use crate::migrate::{Migration, MigrationEngine, Repeatable};
use crate::{mongo, postgres, Engine};

pub use crate::mongo::dump::DumpSummary as MongoDumpSummary;
pub use crate::mongo::namespace::Rename;
pub use crate::mongo::restore::MongoRestoreReport;
pub use crate::postgres::dump::PgDumpSummary;
pub use crate::postgres::restore::RestoreReport as PgRestoreReport;

/// Connecting: who the database is, and that it answers.
#[async_trait]
pub trait Ping: Send + Sync {
    fn engine(&self) -> Engine;
    /// The target as messages name it (host, port, database; never a password).
    fn describe(&self) -> String;
    async fn server_version(&self) -> Result<String>;
}

/// Dumping: fixes the database's point in time; [`PreparedDump::run`] then streams it.
#[async_trait]
pub trait Dump: Send + Sync {
    async fn prepare_dump(&self, options: &DumpOptions) -> Result<Box<dyn PreparedDump>>;
}

/// A dump whose point in time is fixed and whose datasets are chosen.
#[async_trait]
pub trait PreparedDump: Send {
    fn engine(&self) -> Engine;
    /// What the header records of the source.
    fn source(&self) -> &Source;
    /// Tables or collections selected by `--include`/`--exclude`.
    fn selected(&self) -> usize;
    /// The database's own estimate of the records to come, for the progress bar.
    async fn estimated_records(&self) -> Option<u64>;
    /// The `--mask` masks, as [`Masks`]; their counts fill in while the dump runs.
    fn masks(&self) -> Masks;
    /// Streams every chunk to `sender` (the archive's one writer thread).
    async fn run(self: Box<Self>, sender: MemberSender) -> Result<Dumped>;
}

/// What a finished dump adds to the manifest, and its report.
pub struct Dumped {
    pub source: Source,
    pub datasets: Vec<Dataset>,
    /// `engines.<engine>` in the manifest.
    pub meta: serde_json::Value,
    pub summary: DumpReport,
}

/// One engine's part of a backup report.
#[derive(Debug, Clone)]
pub enum DumpReport {
    Postgres(PgDumpSummary),
    Mongo(MongoDumpSummary),
}

/// Restoring: check everything that would refuse, then restore.
#[async_trait]
pub trait Restore: Send + Sync {
    /// Checks what [`Restore::restore`] would refuse without changing anything, so a restore
    /// of several engines refuses before it touches any of them.
    async fn preflight(
        &self,
        archive: &Arc<VerifiedArchive>,
        options: &RestoreOptions,
    ) -> Result<()>;
    async fn restore(
        &self,
        archive: &Arc<VerifiedArchive>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport>;
}

/// One engine's part of a restore report.
#[derive(Debug, Clone)]
pub enum RestoreReport {
    Postgres(PgRestoreReport),
    Mongo(MongoRestoreReport),
}

/// V2: inspects the target and compares it with the archive. Errors only when the target
/// cannot be read; every difference is in the returned check.
#[async_trait]
pub trait Compare: Send + Sync {
    async fn compare(
        &self,
        archive: &VerifiedArchive,
        options: &CompareOptions,
    ) -> Result<crate::verify::TargetCheck>;
}

/// Migrations: the engine's primitives for the one runner, and a scratch database for
/// `migrate test`.
#[async_trait]
pub trait Migrate: Send + Sync {
    async fn migrator(&self) -> Result<Box<dyn MigrationEngine>>;
    /// Creates database `name` on the same server.
    async fn create_scratch(&self, name: &str) -> Result<Box<dyn Scratch>>;
}

/// A database created for one `migrate test` run.
#[async_trait]
pub trait Scratch: Send {
    async fn migrator(&self) -> Result<Box<dyn MigrationEngine>>;
    /// Its schema, for comparing before and after each step.
    fn schema(&mut self) -> &mut dyn crate::migrate::roundtrip::SchemaSnapshot;
    async fn drop_database(self: Box<Self>) -> Result<()>;
}

/// How an engine's migration files are written and read.
pub trait MigrationFiles: Sync {
    fn extension(&self) -> &'static str;
    fn load(&self, dir: &Path) -> Result<Vec<Migration>>;
    /// `R__` repeatable migrations (an engine without them refuses such files when loading).
    fn load_repeatables(&self, dir: &Path) -> Result<Vec<Repeatable>>;
    /// The up and down file of `migrate new NAME`.
    fn template(&self, name: &str) -> (String, String);
}

/// Every capability: what the registry hands out for a configured database.
pub trait Database: Ping + Dump + Restore + Compare + Migrate {}
impl<T: Ping + Dump + Restore + Compare + Migrate> Database for T {}

/// What a dump is asked to do (the same for every engine).
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Tables or collections read in parallel.
    pub jobs: usize,
    /// Codec, level and encryption of the chunks.
    pub encoding: Encoding,
    /// Uncompressed bytes per chunk (a chunk always holds whole records, so one record larger
    /// than this makes a chunk of its own).
    pub chunk_bytes: usize,
    /// Glob patterns of tables/collections to dump (`schema.table`, `db.coll` or the bare
    /// name); empty means all.
    pub include: Vec<String>,
    /// Glob patterns of tables/collections to skip.
    pub exclude: Vec<String>,
    /// MongoDB: read every collection at one cluster time when the server allows it (the
    /// default). Off, collections are read one after another and the manifest says so.
    /// PostgreSQL always reads one exported snapshot.
    pub snapshot_reads: bool,
    /// `--mask`: records are masked before they are compressed into the archive.
    pub mask: Option<Arc<Rules>>,
}

impl Default for DumpOptions {
    fn default() -> DumpOptions {
        DumpOptions {
            jobs: crate::config::DEFAULT_JOBS,
            encoding: Encoding::default(),
            chunk_bytes: crate::archive::chunk::DEFAULT_CHUNK_BYTES,
            include: Vec::new(),
            exclude: Vec::new(),
            snapshot_reads: true,
            mask: None,
        }
    }
}

/// The masks a `--mask` run streams records through, per engine.
#[derive(Debug, Clone, Default)]
pub struct Masks {
    pub postgres: Option<Arc<PgMask>>,
    pub mongo: Option<Arc<MongoMask>>,
}

impl Masks {
    /// Checks `rules` against the archive's schema for each engine in `engines`, before any
    /// target is touched. Reads schema members: call it off the async workers.
    pub fn plan(
        archive: &Arc<VerifiedArchive>,
        rules: &Rules,
        engines: &[Engine],
    ) -> Result<Masks> {
        let mut masks = Masks::default();
        for engine in engines {
            match engine {
                Engine::Postgres => {
                    masks.postgres = Some(Arc::new(postgres::mask_schema::plan(archive, rules)?))
                }
                Engine::Mongo => {
                    masks.mongo = Some(Arc::new(mongo::mask_schema::plan(archive, rules)?))
                }
            }
        }
        Ok(masks)
    }

    /// Adds `other`'s masks (one engine's) to these.
    pub fn merge(&mut self, other: Masks) {
        self.postgres = self.postgres.take().or(other.postgres);
        self.mongo = self.mongo.take().or(other.mongo);
    }

    /// Every masked column and field with how many values it changed so far, PostgreSQL first.
    pub fn applied(&self) -> Vec<MaskedField> {
        let mut fields = self
            .postgres
            .as_ref()
            .map(|m| m.applied())
            .unwrap_or_default();
        fields.extend(self.mongo.as_ref().map(|m| m.applied()).unwrap_or_default());
        fields
    }
}

/// What a restore is asked to do (the same for every engine).
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub jobs: usize,
    /// `--mode replace`: drop what the target holds first; otherwise a non-empty target is
    /// refused.
    pub replace: bool,
    /// PostgreSQL: apply `ALTER ... OWNER TO` / GRANT and REVOKE statements.
    pub keep_owner: bool,
    pub keep_privileges: bool,
    /// Allow restoring onto the database the archive was taken from.
    pub overwrite_source: bool,
    /// The tables and collections restored (`--include`/`--exclude`).
    pub selection: Selection,
    pub schema_only: bool,
    pub data_only: bool,
    /// MongoDB collection renames (`--ns-from`/`--ns-to`), first match wins.
    pub renames: Vec<Rename>,
    /// `--mask`: masks applied to records on their way into the target.
    pub masks: Masks,
}

impl Default for RestoreOptions {
    fn default() -> RestoreOptions {
        RestoreOptions {
            jobs: crate::config::DEFAULT_JOBS,
            replace: false,
            keep_owner: false,
            keep_privileges: false,
            overwrite_source: false,
            selection: Selection::default(),
            schema_only: false,
            data_only: false,
            renames: Vec::new(),
            masks: Masks::default(),
        }
    }
}

/// What V2 compares (the same for every engine).
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub jobs: usize,
    /// Content digests of every record (`--deep`).
    pub deep: bool,
    /// Collection renames the restore applied.
    pub renames: Vec<Rename>,
    /// The restore applied owners / privileges, so V2 compares them where it can.
    pub keep_owner: bool,
    pub keep_privileges: bool,
    /// The tables and collections a scoped restore restored; only they are compared.
    pub selection: Selection,
    /// After `restore --schema-only`: definitions only.
    pub schema_only: bool,
    /// After `restore --data-only`: records and sequences only.
    pub data_only: bool,
    /// After `restore --mask`: masked datasets are compared with the digests of what the masks
    /// wrote, not with the archive's digests of the originals.
    pub masks: Masks,
}

impl Default for CompareOptions {
    /// The whole archive against a database restored from it (`verify --pg-url/--mongo-url`).
    fn default() -> CompareOptions {
        CompareOptions {
            jobs: crate::config::DEFAULT_JOBS,
            deep: false,
            renames: Vec::new(),
            keep_owner: false,
            keep_privileges: false,
            selection: Selection::default(),
            schema_only: false,
            data_only: false,
            masks: Masks::default(),
        }
    }
}

/// How a registry entry opens its engine's database from the settings (see [`Registered`]).
type OpenDatabase = fn(&Settings, Option<&str>) -> Result<Box<dyn Database>>;

/// One registered engine: how to find its database in the settings.
pub struct Registered {
    pub engine: Engine,
    /// Whether the settings name a database of this engine.
    configured: fn(&Settings) -> bool,
    /// The configured database, or a usage error saying how to configure one. `archived` is the
    /// archive's database name when the database is for an archive's data (restore, verify):
    /// the default when the settings name none.
    open: OpenDatabase,
    pub files: &'static dyn MigrationFiles,
}

/// Every engine, in the order commands act on them and reports list them.
pub static REGISTRY: [Registered; 2] = [
    Registered {
        engine: Engine::Postgres,
        configured: |settings| settings.pg_url.is_some(),
        open: |settings, _| {
            let url = settings.require_pg()?;
            Ok(Box::new(postgres::PgTarget::new(
                url,
                settings.connect_timeout,
            )?))
        },
        files: &postgres::engine::SQL_FILES,
    },
    Registered {
        engine: Engine::Mongo,
        configured: |settings| settings.mongo_url.is_some(),
        // `--mongo-db`, else the URL's path, else the archived database's name.
        open: |settings, archived| {
            let (url, db) = match (settings.mongo_url.as_ref(), archived) {
                (Some(url), Some(archived)) if settings.mongo_db.is_none() => (url, archived),
                _ => settings.require_mongo()?,
            };
            Ok(Box::new(mongo::MongoTarget::new(
                url,
                db,
                settings.connect_timeout,
            )))
        },
        files: &mongo::engine::JSON_FILES,
    },
];

/// The registry entry of `engine`.
pub fn registered(engine: Engine) -> &'static Registered {
    REGISTRY
        .iter()
        .find(|r| r.engine == engine)
        .expect("every engine is registered")
}

/// Whether the settings name a database of `engine`.
pub fn is_configured(engine: Engine, settings: &Settings) -> bool {
    (registered(engine).configured)(settings)
}

/// Every engine the settings name a database of, in registry order.
pub fn configured_engines(settings: &Settings) -> Vec<Engine> {
    REGISTRY
        .iter()
        .filter(|r| (r.configured)(settings))
        .map(|r| r.engine)
        .collect()
}

/// The configured database of `engine`; a usage error saying how to configure one if none is.
pub fn open(engine: Engine, settings: &Settings) -> Result<Box<dyn Database>> {
    (registered(engine).open)(settings, None)
}

/// The one "for each configured engine" loop: every configured database, in registry order.
pub fn configured(settings: &Settings) -> Result<Vec<Box<dyn Database>>> {
    configured_engines(settings)
        .into_iter()
        .map(|engine| open(engine, settings))
        .collect()
}

/// The database the archive's `engine` data goes into (restore) or is compared with (verify):
/// `None` when no database of that engine is configured or the archive has no such data.
pub fn for_archive(
    engine: Engine,
    settings: &Settings,
    manifest: &Manifest,
) -> Result<Option<Box<dyn Database>>> {
    let entry = registered(engine);
    match manifest.source(engine) {
        Some(source) if (entry.configured)(settings) => {
            (entry.open)(settings, Some(&source.database)).map(Some)
        }
        _ => Ok(None),
    }
}

/// The migration file format of `engine`.
pub fn migration_files(engine: Engine) -> &'static dyn MigrationFiles {
    registered(engine).files
}

/// Runs the prepared dumps into the archive's one writer, as the archive's datasets and
/// `engines` entries. MongoDB goes first: a snapshot read is only possible while the server
/// keeps the history of its cluster time (minutes on a default mongod), whereas PostgreSQL's
/// exported snapshot lasts as long as the transaction its prepared dump holds open.
pub async fn run_dumps(
    dumps: Vec<Box<dyn PreparedDump>>,
    sender: MemberSender,
    manifest: &mut Manifest,
) -> Result<Vec<DumpReport>> {
    let mut dumps = dumps;
    dumps.sort_by_key(|d| d.engine() != Engine::Mongo);
    let mut reports = Vec::new();
    for dump in dumps {
        let engine = dump.engine();
        let dumped = dump.run(sender.clone()).await?;
        // The dump's own source replaces the header's (the same database, with what only the
        // finished dump knows).
        match manifest.sources.iter_mut().find(|s| s.engine == engine) {
            Some(source) => *source = dumped.source,
            None => manifest.sources.push(dumped.source),
        }
        manifest.datasets.extend(dumped.datasets);
        manifest
            .engines
            .insert(engine.as_str().to_string(), dumped.meta);
        reports.push(dumped.summary);
    }
    Ok(reports)
}
