//! Deciding what `up` and `down` will run, before anything runs.
//!
//! Planning refuses rather than guesses: dirty state, drift, out-of-order files and rollbacks
//! without a captured down script all stop the run here, with the way forward in the message.

use super::model::{AppliedMigration, AppliedState, Migration};
use super::status::{compare, StatusKind};
use crate::error::{Error, Result};

/// Migrations `up` applies, in order. `to` stops after that version (inclusive).
pub fn plan_up<'a>(
    files: &'a [Migration],
    applied: &[AppliedMigration],
    to: Option<i64>,
) -> Result<Vec<&'a Migration>> {
    refuse_dirty(applied)?;
    let entries = compare(files, applied);
    let drift: Vec<String> = entries
        .iter()
        .filter(|e| matches!(e.status, StatusKind::Divergent | StatusKind::Missing))
        .map(|e| {
            let kind = format!("{:?}", e.status).to_lowercase();
            format!(
                "  {} ({kind}): {}",
                e.label(),
                e.detail.clone().unwrap_or_default()
            )
        })
        .collect();
    if !drift.is_empty() {
        return Err(Error::Refused(format!(
            "migration files no longer match the recorded history:\n{}\nRestore the original files, or \
             if the change is intended run `dbkeeper migrate repair` to record the files as they are now",
            drift.join("\n")
        )));
    }
    if let Some(to) = to {
        if !files.iter().any(|f| f.version == to) && !applied.iter().any(|a| a.version == to) {
            return Err(Error::Usage(format!(
                "--to {to}: no migration has version {to}"
            )));
        }
    }
    let newest_applied = applied.iter().map(|a| a.version).max();
    let mut plan = Vec::new();
    for f in files {
        if applied.iter().any(|a| a.version == f.version) {
            continue;
        }
        if let Some(newest) = newest_applied {
            if f.version < newest {
                return Err(Error::Refused(format!(
                    "{} is pending but V{newest} is already applied; migrations apply in version order. \
                     Give the file a version above {newest} (`dbkeeper migrate new` picks the next one)",
                    f.label()
                )));
            }
        }
        if to.is_some_and(|to| f.version > to) {
            break;
        }
        plan.push(f);
    }
    Ok(plan)
}

/// Migrations `down` reverts, newest first. With neither `steps` nor `to`, one step.
/// `to` keeps that version applied and reverts everything above it.
pub fn plan_down(
    applied: &[AppliedMigration],
    steps: Option<usize>,
    to: Option<i64>,
) -> Result<Vec<&AppliedMigration>> {
    if steps.is_some() && to.is_some() {
        return Err(Error::Usage(
            "--steps and --to cannot be combined; pick one".into(),
        ));
    }
    refuse_dirty(applied)?;
    let mut newest_first: Vec<&AppliedMigration> = applied.iter().collect();
    newest_first.sort_by_key(|a| std::cmp::Reverse(a.version));
    let plan: Vec<&AppliedMigration> = match (steps, to) {
        (_, Some(to)) => {
            if to != 0 && !applied.iter().any(|a| a.version == to) {
                return Err(Error::Usage(format!(
                    "--to {to}: version {to} is not applied (use --to 0 to revert everything)"
                )));
            }
            newest_first
                .into_iter()
                .take_while(|a| a.version > to)
                .collect()
        }
        (steps, None) => newest_first.into_iter().take(steps.unwrap_or(1)).collect(),
    };
    let no_down: Vec<String> = plan
        .iter()
        .filter(|a| a.down.is_none())
        .map(|a| a.label())
        .collect();
    if !no_down.is_empty() {
        return Err(Error::Refused(format!(
            "cannot roll back {}: no down script was recorded when {} applied, and no .down file for the \
             unchanged up file exists now. Nothing was run. Add the .down file, or revert by hand and \
             remove the history row, or restore a backup",
            no_down.join(", "),
            if no_down.len() == 1 { "it was" } else { "they were" }
        )));
    }
    Ok(plan)
}

fn refuse_dirty(applied: &[AppliedMigration]) -> Result<()> {
    if let Some(dirty) = applied.iter().find(|a| a.state == AppliedState::Dirty) {
        return Err(Error::Refused(format!(
            "{} is dirty: it started but did not finish{}. Check the database by hand, then run \
             `dbkeeper migrate repair --dirty applied` (it did finish) or `--dirty rolled-back` (you undid it)",
            dirty.label(),
            dirty.dirty_detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;

    fn file(version: i64, checksum: &str, down: bool) -> Migration {
        Migration {
            version,
            name: format!("m{version}"),
            up: String::new(),
            up_path: format!("V{version}__m{version}.sql").into(),
            down: down.then(String::new),
            down_path: None,
            checksum: checksum.into(),
            no_transaction: false,
        }
    }

    fn applied(version: i64, checksum: &str, down: bool) -> AppliedMigration {
        AppliedMigration {
            version,
            name: format!("m{version}"),
            checksum: checksum.into(),
            applied_on: None,
            state: AppliedState::Applied,
            down: down.then(String::new),
            dirty_detail: None,
        }
    }

    #[test]
    fn up_applies_pending_in_order_up_to_target() {
        let files = vec![file(1, "a", true), file(2, "b", true), file(3, "c", true)];
        let history = vec![applied(1, "a", true)];
        let plan: Vec<i64> = plan_up(&files, &history, None)
            .unwrap()
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(plan, vec![2, 3]);
        let plan: Vec<i64> = plan_up(&files, &history, Some(2))
            .unwrap()
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(plan, vec![2]);
        assert_eq!(
            plan_up(&files, &history, Some(9)).unwrap_err().exit_code(),
            ExitCode::Usage
        );
    }

    #[test]
    fn up_refuses_drift_dirty_and_out_of_order() {
        let files = vec![file(1, "changed", true), file(2, "b", true)];
        let err = plan_up(&files, &[applied(1, "a", true)], None).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Refused);
        assert!(err.to_string().contains("V1__m1"), "{err}");

        let err = plan_up(&[file(2, "b", true)], &[applied(1, "a", true)], None).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");

        let mut dirty = applied(1, "a", true);
        dirty.state = AppliedState::Dirty;
        let err = plan_up(&[file(1, "a", true)], &[dirty], None).unwrap_err();
        assert!(err.to_string().contains("repair"), "{err}");

        let files = vec![file(1, "a", true), file(2, "b", true), file(3, "c", true)];
        let err = plan_up(
            &files,
            &[applied(1, "a", true), applied(3, "c", true)],
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("V2__m2 is pending but V3"),
            "{err}"
        );
    }

    #[test]
    fn down_reverts_newest_first_and_needs_down_scripts() {
        let history = vec![
            applied(1, "a", true),
            applied(2, "b", true),
            applied(3, "c", true),
        ];
        let plan: Vec<i64> = plan_down(&history, None, None)
            .unwrap()
            .iter()
            .map(|a| a.version)
            .collect();
        assert_eq!(plan, vec![3]);
        let plan: Vec<i64> = plan_down(&history, Some(2), None)
            .unwrap()
            .iter()
            .map(|a| a.version)
            .collect();
        assert_eq!(plan, vec![3, 2]);
        let plan: Vec<i64> = plan_down(&history, None, Some(1))
            .unwrap()
            .iter()
            .map(|a| a.version)
            .collect();
        assert_eq!(plan, vec![3, 2]);
        let plan: Vec<i64> = plan_down(&history, None, Some(0))
            .unwrap()
            .iter()
            .map(|a| a.version)
            .collect();
        assert_eq!(plan, vec![3, 2, 1]);

        let history = vec![applied(1, "a", false), applied(2, "b", true)];
        let err = plan_down(&history, Some(2), None).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Refused);
        assert!(err.to_string().contains("V1__m1"), "{err}");
        assert!(plan_down(&history, Some(1), None).is_ok());
        assert_eq!(
            plan_down(&history, Some(1), Some(1))
                .unwrap_err()
                .exit_code(),
            ExitCode::Usage
        );
    }
}
