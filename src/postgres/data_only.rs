//! What `restore --data-only` (pg_restore's meaning: rows into a schema that already exists)
//! needs of a PostgreSQL target, checked before anything is touched:
//! - the target database exists (its schema comes from migrations or an earlier
//!   `--schema-only`, never from the archive): otherwise a usage error (exit 2);
//! - every table whose rows are restored, and every archived sequence, exists: otherwise a
//!   usage error naming them (exit 2);
//! - every such table is empty: otherwise refused (exit 4) naming them, since loading into a
//!   table that holds rows would mix two states (or fail half-way on a key); said to be left
//!   from an earlier restore when the unfinished-restore mark is there;
//! - the archive holds no large objects: they are created by the schema part (as pg_dump writes
//!   them), which a data-only restore does not run (exit 2).

use tokio_postgres::Client;

use crate::archive::reader::VerifiedArchive;
use crate::archive::Dataset;
use crate::error::{Engine, Error, Result};
use crate::postgres::dump::PgArchiveMeta;
use crate::postgres::inspect::{self, db_error, quote_qualified};
use crate::postgres::restore::{unfinished_restore, RestoreOptions};
use crate::postgres::PgTarget;

/// The tables whose rows the restore loads: the archive's PostgreSQL tables the selection
/// (`--include`/`--exclude`) keeps, as indexes into the manifest's datasets.
pub fn selected_tables(archive: &VerifiedArchive, options: &RestoreOptions) -> Vec<usize> {
    archive
        .manifest()
        .datasets
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.engine == Engine::Postgres && d.is_table() && options.selection.selects_dataset(d)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Refuses a target `--data-only` cannot load into (see the module documentation).
/// `database_exists` is the caller's look-up on the maintenance database.
pub async fn check_target(
    archive: &VerifiedArchive,
    target: &PgTarget,
    meta: &PgArchiveMeta,
    options: &RestoreOptions,
    database_exists: bool,
) -> Result<()> {
    if let Some(objects) = meta
        .large_objects
        .as_ref()
        .filter(|l| !l.objects.is_empty())
    {
        return Err(Error::Usage(format!(
            "archive {} holds {} large object(s), which are created with the schema: \
             --data-only cannot load them; restore without --data-only (into a new database)",
            archive.path().display(),
            objects.objects.len()
        )));
    }
    if !database_exists {
        return Err(Error::Usage(format!(
            "target database {} does not exist: --data-only loads rows into existing tables; \
             create the schema first (dbkeeper migrate up, or restore --schema-only) or drop \
             --data-only",
            target.describe()
        )));
    }
    let client = target.connect().await?;
    let manifest = archive.manifest();
    let tables: Vec<&Dataset> = selected_tables(archive, options)
        .into_iter()
        .map(|i| &manifest.datasets[i])
        .collect();
    let present: std::collections::HashSet<String> = inspect::list_tables(&client)
        .await?
        .iter()
        .map(inspect::TableInfo::qualified)
        .collect();
    let mut missing: Vec<String> = tables
        .iter()
        .map(|d| d.qualified_name())
        .filter(|name| !present.contains(name))
        .map(|name| format!("table {name}"))
        .collect();
    for seq in &meta.sequences {
        if !relation_exists(&client, &quote_qualified(&seq.schema, &seq.name)).await? {
            missing.push(format!("sequence {}.{}", seq.schema, seq.name));
        }
    }
    for view in &meta.materialized_views {
        if !relation_exists(&client, &quote_qualified(&view.schema, &view.name)).await? {
            missing.push(format!("materialized view {}.{}", view.schema, view.name));
        }
    }
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "--data-only: target {} lacks {} the archive has rows for: {}; create the schema \
             first (dbkeeper migrate up, or restore --schema-only), or leave those tables out \
             with --exclude",
            target.describe(),
            if missing.len() == 1 {
                "a relation"
            } else {
                "relations"
            },
            crate::error::name_list(&missing)
        )));
    }
    let mut non_empty = Vec::new();
    for table in &tables {
        let sql = format!(
            "SELECT EXISTS (SELECT FROM ONLY {})",
            quote_qualified(&table.namespace, &table.name)
        );
        let has_rows: bool = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| db_error(&format!("looking into {}", table.qualified_name()), &e))?
            .get(0);
        if has_rows {
            non_empty.push(table.qualified_name());
        }
    }
    if non_empty.is_empty() {
        return Ok(());
    }
    let left_from = match unfinished_restore(&client).await? {
        Some(mark) => format!("; they are left from a {mark} that did not finish"),
        None => String::new(),
    };
    Err(Error::Refused(format!(
        "--data-only loads into empty tables, and these tables of {} hold rows: {}{left_from}; \
         nothing was changed. Empty them first (TRUNCATE), leave them out with --exclude, or \
         restore into a new database without --data-only",
        target.describe(),
        crate::error::name_list(&non_empty)
    )))
}

/// Whether the role may switch off foreign-key and user triggers for its session
/// (`session_replication_role = replica`, what `pg_restore --disable-triggers` does): only a
/// superuser may.
pub async fn can_disable_triggers(client: &Client) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| db_error("checking whether the restoring role is a superuser", &e))?
        .get(0))
}

/// The error of a load that stopped part-way: the tables are partly loaded; what to do next.
/// A foreign-key violation without the superuser's trigger switch says why it happened.
pub fn partly_loaded(target: &PgTarget, e: Error, triggers_disabled: bool) -> Error {
    let Error::Database { engine, message } = e else {
        return e;
    };
    let hint = if !triggers_disabled && message.contains("foreign key") {
        " (tables are loaded in parallel, in no particular order, and only a superuser may \
         switch foreign keys off for the load, as pg_restore --disable-triggers does: restore \
         as a superuser, or drop the foreign keys and add them back afterwards)"
    } else {
        ""
    };
    Error::Database {
        engine,
        message: format!(
            "{message}{hint}\nthe tables of {} are partly loaded; empty them (TRUNCATE) and run \
             the --data-only restore again",
            target.describe()
        ),
    }
}

async fn relation_exists(client: &Client, quoted: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])
        .await
        .map_err(|e| db_error(&format!("looking up {quoted}"), &e))?
        .get(0))
}
