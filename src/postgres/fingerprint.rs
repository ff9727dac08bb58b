//! A canonical description of a database's schema, for proving a restore recreated it.
//!
//! Each user object becomes one entry `kind schema.name -> definition text`, the text built from
//! the server's own deparsers (`format_type`, `pg_get_constraintdef`, `pg_get_viewdef`,
//! `pg_get_functiondef`, `pg_get_triggerdef`, `pg_get_expr`, ...), never from OIDs. Left out on
//! purpose, because a correct restore legitimately changes them: OIDs, owners and privileges
//! (skipped unless `--keep-owner`/`--keep-privileges`), dropped-column slots (attnum gaps),
//! statistics, and objects that belong to an extension (the extension recreates them).
//! Indexes are not entries here: they are compared one by one by definition
//! ([`IndexDef`]), which names the index that differs.
//!
//! The dump records every entry's short hash and a fingerprint over all of them
//! ([`SchemaFingerprint`]); verify recomputes both on the target and, when the fingerprints
//! differ, names each object that is missing, unexpected or different.
//!
//! Deparsed text qualifies names that are not on the search path, so both sides run with
//! `search_path = pg_catalog` ([`PIN_SEARCH_PATH`]): every user name comes out schema-qualified
//! and the text does not depend on the session.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::error::Result;
use crate::postgres::inspect::db_error;

/// Run before describing (inside the dump's snapshot transaction, `SET LOCAL`).
pub const PIN_SEARCH_PATH: &str = "SET LOCAL search_path = pg_catalog";

/// Hex digits of SHA-256 kept per object: enough to tell definitions apart, small in the
/// manifest.
const OBJECT_HASH_HEX: usize = 16;

/// User schemas only (the same filter as `inspect`), and not objects of extensions.
const USER_NAMESPACE: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// One index as `pg_indexes` defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `pg_get_indexdef`, e.g. `CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)`.
    pub definition: String,
}

impl IndexDef {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// The version of the object list [`describe`] makes: 1 had tables, columns, constraints,
/// views, functions, triggers, types and policies; 2 added every other kind pg_dump dumps
/// ([`super::schema_objects`]). Verify describes a target at the archive's version.
pub const VERSION: u32 = 2;

/// What the manifest records about the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaFingerprint {
    /// `sha256:<hex>` over every object entry.
    pub fingerprint: String,
    /// Object (`table public.users`, `function public.f(integer)`, ...) -> short hash of its
    /// definition.
    pub objects: BTreeMap<String, String>,
    /// Which object list `objects` holds ([`VERSION`]); 1 when absent.
    #[serde(default = "first_version")]
    pub version: u32,
    /// The column order of every table that inherits from another (`schema.table` -> column
    /// names in order): pg_dump recreates such a table with its parents' columns first, and
    /// restore puts them back in this order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub column_orders: BTreeMap<String, Vec<String>>,
}

fn first_version() -> u32 {
    1
}

/// A database's schema, described.
#[derive(Debug, Clone)]
pub struct SchemaDescription {
    /// Object -> canonical definition text.
    pub objects: BTreeMap<String, String>,
    pub indexes: Vec<IndexDef>,
    pub version: u32,
    /// See [`SchemaFingerprint::column_orders`].
    pub column_orders: BTreeMap<String, Vec<String>>,
}

impl SchemaDescription {
    pub fn fingerprint(&self) -> SchemaFingerprint {
        let objects: BTreeMap<String, String> = self
            .objects
            .iter()
            .map(|(key, text)| (key.clone(), object_hash(text)))
            .collect();
        SchemaFingerprint {
            fingerprint: fingerprint_of(&objects),
            objects,
            version: self.version,
            column_orders: self.column_orders.clone(),
        }
    }
}

/// The short hash [`SchemaDescription::fingerprint`] records for a definition.
pub fn object_hash(text: &str) -> String {
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    hash[..OBJECT_HASH_HEX].to_string()
}

fn fingerprint_of(objects: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (key, hash) in objects {
        hasher.update(key.as_bytes());
        hasher.update(b"\0");
        hasher.update(hash.as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// How two fingerprints differ, object by object.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaDiff {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub changed: Vec<String>,
}

impl SchemaFingerprint {
    pub fn diff(&self, found: &SchemaFingerprint) -> SchemaDiff {
        let mut diff = SchemaDiff::default();
        for (key, hash) in &self.objects {
            match found.objects.get(key) {
                None => diff.missing.push(key.clone()),
                Some(other) if other != hash => diff.changed.push(key.clone()),
                Some(_) => {}
            }
        }
        diff.unexpected = found
            .objects
            .keys()
            .filter(|k| !self.objects.contains_key(*k))
            .cloned()
            .collect();
        diff
    }
}

/// `NOT EXISTS` an extension membership of the object `oid` in catalog `catalog`.
fn not_extension_member(catalog: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = \
         'pg_catalog.{catalog}'::regclass AND d.objid = {oid} AND d.deptype = 'e')"
    )
}

/// Each query returns `(key, definition)` rows. Keys are unique per kind.
fn queries() -> Vec<(&'static str, String)> {
    let rel_not_ext = not_extension_member("pg_class", "c.oid");
    let proc_not_ext = not_extension_member("pg_proc", "p.oid");
    let type_not_ext = not_extension_member("pg_type", "t.oid");
    vec![
        (
            "schemas",
            format!(
                "SELECT 'schema ' || n.nspname, '' FROM pg_catalog.pg_namespace n \
                 WHERE {USER_NAMESPACE} AND {}",
                not_extension_member("pg_namespace", "n.oid")
            ),
        ),
        (
            "extensions",
            "SELECT 'extension ' || e.extname, n.nspname FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
                .to_string(),
        ),
        (
            "relations",
            // Columns in attnum order (dropped ones skipped), with type, nullability, default,
            // generation, identity and collation; views with their query; partitioning.
            format!(
                "SELECT CASE c.relkind WHEN 'r' THEN 'table ' WHEN 'p' THEN 'table ' \
                        WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' \
                        WHEN 'S' THEN 'sequence ' WHEN 'f' THEN 'foreign table ' \
                        WHEN 'c' THEN 'type ' END || n.nspname || '.' || c.relname,
                        concat_ws(E'\\n', 'kind ' || c.relkind::text, 'persistence ' || c.relpersistence::text,
                          'rls ' || c.relrowsecurity::text || ' ' || c.relforcerowsecurity::text,
                          'partition key ' || pg_catalog.pg_get_partkeydef(c.oid),
                          'partition of ' || (SELECT pn.nspname || '.' || pc.relname
                             FROM pg_catalog.pg_inherits i
                             JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
                             JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
                             WHERE i.inhrelid = c.oid AND c.relispartition),
                          'bound ' || pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                          CASE WHEN c.relkind IN ('v', 'm')
                               THEN 'query ' || pg_catalog.pg_get_viewdef(c.oid) END,
                          (SELECT string_agg(concat_ws(' ', 'column', quote_ident(a.attname),
                                    pg_catalog.format_type(a.atttypid, a.atttypmod),
                                    CASE WHEN a.attnotnull THEN 'not null' END,
                                    'default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid),
                                    CASE a.attgenerated WHEN 's' THEN 'stored' END,
                                    CASE a.attidentity WHEN 'a' THEN 'identity always'
                                         WHEN 'd' THEN 'identity by default' END,
                                    CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation
                                         THEN 'collate ' || co.collname END),
                                  E'\\n' ORDER BY a.attnum)
                           FROM pg_catalog.pg_attribute a
                           JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
                           LEFT JOIN pg_catalog.pg_attrdef ad
                             ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                           LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
                           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
                 FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND c.relpersistence <> 't'
                   AND {USER_NAMESPACE} AND {rel_not_ext}"
            ),
        ),
        (
            "sequences",
            // The definition; the value is compared separately (it is data, not schema).
            format!(
                "SELECT 'sequence options ' || n.nspname || '.' || c.relname,
                        concat_ws(' ', pg_catalog.format_type(s.seqtypid, NULL), s.seqstart,
                                  s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
                 FROM pg_catalog.pg_sequence s
                 JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE {USER_NAMESPACE} AND {rel_not_ext}"
            ),
        ),
        (
            "constraints",
            // Table and domain constraints. Constraints backed by an index (primary key,
            // unique, exclusion) are listed here too: the index check covers the index itself.
            format!(
                "SELECT 'constraint ' || n.nspname || '.' ||
                        coalesce(c.relname, t.typname) || '.' || con.conname,
                        con.contype::text || ' ' || pg_catalog.pg_get_constraintdef(con.oid)
                        || CASE WHEN con.condeferrable THEN ' deferrable' ELSE '' END
                 FROM pg_catalog.pg_constraint con
                 JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace
                 LEFT JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
                 LEFT JOIN pg_catalog.pg_type t ON t.oid = con.contypid
                 WHERE {USER_NAMESPACE} AND (con.conrelid = 0 OR {rel_not_ext})
                   AND (con.contypid = 0 OR {type_not_ext})
                   AND con.conparentid = 0"
            ),
        ),
        (
            "functions",
            format!(
                "SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' WHEN 'a' THEN 'aggregate '
                        ELSE 'function ' END || n.nspname || '.' || p.proname || '(' ||
                        pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
                        CASE WHEN p.prokind = 'a'
                             THEN 'returns ' || pg_catalog.format_type(p.prorettype, NULL)
                             ELSE pg_catalog.pg_get_functiondef(p.oid) END
                 FROM pg_catalog.pg_proc p
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                 WHERE {USER_NAMESPACE} AND {proc_not_ext}"
            ),
        ),
        (
            "triggers",
            format!(
                "SELECT 'trigger ' || n.nspname || '.' || c.relname || '.' || tg.tgname,
                        pg_catalog.pg_get_triggerdef(tg.oid) || ' enabled ' || tg.tgenabled::text
                 FROM pg_catalog.pg_trigger tg
                 JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE NOT tg.tgisinternal
                   AND {USER_NAMESPACE} AND {rel_not_ext}"
            ),
        ),
        (
            "types",
            // Enums (labels in order), domains, ranges; composite types are relations above.
            format!(
                "SELECT CASE t.typtype WHEN 'e' THEN 'enum ' WHEN 'd' THEN 'domain '
                        ELSE 'range ' END || n.nspname || '.' || t.typname,
                        CASE t.typtype
                          WHEN 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', '
                                                           ORDER BY e.enumsortorder)
                                         FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid)
                          WHEN 'd' THEN concat_ws(' ',
                                          pg_catalog.format_type(t.typbasetype, t.typtypmod),
                                          CASE WHEN t.typnotnull THEN 'not null' END,
                                          'default ' || t.typdefault)
                          ELSE (SELECT pg_catalog.format_type(r.rngsubtype, NULL)
                                FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid) END
                 FROM pg_catalog.pg_type t
                 JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                 WHERE t.typtype IN ('e', 'd', 'r') AND {USER_NAMESPACE} AND {type_not_ext}"
            ),
        ),
        (
            "policies",
            format!(
                "SELECT 'policy ' || n.nspname || '.' || c.relname || '.' || pol.polname,
                        concat_ws(' ', pol.polcmd::text, pol.polpermissive::text,
                                  'using ' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
                                  'check ' || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid))
                 FROM pg_catalog.pg_policy pol
                 JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE {USER_NAMESPACE} AND {rel_not_ext}"
            ),
        ),
    ]
}

/// Describes the schema `client` sees. The caller pins the search path first
/// ([`PIN_SEARCH_PATH`] inside a transaction, or `SET search_path = pg_catalog`).
pub async fn describe(client: &Client) -> Result<SchemaDescription> {
    describe_version(client, VERSION).await
}

/// [`describe`] with the object list of `version` (to compare with an archive written when
/// the list was shorter).
pub async fn describe_version(client: &Client, version: u32) -> Result<SchemaDescription> {
    let mut objects = BTreeMap::new();
    for (what, sql) in queries() {
        for (key, text) in described(client, what, &sql).await? {
            objects.insert(key, text.unwrap_or_default());
        }
    }
    if version >= 2 {
        // Version 2 lists an object only when it has a definition (a setting that is not the
        // default, a comment that exists).
        for (what, sql) in super::schema_objects::queries(USER_NAMESPACE) {
            for (key, text) in described(client, what, &sql).await? {
                if let Some(text) = text {
                    objects.insert(key, text);
                }
            }
        }
    }
    let indexes = index_definitions(client).await?;
    Ok(SchemaDescription {
        objects,
        indexes,
        version: version.min(VERSION),
        column_orders: column_orders(client).await?,
    })
}

async fn described(
    client: &Client,
    what: &str,
    sql: &str,
) -> Result<Vec<(String, Option<String>)>> {
    let rows = client
        .query(sql, &[])
        .await
        .map_err(|e| db_error(&format!("describing the schema ({what})"), &e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// See [`SchemaFingerprint::column_orders`]. Partitions are left out: they are attached, not
/// inherited, and keep their own column order.
async fn column_orders(client: &Client) -> Result<BTreeMap<String, Vec<String>>> {
    let sql = format!(
        "SELECT n.nspname || '.' || c.relname,
                (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND NOT c.relispartition AND c.relpersistence <> 't'
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)
           AND {USER_NAMESPACE} AND {}",
        not_extension_member("pg_class", "c.oid")
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| db_error("reading the column order of inheriting tables", &e))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get::<_, Option<Vec<String>>>(1).unwrap_or_default(),
            )
        })
        .collect())
}

/// `definition` (a table's text from [`describe`]) with its column lines in `order` (names as
/// [`SchemaFingerprint::column_orders`] lists them), or `None` when its columns are not those.
/// Verify uses it to tell a table whose columns are only in another order.
pub fn with_column_order(definition: &str, order: &[String]) -> Option<String> {
    let (columns, rest): (Vec<&str>, Vec<&str>) =
        definition.lines().partition(|l| l.starts_with("column "));
    let mut by_name: BTreeMap<String, &str> = BTreeMap::new();
    for line in &columns {
        by_name.insert(column_name(line)?, line);
    }
    if by_name.len() != order.len() {
        return None;
    }
    let mut lines = rest;
    for name in order {
        lines.push(by_name.get(name)?);
    }
    Some(lines.join("\n"))
}

/// The column name of a `column <quote_ident(name)> <type> ...` line.
fn column_name(line: &str) -> Option<String> {
    let rest = line.strip_prefix("column ")?;
    if rest.starts_with('"') {
        let end = super::lexer::quoted_end(rest.as_bytes(), 0, b'"', false);
        Some(rest.get(1..end - 1)?.replace("\"\"", "\""))
    } else {
        Some(rest.split(' ').next()?.to_string())
    }
}

/// Every index of user tables and materialized views (not of extension-owned relations),
/// sorted by schema and name.
pub async fn index_definitions(client: &Client) -> Result<Vec<IndexDef>> {
    let sql = format!(
        "SELECT n.nspname, c.relname, i.relname, pg_catalog.pg_get_indexdef(i.oid)
         FROM pg_catalog.pg_index x
         JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
         JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
         WHERE {USER_NAMESPACE} AND {}
         ORDER BY 1, 3",
        not_extension_member("pg_class", "c.oid")
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| db_error("listing index definitions", &e))?;
    Ok(rows
        .iter()
        .map(|r| IndexDef {
            schema: r.get(0),
            table: r.get(1),
            name: r.get(2),
            definition: r.get(3),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(entries: &[(&str, &str)]) -> SchemaDescription {
        SchemaDescription {
            objects: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            indexes: Vec::new(),
            version: VERSION,
            column_orders: BTreeMap::new(),
        }
    }

    #[test]
    fn archives_without_a_version_hold_the_first_object_list() {
        let old: SchemaFingerprint = serde_json::from_str(
            r#"{"fingerprint": "sha256:00", "objects": {"table public.a": "01"}}"#,
        )
        .unwrap();
        assert_eq!(old.version, 1);
        assert!(old.column_orders.is_empty());
        let new = description(&[("table public.a", "column id integer")]).fingerprint();
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["version"], VERSION);
        assert!(json.get("column_orders").is_none(), "omitted when empty");
    }

    #[test]
    fn column_lines_are_put_in_the_archived_order() {
        let text = "kind r\ncolumn a integer\ncolumn \"B c\" text not null\ncolumn z date";
        let order: Vec<String> = ["z", "a", "B c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            with_column_order(text, &order).as_deref(),
            Some("kind r\ncolumn z date\ncolumn a integer\ncolumn \"B c\" text not null")
        );
        assert_eq!(with_column_order(text, &order[..2]), None);
    }

    #[test]
    fn fingerprints_name_what_differs() {
        let source = description(&[
            ("table public.a", "column id integer"),
            ("table public.b", "column x text"),
            ("view public.v", "query SELECT 1"),
        ])
        .fingerprint();
        assert_eq!(
            source,
            description(&[
                ("view public.v", "query SELECT 1"),
                ("table public.b", "column x text"),
                ("table public.a", "column id integer"),
            ])
            .fingerprint(),
            "independent of the order objects are listed in"
        );
        let target = description(&[
            ("table public.a", "column id bigint"),
            ("view public.v", "query SELECT 1"),
            ("function public.f()", "..."),
        ])
        .fingerprint();
        assert_ne!(source.fingerprint, target.fingerprint);
        assert_eq!(
            source.diff(&target),
            SchemaDiff {
                missing: vec!["table public.b".into()],
                unexpected: vec!["function public.f()".into()],
                changed: vec!["table public.a".into()],
            }
        );
        assert_eq!(source.diff(&source), SchemaDiff::default());
    }
}
