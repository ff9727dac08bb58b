//! Reading SQL migration scripts the way psql reads them: statement by statement.
//!
//! Statements run one at a time, so a failure points at the statement (and, with the server's
//! error position, the character) that failed, and so `-- dbkeeper:no-transaction` files can hold
//! several `CREATE INDEX CONCURRENTLY` statements: PostgreSQL runs a multi-statement query string
//! as one implicit transaction, which CONCURRENTLY refuses. The splitting is the one pg_dump
//! scripts use too ([`lexer::split`], psql's rules). It is pure: it touches no database.

use crate::postgres::lexer;

/// The first-line directive that runs a migration outside a transaction.
pub const NO_TRANSACTION_DIRECTIVE: &str = "-- dbkeeper:no-transaction";

/// Whether the script's first line is [`NO_TRANSACTION_DIRECTIVE`].
pub fn has_no_transaction_directive(sql: &str) -> bool {
    let sql = sql.strip_prefix('\u{feff}').unwrap_or(sql);
    sql.lines().next().map(str::trim) == Some(NO_TRANSACTION_DIRECTIVE)
}

/// One statement of a script: its text (from its first token to its `;`) and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    pub text: &'a str,
    /// Byte offset of `text` in the script.
    pub offset: usize,
}

/// Splits `sql` into statements. Comments and blank space between statements are dropped; a
/// final statement without `;` is kept.
pub fn split_statements(sql: &str) -> Vec<Statement<'_>> {
    lexer::split(sql)
        .into_iter()
        .filter(|p| p.body < p.end)
        .map(|p| Statement {
            text: if p.end == sql.len() {
                sql[p.body..].trim_end()
            } else {
                &sql[p.body..p.end]
            },
            offset: p.body,
        })
        .collect()
}

/// A statement that controls the transaction itself (`BEGIN`, `COMMIT`, `ROLLBACK`, ...). Inside
/// a migration dbkeeper wraps in a transaction it would commit half a migration without its
/// history row, so such files are refused; `ROLLBACK TO SAVEPOINT` is fine.
pub fn controls_transaction(statement: &str) -> bool {
    let words: Vec<String> = statement
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    match words.first().map(String::as_str) {
        Some("BEGIN" | "START" | "COMMIT" | "END" | "ABORT") => true,
        Some("ROLLBACK") => !words.iter().any(|w| w == "TO"),
        _ => false,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The text of 1-based line `line`, without its newline.
pub fn line_text(text: &str, line: usize) -> &str {
    text.lines().nth(line.saturating_sub(1)).unwrap_or("")
}

/// Byte offset in `statement` of PostgreSQL's error position (1-based, counted in characters).
pub fn position_to_offset(statement: &str, position: u32) -> usize {
    let index = (position as usize).saturating_sub(1);
    statement
        .char_indices()
        .nth(index)
        .map_or(statement.len(), |(b, _)| b)
}

/// `file:line:col` followed by the source line and a caret under the column, as compilers and
/// psql show it.
pub fn render_location(origin: &str, script: &str, offset: usize, exact: bool) -> (String, String) {
    let (line, col) = line_col(script, offset);
    let header = if exact {
        format!("{origin}:{line}:{col}")
    } else {
        format!("{origin}:{line}")
    };
    let number = line.to_string();
    let source = line_text(script, line);
    let mut excerpt = format!("{number} | {source}");
    if exact {
        let pad: String = source
            .chars()
            .take(col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        excerpt.push_str(&format!("\n{} | {pad}^", " ".repeat(number.len())));
    }
    (header, excerpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split_statements(sql).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn splits_on_top_level_semicolons_and_drops_comments_between() {
        let sql = "-- header\nCREATE TABLE a (id int);\n\n/* note */ INSERT INTO a VALUES (1);\n-- trailing\n";
        assert_eq!(
            texts(sql),
            vec!["CREATE TABLE a (id int);", "INSERT INTO a VALUES (1);"]
        );
        let second = split_statements(sql)[1];
        assert_eq!(&sql[second.offset..second.offset + 6], "INSERT");
    }

    #[test]
    fn semicolons_inside_quotes_comments_and_dollar_quotes_do_not_split() {
        let sql = "INSERT INTO t VALUES ('a;b', 'it''s;', E'x\\';y', \"we;ird\");\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\n\
                   DO $$ BEGIN PERFORM 1; END $$;\n\
                   SELECT 1 /* a; /* nested; */ still; */ ;\n\
                   SELECT $1::text;";
        let got = texts(sql);
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[1].ends_with("LANGUAGE plpgsql;"));
        assert!(got[3].starts_with("SELECT 1 /*"));
    }

    #[test]
    fn begin_atomic_bodies_stay_in_one_statement() {
        let sql = "CREATE OR REPLACE FUNCTION g(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT x;\nEND;\nSELECT 2;";
        let got = texts(sql);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].ends_with("END;"));
        // A column named like a keyword in a plain table does not confuse the splitter.
        assert_eq!(
            texts("CREATE TABLE t (begin_at int, \"end\" int); SELECT 1;").len(),
            2
        );
    }

    #[test]
    fn unterminated_last_statement_is_kept_trimmed() {
        assert_eq!(
            texts("SELECT 1;\nSELECT 2\n\n"),
            vec!["SELECT 1;", "SELECT 2"]
        );
        assert!(texts("  -- only a comment\n").is_empty());
    }

    #[test]
    fn directive_must_be_the_first_line() {
        assert!(has_no_transaction_directive(
            "-- dbkeeper:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);"
        ));
        assert!(has_no_transaction_directive(
            "\u{feff}-- dbkeeper:no-transaction  \r\nSELECT 1;"
        ));
        assert!(!has_no_transaction_directive(
            "SELECT 1;\n-- dbkeeper:no-transaction\n"
        ));
    }

    #[test]
    fn transaction_control_is_recognised_but_savepoints_are_not() {
        for s in [
            "BEGIN;",
            "begin transaction isolation level serializable;",
            "COMMIT;",
            "END;",
            "ROLLBACK;",
            "START TRANSACTION;",
            "ABORT;",
        ] {
            assert!(controls_transaction(s), "{s}");
        }
        for s in [
            "ROLLBACK TO SAVEPOINT a;",
            "SAVEPOINT a;",
            "CREATE TABLE begin_log ();",
        ] {
            assert!(!controls_transaction(s), "{s}");
        }
    }

    proptest::proptest! {
        /// Whatever hides a semicolon (strings, identifiers, dollar quotes, comments, parentheses)
        /// never splits a statement, and every real terminator does.
        #[test]
        fn statements_round_trip_through_the_splitter(
            statements in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        "x", "'a;b'", "'it''s;'", "E'\\';'", "\"i;d\"", "$$x;y$$", "$t$ $$; $t$",
                        "/* c; /* n; */ */", "-- c;\n", "(1;2)", "$1", "é", "';'",
                    ]),
                    0..6,
                ),
                1..6,
            )
        ) {
            let expected: Vec<String> = statements
                .iter()
                .map(|parts| format!("SELECT {};", parts.join(" ")))
                .collect();
            let script = expected.join("\n");
            let got: Vec<&str> = split_statements(&script).iter().map(|s| s.text).collect();
            proptest::prop_assert_eq!(got, expected.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    #[test]
    fn positions_map_to_lines_and_character_columns() {
        let script = "SELECT 1;\n-- café\nSELECT nope FROM t;";
        let stmt = split_statements(script)[1];
        // PostgreSQL reports "nope" at character 8 of the statement.
        let offset = stmt.offset + position_to_offset(stmt.text, 8);
        assert_eq!(line_col(script, offset), (3, 8));
        let (header, excerpt) = render_location("V2__x.sql", script, offset, true);
        assert_eq!(header, "V2__x.sql:3:8");
        assert_eq!(excerpt, "3 | SELECT nope FROM t;\n  |        ^");
        // Columns count characters, not bytes.
        assert_eq!(line_col("é = 1", "é = ".len()), (1, 5));
    }
}
