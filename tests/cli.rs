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
        .args(["backup", "--compression-level", "12"])
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
        .code(predicate::in_iter([2, 3]))
        .stderr(
            predicate::str::contains("no-such-dir").and(predicate::str::contains("panicked").not()),
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
