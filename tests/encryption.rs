//! Encrypted archives: members are age files the reference `age` CLI opens, V0 runs without
//! any secret, nothing derived from values is in clear, and every wrong or missing key is
//! refused (exit 2) before a target is touched, without printing a secret.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{dbkeeper, pg_url_with_db, MongoTestDb, PgTestDb};
use mongodb::bson::{doc, Document};
use predicates::prelude::*;

/// A value that must never appear in clear anywhere in an encrypted archive.
const MARKER: &str = "marker-7f3a9c-value";

async fn seed(pg: &PgTestDb, mongo: &MongoTestDb) {
    pg.client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE secrets (id serial PRIMARY KEY, v text NOT NULL);
             INSERT INTO secrets (v) SELECT '{MARKER} ' || g FROM generate_series(1, 500) g;
             SELECT setval('secrets_id_seq', 4242);"
        ))
        .await
        .unwrap();
    let docs: Vec<Document> = (0..50).map(|i| doc! { "n": i, "v": MARKER }).collect();
    mongo
        .db()
        .await
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
}

/// An age key pair made by the reference `age-keygen`: (identity file, public key).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (apt-get install age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    (
        path,
        String::from_utf8(public.stdout).unwrap().trim().to_string(),
    )
}

fn secret_of(identity: &Path) -> String {
    std::fs::read_to_string(identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string()
}

fn members(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts a command's output holds none of `secrets`.
fn assert_no_secret(output: &std::process::Output, secrets: &[&str]) {
    for secret in secrets {
        for stream in [&output.stdout, &output.stderr] {
            assert!(
                !contains(stream, secret.as_bytes()),
                "a secret was printed: {}",
                String::from_utf8_lossy(stream)
            );
        }
    }
}

fn backup(dir: &Path, pg: &PgTestDb, mongo: &MongoTestDb, extra: &[&str]) -> PathBuf {
    let out = dbkeeper(dir)
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url, "backup"])
        .args(["--output", ".", "--json"])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    dir.join(report["archive"].as_str().unwrap())
}

#[tokio::test]
async fn an_encrypted_archive_verifies_without_the_key_and_restores_with_it() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(dir.path(), "key.txt");
    let (_, other_public) = keygen(dir.path(), "other.txt");
    let archive = backup(
        dir.path(),
        &pg,
        &mongo,
        &["--recipient", &public, "--recipient", &other_public],
    );

    // Nothing derived from values in clear: not the values, not the sequence, not the counts.
    let bytes = std::fs::read(&archive).unwrap();
    assert!(!contains(&bytes, MARKER.as_bytes()));
    let all = members(&archive);
    let clear: serde_json::Value =
        serde_json::from_slice(&all.iter().find(|(n, _)| n == "MANIFEST.json").unwrap().1).unwrap();
    assert_eq!(clear["datasets"], serde_json::json!([]), "{clear:#}");
    assert_eq!(clear["engines"], serde_json::json!({}));
    assert_eq!(
        clear["encryption"]["recipients"],
        serde_json::json!([public, other_public])
    );
    assert!(
        !clear.to_string().contains("4242"),
        "sequence value in clear"
    );
    assert!(all.iter().any(|(n, _)| n == "MANIFEST.json.age"));

    // V0 with no key at all: exit 0, and it says what V1 needs.
    dbkeeper(dir.path())
        .arg("verify")
        .arg(&archive)
        .assert()
        .success()
        .stdout(predicate::str::contains("OK (V0)"))
        .stdout(predicate::str::contains("--identity"));

    // The reference CLI opens a member on its own: age -d, then zstd -d.
    let (name, sealed) = all
        .iter()
        .find(|(n, _)| n.starts_with("postgres/data/") && n.ends_with(".copy.zst"))
        .unwrap();
    let sealed_path = dir.path().join("chunk.age");
    std::fs::write(&sealed_path, sealed).unwrap();
    let zst = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&sealed_path)
        .output()
        .unwrap();
    assert!(
        zst.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&zst.stderr)
    );
    let plain = zstd::stream::decode_all(zst.stdout.as_slice()).unwrap();
    assert!(contains(&plain, MARKER.as_bytes()));

    let verified = dbkeeper(dir.path())
        .arg("verify")
        .arg(&archive)
        .arg("--identity")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stdout).contains("OK (V0+V1)"));
    assert_no_secret(&verified, &[&secret_of(&identity)]);

    let (pg2, mongo2) = (PgTestDb::create().await, MongoTestDb::create().await);
    let restored = dbkeeper(dir.path())
        .args(["--pg-url", &pg2.url, "--mongo-url", &mongo2.url, "restore"])
        .arg(&archive)
        .env("DBKEEPER_IDENTITY_FILE", &identity)
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_no_secret(&restored, &[&secret_of(&identity)]);
    let client = pg2.client().await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM secrets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    let next: i64 = client
        .query_one("SELECT nextval('secrets_id_seq')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 4243);
    let events = mongo2.db().await.collection::<Document>("events");
    assert_eq!(events.count_documents(doc! {}).await.unwrap(), 50);

    dbkeeper(dir.path())
        .args(["list", "."])
        .assert()
        .success()
        .stdout(predicate::str::contains("encrypted"));
}

#[tokio::test]
async fn missing_wrong_and_malformed_keys_are_refused_and_the_target_untouched() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(dir.path(), "key.txt");
    let (stranger, _) = keygen(dir.path(), "stranger.txt");
    let archive = backup(dir.path(), &pg, &mongo, &["--recipient", &public]);
    let target = common::unique_name("dbk_never");
    let target_url = pg_url_with_db(&common::pg_server_url(), &target);
    let restore = |extra: &[&std::ffi::OsStr]| {
        dbkeeper(dir.path())
            .args(["--pg-url", &target_url, "restore"])
            .arg(&archive)
            .args(extra)
            .output()
            .unwrap()
    };
    let secrets = [secret_of(&identity), secret_of(&stranger)];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();

    let none = restore(&[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--identity"));

    let wrong = restore(&["--identity".as_ref(), stranger.as_os_str()]);
    assert_eq!(wrong.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("matches none of the recipients"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&public),
        "says who it was made for: {stderr}"
    );
    assert_no_secret(&wrong, &secrets);

    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "AGE-SECRET-KEY-1NOTAKEY-supersecret\n").unwrap();
    let malformed = restore(&["--identity".as_ref(), junk.as_os_str()]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("not a usable identity"));
    assert_no_secret(&malformed, &["supersecret"]);

    // A flipped byte inside one encrypted chunk: V0 names it without a key, restore refuses it.
    let mut bytes = std::fs::read(&archive).unwrap();
    let all = members(&archive);
    let (name, data) = all
        .iter()
        .find(|(n, _)| n.starts_with("postgres/data/"))
        .unwrap();
    let at = bytes
        .windows(data.len())
        .position(|w| w == data.as_slice())
        .unwrap()
        + data.len() / 2;
    bytes[at] ^= 0x40;
    let tampered = dir.path().join("tampered.dbk.tar");
    std::fs::write(&tampered, &bytes).unwrap();
    dbkeeper(dir.path())
        .arg("verify")
        .arg(&tampered)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(name.as_str()));
    dbkeeper(dir.path())
        .args(["--pg-url", &target_url, "restore"])
        .arg(&tampered)
        .arg("--identity")
        .arg(&identity)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(name.as_str()));

    let admin = common::pg_connect(&common::pg_server_url()).await;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
        .await
        .unwrap();
    assert!(exists.is_none(), "a refused restore created its target");

    // Bad recipients: refused before any dump, naming the flag or the file and line.
    dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "backup", "--recipient", "age1notakey"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--recipient"));
    let recipients = dir.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# ops\n{public}\nnot a key\n")).unwrap();
    dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "backup", "--recipients-file"])
        .arg(&recipients)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 3"));
}

#[tokio::test]
async fn passphrase_archives_stream_to_stdout_and_refuse_a_wrong_passphrase() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let passphrase = dir.path().join("pass.txt");
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    let out = dbkeeper(dir.path())
        .args(["--pg-url", &pg.url, "--mongo-url", &mongo.url, "backup"])
        .args(["--output", "-", "--passphrase-file"])
        .arg(&passphrase)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret(&out, &["correct horse"]);
    let archive = dir.path().join("streamed.dbk.tar");
    std::fs::write(&archive, &out.stdout).unwrap();
    assert!(!contains(&out.stdout, MARKER.as_bytes()));
    assert!(members(&archive).iter().any(|(n, _)| n == "KEY.age"));

    dbkeeper(dir.path())
        .arg("verify")
        .arg(&archive)
        .env("DBKEEPER_PASSPHRASE_FILE", &passphrase)
        .assert()
        .success()
        .stdout(predicate::str::contains("OK (V0+V1)"));

    let wrong = dir.path().join("wrong.txt");
    std::fs::write(&wrong, "Tr0ub4dor&3\n").unwrap();
    let pg2 = PgTestDb::create().await;
    let refused = dbkeeper(dir.path())
        .args(["--pg-url", &pg2.url, "restore"])
        .arg(&archive)
        .arg("--passphrase-file")
        .arg(&wrong)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wrong passphrase"));
    assert_no_secret(&refused, &["Tr0ub4dor", "correct horse"]);
    let tables: i64 = pg2
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the target was touched");

    dbkeeper(dir.path())
        .args(["--pg-url", &pg2.url, "restore"])
        .arg(&archive)
        .arg("--passphrase-file")
        .arg(&passphrase)
        .assert()
        .success();
    let n: i64 = pg2
        .client()
        .await
        .query_one("SELECT count(*) FROM secrets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
}

/// `list` of an encrypted archive: without a key it says the details need the identity (and
/// shows no counts); with `--identity`, `DBKEEPER_IDENTITY_FILE` or `[encryption]
/// identity_file` it shows them; a key for other recipients or a passphrase archive opened with
/// the wrong passphrase only hides that archive's counts; a malformed identity file is exit 2.
#[tokio::test]
async fn list_shows_an_encrypted_archives_counts_only_with_its_key() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let dir = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(dir.path(), "key.txt");
    let (other, other_public) = keygen(dir.path(), "other.txt");
    backup(dir.path(), &pg, &mongo, &["--recipient", &public]);

    let list_json = |args: &[&str], env: Option<(&str, &Path)>| {
        let mut cmd = dbkeeper(dir.path());
        cmd.args(["list", ".", "--json"]).args(args);
        if let Some((name, value)) = env {
            cmd.env(name, value);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_secret(&out, &[&secret_of(&identity), &secret_of(&other)]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["archives"][0].clone()
    };

    let locked = list_json(&[], None);
    assert_eq!(locked["encrypted"], true);
    assert!(
        locked["locked"]
            .as_str()
            .unwrap()
            .contains("need the identity: pass --identity FILE"),
        "{locked}"
    );
    assert_eq!(locked["rows"], serde_json::json!({}));
    let text = dbkeeper(dir.path()).args(["list", "."]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("encrypted (details need the identity"),
        "{text}"
    );
    assert!(!text.contains("rows"), "{text}");

    let id = identity.to_str().unwrap();
    for opened in [
        list_json(&["--identity", id], None),
        list_json(&[], Some(("DBKEEPER_IDENTITY_FILE", &identity))),
    ] {
        assert!(opened.get("locked").is_none(), "{opened}");
        assert_eq!(opened["rows"]["postgres"], 500, "{opened}");
        assert_eq!(opened["rows"]["mongo"], 50, "{opened}");
        assert_eq!(opened["encrypted"], true);
    }
    let text = dbkeeper(dir.path())
        .args(["list", ".", "--identity", id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("postgres 500 rows")
            && text.contains("mongo 50 docs")
            && text.contains("encrypted"),
        "{text}"
    );

    // The config file's identity_file (relative to the file).
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[encryption]\nidentity_file = \"key.txt\"\n",
    )
    .unwrap();
    assert_eq!(list_json(&[], None)["rows"]["postgres"], 500);
    std::fs::remove_file(dir.path().join("dbkeeper.toml")).unwrap();

    // Someone else's key: the archive is listed, its counts stay hidden, and list says why.
    let foreign = list_json(&["--identity", other.to_str().unwrap()], None);
    let why = foreign["locked"].as_str().unwrap();
    assert!(
        why.contains("matches none of its recipients") && why.contains(&public),
        "{why}"
    );
    assert!(!why.contains(&other_public), "{why}");
    assert_eq!(foreign["rows"], serde_json::json!({}));

    // Not an identity at all: nothing could be opened with it, so it is bad input.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "AGE-SECRET-KEY-1NOTAKEY\n").unwrap();
    let out = dbkeeper(dir.path())
        .args(["list", ".", "--identity"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.txt"));

    // A passphrase archive next to it: its own key, and a wrong passphrase only locks it.
    let passphrase = dir.path().join("pass.txt");
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    backup(
        dir.path(),
        &pg,
        &mongo,
        &["--passphrase-file", passphrase.to_str().unwrap()],
    );
    let wrong = dir.path().join("wrong.txt");
    std::fs::write(&wrong, "Tr0ub4dor&3\n").unwrap();
    let newest = list_json(&["--passphrase-file", passphrase.to_str().unwrap()], None);
    assert_eq!(newest["rows"]["postgres"], 500, "{newest}");
    let newest = list_json(&["--passphrase-file", wrong.to_str().unwrap()], None);
    assert!(
        newest["locked"]
            .as_str()
            .unwrap()
            .contains("passphrase does not open it"),
        "{newest}"
    );
}
