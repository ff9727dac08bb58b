//! Finding migration files. dbkeeper's own layout is `V{n}__{name}.{ext}` with an optional
//! `V{n}__{name}.down.{ext}`; the layouts of other tools are accepted as they are:
//! - golang-migrate and sqlx (reversible): `{version}_{title}.up.{ext}` and `.down.{ext}`;
//! - dbmate and sqlx (simple): one `{version}_{name}.{ext}` file (dbmate's holds both directions
//!   in `-- migrate:up` / `-- migrate:down` sections, which the engine splits).
//!
//! Versions are positive 64-bit numbers (timestamps such as `20260717060208` included); foreign
//! names keep their hyphens. Files that start with neither `V` nor a digit are ignored here
//! (READMEs, notes; repeatable `R__` files are read by [`super::repeatable`]). A file that looks like a migration but does not follow a pattern is an error naming
//! it, because a silently skipped migration is worse than a refused run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The files of one migration version, before any engine parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSource {
    pub version: i64,
    pub name: String,
    pub up_path: PathBuf,
    pub down_path: Option<PathBuf>,
    pub layout: Layout,
}

/// Which tool's file naming a migration follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `V{n}__{name}.ext` (+ `.down.ext`): dbkeeper's and refinery's.
    Dbkeeper,
    /// `{version}_{title}.up.ext` / `.down.ext`: golang-migrate, sqlx reversible.
    UpDown,
    /// One `{version}_{name}.ext`: dbmate (sections inside) or sqlx simple (up only).
    Single,
}

impl Layout {
    /// Files written for another tool, which may carry its conventions (its transaction
    /// handling, its section markers).
    pub fn is_foreign(self) -> bool {
        self != Layout::Dbkeeper
    }
}

/// Lists the migrations in `dir` with extension `ext` (`"sql"`, `"json"`), sorted by version.
/// A missing directory is an empty list; the caller decides whether that is a problem.
pub fn discover(dir: &Path, ext: &str) -> Result<Vec<MigrationSource>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let mut ups: BTreeMap<i64, (String, PathBuf, Layout)> = BTreeMap::new();
    let mut downs: BTreeMap<i64, (String, PathBuf)> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(parsed) = parse_file_name(file_name, ext) else {
            if file_name.to_ascii_lowercase().ends_with(&format!(".{ext}"))
                && !super::repeatable::is_repeatable_file_name(file_name, ext)
            {
                // `v2__x.sql`, `V2__x.SQL`, refinery's unversioned `U2__x.sql`: a typo that would
                // otherwise silently leave a migration out of every run.
                tracing::warn!(
                    "ignoring {}: not named V{{number}}__{{name}}.{ext} (or .down.{ext}), so it is \
                     not a migration; rename it if it should run",
                    path.display()
                );
            }
            continue;
        };
        let (version, name, is_down, layout) =
            parsed.map_err(|why| Error::bad_input(path.display().to_string(), why))?;
        let other = if is_down {
            downs.insert(version, (name, path.clone())).map(|(_, p)| p)
        } else {
            ups.insert(version, (name, path.clone(), layout))
                .map(|(_, p, _)| p)
        };
        if let Some(other) = other {
            return Err(Error::bad_input(
                path.display().to_string(),
                format!(
                    "version {version} is also used by {}; every migration needs its own version",
                    other.display()
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(ups.len());
    for (version, (name, down_path)) in &downs {
        match ups.get(version) {
            Some((up_name, _, _)) if up_name == name => {}
            Some((up_name, up_path, _)) => {
                return Err(Error::bad_input(
                    down_path.display().to_string(),
                    format!(
                        "down file name `{name}` does not match the up file {} (`{up_name}`); rename one",
                        up_path.display()
                    ),
                ))
            }
            None => {
                return Err(Error::bad_input(
                    down_path.display().to_string(),
                    format!("down file without an up file V{version}__{name}.{ext}"),
                ))
            }
        }
    }
    for (version, (name, up_path, layout)) in ups {
        let down_path = downs.remove(&version).map(|(_, p)| p);
        out.push(MigrationSource {
            version,
            name,
            up_path,
            down_path,
            layout,
        });
    }
    Ok(out)
}

/// `None`: not a migration file at all (ignored). `Some(Err)`: looks like one but is malformed.
/// `Some(Ok((version, name, is_down, layout)))` otherwise.
#[allow(clippy::type_complexity)]
fn parse_file_name(
    file_name: &str,
    ext: &str,
) -> Option<std::result::Result<(i64, String, bool, Layout), String>> {
    let stem = file_name.strip_suffix(&format!(".{ext}"))?;
    if stem.starts_with(|c: char| c.is_ascii_digit()) {
        return Some(parse_foreign(stem, ext));
    }
    if !stem.starts_with('V') {
        return None;
    }
    let (stem, is_down) = match stem.strip_suffix(".down") {
        Some(s) => (s, true),
        None => (stem, false),
    };
    let expected =
        format!("expected V{{number}}__{{name}}.{ext} (or .down.{ext}), e.g. V3__add_orders.{ext}");
    let Some((version, name)) = stem[1..].split_once("__") else {
        return Some(Err(format!("not a migration file name: {expected}")));
    };
    let version = match parse_version(version) {
        Ok(v) => v,
        Err(why) => return Some(Err(format!("{why}: {expected}"))),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Some(Err(format!(
            "migration name `{name}` must be letters, digits and underscores: {expected}"
        )));
    }
    Some(Ok((version, name.to_string(), is_down, Layout::Dbkeeper)))
}

/// `{version}_{name}` with an optional `.up`/`.down` (golang-migrate, sqlx, dbmate).
#[allow(clippy::type_complexity)]
fn parse_foreign(
    stem: &str,
    ext: &str,
) -> std::result::Result<(i64, String, bool, Layout), String> {
    let expected = format!(
        "expected {{version}}_{{name}}.{ext}, or .up.{ext} and .down.{ext}, e.g. \
         20260717060208_add-orders.up.{ext}"
    );
    let (stem, is_down, layout) = if let Some(s) = stem.strip_suffix(".up") {
        (s, false, Layout::UpDown)
    } else if let Some(s) = stem.strip_suffix(".down") {
        (s, true, Layout::UpDown)
    } else {
        (stem, false, Layout::Single)
    };
    let Some((version, name)) = stem.split_once('_') else {
        return Err(format!("no `_` between version and name: {expected}"));
    };
    let version = parse_version(version).map_err(|why| format!("{why}: {expected}"))?;
    if name.is_empty() || name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err(format!(
            "migration name `{name}` is empty or unprintable: {expected}"
        ));
    }
    Ok((version, name.to_string(), is_down, layout))
}

fn parse_version(text: &str) -> std::result::Result<i64, String> {
    match text.parse::<i64>() {
        Ok(v) if v > 0 && text.chars().all(|c| c.is_ascii_digit()) => Ok(v),
        _ => Err(format!("version `{text}` is not a positive 64-bit number")),
    }
}

/// The version `migrate new` should use: one past the highest on disk.
pub fn next_version(sources: &[MigrationSource]) -> i64 {
    sources.iter().map(|s| s.version).max().unwrap_or(0) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), "x").unwrap();
    }

    #[test]
    fn pairs_up_and_down_files_sorted_by_version() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "V2__b.sql",
            "V10__c.sql",
            "V1__a.sql",
            "V1__a.down.sql",
            "README.md",
            "notes.txt",
        ] {
            touch(dir.path(), f);
        }
        let found = discover(dir.path(), "sql").unwrap();
        let versions: Vec<_> = found.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![1, 2, 10]);
        assert!(found[0].down_path.is_some());
        assert!(found[1].down_path.is_none());
    }

    #[test]
    fn malformed_names_are_errors_naming_the_file() {
        for bad in [
            "V1_a.sql",
            "Vx__a.sql",
            "V1__a-b.sql",
            "V0__zero.sql",
            "0_zero.up.sql",
            "20260717060208.sql",
            "99999999999999999999_too_big.sql",
        ] {
            let dir = tempfile::tempdir().unwrap();
            touch(dir.path(), bad);
            let err = discover(dir.path(), "sql").unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn duplicate_versions_and_orphan_downs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "V1__a.sql");
        touch(dir.path(), "V1__b.sql");
        assert!(discover(dir.path(), "sql")
            .unwrap_err()
            .to_string()
            .contains("version 1"));

        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "V2__a.down.sql");
        assert!(discover(dir.path(), "sql")
            .unwrap_err()
            .to_string()
            .contains("without an up file"));
    }

    #[test]
    fn next_version_follows_the_highest() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_version(&discover(dir.path(), "json").unwrap()), 1);
        touch(dir.path(), "V7__x.json");
        assert_eq!(next_version(&discover(dir.path(), "json").unwrap()), 8);
    }

    #[test]
    fn foreign_layouts_with_timestamp_versions_and_hyphens() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "20260717060208_add-orders.up.sql",
            "20260717060208_add-orders.down.sql",
            "20260718000000_create_users.sql",
            "3_small.up.sql",
        ] {
            touch(dir.path(), f);
        }
        let found = discover(dir.path(), "sql").unwrap();
        let got: Vec<_> = found
            .iter()
            .map(|m| (m.version, m.name.as_str(), m.layout, m.down_path.is_some()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "small", Layout::UpDown, false),
                (20260717060208, "add-orders", Layout::UpDown, true),
                (20260718000000, "create_users", Layout::Single, false),
            ]
        );
    }
}
