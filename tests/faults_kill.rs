//! Killed processes: a backup or restore SIGKILLed at several points loses nothing, and a
//! SIGTERMed backup exits 130 leaving nothing behind.
//!
//! - Backup killed early, mid-table and while writing the manifest: no file ever appears at an
//!   archive's final name; the leftover `.partial` is not an archive to `list`, `prune` or
//!   `verify`; the next backup into the directory removes it (and takes over the dead run's
//!   directory lock).
//! - Restore killed mid-data and before post-data: the target is marked as an unfinished
//!   restore (never mistaken for a good one), `--mode create` refuses it saying so, and
//!   `--mode replace` recovers to a verified state. The same for a MongoDB restore killed
//!   after its documents, before its indexes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    dbkeeper, pg_connect, pg_server_url, pg_url_with_db, unique_name, MongoTestDb, PgTestDb,
};
use predicates::prelude::*;

const ROWS: i64 = 200_000;

/// A source database with one table big enough that a backup or restore takes a moment.
async fn big_source() -> PgTestDb {
    let db = PgTestDb::create().await;
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE big (id int PRIMARY KEY, v text);
             INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, {ROWS}) i;
             CREATE INDEX big_v ON big (v);
             CREATE SEQUENCE counter; SELECT setval('counter', 42);"
        ))
        .await
        .unwrap();
    db
}

/// A backup of `big_source` slowed down (one job, small chunks, level-6 gzip) so a test can
/// interrupt it mid-table.
fn slow_backup_args(url: &str, output: &Path) -> Vec<String> {
    let output = output.display().to_string();
    [
        "--pg-url",
        url,
        "backup",
        "--output",
        &output,
        "--jobs",
        "1",
        "--chunk-bytes",
        "65536",
        "--compression-level",
        "6",
    ]
    .map(String::from)
    .to_vec()
}

/// Starts the dbkeeper binary with a clean environment; stderr goes to `<dir>/stderr.log`.
fn spawn(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Child, PathBuf) {
    let log = dir.join(format!("{}.stderr.log", unique_name("run")));
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
    cmd.envs(envs.iter().copied())
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    (cmd.spawn().unwrap(), log)
}

/// Polls `condition` every 5 ms for up to 60 s.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL, then reap (a zombie still has a /proc entry, which would keep its lock alive).
fn kill(mut child: Child) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process finished before it could be killed: make the dataset bigger"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".stderr.log"))
        .collect();
    names.sort();
    names
}

fn partial_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".dbk.tar.partial"))
        .collect()
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// As soon as the partial file exists.
    Early,
    /// Once a few MiB of table data are on disk.
    MidTable,
    /// Paused (test hook) after the data, before MANIFEST.json and COMMIT.
    BeforeManifest,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_never_leaves_an_archive_and_the_next_backup_cleans_up() {
    let source = big_source().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let out = backups.display().to_string();
    let args = slow_backup_args(&source.url, &backups);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for point in [
        KillPoint::Early,
        KillPoint::MidTable,
        KillPoint::BeforeManifest,
    ] {
        let envs: &[(&str, &str)] = match point {
            KillPoint::BeforeManifest => &[("DBKEEPER_TEST_PAUSE_BEFORE", "manifest")],
            _ => &[],
        };
        let (child, log) = spawn(dir.path(), &args, envs);
        match point {
            KillPoint::Early => wait_until("the partial file", || {
                backups.is_dir() && !partial_files(&backups).is_empty()
            }),
            KillPoint::MidTable => wait_until("3 MiB in the partial file", || {
                backups.is_dir()
                    && partial_files(&backups)
                        .iter()
                        .any(|p| size_of(p) >= 3 << 20)
            }),
            KillPoint::BeforeManifest => wait_until("the pause before the manifest", || {
                std::fs::read_to_string(&log)
                    .unwrap()
                    .contains("test pause before manifest")
            }),
        }
        kill(child);
        let names = files_in(&backups);
        assert!(
            !names.iter().any(|n| n.ends_with(".dbk.tar")),
            "{point:?}: a file appeared at a final archive name: {names:?}"
        );
        assert_eq!(partial_files(&backups).len(), 1, "{point:?}: {names:?}");

        // The leftover is not an archive to list, prune or verify.
        dbkeeper(dir.path())
            .args(["list", &out])
            .assert()
            .success()
            .stdout(predicate::str::contains("no archives"));
        dbkeeper(dir.path())
            .args(["prune", &out, "--keep-last", "1", "--json"])
            .assert()
            .success()
            .stdout(predicate::str::contains(r#""deleted": []"#));
        assert_eq!(
            partial_files(&backups).len(),
            1,
            "prune deleted the partial"
        );
        let partial = partial_files(&backups).pop().unwrap();
        dbkeeper(dir.path())
            .arg("verify")
            .arg(&partial)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("no COMMIT member"));

        // The next backup takes over the dead run's lock and removes its partial file.
        let json = dbkeeper(dir.path())
            .args(&args)
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let archive = PathBuf::from(report["archive"].as_str().unwrap());
        assert!(
            partial_files(&backups).is_empty(),
            "{point:?}: stale partial left: {:?}",
            files_in(&backups)
        );
        dbkeeper(dir.path())
            .arg("verify")
            .arg(&archive)
            .assert()
            .success();
        // Keep the directory to one archive per round (and the next run's name unique).
        std::fs::remove_file(&archive).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
    }
}

/// Regression: a backup killed with `--output FILE.tar` left `FILE.tar.partial`, and every
/// later run to the same file failed creating it (`O_EXCL`) until someone deleted it by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backup_to_a_named_file_does_not_block_the_next_one() {
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nightly.tar");
    std::fs::write(
        dir.path().join("nightly.tar.partial"),
        b"left by a killed run",
    )
    .unwrap();
    dbkeeper(dir.path())
        .args(["--pg-url", &source.url, "backup", "--output"])
        .arg(&file)
        .assert()
        .success();
    assert!(file.is_file());
    assert!(!dir.path().join("nightly.tar.partial").exists());
}

/// SIGTERM (systemd, `docker stop`, a CI timeout) is handled like Ctrl-C: exit 130 with
/// `dbkeeper: interrupted`, and the backup cleans up after itself instead of leaving its
/// `.partial` file and directory lock for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_interrupts_a_backup_cleanly_with_exit_130() {
    let source = big_source().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let args = slow_backup_args(&source.url, &backups);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut child, log) = spawn(dir.path(), &args, &[]);
    wait_until("1 MiB in the partial file", || {
        backups.is_dir()
            && partial_files(&backups)
                .iter()
                .any(|p| size_of(p) >= 1 << 20)
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before SIGTERM: make the dataset bigger"
    );
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the backup ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {stderr}");
    assert!(stderr.contains("dbkeeper: interrupted"), "{stderr}");
    let names = files_in(&backups);
    assert!(
        names.is_empty(),
        "SIGTERM left files behind (partial, lock or archive): {names:?}"
    );
}

/// Whether the target database carries dbkeeper's unfinished-restore mark.
async fn unfinished_mark(url: &str) -> Option<String> {
    let client = pg_connect(url).await;
    dbkeeper::postgres::restore::unfinished_restore(&client)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_restore_is_marked_unfinished_and_replace_recovers() {
    let source = big_source().await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.dbk.tar");
    dbkeeper(dir.path())
        .args([
            "--pg-url",
            &source.url,
            "backup",
            "--chunk-bytes",
            "65536",
            "--output",
        ])
        .arg(&archive)
        .assert()
        .success();
    let archive_arg = archive.display().to_string();

    for (label, pause) in [("mid-data", None), ("before post-data", Some("post-data"))] {
        let target_name = unique_name("dbk_killed");
        let target = pg_url_with_db(&pg_server_url(), &target_name);
        let _guard = DropDb(target_name.clone());
        let envs: Vec<(&str, &str)> = pause
            .map(|p| vec![("DBKEEPER_TEST_PAUSE_BEFORE", p)])
            .unwrap_or_default();
        let (child, log) = spawn(
            dir.path(),
            &["--pg-url", &target, "restore", &archive_arg, "--jobs", "1"],
            &envs,
        );
        match pause {
            Some(point) => wait_until("the pause", || {
                std::fs::read_to_string(&log)
                    .unwrap()
                    .contains(&format!("test pause before {point}"))
            }),
            None => {
                // Some chunks committed, not all.
                let admin = pg_connect(&pg_server_url()).await;
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(Instant::now() < deadline, "the restore never got going");
                    let exists = admin
                        .query_opt(
                            "SELECT 1 FROM pg_database WHERE datname = $1",
                            &[&target_name],
                        )
                        .await
                        .unwrap()
                        .is_some();
                    if exists {
                        let client = pg_connect(&target).await;
                        let rows = client
                            .query_opt("SELECT count(*) FROM big", &[])
                            .await
                            .ok()
                            .flatten()
                            .map(|r| r.get::<_, i64>(0))
                            .unwrap_or(0);
                        if rows > 0 {
                            assert!(rows < ROWS, "the load finished before the kill");
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        kill(child);

        // Never mistaken for a good restore: the mark says it did not finish...
        let mark = unfinished_mark(&target).await;
        assert!(
            mark.as_deref().is_some_and(|m| m.contains("a.dbk.tar")),
            "{label}: {mark:?}"
        );
        // ...`verify` against it reports it as incomplete, whatever its counts say...
        dbkeeper(dir.path())
            .args(["verify", &archive_arg, "--pg-url", &target])
            .assert()
            .code(1)
            .stdout(predicate::str::contains("never finished"));
        // ...and a plain restore refuses the half-restored target, saying why.
        dbkeeper(dir.path())
            .args(["--pg-url", &target, "restore", &archive_arg])
            .assert()
            .code(4)
            .stderr(predicate::str::contains("did not finish"))
            .stderr(predicate::str::contains("--mode replace"));
        // --mode replace recovers to a verified state, and the mark is gone.
        dbkeeper(dir.path())
            .args([
                "--pg-url",
                &target,
                "restore",
                &archive_arg,
                "--mode",
                "replace",
            ])
            .assert()
            .success()
            .stdout(predicate::str::contains("counts verified"));
        assert_eq!(unfinished_mark(&target).await, None, "{label}");
        let client = pg_connect(&target).await;
        let rows: i64 = client
            .query_one("SELECT count(*) FROM big", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, ROWS);
        let indexes: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'big'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(indexes, 2, "{label}: primary key and big_v");
    }
}

/// MongoDB's counterpart of the test above: a restore killed after a collection's documents
/// and before its index build has every document (counts pass), so only the unfinished-restore
/// mark tells. `verify` reports it, a plain rerun refuses saying the earlier restore did not
/// finish, `--mode replace` recovers and removes the mark.
#[tokio::test]
async fn a_killed_mongo_restore_is_marked_unfinished_and_replace_recovers() {
    use mongodb::bson::{doc, Document};
    let source = MongoTestDb::create().await;
    let events = source.db().await.collection::<Document>("events");
    let docs: Vec<Document> = (0..500).map(|i| doc! { "n": i }).collect();
    events.insert_many(docs).await.unwrap();
    events
        .create_index(mongodb::IndexModel::builder().keys(doc! { "n": 1 }).build())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("m.dbk.tar");
    dbkeeper(dir.path())
        .args(["--mongo-url", &source.url, "backup", "--output"])
        .arg(&archive)
        .assert()
        .success();
    let archive_arg = archive.display().to_string();

    let target = MongoTestDb::create().await;
    let (child, log) = spawn(
        dir.path(),
        &["--mongo-url", &target.url, "restore", &archive_arg],
        &[("DBKEEPER_TEST_PAUSE_BEFORE", "mongo-indexes")],
    );
    wait_until("the pause", || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("test pause before mongo-indexes")
    });
    kill(child);
    let restored = target.db().await.collection::<Document>("events");
    assert_eq!(restored.count_documents(doc! {}).await.unwrap(), 500);

    // `verify` says the restore never finished (the missing index alone would not say why)...
    dbkeeper(dir.path())
        .args(["verify", &archive_arg, "--mongo-url", &target.url])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("never finished"))
        .stdout(predicate::str::contains("m.dbk.tar"));
    // ...a plain restore refuses the half-restored target, saying why...
    dbkeeper(dir.path())
        .args(["--mongo-url", &target.url, "restore", &archive_arg])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("did not finish"))
        .stderr(predicate::str::contains("--mode replace"));
    // ...and --mode replace recovers: verified, indexes built, no mark left anywhere.
    dbkeeper(dir.path())
        .args(["--mongo-url", &target.url, "restore", &archive_arg])
        .args(["--mode", "replace"])
        .assert()
        .success()
        .stdout(predicate::str::contains("counts verified"));
    let names = target.db().await.list_collection_names().await.unwrap();
    assert_eq!(names, ["events"], "the marks collection is gone");
    let indexes = restored.list_index_names().await.unwrap();
    assert!(indexes.contains(&"n_1".to_string()), "{indexes:?}");
    dbkeeper(dir.path())
        .args(["verify", &archive_arg, "--mongo-url", &target.url])
        .assert()
        .success();
}

/// Drops a database by name when the test ends (unless it failed).
struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let name = self.0.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = pg_connect(&pg_server_url()).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            });
        })
        .join()
        .ok();
    }
}
