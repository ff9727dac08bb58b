//! Reading pg_dump's plain SQL scripts: splitting them into statements (with the one splitter
//! for PostgreSQL text, [`lexer::split`]) so that ownership and privilege statements can be left
//! out when restoring into another environment, and post-data can be scheduled entry by entry.
//!
//! The archive keeps the schema exactly as pg_dump wrote it; what a restore skips is decided at
//! restore time (`--keep-owner`, `--keep-privileges`) and reported as counts.

use super::lexer::{self, quoted_end};

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
    located_statements(script)
        .into_iter()
        .map(|(_, _, statement)| statement)
        .collect()
}

/// The archive entries of a script, in order: the statements of one `-- Name: ...` entry
/// together (pg_dump writes some entries as several statements that must run in order, e.g.
/// a constraint and the `REPLICA IDENTITY USING INDEX` that needs it), the preamble as one.
pub fn entries(script: &str) -> Vec<Statement<'_>> {
    let mut out: Vec<Statement<'_>> = Vec::new();
    let mut spans: Vec<(usize, usize, usize)> = Vec::new(); // (entry, start, end)
    for (entry, (start, end), statement) in located_statements(script) {
        match spans.last_mut() {
            Some(last) if last.0 == entry => {
                last.2 = end;
                let merged = &script[last.1..end];
                out.last_mut().expect("one entry per span").sql = merged;
            }
            _ => {
                spans.push((entry, start, end));
                out.push(statement);
            }
        }
    }
    out
}

/// [`statements`] with the index of the entry each belongs to (0 for the preamble) and its
/// byte range in `script`.
fn located_statements(script: &str) -> Vec<(usize, (usize, usize), Statement<'_>)> {
    let mut kind = None;
    let mut entry = 0;
    let mut out = Vec::new();
    for piece in lexer::split(script) {
        let text = &script[piece.start..piece.end];
        for line in text.lines() {
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
                    entry += 1;
                }
            }
        }
        let head = strip_leading_comments(text);
        if head.is_empty() || piece.meta_command {
            continue;
        }
        out.push((
            entry,
            (piece.start, piece.end),
            Statement { kind, sql: text },
        ));
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

/// The table a `CREATE [UNLOGGED] TABLE schema.table ...` statement creates, as pg_dump writes
/// it; `None` for anything else.
pub fn created_table(statement: &str) -> Option<(String, String)> {
    let mut words = Words(strip_leading_comments(statement));
    if !words.next()?.is_keyword("CREATE") {
        return None;
    }
    let mut next = words.next()?;
    if next.is_keyword("UNLOGGED") {
        next = words.next()?;
    }
    if !next.is_keyword("TABLE") {
        return None;
    }
    let schema = words.next()?.name()?;
    if words.next()? != Word::Dot {
        return None;
    }
    Some((schema, words.next()?.name()?))
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

impl Word<'_> {
    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Word::Plain(p) if p.eq_ignore_ascii_case(keyword))
    }

    fn name(self) -> Option<String> {
        match self {
            Word::Plain(p) => Some(p.to_string()),
            Word::Quoted(q) => Some(q),
            Word::Dot | Word::Other => None,
        }
    }
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
            let end = quoted_end(s.as_bytes(), 0, b'"', false);
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

/// Splits a script into statements as psql does ([`lexer::split`]), each with its leading
/// whitespace/comments and its terminating `;` (a psql meta-command is one line).
/// Concatenating the pieces gives the script back.
pub fn split(script: &str) -> Vec<&str> {
    lexer::split(script)
        .into_iter()
        .map(|p| &script[p.start..p.end])
        .collect()
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
    fn entries_keep_the_statements_of_one_entry_together() {
        let script = "SET x = 1;\nSET y = 2;\n\n--\n-- Name: t t_key; Type: CONSTRAINT; Schema: public; Owner: a\n--\n\nALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_key UNIQUE (a);\n\nALTER TABLE ONLY public.t REPLICA IDENTITY USING INDEX t_key;\n\n--\n-- Name: i; Type: INDEX; Schema: public; Owner: a\n--\n\nCREATE INDEX i ON public.t USING btree (a);\n";
        let entries = entries(script);
        let kinds: Vec<Option<&str>> = entries.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [None, Some("CONSTRAINT"), Some("INDEX")]);
        assert!(entries[0].sql.contains("SET y = 2;"));
        assert!(entries[1].sql.trim_start().starts_with("--"));
        assert!(entries[1]
            .sql
            .trim_end()
            .ends_with("REPLICA IDENTITY USING INDEX t_key;"));
        assert_eq!(statements(script).len(), 5);
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
    fn created_table_reads_the_name_pg_dump_writes() {
        let t = |schema: &str, table: &str| Some((schema.to_string(), table.to_string()));
        assert_eq!(
            created_table("\n--\nCREATE TABLE public.child (\n    c text\n)\nINHERITS (public.p);"),
            t("public", "child")
        );
        assert_eq!(
            created_table("CREATE UNLOGGED TABLE \"S\".\"a\"\"b\" (x int);"),
            t("S", "a\"b")
        );
        assert_eq!(created_table("CREATE TABLE t (x int);"), None);
        assert_eq!(created_table("CREATE VIEW public.v AS SELECT 1;"), None);
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
