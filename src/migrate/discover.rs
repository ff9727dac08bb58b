//! Finding migration files: `V{n}__{name}.{ext}` with an optional `V{n}__{name}.down.{ext}`.
//!
//! Files that do not start with `V` are ignored (READMEs, notes). A file that looks like a
//! migration but does not follow the pattern is an error naming it, because a silently skipped
//! migration is worse than a refused run.

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
}

/// Lists the migrations in `dir` with extension `ext` (`"sql"`, `"json"`), sorted by version.
/// A missing directory is an empty list; the caller decides whether that is a problem.
pub fn discover(dir: &Path, ext: &str) -> Result<Vec<MigrationSource>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let mut ups: BTreeMap<i64, (String, PathBuf)> = BTreeMap::new();
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
            if file_name.to_ascii_lowercase().ends_with(&format!(".{ext}")) {
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
        let (version, name, is_down) =
            parsed.map_err(|why| Error::bad_input(path.display().to_string(), why))?;
        let slot = if is_down { &mut downs } else { &mut ups };
        if let Some((_, other)) = slot.insert(version, (name, path.clone())) {
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
            Some((up_name, _)) if up_name == name => {}
            Some((up_name, up_path)) => {
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
    for (version, (name, up_path)) in ups {
        let down_path = downs.remove(&version).map(|(_, p)| p);
        out.push(MigrationSource {
            version,
            name,
            up_path,
            down_path,
        });
    }
    Ok(out)
}

/// `None`: not a migration file at all (ignored). `Some(Err)`: looks like one but is malformed.
#[allow(clippy::type_complexity)]
fn parse_file_name(
    file_name: &str,
    ext: &str,
) -> Option<std::result::Result<(i64, String, bool), String>> {
    let stem = file_name.strip_suffix(&format!(".{ext}"))?;
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
    let version = match version.parse::<i64>() {
        Ok(v) if v > 0 && v <= i32::MAX as i64 => v,
        _ => {
            return Some(Err(format!(
                "version `{version}` is not a positive 32-bit number: {expected}"
            )))
        }
    };
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Some(Err(format!(
            "migration name `{name}` must be letters, digits and underscores: {expected}"
        )));
    }
    Some(Ok((version, name.to_string(), is_down)))
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
        for bad in ["V1_a.sql", "Vx__a.sql", "V1__a-b.sql", "V0__zero.sql"] {
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
}
