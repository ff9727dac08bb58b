//! Every verb against a real S3 API server (`scripts/services.sh` starts moto_server and exports
//! `DBKEEPER_TEST_S3_ENDPOINT`): backup -> list -> verify -> restore -> compare from a bucket for
//! both engines, prune and `backup --prune`, the bucket lock, and the faults: a missing bucket,
//! a malformed URL, an unreachable endpoint, a key that is not an archive, a backup killed
//! mid-upload, two racing backups, and a part upload answered with 503 SlowDown (by a real TCP
//! proxy in front of the server, not a mock).
//!
//! Each test makes its own bucket. The credentials are dummies (moto accepts any); the secret
//! one is checked never to appear in any output.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dbkeeper, pg_url_with_db, unique_name, MongoTestDb, PgTestDb};
use mongodb::bson::{doc, Document};
use predicates::prelude::*;

const S3_ENV: &str = "DBKEEPER_TEST_S3_ENDPOINT";
const SECRET: &str = "s3-secret-that-must-never-be-printed";

fn endpoint() -> String {
    std::env::var(S3_ENV).unwrap_or_else(|_| {
        panic!("{S3_ENV} is not set: start the test S3 server with `eval \"$(scripts/services.sh start s3)\"`")
    })
}

/// `host:port` of an `http://host:port` endpoint.
fn authority(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// One plain HTTP/1.1 request to the S3 server (moto takes unsigned requests); returns the
/// status and body. Only for setting up and inspecting buckets.
fn s3_request(method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let host = authority(&endpoint());
    let mut stream = TcpStream::connect(&host).expect("connect to the S3 server");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A new, empty bucket.
fn bucket() -> String {
    let name = unique_name("dbk").to_lowercase().replace('_', "-");
    let (status, body) = s3_request("PUT", &format!("/{name}"), b"");
    assert_eq!(status, 200, "creating bucket {name}: {body}");
    name
}

/// Keys under `prefix` in `bucket` (including incomplete ones' absence: an unfinished
/// multipart upload is not an object).
fn keys(bucket: &str, prefix: &str) -> Vec<String> {
    let (status, body) = s3_request(
        "GET",
        &format!("/{bucket}?list-type=2&prefix={prefix}"),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect()
}

/// The unfinished multipart uploads in `bucket` (S3's ListMultipartUploads), as their keys.
fn multipart_uploads(bucket: &str) -> Vec<String> {
    let (status, body) = s3_request("GET", &format!("/{bucket}?uploads"), b"");
    assert_eq!(status, 200, "{body}");
    body.split("<Upload>")
        .skip(1)
        .filter_map(|u| {
            let (_, rest) = u.split_once("<Key>")?;
            rest.split_once("</Key>").map(|(k, _)| k.to_string())
        })
        .collect()
}

/// dbkeeper with dummy credentials for the test server.
fn dbk(dir: &Path) -> assert_cmd::Command {
    let mut cmd = dbkeeper(dir);
    envs(&mut cmd, &endpoint());
    cmd
}

fn envs(cmd: &mut assert_cmd::Command, endpoint: &str) {
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
}

fn stdout_json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    let out = cmd.arg("--json").assert().success().get_output().clone();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(SECRET) && !String::from_utf8_lossy(&out.stderr).contains(SECRET));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Runs `cmd`, expecting exit `code`; returns stderr, checked to be free of the secret.
fn fails(cmd: &mut assert_cmd::Command, code: i32) -> String {
    let out = cmd.assert().code(code).get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));
    stderr
}

async fn seed(pg: &PgTestDb, mongo: &MongoTestDb) {
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
             INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 3000) g;",
        )
        .await
        .unwrap();
    let docs: Vec<Document> = (0..500).map(|i| doc! { "n": i, "tag": "x" }).collect();
    mongo
        .db()
        .await
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_list_verify_restore_from_a_bucket_for_both_engines() {
    let (pg, mongo) = (PgTestDb::create().await, MongoTestDb::create().await);
    seed(&pg, &mongo).await;
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("s3://{bucket}/nightly/");
    // Small chunks and a small part size: the archive spans several parts of the upload.
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[storage]\npart_size_mib = 5\n",
    )
    .unwrap();
    let report = stdout_json(dbk(dir.path()).args([
        "--pg-url",
        &pg.url,
        "--mongo-url",
        &mongo.url,
        "backup",
        "--output",
        &prefix,
        "--chunk-bytes",
        "65536",
        "--compression",
        "none",
    ]));
    let archive = report["archive"].as_str().unwrap().to_string();
    assert!(
        archive.starts_with(&format!("s3://{bucket}/nightly/")) && archive.ends_with(".dbk.tar"),
        "{report}"
    );
    // Nothing local: no `s3:` directory, no archive in the working directory.
    assert!(!dir.path().join("s3:").exists());
    let archive_key = archive
        .trim_start_matches(&format!("s3://{bucket}/"))
        .to_string();
    // Only the archive: the upload's marker is gone and no upload is left unfinished.
    assert_eq!(keys(&bucket, "nightly/"), vec![archive_key.clone()]);
    assert_eq!(multipart_uploads(&bucket), Vec::<String>::new());

    let list = stdout_json(dbk(dir.path()).args(["list", &prefix]));
    let archives = list["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 1, "{list}");
    assert_eq!(archives[0]["complete"], true, "{list}");
    assert_eq!(archives[0]["rows"]["postgres"], 3000, "{list}");
    assert_eq!(archives[0]["rows"]["mongo"], 500, "{list}");
    assert!(archives[0]["verified"].is_null(), "{list}");

    let verify = stdout_json(dbk(dir.path()).args(["verify", &archive]));
    assert_eq!(verify["ok"], true, "{verify}");
    // The stamp lives beside the archive and `list` shows it.
    assert!(keys(&bucket, "nightly/").contains(&format!("{archive_key}.verified.json")));
    let list = stdout_json(dbk(dir.path()).args(["list", &prefix]));
    assert_eq!(list["archives"][0]["verified"]["level"], "decode", "{list}");

    let (pg_target, mongo_target) = (unique_name("s3_restored"), unique_name("s3_restored"));
    let pg_url = pg_url_with_db(&common::pg_server_url(), &pg_target);
    let mongo_url = common::mongo_url_with_db(&common::mongo_server_url(), &mongo_target);
    let restored = stdout_json(dbk(dir.path()).args([
        "--pg-url",
        &pg_url,
        "--mongo-url",
        &mongo_url,
        "restore",
        &archive,
    ]));
    for engine in ["postgres", "mongo"] {
        assert_eq!(
            restored[engine]["verify"]["mismatches"],
            serde_json::json!([]),
            "{restored}"
        );
    }
    let client = common::pg_connect(&pg_url).await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3000);
    let mongo_db = common::mongo_client(&mongo_url)
        .await
        .database(&mongo_target);
    let docs = mongo_db
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(docs, 500);
    drop(client);
    let admin = common::pg_connect(&common::pg_server_url()).await;
    let _ = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{pg_target}\" WITH (FORCE)"
        ))
        .await;
    let _ = mongo_db.drop().await;
}

/// Regression: a backup to a bucket with `--passphrase-file` sealed its chunks but not the
/// archive (no KEY.age, the manifest in clear, not marked encrypted), so nothing could restore
/// it; with `--mask` its manifest lost the masking record. A bucket archive is now written
/// exactly like a local one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_archive_is_sealed_and_records_its_masking_like_a_local_one() {
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE secrets (id int PRIMARY KEY, note text NOT NULL);
             INSERT INTO secrets SELECT g, 'note-in-clear-' || g FROM generate_series(1, 400) g;",
        )
        .await
        .unwrap();
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    let passphrase = dir.path().join("pass.txt");
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    std::fs::write(dir.path().join("mask.key"), "bucket-mask-key-0123456789\n").unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        "key_file = \"mask.key\"\n[postgres.\"public.secrets\"]\nnote = \"hash\"\n",
    )
    .unwrap();
    let prefix = format!("s3://{bucket}/sealed/");
    let report = stdout_json(
        dbk(dir.path())
            .args(["--pg-url", &pg.url, "backup", "--output", &prefix])
            .args(["--mask", "rules.toml", "--passphrase-file"])
            .arg(&passphrase),
    );
    let archive = report["archive"].as_str().unwrap().to_string();
    assert_eq!(report["masking"]["rules_file"], "rules.toml", "{report}");

    let list = stdout_json(dbk(dir.path()).args(["list", &prefix]));
    assert_eq!(list["archives"][0]["encrypted"], true, "{list}");
    // Without the passphrase: V0 only, and restore refuses.
    let verify = stdout_json(dbk(dir.path()).args(["verify", &archive]));
    assert_eq!(verify["levels"], serde_json::json!(["V0"]), "{verify}");
    let target = unique_name("s3_sealed");
    let target_url = pg_url_with_db(&common::pg_server_url(), &target);
    // Dropped at the end (kept if the test fails), like every test database.
    let _restored = PgTestDb::adopt(&target, target_url.clone());
    fails(
        dbk(dir.path()).args(["--pg-url", &target_url, "restore", &archive]),
        2,
    );

    let restored = stdout_json(
        dbk(dir.path())
            .args(["--pg-url", &target_url, "restore", &archive])
            .arg("--passphrase-file")
            .arg(&passphrase),
    );
    assert_eq!(
        restored["postgres"]["verify"]["mismatches"],
        serde_json::json!([]),
        "{restored}"
    );
    assert_eq!(restored["postgres"]["rows"], 400, "{restored}");
    assert_eq!(
        restored["archive_masking"]["rules_file"], "rules.toml",
        "{restored}"
    );
    let client = common::pg_connect(&target_url).await;
    let in_clear: i64 = client
        .query_one(
            "SELECT count(*) FROM secrets WHERE note LIKE 'note-in-clear-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_clear, 0, "the archive holds masked notes only");
    drop(client);
}

/// V0 reads an object as several ranged GETs in flight, delivered in order: an archive of many
/// ranges (over 20 MB, not a multiple of the range size) verifies, and a restore from it is
/// exact. The verify at `-v` says how much it downloaded: V0 and V1 each read it about once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_of_many_ranges_verifies_and_restores_from_a_bucket() {
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE blobs (id int PRIMARY KEY, body text NOT NULL);
             INSERT INTO blobs SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 110000) g;",
        )
        .await
        .unwrap();
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("s3://{bucket}/big/");
    let report = stdout_json(dbk(dir.path()).args([
        "--pg-url",
        &pg.url,
        "backup",
        "--output",
        &prefix,
        "--compression",
        "none",
    ]));
    let archive = report["archive"].as_str().unwrap().to_string();
    let bytes = report["bytes"].as_u64().unwrap();
    assert!(
        bytes > 20 << 20,
        "the archive spans many ranges: {bytes} bytes"
    );

    let out = dbk(dir.path())
        .args(["-v", "verify", &archive])
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "downloaded N bytes of URL (R.RRx its M bytes)": V0 reads every byte, V1 every chunk.
    let ratio: f64 = stderr
        .split_once("downloaded ")
        .and_then(|(_, rest)| rest.split_once(" ("))
        .and_then(|(_, rest)| rest.split_once("x its"))
        .and_then(|(ratio, _)| ratio.parse().ok())
        .unwrap_or_else(|| panic!("no download report at -v: {stderr}"));
    assert!(
        (1.9..=2.0).contains(&ratio),
        "V0 and V1 read the archive about once each, not {ratio}x: {stderr}"
    );

    let target = unique_name("s3_ranges");
    let target_url = pg_url_with_db(&common::pg_server_url(), &target);
    let _restored = PgTestDb::adopt(&target, target_url.clone());
    let restored =
        stdout_json(dbk(dir.path()).args(["--pg-url", &target_url, "restore", &archive, "--deep"]));
    assert_eq!(
        restored["postgres"]["verify"]["mismatches"],
        serde_json::json!([]),
        "{restored}"
    );
    assert_eq!(restored["postgres"]["rows"], 110000, "{restored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_and_backup_prune_on_a_bucket() {
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);")
        .await
        .unwrap();
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("s3://{bucket}/p");
    for _ in 0..3 {
        dbk(dir.path())
            .args(["--pg-url", &pg.url, "backup", "--output", &prefix])
            .assert()
            .success();
        // Archive names carry the second they were taken at.
        std::thread::sleep(Duration::from_millis(1100));
    }
    // A stray object that is not an archive is left alone.
    s3_request("PUT", &format!("/{bucket}/p/notes.txt"), b"hello");
    let pruned = stdout_json(dbk(dir.path()).args(["prune", &prefix, "--keep-last", "2"]));
    assert_eq!(pruned["deleted"].as_array().unwrap().len(), 1, "{pruned}");
    assert_eq!(pruned["kept"].as_array().unwrap().len(), 2, "{pruned}");
    let archives: Vec<String> = keys(&bucket, "p/")
        .into_iter()
        .filter(|k| k.ends_with(".dbk.tar"))
        .collect();
    assert_eq!(archives.len(), 2, "{archives:?}");
    assert!(keys(&bucket, "p/").contains(&"p/notes.txt".to_string()));

    // `[backup] output` in the config names the bucket; `--prune` applies [retention].
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        format!("[backup]\noutput = \"{prefix}/\"\n\n[retention]\nkeep_last = 1\n"),
    )
    .unwrap();
    let report = stdout_json(dbk(dir.path()).args(["--pg-url", &pg.url, "backup", "--prune"]));
    assert_eq!(report["pruned"].as_array().unwrap().len(), 2, "{report}");
    let archives: Vec<String> = keys(&bucket, "p/")
        .into_iter()
        .filter(|k| k.ends_with(".dbk.tar"))
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    assert!(report["archive"].as_str().unwrap().ends_with(&archives[0]));
    // No lock is left behind.
    assert!(!keys(&bucket, "p/")
        .iter()
        .any(|k| k.ends_with(".dbkeeper.lock")));
}

#[test]
fn a_missing_bucket_is_bad_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = unique_name("no-such").to_lowercase().replace('_', "-");
    let stderr = fails(
        dbk(dir.path()).args([
            "--pg-url",
            "postgres://u:p@127.0.0.1:1/x",
            "backup",
            "--output",
            &format!("s3://{missing}/x/"),
        ]),
        2,
    );
    assert!(
        stderr.contains(&missing) && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let stderr = fails(
        dbk(dir.path()).args(["list", &format!("s3://{missing}/")]),
        2,
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn malformed_urls_are_refused_naming_the_flag_or_config_key() {
    let dir = tempfile::tempdir().unwrap();
    for (url, what) in [
        ("s3:bucket/x", "no bucket"),
        ("s3:///x/", "no bucket"),
        ("s3://Bad_Bucket/x/", "not a valid bucket name"),
        ("ftp://host/x/", "not supported"),
        ("s3://key:secret@bucket/x/", "credentials"),
    ] {
        let stderr = fails(
            dbk(dir.path()).args([
                "--pg-url",
                "postgres://u@127.0.0.1:1/x",
                "backup",
                "--output",
                url,
            ]),
            2,
        );
        assert!(
            stderr.contains("--output") && stderr.contains(what),
            "{url}: {stderr}"
        );
        assert!(!stderr.contains(":secret@"), "{stderr}");
    }
    // The old bug: a local directory named `s3:` appeared.
    assert!(!dir.path().join("s3:").exists());
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[backup]\noutput = \"s3://\"\n",
    )
    .unwrap();
    let stderr = fails(dbk(dir.path()).args(["list"]), 2);
    assert!(stderr.contains("[backup] output"), "{stderr}");
    let stderr = fails(dbk(dir.path()).args(["verify", "gs:nothing"]), 2);
    assert!(stderr.contains("ARCHIVE"), "{stderr}");
}

#[test]
fn an_unreachable_endpoint_is_a_runtime_failure_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[storage]\nmax_retries = 1\n",
    )
    .unwrap();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = dbkeeper(dir.path());
    envs(&mut cmd, &format!("http://127.0.0.1:{port}"));
    let stderr = fails(cmd.args(["list", "s3://some-bucket/nightly/"]), 3);
    assert!(stderr.contains("s3://some-bucket/nightly"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_key_that_is_not_an_archive_is_refused_and_listed_as_incomplete() {
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    let (status, _) = s3_request("PUT", &format!("/{bucket}/b/junk.dbk.tar"), &[7u8; 3000]);
    assert_eq!(status, 200);
    let url = format!("s3://{bucket}/b/junk.dbk.tar");
    let stderr = fails(dbk(dir.path()).args(["verify", &url]), 1);
    assert!(stderr.contains("not a dbkeeper archive"), "{stderr}");
    let stderr = fails(
        dbk(dir.path()).args(["--pg-url", "postgres://u@127.0.0.1:1/x", "restore", &url]),
        2,
    );
    assert!(
        stderr.contains("not a dbkeeper archive") && stderr.contains(&url),
        "{stderr}"
    );
    let stderr = fails(
        dbk(dir.path()).args(["verify", &format!("s3://{bucket}/b/missing.dbk.tar")]),
        2,
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
    let list = stdout_json(dbk(dir.path()).args(["list", &format!("s3://{bucket}/b/")]));
    assert_eq!(list["archives"][0]["complete"], false, "{list}");
}

/// A backup of a table big enough to span several upload parts, paused before its manifest.
async fn paused_backup(
    dir: &Path,
    pg: &PgTestDb,
    output: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let log = dir.join(format!("{}.log", unique_name("backup")));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbkeeper"));
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("DBKEEPER_TEST_PAUSE_BEFORE", "manifest")
        .env_remove("DBKEEPER_PG_URL")
        .env_remove("DATABASE_URL")
        .args([
            "--pg-url",
            &pg.url,
            "backup",
            "--output",
            output,
            "--compression",
            "none",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("test pause before manifest")
    {
        assert!(
            Instant::now() < deadline,
            "backup never paused: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, log)
}

async fn big_source() -> PgTestDb {
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE big (id int PRIMARY KEY, v text);
             INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 120000) i;",
        )
        .await
        .unwrap();
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upload_leaves_no_archive_a_racing_backup_is_refused_and_the_next_one_succeeds() {
    let pg = big_source().await;
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("s3://{bucket}/k/");
    let (mut child, _log) = paused_backup(dir.path(), &pg, &prefix).await;
    // Parts are uploaded, the upload is not complete: no object under a final name.
    assert!(!keys(&bucket, "k/").iter().any(|k| k.ends_with(".dbk.tar")));

    // A second backup racing for the prefix is refused like one for a directory (exit 4).
    let stderr = fails(
        dbk(dir.path()).args(["--pg-url", &pg.url, "backup", "--output", &prefix]),
        4,
    );
    assert!(
        stderr.contains("is locked by another dbkeeper run"),
        "{stderr}"
    );

    // SIGKILL: no chance to abort the upload or delete its marker.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!keys(&bucket, "k/").iter().any(|k| k.ends_with(".dbk.tar")));
    let list = stdout_json(dbk(dir.path()).args(["list", &prefix]));
    assert_eq!(list["archives"].as_array().unwrap().len(), 0, "{list}");
    let abandoned = multipart_uploads(&bucket);
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert!(
        keys(&bucket, "k/.dbkeeper-uploads/")
            .iter()
            .any(|k| k.ends_with(".dbk.tar.json")),
        "no upload marker"
    );

    // The dead run's lock is taken over and its upload aborted; the next backup succeeds and
    // verifies, and nothing unfinished is left in the bucket.
    let out = dbk(dir.path())
        .args(["--pg-url", &pg.url, "backup", "--output", &prefix, "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("aborted the unfinished upload of") && stderr.contains(&abandoned[0]),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let archive = report["archive"].as_str().unwrap();
    dbk(dir.path()).args(["verify", archive]).assert().success();
    assert_eq!(multipart_uploads(&bucket), Vec::<String>::new());
    assert_eq!(keys(&bucket, "k/.dbkeeper-uploads/"), Vec::<String>::new());
}

/// What the fault-injecting proxy does to part uploads.
#[derive(Clone, Copy)]
enum Fault {
    /// The first N part uploads are answered with 503 SlowDown.
    SlowDown(usize),
    /// After N part uploads the "server" is gone: every later request's connection is closed
    /// without an answer.
    StopAfter(usize),
}

/// A TCP proxy in front of the S3 server that injects `fault` and forwards everything else.
/// Each connection carries one request (the proxy answers `Connection: close`), so every
/// request is seen.
fn faulty_proxy(fault: Fault) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = authority(&endpoint());
    let injected = Arc::new(AtomicUsize::new(0));
    let count = injected.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let upstream = upstream.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                let _ = proxy_one(client, &upstream, &count, fault);
            });
        }
    });
    (format!("http://{addr}"), injected)
}

fn proxy_one(
    mut client: TcpStream,
    upstream: &str,
    parts: &AtomicUsize,
    fault: Fault,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let length: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    client.read_exact(&mut body)?;
    let request_line = text.lines().next().unwrap_or_default().to_string();
    let is_part = request_line.starts_with("PUT ") && request_line.contains("partNumber=");
    let seen = if is_part {
        parts.fetch_add(1, Ordering::SeqCst)
    } else {
        parts.load(Ordering::SeqCst)
    };
    if let Fault::StopAfter(n) = fault {
        if seen >= n {
            return Ok(()); // dropped: the connection closes unanswered
        }
    }
    if matches!(fault, Fault::SlowDown(n) if is_part && seen < n) {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        write!(
            client,
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return Ok(());
    }
    // Forward with `Connection: close`, so the response ends where the upstream closes.
    let head = text
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\r\n");
    let mut server = TcpStream::connect(upstream)?;
    write!(server, "{head}\r\nConnection: close\r\n\r\n")?;
    server.write_all(&body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    client.write_all(&response)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_upload_answered_with_503_slowdown_is_retried() {
    let pg = big_source().await;
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    let (proxy, injected) = faulty_proxy(Fault::SlowDown(2));
    let mut cmd = dbkeeper(dir.path());
    envs(&mut cmd, &proxy);
    let out = cmd
        .args([
            "--pg-url",
            &pg.url,
            "backup",
            "--output",
            &format!("s3://{bucket}/slow/"),
            "--compression",
            "none",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        injected.load(Ordering::SeqCst) > 2,
        "no part upload went through the proxy"
    );
    dbk(dir.path())
        .args(["verify", report["archive"].as_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok").or(predicate::str::contains("OK")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stopping_mid_upload_fails_the_backup_and_leaves_no_archive() {
    let pg = big_source().await;
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        "[storage]\npart_size_mib = 5\nmax_retries = 1\n",
    )
    .unwrap();
    let prefix = format!("s3://{bucket}/stop/");
    let (proxy, parts) = faulty_proxy(Fault::StopAfter(1));
    let mut cmd = dbkeeper(dir.path());
    envs(&mut cmd, &proxy);
    let stderr = fails(
        cmd.args([
            "--pg-url",
            &pg.url,
            "backup",
            "--output",
            &prefix,
            "--compression",
            "none",
        ]),
        3,
    );
    assert!(
        parts.load(Ordering::SeqCst) >= 1,
        "no part reached the proxy"
    );
    assert!(stderr.contains(&format!("s3://{bucket}/stop/")), "{stderr}");
    assert!(!keys(&bucket, "stop/")
        .iter()
        .any(|k| k.ends_with(".dbk.tar")));
    // With the server back, the next backup succeeds (the dead run's lock, if any was left,
    // belongs to a process that is gone) and aborts the upload the failed run could not.
    let report =
        stdout_json(dbk(dir.path()).args(["--pg-url", &pg.url, "backup", "--output", &prefix]));
    dbk(dir.path())
        .args(["verify", report["archive"].as_str().unwrap()])
        .assert()
        .success();
    assert_eq!(multipart_uploads(&bucket), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_up_backup_first_backs_up_into_the_configured_bucket() {
    let pg = PgTestDb::create().await;
    pg.client()
        .await
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 40) g;",
        )
        .await
        .unwrap();
    let bucket = bucket();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    std::fs::write(
        dir.path().join("migrations/V1__drop_notes.sql"),
        "DROP TABLE notes;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dbkeeper.toml"),
        format!("[backup]\noutput = \"s3://{bucket}/pre-migrate/\"\n"),
    )
    .unwrap();
    let report =
        stdout_json(dbk(dir.path()).args(["--pg-url", &pg.url, "migrate", "up", "--backup-first"]));
    let archive = report["backup_first"].as_str().unwrap().to_string();
    assert!(
        archive.starts_with(&format!("s3://{bucket}/pre-migrate/")),
        "{report}"
    );
    assert_eq!(report["runs"][0]["steps"][0]["version"], 1, "{report}");
    // Verified before migrating: the stamp is beside the archive in the bucket.
    let key = archive.trim_start_matches(&format!("s3://{bucket}/"));
    let stored = keys(&bucket, "pre-migrate/");
    assert!(stored.contains(&key.to_string()), "{stored:?}");
    assert!(
        stored.contains(&format!("{key}.verified.json")),
        "{stored:?}"
    );
    assert!(!dir.path().join("s3:").exists());

    // The migration dropped the table; the archive in the bucket brings it back.
    let restored = PgTestDb::create().await;
    dbk(dir.path())
        .args(["--pg-url", &restored.url, "restore", &archive])
        .assert()
        .success();
    let n: i64 = restored
        .client()
        .await
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40);
}
