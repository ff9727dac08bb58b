//! Checking a rules file against what an archive holds, and turning it into per-table and
//! per-collection masks, before anything is touched.
//!
//! What is refused, every problem listed at once:
//! - a rule naming a table, column, collection or field the archive does not hold (exit 2);
//! - a transform the column's type cannot hold (`email` on an integer), `null` on a NOT NULL
//!   column or a required field, two rules that disagree across a foreign key (exit 2);
//! - a personal-looking column or field without a rule (exit 4: fail closed; `keep` declares
//!   one safe).
//!
//! Foreign keys: the two columns of a foreign key get the same transform (either side's rule
//! spreads to the other, through chains of keys), so joins survive; the report says which
//! rules were inherited.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::copy_text::{ColumnKind, ColumnMask, TableMask};
use super::document::{CollectionMask, FieldMask};
use super::personal::looks_personal;
use super::rules::Rules;
use super::transform::Transform;
use crate::error::{Engine, Error, Result};

/// A column of a table, in COPY order, with what the schema says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    pub name: String,
    /// As pg_dump writes it (`character varying(80)`); empty when unknown.
    pub type_name: String,
    pub not_null: bool,
}

/// A table of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTableShape {
    pub schema: String,
    pub name: String,
    pub columns: Vec<PgColumn>,
    /// dbkeeper's own migration bookkeeping (names of migrations, no personal data): not
    /// subject to the fail-closed check; rules may still mask it.
    pub bookkeeping: bool,
}

/// `table(columns) REFERENCES referenced(referenced_columns)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub table: (String, String),
    pub columns: Vec<String>,
    pub referenced: (String, String),
    pub referenced_columns: Vec<String>,
}

/// A collection of the archive: the field paths it is known to have (from its `$jsonSchema`
/// and its documents, arrays looked through) and the required ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MongoCollectionShape {
    pub name: String,
    pub known_paths: BTreeSet<String>,
    pub required_paths: BTreeSet<String>,
    /// dbkeeper's own migration bookkeeping: not subject to the fail-closed check.
    pub bookkeeping: bool,
}

pub use crate::archive::manifest::MaskedField as AppliedRule;

type TableKey = (String, String);

/// The PostgreSQL masks of a run.
#[derive(Debug, Default)]
pub struct PgMask {
    tables: BTreeMap<TableKey, Arc<TableMask>>,
    inherited: BTreeMap<(TableKey, String), String>,
}

impl PgMask {
    /// The mask of a table, if any of its columns changes.
    pub fn table(&self, schema: &str, name: &str) -> Option<&Arc<TableMask>> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    /// Every masking rule with its count so far.
    pub fn applied(&self) -> Vec<AppliedRule> {
        let mut out = Vec::new();
        for ((schema, table), mask) in &self.tables {
            for column in mask.columns() {
                out.push(AppliedRule {
                    engine: Engine::Postgres,
                    dataset: format!("{schema}.{table}"),
                    field: column.name.clone(),
                    transform: column.transform.to_string(),
                    inherited_from: self
                        .inherited
                        .get(&((schema.clone(), table.clone()), column.name.clone()))
                        .cloned(),
                    changed: column.changed.load(Ordering::Relaxed),
                });
            }
        }
        out
    }
}

/// The MongoDB masks of a run.
#[derive(Debug, Default)]
pub struct MongoMask {
    collections: BTreeMap<String, Arc<CollectionMask>>,
}

impl MongoMask {
    pub fn collection(&self, name: &str) -> Option<&Arc<CollectionMask>> {
        self.collections.get(name)
    }

    pub fn applied(&self) -> Vec<AppliedRule> {
        let mut out = Vec::new();
        for (name, mask) in &self.collections {
            for field in mask.fields() {
                out.push(AppliedRule {
                    engine: Engine::Mongo,
                    dataset: name.clone(),
                    field: field.path.clone(),
                    transform: field.transform.to_string(),
                    inherited_from: None,
                    changed: field.changed.load(Ordering::Relaxed),
                });
            }
        }
        out
    }
}

/// Problems found while planning, by how they are reported.
#[derive(Default)]
struct Problems {
    bad: Vec<String>,
    unruled: Vec<String>,
}

impl Problems {
    fn into_result(self, rules: &Rules) -> Result<()> {
        if !self.bad.is_empty() {
            return Err(Error::Config {
                path: rules.path.clone(),
                message: format!("{}; nothing was touched", self.bad.join("; ")),
            });
        }
        if !self.unruled.is_empty() {
            return Err(Error::Refused(format!(
                "--mask {}: these look personal and have no rule: {}; add a transform for each \
                 (or `keep` to declare it safe); nothing was touched",
                rules.path.display(),
                self.unruled.join(", ")
            )));
        }
        Ok(())
    }
}

/// Checks the PostgreSQL rules against the archive's tables and foreign keys.
pub fn plan_postgres(
    rules: &Rules,
    tables: &[PgTableShape],
    foreign_keys: &[ForeignKey],
) -> Result<PgMask> {
    let mut problems = Problems::default();
    let by_key: BTreeMap<TableKey, &PgTableShape> = tables
        .iter()
        .map(|t| ((t.schema.clone(), t.name.clone()), t))
        .collect();
    // (table, column) -> (transform, inherited from)
    let mut effective: BTreeMap<(TableKey, String), (Transform, Option<String>)> = BTreeMap::new();
    for (key, columns) in &rules.postgres {
        let Some(table) = by_key.get(key) else {
            problems.bad.push(format!(
                "[postgres.\"{}.{}\"] names a table the archive does not hold",
                key.0, key.1
            ));
            continue;
        };
        for (column, transform) in columns {
            if table.columns.iter().any(|c| &c.name == column) {
                effective.insert((key.clone(), column.clone()), (transform.clone(), None));
            } else {
                problems.bad.push(format!(
                    "[postgres.\"{}.{}\"] {column}: the table has no such column",
                    key.0, key.1
                ));
            }
        }
    }
    spread_along_foreign_keys(&mut effective, foreign_keys, &mut problems);

    let mut masks = PgMask::default();
    for table in tables {
        let key = (table.schema.clone(), table.name.clone());
        let mut columns = Vec::new();
        for (index, column) in table.columns.iter().enumerate() {
            let place = format!("{}.{}.{}", table.schema, table.name, column.name);
            let Some((transform, inherited)) = effective.get(&(key.clone(), column.name.clone()))
            else {
                if looks_personal(&column.name) && !table.bookkeeping {
                    problems.unruled.push(place);
                }
                continue;
            };
            let kind = ColumnKind::from_pg_type(&column.type_name);
            if !kind.accepts(transform) {
                problems.bad.push(format!(
                    "{place} ({}): {transform} cannot mask this type; use hash, null, keep or \
                     constant:TEXT",
                    if column.type_name.is_empty() {
                        "type unknown"
                    } else {
                        &column.type_name
                    }
                ));
            }
            if *transform == Transform::Null && column.not_null {
                problems
                    .bad
                    .push(format!("{place} is NOT NULL: a null rule would break it"));
            }
            if let Some(from) = inherited {
                masks
                    .inherited
                    .insert((key.clone(), column.name.clone()), from.clone());
            }
            columns.push(ColumnMask {
                name: column.name.clone(),
                index,
                transform: transform.clone(),
                kind,
                changed: AtomicU64::new(0),
            });
        }
        let mask = TableMask::new(rules.key.clone(), columns);
        if !mask.is_empty() {
            masks.tables.insert(key, Arc::new(mask));
        }
    }
    problems.into_result(rules)?;
    Ok(masks)
}

/// Gives both columns of every foreign key the same rule, through chains of keys.
fn spread_along_foreign_keys(
    effective: &mut BTreeMap<(TableKey, String), (Transform, Option<String>)>,
    foreign_keys: &[ForeignKey],
    problems: &mut Problems,
) {
    let pairs: Vec<((TableKey, String), (TableKey, String))> = foreign_keys
        .iter()
        .flat_map(|fk| {
            fk.columns.iter().zip(&fk.referenced_columns).map(|(c, r)| {
                (
                    (fk.table.clone(), c.clone()),
                    (fk.referenced.clone(), r.clone()),
                )
            })
        })
        .collect();
    let name = |(t, c): &(TableKey, String)| format!("{}.{}.{c}", t.0, t.1);
    let mut reported = BTreeSet::new();
    loop {
        let mut changed = false;
        for (a, b) in &pairs {
            match (effective.get(a).cloned(), effective.get(b).cloned()) {
                (Some((ta, _)), None) => {
                    effective.insert(b.clone(), (ta, Some(name(a))));
                    changed = true;
                }
                (None, Some((tb, _))) => {
                    effective.insert(a.clone(), (tb, Some(name(b))));
                    changed = true;
                }
                (Some((ta, _)), Some((tb, _))) if ta != tb && reported.insert((a, b)) => {
                    problems.bad.push(format!(
                        "{} ({ta}) references {} ({tb}) by a foreign key: give both the same \
                         transform so joins survive",
                        name(a),
                        name(b)
                    ));
                }
                _ => {}
            }
        }
        if !changed {
            break;
        }
    }
}

/// Checks the MongoDB rules against the archive's collections.
pub fn plan_mongo(rules: &Rules, collections: &[MongoCollectionShape]) -> Result<MongoMask> {
    let mut problems = Problems::default();
    let mut masks = MongoMask::default();
    let by_name: BTreeMap<&str, &MongoCollectionShape> =
        collections.iter().map(|c| (c.name.as_str(), c)).collect();
    for (name, fields) in &rules.mongo {
        let Some(shape) = by_name.get(name.as_str()) else {
            problems.bad.push(format!(
                "[mongo.{name}] names a collection the archive does not hold"
            ));
            continue;
        };
        for (path, transform) in fields {
            if !shape.known_paths.contains(path) {
                problems.bad.push(format!(
                    "[mongo.{name}] {path:?}: no document or $jsonSchema of the collection has \
                     this field"
                ));
            }
            if *transform == Transform::Null && shape.required_paths.contains(path) {
                problems.bad.push(format!(
                    "{name}.{path} is required by the collection's $jsonSchema: a null rule \
                     would break it"
                ));
            }
        }
    }
    for shape in collections {
        let ruled = rules.mongo.get(&shape.name);
        let covered = |path: &str| {
            ruled.is_some_and(|r| {
                r.keys()
                    .any(|p| path == p.as_str() || path.starts_with(&format!("{p}.")))
            })
        };
        for path in &shape.known_paths {
            let is_leaf = !shape
                .known_paths
                .range(format!("{path}.")..)
                .next()
                .is_some_and(|p| p.starts_with(&format!("{path}.")));
            if is_leaf && !shape.bookkeeping && looks_personal(path) && !covered(path) {
                problems.unruled.push(format!("{}.{path}", shape.name));
            }
        }
        if let Some(fields) = ruled {
            let fields = fields
                .iter()
                .map(|(path, transform)| FieldMask {
                    path: path.clone(),
                    transform: transform.clone(),
                    changed: AtomicU64::new(0),
                })
                .collect();
            let mask = CollectionMask::new(rules.key.clone(), fields);
            if !mask.is_empty() {
                masks.collections.insert(shape.name.clone(), Arc::new(mask));
            }
        }
    }
    problems.into_result(rules)?;
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::key::MaskKey;

    fn rules(pg: &[(&str, &str, &str)], mongo: &[(&str, &str, &str)]) -> Rules {
        let mut r = Rules {
            path: "rules.toml".into(),
            key: MaskKey::from_secret(b"plan test key, long enough").unwrap(),
            postgres: BTreeMap::new(),
            mongo: BTreeMap::new(),
        };
        for (table, column, t) in pg {
            let (s, n) = table.split_once('.').unwrap();
            r.postgres
                .entry((s.into(), n.into()))
                .or_default()
                .insert(column.to_string(), Transform::parse(t).unwrap());
        }
        for (coll, path, t) in mongo {
            r.mongo
                .entry(coll.to_string())
                .or_default()
                .insert(path.to_string(), Transform::parse(t).unwrap());
        }
        r
    }

    fn table(name: &str, columns: &[(&str, &str, bool)]) -> PgTableShape {
        PgTableShape {
            schema: "public".into(),
            name: name.into(),
            columns: columns
                .iter()
                .map(|(n, t, nn)| PgColumn {
                    name: n.to_string(),
                    type_name: t.to_string(),
                    not_null: *nn,
                })
                .collect(),
            bookkeeping: false,
        }
    }

    fn shop() -> (Vec<PgTableShape>, Vec<ForeignKey>) {
        let tables = vec![
            table(
                "customers",
                &[
                    ("id", "integer", true),
                    ("email", "text", true),
                    ("phone", "text", false),
                ],
            ),
            table(
                "orders",
                &[("id", "integer", true), ("customer_email", "text", false)],
            ),
        ];
        let fks = vec![ForeignKey {
            table: ("public".into(), "orders".into()),
            columns: vec!["customer_email".into()],
            referenced: ("public".into(), "customers".into()),
            referenced_columns: vec!["email".into()],
        }];
        (tables, fks)
    }

    #[test]
    fn foreign_keys_inherit_the_referenced_rule() {
        let (tables, fks) = shop();
        let r = rules(
            &[
                ("public.customers", "email", "email"),
                ("public.customers", "phone", "phone"),
            ],
            &[],
        );
        let mask = plan_postgres(&r, &tables, &fks).unwrap();
        let applied = mask.applied();
        let inherited = applied
            .iter()
            .find(|a| a.dataset == "public.orders")
            .unwrap();
        assert_eq!(inherited.field, "customer_email");
        assert_eq!(inherited.transform, "email");
        assert_eq!(
            inherited.inherited_from.as_deref(),
            Some("public.customers.email")
        );
    }

    #[test]
    fn bad_rules_are_all_listed_with_exit_2() {
        let (tables, fks) = shop();
        let r = rules(
            &[
                ("public.customers", "email", "null"),
                ("public.customers", "id", "email"),
                ("public.customers", "fax", "null"),
                ("public.nope", "x", "hash"),
                ("public.orders", "customer_email", "hash"),
            ],
            &[],
        );
        let err = plan_postgres(&r, &tables, &fks).unwrap_err();
        assert_eq!(err.exit_code(), crate::ExitCode::Usage);
        let text = err.to_string();
        for expected in [
            "public.customers.email is NOT NULL",
            "public.customers.id (integer): email cannot mask",
            "fax: the table has no such column",
            "\"public.nope\"] names a table",
            "give both the same transform",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }

    #[test]
    fn migration_bookkeeping_needs_no_rule() {
        let mut history = table(
            "refinery_schema_history",
            &[("version", "integer", true), ("name", "text", false)],
        );
        let r = rules(&[], &[]);
        assert!(plan_postgres(&r, std::slice::from_ref(&history), &[]).is_err());
        history.bookkeeping = true;
        assert!(plan_postgres(&r, &[history], &[])
            .unwrap()
            .applied()
            .is_empty());
    }

    #[test]
    fn unruled_personal_columns_and_fields_are_refused_with_exit_4() {
        let (tables, fks) = shop();
        let users = MongoCollectionShape {
            name: "users".into(),
            known_paths: [
                "_id",
                "profile",
                "profile.phone",
                "profile.tz",
                "addresses",
                "addresses.street",
            ]
            .map(String::from)
            .into(),
            required_paths: ["profile"].map(String::from).into(),
            bookkeeping: false,
        };
        let r = rules(
            &[("public.customers", "email", "email")],
            &[("users", "addresses", "null")],
        );
        let err = plan_postgres(&r, &tables, &fks).unwrap_err();
        assert_eq!(err.exit_code(), crate::ExitCode::Refused);
        assert!(err.to_string().contains("public.customers.phone"), "{err}");
        let err = plan_mongo(&r, std::slice::from_ref(&users)).unwrap_err();
        assert_eq!(err.exit_code(), crate::ExitCode::Refused);
        let text = err.to_string();
        assert!(
            text.contains("users.profile.phone") && !text.contains("street"),
            "{text}"
        );
        let r = rules(
            &[],
            &[
                ("users", "profile", "null"),
                ("users", "addresses.street", "keep"),
            ],
        );
        let err = plan_mongo(&r, &[users]).unwrap_err();
        assert!(
            err.to_string().contains("users.profile is required"),
            "{err}"
        );
    }
}
