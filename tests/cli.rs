//! The CLI contract: help, version, exit codes, configuration errors, redaction, connecting.

mod common;

use std::time::{Duration, Instant};

use common::{dbkeeper, MongoTestDb, PgTestDb};
use predicates::prelude::*;

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        "migrate", "backup", "restore", "verify", "list", "prune", "ping",
    ] {
        dbkeeper(dir.path())
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: dbkeeper"));
    }
    for sub in [
        "status", "up", "down", "validate", "new", "baseline", "repair",
    ] {
        dbkeeper(dir.path())
            .args(["migrate", sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!("dbkeeper migrate {sub}")));
    }
}

#[test]
fn version_prints_the_crate_version() {
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path())
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path()).arg("frobnicate").assert().code(2);
    dbkeeper(dir.path())
        .args(["backup", "--compression-level", "25"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--compression-level"));
}

#[test]
fn no_engine_configured_says_how_to_configure_one() {
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path()).arg("ping").assert().code(2).stderr(
        predicate::str::contains("--pg-url").and(predicate::str::contains("DBKEEPER_MONGO_URL")),
    );
}

#[test]
fn malformed_config_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[postgres]\nurl = \"postgres://h/db\"\n[backup\n",
    )
    .unwrap();
    dbkeeper(dir.path())
        .arg("ping")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("dbkeeper.toml").and(predicate::str::contains("line 3")));

    dbkeeper(dir.path())
        .args(["--config", "missing.toml", "ping"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.toml"));
}

#[test]
fn malformed_url_names_the_flag_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path())
        .args(["--pg-url", "postgres://app:hunter2@db:notaport/x", "ping"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--pg-url").and(predicate::str::contains("hunter2").not()),
        );
    dbkeeper(dir.path())
        .args(["--mongo-url", "http://app:hunter2@db/x", "ping"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("mongodb://").and(predicate::str::contains("hunter2").not()),
        );
}

#[test]
fn unreachable_databases_fail_fast_with_exit_3_naming_the_host_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback refuses at once; the timeout bounds the case where nothing answers.
    for (flag, url, host) in [
        (
            "--pg-url",
            "postgres://app:hunter2@127.0.0.1:1/prod",
            "127.0.0.1:1",
        ),
        (
            "--mongo-url",
            "mongodb://app:hunter2@127.0.0.1:1/prod",
            "127.0.0.1:1",
        ),
    ] {
        let started = Instant::now();
        let assert = dbkeeper(dir.path())
            .args([flag, url, "--connect-timeout", "2", "ping"])
            .assert()
            .code(3);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        assert!(stderr.contains(host), "{stderr}");
        assert!(!stderr.contains("hunter2"), "password leaked: {stderr}");
        assert!(
            stderr.lines().count() <= 2,
            "expected one clear line: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "connect did not time out"
        );
    }
}

#[test]
fn prune_of_a_missing_backup_directory_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path())
        .args(["prune", "no-such-dir", "--keep-last", "1"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("backup directory no-such-dir does not exist")
                .and(predicate::str::contains("panicked").not()),
        );
}

#[tokio::test]
async fn ping_reaches_both_real_services() {
    let pg = PgTestDb::create().await;
    let mongo = MongoTestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dbkeeper(dir.path())
        .env("DBKEEPER_PG_URL", &pg.url)
        .env("DBKEEPER_MONGO_URL", &mongo.url)
        .args(["ping", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let servers = report["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{report}");
    assert!(servers[0]["version"]
        .as_str()
        .unwrap()
        .starts_with("PostgreSQL "));
    assert!(servers[1]["version"]
        .as_str()
        .unwrap()
        .starts_with("MongoDB "));
    assert!(servers[1]["target"]
        .as_str()
        .unwrap()
        .ends_with(&mongo.name));
}

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        dbkeeper(dir.path())
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("migrate").and(predicate::str::contains("backup")));
    }
    dbkeeper(dir.path())
        .arg("man")
        .assert()
        .success()
        .stdout(predicate::str::contains(".TH dbkeeper").and(predicate::str::contains("restore")));
}

#[test]
fn wait_retries_an_unreachable_server_for_the_given_time_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    dbkeeper(dir.path())
        .args([
            "--pg-url",
            "postgres://127.0.0.1:1/x",
            "--wait",
            "3",
            "--connect-timeout",
            "1",
            "ping",
        ])
        .assert()
        .code(3);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "gave up after {took:?}, before --wait was spent"
    );
    assert!(
        took < Duration::from_secs(20),
        "waited {took:?}, far beyond --wait 3"
    );
}

/// Stderr of a finished command, as text.
fn stderr_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

#[test]
fn mongo_urls_the_driver_rejects_are_configuration_errors_on_one_clean_line() {
    let dir = tempfile::tempdir().unwrap();
    for (url, says) in [
        (
            "mongodb://app:hunter2@db.example:99999/x",
            "the port must be an integer between 1 and 65535, got 99999",
        ),
        (
            "mongodb://app:hunter2@127.0.0.1:1/x?foo=bar",
            "foo is an invalid option",
        ),
        (
            "mongodb://app:hunter2@127.0.0.1:1/x?tls=maybe",
            "`tls` option must be a boolean",
        ),
        (
            "mongodb://app:hunter2@x@127.0.0.1:1/x",
            "password must be URL encoded",
        ),
    ] {
        let assert = dbkeeper(dir.path())
            .args(["--mongo-url", url, "--connect-timeout", "2", "ping"])
            .assert()
            .code(2);
        let stderr = stderr_of(&assert);
        assert!(
            stderr.starts_with("dbkeeper: error: invalid MongoDB URL mongodb://app:***@"),
            "{url}: {stderr}"
        );
        assert!(stderr.contains("(from --mongo-url"), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "{url}: password leaked: {stderr}"
        );
        for dump in ["Kind:", "labels:", "source: None", "server response"] {
            assert!(
                !stderr.contains(dump),
                "{url}: driver dump {dump:?}: {stderr}"
            );
        }
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
    }
}

#[test]
fn a_missing_archive_or_a_directory_given_as_one_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("somedir")).unwrap();
    for command in ["restore", "verify"] {
        for (arg, says) in [
            (
                "nonexist.dbk.tar",
                "archive nonexist.dbk.tar does not exist",
            ),
            ("nonexist.tar", "archive nonexist.tar does not exist"),
            ("somedir", "somedir is a directory, not an archive"),
        ] {
            let assert = dbkeeper(dir.path()).args([command, arg]).assert().code(2);
            let stderr = stderr_of(&assert);
            assert!(stderr.contains(says), "{command} {arg}: {stderr}");
            assert!(
                !stderr.contains("truncated") && !stderr.contains("os error"),
                "{command} {arg}: {stderr}"
            );
        }
    }
}

#[test]
fn list_and_prune_take_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("somefile.dbk.tar"), b"x").unwrap();
    std::fs::write(dir.path().join("somefile"), b"x").unwrap();
    dbkeeper(dir.path())
        .args(["list", "nonexistent_dir"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "backup directory nonexistent_dir does not exist",
        ));
    dbkeeper(dir.path())
        .args(["list", "somefile.dbk.tar"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("somefile.dbk.tar is a file").and(
            predicate::str::contains("list takes the directory holding archives"),
        ));
    dbkeeper(dir.path())
        .args(["prune", "somefile", "--keep-last", "1"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("somefile is a file, not a directory")
                .and(predicate::str::contains("does not exist").not()),
        );
}

/// Whether `text` is plain printable ASCII (plus newlines): no binary bytes, no escape codes.
fn is_plain_text(text: &[u8]) -> bool {
    text.iter()
        .all(|&b| b == b'\n' || (b' '..=b'~').contains(&b))
}

#[test]
fn a_random_binary_file_is_not_an_archive_and_its_bytes_are_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    // Deterministic noise (a 64-bit LCG), long enough to hold a tar header.
    let mut state: u64 = 0x5eed;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    std::fs::create_dir(dir.path().join("backups")).unwrap();
    std::fs::write(dir.path().join("random.bin"), &noise).unwrap();
    std::fs::write(dir.path().join("backups/random.dbk.tar"), &noise).unwrap();
    let says = "not a dbkeeper archive: it is not a tar file";
    // restore refuses bad input (2); verify reports it as an archive failing V0 (1).
    for (command, code) in [("restore", 2), ("verify", 1)] {
        let assert = dbkeeper(dir.path())
            .args([command, "random.bin"])
            .assert()
            .code(code);
        let output = assert.get_output();
        let stderr = stderr_of(&assert);
        assert!(stderr.contains(says), "{command}: {stderr}");
        assert!(!stderr.contains("no COMMIT"), "{command}: {stderr}");
        assert!(
            is_plain_text(&output.stderr) && is_plain_text(&output.stdout),
            "{command} echoed binary bytes: {stderr}"
        );
    }
    let assert = dbkeeper(dir.path())
        .args(["list", "backups"])
        .assert()
        .success()
        .stdout(predicate::str::contains(says));
    assert!(
        is_plain_text(&assert.get_output().stdout),
        "list echoed binary bytes"
    );
}

#[test]
fn log_lines_are_not_coloured_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.dbk.tar"), b"").unwrap();
    // An INFO line: verify ignores a URL that was not given on its command line.
    let assert = dbkeeper(dir.path())
        .env_remove("NO_COLOR")
        .env("DBKEEPER_PG_URL", "postgres://127.0.0.1:1/x")
        .args(["verify", "-v", "x.dbk.tar"])
        .assert()
        .code(1);
    let stderr = stderr_of(&assert);
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a pipe: {stderr:?}"
    );
}

/// A backup that fails before writing anything (its database is unreachable) leaves no trace:
/// the output directory it created is removed again, empty as it is.
#[test]
fn a_failed_backup_removes_the_directory_it_created() {
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path())
        .args([
            "--pg-url",
            "postgres://app@127.0.0.1:1/prod",
            "--connect-timeout",
            "2",
            "backup",
            "--output",
            "nightly",
        ])
        .assert()
        .code(3);
    assert!(
        !dir.path().join("nightly").exists(),
        "the new, empty output directory is gone"
    );
    // An existing directory is left alone.
    std::fs::create_dir(dir.path().join("kept")).unwrap();
    dbkeeper(dir.path())
        .args([
            "--pg-url",
            "postgres://app@127.0.0.1:1/prod",
            "--connect-timeout",
            "2",
            "backup",
            "--output",
            "kept",
        ])
        .assert()
        .code(3);
    assert!(dir.path().join("kept").is_dir());
}
