//! PostgreSQL text split into statements the way psql splits it, for both readers of SQL text:
//! pg_dump scripts ([`super::script`]) and migration files ([`super::migrate::script`]).
//!
//! [`split`] follows psql's lexer (`psqlscan.l`): a `;` ends a statement only outside quotes,
//! `E''` strings, dollar quotes, nested comments and parentheses (so `CREATE RULE ... DO (a; b)`
//! stays whole), and outside a SQL-standard `BEGIN ATOMIC ... END` routine body; a backslash at
//! the start of a statement is a psql meta-command, which lasts to the end of its line.
//!
//! Why not a real parser: psql is what pg_dump's scripts are written for, so psql's splitting
//! rules are the exact contract, while a parser must accept every statement of every server
//! version to split at all. The candidates did not fit either: `pg_query` (PostgreSQL's own
//! parser) builds libpg_query from C through bindgen, which needs libclang (absent here) and
//! minutes of a 2-core machine per clean build; squawk's pure-Rust `squawk-lexer`/`squawk-parser`
//! 2.72 require Rust 1.99, newer than this crate's toolchain. The lexical helpers below are
//! small, and the splitter is covered by property tests.

pub(crate) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

pub(crate) fn is_ident_byte(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// Whether the `'` at `i` opens an `E'...'` string, in which a backslash escapes: the `E` must
/// be a word of its own, not the end of an identifier (`name'` is not an escape string).
pub(crate) fn opens_escape_string(b: &[u8], i: usize) -> bool {
    i > 0 && matches!(b[i - 1], b'e' | b'E') && (i < 2 || !is_ident_byte(b[i - 2]))
}

/// End (exclusive) of a quoted string or identifier starting at `i`; doubled quotes are escapes.
pub(crate) fn quoted_end(b: &[u8], i: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if backslash_escapes && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            if b.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// End (exclusive) of a `/* ... */` comment starting at `i`; they nest in PostgreSQL.
pub(crate) fn block_comment_end(b: &[u8], i: usize) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
            depth += 1;
            j += 2;
        } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    b.len()
}

/// End (exclusive) of a `$tag$ ... $tag$` string starting at `i`, or `None` when the `$` does not
/// open one (a `$1` parameter).
pub(crate) fn dollar_quote_end(sql: &str, i: usize) -> Option<usize> {
    let b = sql.as_bytes();
    let mut j = i + 1;
    if j < b.len() && is_ident_start(b[j]) {
        while j < b.len() && (is_ident_start(b[j]) || b[j].is_ascii_digit()) {
            j += 1;
        }
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let delimiter = &sql[i..=j];
    Some(
        sql[j + 1..]
            .find(delimiter)
            .map_or(b.len(), |n| j + 1 + n + delimiter.len()),
    )
}

/// Just past the end of the line holding `i` (its `\n` included).
pub(crate) fn line_end(b: &[u8], i: usize) -> usize {
    memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n + 1)
}

/// One statement of a script, as byte offsets: `start..end` holds the comments and blank space
/// before it, then the statement (`body..end`) with its terminating `;` (a meta-command: its line).
/// Consecutive pieces cover the whole text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub start: usize,
    /// First byte that is not blank space or a comment; `end` when the piece holds only those.
    pub body: usize,
    pub end: usize,
    /// A psql meta-command (`\restrict key`), not SQL.
    pub meta_command: bool,
}

/// Splits `sql` into statements as psql does (see the module documentation). Concatenating the
/// pieces gives the text back; a last piece without `;` (or only comments) is kept.
pub(crate) fn split(sql: &str) -> Vec<Piece> {
    let b = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut body: Option<usize> = None;
    let mut paren_depth = 0usize;
    let mut begin_depth = 0usize;
    let mut leading_words: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = line_end(b, i);
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = block_comment_end(b, i);
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if body.is_none() && c == b'\\' {
            let end = line_end(b, i);
            pieces.push(Piece {
                start,
                body: i,
                end,
                meta_command: true,
            });
            (start, i) = (end, end);
            continue;
        }
        body.get_or_insert(i);
        match c {
            b'\'' => i = quoted_end(b, i, b'\'', opens_escape_string(b, i)),
            b'"' => i = quoted_end(b, i, b'"', false),
            b'$' => i = dollar_quote_end(sql, i).unwrap_or(i + 1),
            b'(' => {
                paren_depth += 1;
                i += 1;
            }
            b')' => {
                paren_depth = paren_depth.saturating_sub(1);
                i += 1;
            }
            b';' => {
                i += 1;
                if paren_depth == 0 && begin_depth == 0 {
                    pieces.push(Piece {
                        start,
                        body: body.take().unwrap_or(i),
                        end: i,
                        meta_command: false,
                    });
                    start = i;
                    leading_words.clear();
                }
            }
            c if is_ident_start(c) => {
                let end = ident_end(b, i);
                let word = sql[i..end].to_ascii_uppercase();
                // psql's rule: inside CREATE [OR REPLACE] FUNCTION|PROCEDURE, a SQL-standard
                // body `BEGIN ATOMIC ... END` holds semicolons that do not end the statement.
                if is_routine_definition(&leading_words) && paren_depth == 0 {
                    match word.as_str() {
                        "BEGIN" => begin_depth += 1,
                        "CASE" if begin_depth > 0 => begin_depth += 1,
                        "END" if begin_depth > 0 => begin_depth -= 1,
                        _ => {}
                    }
                }
                if leading_words.len() < 4 {
                    leading_words.push(word);
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        pieces.push(Piece {
            start,
            body: body.unwrap_or(b.len()),
            end: b.len(),
            meta_command: false,
        });
    }
    pieces
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ident_byte(b[i]) {
        i += 1;
    }
    i
}

fn is_routine_definition(words: &[String]) -> bool {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["CREATE", "FUNCTION" | "PROCEDURE", ..]
            | ["CREATE", "OR", "REPLACE", "FUNCTION" | "PROCEDURE", ..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(sql: &str) -> Vec<&str> {
        split(sql)
            .iter()
            .map(|p| &sql[p.body..p.end])
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The statement that broke restores: pg_dump writes a multi-action rule on one statement
    /// whose actions are separated by `;` inside parentheses.
    #[test]
    fn multi_action_rules_are_one_statement() {
        let sql = "CREATE RULE r AS\n    ON DELETE TO public.t DO ( DELETE FROM public.a\n  WHERE (a.id = old.id);\n DELETE FROM public.b\n  WHERE (b.id = old.id);\n);\nSELECT 1;";
        let got = bodies(sql);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].ends_with(");\n);"), "{}", got[0]);
    }

    #[test]
    fn meta_commands_are_their_own_pieces_and_pieces_cover_the_text() {
        let sql = "\\restrict k\n-- c\nSELECT '\\x';\n  \\unrestrict k\n-- tail";
        let pieces = split(sql);
        let text: String = pieces.iter().map(|p| &sql[p.start..p.end]).collect();
        assert_eq!(text, sql);
        let meta: Vec<&str> = pieces
            .iter()
            .filter(|p| p.meta_command)
            .map(|p| sql[p.body..p.end].trim_end())
            .collect();
        assert_eq!(meta, ["\\restrict k", "\\unrestrict k"]);
        assert_eq!(bodies(sql).len(), 3);
        let last = pieces.last().unwrap();
        assert_eq!(
            (last.body, last.end),
            (sql.len(), sql.len()),
            "only a comment"
        );
    }
}
