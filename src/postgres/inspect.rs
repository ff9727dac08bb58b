//! Read-only catalog queries shared by dump, restore and verify: which tables hold data, their
//! COPY column lists, sequences, materialized views, large objects, whether a database is empty,
//! exact row counts. Also the one way identifiers become SQL: [`quote_ident`].

use tokio_postgres::Client;

use crate::error::{Engine, Error, Result};
use crate::postgres::connect::describe_error;

/// Quotes an identifier for SQL, always (so case, spaces, quotes and keywords survive).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

pub(crate) fn db_error(context: &str, e: &tokio_postgres::Error) -> Error {
    Error::db(
        Engine::Postgres,
        format!("{context}: {}", describe_error(e)),
    )
}

/// Schemas that belong to the system, never to the user's data.
const SYSTEM_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// A table whose rows are dumped: an ordinary table or a leaf partition.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// Columns COPY reads and writes: not dropped, not generated (those are recomputed).
    pub columns: Vec<String>,
    /// Size on disk in bytes at dump time, to schedule big tables first and split them.
    pub bytes: i64,
    /// Heap pages, for splitting a big table into ctid ranges.
    pub pages: i64,
    /// The planner's row estimate (`pg_class.reltuples`), for progress only; `None` when the
    /// table has pages but was never vacuumed or analyzed.
    pub estimated_rows: Option<u64>,
}

impl TableInfo {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn quoted(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }

    /// `("a", "b")`, or empty when the table has no copyable column.
    pub fn quoted_columns(&self) -> String {
        quoted_column_list(&self.columns)
    }
}

/// `("a", "b")` for a COPY statement.
pub fn quoted_column_list(columns: &[String]) -> String {
    let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!("({})", list.join(", "))
}

/// Every table with rows of its own: ordinary tables and leaf partitions (a partitioned parent
/// holds none), not temporary, not foreign, not owned by an extension (the extension recreates
/// those), in user schemas.
pub async fn list_tables(client: &Client) -> Result<Vec<TableInfo>> {
    let sql = format!(
        "SELECT n.nspname, c.relname,
                coalesce(array_agg(a.attname ORDER BY a.attnum)
                         FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
                         '{{}}')::text[],
                pg_catalog.pg_relation_size(c.oid),
                pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::bigint,
                c.reltuples::float8
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
         WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND {SYSTEM_SCHEMAS}
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                           WHERE d.classid = 'pg_catalog.pg_class'::regclass
                             AND d.objid = c.oid AND d.deptype = 'e')
         GROUP BY n.nspname, c.relname, c.oid
         ORDER BY n.nspname, c.relname"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| db_error("listing tables", &e))?;
    Ok(rows
        .iter()
        .map(|r| TableInfo {
            schema: r.get(0),
            name: r.get(1),
            columns: r.get(2),
            bytes: r.get(3),
            pages: r.get(4),
            estimated_rows: row_estimate(r.get(5), r.get(4)),
        })
        .collect())
}

/// `reltuples` is -1 (PostgreSQL 14+) or 0 (older) until the table is first vacuumed or
/// analyzed; only an empty heap then says for sure how many rows there are.
fn row_estimate(reltuples: f64, pages: i64) -> Option<u64> {
    if pages == 0 {
        Some(0)
    } else if reltuples > 0.0 {
        Some(reltuples.round() as u64)
    } else {
        None
    }
}

/// A sequence's state, as `setval(name, last_value, is_called)` restores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SequenceValue {
    pub schema: String,
    pub name: String,
    pub last_value: i64,
    pub is_called: bool,
}

/// Every user sequence (serial, identity and standalone) with its current value. Sequences are
/// not transactional, so this is the value now, which is at least what the snapshot used:
/// restored sequences never hand out a value a restored row already has.
pub async fn sequence_values(client: &Client) -> Result<Vec<SequenceValue>> {
    let sql = format!(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'S' AND {SYSTEM_SCHEMAS}
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                           WHERE d.classid = 'pg_catalog.pg_class'::regclass
                             AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1, 2"
    );
    let names = client
        .query(&sql, &[])
        .await
        .map_err(|e| db_error("listing sequences", &e))?;
    let mut values = Vec::with_capacity(names.len());
    for row in names {
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        let state = client
            .query_one(
                &format!(
                    "SELECT last_value, is_called FROM {}",
                    quote_qualified(&schema, &name)
                ),
                &[],
            )
            .await
            .map_err(|e| db_error(&format!("reading sequence {schema}.{name}"), &e))?;
        values.push(SequenceValue {
            schema,
            name,
            last_value: state.get(0),
            is_called: state.get(1),
        });
    }
    Ok(values)
}

/// A materialized view that held data at dump time and is refreshed after restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MatView {
    pub schema: String,
    pub name: String,
}

/// Populated materialized views, oldest first (usually dependency order; restore retries the
/// rest).
pub async fn populated_matviews(client: &Client) -> Result<Vec<MatView>> {
    let sql = format!(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'm' AND c.relispopulated AND {SYSTEM_SCHEMAS}
         ORDER BY c.oid"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| db_error("listing materialized views", &e))?;
    Ok(rows
        .iter()
        .map(|r| MatView {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// Number of large objects (`pg_largeobject_metadata`).
pub async fn large_object_count(client: &Client) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
            &[],
        )
        .await
        .map_err(|e| db_error("counting large objects", &e))?;
    Ok(row.get(0))
}

/// The server's system identifier, when the role may read it (it identifies the cluster, so a
/// restore can tell it is pointed at the archive's own source).
pub async fn system_identifier(client: &Client) -> Option<String> {
    client
        .query_one(
            "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get(0))
}

/// `server_version_num / 10000`: 15 for 15.4.
pub async fn server_major(client: &Client) -> Result<u32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| db_error("reading server version", &e))?;
    let num: i32 = row.get(0);
    Ok((num / 10000) as u32)
}

/// The database's encoding name (`UTF8`), to create restore targets alike.
pub async fn database_encoding(client: &Client) -> Result<String> {
    let row = client
        .query_one("SELECT pg_catalog.getdatabaseencoding()", &[])
        .await
        .map_err(|e| db_error("reading database encoding", &e))?;
    Ok(row.get(0))
}

/// What makes a database non-empty: user relations, functions, types, extensions other than
/// plpgsql, user schemas other than `public`, or large objects (a restore would collide with
/// their OIDs). Returns a short description of what was found,
/// `None` when the database is empty.
pub async fn user_objects(client: &Client) -> Result<Option<String>> {
    let sql = format!(
        "SELECT
           (SELECT count(*) FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE {SYSTEM_SCHEMAS}),
           (SELECT count(*) FROM pg_catalog.pg_proc p
              JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE {SYSTEM_SCHEMAS}),
           (SELECT count(*) FROM pg_catalog.pg_type t
              JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE {SYSTEM_SCHEMAS}),
           (SELECT count(*) FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql'),
           (SELECT count(*) FROM pg_catalog.pg_namespace n
              WHERE {SYSTEM_SCHEMAS} AND n.nspname <> 'public'),
           (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata)"
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| db_error("inspecting the target database", &e))?;
    let labels = [
        "relations",
        "functions",
        "types",
        "extensions",
        "schemas",
        "large objects",
    ];
    let found: Vec<String> = labels
        .iter()
        .enumerate()
        .filter_map(|(i, label)| {
            let n: i64 = row.get(i);
            (n > 0).then(|| format!("{n} {label}"))
        })
        .collect();
    Ok((!found.is_empty()).then(|| found.join(", ")))
}

/// Exact `count(*)` of one table (only its own rows, not inheritance children).
pub async fn count_rows(client: &Client, schema: &str, name: &str) -> Result<i64> {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FROM ONLY {}",
                quote_qualified(schema, name)
            ),
            &[],
        )
        .await
        .map_err(|e| db_error(&format!("counting rows of {schema}.{name}"), &e))?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_qualified("My Schema", "t"), "\"My Schema\".\"t\"");
        assert_eq!(
            quoted_column_list(&["a".into(), "B c".into()]),
            "(\"a\", \"B c\")"
        );
    }
}
