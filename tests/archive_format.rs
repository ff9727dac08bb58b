//! The archive format on its own, without databases: round trip, finality, and that every kind
//! of damage is refused (never a panic, never a silently short restore).

use std::io::Read;
use std::path::{Path, PathBuf};

use dbkeeper::archive::chunk::{ChunkBuilder, Encoding, RecordFormat};
use dbkeeper::archive::codec::Codec;
use dbkeeper::archive::digest::ContentDigest;
use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::archive::writer::ArchiveWriter;
use dbkeeper::archive::{
    chunk_member_name, ChunkEntry, Dataset, Header, Manifest, Member, Source, COMMIT_MEMBER,
};
use dbkeeper::{Engine, ExitCode};
use proptest::prelude::*;

fn header() -> Header {
    Header::new(
        chrono::Utc::now(),
        vec![Source {
            engine: Engine::Postgres,
            url: "postgres://app:***@db/shop".into(),
            database: "shop".into(),
            server_version: "PostgreSQL 15.20".into(),
            system_identifier: Some("42".into()),
            snapshot: Some("00000003-0000001B-1".into()),
            consistency: "one exported snapshot".into(),
        }],
    )
}

/// Table name with everything awkward in it, so member naming is exercised too.
const AWKWARD_TABLE: &str = "we\"ird/../ tåble\n";

/// Writes an archive with a schema member and two tables (one split into several chunks).
fn write_sample(path: &Path) -> Vec<Vec<u8>> {
    let header = header();
    let mut manifest = Manifest::new(&header);
    let mut writer = ArchiveWriter::create_file(path, &header).unwrap();
    writer
        .append(Member::new(
            "postgres/schema/pre-data.sql",
            b"CREATE TABLE t (a int);\n".to_vec(),
        ))
        .unwrap();
    let mut raw_chunks = Vec::new();
    for (index, (table, rows)) in [("users", 500usize), (AWKWARD_TABLE, 3)]
        .into_iter()
        .enumerate()
    {
        let mut builder = ChunkBuilder::new(RecordFormat::CopyText, 1024);
        let mut chunks = Vec::new();
        let mut digest = ContentDigest::new();
        let mut raw_bytes = 0;
        let mut flush = |builder: &mut ChunkBuilder, chunks: &mut Vec<ChunkEntry>| {
            if let Some(raw) = builder.take() {
                raw_chunks.push(raw.data.clone());
                let name = chunk_member_name(
                    "postgres",
                    index,
                    &format!("public.{table}"),
                    chunks.len(),
                    RecordFormat::CopyText,
                    Codec::Zstd,
                );
                let compressed = raw.encode(name, &Encoding::default()).unwrap();
                digest.merge(&compressed.digest);
                raw_bytes += compressed.raw_bytes;
                chunks.push(compressed.entry());
                writer.append(compressed.member).unwrap();
            }
        };
        for i in 0..rows {
            builder.push_record(format!("{i}\tname\\t{i}\t\\N\n").as_bytes());
            if builder.is_full() {
                flush(&mut builder, &mut chunks);
            }
        }
        flush(&mut builder, &mut chunks);
        manifest.datasets.push(Dataset {
            engine: Engine::Postgres,
            namespace: "public".into(),
            name: table.into(),
            format: RecordFormat::CopyText,
            rows: rows as u64,
            raw_bytes,
            digest: digest.to_hex(),
            chunks,
            extra: serde_json::json!({"columns": ["id", "name", "note"]}),
        });
    }
    writer.finish_file(&mut manifest).unwrap();
    raw_chunks
}

fn sample() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.dbk.tar");
    write_sample(&path);
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

/// (name, data offset, size) of every tar entry, read with the tar crate directly.
fn member_spans(bytes: &[u8]) -> Vec<(String, u64, u64)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                e.raw_file_position(),
                e.size(),
            )
        })
        .collect()
}

fn open_bytes(bytes: &[u8]) -> dbkeeper::Result<VerifiedArchive> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.dbk.tar");
    std::fs::write(&path, bytes).unwrap();
    VerifiedArchive::open(&path)
}

#[test]
fn round_trip_reads_back_every_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.dbk.tar");
    let raw_chunks = write_sample(&path);
    assert!(!dir.path().join("a.dbk.tar.partial").exists());

    let archive = VerifiedArchive::open(&path).unwrap();
    let manifest = archive.manifest();
    assert_eq!(manifest.datasets.len(), 2);
    assert_eq!(manifest.datasets[0].rows, 500);
    assert!(manifest.datasets[0].chunks.len() > 5);
    assert_eq!(manifest.datasets[1].name, AWKWARD_TABLE);
    assert_eq!(archive.header().sources[0].database, "shop");

    let mut read_back = Vec::new();
    for dataset in &manifest.datasets {
        for chunk in &dataset.chunks {
            read_back.push(archive.read_chunk(dataset, chunk).unwrap().data);
        }
    }
    assert_eq!(read_back, raw_chunks);
    assert_eq!(
        archive.read_member("postgres/schema/pre-data.sql").unwrap(),
        b"CREATE TABLE t (a int);\n"
    );

    let report = archive.verify_decode(2);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.rows, 503);

    // The file is an ordinary tar: standard tools can list it, with COMMIT last.
    let names: Vec<String> = member_spans(&std::fs::read(&path).unwrap())
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(names.first().unwrap(), "HEADER.json");
    assert_eq!(names[names.len() - 2], "MANIFEST.json");
    assert_eq!(names.last().unwrap(), COMMIT_MEMBER);
    assert!(
        names.iter().all(|n| n.split('/').all(|c| c != "..")),
        "{names:?}"
    );
}

#[test]
fn a_writer_dropped_without_finish_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.dbk.tar");
    {
        let mut writer = ArchiveWriter::create_file(&path, &header()).unwrap();
        writer
            .append(Member::new("postgres/schema/pre-data.sql", vec![1, 2, 3]))
            .unwrap();
        assert!(dir.path().join("b.dbk.tar.partial").exists());
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn writer_refuses_duplicate_reserved_and_unsafe_names() {
    let mut writer = ArchiveWriter::new(Vec::new(), &header(), "memory".into()).unwrap();
    writer.append(Member::new("a/b", vec![])).unwrap();
    for bad in ["a/b", "COMMIT", "MANIFEST.json", "../x", "/abs"] {
        let err = writer.append(Member::new(bad, vec![])).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage, "{bad}: {err}");
    }
}

#[test]
fn an_existing_archive_is_never_overwritten() {
    let (_dir, path, _) = sample();
    let err = ArchiveWriter::create_file(&path, &header()).err().unwrap();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn corrupting_any_member_is_refused_naming_it() {
    let (_dir, _path, bytes) = sample();
    for (name, offset, size) in member_spans(&bytes) {
        if size == 0 {
            continue;
        }
        let mut damaged = bytes.clone();
        damaged[(offset + size / 2) as usize] ^= 0x55;
        let err = open_bytes(&damaged).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage);
        let msg = err.to_string();
        let expected = match name.as_str() {
            "COMMIT" | "MANIFEST.json" => "COMMIT does not hold".to_string(),
            other => format!("member {other} is corrupt"),
        };
        assert!(msg.contains(&expected), "{name}: {msg}");
    }
}

#[test]
fn truncating_anywhere_before_commit_is_refused() {
    let (_dir, _path, bytes) = sample();
    let (_, commit_offset, commit_size) = member_spans(&bytes).pop().unwrap();
    let end = (commit_offset + commit_size) as usize;
    for cut in (0..end).step_by(97).chain([end - 1, 512, 1024]) {
        let err = open_bytes(&bytes[..cut]).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage, "cut at {cut}: {err}");
    }
    let err = open_bytes(&bytes[..end - 1]).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn a_member_removed_with_a_rewritten_manifest_is_still_caught() {
    // Rebuild the archive without one chunk but with the original manifest and COMMIT: the
    // manifest lists a member that is missing.
    let (_dir, _path, bytes) = sample();
    let spans = member_spans(&bytes);
    let victim = spans
        .iter()
        .find(|(n, _, _)| n.ends_with(".copy.zst"))
        .unwrap()
        .0
        .clone();
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(bytes.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        if name == victim {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let mut h = entry.header().clone();
        out.append_data(&mut h, &name, data.as_slice()).unwrap();
    }
    let rebuilt = out.into_inner().unwrap();
    let msg = open_bytes(&rebuilt).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("member {victim} is missing")),
        "{msg}"
    );
}

/// Builds a tar whose entries are given raw, bypassing the writer's checks.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_cksum();
        out.append(&h, *data).unwrap();
    }
    out.into_inner().unwrap()
}

#[test]
fn unsafe_entries_are_refused() {
    for (name, kind) in [
        ("../evil", tar::EntryType::Regular),
        ("/etc/evil", tar::EntryType::Regular),
        ("link", tar::EntryType::Symlink),
        ("hard", tar::EntryType::Link),
        ("dir", tar::EntryType::Directory),
    ] {
        let bytes = raw_tar(&[
            ("HEADER.json", tar::EntryType::Regular, b"{}"),
            (name, kind, b""),
            ("COMMIT", tar::EntryType::Regular, b"x"),
        ]);
        let msg = open_bytes(&bytes).unwrap_err().to_string();
        assert!(
            msg.contains("unsafe name") || msg.contains("only regular files"),
            "{name}: {msg}"
        );
    }
    let msg = open_bytes(b"").unwrap_err().to_string();
    assert!(msg.contains("no COMMIT"), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(open_bytes(&bytes).is_err());
    }

    #[test]
    fn any_damage_to_a_valid_archive_is_refused(
        member in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (_dir, _path, bytes) = SAMPLE.with(|s| s.clone());
        let spans = member_spans(&bytes);
        let mut damaged = bytes.clone();
        if truncate {
            let (_, off, size) = spans.last().unwrap();
            damaged.truncate(cut.index((off + size) as usize));
        } else {
            // Flip bits inside member data (tar padding carries no data and is not checked).
            let (_, off, size) = &spans[member.index(spans.len())];
            damaged[(*off + at.index(*size as usize) as u64) as usize] ^= mask;
        }
        let result = open_bytes(&damaged);
        prop_assert!(result.is_err());
        prop_assert_eq!(result.unwrap_err().exit_code(), ExitCode::Usage);
    }
}

thread_local! {
    static SAMPLE: (std::rc::Rc<tempfile::TempDir>, PathBuf, Vec<u8>) = {
        let (dir, path, bytes) = sample();
        (std::rc::Rc::new(dir), path, bytes)
    };
}
