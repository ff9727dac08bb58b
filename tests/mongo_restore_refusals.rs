//! A damaged MongoDB archive is refused before the target database is touched: a flipped byte
//! in a data or metadata member, truncation at every kind of place (member boundaries, inside a
//! tar header, inside member data), and a missing COMMIT. After each attempt the target has no
//! collections at all.

mod common;

use std::path::{Path, PathBuf};

use dbkeeper::mongo::dump::DumpOptions;
use dbkeeper::mongo::restore::RestoreOptions;
use dbkeeper::ExitCode;
use mongodb::bson::{doc, Document};

use common::mongo_archive::*;
use common::MongoTestDb;

/// Where one member sits in the tar file.
#[derive(Debug)]
struct Placement {
    name: String,
    header_at: u64,
    data_at: u64,
    size: u64,
}

fn placements(path: &Path) -> Vec<Placement> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            Placement {
                name: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                header_at: entry.raw_header_position(),
                data_at: entry.raw_file_position(),
                size: entry.size(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Flip one bit of the byte at this offset.
    Flip(u64),
    /// Keep only the bytes before this offset.
    Cut(u64),
}

fn damaged_copy(original: &Path, dir: &Path, label: &str, damage: Damage) -> PathBuf {
    let mut bytes = std::fs::read(original).unwrap();
    match damage {
        Damage::Flip(at) => bytes[at as usize] ^= 0x40,
        Damage::Cut(at) => bytes.truncate(at as usize),
    }
    let path = dir.join(format!("{label}.dbk.tar"));
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn source_with_data() -> MongoTestDb {
    let source = MongoTestDb::create().await;
    let db = source.db().await;
    for name in ["orders", "customers"] {
        db.collection::<Document>(name)
            .insert_many((0..400_i32).map(
                |i| doc! { "_id": i, "payload": format!("{name} {i} {}", "x".repeat(i as usize % 90)) },
            ))
            .await
            .unwrap();
    }
    db.run_command(doc! { "create": "big_orders", "viewOn": "orders", "pipeline": [{ "$match": { "_id": { "$gt": 100 } } }] })
        .await
        .unwrap();
    source
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_archives_are_refused_before_the_target_is_touched() {
    let source = source_with_data().await;
    let target = MongoTestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let options = DumpOptions {
        chunk_bytes: 4 << 10,
        ..DumpOptions::default()
    };
    let (original, summary) = dump_to_archive(&source, dir.path(), &options).await;
    assert_eq!(summary.documents, 800);
    let members = placements(&original);
    let find = |prefix: &str| {
        members
            .iter()
            .find(|m| m.name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no member {prefix}*: {members:?}"))
    };
    let data = find("mongo/data/");
    let meta = find("mongo/meta/");
    let commit = find("COMMIT");
    let manifest = find("MANIFEST.json");
    let data_chunks: Vec<&Placement> = members
        .iter()
        .filter(|m| m.name.starts_with("mongo/data/"))
        .collect();
    assert!(data_chunks.len() > 4, "{members:?}");
    let middle_chunk = data_chunks[data_chunks.len() / 2];

    use Damage::{Cut, Flip};
    let damages = [
        ("flipped-data-byte", Flip(data.data_at + data.size / 2)),
        (
            "flipped-gzip-trailer",
            Flip(middle_chunk.data_at + middle_chunk.size - 1),
        ),
        ("flipped-metadata-byte", Flip(meta.data_at + 3)),
        (
            "flipped-manifest-byte",
            Flip(manifest.data_at + manifest.size / 2),
        ),
        ("flipped-commit-byte", Flip(commit.data_at)),
        ("no-commit", Cut(commit.header_at)),
        ("cut-before-manifest", Cut(manifest.header_at)),
        ("cut-at-chunk-boundary", Cut(middle_chunk.header_at)),
        ("cut-at-first-data-member", Cut(data.header_at)),
        ("cut-inside-tar-header", Cut(middle_chunk.header_at + 100)),
        (
            "cut-inside-chunk-data",
            Cut(middle_chunk.data_at + middle_chunk.size / 2),
        ),
        ("cut-inside-commit", Cut(commit.data_at + 10)),
        ("empty-file", Cut(0)),
    ];
    let cases: Vec<(&str, PathBuf)> = damages
        .into_iter()
        .map(|(label, damage)| (label, damaged_copy(&original, dir.path(), label, damage)))
        .collect();

    let target_db = target.db().await;
    for (label, path) in &cases {
        let err = restore_from(path, &target, &RestoreOptions::default())
            .await
            .expect_err(label);
        assert_eq!(err.exit_code(), ExitCode::Usage, "{label}: {err}");
        let message = err.to_string();
        assert!(
            message.contains("archive") && message.contains(&path.display().to_string()),
            "{label}: the error names the archive: {message}"
        );
        assert!(
            collection_names(&target_db).await.is_empty(),
            "{label}: the target was touched"
        );
    }

    // The undamaged archive restores into that same, untouched target.
    let report = restore_from(&original, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(report.documents, 800);
    assert_eq!(
        collection_names(&target_db).await,
        ["big_orders", "customers", "orders"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_without_a_mongo_dump_is_a_usage_error() {
    use dbkeeper::archive::writer::ArchiveWriter;
    use dbkeeper::archive::{Header, Manifest};
    let target = MongoTestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let header = Header::new(chrono::Utc::now(), vec![]);
    let writer = ArchiveWriter::create_file(&dir.path().join("pg-only.dbk.tar"), &header).unwrap();
    let path = writer.finish_file(&mut Manifest::new(&header)).unwrap();
    let err = restore_from(&path, &target, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::Usage);
    assert!(err.to_string().contains("no MongoDB dump"), "{err}");
    assert!(collection_names(&target.db().await).await.is_empty());
}

/// `restore --mode replace` onto the very database the archive came from would overwrite live
/// data with an older copy: refused (4) before anything is touched, also when the URL names the
/// server differently (`localhost` for `127.0.0.1`), and whether the database comes from the URL
/// or from `--mongo-db`.
#[tokio::test]
async fn restoring_onto_the_source_database_is_refused() {
    let source = source_with_data().await;
    let dir = tempfile::tempdir().unwrap();
    common::dbkeeper(dir.path())
        .args(["--mongo-url", &source.url, "backup", "--output", "."])
        .assert()
        .success();
    let archive = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".dbk.tar"))
        .unwrap();
    // A write after the backup, which a restore onto the source would lose.
    let db = source.db().await;
    db.collection::<Document>("orders")
        .insert_one(doc! { "_id": 100_000, "payload": "written after the backup" })
        .await
        .unwrap();

    let server = common::mongo_server_url();
    let renamed_host = server.replace("127.0.0.1", "localhost");
    let attempts: Vec<Vec<String>> = vec![
        vec!["--mongo-url".into(), source.url.clone()],
        vec![
            "--mongo-url".into(),
            common::mongo_url_with_db(&renamed_host, &source.name),
        ],
        vec![
            "--mongo-url".into(),
            server.clone(),
            "--mongo-db".into(),
            source.name.clone(),
        ],
    ];
    for attempt in attempts {
        let out = common::dbkeeper(dir.path())
            .args(&attempt)
            .args(["restore", "--mode", "replace"])
            .arg(&archive)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{attempt:?}: {stderr}");
        assert!(
            stderr.contains("it is the database this archive was taken from"),
            "{attempt:?}: {stderr}"
        );
    }
    let kept = db
        .collection::<Document>("orders")
        .count_documents(doc! { "_id": 100_000 })
        .await
        .unwrap();
    assert_eq!(kept, 1, "the write made after the backup is still there");

    // Asked for explicitly (undoing a migration), the source is replaced by the archive.
    common::dbkeeper(dir.path())
        .args(["--mongo-url", &source.url, "restore", "--mode", "replace"])
        .arg(&archive)
        .arg("--overwrite-source")
        .assert()
        .success();
    let after = db
        .collection::<Document>("orders")
        .count_documents(doc! { "_id": 100_000 })
        .await
        .unwrap();
    assert_eq!(after, 0, "the source is back to the archive's state");
}
