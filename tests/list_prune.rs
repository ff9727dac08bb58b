//! `list` and `prune` against real archive files: retention decisions, verification stamps,
//! incomplete files left alone, and the directory lock.

mod common;

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use common::dbkeeper;
use dbkeeper::archive::catalog;
use dbkeeper::archive::writer::ArchiveWriter;
use dbkeeper::archive::{Header, Manifest, Member, Source};
use dbkeeper::Engine;
use predicates::prelude::*;

/// A complete (data-less) archive of `shop` created at `at`.
fn write_archive(dir: &Path, at: DateTime<Utc>) -> PathBuf {
    write_archive_of(dir, at, "shop", "dbkeeper")
}

/// A complete (data-less) archive of `database`, named `<prefix>-<time>.dbk.tar`.
fn write_archive_of(dir: &Path, at: DateTime<Utc>, database: &str, prefix: &str) -> PathBuf {
    let header = Header::new(
        at,
        vec![Source {
            engine: Engine::Postgres,
            url: format!("postgres://app:***@db/{database}"),
            database: database.into(),
            server_version: "PostgreSQL 15".into(),
            system_identifier: None,
            snapshot: None,
            consistency: "test".into(),
        }],
    );
    let path = dir.join(format!("{prefix}-{}.dbk.tar", at.format("%Y%m%dT%H%M%SZ")));
    let mut manifest = Manifest::new(&header);
    let mut writer = ArchiveWriter::create_file(&path, &header).unwrap();
    writer
        .append(Member::new(
            "postgres/schema/pre-data.sql",
            b"-- empty\n".to_vec(),
        ))
        .unwrap();
    writer.finish_file(&mut manifest).unwrap()
}

fn day(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn list_shows_complete_archives_and_flags_damaged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_archive(dir.path(), day(1, 2));
    // A truncated copy (no COMMIT) and a partial file from an interrupted run.
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(
        dir.path().join("dbkeeper-truncated.dbk.tar"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    std::fs::write(dir.path().join("dbkeeper-x.dbk.tar.partial"), b"half").unwrap();

    let archives = catalog::list_archives(dir.path()).unwrap();
    assert_eq!(archives.len(), 2, "the .partial file is not an archive");
    let complete: Vec<_> = archives.iter().filter(|a| a.complete).collect();
    assert_eq!(complete.len(), 1);
    assert_eq!(complete[0].path, good);
    let broken = archives.iter().find(|a| !a.complete).unwrap();
    assert!(
        broken.problem.as_deref().unwrap().contains("COMMIT"),
        "{broken:?}"
    );

    let out = dbkeeper(dir.path())
        .args(["list", "--json", "."])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["archives"].as_array().unwrap().len(), 2);
    dbkeeper(dir.path())
        .args(["list", "."])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("INCOMPLETE").and(predicate::str::contains("not verified")),
        );
}

#[test]
fn prune_applies_the_policy_keeps_newest_verified_and_ignores_incomplete_files() {
    let dir = tempfile::tempdir().unwrap();
    // Two per day for four days; the oldest one is the only verified archive.
    let mut paths = Vec::new();
    for d in 1..=4 {
        for h in [1, 13] {
            paths.push(write_archive(dir.path(), day(d, h)));
        }
    }
    catalog::write_stamp(&paths[0], "archive").unwrap();
    std::fs::write(dir.path().join("notes.dbk.tar"), b"not an archive at all").unwrap();

    // Dry run deletes nothing.
    let before = names(dir.path());
    dbkeeper(dir.path())
        .args(["prune", ".", "--keep-daily", "2", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("would delete"));
    assert_eq!(names(dir.path()), before);

    dbkeeper(dir.path())
        .args(["prune", ".", "--keep-daily", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("newest verified archive"));
    let left = names(dir.path());
    let expect = |at: DateTime<Utc>| format!("dbkeeper-{}.dbk.tar", at.format("%Y%m%dT%H%M%SZ"));
    assert!(left.contains(&expect(day(4, 13))), "{left:?}");
    assert!(left.contains(&expect(day(3, 13))), "{left:?}");
    assert!(
        left.contains(&expect(day(1, 1))),
        "newest verified must survive: {left:?}"
    );
    assert!(!left.contains(&expect(day(4, 1))), "{left:?}");
    assert!(!left.contains(&expect(day(2, 13))), "{left:?}");
    assert!(
        left.contains(&"notes.dbk.tar".to_string()),
        "not an archive: never deleted"
    );
    assert!(
        left.iter().any(|n| n.ends_with(".verified.json")),
        "stamp of a kept archive stays"
    );
}

#[test]
fn prune_without_a_policy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_archive(dir.path(), day(1, 1));
    dbkeeper(dir.path())
        .args(["prune", "."])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--keep-last"));
    assert_eq!(names(dir.path()).len(), 1);
}

#[test]
fn prune_policy_comes_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    for d in 1..=3 {
        write_archive(dir.path(), day(d, 0));
    }
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[retention]\nkeep_last = 1\n",
    )
    .unwrap();
    dbkeeper(dir.path()).args(["prune", "."]).assert().success();
    let left: Vec<_> = names(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".dbk.tar"))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn prune_refuses_while_another_run_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    write_archive(dir.path(), day(1, 1));
    let _held = dbkeeper::dirlock::DirLock::acquire(dir.path(), "backup").unwrap();
    dbkeeper(dir.path())
        .args(["prune", ".", "--keep-last", "1"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("locked by another dbkeeper run"));
}

#[test]
fn a_stamp_stops_counting_when_the_archive_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_archive(dir.path(), day(1, 1));
    catalog::write_stamp(&path, "archive").unwrap();
    assert!(catalog::read_stamp(&path).is_some());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 512]);
    std::fs::write(&path, bytes).unwrap();
    assert!(catalog::read_stamp(&path).is_none());
}

/// Archives of two databases in one directory are two series: keeping the last one keeps the
/// newest of each, never deleting the quiet database's only archive.
#[test]
fn prune_applies_the_policy_to_each_source_separately() {
    let dir = tempfile::tempdir().unwrap();
    write_archive_of(dir.path(), day(1, 2), "reports", "reports");
    for d in [2, 3, 4] {
        write_archive(dir.path(), day(d, 2));
    }
    let out = dbkeeper(dir.path())
        .args(["prune", ".", "--keep-last", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        names(dir.path()),
        vec![
            "dbkeeper-20261104T020000Z.dbk.tar",
            "reports-20261101T020000Z.dbk.tar"
        ],
        "{stdout}"
    );
    assert!(stdout.contains("[postgres db/reports]"), "{stdout}");
}
