//! Test harness for integration tests against real services.
//!
//! Every test gets its own uniquely named PostgreSQL database and MongoDB database, dropped when
//! the handle goes out of scope. When the test failed (the thread is panicking) they are kept and
//! their names printed, so the state that broke the test can be inspected.
//!
//! Services come from `DBKEEPER_TEST_PG_URL` and `DBKEEPER_TEST_MONGO_URL` (scripts/test.sh starts
//! them and sets both). A test that cannot reach its service fails with a message saying how to
//! start it; it never passes silently.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub mod mongo_archive;

pub const PG_ENV: &str = "DBKEEPER_TEST_PG_URL";
pub const MONGO_ENV: &str = "DBKEEPER_TEST_MONGO_URL";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn service_url(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs a real {what} server. Run the suite with scripts/test.sh \
             (it starts the services), or `eval \"$(scripts/services.sh start)\"` first"
        ),
    }
}

/// The one JSON document a command printed on stdout; panics showing stdout and stderr when
/// it is not one.
pub fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A temporary work directory with a `subdir/` holding `files` (name, text); returns the work
/// directory (removed on drop) and `subdir`'s path.
pub fn files_in(subdir: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join(subdir);
    std::fs::create_dir(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    (work, dir)
}

/// A name unique across parallel tests and test processes.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

/// The server-level PostgreSQL URL (its database is used only to create and drop test databases).
pub fn pg_server_url() -> String {
    service_url(PG_ENV, "PostgreSQL")
}

/// Replaces the database in a PostgreSQL URL.
pub fn pg_url_with_db(server_url: &str, db: &str) -> String {
    let mut url =
        url::Url::parse(server_url).unwrap_or_else(|e| panic!("{PG_ENV} is not a URL: {e}"));
    url.set_path(&format!("/{db}"));
    url.to_string()
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .unwrap_or_else(|_| panic!("PostgreSQL at {url} did not answer within 10 s ({PG_ENV})"))
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {url} ({PG_ENV}): {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A throwaway PostgreSQL database.
pub struct PgTestDb {
    pub name: String,
    pub url: String,
    server_url: String,
}

impl PgTestDb {
    pub async fn create() -> PgTestDb {
        let server_url = pg_server_url();
        let name = unique_name("dbk");
        let admin = pg_connect(&server_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        PgTestDb {
            url: pg_url_with_db(&server_url, &name),
            name,
            server_url,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        pg_connect(&self.url).await
    }

    /// A database something else (a restore, a script) created, dropped like one of ours.
    pub fn adopt(name: &str, url: String) -> PgTestDb {
        PgTestDb {
            name: name.to_string(),
            url,
            server_url: pg_server_url(),
        }
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: keeping PostgreSQL database {} for inspection",
                self.name
            );
            return;
        }
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; use a fresh one.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = pg_connect(&server_url).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            });
        })
        .join()
        .ok();
    }
}

pub fn mongo_server_url() -> String {
    service_url(MONGO_ENV, "MongoDB-compatible")
}

/// The MongoDB URL with `db` as its path (keeping any query options).
pub fn mongo_url_with_db(server_url: &str, db: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

pub async fn mongo_client(url: &str) -> mongodb::Client {
    let mut options = mongodb::options::ClientOptions::parse(url)
        .await
        .unwrap_or_else(|e| panic!("bad {MONGO_ENV} {url}: {e}"));
    options.server_selection_timeout = Some(Duration::from_secs(10));
    let client = mongodb::Client::with_options(options).unwrap();
    client
        .database("admin")
        .run_command(mongodb::bson::doc! { "ping": 1 })
        .await
        .unwrap_or_else(|e| panic!("cannot reach MongoDB at {url} ({MONGO_ENV}): {e}"));
    client
}

/// A throwaway MongoDB database.
pub struct MongoTestDb {
    pub name: String,
    pub url: String,
    server_url: String,
}

impl MongoTestDb {
    pub async fn create() -> MongoTestDb {
        let server_url = mongo_server_url();
        let name = unique_name("dbk");
        // Reaching the server now makes an unreachable service fail the test here, clearly.
        mongo_client(&server_url).await;
        MongoTestDb {
            url: mongo_url_with_db(&server_url, &name),
            name,
            server_url,
        }
    }

    pub async fn db(&self) -> mongodb::Database {
        mongo_client(&self.server_url).await.database(&self.name)
    }
}

impl Drop for MongoTestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: keeping MongoDB database {} for inspection",
                self.name
            );
            return;
        }
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = mongo_client(&server_url).await.database(&name).drop().await;
            });
        })
        .join()
        .ok();
    }
}

/// The dbkeeper binary with no connection settings inherited from the environment, run in a
/// fresh working directory so no stray dbkeeper.toml is picked up.
pub fn dbkeeper(workdir: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("dbkeeper").unwrap();
    for var in [
        "DBKEEPER_PG_URL",
        "DATABASE_URL",
        "DBKEEPER_MONGO_URL",
        "MONGODB_URI",
        "DBKEEPER_MONGO_DB",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(workdir).timeout(Duration::from_secs(300));
    cmd
}

/// A temporary work directory holding `sub/` (created with its parents) with `files` in it, as
/// a migration set or a config directory a command runs against.
pub fn workdir<N: AsRef<str>, T: AsRef<[u8]>>(
    sub: &str,
    files: &[(N, T)],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join(sub);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name.as_ref()), text).unwrap();
    }
    (work, dir)
}

/// A finished command's stderr, for assertion messages.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
