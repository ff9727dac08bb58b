//! What masking needs to know about an archive's PostgreSQL tables, read from the pg_dump
//! scripts it holds (so rules are checked before any database is touched): each table's
//! columns with their declared types and NOT NULL, and the foreign keys between columns.
//! A masked backup reads the same from the catalog at its snapshot instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_postgres::Client;

use crate::archive::reader::VerifiedArchive;
use crate::error::{Engine, Error, Result};
use crate::mask::plan::{ForeignKey, PgColumn, PgTableShape};
use crate::mask::{PgMask, Rules};
use crate::postgres::dump::PgDatasetExtra;
use crate::postgres::inspect::{db_error, TableInfo};
use crate::postgres::migrate::{COMPANION_TABLE, LOG_TABLE, REFINERY_TABLE, REPEATABLE_TABLE};
use crate::postgres::restore::archive_meta;
use crate::postgres::script;

/// Checks `rules` against the archive's PostgreSQL part and builds its masks.
pub fn plan(archive: &Arc<VerifiedArchive>, rules: &Rules) -> Result<PgMask> {
    let Some((_, meta)) = archive_meta(archive)? else {
        return crate::mask::plan::plan_postgres(rules, &[], &[]);
    };
    let text = |member: &str| {
        String::from_utf8(archive.read_member(member)?).map_err(|_| {
            Error::bad_input(
                format!("archive {}, member {member}", archive.path().display()),
                "is not UTF-8 text",
            )
        })
    };
    let declared = declared_columns(&text(&meta.pre_data_member)?);
    let foreign_keys = foreign_keys(&text(&meta.post_data_member)?);
    let tables: Vec<PgTableShape> = archive
        .manifest()
        .datasets_of(Engine::Postgres)
        .map(|dataset| {
            let copy_columns = serde_json::from_value::<PgDatasetExtra>(dataset.extra.clone())
                .map(|e| e.columns)
                .unwrap_or_default();
            table_shape(&dataset.namespace, &dataset.name, copy_columns, &declared)
        })
        .collect();
    crate::mask::plan::plan_postgres(rules, &tables, &foreign_keys)
}

/// Checks `rules` against the tables a backup is about to dump, as the catalog describes them
/// at the backup's snapshot, and builds their masks (`backup --mask`).
pub async fn plan_live(client: &Client, tables: &[TableInfo], rules: &Rules) -> Result<PgMask> {
    let rows = client
        .query(
            // A domain column masks as its base type (an e-mail domain over text is text).
            "SELECT n.nspname, c.relname, a.attname, \
                    CASE WHEN t.typtype = 'd' \
                         THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) \
                         ELSE pg_catalog.format_type(a.atttypid, a.atttypmod) END, \
                    a.attnotnull \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')",
            &[],
        )
        .await
        .map_err(|e| db_error("reading column types for --mask", &e))?;
    let mut declared: BTreeMap<(String, String), Vec<PgColumn>> = BTreeMap::new();
    for row in rows {
        declared
            .entry((row.get(0), row.get(1)))
            .or_default()
            .push(PgColumn {
                name: row.get(2),
                type_name: row.get(3),
                not_null: row.get(4),
            });
    }
    let rows = client
        .query(
            "SELECT sn.nspname, sc.relname, \
                    ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                          JOIN pg_catalog.pg_attribute a \
                            ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i)::text[], \
                    rn.nspname, rc.relname, \
                    ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i) \
                          JOIN pg_catalog.pg_attribute a \
                            ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)::text[] \
             FROM pg_catalog.pg_constraint con \
             JOIN pg_catalog.pg_class sc ON sc.oid = con.conrelid \
             JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace \
             JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid \
             JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
             WHERE con.contype = 'f'",
            &[],
        )
        .await
        .map_err(|e| db_error("reading foreign keys for --mask", &e))?;
    let foreign_keys: Vec<ForeignKey> = rows
        .iter()
        .map(|row| ForeignKey {
            table: (row.get(0), row.get(1)),
            columns: row.get(2),
            referenced: (row.get(3), row.get(4)),
            referenced_columns: row.get(5),
        })
        .collect();
    let shapes: Vec<PgTableShape> = tables
        .iter()
        .map(|t| table_shape(&t.schema, &t.name, t.columns.clone(), &declared))
        .collect();
    crate::mask::plan::plan_postgres(rules, &shapes, &foreign_keys)
}

/// A table's COPY columns with what the schema declares about each.
fn table_shape(
    schema: &str,
    name: &str,
    copy_columns: Vec<String>,
    declared: &BTreeMap<(String, String), Vec<PgColumn>>,
) -> PgTableShape {
    let known = declared.get(&(schema.to_string(), name.to_string()));
    let columns = copy_columns
        .into_iter()
        .map(|column| {
            known
                .and_then(|cols| cols.iter().find(|c| c.name == column))
                .cloned()
                .unwrap_or(PgColumn {
                    name: column,
                    type_name: String::new(),
                    not_null: false,
                })
        })
        .collect();
    PgTableShape {
        schema: schema.to_string(),
        name: name.to_string(),
        columns,
        bookkeeping: [REFINERY_TABLE, COMPANION_TABLE, LOG_TABLE, REPEATABLE_TABLE].contains(&name),
    }
}

/// The columns of every `CREATE TABLE` with a column list in a pg_dump pre-data script; a
/// column of a domain type gets the domain's base type.
pub fn declared_columns(pre_data: &str) -> BTreeMap<(String, String), Vec<PgColumn>> {
    let mut out = BTreeMap::new();
    let domains = domain_types(pre_data);
    for statement in script::statements(pre_data) {
        if statement.kind != Some("TABLE") {
            continue;
        }
        let mut lines = statement
            .sql
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("CREATE "));
        let Some(head) = lines.next() else { continue };
        let Some(name) = head
            .split_once(" TABLE ")
            .map(|(_, rest)| rest.trim_end_matches('(').trim())
        else {
            continue;
        };
        let Some((schema, table, _)) = qualified_name(name) else {
            continue;
        };
        let mut columns = Vec::new();
        for line in lines {
            let line = line.trim().trim_end_matches(',');
            if line.starts_with(')') {
                break;
            }
            if line.starts_with("CONSTRAINT ") || line.is_empty() {
                continue;
            }
            let Some((name, rest)) = identifier(line) else {
                continue;
            };
            let rest = rest.trim();
            let end = [
                " DEFAULT ",
                " COLLATE ",
                " GENERATED ",
                " CONSTRAINT ",
                " NOT NULL",
            ]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
            let type_name = rest[..end].trim();
            columns.push(PgColumn {
                name,
                type_name: domains
                    .get(type_name)
                    .map_or(type_name, String::as_str)
                    .to_string(),
                not_null: rest.contains(" NOT NULL") || rest.starts_with("NOT NULL"),
            });
        }
        out.insert((schema, table), columns);
    }
    out
}

/// `CREATE DOMAIN schema.name AS type` statements: the domain as columns name it
/// (`schema.name`, as pg_dump writes it) and its base type.
fn domain_types(pre_data: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in script::statements(pre_data) {
        if statement.kind != Some("DOMAIN") {
            continue;
        }
        let Some(line) = statement
            .sql
            .lines()
            .find(|l| l.trim_start().starts_with("CREATE DOMAIN "))
        else {
            continue;
        };
        if let Some((name, base)) = line.trim()["CREATE DOMAIN ".len()..].split_once(" AS ") {
            let base = base.trim().trim_end_matches(';');
            let end = [
                " DEFAULT ",
                " COLLATE ",
                " CONSTRAINT ",
                " NOT NULL",
                " CHECK ",
            ]
            .iter()
            .filter_map(|m| base.find(m))
            .min()
            .unwrap_or(base.len());
            out.insert(name.trim().to_string(), base[..end].trim().to_string());
        }
    }
    out
}

/// Every `FOREIGN KEY (...) REFERENCES ...(...)` constraint in a pg_dump post-data script.
pub fn foreign_keys(post_data: &str) -> Vec<ForeignKey> {
    let mut out = Vec::new();
    for statement in script::statements(post_data) {
        let Some(table) = script::statement_table(statement.sql) else {
            continue;
        };
        let Some((_, rest)) = statement.sql.split_once(" FOREIGN KEY (") else {
            continue;
        };
        let Some((columns, rest)) = identifier_list(rest) else {
            continue;
        };
        let Some((_, rest)) = rest.split_once("REFERENCES ") else {
            continue;
        };
        let Some((schema, name, rest)) = qualified_name(rest) else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('(') else {
            continue;
        };
        let Some((referenced_columns, _)) = identifier_list(rest) else {
            continue;
        };
        out.push(ForeignKey {
            table,
            columns,
            referenced: (schema, name),
            referenced_columns,
        });
    }
    out
}

/// One identifier at the start of `s` (quoted or plain) and what follows it.
fn identifier(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(quoted) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), &s[end..]))
}

/// `schema.name` at the start of `s`, and what follows.
fn qualified_name(s: &str) -> Option<(String, String, &str)> {
    let (schema, rest) = identifier(s)?;
    let (name, rest) = identifier(rest.strip_prefix('.')?)?;
    Some((schema, name, rest))
}

/// `a, b)` -> `[a, b]` and what follows the `)`.
fn identifier_list(mut s: &str) -> Option<(Vec<String>, &str)> {
    let mut names = Vec::new();
    loop {
        let (name, rest) = identifier(s)?;
        names.push(name);
        let rest = rest.trim_start();
        if let Some(rest) = rest.strip_prefix(',') {
            s = rest;
        } else {
            return Some((names, rest.strip_prefix(')')?));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_foreign_keys_come_from_pg_dump_scripts() {
        let pre = "--\n-- Name: address; Type: DOMAIN; Schema: public; Owner: x\n--\n\n\
            CREATE DOMAIN public.address AS character varying(200)\n\tCONSTRAINT a CHECK \
            ((VALUE <> ''::text));\n\n\
            --\n-- Name: customers; Type: TABLE; Schema: public; Owner: x\n--\n\n\
            CREATE TABLE public.customers (\n    id bigint NOT NULL,\n    \"E-mail\" character \
            varying(80) DEFAULT 'a, b'::character varying NOT NULL,\n    phone text,\n    \
            home public.address,\n    CONSTRAINT c CHECK ((id > 0))\n);\n";
        let columns = declared_columns(pre);
        let cols = &columns[&("public".to_string(), "customers".to_string())];
        assert_eq!(cols.len(), 4);
        assert_eq!(cols[3].type_name, "character varying(200)");
        assert_eq!(cols[1].name, "E-mail");
        assert_eq!(cols[1].type_name, "character varying(80)");
        assert!(cols[0].not_null && cols[1].not_null && !cols[2].not_null);

        let post =
            "--\n-- Name: orders o_fk; Type: FK CONSTRAINT; Schema: public; Owner: x\n--\n\n\
            ALTER TABLE ONLY public.orders\n    ADD CONSTRAINT o_fk FOREIGN KEY (customer_id, \
            \"Mail\") REFERENCES public.customers(id, \"E-mail\") ON DELETE CASCADE;\n";
        let fks = foreign_keys(post);
        assert_eq!(fks.len(), 1);
        assert_eq!(fks[0].table, ("public".to_string(), "orders".to_string()));
        assert_eq!(fks[0].columns, ["customer_id", "Mail"]);
        assert_eq!(fks[0].referenced.1, "customers");
        assert_eq!(fks[0].referenced_columns, ["id", "E-mail"]);
    }
}
