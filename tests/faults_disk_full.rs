//! The disk fills up during a backup: dbkeeper must exit non-zero with the operating system's
//! "No space left on device" and the path it was writing, and leave nothing that looks like an
//! archive (not even a `.partial`, which would hold the space the next run needs).
//!
//! A full filesystem is real: a 1 MiB tmpfs mounted for the test (needs root, as in CI; set
//! `DBKEEPER_TEST_NO_MOUNT=1` to opt out explicitly on a machine where mounting is impossible),
//! and `/dev/full` as the stdout of `backup --output -`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{dbkeeper, unique_name, PgTestDb};

/// A source whose archive is several MiB even compressed (random hex compresses about 2:1).
async fn incompressible_source() -> PgTestDb {
    let db = PgTestDb::create().await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE filler (id int PRIMARY KEY, v text);
             INSERT INTO filler
             SELECT i, md5(random()::text) || md5(random()::text) || md5(random()::text)
             FROM generate_series(1, 100000) i;",
        )
        .await
        .unwrap();
    db
}

/// A tmpfs of `size`, unmounted (and its mount point removed) when dropped.
struct SmallFilesystem {
    path: PathBuf,
}

impl SmallFilesystem {
    fn mount(size: &str) -> Option<SmallFilesystem> {
        let path = std::env::temp_dir().join(unique_name("dbk_full"));
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallFilesystem { path }),
            _ => {
                let _ = std::fs::remove_dir(&path);
                None
            }
        }
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn archive_like_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".dbk.tar"))
        .collect()
}

/// Exit 3 (runtime failure), the OS's reason once, no panic. Returns stderr.
fn assert_out_of_space(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("No space left on device"),
        "the OS error is reported: {stderr}"
    );
    assert_eq!(
        stderr.matches("os error 28").count(),
        1,
        "the cause is said once: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test]
async fn a_full_disk_fails_the_backup_and_leaves_no_archive() {
    let Some(disk) = SmallFilesystem::mount("1m") else {
        if std::env::var_os("DBKEEPER_TEST_NO_MOUNT").is_some() {
            eprintln!("DBKEEPER_TEST_NO_MOUNT is set: the full-disk test was opted out");
            return;
        }
        panic!(
            "could not mount a 1 MiB tmpfs (needs root); run as root, or set \
             DBKEEPER_TEST_NO_MOUNT=1 to opt out of this test explicitly"
        );
    };
    let source = incompressible_source().await;
    let workdir = tempfile::tempdir().unwrap();
    let output = dbkeeper(workdir.path())
        .args(["--pg-url", &source.url, "backup", "--output"])
        .arg(&disk.path)
        .output()
        .unwrap();
    let stderr = assert_out_of_space(&output);
    assert!(
        stderr.contains(&*disk.path.to_string_lossy()),
        "the path being written is named: {stderr}"
    );
    assert_eq!(
        archive_like_files(&disk.path),
        Vec::<String>::new(),
        "no archive and no .partial is left on the full disk"
    );

    // The space is back: the next backup into the same directory succeeds (nothing left behind
    // holds it, and the failed run's directory lock was released).
    let small = PgTestDb::create().await;
    small
        .client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .await
        .unwrap();
    dbkeeper(workdir.path())
        .args(["--pg-url", &small.url, "backup", "--output"])
        .arg(&disk.path)
        .assert()
        .success();
    assert_eq!(archive_like_files(&disk.path).len(), 1);
}

#[tokio::test]
async fn a_full_stdout_fails_the_streamed_backup() {
    let source = incompressible_source().await;
    let workdir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dbkeeper"))
        .env_remove("DBKEEPER_PG_URL")
        .env_remove("DATABASE_URL")
        .env_remove("DBKEEPER_MONGO_URL")
        .env_remove("MONGODB_URI")
        .args(["--pg-url", &source.url, "backup", "--output", "-"])
        .current_dir(workdir.path())
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = assert_out_of_space(&output);
    assert!(stderr.contains("to archive stdout"), "{stderr}");
}
