//! Private database servers for tests that stop or kill their server (the shared test servers
//! must never be stopped: other tests use them).
//!
//! - [`PrivatePg`]: a throwaway PostgreSQL cluster in a temp directory (initdb + pg_ctl from
//!   `/usr/lib/postgresql/*/bin`, run as the `postgres` user when we are root, since the server
//!   refuses to run as root), on a free port, trust authentication, fsync off.
//! - [`PrivateMongo`]: SecantusDB (`secantusd-py --storage-path :memory:`) on a free port, from
//!   `DBKEEPER_TEST_SECANTUSD` or the venv `scripts/services.sh` creates under
//!   `target/services/secantus-venv`.
//!
//! Both are torn down on drop. Missing binaries fail the test with a message saying what to
//! install; they never skip it.
//!
//! Use from a test file with `#[path = "common/private_server.rs"] mod private_server;`.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

fn wait_for_port(port: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not accept connections on port {port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The newest `/usr/lib/postgresql/<major>/bin` holding initdb.
fn pg_bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no /usr/lib/postgresql/*/bin/initdb: install Debian's `postgresql` package (scripts/services.sh does)"
        )
    })
}

/// A private PostgreSQL cluster, stopped (immediately) and deleted on drop.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let bin = pg_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("dbk-private-pg")
            .tempdir()
            .unwrap();
        if running_as_root() {
            let ids = |flag: &str| {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "no `postgres` user to run the server as"
                );
                String::from_utf8(out.stdout)
                    .unwrap()
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            };
            std::os::unix::fs::chown(dir.path(), Some(ids("-u")), Some(ids("-g"))).unwrap();
        }
        let pg = PrivatePg {
            dir,
            bin,
            port: free_port(),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data_dir(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_again();
        pg
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of the server's programs as the `postgres` user; panics on failure.
    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
        wait_for_port(self.port, Duration::from_secs(30), "private PostgreSQL");
    }

    /// Stops the server the hard way (`pg_ctl stop -m immediate`): every connection drops at
    /// once, as when a database server crashes.
    pub fn stop_immediately(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "immediate", "stop"],
        );
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL in `db` with psql (the server's own), panicking on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(db))
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        if pid_file.exists() {
            let _ = Command::new(if running_as_root() { "runuser" } else { "true" })
                .args(if running_as_root() {
                    vec!["-u", "postgres", "--"]
                } else {
                    vec![]
                })
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &self.data_dir(), "-m", "immediate", "stop"])
                .output();
        }
    }
}

/// Where secantusd-py is: `DBKEEPER_TEST_SECANTUSD`, else the venv scripts/services.sh makes.
fn secantusd() -> PathBuf {
    if let Ok(path) = std::env::var("DBKEEPER_TEST_SECANTUSD") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/services/secantus-venv");
    let bin = venv.join("bin/secantusd-py");
    assert!(
        bin.is_file(),
        "{} is missing: run `scripts/services.sh start` once (it creates the SecantusDB venv), \
         or set DBKEEPER_TEST_SECANTUSD to a secantusd-py binary",
        bin.display()
    );
    bin
}

/// A private in-memory SecantusDB server, killed on drop.
pub struct PrivateMongo {
    child: Child,
    pub port: u16,
}

impl PrivateMongo {
    pub fn start() -> PrivateMongo {
        let port = free_port();
        let child = Command::new(secantusd())
            .args(["--port", &port.to_string(), "--storage-path", ":memory:"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting secantusd-py");
        wait_for_port(port, Duration::from_secs(30), "private SecantusDB");
        PrivateMongo { child, port }
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{db}", self.port)
    }

    /// Kills the server (SIGKILL): every connection drops, as when mongod crashes.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        self.kill();
    }
}
