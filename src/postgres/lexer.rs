//! The pieces of PostgreSQL's lexical rules both SQL splitters need (pg_dump scripts in
//! [`super::script`], migration files in [`super::migrate::script`]): where a comment, a quoted
//! string or identifier, or a dollar-quoted body ends. Each function takes the position of the
//! opening character and returns the position just past the closing one, or the end of the
//! input when it is unterminated.

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
