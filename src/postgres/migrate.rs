//! PostgreSQL migrations: refinery-compatible history plus dbkeeper's companion table.
//! (Being built: issue "PostgreSQL migrations".)

use std::path::Path;
use std::time::Duration;

use crate::error::{Engine, Error, Result};
use crate::migrate::{AppliedMigration, Migration, MigrationEngine, RepairAction, RunInfo};
use crate::postgres::PgTarget;

pub const FILE_EXTENSION: &str = "sql";

/// Reads `V{n}__{name}.sql` (+ `.down.sql`) files, with refinery's checksums.
pub fn load_migrations(_dir: &Path) -> Result<Vec<Migration>> {
    Err(Error::NotImplemented("PostgreSQL migrations"))
}

/// The up and down file bodies `migrate new` writes.
pub fn new_migration_template(name: &str) -> (String, String) {
    (
        format!("-- {name}: up\n-- Runs in one transaction with its history row. For CREATE INDEX CONCURRENTLY,\n-- make the first line: -- dbkeeper:no-transaction\n\n"),
        format!("-- {name}: down (undo everything the up file did)\n\n"),
    )
}

pub struct PgMigrator {
    _target: PgTarget,
}

impl PgMigrator {
    pub async fn connect(_target: &PgTarget) -> Result<PgMigrator> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
}

#[async_trait::async_trait]
impl MigrationEngine for PgMigrator {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }
    async fn read_history(&mut self) -> Result<Vec<AppliedMigration>> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
    async fn lock(&mut self, _timeout: Duration) -> Result<()> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
    async fn unlock(&mut self) -> Result<()> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
    async fn prepare_history(&mut self) -> Result<()> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
    async fn apply(&mut self, _m: &Migration, _run: &RunInfo) -> Result<()> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
    async fn revert(&mut self, _a: &AppliedMigration, _run: &RunInfo) -> Result<()> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
    async fn record_baseline(&mut self, _m: &[&Migration], _run: &RunInfo) -> Result<()> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
    async fn repair(&mut self, _a: &RepairAction, _run: &RunInfo) -> Result<()> {
        Err(Error::NotImplemented("PostgreSQL migrations"))
    }
}
