//! Masking PostgreSQL COPY text, a chunk at a time.
//!
//! A chunk is whole lines; a line is tab-separated fields in the dataset's COPY column order,
//! `\N` for NULL, with COPY's backslash escapes. Only the ruled columns are decoded, transformed
//! and encoded again; every other byte is copied through, and a table without rules is never
//! looked at. NULL stays NULL under every transform.
//!
//! Every masked field is written in the form PostgreSQL's own `COPY ... TO` gives back
//! (`character(n)` padded, control characters escaped), so the digest of the lines streamed
//! into a table ([`TableMask::streamed_digest`]) is what `--deep` reads back from it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::key::MaskKey;
use super::transform::{mask_text, mask_uuid, Transform};
use crate::archive::digest::ContentDigest;

/// What a column holds, as far as masking cares (read from its PostgreSQL type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `text`, `character varying(n)`, `character(n)`, `citext`: masked text is cut to `n`,
    /// and for `character(n)` (`padded`) filled up to `n` with spaces, as PostgreSQL stores it.
    Text {
        max_chars: Option<usize>,
        padded: bool,
    },
    /// `smallint`, `integer`, `bigint`.
    Integer {
        bits: u32,
    },
    Uuid,
    /// Anything else: only `null`, `keep` and `constant:` apply.
    Other,
}

impl ColumnKind {
    /// The kind of a column declared with `type_name` as pg_dump writes it.
    pub fn from_pg_type(type_name: &str) -> ColumnKind {
        let t = type_name.trim().to_ascii_lowercase();
        if t.ends_with("[]") {
            return ColumnKind::Other;
        }
        let (base, length) = match t.split_once('(') {
            Some((base, rest)) => (
                base.trim(),
                rest.trim_end_matches(')').trim().parse::<usize>().ok(),
            ),
            None => (t.as_str(), None),
        };
        let unqualified = base.rsplit('.').next().unwrap_or(base);
        match unqualified {
            "text" | "citext" | "name" => ColumnKind::Text {
                max_chars: None,
                padded: false,
            },
            "character varying" | "varchar" => ColumnKind::Text {
                max_chars: length,
                padded: false,
            },
            // `character` without a length is `character(1)`.
            "character" | "char" | "bpchar" => ColumnKind::Text {
                max_chars: Some(length.unwrap_or(1)),
                padded: true,
            },
            "smallint" | "int2" => ColumnKind::Integer { bits: 16 },
            "integer" | "int" | "int4" => ColumnKind::Integer { bits: 32 },
            "bigint" | "int8" => ColumnKind::Integer { bits: 64 },
            "uuid" => ColumnKind::Uuid,
            _ => ColumnKind::Other,
        }
    }

    /// Whether `transform` can produce a value of this kind.
    pub fn accepts(self, transform: &Transform) -> bool {
        match transform {
            Transform::Null | Transform::Keep | Transform::Constant(_) => true,
            Transform::Hash => self != ColumnKind::Other,
            Transform::Email | Transform::Name | Transform::Phone => {
                matches!(self, ColumnKind::Text { .. })
            }
        }
    }
}

/// One ruled column of a table.
#[derive(Debug)]
pub struct ColumnMask {
    pub name: String,
    /// Position in the COPY column list.
    pub index: usize,
    pub transform: Transform,
    pub kind: ColumnKind,
    /// Values changed so far (over all chunks and threads).
    pub changed: AtomicU64,
}

/// The rules of one table, ready to run on its chunks.
#[derive(Debug)]
pub struct TableMask {
    key: MaskKey,
    /// Sorted by `index`, `keep` rules left out.
    columns: Vec<ColumnMask>,
    /// The digest of every masked line so far (over all chunks and threads).
    streamed: Mutex<ContentDigest>,
}

impl TableMask {
    pub fn new(key: MaskKey, mut columns: Vec<ColumnMask>) -> TableMask {
        columns.retain(|c| c.transform.masks());
        columns.sort_by_key(|c| c.index);
        TableMask {
            key,
            columns,
            streamed: Mutex::new(ContentDigest::new()),
        }
    }

    pub fn columns(&self) -> &[ColumnMask] {
        &self.columns
    }

    /// The content digest of every line this mask produced, hashed as the archive hashes rows:
    /// after a restore, what the table holds.
    pub fn streamed_digest(&self) -> ContentDigest {
        *self.streamed.lock().expect("streamed digest")
    }

    /// The columns whose masked value PostgreSQL may store in another text form than the one
    /// written (a `constant:` on a non-text column: `1.50` for numeric `1.5`, `t` for `true`):
    /// reading such a table back does not give [`Self::streamed_digest`] byte for byte.
    pub fn reformatted_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| {
                matches!(c.transform, Transform::Constant(_)) && c.kind == ColumnKind::Other
            })
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Whether any column changes at all.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The chunk with every ruled column masked. An error names the line and column (never the
    /// value).
    pub fn mask_chunk(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        self.mask_chunk_digested(data).map(|(out, _)| out)
    }

    /// [`Self::mask_chunk`], with the digest of the masked lines (added to
    /// [`Self::streamed_digest`] too).
    pub fn mask_chunk_digested(&self, data: &[u8]) -> Result<(Vec<u8>, ContentDigest), String> {
        let mut out = Vec::with_capacity(data.len() + data.len() / 4);
        let mut changed = vec![0u64; self.columns.len()];
        let mut digest = ContentDigest::new();
        for (line_number, line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line_start = out.len();
            let mut rules = self.columns.iter().enumerate().peekable();
            for (index, field) in line.split(|&b| b == b'\t').enumerate() {
                if index > 0 {
                    out.push(b'\t');
                }
                match rules.next_if(|(_, c)| c.index == index) {
                    None => out.extend_from_slice(field),
                    Some((slot, column)) => {
                        let start = out.len();
                        self.mask_field(column, field, &mut out)
                            .map_err(|message| {
                                format!(
                                    "line {}, column {}: {message}",
                                    line_number + 1,
                                    column.name
                                )
                            })?;
                        if out[start..] != *field {
                            changed[slot] += 1;
                        }
                    }
                }
            }
            digest.add(&out[line_start..]);
            out.push(b'\n');
        }
        for (column, n) in self.columns.iter().zip(changed) {
            column.changed.fetch_add(n, Ordering::Relaxed);
        }
        self.streamed
            .lock()
            .expect("streamed digest")
            .merge(&digest);
        Ok((out, digest))
    }

    fn mask_field(
        &self,
        column: &ColumnMask,
        field: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        if field == b"\\N" {
            out.extend_from_slice(field);
            return Ok(());
        }
        match (&column.transform, column.kind) {
            (Transform::Keep, _) => out.extend_from_slice(field),
            (Transform::Null, _) => out.extend_from_slice(b"\\N"),
            (Transform::Constant(text), ColumnKind::Text { max_chars, padded }) => {
                escape_into(fit(text.clone(), max_chars, padded).as_bytes(), out)
            }
            (Transform::Constant(text), _) => escape_into(text.as_bytes(), out),
            (Transform::Hash, ColumnKind::Integer { bits }) => {
                let value: i64 = std::str::from_utf8(field)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("not an integer")?;
                out.extend_from_slice(self.key.permute_signed(value, bits).to_string().as_bytes());
            }
            (Transform::Hash, ColumnKind::Uuid) => {
                out.extend_from_slice(mask_uuid(&self.key, field).as_bytes())
            }
            (transform, ColumnKind::Text { max_chars, padded }) => {
                let value = unescape(field);
                let masked =
                    mask_text(&self.key, transform, &value).ok_or("transform has no text form")?;
                escape_into(fit(masked, max_chars, padded).as_bytes(), out);
            }
            (transform, kind) => return Err(format!("{transform} cannot mask a {kind:?} value")),
        }
        Ok(())
    }
}

/// `text` cut to `max_chars` characters and, for `character(n)`, padded with spaces to `n`, as
/// PostgreSQL would store it.
fn fit(mut text: String, max_chars: Option<usize>, padded: bool) -> String {
    let Some(n) = max_chars else {
        return text;
    };
    match text.char_indices().nth(n) {
        Some((cut, _)) => text.truncate(cut),
        None if padded => {
            let missing = n - text.chars().count();
            text.extend(std::iter::repeat_n(' ', missing));
        }
        None => {}
    }
    text
}

/// A COPY text field's value (`\N` is handled by the caller).
pub fn unescape(field: &[u8]) -> Vec<u8> {
    if !field.contains(&b'\\') {
        return field.to_vec();
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match field.get(i).and_then(|&d| (d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// Appends `value` escaped as a COPY text field, exactly as `COPY ... TO` escapes it.
pub fn escape_into(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            11 => out.extend_from_slice(b"\\v"),
            12 => out.extend_from_slice(b"\\f"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MaskKey {
        MaskKey::from_secret(b"copy text test key!!").unwrap()
    }

    fn column(name: &str, index: usize, transform: Transform, kind: ColumnKind) -> ColumnMask {
        ColumnMask {
            name: name.into(),
            index,
            transform,
            kind,
            changed: AtomicU64::new(0),
        }
    }

    #[test]
    fn escapes_round_trip() {
        let raw = b"a\\\\b\\tc\\nd\\101\\x41";
        assert_eq!(unescape(raw), b"a\\b\tc\ndAA");
        let mut out = Vec::new();
        escape_into(b"a\\b\tc\nd", &mut out);
        assert_eq!(unescape(&out), b"a\\b\tc\nd");
    }

    #[test]
    fn only_ruled_columns_change_and_nulls_stay_null() {
        let mask = TableMask::new(
            key(),
            vec![
                column(
                    "email",
                    1,
                    Transform::Email,
                    ColumnKind::Text {
                        max_chars: None,
                        padded: false,
                    },
                ),
                column("id", 0, Transform::Hash, ColumnKind::Integer { bits: 32 }),
                column(
                    "note",
                    3,
                    Transform::Constant("a\tb".into()),
                    ColumnKind::Other,
                ),
                column("plan", 2, Transform::Keep, ColumnKind::Other),
            ],
        );
        let data = b"1\tada@x.org\tgold\tsecret\n2\t\\N\tfree\t\\N\n";
        let out = String::from_utf8(mask.mask_chunk(data).unwrap()).unwrap();
        let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0][1].ends_with("@example.com"));
        assert_eq!(lines[0][2], "gold");
        // The constant's tab is escaped: still four fields.
        assert_eq!(&lines[0][3..], ["a\\tb"]);
        assert_eq!(lines[1][1], "\\N");
        assert_eq!(lines[1][3], "\\N");
        assert_ne!(lines[0][0], "1");
        assert!(lines[0][0].parse::<i32>().unwrap() > 0);
        // The same value masks the same way in every chunk.
        let again = String::from_utf8(mask.mask_chunk(b"1\tada@x.org\tgold\tsecret\n").unwrap());
        assert_eq!(again.unwrap().lines().next(), out.lines().next());
        let counts: Vec<u64> = mask
            .columns()
            .iter()
            .map(|c| c.changed.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [3, 2, 2]);
    }

    #[test]
    fn varchar_limits_hold_and_bad_integers_are_reported() {
        let mask = TableMask::new(
            key(),
            vec![column(
                "code",
                0,
                Transform::Hash,
                ColumnKind::Text {
                    max_chars: Some(8),
                    padded: false,
                },
            )],
        );
        assert_eq!(mask.mask_chunk(b"abc\n").unwrap().len(), 9);
        let mask = TableMask::new(
            key(),
            vec![column(
                "n",
                0,
                Transform::Hash,
                ColumnKind::Integer { bits: 64 },
            )],
        );
        let err = mask.mask_chunk(b"12\nx\n").unwrap_err();
        assert!(err.contains("line 2, column n"), "{err}");
        assert!(!err.contains('x'));
    }

    #[test]
    fn streamed_digest_is_of_the_masked_lines_as_postgres_gives_them_back() {
        let mask = TableMask::new(
            key(),
            vec![
                column(
                    "code",
                    1,
                    Transform::Hash,
                    ColumnKind::Text {
                        max_chars: Some(24),
                        padded: true,
                    },
                ),
                column(
                    "note",
                    2,
                    Transform::Constant("a\u{8}b\u{c}".into()),
                    ColumnKind::Text {
                        max_chars: None,
                        padded: false,
                    },
                ),
            ],
        );
        let first = mask.mask_chunk(b"1\tabc\tx\n2\tdef\ty\n").unwrap();
        let second = mask.mask_chunk(b"3\tghi\tz\n").unwrap();
        let text = String::from_utf8([first, second].concat()).unwrap();
        let mut expected = ContentDigest::new();
        let mut original = ContentDigest::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            // character(24): the 20 hex digits padded to 24, as COPY TO gives them back.
            assert_eq!(fields[1].len(), 24, "{line}");
            assert!(fields[1].ends_with("    "), "{line}");
            assert_eq!(fields[2], "a\\bb\\f");
            expected.add(line.as_bytes());
        }
        for line in ["1\tabc\tx", "2\tdef\ty", "3\tghi\tz"] {
            original.add(line.as_bytes());
        }
        assert_eq!(mask.streamed_digest(), expected);
        assert_eq!(mask.streamed_digest().count(), 3);
        assert_ne!(mask.streamed_digest(), original);
        assert!(mask.reformatted_columns().is_empty());
        let numeric = TableMask::new(
            key(),
            vec![column(
                "amount",
                0,
                Transform::Constant("1.5".into()),
                ColumnKind::Other,
            )],
        );
        assert_eq!(numeric.reformatted_columns(), ["amount"]);
    }

    #[test]
    fn kinds_come_from_pg_types() {
        assert_eq!(
            ColumnKind::from_pg_type("character varying(40)"),
            ColumnKind::Text {
                max_chars: Some(40),
                padded: false
            }
        );
        assert_eq!(
            ColumnKind::from_pg_type("character(12)"),
            ColumnKind::Text {
                max_chars: Some(12),
                padded: true
            }
        );
        assert_eq!(
            ColumnKind::from_pg_type("public.citext"),
            ColumnKind::Text {
                max_chars: None,
                padded: false
            }
        );
        assert_eq!(
            ColumnKind::from_pg_type("bigint"),
            ColumnKind::Integer { bits: 64 }
        );
        assert_eq!(ColumnKind::from_pg_type("text[]"), ColumnKind::Other);
        assert!(!ColumnKind::from_pg_type("jsonb").accepts(&Transform::Email));
    }
}
