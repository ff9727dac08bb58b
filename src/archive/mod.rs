//! The archive: one tar file per backup, self-verifying, shared by every engine
//! (format reference: docs/archive-format.md).
//!
//! This module knows nothing about databases. An engine's dump turns its data into *records*
//! (a PostgreSQL COPY text line, a MongoDB raw BSON document), groups them into bounded chunks
//! ([`chunk::ChunkBuilder`]), compresses each chunk into one member ([`codec`]: zstd by default,
//! gzip or none; recorded per chunk in the manifest) and hands finished
//! members to the single [`writer::ArchiveWriter`]. Restore and verify open the file with
//! [`reader::VerifiedArchive::open`], which checks it completely (V0) before anything else runs.
//!
//! # Layout
//!
//! Members, in this order (names are built by the functions below, never from raw user input):
//!
//! | member | content |
//! |---|---|
//! | `HEADER.json` | [`manifest::Header`]: format/tool version, sources (redacted URLs), start time |
//! | `postgres/schema/pre-data.sql`, `postgres/schema/post-data.sql` | engine schema members |
//! | `postgres/data/<n>-<table>/<chunk>.copy.zst` | one member per chunk of COPY text |
//! | `mongo/data/<n>-<collection>/<chunk>.bson.zst` | one member per chunk of raw BSON |
//! | `MANIFEST.json` | [`manifest::Manifest`]: every member's size and SHA-256, datasets, chunks |
//! | `COMMIT` | hex SHA-256 of the `MANIFEST.json` bytes and a newline; always last |
//!
//! No `COMMIT` means the backup never finished: the archive is refused.
//!
//! # Writing (dump side)
//!
//! ```no_run
//! use dbkeeper::archive::{chunk, manifest, writer::ArchiveWriter, Codec, Member, RecordFormat};
//! # fn demo(header: manifest::Header, mut manifest: manifest::Manifest) -> dbkeeper::Result<()> {
//! let mut archive = ArchiveWriter::create_file("backups/x.dbk.tar".as_ref(), &header)?;
//! // On worker threads: build chunks on record boundaries and compress them.
//! let mut builder = chunk::ChunkBuilder::new(RecordFormat::CopyText, chunk::DEFAULT_CHUNK_BYTES);
//! builder.push_record(b"1\tAda\n");
//! let raw = builder.take().unwrap();
//! let name = dbkeeper::archive::chunk_member_name(
//!     "postgres", 0, "public.users", 0, RecordFormat::CopyText, Codec::Zstd);
//! let compressed = raw.encode(name, &chunk::Encoding::default())?; // zstd + SHA-256, off the writer thread
//! // On the one writer thread: append, in any order; record the chunk in the manifest.
//! let entry = compressed.entry();                      // what the manifest records
//! archive.append(compressed.member)?;
//! # let _ = entry;
//! archive.finish_file(&mut manifest)?;                // MANIFEST.json, COMMIT, fsync, rename
//! # Ok(()) }
//! ```
//!
//! Dropping a writer without `finish_file` deletes the `.partial` file: an error path can never
//! produce a final archive.

pub mod catalog;
pub mod chunk;
pub mod codec;
pub mod crypt;
pub mod digest;
pub mod manifest;
pub mod pipeline;
pub mod reader;
pub mod selection;
pub mod write_behind;
pub mod writer;

pub use chunk::RecordFormat;
pub use codec::Codec;
pub use manifest::{ChunkEntry, Dataset, Header, Manifest, MemberEntry, Source};
pub use writer::Member;

/// First member of every archive.
pub const HEADER_MEMBER: &str = "HEADER.json";
/// The manifest, second to last.
pub const MANIFEST_MEMBER: &str = "MANIFEST.json";
/// The commit marker, last.
pub const COMMIT_MEMBER: &str = "COMMIT";
/// The file name suffix of finished archives.
pub const ARCHIVE_SUFFIX: &str = ".dbk.tar";
/// The suffix of an archive still being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Longest sanitized name component kept in a member name (the index keeps names unique).
const MAX_COMPONENT: usize = 60;

/// Makes any string (a table name can contain anything) safe as one path component: ASCII
/// letters, digits, `.`, `-` and `_` are kept, everything else becomes `_`, and the result is
/// bounded in length and never `.`/`..`-like or empty.
pub fn sanitize_component(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_COMPONENT)
        .collect();
    if out.trim_matches('.').is_empty() {
        out = format!("_{out}");
    }
    out
}

/// The directory of one dataset's chunks: `<engine>/data/<index>-<sanitized name>`. The index
/// (the dataset's position in the manifest) keeps two names that sanitize alike apart.
pub fn dataset_dir(engine: &str, index: usize, qualified_name: &str) -> String {
    format!(
        "{engine}/data/{index:05}-{}",
        sanitize_component(qualified_name)
    )
}

/// The member name of one chunk of one dataset: `<dir>/<chunk>.<format><codec suffix>`, so
/// stock tools know what a member holds (`000007.copy.zst`: zstd-compressed COPY text).
pub fn chunk_member_name(
    engine: &str,
    dataset_index: usize,
    qualified_name: &str,
    chunk_index: usize,
    format: RecordFormat,
    codec: Codec,
) -> String {
    format!(
        "{}/{chunk_index:06}.{}{}",
        dataset_dir(engine, dataset_index, qualified_name),
        format.extension(),
        codec.suffix()
    )
}

/// Whether a member name read from an archive is acceptable: relative, `/`-separated, no empty,
/// `.` or `..` components, no backslashes or control characters, bounded length.
pub fn is_safe_member_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.chars().any(|c| c.is_control())
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_names_are_safe_and_bounded() {
        for raw in [
            "public.users",
            "../../etc/passwd",
            "weird \"name\"\n\t/x",
            "..",
            ".",
            "",
            "ünïcødé",
            &"x".repeat(500),
        ] {
            let s = sanitize_component(raw);
            assert!(is_safe_member_name(&s), "{raw:?} -> {s:?}");
            assert!(!s.contains('/'), "{s}");
            assert!(s.len() <= MAX_COMPONENT + 1);
            let member =
                chunk_member_name("postgres", 3, raw, 7, RecordFormat::CopyText, Codec::Zstd);
            assert!(is_safe_member_name(&member), "{member}");
        }
        assert_eq!(
            chunk_member_name(
                "postgres",
                3,
                "public.users",
                7,
                RecordFormat::CopyText,
                Codec::Zstd
            ),
            "postgres/data/00003-public.users/000007.copy.zst"
        );
    }

    #[test]
    fn unsafe_member_names_are_rejected() {
        for bad in [
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
            "",
            "a/",
        ] {
            assert!(!is_safe_member_name(bad), "{bad:?}");
        }
        assert!(is_safe_member_name("postgres/schema/pre-data.sql"));
    }
}
