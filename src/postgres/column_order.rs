//! Restoring the column order of tables that inherit.
//!
//! A child table whose parent gained columns after the child was created has the parent's new
//! columns after its own; pg_dump recreates it with `CREATE TABLE child (own columns) INHERITS
//! (parent)`, which puts every inherited column first. pg_restore leaves it so. dbkeeper puts
//! the archived order back the way pg_dump's `--binary-upgrade` mode creates such a table:
//! right after pg_dump's `CREATE TABLE` (before anything refers to it), the table is created
//! again with every column, in the archived order, with the same types, collations, defaults,
//! generation expressions, NOT NULL, check constraints, storage and compression, then attached
//! with `ALTER TABLE ONLY ... INHERIT` and its columns and check constraints marked as
//! inherited-only again where they were (`attislocal`/`conislocal`, as pg_upgrade does). The
//! result dumps identically to the source.
//!
//! That last step writes the system catalogs, which only a superuser may do; without one,
//! restore leaves pg_dump's order and verify reports a named warning instead of a mismatch
//! (see `postgres::verify`).

use std::collections::BTreeMap;

use crate::postgres::inspect::quote_qualified;
use crate::postgres::script;

/// A session-local (`pg_temp`) function doing the rebuild of one table; it does nothing when
/// the order is already right or the columns are not the archived ones.
const REORDER_FUNCTION: &str = r#"
CREATE FUNCTION pg_temp.dbkeeper_restore_column_order(child pg_catalog.regclass, wanted text[])
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $dbkeeper$
DECLARE
    rel record;
    current_order text[];
    local_columns text[];
    local_checks text[];
    parents pg_catalog.regclass[];
    parent pg_catalog.regclass;
    columns text;
    checks text;
    settings text;
    tmp text := 'dbkeeper_column_order_' || child::oid;
    rebuilt pg_catalog.regclass;
BEGIN
    SELECT c.relname, n.nspname, c.relpersistence, c.reloptions, c.relkind INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = child;
    SELECT array_agg(a.attname::text ORDER BY a.attnum),
           array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attislocal)
      INTO current_order, local_columns
      FROM pg_attribute a WHERE a.attrelid = child AND a.attnum > 0 AND NOT a.attisdropped;
    IF rel.relkind <> 'r' OR current_order = wanted
       OR NOT (current_order @> wanted AND wanted @> current_order)
       OR cardinality(current_order) <> cardinality(wanted) THEN
        RETURN;
    END IF;
    SELECT string_agg(format('%I %s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
             CASE WHEN a.attcollation <> t.typcollation
                  THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END,
             CASE WHEN a.attgenerated = 's'
                  THEN format(' GENERATED ALWAYS AS (%s) STORED', pg_get_expr(d.adbin, d.adrelid))
                  WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)
                  ELSE '' END,
             CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END),
           ', ' ORDER BY array_position(wanted, a.attname::text)),
           string_agg(format('ALTER COLUMN %I SET STORAGE %s', a.attname,
                             CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL'
                                  WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END)
                      || CASE WHEN a.attcompression <> '' THEN format(', ALTER COLUMN %I SET COMPRESSION %s',
                             a.attname, CASE a.attcompression WHEN 'l' THEN 'lz4' ELSE 'pglz' END)
                         ELSE '' END, ', ')
      INTO columns, settings
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = child AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT string_agg(format(', CONSTRAINT %I %s', con.conname, pg_get_constraintdef(con.oid)), ''
                      ORDER BY con.conname),
           array_agg(con.conname::text) FILTER (WHERE con.conislocal)
      INTO checks, local_checks
      FROM pg_constraint con WHERE con.conrelid = child AND con.contype = 'c';
    SELECT array_agg(i.inhparent ORDER BY i.inhseqno) INTO parents
      FROM pg_inherits i WHERE i.inhrelid = child;

    EXECUTE format('CREATE %sTABLE %I.%I (%s%s)%s',
                   CASE rel.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END,
                   rel.nspname, tmp, columns, coalesce(checks, ''),
                   coalesce(' WITH (' || array_to_string(rel.reloptions, ', ') || ')', ''));
    EXECUTE format('ALTER TABLE %I.%I %s', rel.nspname, tmp, settings);
    EXECUTE format('DROP TABLE %s', child);
    EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', rel.nspname, tmp, rel.relname);
    rebuilt := format('%I.%I', rel.nspname, rel.relname)::regclass;
    FOREACH parent IN ARRAY parents LOOP
        EXECUTE format('ALTER TABLE ONLY %s INHERIT %s', rebuilt, parent);
    END LOOP;
    UPDATE pg_attribute SET attislocal = attname::text = ANY (coalesce(local_columns, '{}'))
     WHERE attrelid = rebuilt AND attnum > 0 AND NOT attisdropped;
    UPDATE pg_constraint SET conislocal = conname::text = ANY (coalesce(local_checks, '{}'))
     WHERE conrelid = rebuilt AND contype = 'c';
END
$dbkeeper$;
"#;

/// `pre_data` with the column order of every table in `orders` (see
/// [`crate::postgres::fingerprint::SchemaFingerprint::column_orders`]) put back right after
/// pg_dump creates it, and the tables it will reorder. Unchanged when no table needs it.
pub fn restore_order(pre_data: &str, orders: &BTreeMap<String, Vec<String>>) -> (String, usize) {
    if orders.is_empty() {
        return (pre_data.to_string(), 0);
    }
    let mut out = String::with_capacity(pre_data.len());
    let mut tables = 0;
    for piece in script::split(pre_data) {
        out.push_str(piece);
        let Some((schema, table)) = script::created_table(piece) else {
            continue;
        };
        let Some(order) = orders.get(&format!("{schema}.{table}")) else {
            continue;
        };
        if tables == 0 {
            out.push_str(REORDER_FUNCTION);
        }
        tables += 1;
        let wanted: Vec<String> = order.iter().map(|c| literal(c)).collect();
        out.push_str(&format!(
            "\nSELECT pg_temp.dbkeeper_restore_column_order({}::pg_catalog.regclass, \
             ARRAY[{}]::text[]);\n",
            literal(&quote_qualified(&schema, &table)),
            wanted.join(", ")
        ));
    }
    if tables > 0 {
        out.push_str(
            "\nDROP FUNCTION pg_temp.dbkeeper_restore_column_order(pg_catalog.regclass, text[]);\n",
        );
    }
    (out, tables)
}

/// An SQL string literal (standard strings: only `'` is special).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rebuild_follows_the_create_of_each_listed_table() {
        let script = "SET x = 1;\n\nCREATE TABLE public.parent (\n    a integer\n);\n\n\
                      CREATE TABLE \"S\".\"it's\" (\n    c text\n)\nINHERITS (public.parent);\n\n\
                      CREATE VIEW public.v AS SELECT 1;\n";
        let orders =
            BTreeMap::from([("S.it's".to_string(), vec!["c".to_string(), "a".to_string()])]);
        let (out, tables) = restore_order(script, &orders);
        assert_eq!(tables, 1);
        let create = out.find("INHERITS (public.parent);").unwrap();
        let call = out
            .find("dbkeeper_restore_column_order('\"S\".\"it''s\"'::pg_catalog.regclass, ARRAY['c', 'a']::text[]);")
            .unwrap();
        let view = out.find("CREATE VIEW").unwrap();
        assert!(create < call && call < view, "{out}");
        assert!(
            out.trim_end().ends_with("text[]);"),
            "the function is dropped"
        );

        let (same, none) = restore_order(script, &BTreeMap::new());
        assert_eq!((same.as_str(), none), (script, 0));
    }
}
