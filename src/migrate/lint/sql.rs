//! SQL rules: squawk's (the `squawk-linter` crate), with squawk's messages as the "why" and, where
//! dbkeeper runs things differently from a plain psql session, dbkeeper's own advice as the fix.

use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;

use super::{line_col, Level, RawFinding};

/// Lints one SQL migration. `no_transaction`: the file runs outside a transaction (its first
/// line is the no-transaction directive), which changes what squawk may assume.
pub fn lint(sql: &str, no_transaction: bool) -> Vec<RawFinding> {
    let parse = SourceFile::parse(sql);
    // dbkeeper sets the session's lock_timeout from --lock-timeout before it runs anything, so
    // squawk's demand for SET lock_timeout / statement_timeout in every file is met already.
    let mut linter = Linter::with_rules(
        &[],
        &[Rule::RequireLockTimeout, Rule::RequireStatementTimeout],
    );
    // dbkeeper wraps every other migration in a transaction, so squawk can rely on it (a
    // CONCURRENTLY inside one is then an error, and IF NOT EXISTS is not needed for retries).
    linter.settings.assume_in_transaction = !no_transaction;
    linter
        .lint(&parse, sql)
        .into_iter()
        .map(|v| {
            let (line, column) = line_col(sql, usize::from(v.text_range.start()));
            let rule = v.code.to_string();
            RawFinding {
                line,
                column,
                level: level(v.code),
                fix: fix(v.code)
                    .map(str::to_string)
                    .or(v.help)
                    .unwrap_or_else(|| {
                        format!("see https://squawkhq.com/docs/{rule} for the safe way to do this")
                    }),
                why: v.message,
                rule,
            }
        })
        .collect()
}

/// Whether `name` is one of squawk's rule names.
pub fn is_rule(name: &str) -> bool {
    Rule::try_from(name).is_ok()
}

/// Style advice is a warning; anything that locks, rewrites or breaks a running application is
/// an error.
fn level(rule: Rule) -> Level {
    match rule {
        Rule::PreferBigintOverInt
        | Rule::PreferBigintOverSmallint
        | Rule::PreferIdentity
        | Rule::PreferRepack
        | Rule::PreferRobustStmts
        | Rule::PreferTextField
        | Rule::PreferTimestampTz
        | Rule::BanCharField
        | Rule::IdentifierTooLong
        | Rule::UnusedIgnore => Level::Warning,
        _ => Level::Error,
    }
}

/// Advice that depends on how dbkeeper runs a migration, or that squawk leaves out.
fn fix(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::RequireConcurrentIndexCreation => {
            "use CREATE INDEX CONCURRENTLY in its own migration whose first line is \
             `-- dbkeeper:no-transaction` (CONCURRENTLY cannot run inside a transaction)"
        }
        Rule::RequireConcurrentIndexDeletion => {
            "use DROP INDEX CONCURRENTLY in its own migration whose first line is \
             `-- dbkeeper:no-transaction`"
        }
        Rule::BanConcurrentIndexCreationInTransaction => {
            "make the first line `-- dbkeeper:no-transaction`: dbkeeper runs every other \
             migration in one transaction"
        }
        Rule::RenamingColumn | Rule::RenamingTable | Rule::RenamingObject => {
            "expand and contract: add the new name (a column, or a view over the table), deploy \
             code that uses it, and remove the old name in a later migration once no running \
             version reads it"
        }
        Rule::BanDropColumn | Rule::BanDropTable => {
            "first deploy code that no longer uses it, then drop it in a later migration; keep a \
             backup (`migrate up --backup-first`) because the data cannot be rolled back"
        }
        Rule::AddingNotNullableField => {
            "add a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE CONSTRAINT in a later \
             migration, then SET NOT NULL (PostgreSQL 12+ uses the valid constraint and skips the \
             scan)"
        }
        Rule::AddingFieldWithDefault => {
            "add the column without the volatile default (or with a constant one), then backfill \
             in batches"
        }
        Rule::ChangingColumnType => {
            "add a new column of the new type, backfill it in batches, switch the code, then \
             drop the old column in a later migration"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str, no_transaction: bool) -> Vec<String> {
        lint(sql, no_transaction)
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    /// Each rule with a statement that breaks it and the safe statement that does the job.
    const CASES: &[(&str, &str, bool, &str, bool)] = &[
        (
            "require-concurrent-index-creation",
            "CREATE INDEX orders_customer ON orders (customer_id);",
            false,
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer ON orders (customer_id);",
            true,
        ),
        (
            "constraint-missing-not-valid",
            "ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total > 0);",
            false,
            "ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total > 0) NOT VALID;",
            false,
        ),
        (
            "changing-column-type",
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(14,2);",
            false,
            "ALTER TABLE orders ADD COLUMN total_v2 numeric(14,2);",
            false,
        ),
        (
            "adding-not-nullable-field",
            "ALTER TABLE orders ALTER COLUMN total SET NOT NULL;",
            false,
            "ALTER TABLE orders ADD CONSTRAINT total_not_null CHECK (total IS NOT NULL) NOT VALID;",
            false,
        ),
        (
            "adding-required-field",
            "ALTER TABLE orders ADD COLUMN region text NOT NULL;",
            false,
            "ALTER TABLE orders ADD COLUMN region text NOT NULL DEFAULT 'eu';",
            false,
        ),
        (
            "adding-field-with-default",
            "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();",
            false,
            "ALTER TABLE orders ADD COLUMN region text DEFAULT 'eu';",
            false,
        ),
        (
            "renaming-column",
            "ALTER TABLE orders RENAME COLUMN total TO amount;",
            false,
            "ALTER TABLE orders ADD COLUMN amount numeric;",
            false,
        ),
        (
            "renaming-table",
            "ALTER TABLE orders RENAME TO purchases;",
            false,
            "CREATE VIEW purchases AS SELECT * FROM orders;",
            false,
        ),
        (
            "ban-drop-column",
            "ALTER TABLE orders DROP COLUMN note;",
            false,
            "ALTER TABLE orders ADD COLUMN note2 text;",
            false,
        ),
        (
            "ban-drop-table",
            "DROP TABLE orders;",
            false,
            "CREATE TABLE orders_archive (id bigint PRIMARY KEY);",
            false,
        ),
    ];

    #[test]
    fn each_rule_finds_its_statement_and_not_the_safe_one() {
        for (rule, bad, bad_no_tx, good, good_no_tx) in CASES {
            assert!(
                rules(bad, *bad_no_tx).iter().any(|r| r == rule),
                "{rule}: not found in `{bad}`: {:?}",
                rules(bad, *bad_no_tx)
            );
            let found = lint(good, *good_no_tx);
            assert!(
                found.iter().all(|f| f.level != Level::Error),
                "{rule}: the safe `{good}` has errors: {found:?}"
            );
        }
    }

    #[test]
    fn findings_carry_line_why_and_dbkeepers_fix() {
        let sql = "CREATE TABLE t (id bigint PRIMARY KEY);\n\nCREATE INDEX i ON orders (id);\n";
        let found = lint(sql, false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].line, found[0].column), (3, 1));
        assert_eq!(found[0].level, Level::Error);
        assert!(found[0].why.contains("blocked"), "{}", found[0].why);
        assert!(found[0].fix.contains("dbkeeper:no-transaction"));
        // An index on a table created in the same migration locks nobody.
        let sql = "CREATE TABLE t (id bigint PRIMARY KEY);\nCREATE INDEX i ON t (id);\n";
        assert!(lint(sql, false).is_empty());
    }

    #[test]
    fn style_rules_are_warnings() {
        let found = lint("CREATE TABLE t (id int PRIMARY KEY, at timestamp);", false);
        assert!(!found.is_empty());
        assert!(found.iter().all(|f| f.level == Level::Warning), "{found:?}");
    }
}
