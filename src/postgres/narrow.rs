//! When a table's content digest differs from the archive's, which rows differ: every archived
//! row the table lacks, grouped by the chunk that holds it with the range of its first column,
//! and the rows the table has that the archive lacks.
//!
//! Rows are matched by the same hash the content digest sums (xxh3-128 of a row's COPY text), as a
//! multiset: the table's rows are hashed into memory once, then every archived chunk is checked
//! against them. That costs memory per row, so only tables up to [`MAX_ROWS`] are narrowed; the
//! digest comparison before it is what proves the difference.

use std::collections::HashMap;

use futures::StreamExt;
use tokio_postgres::Client;
use xxhash_rust::xxh3::xxh3_128;

use crate::archive::reader::VerifiedArchive;
use crate::archive::Dataset;
use crate::error::Result;

/// Tables with more rows are not narrowed (about 60 bytes of memory per row).
pub const MAX_ROWS: u64 = 2_000_000;

/// Rows listed by their first column, at most, per chunk and for the extra rows.
const MAX_KEYS: usize = 5;

/// One line saying where the difference is, or why it was not narrowed.
pub async fn describe_difference(
    archive: &VerifiedArchive,
    client: &Client,
    dataset: &Dataset,
    copy_statement: &str,
) -> Result<String> {
    if dataset.rows > MAX_ROWS {
        return Ok(format!(
            "not narrowed to rows: the table has more than {MAX_ROWS} rows"
        ));
    }
    let mut table = TableRows::default();
    let stream = client.copy_out(copy_statement).await.map_err(|e| {
        crate::postgres::inspect::db_error(
            &format!("reading table {}", dataset.qualified_name()),
            &e,
        )
    })?;
    futures::pin_mut!(stream);
    let mut carry: Vec<u8> = Vec::new();
    while let Some(message) = stream.next().await {
        let data = message.map_err(|e| {
            crate::postgres::inspect::db_error(
                &format!("reading table {}", dataset.qualified_name()),
                &e,
            )
        })?;
        carry.extend_from_slice(&data);
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &carry) {
            table.add(&carry[start..end]);
            start = end + 1;
        }
        carry.drain(..start);
    }

    let mut lacking = Vec::new();
    for chunk in &dataset.chunks {
        let decoded = archive.read_chunk(dataset, chunk)?;
        let mut keys = KeyRange::default();
        for row in decoded
            .data
            .split(|&b| b == b'\n')
            .take(decoded.rows() as usize)
        {
            if !table.take(row) {
                keys.add(first_field(row));
            }
        }
        if keys.count > 0 {
            lacking.push(format!(
                "{} in chunk {} ({})",
                plural(keys.count, "archived row"),
                chunk.member,
                keys.describe()
            ));
        }
    }
    let mut extra = KeyRange::default();
    for (key, count) in table.left() {
        for _ in 0..count {
            extra.add(key);
        }
    }
    let mut parts = Vec::new();
    if !lacking.is_empty() {
        parts.push(format!("missing or changed: {}", lacking.join("; ")));
    }
    if extra.count > 0 {
        parts.push(format!(
            "{} not in the archive ({})",
            plural(extra.count, "row"),
            extra.describe()
        ));
    }
    Ok(if parts.is_empty() {
        "no row differs on a second reading (the table changed while it was compared?)".into()
    } else {
        parts.join("; ")
    })
}

/// The table's rows as a multiset of hashes, with one first column kept per hash for messages.
#[derive(Default)]
struct TableRows {
    rows: HashMap<u128, (u64, Vec<u8>)>,
}

impl TableRows {
    fn add(&mut self, row: &[u8]) {
        let entry = self
            .rows
            .entry(xxh3_128(row))
            .or_insert_with(|| (0, first_field(row).to_vec()));
        entry.0 += 1;
    }

    /// Takes one row equal to `row`; false when the table has none (left).
    fn take(&mut self, row: &[u8]) -> bool {
        match self.rows.get_mut(&xxh3_128(row)) {
            Some(entry) if entry.0 > 0 => {
                entry.0 -= 1;
                true
            }
            _ => false,
        }
    }

    fn left(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.rows
            .values()
            .filter(|(count, _)| *count > 0)
            .map(|(count, key)| (key.as_slice(), *count))
    }
}

fn first_field(row: &[u8]) -> &[u8] {
    row.split(|&b| b == b'\t').next().unwrap_or(row)
}

/// How many rows, the range of their first column and the first few values.
#[derive(Default)]
struct KeyRange {
    count: u64,
    keys: Vec<String>,
}

impl KeyRange {
    fn add(&mut self, key: &[u8]) {
        self.count += 1;
        self.keys.push(String::from_utf8_lossy(key).into_owned());
    }

    fn describe(&self) -> String {
        let mut keys = self.keys.clone();
        // Numbers in numeric order, everything else as text.
        keys.sort_by(|a, b| match (a.parse::<i128>(), b.parse::<i128>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        });
        keys.dedup();
        let listed: Vec<&str> = keys.iter().take(MAX_KEYS).map(String::as_str).collect();
        let more = if keys.len() > MAX_KEYS { ", ..." } else { "" };
        match (keys.first(), keys.last()) {
            (Some(lo), Some(hi)) if lo != hi => format!(
                "first column from {lo} to {hi}: {}{more}",
                listed.join(", ")
            ),
            (Some(only), _) => format!("first column {only}"),
            _ => String::new(),
        }
    }
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
