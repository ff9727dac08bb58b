//! Reading pg_dump's plain SQL scripts: splitting them into statements (respecting strings,
//! quoted identifiers, dollar quoting, comments and psql meta-commands) so that ownership and
//! privilege statements can be left out when restoring into another environment.
//!
//! The archive keeps the schema exactly as pg_dump wrote it; what a restore skips is decided at
//! restore time (`--keep-owner`, `--keep-privileges`) and reported as counts.

/// What [`filter`] kept and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    pub sql: String,
    /// `ALTER ... OWNER TO ...` statements left out.
    pub skipped_owner: usize,
    /// `GRANT`, `REVOKE` and `ALTER DEFAULT PRIVILEGES` statements left out.
    pub skipped_privileges: usize,
}

/// Removes ownership and/or privilege statements from a pg_dump script.
pub fn filter(script: &str, keep_owner: bool, keep_privileges: bool) -> Filtered {
    let mut out = Filtered {
        sql: String::with_capacity(script.len()),
        ..Filtered::default()
    };
    for statement in split(script) {
        let head = strip_leading_comments(statement);
        if !keep_owner && is_owner_statement(head) {
            out.skipped_owner += 1;
        } else if !keep_privileges && is_privilege_statement(head) {
            out.skipped_privileges += 1;
        } else {
            out.sql.push_str(statement);
        }
    }
    out
}

/// One statement of a pg_dump script with the kind of the archive entry it belongs to (the
/// `Type:` of the `-- Name: ...; Type: INDEX; ...` header pg_dump writes before each entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    /// `None` for the preamble (`SET ...`) before the first entry.
    pub kind: Option<&'a str>,
    pub sql: &'a str,
}

/// The SQL statements of a script with their entry kinds; psql meta-commands (`\restrict`) and
/// comment-only pieces are left out, since they mean nothing to a plain SQL connection.
pub fn statements(script: &str) -> Vec<Statement<'_>> {
    let mut kind = None;
    let mut out = Vec::new();
    for piece in split(script) {
        for line in piece.lines() {
            let line = line.trim_start();
            if line.is_empty() {
                continue;
            }
            if !line.starts_with("--") {
                break;
            }
            if let Some(rest) = line.strip_prefix("-- Name: ") {
                if let Some((_, after)) = rest.split_once("; Type: ") {
                    kind = after.split(';').next();
                }
            }
        }
        let head = strip_leading_comments(piece);
        if head.is_empty() || head.starts_with('\\') {
            continue;
        }
        out.push(Statement { kind, sql: piece });
    }
    out
}

/// The table a post-data index or key statement builds on, as pg_dump writes them:
/// `CREATE [UNIQUE] INDEX name ON [ONLY] schema.table ...` or
/// `ALTER TABLE [ONLY] schema.table ADD CONSTRAINT ...`. `None` for anything else, or a name
/// that is not schema-qualified; the caller then waits for all data before running it.
pub fn statement_table(statement: &str) -> Option<(String, String)> {
    let mut words = Words(strip_leading_comments(statement));
    let first = words.next()?;
    let is = |w: &Word, k: &str| matches!(w, Word::Plain(p) if p.eq_ignore_ascii_case(k));
    let mut next = words.next()?;
    if is(&first, "CREATE") {
        if is(&next, "UNIQUE") {
            next = words.next()?;
        }
        if !is(&next, "INDEX") {
            return None;
        }
        words.next()?; // the index name
        if !is(&words.next()?, "ON") {
            return None;
        }
    } else if is(&first, "ALTER") {
        if !is(&next, "TABLE") {
            return None;
        }
    } else {
        return None;
    }
    let mut schema = words.next()?;
    if is(&schema, "ONLY") {
        schema = words.next()?;
    }
    if words.next()? != Word::Dot {
        return None;
    }
    let table = words.next()?;
    let name = |w: Word| match w {
        Word::Plain(p) => Some(p.to_string()),
        Word::Quoted(q) => Some(q),
        Word::Dot | Word::Other => None,
    };
    Some((name(schema)?, name(table)?))
}

#[derive(Debug, PartialEq, Eq)]
enum Word<'a> {
    /// An unquoted word (pg_dump writes unquoted identifiers only when they are lower case).
    Plain(&'a str),
    /// A `"quoted identifier"`, unescaped.
    Quoted(String),
    Dot,
    Other,
}

/// The words of the head of a statement, enough to read the names in it.
struct Words<'a>(&'a str);

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        let s = self.0.trim_start();
        let first = s.chars().next()?;
        let plain = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
        let (word, rest) = if first == '"' {
            let end = skip_quoted_identifier(s.as_bytes(), 0);
            let inner = s.get(1..end.saturating_sub(1)).unwrap_or("");
            (Word::Quoted(inner.replace("\"\"", "\"")), &s[end..])
        } else if first == '.' {
            (Word::Dot, &s[1..])
        } else if plain(first) {
            let end = s.find(|c: char| !plain(c)).unwrap_or(s.len());
            (Word::Plain(&s[..end]), &s[end..])
        } else {
            (Word::Other, &s[first.len_utf8()..])
        };
        self.0 = rest;
        Some(word)
    }
}

/// Splits a script into statements, each with its leading whitespace/comments and its
/// terminating `;` (a psql meta-command is one line). Concatenating the pieces gives the
/// script back.
pub fn split(script: &str) -> Vec<&str> {
    let bytes = script.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Whether only whitespace and comments were seen since the statement started: a backslash
    // there starts a psql meta-command.
    let mut blank = true;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = find_from(bytes, i, b"\n").map_or(bytes.len(), |p| p + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i);
                continue;
            }
            b'\\' if blank => {
                i = find_from(bytes, i, b"\n").map_or(bytes.len(), |p| p + 1);
                pieces.push(&script[start..i]);
                start = i;
                continue;
            }
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'E' | b'e');
                i = skip_string(bytes, i, escapes);
            }
            b'"' => i = skip_quoted_identifier(bytes, i),
            b'$' => i = skip_dollar_quote(bytes, i),
            b';' => {
                i += 1;
                pieces.push(&script[start..i]);
                start = i;
                blank = true;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => i += 1,
        }
        blank = false;
    }
    if start < bytes.len() {
        pieces.push(&script[start..]);
    }
    pieces
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Past a `/* ... */` comment, which nests in PostgreSQL.
fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Past a `'...'` literal (`''` doubles a quote; in `E'...'` a backslash escapes).
fn skip_string(bytes: &[u8], mut i: usize, escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn skip_quoted_identifier(bytes: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            if bytes.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    i
}

/// Past a `$tag$ ... $tag$` body; a lone `$` (as in `$1`) is just a character.
fn skip_dollar_quote(bytes: &[u8], i: usize) -> usize {
    let tag_end = bytes[i + 1..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80))
        .map(|p| p + i + 1);
    match tag_end {
        Some(end) if bytes[end] == b'$' && !bytes[i + 1].is_ascii_digit() => {
            let tag = &bytes[i..=end];
            match find_from(bytes, end + 1, tag) {
                Some(close) => close + tag.len(),
                None => bytes.len(),
            }
        }
        _ => i + 1,
    }
}

/// The statement without leading whitespace and `--` comments.
fn strip_leading_comments(statement: &str) -> &str {
    let mut s = statement.trim_start();
    while let Some(rest) = s.strip_prefix("--") {
        s = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
    }
    s
}

/// `ALTER <kind> <name> OWNER TO <role>;` as pg_dump writes it: one line, ending in a role name.
fn is_owner_statement(s: &str) -> bool {
    let Some(body) = s.strip_suffix(';').map(str::trim_end) else {
        return false;
    };
    if !body.starts_with("ALTER ") || body.contains('\n') {
        return false;
    }
    match body.rsplit_once(" OWNER TO ") {
        Some((_, role)) => is_role_name(role),
        None => false,
    }
}

fn is_role_name(role: &str) -> bool {
    if let Some(inner) = role.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return !inner.is_empty() && !inner.replace("\"\"", "").contains('"');
    }
    !role.is_empty()
        && role
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

fn is_privilege_statement(s: &str) -> bool {
    s.starts_with("GRANT ")
        || s.starts_with("REVOKE ")
        || s.starts_with("ALTER DEFAULT PRIVILEGES ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"\restrict abc
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: app
--

CREATE FUNCTION public.f() RETURNS text
    LANGUAGE plpgsql
    AS $_$
BEGIN
  -- ; not the end
  RETURN 'GRANT x; ALTER TABLE t OWNER TO y;';
END $_$;


ALTER FUNCTION public.f() OWNER TO app;

CREATE TABLE public."we;ird" (
    note text DEFAULT E'it\'s; fine' /* ; */
);

ALTER TABLE public."we;ird" OWNER TO "Odd ""Role""";
GRANT SELECT ON TABLE public."we;ird" TO PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE app GRANT SELECT ON TABLES TO reader;
ALTER TABLE ONLY public.t
    ADD CONSTRAINT c CHECK ((note <> ' OWNER TO y'));
\unrestrict abc
"#;

    #[test]
    fn split_round_trips_and_respects_quoting() {
        let pieces = split(SCRIPT);
        assert_eq!(pieces.concat(), SCRIPT);
        let function = pieces
            .iter()
            .find(|p| p.contains("CREATE FUNCTION"))
            .unwrap();
        assert!(function.trim_end().ends_with("END $_$;"), "{function}");
        assert!(pieces.iter().any(|p| p.trim() == "\\restrict abc"));
        assert!(pieces.iter().any(|p| p.trim() == "\\unrestrict abc"));
    }

    #[test]
    fn statements_carry_their_entry_kind() {
        let script = "\\restrict k\nSET x = 1;\n\n--\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: a\n--\n\nALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (a);\n\n--\n-- Name: i; Type: INDEX; Schema: public; Owner: a\n--\n\nCREATE INDEX i ON public.t USING btree (a);\n\n-- Name: t fk; Type: FK CONSTRAINT; Schema: public; Owner: a\nALTER TABLE x ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES t(a);\n\\unrestrict k\n";
        let kinds: Vec<Option<&str>> = statements(script).iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                None,
                Some("CONSTRAINT"),
                Some("INDEX"),
                Some("FK CONSTRAINT")
            ]
        );
    }

    #[test]
    fn statement_table_reads_index_and_key_targets() {
        let t = |schema: &str, table: &str| Some((schema.to_string(), table.to_string()));
        assert_eq!(
            statement_table("\n-- c\nCREATE INDEX i ON public.t USING btree (a);"),
            t("public", "t")
        );
        assert_eq!(
            statement_table(
                "CREATE UNIQUE INDEX \"Odd\" ON ONLY \"My \"\"S\"\"\".\"T.b\" USING btree (a);"
            ),
            t("My \"S\"", "T.b")
        );
        assert_eq!(
            statement_table(
                "ALTER TABLE ONLY public.orders\n    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);"
            ),
            t("public", "orders")
        );
        assert_eq!(
            statement_table("ALTER TABLE s.t ADD CONSTRAINT u UNIQUE (a);"),
            t("s", "t")
        );
        assert_eq!(
            statement_table("ALTER INDEX public.i ATTACH PARTITION public.j;"),
            None
        );
        assert_eq!(
            statement_table("CREATE INDEX i ON t USING btree (a);"),
            None
        );
        assert_eq!(
            statement_table("CREATE TRIGGER x AFTER INSERT ON public.t"),
            None
        );
    }

    #[test]
    fn filter_drops_owner_and_privileges_and_counts_them() {
        let f = filter(SCRIPT, false, false);
        assert_eq!(f.skipped_owner, 2);
        assert_eq!(f.skipped_privileges, 3);
        assert!(!f.sql.contains("OWNER TO app"));
        assert!(!f.sql.contains("GRANT SELECT ON TABLE"));
        assert!(f
            .sql
            .contains("RETURN 'GRANT x; ALTER TABLE t OWNER TO y;'"));
        assert!(f.sql.contains("CHECK ((note <> ' OWNER TO y'))"));
        assert!(f.sql.contains("\\unrestrict abc"));

        let kept = filter(SCRIPT, true, true);
        assert_eq!(kept.sql, SCRIPT);
        assert_eq!((kept.skipped_owner, kept.skipped_privileges), (0, 0));
    }
}
