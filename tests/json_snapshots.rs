//! Snapshot tests of the `--json` documents scripts depend on (docs/json.md). A field renamed or
//! removed fails here; volatile values (times, paths, sizes, versions) are redacted.

mod common;

use chrono::{TimeZone, Utc};
use common::{dbkeeper, PgTestDb};
use dbkeeper::archive::writer::ArchiveWriter;
use dbkeeper::archive::{Header, Manifest, Member, Source};
use dbkeeper::Engine;

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("migrations");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("V1__accounts.sql"),
        "CREATE TABLE accounts (id int PRIMARY KEY);\n",
    )
    .unwrap();
    std::fs::write(m.join("V1__accounts.down.sql"), "DROP TABLE accounts;\n").unwrap();
    std::fs::write(m.join("V2__ledger.sql"), "CREATE TABLE ledger (id int);\n").unwrap();
    dir
}

#[tokio::test]
async fn migrate_json_documents() {
    let db = PgTestDb::create().await;
    let dir = migrations();
    let run = |args: &[&str]| {
        dbkeeper(dir.path())
            .args(["--pg-url", &db.url, "--json", "migrate"])
            .args(args)
            .output()
            .unwrap()
    };
    insta::assert_json_snapshot!("migrate_up_dry_run", json(&run(&["up", "--dry-run"])));
    insta::assert_json_snapshot!("migrate_up", json(&run(&["up", "--to", "1"])), {
        ".runs[].steps[].duration_ms" => "[ms]",
    });
    insta::assert_json_snapshot!("migrate_status", json(&run(&["status"])), {
        ".engines[].target" => "[target]",
        // Only real times: a pending migration's `null` stays visible.
        ".engines[].migrations[].applied_on" => insta::dynamic_redaction(|value, _| {
            if value.as_str().is_some() { "[time]".into() } else { value }
        }),
    });
    insta::assert_json_snapshot!("migrate_down_dry_run", json(&run(&["down", "--dry-run"])));
}

fn write_archive(dir: &std::path::Path, day: u32) {
    let at = Utc.with_ymd_and_hms(2026, 11, day, 2, 30, 0).unwrap();
    let header = Header::new(
        at,
        vec![Source {
            engine: Engine::Postgres,
            url: "postgres://app:***@db/shop".into(),
            database: "shop".into(),
            server_version: "PostgreSQL 15".into(),
            system_identifier: None,
            snapshot: None,
            consistency: "test".into(),
        }],
    );
    let path = dir.join(format!("dbkeeper-202611{day:02}T023000Z.dbk.tar"));
    let mut manifest = Manifest::new(&header);
    let mut writer = ArchiveWriter::create_file(&path, &header).unwrap();
    writer
        .append(Member::new(
            "postgres/schema/pre-data.sql",
            b"-- empty\n".to_vec(),
        ))
        .unwrap();
    writer.finish_file(&mut manifest).unwrap();
}

#[test]
fn list_and_prune_json_documents() {
    let dir = tempfile::tempdir().unwrap();
    for day in [20, 21, 22] {
        write_archive(dir.path(), day);
    }
    let list = dbkeeper(dir.path())
        .args(["list", ".", "--json"])
        .output()
        .unwrap();
    insta::assert_json_snapshot!("list", json(&list), {
        ".archives[].size" => "[size]",
        ".archives[].finished_at" => "[time]",
    });
    let prune = dbkeeper(dir.path())
        .args(["prune", ".", "--keep-last", "2", "--dry-run", "--json"])
        .output()
        .unwrap();
    insta::assert_json_snapshot!("prune_dry_run", json(&prune));
}
