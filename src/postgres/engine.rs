//! PostgreSQL behind the engine contract ([`crate::engine`]): each capability maps the
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

use super::dump::{PgDump, PgDumpSummary};
use super::migrate::scratch::PgScratch;
use super::migrate::PgMigrator;
use super::PgTarget;

#[async_trait]
impl engine::Ping for PgTarget {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn describe(&self) -> String {
        PgTarget::describe(self)
    }

    async fn server_version(&self) -> Result<String> {
        super::connect::server_version(&self.connect().await?).await
    }
}

#[async_trait]
impl engine::Dump for PgTarget {
    async fn prepare_dump(&self, options: &DumpOptions) -> Result<Box<dyn engine::PreparedDump>> {
        Ok(Box::new(PgDump::begin(self, options.clone()).await?))
    }
}

#[async_trait]
impl engine::PreparedDump for PgDump {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn source(&self) -> &crate::archive::Source {
        PgDump::source(self)
    }

    fn selected(&self) -> usize {
        self.tables().len()
    }

    async fn estimated_records(&self) -> Option<u64> {
        self.estimated_rows()
    }

    fn masks(&self) -> Masks {
        Masks {
            postgres: self.mask(),
            mongo: None,
        }
    }

    async fn run(self: Box<Self>, sender: MemberSender) -> Result<Dumped> {
        let source = PgDump::source(&self).clone();
        let output = PgDump::run(*self, sender).await?;
        Ok(Dumped {
            summary: DumpReport::Postgres(PgDumpSummary::new(
                &source,
                &output.datasets,
                &output.meta,
            )),
            meta: serde_json::to_value(&output.meta).expect("PostgreSQL metadata serializes"),
            source,
            datasets: output.datasets,
        })
    }
}

#[async_trait]
impl engine::Restore for PgTarget {
    async fn preflight(
        &self,
        archive: &Arc<VerifiedArchive>,
        options: &RestoreOptions,
    ) -> Result<()> {
        super::restore::preflight(archive, self, options).await
    }

    async fn restore(
        &self,
        archive: &Arc<VerifiedArchive>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let report = super::restore::restore(archive.clone(), self, options).await?;
        Ok(RestoreReport::Postgres(report))
    }
}

#[async_trait]
impl engine::Compare for PgTarget {
    async fn compare(
        &self,
        archive: &VerifiedArchive,
        options: &CompareOptions,
    ) -> Result<TargetCheck> {
        super::verify::verify_target(archive, self, options.clone()).await
    }
}

#[async_trait]
impl engine::Migrate for PgTarget {
    async fn migrator(&self) -> Result<Box<dyn MigrationEngine>> {
        Ok(Box::new(PgMigrator::connect(self).await?))
    }

    async fn create_scratch(&self, name: &str) -> Result<Box<dyn Scratch>> {
        Ok(Box::new(PgScratch::create(self, name).await?))
    }
}

#[async_trait]
impl Scratch for PgScratch {
    async fn migrator(&self) -> Result<Box<dyn MigrationEngine>> {
        Ok(Box::new(PgMigrator::connect(self.target()).await?))
    }

    fn schema(&mut self) -> &mut dyn SchemaSnapshot {
        self
    }

    async fn drop_database(self: Box<Self>) -> Result<()> {
        PgScratch::drop_database(*self).await
    }
}

/// PostgreSQL migrations: `.sql` files, with `R__` repeatables.
pub struct SqlFiles;

pub static SQL_FILES: SqlFiles = SqlFiles;

impl MigrationFiles for SqlFiles {
    fn extension(&self) -> &'static str {
        super::migrate::FILE_EXTENSION
    }

    fn load(&self, dir: &Path) -> Result<Vec<Migration>> {
        super::migrate::load_migrations(dir)
    }

    fn load_repeatables(&self, dir: &Path) -> Result<Vec<Repeatable>> {
        super::migrate::load_repeatables(dir)
    }

    fn template(&self, name: &str) -> (String, String) {
        super::migrate::new_migration_template(name)
    }
}
