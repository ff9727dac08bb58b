//! Verification reports, shared by every engine and by `verify` and `restore`.
//!
//! The levels (docs/architecture.md, "Verification"):
//! - **V0** archive: COMMIT present and matching, every member present once with its size and
//!   SHA-256 ([`crate::archive::reader::VerifiedArchive::check`]);
//! - **V1** decode: every chunk decompresses, records and content digests re-counted
//!   ([`crate::archive::reader::VerifiedArchive::verify_decode`]);
//! - **V2** target: a live database compared with the archive's manifest. Each engine module
//!   (`postgres::verify`, `mongo::verify`) fills one [`TargetCheck`]: exact counts, sequences,
//!   index and validator specs, schema fingerprint; with `deep`, content digests.
//!
//! Every check that runs is counted and every difference becomes a [`Mismatch`]; nothing stops
//! at the first one, so one report says everything that is wrong.

use serde::Serialize;
use serde_json::Value;

use crate::archive::reader::ArchiveProblem;
use crate::error::Engine;

/// A verification level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Level {
    V0,
    V1,
    V2,
}

/// What kind of fact differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The archive's structure or a member's bytes (V0).
    Archive,
    /// A chunk that does not decompress, or records/digests that disagree with the manifest (V1).
    Decode,
    /// A table, collection, sequence or view of the archive is absent from the target.
    Missing,
    /// Exact row or document count.
    Count,
    /// Content digest (`--deep`).
    Content,
    /// A sequence's value.
    Sequence,
    /// An index definition (missing, extra or different).
    Index,
    /// A collection's validator, validation level or action.
    Validator,
    /// A collection's or view's other options.
    Options,
    /// The schema fingerprint (tables, columns, constraints, views, functions, triggers, ...).
    Schema,
    /// A restore into the target started and never finished (killed, crashed): whatever the
    /// other checks say, the target is not a complete copy.
    IncompleteRestore,
}

/// One difference between what the archive says and what was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub level: Level,
    pub kind: Kind,
    /// `null` for archive-level problems.
    pub engine: Option<Engine>,
    /// What differs: a member, `schema.table`, `database.collection`, an index or sequence name.
    pub object: String,
    /// What the archive recorded (`null` when the object is unexpected).
    pub expected: Value,
    /// What was found (`null` when the object is missing).
    pub found: Value,
    /// A sentence saying what is wrong, naming the object.
    pub message: String,
}

impl Mismatch {
    /// A V0 (structure) or V1 (decode) problem of the archive file.
    pub fn archive(level: Level, problem: &ArchiveProblem) -> Mismatch {
        Mismatch {
            level,
            kind: if level == Level::V0 {
                Kind::Archive
            } else {
                Kind::Decode
            },
            engine: None,
            object: problem.object.clone(),
            expected: Value::Null,
            found: Value::Null,
            message: problem.message.clone(),
        }
    }
}

/// V2 against one engine's live database.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub engine: Engine,
    /// `host:port/database`, never a password.
    pub target: String,
    /// Whether content digests were compared.
    pub deep: bool,
    /// Tables or collections compared.
    pub objects: usize,
    /// Individual comparisons made (one per count, sequence, index, option, digest, ...).
    pub checks: u64,
    pub seconds: f64,
    pub mismatches: Vec<Mismatch>,
    /// Differences that are explained and expected (each a sentence naming the object); they
    /// do not fail the check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl TargetCheck {
    pub fn new(engine: Engine, target: String, deep: bool) -> TargetCheck {
        TargetCheck {
            engine,
            target,
            deep,
            objects: 0,
            checks: 0,
            seconds: 0.0,
            mismatches: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Counts one comparison that was made.
    pub fn checked(&mut self) {
        self.checks += 1;
    }

    /// Counts one comparison and records it as a mismatch.
    pub fn mismatch(
        &mut self,
        kind: Kind,
        object: impl Into<String>,
        expected: impl Into<Value>,
        found: impl Into<Value>,
        message: impl Into<String>,
    ) {
        self.checks += 1;
        self.mismatches.push(Mismatch {
            level: Level::V2,
            kind,
            engine: Some(self.engine),
            object: object.into(),
            expected: expected.into(),
            found: found.into(),
            message: message.into(),
        });
    }

    /// Compares one fact; records a mismatch (with `message`) when it differs.
    pub fn compare<T: PartialEq + Into<Value>>(
        &mut self,
        kind: Kind,
        object: impl Into<String>,
        expected: T,
        found: T,
        message: impl FnOnce(&T, &T) -> String,
    ) {
        if expected == found {
            self.checked();
        } else {
            let text = message(&expected, &found);
            self.mismatch(kind, object, expected, found, text);
        }
    }

    /// Sorts mismatches by kind and object, so reports are stable whatever order parallel
    /// checks finished in.
    pub fn sort(&mut self) {
        self.mismatches
            .sort_by(|a, b| (a.kind, &a.object, &a.message).cmp(&(b.kind, &b.object, &b.message)));
    }

    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// What an offline check of the archive (V0, and V1 when V0 passed) found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveFacts {
    pub members: usize,
    pub member_bytes: u64,
    pub datasets: usize,
    pub chunks: usize,
    pub rows: u64,
    pub raw_bytes: u64,
}

/// The whole verification of one archive: offline levels and any targets.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub archive: String,
    /// True only when every check passed.
    pub ok: bool,
    /// The levels that ran, in order.
    pub levels: Vec<Level>,
    /// Whether content digests were compared against targets.
    pub deep: bool,
    /// Comparisons made across all levels.
    pub checks: u64,
    #[serde(flatten)]
    pub facts: ArchiveFacts,
    /// One entry per database compared (V2), without its mismatches (they are in `mismatches`).
    pub targets: Vec<TargetSummary>,
    /// Every mismatch of every level.
    pub mismatches: Vec<Mismatch>,
    /// Every target's warnings (see [`TargetCheck::warnings`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A [`TargetCheck`] without its mismatches, for the report's `targets`.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub engine: Engine,
    pub target: String,
    pub objects: usize,
    pub checks: u64,
    pub mismatches: usize,
    pub seconds: f64,
}

impl VerifyReport {
    pub fn new(archive: String, deep: bool) -> VerifyReport {
        VerifyReport {
            archive,
            ok: true,
            levels: Vec::new(),
            deep,
            checks: 0,
            facts: ArchiveFacts::default(),
            targets: Vec::new(),
            mismatches: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records that `level` ran, with `checks` comparisons and these problems.
    pub fn add_archive_level(&mut self, level: Level, checks: u64, problems: &[ArchiveProblem]) {
        self.levels.push(level);
        self.checks += checks;
        self.mismatches
            .extend(problems.iter().map(|p| Mismatch::archive(level, p)));
        self.ok = self.mismatches.is_empty();
    }

    /// Adds one engine's V2 check.
    pub fn add_target(&mut self, mut check: TargetCheck) {
        if !self.levels.contains(&Level::V2) {
            self.levels.push(Level::V2);
        }
        check.sort();
        self.checks += check.checks;
        self.targets.push(TargetSummary {
            engine: check.engine,
            target: check.target.clone(),
            objects: check.objects,
            checks: check.checks,
            mismatches: check.mismatches.len(),
            seconds: check.seconds,
        });
        self.mismatches.append(&mut check.mismatches);
        self.warnings.append(&mut check.warnings);
        self.ok = self.mismatches.is_empty();
    }
}

/// A JSON value as it reads in a sentence: strings without quotes, `missing` for null.
pub fn show(value: &Value) -> String {
    match value {
        Value::Null => "missing".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mismatch_is_kept_and_counted() {
        let mut check = TargetCheck::new(Engine::Postgres, "h:1/db".into(), false);
        check.compare(Kind::Count, "public.b", 3u64, 3u64, |_, _| unreachable!());
        check.compare(Kind::Count, "public.z", 5u64, 4u64, |e, f| {
            format!("public.z has {f} rows, the archive has {e}")
        });
        check.compare(Kind::Count, "public.a", 1u64, 0u64, |e, f| {
            format!("{e} {f}")
        });
        check.mismatch(
            Kind::Index,
            "public.a_idx",
            "CREATE INDEX ...",
            Value::Null,
            "gone",
        );
        let mut report = VerifyReport::new("x.dbk.tar".into(), false);
        report.add_archive_level(Level::V0, 10, &[]);
        report.add_target(check);
        assert!(!report.ok);
        assert_eq!(report.checks, 14);
        assert_eq!(report.levels, vec![Level::V0, Level::V2]);
        let objects: Vec<&str> = report
            .mismatches
            .iter()
            .map(|m| m.object.as_str())
            .collect();
        assert_eq!(objects, ["public.a", "public.z", "public.a_idx"]);
        assert_eq!(report.targets[0].mismatches, 3);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["mismatches"][1]["kind"], "count");
        assert_eq!(json["mismatches"][1]["expected"], 5);
        assert_eq!(json["mismatches"][2]["found"], Value::Null);
        assert_eq!(json["levels"], serde_json::json!(["V0", "V2"]));
        assert_eq!(show(&json["mismatches"][2]["expected"]), "CREATE INDEX ...");
    }

    #[test]
    fn archive_problems_become_mismatches_naming_the_member() {
        let problem = ArchiveProblem {
            object: "COMMIT".into(),
            message: "no COMMIT member".into(),
        };
        let mut report = VerifyReport::new("x".into(), false);
        report.add_archive_level(Level::V0, 1, &[problem]);
        assert!(!report.ok);
        assert_eq!(report.mismatches[0].kind, Kind::Archive);
        assert_eq!(report.mismatches[0].object, "COMMIT");
        assert_eq!(report.mismatches[0].engine, None);
    }
}
