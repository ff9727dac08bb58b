//! Credentials against an S3 server that checks them: moto_server with IAM enforced
//! (`scripts/services.sh start s3auth`), which verifies every request's SigV4 signature against
//! its IAM users and their policies. The script creates one bucket, a user allowed `s3:*` and a
//! user allowed nothing, and exports their keys.
//!
//! Wrong credentials (an unknown key id, a wrong secret) and a user without permission must stop
//! every verb with one line naming the bucket and saying what to check, exit 2 (bad input),
//! before any database is touched, with no secret in any output and nothing written or deleted.
//! The allowed user doing the same proves the server is not simply refusing everything.

mod common;

use std::path::Path;

use common::{dbkeeper, unique_name, PgTestDb};

/// The server's endpoint, bucket and the `(id, secret)` of the allowed and the denied user.
struct AuthServer {
    endpoint: String,
    bucket: String,
    allowed: (String, String),
    denied: (String, String),
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the credential-checking S3 server with \
             `eval \"$(scripts/services.sh start s3auth)\"`"
        )
    })
}

fn key_pair(name: &str) -> (String, String) {
    let text = var(name);
    let (id, secret) = text
        .split_once(':')
        .unwrap_or_else(|| panic!("{name} is not ACCESS_KEY_ID:SECRET"));
    (id.to_string(), secret.to_string())
}

fn server() -> AuthServer {
    AuthServer {
        endpoint: var("DBKEEPER_TEST_S3_AUTH_ENDPOINT"),
        bucket: var("DBKEEPER_TEST_S3_AUTH_BUCKET"),
        allowed: key_pair("DBKEEPER_TEST_S3_AUTH_ALLOWED"),
        denied: key_pair("DBKEEPER_TEST_S3_AUTH_DENIED"),
    }
}

/// dbkeeper with these credentials for the server.
fn dbk_as(dir: &Path, server: &AuthServer, (id, secret): (&str, &str)) -> assert_cmd::Command {
    let mut cmd = dbkeeper(dir);
    cmd.env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &server.endpoint)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    cmd
}

/// Runs `cmd`, expecting exit 2 and one line on stderr naming `bucket` and the credentials;
/// checks that no secret of the server's users, nor `secret`, appears anywhere.
fn refused(cmd: &mut assert_cmd::Command, server: &AuthServer, secret: &str) -> String {
    let out = cmd.assert().code(2).get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [secret, &server.allowed.1, &server.denied.1] {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "a secret was printed: {stderr}"
        );
    }
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("s3://{}/", server.bucket)),
        "the bucket is not named: {stderr}"
    );
    assert!(
        stderr.contains("access denied") && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    stderr
}

/// The keys under `prefix`, as the allowed user sees them through `list --json` (archives) —
/// and, for everything else, the lock and stamps, through a listing of the prefix.
fn archives(dir: &Path, server: &AuthServer, prefix: &str) -> Vec<String> {
    let (id, secret) = &server.allowed;
    let out = dbk_as(dir, server, (id, secret))
        .args(["list", prefix, "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list: serde_json::Value = serde_json::from_slice(&out).unwrap();
    list["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn wrong_credentials_are_refused_with_one_line_naming_the_bucket() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("s3://{}/{}/", server.bucket, unique_name("wrong"));
    // The control: the right keys list the (empty) prefix.
    assert!(archives(dir.path(), &server, &prefix).is_empty());

    let unknown_secret = "an-unknown-users-secret-never-printed";
    let wrong_secret = "the-wrong-secret-never-printed";
    let unknown = ("AKIAUNKNOWN0DBKEEPER", unknown_secret);
    let wrong = (server.allowed.0.as_str(), wrong_secret);
    for (who, secret) in [(unknown, unknown_secret), (wrong, wrong_secret)] {
        refused(
            dbk_as(dir.path(), &server, who).args(["list", &prefix]),
            &server,
            secret,
        );
        // A backup stops before any database is touched (this one does not exist).
        refused(
            dbk_as(dir.path(), &server, who).args([
                "--pg-url",
                "postgres://u@127.0.0.1:1/x",
                "backup",
                "--output",
                &prefix,
            ]),
            &server,
            secret,
        );
        refused(
            dbk_as(dir.path(), &server, who).args(["verify", &format!("{prefix}x.dbk.tar")]),
            &server,
            secret,
        );
    }
    assert!(archives(dir.path(), &server, &prefix).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_permission_is_refused_and_nothing_is_lost() {
    let server = server();
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100);")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("s3://{}/{}/", server.bucket, unique_name("denied"));
    let allowed = (server.allowed.0.as_str(), server.allowed.1.as_str());
    let denied = (server.denied.0.as_str(), server.denied.1.as_str());

    // The allowed user backs up and verifies through the signature-checking server.
    let out = dbk_as(dir.path(), &server, allowed)
        .args(["--pg-url", &pg.url, "backup", "--output", &prefix, "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let archive = report["archive"].as_str().unwrap().to_string();
    dbk_as(dir.path(), &server, allowed)
        .args(["verify", &archive])
        .assert()
        .success();
    assert_eq!(
        archives(dir.path(), &server, &prefix),
        vec![archive.clone()]
    );

    // The user allowed nothing: every verb is refused.
    refused(
        dbk_as(dir.path(), &server, denied).args(["list", &prefix]),
        &server,
        &server.denied.1,
    );
    refused(
        dbk_as(dir.path(), &server, denied).args(["verify", &archive]),
        &server,
        &server.denied.1,
    );
    refused(
        dbk_as(dir.path(), &server, denied).args(["--pg-url", &pg.url, "restore", &archive]),
        &server,
        &server.denied.1,
    );
    refused(
        dbk_as(dir.path(), &server, denied)
            .args(["--pg-url", &pg.url, "backup", "--output", &prefix]),
        &server,
        &server.denied.1,
    );
    refused(
        dbk_as(dir.path(), &server, denied).args(["prune", &prefix, "--keep-last", "1"]),
        &server,
        &server.denied.1,
    );

    // Nothing lost, nothing left: the archive is still there, still verified, and no lock
    // blocks the next run.
    assert_eq!(
        archives(dir.path(), &server, &prefix),
        vec![archive.clone()]
    );
    dbk_as(dir.path(), &server, allowed)
        .args(["--pg-url", &pg.url, "backup", "--output", &prefix])
        .assert()
        .success();
    assert_eq!(archives(dir.path(), &server, &prefix).len(), 2);
}
