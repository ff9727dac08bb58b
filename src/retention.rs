//! Retention: which archives a `prune` keeps, and why. Pure; the caller lists and deletes files.
//!
//! The policy works like restic's `forget`: archives are taken newest first; `keep_last` keeps the
//! N newest; `keep_daily`/`keep_weekly`/`keep_monthly` keep the newest archive of each of the N
//! most recent days / ISO weeks / months that have one. On top of the policy, the newest archive
//! that passed verification is always kept, so a prune can never leave only unproven backups.
//!
//! Archives of different sources (the databases they were taken from) in one directory are
//! separate series, as restic groups snapshots by host and paths: the policy is applied to each
//! group on its own, so a busy database's nightly backups never push out the only archive of a
//! quiet one.

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

/// How many archives of each kind to keep. `None` or 0 means "this rule keeps nothing".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
}

impl Policy {
    /// The `[retention]` section of `dbkeeper.toml`.
    pub fn from_config(section: &crate::config::RetentionSection) -> Policy {
        Policy {
            keep_last: section.keep_last,
            keep_daily: section.keep_daily,
            keep_weekly: section.keep_weekly,
            keep_monthly: section.keep_monthly,
        }
    }

    /// A policy that keeps nothing would delete every archive; that is never what was meant.
    pub fn validate(&self) -> Result<()> {
        let total = [
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
        ]
        .iter()
        .map(|n| n.unwrap_or(0))
        .sum::<usize>();
        if total == 0 {
            return Err(Error::Usage(
                "no retention policy: pass at least one of --keep-last, --keep-daily, --keep-weekly, \
                 --keep-monthly (or set [retention] in dbkeeper.toml)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What retention needs to know about one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// The series the archive belongs to (its sources); the policy applies per group.
    pub group: String,
    pub created_at: DateTime<Utc>,
    /// Whether the archive passed verification (offline or after a restore).
    pub verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Last,
    Daily,
    Weekly,
    Monthly,
    NewestVerified,
}

impl Reason {
    /// Why an archive is kept, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Last => "one of the last N",
            Reason::Daily => "newest of its day",
            Reason::Weekly => "newest of its week",
            Reason::Monthly => "newest of its month",
            Reason::NewestVerified => "newest verified archive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub group: String,
    pub created_at: DateTime<Utc>,
    /// Empty when the archive is to be deleted.
    pub keep_reasons: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.keep_reasons.is_empty()
    }
}

/// Applies `policy` to each group of `candidates`; returns one decision per candidate, newest
/// first.
pub fn decide(policy: &Policy, candidates: &[Candidate]) -> Vec<Decision> {
    let mut groups: std::collections::BTreeMap<&str, Vec<&Candidate>> = Default::default();
    for c in candidates {
        groups.entry(c.group.as_str()).or_default().push(c);
    }
    let mut decisions: Vec<Decision> = groups
        .into_values()
        .flat_map(|group| decide_group(policy, group))
        .collect();
    decisions.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    decisions
}

/// The policy applied to one series.
fn decide_group(policy: &Policy, mut sorted: Vec<&Candidate>) -> Vec<Decision> {
    sorted.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });

    let mut decisions: Vec<Decision> = sorted
        .iter()
        .map(|c| Decision {
            id: c.id.clone(),
            group: c.group.clone(),
            created_at: c.created_at,
            keep_reasons: Vec::new(),
        })
        .collect();

    let n = policy.keep_last.unwrap_or(0);
    for d in decisions.iter_mut().take(n) {
        d.keep_reasons.push(Reason::Last);
    }
    keep_newest_per_bucket(&mut decisions, policy.keep_daily, Reason::Daily, |t| {
        (t.year(), t.ordinal(), 0)
    });
    keep_newest_per_bucket(&mut decisions, policy.keep_weekly, Reason::Weekly, |t| {
        let w = t.iso_week();
        (w.year(), w.week(), 0)
    });
    keep_newest_per_bucket(&mut decisions, policy.keep_monthly, Reason::Monthly, |t| {
        (t.year(), t.month(), 0)
    });

    if let Some(i) = sorted.iter().position(|c| c.verified) {
        decisions[i].keep_reasons.push(Reason::NewestVerified);
    }
    decisions
}

/// Decisions are newest first, so the first archive seen in a bucket is its newest.
fn keep_newest_per_bucket(
    decisions: &mut [Decision],
    count: Option<usize>,
    reason: Reason,
    bucket: impl Fn(&DateTime<Utc>) -> (i32, u32, u32),
) {
    let count = count.unwrap_or(0);
    let mut seen = 0;
    let mut last_bucket = None;
    for d in decisions.iter_mut() {
        if seen == count {
            break;
        }
        let b = bucket(&d.created_at);
        if last_bucket != Some(b) {
            last_bucket = Some(b);
            seen += 1;
            d.keep_reasons.push(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn cand(id: &str, t: DateTime<Utc>, verified: bool) -> Candidate {
        Candidate {
            id: id.into(),
            group: "postgres app".into(),
            created_at: t,
            verified,
        }
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.id.clone())
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let c = vec![
            cand("a", at(2026, 1, 1, 0), true),
            cand("b", at(2026, 1, 2, 0), true),
            cand("c", at(2026, 1, 3, 0), true),
        ];
        let p = Policy {
            keep_last: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &c)), vec!["c", "b"]);
    }

    #[test]
    fn each_source_is_its_own_series() {
        let quiet = Candidate {
            group: "postgres db2:5432/reports".into(),
            ..cand("quiet", at(2026, 1, 1, 0), false)
        };
        let c = vec![
            quiet,
            cand("busy-1", at(2026, 1, 2, 0), false),
            cand("busy-2", at(2026, 1, 3, 0), true),
        ];
        let p = Policy {
            keep_last: Some(1),
            ..Default::default()
        };
        let decisions = decide(&p, &c);
        assert_eq!(kept(&decisions), vec!["busy-2", "quiet"]);
        assert_eq!(
            decisions.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["busy-2", "busy-1", "quiet"],
            "decisions stay newest first across groups"
        );
    }

    #[test]
    fn daily_keeps_newest_of_each_day() {
        let c = vec![
            cand("d1-early", at(2026, 3, 1, 1), true),
            cand("d1-late", at(2026, 3, 1, 23), true),
            cand("d2-early", at(2026, 3, 2, 1), true),
            cand("d2-late", at(2026, 3, 2, 22), true),
            cand("d3", at(2026, 3, 3, 5), true),
        ];
        let p = Policy {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &c)), vec!["d3", "d2-late"]);
    }

    #[test]
    fn weekly_and_monthly_use_iso_weeks_and_calendar_months() {
        // 2026-03-01 is a Sunday (ISO week 9); 2026-03-02 a Monday (week 10).
        let c = vec![
            cand("feb", at(2026, 2, 20, 0), true),
            cand("sun", at(2026, 3, 1, 0), true),
            cand("mon", at(2026, 3, 2, 0), true),
        ];
        let weekly = Policy {
            keep_weekly: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&weekly, &c)), vec!["mon", "sun"]);
        let monthly = Policy {
            keep_monthly: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&monthly, &c)), vec!["mon", "feb"]);
    }

    #[test]
    fn newest_verified_survives_any_policy() {
        let c = vec![
            cand("old-verified", at(2026, 1, 1, 0), true),
            cand("new-unverified", at(2026, 1, 2, 0), false),
        ];
        let p = Policy {
            keep_last: Some(1),
            ..Default::default()
        };
        let d = decide(&p, &c);
        assert_eq!(kept(&d), vec!["new-unverified", "old-verified"]);
        assert_eq!(d[1].keep_reasons, vec![Reason::NewestVerified]);
    }

    #[test]
    fn empty_policy_is_refused() {
        assert!(Policy::default().validate().is_err());
        assert!(Policy {
            keep_daily: Some(0),
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    proptest! {
        #[test]
        fn policy_invariants(
            offsets in proptest::collection::vec((0i64..2000, any::<bool>()), 0..60),
            last in 0usize..5, daily in 0usize..5, weekly in 0usize..5, monthly in 0usize..5,
        ) {
            let base = at(2026, 1, 1, 0);
            let c: Vec<Candidate> = offsets.iter().enumerate()
                .map(|(i, (h, v))| cand(&format!("a{i}"), base + Duration::hours(*h * 7), *v))
                .collect();
            let p = Policy { keep_last: Some(last), keep_daily: Some(daily), keep_weekly: Some(weekly), keep_monthly: Some(monthly) };
            let d = decide(&p, &c);
            prop_assert_eq!(d.len(), c.len());
            // Sorted newest first.
            prop_assert!(d.windows(2).all(|w| w[0].created_at >= w[1].created_at));
            // keep_last keeps exactly the newest min(last, n).
            prop_assert_eq!(d.iter().filter(|x| x.keep_reasons.contains(&Reason::Last)).count(), last.min(c.len()));
            // Never more daily keeps than asked, never two in one day.
            let days: Vec<_> = d.iter().filter(|x| x.keep_reasons.contains(&Reason::Daily)).map(|x| x.created_at.date_naive()).collect();
            prop_assert!(days.len() <= daily);
            let mut uniq = days.clone(); uniq.dedup();
            prop_assert_eq!(uniq.len(), days.len());
            // The newest verified archive is always kept.
            if let Some(newest_verified) = d.iter().find(|x| c.iter().any(|y| y.id == x.id && y.verified)) {
                prop_assert!(newest_verified.keep());
            }
            // The newest archive of all is kept whenever any rule keeps something.
            if !c.is_empty() && last + daily + weekly + monthly > 0 {
                prop_assert!(d[0].keep());
            }
        }
    }
}
