//! Repeatable migrations, Flyway's `R__{name}.{ext}`: scripts that define objects as a whole
//! (views, functions) and are applied again, after the versioned migrations, whenever their
//! checksum changes, in name order.
//!
//! They have no version, so they are not in refinery's history: an engine keeps the checksum it
//! last applied for each name in a companion table (collection) of its own. `down` does not
//! revert them (Flyway's semantics): a repeatable describes the current definition of an
//! object, not a step that can be undone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The file name prefix that marks a repeatable migration.
pub const PREFIX: &str = "R__";

/// A repeatable migration file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeatable {
    pub name: String,
    /// The script's text, exactly as in the file.
    pub script: String,
    pub path: PathBuf,
    /// SHA-256 (hex) of the script: any change to the file applies it again.
    pub checksum: String,
}

impl Repeatable {
    /// `R__active_users`, as in file names and messages.
    pub fn label(&self) -> String {
        label(&self.name)
    }
}

pub fn label(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// What an engine recorded when it last applied a repeatable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRepeatable {
    pub name: String,
    pub checksum: String,
    pub applied_on: Option<String>,
}

/// Reads every `R__{name}.{ext}` in `dir`, sorted by name. A missing directory has none.
pub fn load(dir: &Path, ext: &str) -> Result<Vec<Repeatable>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let mut by_name = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_file() || !is_repeatable_file_name(file_name, ext) {
            continue;
        }
        let name = parse_name(file_name, ext)
            .map_err(|why| Error::bad_input(path.display().to_string(), why))?;
        let script = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        by_name.insert(
            name.clone(),
            Repeatable {
                checksum: checksum(&script),
                name,
                script,
                path,
            },
        );
    }
    Ok(by_name.into_values().collect())
}

/// Whether `file_name` claims to be a repeatable migration with extension `ext` (it may still
/// be malformed: [`load`] says how).
pub fn is_repeatable_file_name(file_name: &str, ext: &str) -> bool {
    file_name.starts_with(PREFIX) && file_name.ends_with(&format!(".{ext}"))
}

fn parse_name(file_name: &str, ext: &str) -> std::result::Result<String, String> {
    let stem = &file_name[PREFIX.len()..file_name.len() - ext.len() - 1];
    if stem.ends_with(".down") || stem.ends_with(".up") {
        return Err(format!(
            "a repeatable migration has no up/down pair: it is applied again whenever it changes \
             and `migrate down` never reverts it; name it R__{{name}}.{ext}"
        ));
    }
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "repeatable migration name `{stem}` must be letters, digits, `_` and `-`: expected \
             R__{{name}}.{ext}, e.g. R__active_users.{ext}"
        ));
    }
    Ok(stem.to_string())
}

pub fn checksum(script: &str) -> String {
    hex::encode(Sha256::digest(script.as_bytes()))
}

/// The repeatables `up` applies after the versioned migrations: new ones and changed ones, in
/// name order.
pub fn plan<'a>(files: &'a [Repeatable], applied: &[AppliedRepeatable]) -> Vec<&'a Repeatable> {
    files
        .iter()
        .filter(|f| {
            !applied
                .iter()
                .any(|a| a.name == f.name && a.checksum == f.checksum)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatableStatusKind {
    /// Applied with the file's current checksum.
    Applied,
    /// Never applied: the next `up` applies it.
    Pending,
    /// The file changed since it was applied: the next `up` applies it again.
    Changed,
    /// Applied once, its file is gone. What it created stays; nothing will apply it again.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepeatableStatus {
    pub name: String,
    pub status: RepeatableStatusKind,
    pub applied_on: Option<String>,
    pub file_checksum: Option<String>,
    pub recorded_checksum: Option<String>,
}

impl RepeatableStatus {
    pub fn label(&self) -> String {
        label(&self.name)
    }

    /// Whether the next `up` applies it.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.status,
            RepeatableStatusKind::Pending | RepeatableStatusKind::Changed
        )
    }
}

/// One entry per name found in files or history, sorted by name.
pub fn compare(files: &[Repeatable], applied: &[AppliedRepeatable]) -> Vec<RepeatableStatus> {
    let mut by_name: BTreeMap<&str, (Option<&Repeatable>, Option<&AppliedRepeatable>)> =
        BTreeMap::new();
    for f in files {
        by_name.entry(&f.name).or_default().0 = Some(f);
    }
    for a in applied {
        by_name.entry(&a.name).or_default().1 = Some(a);
    }
    by_name
        .into_iter()
        .map(|(name, (file, recorded))| {
            let status = match (file, recorded) {
                (Some(_), None) => RepeatableStatusKind::Pending,
                (Some(f), Some(a)) if f.checksum != a.checksum => RepeatableStatusKind::Changed,
                (Some(_), Some(_)) => RepeatableStatusKind::Applied,
                (None, _) => RepeatableStatusKind::Removed,
            };
            RepeatableStatus {
                name: name.to_string(),
                status,
                applied_on: recorded.and_then(|a| a.applied_on.clone()),
                file_checksum: file.map(|f| f.checksum.clone()),
                recorded_checksum: recorded.map(|a| a.checksum.clone()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn loads_repeatables_in_name_order_beside_versioned_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "R__b_view.sql", "b");
        write(dir.path(), "R__a-func.sql", "a");
        write(dir.path(), "V1__x.sql", "x");
        write(dir.path(), "R__notes.txt", "n");
        let found = load(dir.path(), "sql").unwrap();
        let names: Vec<_> = found.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["a-func", "b_view"]);
        assert_eq!(found[0].checksum, checksum("a"));
        assert_ne!(found[0].checksum, found[1].checksum);
    }

    #[test]
    fn malformed_repeatable_names_are_errors_naming_the_file() {
        for bad in ["R__.sql", "R__a b.sql", "R__v.down.sql"] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), bad, "x");
            let err = load(dir.path(), "sql").unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn plan_and_status_follow_checksums() {
        let file = |name: &str, text: &str| Repeatable {
            name: name.into(),
            script: text.into(),
            path: format!("R__{name}.sql").into(),
            checksum: checksum(text),
        };
        let applied = |name: &str, text: &str| AppliedRepeatable {
            name: name.into(),
            checksum: checksum(text),
            applied_on: None,
        };
        let files = vec![file("a", "1"), file("b", "2"), file("c", "3")];
        let history = vec![applied("a", "1"), applied("b", "old"), applied("gone", "x")];
        let planned: Vec<_> = plan(&files, &history)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(planned, vec!["b", "c"]);
        let status: Vec<_> = compare(&files, &history)
            .into_iter()
            .map(|s| (s.name, s.status))
            .collect();
        assert_eq!(
            status,
            vec![
                ("a".to_string(), RepeatableStatusKind::Applied),
                ("b".to_string(), RepeatableStatusKind::Changed),
                ("c".to_string(), RepeatableStatusKind::Pending),
                ("gone".to_string(), RepeatableStatusKind::Removed),
            ]
        );
    }
}
