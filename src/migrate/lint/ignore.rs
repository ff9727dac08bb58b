//! Ignore directives: a finding silenced on purpose, with the reason written next to it.
//!
//! SQL: a line `-- dbkeeper:lint-ignore RULE reason` silences the first finding of RULE at or
//! after that line. JSON: a `"$lintIgnore": "RULE reason"` key in a command silences the first
//! finding of RULE on that command (dbkeeper removes the key before running the command). A
//! directive without a reason, naming an unknown rule, or silencing nothing is itself reported.

use serde_json::Value;

use super::{is_known_rule, line_col, mongo::element_starts, Level, RawFinding};

pub const SQL_DIRECTIVE: &str = "-- dbkeeper:lint-ignore";
pub const JSON_KEY: &str = "$lintIgnore";

/// One directive as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub line: usize,
    pub rule: String,
    pub reason: String,
}

pub fn sql_directives(sql: &str) -> Vec<Directive> {
    sql.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let rest = line.trim_start().strip_prefix(SQL_DIRECTIVE)?;
            Some(parse(i + 1, rest))
        })
        .collect()
}

pub fn json_directives(text: &str) -> Vec<Directive> {
    let Ok(Value::Array(commands)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let starts = element_starts(text);
    commands
        .iter()
        .enumerate()
        .filter_map(|(i, command)| {
            let value = command.get(JSON_KEY)?;
            let line = line_col(text, starts.get(i).copied().unwrap_or(0)).0;
            Some(parse(line, value.as_str().unwrap_or("")))
        })
        .collect()
}

fn parse(line: usize, rest: &str) -> Directive {
    let rest = rest.trim();
    let (rule, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    Directive {
        line,
        rule: rule.to_string(),
        reason: reason.trim().to_string(),
    }
}

/// Removes the findings the directives silence; returns the rest (plus problems with the
/// directives themselves) and how many were silenced.
pub fn apply(findings: Vec<RawFinding>, directives: Vec<Directive>) -> (Vec<RawFinding>, usize) {
    let mut silenced = vec![false; findings.len()];
    let mut problems = Vec::new();
    for d in directives {
        let problem = |rule: &str, level, why: String, fix: &str| RawFinding {
            line: d.line,
            column: 1,
            rule: rule.to_string(),
            level,
            why,
            fix: fix.to_string(),
        };
        if !is_known_rule(&d.rule) {
            problems.push(problem(
                "lint-ignore-unknown-rule",
                Level::Error,
                format!("lint-ignore names `{}`, which is not a lint rule", d.rule),
                "use the rule name printed in the finding, e.g. \
                 `-- dbkeeper:lint-ignore ban-drop-column the column is unused since v2.3`",
            ));
            continue;
        }
        if d.reason.is_empty() {
            problems.push(problem(
                "lint-ignore-without-reason",
                Level::Error,
                format!("lint-ignore {} gives no reason", d.rule),
                "say after the rule name why this is safe here, for the next reviewer",
            ));
            continue;
        }
        let target = findings
            .iter()
            .enumerate()
            .find(|(i, f)| !silenced[*i] && f.rule == d.rule && f.line >= d.line);
        match target {
            Some((i, _)) => silenced[i] = true,
            None => problems.push(problem(
                "unused-lint-ignore",
                Level::Warning,
                format!(
                    "lint-ignore {} silences nothing after line {}",
                    d.rule, d.line
                ),
                "remove the directive, or move it above the statement it is meant for",
            )),
        }
    }
    let ignored = silenced.iter().filter(|s| **s).count();
    let mut kept: Vec<RawFinding> = findings
        .into_iter()
        .zip(silenced)
        .filter_map(|(f, s)| (!s).then_some(f))
        .chain(problems)
        .collect();
    kept.sort_by_key(|f| (f.line, f.column));
    (kept, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(line: usize, rule: &str) -> RawFinding {
        RawFinding {
            line,
            column: 1,
            rule: rule.into(),
            level: Level::Error,
            why: String::new(),
            fix: String::new(),
        }
    }

    #[test]
    fn a_directive_silences_one_following_finding_of_its_rule() {
        let sql = "-- dbkeeper:lint-ignore ban-drop-column unused since v2\nALTER TABLE t DROP COLUMN a;\nALTER TABLE t DROP COLUMN b;\n";
        let (kept, ignored) = apply(
            vec![finding(2, "ban-drop-column"), finding(3, "ban-drop-column")],
            sql_directives(sql),
        );
        assert_eq!(ignored, 1);
        assert_eq!(kept, vec![finding(3, "ban-drop-column")]);
    }

    #[test]
    fn bad_directives_are_findings() {
        let sql = "-- dbkeeper:lint-ignore ban-drop-column\n-- dbkeeper:lint-ignore no-such-rule why\n-- dbkeeper:lint-ignore renaming-table nothing to silence\n";
        let (kept, ignored) = apply(vec![finding(4, "ban-drop-column")], sql_directives(sql));
        assert_eq!(ignored, 0);
        let rules: Vec<_> = kept.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(
            rules,
            vec![
                "lint-ignore-without-reason",
                "lint-ignore-unknown-rule",
                "unused-lint-ignore",
                "ban-drop-column"
            ]
        );
    }

    #[test]
    fn json_directive_is_a_key_of_the_command() {
        let text = "[\n {\"create\": \"a\"},\n {\"drop\": \"b\", \"$lintIgnore\": \"ban-drop-collection b was never used\"}\n]";
        let d = json_directives(text);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].rule.as_str()), (3, "ban-drop-collection"));
        assert_eq!(d[0].reason, "b was never used");
    }
}
