//! Certificate-checked TLS against a real PostgreSQL with `ssl=on` (scripts/services.sh `pgtls`):
//! its server certificate comes from a CA the script makes with openssl and names only
//! "localhost", and the role `dbkeeper_cert` may log in only with a client certificate.
//!
//! Every refusal is asserted by the reason dbkeeper gives, so a server that is down cannot make a
//! refusal test pass.

mod common;

use std::path::PathBuf;

use common::dbkeeper;
use predicates::prelude::*;

const TLS_URL_ENV: &str = "DBKEEPER_TEST_PG_TLS_URL";
const TLS_CERTS_ENV: &str = "DBKEEPER_TEST_PG_TLS_CERTS";

fn env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs the TLS PostgreSQL server. Run the suite with \
             scripts/test.sh, or `eval \"$(scripts/services.sh start pgtls)\"` first"
        ),
    }
}

/// A file from the test CA directory (ca.crt, other-ca.crt, client.crt, client.key).
fn cert(name: &str) -> String {
    let path = PathBuf::from(env(TLS_CERTS_ENV)).join(name);
    assert!(
        path.is_file(),
        "{} is missing ({TLS_CERTS_ENV}); restart the pgtls service",
        path.display()
    );
    path.display().to_string()
}

/// The TLS server's URL for `user` at `host`, with `params` as its query.
fn url(user: &str, host: &str, params: &[(&str, String)]) -> String {
    let mut url = url::Url::parse(&env(TLS_URL_ENV))
        .unwrap_or_else(|e| panic!("{TLS_URL_ENV} is not a URL: {e}"));
    url.set_username(user).unwrap();
    url.set_host(Some(host)).unwrap();
    url.query_pairs_mut().clear();
    for (key, value) in params {
        url.query_pairs_mut().append_pair(key, value);
    }
    url.to_string()
}

fn verify(mode: &str, ca: &str) -> Vec<(&'static str, String)> {
    vec![("sslmode", mode.to_string()), ("sslrootcert", cert(ca))]
}

fn ping(url: &str) -> assert_cmd::assert::Assert {
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path())
        .args(["ping", "--connect-timeout", "10", "--pg-url", url])
        .assert()
}

#[test]
fn verify_full_with_the_right_ca_and_host_connects() {
    ping(&url(
        "postgres",
        "localhost",
        &verify("verify-full", "ca.crt"),
    ))
    .success()
    .stdout(predicate::str::contains("PostgreSQL 1"));
}

#[test]
fn verify_full_refuses_a_host_name_the_certificate_does_not_list() {
    ping(&url(
        "postgres",
        "127.0.0.1",
        &verify("verify-full", "ca.crt"),
    ))
    .code(3)
    .stderr(
        predicate::str::contains("not valid for host 127.0.0.1")
            .and(predicate::str::contains("sslmode=verify-ca")),
    );
}

#[test]
fn verify_full_refuses_a_certificate_from_another_ca() {
    let other = cert("other-ca.crt");
    ping(&url(
        "postgres",
        "localhost",
        &verify("verify-full", "other-ca.crt"),
    ))
    .code(3)
    .stderr(predicate::str::contains(format!(
        "not signed by a CA in sslrootcert={other}"
    )));
    // verify-ca checks the CA just the same.
    ping(&url(
        "postgres",
        "localhost",
        &verify("verify-ca", "other-ca.crt"),
    ))
    .code(3)
    .stderr(predicate::str::contains("not signed by a CA"));
}

#[test]
fn verify_ca_accepts_the_right_ca_under_another_host_name() {
    ping(&url(
        "postgres",
        "127.0.0.1",
        &verify("verify-ca", "ca.crt"),
    ))
    .success()
    .stdout(predicate::str::contains("PostgreSQL 1"));
}

#[test]
fn a_missing_ca_file_is_a_configuration_error_naming_it() {
    ping(&url(
        "postgres",
        "localhost",
        &[
            ("sslmode", "verify-full".into()),
            ("sslrootcert", "/nonexistent/ca.crt".into()),
        ],
    ))
    .code(2)
    .stderr(predicate::str::contains("sslrootcert /nonexistent/ca.crt"));
}

fn with_client_cert(mut params: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    params.push(("sslcert", cert("client.crt")));
    params.push(("sslkey", cert("client.key")));
    params
}

#[test]
fn a_client_certificate_logs_in_where_the_server_requires_one() {
    ping(&url(
        "dbkeeper_cert",
        "localhost",
        &verify("verify-full", "ca.crt"),
    ))
    .code(3)
    .stderr(predicate::str::contains(
        "requires a valid client certificate",
    ));
    ping(&url(
        "dbkeeper_cert",
        "localhost",
        &with_client_cert(verify("verify-full", "ca.crt")),
    ))
    .success()
    .stdout(predicate::str::contains("PostgreSQL 1"));
}

/// pg_dump runs as a child process: it must get the same TLS settings (PGSSLMODE, PGSSLROOTCERT,
/// PGSSLCERT, PGSSLKEY), or it could not log in as the certificate-only role.
#[test]
fn backup_and_verify_run_over_verified_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pg_url = url(
        "dbkeeper_cert",
        "localhost",
        &with_client_cert(verify("verify-full", "ca.crt")),
    );
    dbkeeper(dir.path())
        .args(["backup", "--output", "out", "--pg-url", &pg_url])
        .assert()
        .success();
    let archive = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar"))
        .expect("backup wrote an archive");
    dbkeeper(dir.path())
        .args(["verify", archive.to_str().unwrap(), "--pg-url", &pg_url])
        .assert()
        .success();
}
