//! MongoDB behind the engine contract ([`crate::engine`]): each capability maps the
//! engine-neutral options onto this module's own and calls it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::archive::pipeline::MemberSender;
use crate::archive::reader::VerifiedArchive;
use crate::engine::{
    self, CompareOptions, DumpOptions, DumpReport, Dumped, Masks, MigrationFiles, RestoreOptions,
    RestoreReport, Scratch,
};
use crate::error::{Engine, Result};
use crate::migrate::roundtrip::SchemaSnapshot;
use crate::migrate::{Migration, MigrationEngine, Repeatable};
use crate::verify::TargetCheck;

use super::dump::PreparedDump;
use super::migrate::scratch::MongoScratch;
use super::migrate::MongoMigrator;
use super::restore::RestoreMode;
use super::MongoTarget;

#[async_trait]
impl engine::Ping for MongoTarget {
    fn engine(&self) -> Engine {
        Engine::Mongo
    }

    fn describe(&self) -> String {
        MongoTarget::describe(self)
    }

    async fn server_version(&self) -> Result<String> {
        super::connect::server_version(&self.connect().await?).await
    }
}

#[async_trait]
impl engine::Dump for MongoTarget {
    async fn prepare_dump(&self, options: &DumpOptions) -> Result<Box<dyn engine::PreparedDump>> {
        Ok(Box::new(super::dump::prepare(self, options).await?))
    }
}

#[async_trait]
impl engine::PreparedDump for PreparedDump {
    fn engine(&self) -> Engine {
        Engine::Mongo
    }

    fn source(&self) -> &crate::archive::Source {
        PreparedDump::source(self)
    }

    fn selected(&self) -> usize {
        self.definitions().len()
    }

    async fn estimated_records(&self) -> Option<u64> {
        self.estimated_documents().await
    }

    fn masks(&self) -> Masks {
        Masks {
            postgres: None,
            mongo: self.mask(),
        }
    }

    async fn run(self: Box<Self>, sender: MemberSender) -> Result<Dumped> {
        let dumped = PreparedDump::run(*self, sender).await?;
        Ok(Dumped {
            source: dumped.source,
            datasets: dumped.datasets,
            meta: dumped.manifest.to_value(),
            summary: DumpReport::Mongo(dumped.summary),
        })
    }
}

fn restore_options(options: &RestoreOptions) -> super::restore::RestoreOptions {
    super::restore::RestoreOptions {
        jobs: options.jobs,
        mode: match options.replace {
            true => RestoreMode::Replace,
            false => RestoreMode::Create,
        },
        renames: options.renames.clone(),
        overwrite_source: options.overwrite_source,
        selection: options.selection.clone(),
        schema_only: options.schema_only,
        data_only: options.data_only,
        mask: options.masks.mongo.clone(),
        ..Default::default()
    }
}

#[async_trait]
impl engine::Restore for MongoTarget {
    async fn preflight(
        &self,
        archive: &Arc<VerifiedArchive>,
        options: &RestoreOptions,
    ) -> Result<()> {
        super::restore::preflight(archive, self, &restore_options(options)).await
    }

    async fn restore(
        &self,
        archive: &Arc<VerifiedArchive>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let options = restore_options(options);
        let report = super::restore::restore_database(archive, self, &options).await?;
        Ok(RestoreReport::Mongo(report))
    }
}

#[async_trait]
impl engine::Compare for MongoTarget {
    async fn compare(
        &self,
        archive: &VerifiedArchive,
        options: &CompareOptions,
    ) -> Result<TargetCheck> {
        super::verify::verify_target(archive, self, options).await
    }
}

#[async_trait]
impl engine::Migrate for MongoTarget {
    async fn migrator(&self) -> Result<Box<dyn MigrationEngine>> {
        Ok(Box::new(MongoMigrator::connect(self).await?))
    }

    async fn create_scratch(&self, name: &str) -> Result<Box<dyn Scratch>> {
        Ok(Box::new(MongoScratch::create(self, name).await?))
    }
}

#[async_trait]
impl Scratch for MongoScratch {
    async fn migrator(&self) -> Result<Box<dyn MigrationEngine>> {
        Ok(Box::new(MongoMigrator::connect(self.target()).await?))
    }

    fn schema(&mut self) -> &mut dyn SchemaSnapshot {
        self
    }

    async fn drop_database(self: Box<Self>) -> Result<()> {
        MongoScratch::drop_database(*self).await
    }
}

/// MongoDB migrations: `.json` command files; no repeatables (the loader refuses `R__` files).
pub struct JsonFiles;

pub static JSON_FILES: JsonFiles = JsonFiles;

impl MigrationFiles for JsonFiles {
    fn extension(&self) -> &'static str {
        super::migrate::FILE_EXTENSION
    }

    fn load(&self, dir: &Path) -> Result<Vec<Migration>> {
        super::migrate::load_migrations(dir)
    }

    fn load_repeatables(&self, _dir: &Path) -> Result<Vec<Repeatable>> {
        Ok(Vec::new())
    }

    fn template(&self, name: &str) -> (String, String) {
        super::migrate::new_migration_template(name)
    }
}
