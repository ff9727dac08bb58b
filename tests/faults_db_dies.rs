//! The database server dies in the middle of a backup or a restore (private servers, stopped
//! the hard way: the shared test servers are never touched). dbkeeper must exit 3 with a message
//! naming the engine, leave no archive (not even a `.partial`), and a restore target that
//! `--mode replace` recovers once the server is back.

mod common;
#[path = "common/private_server.rs"]
mod private_server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use private_server::{PrivateMongo, PrivatePg};

/// Starts dbkeeper with a clean environment, output captured.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbkeeper"));
    for var in [
        "DBKEEPER_PG_URL",
        "DATABASE_URL",
        "DBKEEPER_MONGO_URL",
        "MONGODB_URI",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_until(what: &str, child: &mut Child, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "dbkeeper finished before {what}: make the dataset bigger"
        );
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the process (it must give up by itself, within a minute).
fn finish(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    rx.recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("dbkeeper (pid {pid}) hung after its server died"))
}

/// The archive-like files in `dir`: finished or partial.
fn archives_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().contains(".tar"))
                .collect()
        })
        .unwrap_or_default()
}

fn largest_file(dir: &Path) -> u64 {
    archives_in(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .max()
        .unwrap_or(0)
}

fn assert_failed_naming(output: &Output, engine: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains(engine),
        "the message names no {engine}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn postgres_dying_mid_backup_or_mid_restore_fails_cleanly_and_replace_recovers() {
    let pg = PrivatePg::start();
    pg.psql("postgres", "CREATE DATABASE src");
    pg.psql(
        "src",
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 200000) i;",
    );
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let out = backups.display().to_string();
    let src = pg.url("src");
    let backup_args = [
        "--pg-url",
        &src,
        "backup",
        "--output",
        &out,
        "--jobs",
        "1",
        "--chunk-bytes",
        "65536",
        "--compression-level",
        "6",
    ];

    // Backup: the server stops once data is flowing.
    let mut child = spawn(dir.path(), &backup_args);
    wait_until("2 MiB of archive", &mut child, || {
        largest_file(&backups) >= 2 << 20
    });
    pg.stop_immediately();
    let output = finish(child);
    assert_failed_naming(&output, "PostgreSQL");
    assert!(
        archives_in(&backups).is_empty(),
        "an archive or partial file was left: {:?}",
        archives_in(&backups)
    );

    // Restore: take a good archive, then stop the server while it loads.
    pg.start_again();
    let archive = dir.path().join("good.dbk.tar");
    let status = spawn(
        dir.path(),
        &[
            "--pg-url",
            &src,
            "backup",
            "--chunk-bytes",
            "65536",
            "--output",
            &archive.display().to_string(),
        ],
    )
    .wait()
    .unwrap();
    assert!(status.success());
    let dst = pg.url("dst");
    let restore_args = [
        "--pg-url",
        &dst,
        "restore",
        &archive.display().to_string(),
        "--jobs",
        "1",
    ];
    let mut child = spawn(dir.path(), &restore_args);
    wait_until("rows in the target", &mut child, || {
        let out = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-d",
                &dst,
                "-c",
                "SELECT count(*) FROM big",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .is_ok_and(|n| n > 0)
    });
    pg.stop_immediately();
    let output = finish(child);
    assert_failed_naming(&output, "PostgreSQL");

    // Back up again: the half-restored target is refused, then recovered by --mode replace.
    pg.start_again();
    let refused = spawn(dir.path(), &restore_args[..4])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let mut replace = restore_args.to_vec();
    replace.extend(["--mode", "replace"]);
    let recovered = spawn(dir.path(), &replace).wait_with_output().unwrap();
    assert!(
        recovered.status.success(),
        "{}",
        String::from_utf8_lossy(&recovered.stderr)
    );
    assert_eq!(pg.psql("dst", "SELECT count(*) FROM big"), "200000");
}

async fn seed_mongo(url: &str, docs: usize) {
    let client = mongodb::Client::with_uri_str(url).await.unwrap();
    let coll = client.database("src").collection("items");
    for batch in 0..docs / 5000 {
        let items: Vec<_> = (0..5000)
            .map(|i| doc! { "n": (batch * 5000 + i) as i64, "pad": "x".repeat(200) })
            .collect();
        coll.insert_many(items).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_dying_mid_backup_or_mid_restore_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let out = backups.display().to_string();
    let mut mongo = PrivateMongo::start();
    seed_mongo(&mongo.url("src"), 40_000).await;
    let src = mongo.url("src");

    // A good archive first, for the restore below.
    let archive = dir.path().join("good.dbk.tar");
    let done = spawn(
        dir.path(),
        &[
            "--mongo-url",
            &src,
            "backup",
            "--chunk-bytes",
            "16384",
            "--output",
            &archive.display().to_string(),
        ],
    )
    .wait_with_output()
    .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    // Backup: the server is killed as soon as the dump starts writing (it then needs about a
    // second to read every document).
    let mut child = spawn(
        dir.path(),
        &[
            "--mongo-url",
            &src,
            // The driver waits this long for a server to come back before giving up.
            "--connect-timeout",
            "2",
            "backup",
            "--output",
            &out,
            "--jobs",
            "1",
            "--chunk-bytes",
            "16384",
        ],
    );
    wait_until("the partial archive", &mut child, || {
        !archives_in(&backups).is_empty()
    });
    mongo.kill();
    let output = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_failed_naming(&output, "MongoDB");
    assert!(
        archives_in(&backups).is_empty(),
        "an archive or partial file was left: {:?}",
        archives_in(&backups)
    );

    // Restore into another private server, killed once documents arrive.
    let mut target = PrivateMongo::start();
    let client = mongodb::Client::with_uri_str(target.url("dst"))
        .await
        .unwrap();
    let coll = client
        .database("dst")
        .collection::<mongodb::bson::Document>("items");
    let mut child = spawn(
        dir.path(),
        &[
            "--mongo-url",
            &target.url("dst"),
            "--connect-timeout",
            "2",
            "restore",
            &archive.display().to_string(),
            "--jobs",
            "1",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "restore finished first"
        );
        assert!(Instant::now() < deadline, "the restore never got going");
        if coll.estimated_document_count().await.unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    target.kill();
    let output = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_failed_naming(&output, "MongoDB");
}
