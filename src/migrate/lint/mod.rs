//! `migrate lint`: finds migrations that would block or break a production database, before
//! they run.
//!
//! SQL is checked with squawk's rules (the `squawk-linter` crate, under squawk's own kebab-case
//! rule names); MongoDB command files with the equivalents that exist for documents
//! ([`mongo`]). Only up scripts are linted: a down script exists to drop what its up created.
//! A `-- dbkeeper:lint-ignore RULE reason` line (in JSON: a `"$lintIgnore": "RULE reason"` key in
//! the command) silences one finding on purpose ([`ignore`]).

pub mod ignore;
pub mod mongo;
pub mod sql;

use std::path::PathBuf;

use serde::Serialize;

use super::model::Migration;
use super::repeatable::Repeatable;
use crate::error::Engine;

/// How serious a finding is. Errors make `migrate lint` exit 1 and, with
/// `[migrate] lint = "error"`, make `migrate up` refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Error,
}

/// One problem in one migration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: PathBuf,
    /// 1-based line (and column) where the statement or command at fault starts.
    pub line: usize,
    pub column: usize,
    /// Kebab-case rule name (squawk's for SQL rules it provides).
    pub rule: String,
    pub level: Level,
    /// Why this is dangerous on a live database.
    pub why: String,
    /// What to write instead.
    pub fix: String,
}

impl Finding {
    /// `file:line:col: error[rule]: why`, then the fix, as printed on a terminal.
    pub fn render(&self) -> String {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        format!(
            "{}:{}:{}: {level}[{}]: {}\n    fix: {}",
            self.file.display(),
            self.line,
            self.column,
            self.rule,
            self.why,
            self.fix
        )
    }
}

/// What linting a set of migrations found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LintReport {
    /// Migration files linted (up scripts).
    pub files: usize,
    pub findings: Vec<Finding>,
    /// Findings silenced by an ignore directive.
    pub ignored: usize,
}

impl LintReport {
    pub fn errors(&self) -> usize {
        self.count(Level::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Level::Warning)
    }

    fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }
}

/// Lints the up scripts of `migrations` with `engine`'s rules.
pub fn lint(engine: Engine, migrations: &[&Migration]) -> LintReport {
    let mut report = LintReport::default();
    for m in migrations {
        report.add(engine, &m.up, m.no_transaction, &m.up_path);
    }
    report
}

/// Lints `repeatables` too (they run in a transaction, like a versioned migration without
/// the no-transaction directive).
pub fn lint_repeatables(report: &mut LintReport, engine: Engine, repeatables: &[&Repeatable]) {
    for r in repeatables {
        report.add(engine, &r.script, false, &r.path);
    }
}

impl LintReport {
    fn add(&mut self, engine: Engine, script: &str, no_transaction: bool, path: &std::path::Path) {
        let raw = match engine {
            Engine::Postgres => sql::lint(script, no_transaction),
            Engine::Mongo => mongo::lint(script),
        };
        let directives = match engine {
            Engine::Postgres => ignore::sql_directives(script),
            Engine::Mongo => ignore::json_directives(script),
        };
        let (kept, ignored) = ignore::apply(raw, directives);
        self.files += 1;
        self.ignored += ignored;
        self.findings
            .extend(kept.into_iter().map(|raw| raw.in_file(path.to_path_buf())));
    }
}

/// A finding before it is tied to a file: rules work on text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFinding {
    pub line: usize,
    pub column: usize,
    pub rule: String,
    pub level: Level,
    pub why: String,
    pub fix: String,
}

impl RawFinding {
    fn in_file(self, file: PathBuf) -> Finding {
        Finding {
            file,
            line: self.line,
            column: self.column,
            rule: self.rule,
            level: self.level,
            why: self.why,
            fix: self.fix,
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Every rule name a directive may name: squawk's and the MongoDB ones.
pub fn is_known_rule(name: &str) -> bool {
    sql::is_rule(name) || mongo::RULES.contains(&name)
}
