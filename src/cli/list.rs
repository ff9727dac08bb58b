//! `dbkeeper list` and `dbkeeper prune`: [`ops::list`] and [`ops::prune`], rendered.

use dbkeeper::archive::catalog::ArchiveSummary;
use dbkeeper::config::Settings;
use dbkeeper::error::Result;
use dbkeeper::ops::keys::UnlockKeys;
use dbkeeper::ops::{list as listing, prune};
use dbkeeper::retention::{Decision, Policy};
use dbkeeper::ExitCode;

use super::args::{ListArgs, PruneArgs};
use super::output::{human_bytes, Output};

pub async fn list(args: ListArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let keys = UnlockKeys {
        identity: args.keys.identity,
        passphrase_file: args.keys.passphrase_file,
    };
    let listing::Listing {
        directory: dir,
        archives,
    } = listing::list(args.dir, &keys, settings).await?;
    out.emit(
        &serde_json::json!({ "directory": dir, "archives": archives }),
        || {
            if archives.is_empty() {
                println!("no archives in {dir}");
            }
            for a in &archives {
                println!("{}", describe(a));
            }
        },
    )?;
    Ok(ExitCode::Ok)
}

/// One line per archive: name, time, size, engines, counts, verification.
fn describe(a: &ArchiveSummary) -> String {
    let name = a
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !a.complete {
        return format!(
            "{name}  {}  INCOMPLETE: {}",
            human_bytes(a.size),
            a.problem.as_deref().unwrap_or("unknown problem")
        );
    }
    let when = a
        .created_at
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default();
    let counts: Vec<String> = match (&a.locked, a.encrypted) {
        (Some(why), _) => vec![format!("encrypted ({why})")],
        (None, encrypted) => {
            let mut counts: Vec<String> = a
                .rows
                .iter()
                .map(|(engine, n)| {
                    format!(
                        "{engine} {n} {}",
                        if engine == "mongo" { "docs" } else { "rows" }
                    )
                })
                .collect();
            if encrypted {
                counts.push("encrypted".to_string());
            }
            counts
        }
    };
    let verified = match &a.verified {
        Some(s) => format!(
            "verified ({}, {})",
            s.level,
            s.verified_at.format("%Y-%m-%d %H:%M")
        ),
        None => "not verified".to_string(),
    };
    format!(
        "{name}  {when}  {:>9}  {}  {verified}",
        human_bytes(a.size),
        counts.join(", ")
    )
}

/// The policy from flags, falling back to `[retention]` in the config file.
fn policy_from(args: &PruneArgs, settings: &Settings) -> Policy {
    let flags_given = args.keep_last.is_some()
        || args.keep_daily.is_some()
        || args.keep_weekly.is_some()
        || args.keep_monthly.is_some();
    if flags_given {
        Policy {
            keep_last: args.keep_last,
            keep_daily: args.keep_daily,
            keep_weekly: args.keep_weekly,
            keep_monthly: args.keep_monthly,
        }
    } else {
        Policy::from_config(&settings.retention)
    }
}

pub async fn prune(args: PruneArgs, settings: &Settings, out: Output) -> Result<ExitCode> {
    let policy = policy_from(&args, settings);
    let report = prune::prune(args.dir, &policy, args.dry_run, settings).await?;
    out.emit(&report, || {
        let verb = if report.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        // With archives of several sources in the directory, say which series each belongs to.
        let groups: std::collections::BTreeSet<&str> = report
            .kept
            .iter()
            .chain(&report.deleted)
            .map(|d| d.group.as_str())
            .collect();
        let series = |d: &Decision| {
            if groups.len() > 1 {
                format!("  [{}]", d.group)
            } else {
                String::new()
            }
        };
        for d in &report.kept {
            let reasons: Vec<&str> = d.keep_reasons.iter().map(|r| r.describe()).collect();
            println!("keep    {}  ({}){}", d.id, reasons.join(", "), series(d));
        }
        for d in &report.deleted {
            println!("{verb:<7} {}{}", d.id, series(d));
        }
        for a in &report.ignored {
            println!(
                "ignored {}  (not a complete archive: {})",
                a.path.display(),
                a.problem.as_deref().unwrap_or("?")
            );
        }
        println!(
            "{} kept, {} {verb}",
            report.kept.len(),
            report.deleted.len()
        );
    })?;
    Ok(ExitCode::Ok)
}
