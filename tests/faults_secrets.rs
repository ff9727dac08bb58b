//! Passwords never leak: every command runs with password-bearing URLs (as flags, in the
//! environment, and in `dbkeeper.toml`), at `-vv` with `RUST_LOG=debug`, against unreachable
//! servers, a server that rejects the password, and a server that accepts it (PostgreSQL with
//! trust authentication ignores it, so a backup and restore really run). The password must not
//! appear in stdout, stderr, JSON, the archive's bytes or any decompressed member, the
//! verification stamp or the directory lock.

mod common;

use std::io::Read;
use std::path::Path;

use common::{dbkeeper, pg_server_url, unique_name, MongoTestDb, PgTestDb};

const PASSWORD: &str = "S3cretPw0rd";

fn pg_with_password(url: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_password(Some(PASSWORD)).unwrap();
    url.to_string()
}

/// Runs dbkeeper with `args`, verbose, and returns (exit code, stdout + stderr), asserting the
/// password appears in neither.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = dbkeeper(dir)
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied())
        .arg("-vv")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(PASSWORD),
        "`dbkeeper {}` printed the password:\n{text}",
        args.join(" ")
    );
    (out.status.code(), text)
}

/// Every command line worth trying, given the URLs and an archive path.
fn every_command<'a>(archive: &'a str, out_dir: &'a str) -> Vec<Vec<&'a str>> {
    vec![
        vec!["ping"],
        vec!["migrate", "status"],
        vec!["migrate", "status", "--json"],
        vec!["migrate", "validate"],
        vec!["migrate", "up"],
        vec!["migrate", "up", "--dry-run", "--json"],
        vec!["migrate", "down"],
        vec!["migrate", "baseline", "--to", "1"],
        vec!["backup", "--output", out_dir],
        vec!["backup", "--output", out_dir, "--json"],
        vec!["restore", archive],
        vec!["restore", archive, "--json", "--mode", "replace"],
        vec!["verify", archive],
        vec!["verify", archive, "--json"],
        vec!["list", out_dir],
        vec!["list", out_dir, "--json"],
        vec!["prune", out_dir, "--keep-last", "5"],
    ]
}

/// Migration directories with one migration per engine, so `migrate` gets to connecting.
fn migration_dirs(dir: &Path) {
    std::fs::create_dir_all(dir.join("migrations")).unwrap();
    std::fs::write(
        dir.join("migrations/V1__t.sql"),
        "CREATE TABLE secret_t (id int);",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("mongo_migrations")).unwrap();
    std::fs::write(
        dir.join("mongo_migrations/V1__c.json"),
        r#"[{"create": "secret_c"}]"#,
    )
    .unwrap();
}

/// Every byte of every file under `dir`, and of every gzip member of every tar in it,
/// searched for the password.
fn assert_no_password_in_files(dir: &Path) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, PASSWORD.as_bytes()),
            "{} holds the password",
            entry.display()
        );
        if entry.to_string_lossy().contains(".tar") {
            let mut archive = tar::Archive::new(bytes.as_slice());
            let Ok(entries) = archive.entries() else {
                continue;
            };
            for member in entries.flatten() {
                let name = String::from_utf8_lossy(&member.path_bytes()).into_owned();
                let mut data = Vec::new();
                let mut member = member;
                if member.read_to_end(&mut data).is_err() {
                    continue;
                }
                if name.ends_with(".gz") {
                    let mut raw = Vec::new();
                    flate2::read::GzDecoder::new(data.as_slice())
                        .read_to_end(&mut raw)
                        .unwrap();
                    data = raw;
                } else if name.ends_with(".zst") {
                    data = zstd::stream::decode_all(data.as_slice()).unwrap();
                }
                assert!(
                    !contains(&data, PASSWORD.as_bytes()),
                    "member {name} of {} holds the password",
                    entry.display()
                );
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_appear_in_output_archives_or_files() {
    let dir = tempfile::tempdir().unwrap();
    migration_dirs(dir.path());
    let backups = dir.path().join("backups");
    let out_dir = backups.display().to_string();

    // A real backup through a password-bearing URL the server accepts (trust ignores it).
    let source = PgTestDb::create().await;
    source
        .client()
        .await
        .batch_execute("CREATE TABLE t (id int, note text); INSERT INTO t VALUES (1, 'x');")
        .await
        .unwrap();
    let pg_url = pg_with_password(&source.url);
    let (code, _) = run(
        dir.path(),
        &[
            "--pg-url", &pg_url, "backup", "--output", &out_dir, "--json",
        ],
        &[],
    );
    assert_eq!(code, Some(0));
    let archive = walk(&backups)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".dbk.tar"))
        .unwrap()
        .display()
        .to_string();

    // Restore, verify (writes a stamp), list, migrate, through the accepting server.
    let target = unique_name("dbk_secret");
    let target_db = PgTestDb::create().await;
    let target_url = pg_with_password(&common::pg_url_with_db(&pg_server_url(), &target));
    let _cleanup = DropDb(target);
    let accepting = pg_with_password(&target_db.url);
    for args in every_command(&archive, &out_dir) {
        // verify compares the --pg-url it is given with the archive: the restored database.
        let url = if matches!(args[0], "restore" | "verify") {
            &target_url
        } else {
            &accepting
        };
        let mut full = vec!["--pg-url", url.as_str()];
        full.extend(args.iter().copied());
        let (code, text) = run(dir.path(), &full, &[]);
        // These really ran against the server that took the password.
        if matches!(args[0], "ping" | "restore" | "verify" | "list") || args[1] == "status" {
            assert_eq!(code, Some(0), "{args:?}: {text}");
        }
    }

    // Unreachable servers, refused passwords, URLs in env and in dbkeeper.toml.
    let mongo = MongoTestDb::create().await;
    let mongo_rejecting =
        mongo
            .url
            .replacen("mongodb://", &format!("mongodb://someone:{PASSWORD}@"), 1);
    let unreachable_pg = format!("postgres://u:{PASSWORD}@127.0.0.1:1/db");
    let unreachable_mongo = format!("mongodb://u:{PASSWORD}@127.0.0.1:1/db");
    let query_password = format!("postgres://u@127.0.0.1:1/db?password={PASSWORD}");
    let url_sets: Vec<Vec<&str>> = vec![
        vec![
            "--pg-url",
            &unreachable_pg,
            "--mongo-url",
            &unreachable_mongo,
        ],
        vec!["--pg-url", &query_password],
        vec!["--mongo-url", &mongo_rejecting],
    ];
    for urls in &url_sets {
        for args in every_command(&archive, &out_dir) {
            let mut full: Vec<&str> = vec!["--connect-timeout", "2"];
            full.extend(urls.iter().copied());
            full.extend(args);
            let (code, text) = run(dir.path(), &full, &[]);
            if full.contains(&"ping") {
                assert_eq!(code, Some(3), "{text}");
                // The password was sent and refused, or the server was unreachable.
                assert!(
                    text.contains("cannot connect") || text.contains("uthentication"),
                    "{text}"
                );
            }
        }
    }
    for args in every_command(&archive, &out_dir) {
        let mut full = vec!["--connect-timeout", "2"];
        full.extend(args);
        run(
            dir.path(),
            &full,
            &[
                ("DBKEEPER_PG_URL", &unreachable_pg),
                ("MONGODB_URI", &unreachable_mongo),
            ],
        );
    }
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        format!("[postgres]\nurl = \"{unreachable_pg}\"\n[mongo]\nurl = \"{unreachable_mongo}\"\n"),
    )
    .unwrap();
    for args in every_command(&archive, &out_dir) {
        let mut full = vec!["--connect-timeout", "2"];
        full.extend(args);
        run(dir.path(), &full, &[]);
    }
    std::fs::remove_file(dir.path().join("dbkeeper.toml")).unwrap();

    // Nothing written on disk holds it either: archives (and their decompressed members),
    // stamps, the lock.
    assert_no_password_in_files(dir.path());
}

struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        let name = self.0.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let admin = common::pg_connect(&pg_server_url()).await;
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                });
        })
        .join()
        .ok();
    }
}
