//! MongoDB TLS is the driver's, configured by its URL options: they must reach it unchanged, and
//! what it cannot do must be said clearly rather than as "invalid option".

mod common;

use common::dbkeeper;
use predicates::prelude::*;

fn ping(url: &str) -> assert_cmd::assert::Assert {
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path())
        .args(["ping", "--connect-timeout", "5", "--mongo-url", url])
        .assert()
}

#[test]
fn tls_file_options_reach_the_driver_and_a_missing_file_is_named() {
    let server = common::mongo_server_url();
    for option in ["tlsCAFile", "tlsCertificateKeyFile"] {
        ping(&format!(
            "{server}/app?tls=true&{option}=/nonexistent/tls.pem"
        ))
        .code(2)
        .stderr(
            predicate::str::contains(format!("{option}=/nonexistent/tls.pem"))
                .and(predicate::str::contains("labels").not()),
        );
    }
}

#[test]
fn tls_allow_invalid_hostnames_is_refused_with_the_reason() {
    let server = common::mongo_server_url();
    ping(&format!(
        "{server}/app?tls=true&tlsAllowInvalidHostnames=true"
    ))
    .code(2)
    .stderr(
        predicate::str::contains("tlsAllowInvalidHostnames is not supported")
            .and(predicate::str::contains("tlsInsecure")),
    );
}
