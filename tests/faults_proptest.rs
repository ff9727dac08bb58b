//! Property tests for the archive writer, reader and manifest (no databases).
//!
//! tests/archive_format.rs already feeds random bytes to the reader and damages one fixed
//! archive's member data. These add:
//! - any set of datasets (hostile names, arbitrary records, either record format, any chunk
//!   size) round-trips: the reader accepts the archive and gives back exactly what was written;
//! - any change anywhere in a valid archive (tar headers and padding included: flips, cuts,
//!   inserted bytes) yields an error, or an archive whose content is still exactly the original;
//! - tar streams of arbitrary entries (any name bytes, entry type, size) are refused, never a
//!   panic;
//! - HEADER.json and MANIFEST.json survive serialization with any strings in them.

use dbkeeper::archive::chunk::{ChunkBuilder, Encoding, RecordFormat};
use dbkeeper::archive::codec::Codec;
use dbkeeper::archive::digest::ContentDigest;
use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::archive::writer::ArchiveWriter;
use dbkeeper::archive::{chunk_member_name, ChunkEntry, Dataset, Header, Manifest, Source};
use dbkeeper::Engine;
use proptest::prelude::*;

/// What a test writes: per dataset its name, format and records (each as the chunk sees it).
#[derive(Debug, Clone)]
struct Table {
    name: String,
    format: RecordFormat,
    records: Vec<Vec<u8>>,
}

fn header(database: &str) -> Header {
    Header::new(
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        vec![Source {
            engine: Engine::Postgres,
            url: "postgres://u:***@h/db".into(),
            database: database.into(),
            server_version: "PostgreSQL 15".into(),
            system_identifier: None,
            snapshot: None,
            consistency: "test".into(),
        }],
    )
}

/// Writes the tables into an in-memory archive, `chunk_bytes` per chunk.
fn write(tables: &[Table], chunk_bytes: usize) -> Vec<u8> {
    let header = header("db");
    let mut manifest = Manifest::new(&header);
    let mut writer = ArchiveWriter::new(Vec::new(), &header, "memory".into()).unwrap();
    for (index, table) in tables.iter().enumerate() {
        let mut builder = ChunkBuilder::new(table.format, chunk_bytes);
        let mut chunks = Vec::new();
        let mut digest = ContentDigest::new();
        let mut raw_bytes = 0;
        let mut flush = |builder: &mut ChunkBuilder, chunks: &mut Vec<ChunkEntry>| {
            if let Some(raw) = builder.take() {
                let name = chunk_member_name(
                    "postgres",
                    index,
                    &table.name,
                    chunks.len(),
                    table.format,
                    Codec::Zstd,
                );
                let compressed = raw.encode(name, &Encoding::default()).unwrap();
                digest.merge(&compressed.digest);
                raw_bytes += compressed.raw_bytes;
                chunks.push(compressed.entry());
                writer.append(compressed.member).unwrap();
            }
        };
        for record in &table.records {
            builder.push_record(&framed(table.format, record));
            if builder.is_full() {
                flush(&mut builder, &mut chunks);
            }
        }
        flush(&mut builder, &mut chunks);
        manifest.datasets.push(Dataset {
            engine: Engine::Postgres,
            namespace: "public".into(),
            name: table.name.clone(),
            format: table.format,
            rows: table.records.len() as u64,
            raw_bytes,
            digest: digest.to_hex(),
            chunks,
            extra: serde_json::Value::Null,
        });
    }
    writer.finish(&mut manifest).unwrap()
}

/// A record as it sits in a chunk: COPY lines end in `\n`, BSON documents are whole.
fn framed(format: RecordFormat, record: &[u8]) -> Vec<u8> {
    match format {
        RecordFormat::CopyText | RecordFormat::LargeObject => [record, b"\n"].concat(),
        RecordFormat::Bson => record.to_vec(),
    }
}

fn open(bytes: &[u8]) -> dbkeeper::Result<VerifiedArchive> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.dbk.tar");
    std::fs::write(&path, bytes).unwrap();
    VerifiedArchive::open(&path)
}

/// Every dataset's decoded bytes, chunk after chunk; panics on a decode error.
fn content(archive: &VerifiedArchive) -> Vec<(String, Vec<u8>)> {
    archive
        .manifest()
        .datasets
        .iter()
        .map(|d| {
            let data = d
                .chunks
                .iter()
                .flat_map(|c| archive.read_chunk(d, c).unwrap().data)
                .collect();
            (d.name.clone(), data)
        })
        .collect()
}

fn table() -> impl Strategy<Value = Table> {
    let copy_records = prop::collection::vec(
        prop::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            0..40,
        ),
        0..60,
    );
    let bson_records =
        prop::collection::vec((any::<String>(), any::<i64>()), 0..40).prop_map(|docs| {
            docs.into_iter()
                .map(|(s, n)| {
                    mongodb::bson::to_vec(&mongodb::bson::doc! { "s": s, "n": n }).unwrap()
                })
                .collect::<Vec<_>>()
        });
    (
        any::<String>(),
        prop_oneof![
            copy_records.prop_map(|r| (RecordFormat::CopyText, r)),
            bson_records.prop_map(|r| (RecordFormat::Bson, r)),
        ],
    )
        .prop_map(|(name, (format, records))| Table {
            name,
            format,
            records,
        })
}

/// One change to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: prop::sample::Index,
        mask: u8,
    },
    Cut {
        at: prop::sample::Index,
    },
    Insert {
        at: prop::sample::Index,
        bytes: Vec<u8>,
    },
    Remove {
        at: prop::sample::Index,
        len: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255)
            .prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<prop::sample::Index>().prop_map(|at| Mutation::Cut { at }),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..600)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<prop::sample::Index>(), 1usize..600)
            .prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match m {
        Mutation::Flip { at, mask } => out[at.index(bytes.len())] ^= mask,
        Mutation::Cut { at } => out.truncate(at.index(bytes.len())),
        Mutation::Insert { at, bytes: extra } => {
            let at = at.index(bytes.len() + 1);
            out.splice(at..at, extra.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let at = at.index(bytes.len());
            out.drain(at..(at + len).min(bytes.len()));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_datasets_round_trip_exactly(
        tables in prop::collection::vec(table(), 0..4),
        chunk_bytes in 1usize..400,
    ) {
        let bytes = write(&tables, chunk_bytes);
        let archive = open(&bytes).expect("a freshly written archive opens");
        let decode = archive.verify_decode(2);
        prop_assert!(decode.problems.is_empty(), "{:?}", decode.problems);
        let expected: Vec<(String, Vec<u8>)> = tables
            .iter()
            .map(|t| (t.name.clone(), t.records.iter().flat_map(|r| framed(t.format, r)).collect()))
            .collect();
        prop_assert_eq!(content(&archive), expected);
        for (dataset, table) in archive.manifest().datasets.iter().zip(&tables) {
            prop_assert_eq!(dataset.rows, table.records.len() as u64);
        }
    }

    #[test]
    fn any_change_to_a_valid_archive_is_refused_or_harmless(
        tables in prop::collection::vec(table(), 1..3),
        mutations in prop::collection::vec(mutation(), 1..3),
    ) {
        let bytes = write(&tables, 64);
        let original = content(&open(&bytes).unwrap());
        let mut damaged = bytes.clone();
        for m in &mutations {
            if damaged.is_empty() {
                break;
            }
            damaged = apply(&damaged, m);
        }
        if let Ok(archive) = open(&damaged) {
            // Accepted (a change in tar padding or past the end): then nothing was lost.
            let decode = archive.verify_decode(1);
            prop_assert!(decode.problems.is_empty(), "{:?}", decode.problems);
            prop_assert_eq!(content(&archive), original);
        }
    }

    #[test]
    fn arbitrary_tar_entries_are_refused_without_panicking(
        entries in prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 1..100),
                prop::sample::select(vec![b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'L', b'K', b'x', b'g', b'S']),
                prop::collection::vec(any::<u8>(), 0..300),
                any::<u64>(),
            ),
            0..6,
        ),
    ) {
        let mut out = Vec::new();
        for (name, kind, data, declared) in &entries {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(tar::EntryType::new(*kind));
            h.set_mode(0o644);
            // Sometimes the declared size lies (huge or short).
            let size = if declared % 3 == 0 { *declared >> 8 } else { data.len() as u64 };
            h.set_size(size);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        prop_assert!(open(&out).is_err());
    }

    #[test]
    fn header_and_manifest_survive_any_strings(
        database in any::<String>(),
        name in any::<String>(),
        namespace in any::<String>(),
        member in any::<String>(),
        rows in any::<u64>(),
    ) {
        let header = header(&database);
        let json = serde_json::to_vec(&header).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Header>(&json).unwrap(), header.clone());
        let mut manifest = Manifest::new(&header);
        manifest.datasets.push(Dataset {
            engine: Engine::Mongo,
            namespace,
            name,
            format: RecordFormat::Bson,
            rows,
            raw_bytes: rows / 2,
            digest: ContentDigest::new().to_hex(),
            chunks: vec![ChunkEntry { member, rows, raw_bytes: 1, size: 2, sha256: "ab".into(), codec: Codec::Gzip }],
            extra: serde_json::json!({ "k": [1, "x"] }),
        });
        let json = serde_json::to_vec_pretty(&manifest).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Manifest>(&json).unwrap(), manifest);
    }
}
