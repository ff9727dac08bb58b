//! The scratch database `migrate test` creates on the configured server, and its schema:
//! collections and views with their options (validators included) and indexes.

use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;

use crate::error::{Engine, Error, Result};
use crate::migrate::roundtrip::SchemaSnapshot;
use crate::mongo::connect::short_error;
use crate::mongo::MongoTarget;

use super::history::{AUDIT_COLLECTION, HISTORY_COLLECTION};
use super::lease::LOCK_COLLECTION;

/// A database used for one test run. MongoDB creates it with its first collection; dropping it
/// removes everything the run made.
pub struct MongoScratch {
    target: MongoTarget,
    db: Database,
}

impl MongoScratch {
    pub async fn create(server: &MongoTarget, name: &str) -> Result<MongoScratch> {
        let target = server.with_db(name);
        let db = target.database().await?;
        Ok(MongoScratch { target, db })
    }

    pub fn target(&self) -> &MongoTarget {
        &self.target
    }

    pub async fn drop_database(self) -> Result<()> {
        self.db.drop().await.map_err(|e| {
            failed(
                &format!("dropping the scratch database {}", self.db.name()),
                &e,
            )
        })
    }

    /// The first batch of a listing command, asked for in one batch: a schema is small.
    async fn list(&self, command: Document) -> Result<Vec<Document>> {
        let reply = self
            .db
            .run_command(command)
            .await
            .map_err(|e| failed("reading the scratch database's schema", &e))?;
        let batch = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .map_err(|e| Error::db(Engine::Mongo, format!("unexpected listing reply: {e}")))?;
        Ok(batch
            .iter()
            .filter_map(|b| b.as_document().cloned())
            .collect())
    }
}

fn failed(what: &str, e: &mongodb::error::Error) -> Error {
    Error::db(Engine::Mongo, format!("{what}: {}", short_error(e)))
}

#[async_trait::async_trait]
impl SchemaSnapshot for MongoScratch {
    async fn schema(&mut self) -> Result<String> {
        let own = [HISTORY_COLLECTION, AUDIT_COLLECTION, LOCK_COLLECTION];
        let mut collections = self
            .list(doc! { "listCollections": 1, "cursor": { "batchSize": 100_000 } })
            .await?;
        collections.retain(|c| {
            let name = c.get_str("name").unwrap_or("");
            !own.contains(&name) && !name.starts_with("system.")
        });
        collections.sort_by(|a, b| a.get_str("name").ok().cmp(&b.get_str("name").ok()));
        let mut out = Vec::new();
        for c in collections {
            let name = c.get_str("name").unwrap_or("").to_string();
            let kind = c.get_str("type").unwrap_or("collection").to_string();
            let mut options = c.get_document("options").cloned().unwrap_or_default();
            // A collMod that sets the defaults explicitly changes nothing the server enforces.
            for (key, default) in [("validationLevel", "strict"), ("validationAction", "error")] {
                if options.get_str(key) == Ok(default) {
                    options.remove(key);
                }
            }
            let mut entry = doc! { "name": &name, "type": &kind, "options": options };
            if kind == "collection" {
                let mut indexes = self
                    .list(doc! { "listIndexes": &name, "cursor": { "batchSize": 100_000 } })
                    .await?;
                for index in &mut indexes {
                    index.remove("ns");
                }
                indexes.sort_by(|a, b| a.get_str("name").ok().cmp(&b.get_str("name").ok()));
                entry.insert("indexes", indexes);
            }
            out.push(Bson::Document(entry).into_relaxed_extjson());
        }
        serde_json::to_string_pretty(&out)
            .map_err(|e| Error::db(Engine::Mongo, format!("rendering the schema: {e}")))
    }
}
