//! Masking PostgreSQL COPY text, a chunk at a time.
//!
//! A chunk is whole lines; a line is tab-separated fields in the dataset's COPY column order,
//! `\N` for NULL, with COPY's backslash escapes. Only the ruled columns are decoded, transformed
//! and encoded again; every other byte is copied through, and a table without rules is never
//! looked at. NULL stays NULL under every transform.

use std::sync::atomic::{AtomicU64, Ordering};

use super::key::MaskKey;
use super::transform::{mask_text, mask_uuid, Transform};

/// What a column holds, as far as masking cares (read from its PostgreSQL type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `text`, `character varying(n)`, `character(n)`, `citext`: masked text is cut to `n`.
    Text {
        max_chars: Option<usize>,
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
            "text" | "citext" | "name" => ColumnKind::Text { max_chars: None },
            "character varying" | "varchar" | "character" | "char" | "bpchar" => {
                ColumnKind::Text { max_chars: length }
            }
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
}

impl TableMask {
    pub fn new(key: MaskKey, mut columns: Vec<ColumnMask>) -> TableMask {
        columns.retain(|c| c.transform.masks());
        columns.sort_by_key(|c| c.index);
        TableMask { key, columns }
    }

    pub fn columns(&self) -> &[ColumnMask] {
        &self.columns
    }

    /// Whether any column changes at all.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The chunk with every ruled column masked. An error names the line and column (never the
    /// value).
    pub fn mask_chunk(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(data.len() + data.len() / 4);
        let mut changed = vec![0u64; self.columns.len()];
        for (line_number, line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
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
            out.push(b'\n');
        }
        for (column, n) in self.columns.iter().zip(changed) {
            column.changed.fetch_add(n, Ordering::Relaxed);
        }
        Ok(out)
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
            (transform, ColumnKind::Text { max_chars }) => {
                let value = unescape(field);
                let mut masked =
                    mask_text(&self.key, transform, &value).ok_or("transform has no text form")?;
                let cut = max_chars.and_then(|n| masked.char_indices().nth(n).map(|(i, _)| i));
                if let Some(cut) = cut {
                    masked.truncate(cut);
                }
                escape_into(masked.as_bytes(), out);
            }
            (transform, kind) => return Err(format!("{transform} cannot mask a {kind:?} value")),
        }
        Ok(())
    }
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

/// Appends `value` escaped as a COPY text field.
pub fn escape_into(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
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
                    ColumnKind::Text { max_chars: None },
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
                ColumnKind::Text { max_chars: Some(8) },
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
    fn kinds_come_from_pg_types() {
        assert_eq!(
            ColumnKind::from_pg_type("character varying(40)"),
            ColumnKind::Text {
                max_chars: Some(40)
            }
        );
        assert_eq!(
            ColumnKind::from_pg_type("public.citext"),
            ColumnKind::Text { max_chars: None }
        );
        assert_eq!(
            ColumnKind::from_pg_type("bigint"),
            ColumnKind::Integer { bits: 64 }
        );
        assert_eq!(ColumnKind::from_pg_type("text[]"), ColumnKind::Other);
        assert!(!ColumnKind::from_pg_type("jsonb").accepts(&Transform::Email));
    }
}
