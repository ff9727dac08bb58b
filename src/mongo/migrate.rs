//! MongoDB migrations: JSON arrays of database commands, history in a collection, lease lock.
//! (Being built: issue "MongoDB migrations".)

use std::path::Path;
use std::time::Duration;

use crate::error::{Engine, Error, Result};
use crate::migrate::{AppliedMigration, Migration, MigrationEngine, RepairAction, RunInfo};
use crate::mongo::MongoTarget;

pub const FILE_EXTENSION: &str = "json";

/// Reads `V{n}__{name}.json` (+ `.down.json`) files; checksums over canonical BSON.
pub fn load_migrations(_dir: &Path) -> Result<Vec<Migration>> {
    Err(Error::NotImplemented("MongoDB migrations"))
}

/// The up and down file bodies `migrate new` writes: JSON arrays of database commands.
pub fn new_migration_template(_name: &str) -> (String, String) {
    (
        "[\n  { \"create\": \"example\" }\n]\n".to_string(),
        "[\n  { \"drop\": \"example\" }\n]\n".to_string(),
    )
}

pub struct MongoMigrator {
    _target: MongoTarget,
}

impl MongoMigrator {
    pub async fn connect(_target: &MongoTarget) -> Result<MongoMigrator> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
}

#[async_trait::async_trait]
impl MigrationEngine for MongoMigrator {
    fn engine(&self) -> Engine {
        Engine::Mongo
    }
    async fn read_history(&mut self) -> Result<Vec<AppliedMigration>> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
    async fn lock(&mut self, _timeout: Duration) -> Result<()> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
    async fn unlock(&mut self) -> Result<()> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
    async fn prepare_history(&mut self) -> Result<()> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
    async fn apply(&mut self, _m: &Migration, _run: &RunInfo) -> Result<()> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
    async fn revert(&mut self, _a: &AppliedMigration, _run: &RunInfo) -> Result<()> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
    async fn record_baseline(&mut self, _m: &[&Migration], _run: &RunInfo) -> Result<()> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
    async fn repair(&mut self, _a: &RepairAction, _run: &RunInfo) -> Result<()> {
        Err(Error::NotImplemented("MongoDB migrations"))
    }
}
