//! Which databases a command restores into or verifies, from the settings and the archive, and
//! the one V2 pass both `restore` and `verify` run on them.

use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::archive::selection::Selection;
use dbkeeper::archive::Manifest;
use dbkeeper::config::Settings;
use dbkeeper::error::Result;
use dbkeeper::mongo::namespace::Rename;
use dbkeeper::mongo::{verify as mongo_verify, MongoTarget};
use dbkeeper::postgres::{verify as pg_verify, PgTarget};
use dbkeeper::verify::TargetCheck;
use dbkeeper::Engine;

/// The PostgreSQL target, when one is configured and the archive has PostgreSQL data.
pub fn pg_target(settings: &Settings, manifest: &Manifest) -> Result<Option<PgTarget>> {
    match (&settings.pg_url, manifest.source(Engine::Postgres)) {
        (Some(url), Some(_)) => Ok(Some(PgTarget::new(url, settings.connect_timeout)?)),
        _ => Ok(None),
    }
}

/// The MongoDB target, when one is configured and the archive has a MongoDB dump. The database
/// is `--mongo-db`, else the URL's path, else the archived database's name.
pub fn mongo_target(settings: &Settings, manifest: &Manifest) -> Option<MongoTarget> {
    let source = manifest.source(Engine::Mongo)?;
    let url = settings.mongo_url.as_ref()?;
    let db = settings
        .mongo_db
        .clone()
        .unwrap_or_else(|| source.database.clone());
    Some(MongoTarget::new(url, &db, settings.connect_timeout))
}

/// What V2 compares.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    pub jobs: usize,
    pub deep: bool,
    /// Collection renames the restore applied.
    pub renames: Vec<Rename>,
    /// The restore applied owners / privileges (`--keep-owner` / `--keep-privileges`), so V2
    /// compares them where it can (PostgreSQL large objects).
    pub keep_owner: bool,
    pub keep_privileges: bool,
    /// The tables and collections a scoped restore restored; only they are compared.
    pub selection: Selection,
    /// After `restore --schema-only`: definitions only.
    pub schema_only: bool,
    /// After `restore --mask`: the masks rows and documents went through, whose digests the
    /// masked tables and collections are compared with.
    pub masked_pg: Option<std::sync::Arc<dbkeeper::mask::PgMask>>,
    pub masked_mongo: Option<std::sync::Arc<dbkeeper::mask::MongoMask>>,
    /// After `restore --data-only`: rows, documents and sequences only.
    pub data_only: bool,
}

/// V2 on the given targets, PostgreSQL first, shown as the `compare` phase (a deep comparison
/// reads every row again and takes as long as the restore's data load).
pub async fn verify_targets(
    archive: &VerifiedArchive,
    pg: Option<&PgTarget>,
    mongo: Option<&MongoTarget>,
    options: &TargetOptions,
) -> Result<Vec<TargetCheck>> {
    dbkeeper::progress::start("compare", dbkeeper::progress::Totals::default());
    let checks = compare_targets(archive, pg, mongo, options).await;
    dbkeeper::progress::finish();
    checks
}

async fn compare_targets(
    archive: &VerifiedArchive,
    pg: Option<&PgTarget>,
    mongo: Option<&MongoTarget>,
    options: &TargetOptions,
) -> Result<Vec<TargetCheck>> {
    let mut checks = Vec::new();
    if let Some(target) = pg {
        dbkeeper::progress::item(&format!("PostgreSQL {}", target.describe()));
        let pg_options = pg_verify::VerifyOptions {
            jobs: options.jobs,
            deep: options.deep,
            owners: options.keep_owner,
            privileges: options.keep_privileges,
            selection: options.selection.clone(),
            schema_only: options.schema_only,
            masked: options.masked_pg.clone(),
            data_only: options.data_only,
        };
        checks.push(pg_verify::verify_target(archive, target, pg_options).await?);
    }
    if let Some(target) = mongo {
        dbkeeper::progress::item(&format!("MongoDB {}", target.describe()));
        let mongo_options = mongo_verify::VerifyOptions {
            jobs: options.jobs,
            deep: options.deep,
            renames: options.renames.clone(),
            selection: options.selection.clone(),
            schema_only: options.schema_only,
            masked: options.masked_mongo.clone(),
            data_only: options.data_only,
        };
        checks.push(mongo_verify::verify_target(archive, target, &mongo_options).await?);
    }
    Ok(checks)
}

/// V2 on every configured target the archive has data for (none configured: no V2).
pub async fn verify_configured(
    archive: &VerifiedArchive,
    settings: &Settings,
    options: &TargetOptions,
) -> Result<Vec<TargetCheck>> {
    let manifest = archive.manifest();
    let pg = pg_target(settings, manifest)?;
    let mongo = mongo_target(settings, manifest);
    for (configured, target, engine) in [
        (settings.pg_url.is_some(), pg.is_some(), Engine::Postgres),
        (settings.mongo_url.is_some(), mongo.is_some(), Engine::Mongo),
    ] {
        if configured && !target {
            tracing::warn!(
                "the archive holds no {engine} data; the configured {engine} database is not compared"
            );
        }
    }
    verify_targets(archive, pg.as_ref(), mongo.as_ref(), options).await
}
