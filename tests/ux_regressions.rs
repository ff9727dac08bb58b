//! Everyday rough edges a new user ran into (help texts, man pages, install docs, error messages),
//! each pinned by the behaviour that was wrong.

mod common;

use std::io::Write;
use std::path::Path;

use common::{dbkeeper, PgTestDb};
use predicates::prelude::*;

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn help(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dbkeeper(dir.path())
        .args(args)
        .arg("--help")
        .assert()
        .success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

#[test]
fn readme_says_how_to_install_the_binary() {
    assert!(repo_file("README.md").contains("cargo install --path ."));
}

#[test]
fn prune_help_describes_every_keep_flag() {
    let text = help(&["prune"]);
    for flag in [
        "--keep-last",
        "--keep-daily",
        "--keep-weekly",
        "--keep-monthly",
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing from prune --help:\n{text}"));
        let described = line.trim_start()[flag.len()..]
            .trim_start()
            .trim_start_matches("<N>")
            .trim();
        assert!(!described.is_empty(), "{flag} has no description:\n{text}");
    }
}

#[test]
fn only_commands_that_connect_list_connection_flags() {
    for command in [&["list"][..], &["prune"], &["completions"], &["man"]] {
        let text = help(command);
        for flag in [
            "--pg-url",
            "--mongo-url",
            "--mongo-db",
            "--connect-timeout",
            "--wait",
        ] {
            assert!(
                !text.contains(flag),
                "{command:?} --help lists {flag}:\n{text}"
            );
        }
    }
    for command in [
        &["backup"][..],
        &["restore"],
        &["verify"],
        &["ping"],
        &["migrate", "up"],
    ] {
        let text = help(command);
        assert!(
            text.contains("--pg-url"),
            "{command:?} --help lacks --pg-url:\n{text}"
        );
    }
    // Before and after the command both still work.
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--pg-url", "postgres://h/db?sslmode=bogus", "ping"][..],
        &["ping", "--pg-url", "postgres://h/db?sslmode=bogus"],
        &[
            "migrate",
            "status",
            "--pg-url",
            "postgres://h/db?sslmode=bogus",
        ],
    ] {
        dbkeeper(dir.path())
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("sslmode=bogus"));
    }
}

#[test]
fn man_pages_exist_for_every_command_they_refer_to_and_have_the_usual_sections() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    dbkeeper(dir.path())
        .args(["man", "--dir", pages.to_str().unwrap()])
        .assert()
        .success();
    let names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for page in [
        "dbkeeper.1",
        "dbkeeper-migrate.1",
        "dbkeeper-migrate-up.1",
        "dbkeeper-restore.1",
    ] {
        assert!(
            names.iter().any(|n| n == page),
            "{page} not written: {names:?}"
        );
    }
    for name in &names {
        let text = std::fs::read_to_string(pages.join(name)).unwrap();
        for section in ["ENVIRONMENT", "FILES", "EXIT STATUS"] {
            assert!(
                text.contains(&format!(".SH \"{section}\""))
                    || text.contains(&format!(".SH {section}")),
                "{name} lacks {section}"
            );
        }
        for word in text.split(|c: char| c.is_whitespace() || c == ',') {
            if let Some(page) = word.strip_suffix("(1)") {
                let page = format!("{}.1", page.replace("\\-", "-"));
                assert!(
                    names.contains(&page),
                    "{name} refers to {page}, which was not written"
                );
            }
        }
    }
    // One command's page on stdout.
    dbkeeper(dir.path())
        .args(["man", "migrate", "up"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("dbkeeper\\-migrate\\-up")
                .and(predicate::str::contains("EXAMPLES")),
        );
}

#[test]
fn services_env_says_who_reads_its_variables_and_each_is_read() {
    let out = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh"),
    )
    .arg("env")
    .output()
    .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("dbkeeper itself reads DBKEEPER_PG_URL"),
        "{text}"
    );
    let sources = [
        repo_file("tests/common/mod.rs"),
        repo_file("tests/pg_tls.rs"),
        repo_file("tests/s3_storage.rs"),
        repo_file("tests/s3_auth.rs"),
        repo_file("tests/az_storage.rs"),
    ]
    .join("\n");
    for line in text.lines().filter(|l| l.starts_with("export ")) {
        let name = line["export ".len()..].split('=').next().unwrap();
        assert!(
            sources.contains(name),
            "services.sh env exports {name}, which nothing reads"
        );
    }
}

#[test]
fn a_refused_mongodb_port_fails_at_once_without_the_driver_topology() {
    // A port nobody listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    dbkeeper(dir.path())
        .args([
            "ping",
            "--mongo-url",
            &format!("mongodb://127.0.0.1:{port}/app"),
        ])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains(format!("connection refused by 127.0.0.1:{port}"))
                .and(predicate::str::contains("Topology").not())
                .and(predicate::str::contains("labels").not()),
        );
}

#[test]
fn a_pg_dump_file_or_a_gzipped_tar_is_named_not_called_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("app.dump");
    std::fs::write(
        &custom,
        b"PGDMP\x01\x0e\x00\x04\x08\x01\x01\x01\x00\x00\x00\x00",
    )
    .unwrap();
    let gzipped = dir.path().join("app.dbk.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&gzipped).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap();
    for (file, what) in [
        (&custom, "a pg_dump custom-format dump"),
        (&gzipped, "gzip-compressed"),
    ] {
        dbkeeper(dir.path())
            .args(["restore", file.to_str().unwrap()])
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(format!("is not a dbkeeper archive: it is {what}"))
                    .and(predicate::str::contains("damaged").not()),
            );
        dbkeeper(dir.path())
            .args(["verify", file.to_str().unwrap()])
            .assert()
            .code(1)
            .stdout(predicate::str::contains(what));
    }
}

#[tokio::test]
async fn backup_output_into_a_mistyped_path_is_refused_and_a_new_directory_is_announced() {
    let pg = PgTestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("bakups").join("nightly");
    dbkeeper(dir.path())
        .args([
            "backup",
            "--pg-url",
            &pg.url,
            "--output",
            typo.to_str().unwrap(),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
    assert!(
        !dir.path().join("bakups").exists(),
        "a mistyped path was created"
    );

    let fresh = dir.path().join("nightly");
    dbkeeper(dir.path())
        .args([
            "backup",
            "--pg-url",
            &pg.url,
            "--output",
            fresh.to_str().unwrap(),
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "created backup directory {}",
            fresh.display()
        )));
}

#[tokio::test]
async fn verify_deep_narrows_a_content_difference_to_the_chunk_and_key_range() {
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 3000) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Small chunks: the changed rows must be pinned to one of several.
    dbkeeper(dir.path())
        .args([
            "backup",
            "--pg-url",
            &pg.url,
            "--output",
            "a.dbk.tar",
            "--chunk-bytes",
            "8192",
        ])
        .assert()
        .success();
    pg.client()
        .await
        .batch_execute(
            "UPDATE items SET name = 'changed' WHERE id IN (1500, 1502);
             INSERT INTO items VALUES (9001, 'new');",
        )
        .await
        .unwrap();
    let out = dbkeeper(dir.path())
        .args([
            "verify",
            "a.dbk.tar",
            "--deep",
            "--pg-url",
            &pg.url,
            "--json",
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 archived rows in chunk ")
            && text.contains("first column from 1500 to 1502"),
        "{text}"
    );
    assert!(text.contains("3 rows not in the archive"), "{text}");
    assert!(text.contains("9001"), "{text}");
}
