//! Order-independent content digests of a dataset's records.
//!
//! The digest of a table is the wrapping sum of the 128-bit xxh3 hashes of its records, plus the
//! record count. A sum does not depend on the order rows come back in, so a restored table can be
//! re-read with a plain `COPY ... TO STDOUT` (no `ORDER BY`, no sort) and compared; partial sums
//! from parallel chunks simply add up.
//!
//! What a record is, exactly (both sides must hash the same bytes):
//! - PostgreSQL: one row's COPY text line, *without* its terminating `\n`, columns in the
//!   manifest's column order;
//! - MongoDB: one document's raw BSON bytes, length prefix included;
//! - PostgreSQL large objects: one piece's record, header included
//!   ([`crate::archive::chunk::LargeObjectPiece`]).
//!
//! This is an integrity check against accidents (lost, duplicated or altered rows), not a
//! cryptographic commitment; the archive's members are protected by SHA-256.

use xxhash_rust::xxh3::xxh3_128;

/// The prefix naming the algorithm in the manifest's digest strings.
pub const ALGORITHM: &str = "xxh3-128-sum";

/// A running digest: how many records, and the wrapping sum of their hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentDigest {
    count: u64,
    sum: u128,
}

impl ContentDigest {
    pub fn new() -> ContentDigest {
        ContentDigest::default()
    }

    /// Adds one record (see the module docs for what a record's bytes are).
    pub fn add(&mut self, record: &[u8]) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(xxh3_128(record));
    }

    /// Adds another digest, as if its records had been added here.
    pub fn merge(&mut self, other: &ContentDigest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// `xxh3-128-sum:<32 hex digits>`, as stored in the manifest. The count is stored next to it
    /// (as the dataset's rows), so it is not repeated here.
    pub fn to_hex(&self) -> String {
        format!("{ALGORITHM}:{:032x}", self.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order_and_merges() {
        let rows: [&[u8]; 3] = [b"1\tAda", b"2\tGrace", b"3\t\\N"];
        let mut forward = ContentDigest::new();
        rows.iter().for_each(|r| forward.add(r));
        let mut backward = ContentDigest::new();
        rows.iter().rev().for_each(|r| backward.add(r));
        assert_eq!(forward, backward);
        assert_eq!(forward.count(), 3);

        let mut a = ContentDigest::new();
        a.add(rows[0]);
        let mut b = ContentDigest::new();
        b.add(rows[1]);
        b.add(rows[2]);
        a.merge(&b);
        assert_eq!(a.to_hex(), forward.to_hex());
        assert!(forward.to_hex().starts_with("xxh3-128-sum:"));
    }

    #[test]
    fn digest_sees_changed_duplicated_and_missing_rows() {
        let mut base = ContentDigest::new();
        base.add(b"1\tAda");
        base.add(b"2\tGrace");
        let mut changed = ContentDigest::new();
        changed.add(b"1\tAda");
        changed.add(b"2\tGrace ");
        assert_ne!(base.to_hex(), changed.to_hex());
        let mut duplicated = base;
        duplicated.add(b"2\tGrace");
        assert_ne!(base, duplicated);
    }
}
