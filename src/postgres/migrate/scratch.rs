//! The scratch database `migrate test` creates on the configured server, and its schema as
//! `pg_dump --schema-only` prints it.

use crate::error::Result;
use crate::migrate::roundtrip::SchemaSnapshot;
use crate::postgres::inspect::{quote_ident, server_major};
use crate::postgres::tools::{find_tool, pg_dump_schema_now, PgTool};
use crate::postgres::PgTarget;

use super::history::{db_error, COMPANION_TABLE, LOG_TABLE, REFINERY_TABLE, REPEATABLE_TABLE};

/// A database created for one test run. Dropped by [`PgScratch::drop_database`]; a test that
/// fails can keep it for inspection.
pub struct PgScratch {
    server: PgTarget,
    target: PgTarget,
    pg_dump: PgTool,
}

impl PgScratch {
    /// Creates `name` on `server`'s cluster (through `server`'s own database).
    pub async fn create(server: &PgTarget, name: &str) -> Result<PgScratch> {
        let client = server.connect().await?;
        let pg_dump = find_tool("pg_dump", server_major(&client).await?).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .map_err(|e| db_error(&format!("creating the scratch database {name}"), &e))?;
        Ok(PgScratch {
            server: server.clone(),
            target: server.with_dbname(name),
            pg_dump,
        })
    }

    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    pub async fn drop_database(self) -> Result<()> {
        let name = self.target.dbname();
        let client = self.server.connect().await?;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&name)
            ))
            .await
            .map_err(|e| db_error(&format!("dropping the scratch database {name}"), &e))
    }
}

#[async_trait::async_trait]
impl SchemaSnapshot for PgScratch {
    async fn schema(&mut self) -> Result<String> {
        let dump = pg_dump_schema_now(
            &self.pg_dump,
            &self.target,
            &[
                REFINERY_TABLE,
                COMPANION_TABLE,
                LOG_TABLE,
                REPEATABLE_TABLE,
                &format!("{LOG_TABLE}_id_seq"),
            ],
        )
        .await?;
        // pg_dump 15.14+ fences its output with a random `\restrict` key: not schema.
        Ok(dump
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
