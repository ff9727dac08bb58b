//! Comparing migration files with recorded history: the read-only heart of `status`, `validate`
//! and planning.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{AppliedMigration, AppliedState, Migration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// Recorded and its file still has the recorded checksum.
    Applied,
    /// A file not yet applied.
    Pending,
    /// Recorded, but the file's checksum (or name) changed since.
    Divergent,
    /// Recorded, but its file is gone.
    Missing,
    /// Started and not known to have finished.
    Dirty,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEntry {
    pub version: i64,
    pub name: String,
    pub status: StatusKind,
    pub applied_on: Option<String>,
    /// Checksum of the file on disk, when there is one.
    pub file_checksum: Option<String>,
    /// Checksum recorded in history, when applied.
    pub recorded_checksum: Option<String>,
    /// Whether a rollback is possible: a down script was captured (applied) or exists (pending).
    pub has_down: bool,
    pub detail: Option<String>,
}

impl StatusEntry {
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }

    /// Drift is what `validate` fails on: the files no longer describe the database.
    pub fn is_drift(&self) -> bool {
        matches!(
            self.status,
            StatusKind::Divergent | StatusKind::Missing | StatusKind::Dirty
        )
    }
}

/// One entry per version found in files or history, sorted by version.
pub fn compare(files: &[Migration], applied: &[AppliedMigration]) -> Vec<StatusEntry> {
    let mut by_version: BTreeMap<i64, (Option<&Migration>, Option<&AppliedMigration>)> =
        BTreeMap::new();
    for f in files {
        by_version.entry(f.version).or_default().0 = Some(f);
    }
    for a in applied {
        by_version.entry(a.version).or_default().1 = Some(a);
    }
    by_version
        .into_iter()
        .map(|(version, pair)| match pair {
            (Some(f), None) => StatusEntry {
                version,
                name: f.name.clone(),
                status: StatusKind::Pending,
                applied_on: None,
                file_checksum: Some(f.checksum.clone()),
                recorded_checksum: None,
                has_down: f.down.is_some(),
                detail: None,
            },
            (file, Some(a)) => {
                let (status, detail) = if a.state == AppliedState::Dirty {
                    (StatusKind::Dirty, a.dirty_detail.clone())
                } else {
                    match file {
                        None => (StatusKind::Missing, Some("applied, but its file is gone".to_string())),
                        Some(f) if f.checksum != a.checksum => (
                            StatusKind::Divergent,
                            Some(format!(
                                "file checksum {} differs from recorded {}: the file changed after it was applied",
                                f.checksum, a.checksum
                            )),
                        ),
                        Some(f) if f.name != a.name => (
                            StatusKind::Divergent,
                            Some(format!("file is named `{}` but `{}` was applied", f.name, a.name)),
                        ),
                        Some(_) => (StatusKind::Applied, None),
                    }
                };
                StatusEntry {
                    version,
                    name: a.name.clone(),
                    status,
                    applied_on: a.applied_on.clone(),
                    file_checksum: file.map(|f| f.checksum.clone()),
                    recorded_checksum: Some(a.checksum.clone()),
                    has_down: a.down.is_some(),
                    detail,
                }
            }
            (None, None) => unreachable!("every entry came from a file or a history row"),
        })
        .collect()
}
