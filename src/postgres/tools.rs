//! The PostgreSQL client programs dbkeeper drives: `pg_dump` (schema at a snapshot) and `psql`
//! (runs pg_dump's scripts, which contain psql meta-commands such as `\restrict`).
//!
//! Connection details go to the child through libpq's environment variables, the password in
//! `PGPASSWORD`: never on a command line, where `ps` would show it. Programs are looked up in
//! `DBKEEPER_PG_BIN` when set, else on `PATH`, else in Debian's `/usr/lib/postgresql/<major>/bin`.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio_postgres::config::Host;

use crate::error::{Error, Result};
use crate::postgres::PgTarget;

/// Directory holding pg_dump and psql, overriding the search.
pub const ENV_PG_BIN: &str = "DBKEEPER_PG_BIN";

/// A client program found on this machine, with its major version.
#[derive(Debug, Clone)]
pub struct PgTool {
    pub program: &'static str,
    pub path: PathBuf,
    pub version: String,
    pub major: u32,
}

/// Finds `program` (pg_dump or psql) at least as new as the server (`server_major`). A missing
/// or older program is an error naming the version needed.
pub async fn find_tool(program: &'static str, server_major: u32) -> Result<PgTool> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os(ENV_PG_BIN).filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir).join(program));
    } else {
        candidates.push(PathBuf::from(program));
        for major in (server_major..server_major + 5).rev() {
            candidates.push(PathBuf::from(format!(
                "/usr/lib/postgresql/{major}/bin/{program}"
            )));
        }
    }
    let mut found_older = None;
    for path in &candidates {
        let Ok(output) = Command::new(path).arg("--version").output().await else {
            continue;
        };
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let Some((version, major)) = parse_version(&text) else {
            continue;
        };
        let tool = PgTool {
            program,
            path: path.clone(),
            version,
            major,
        };
        if major >= server_major {
            return Ok(tool);
        }
        found_older.get_or_insert(tool);
    }
    let needed = format!(
        "install the PostgreSQL {server_major} client programs (Debian/Ubuntu: \
         postgresql-client-{server_major}) and put them on PATH, or set {ENV_PG_BIN} to their \
         directory"
    );
    Err(Error::Tool {
        program: program.to_string(),
        message: match found_older {
            Some(old) => format!(
                "{} is version {}, older than the server (PostgreSQL {server_major}); {program} \
                 {server_major} or newer is needed: {needed}",
                old.path.display(),
                old.version
            ),
            None => format!("not found (looked for {}): {needed}", describe(&candidates)),
        },
    })
}

fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` -> ("15.20", 15).
fn parse_version(text: &str) -> Option<(String, u32)> {
    let version = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((version.to_string(), major))
}

/// A command for `tool` connected to `target` through libpq environment variables.
fn command_for(tool: &PgTool, target: &PgTarget) -> Command {
    let config = target.config();
    let mut cmd = Command::new(&tool.path);
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSERVICE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    if let Some(host) = config.get_hosts().first() {
        match host {
            Host::Tcp(h) => cmd.env("PGHOST", h),
            #[cfg(unix)]
            Host::Unix(p) => cmd.env("PGHOST", p),
        };
    }
    if let Some(port) = config.get_ports().first() {
        cmd.env("PGPORT", port.to_string());
    }
    if let Some(user) = config.get_user() {
        cmd.env("PGUSER", user);
    }
    if let Some(password) = config.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(password).as_ref());
    }
    cmd.env("PGDATABASE", target.dbname());
    cmd.envs(target.tls().libpq_env())
        .env("PGAPPNAME", "dbkeeper")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The last lines of a tool's stderr, scrubbed of the password, for an error message.
fn stderr_tail(target: &PgTarget, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    target.url().scrub(&tail)
}

/// Which part of the schema to dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Everything before the data: types, tables, functions, views, grants.
    PreData,
    /// Everything after: indexes, constraints, triggers, rules, policies.
    PostData,
}

impl Section {
    fn flag(self) -> &'static str {
        match self {
            Section::PreData => "--section=pre-data",
            Section::PostData => "--section=post-data",
        }
    }

    /// The pg_dump arguments selecting the section. Pre-data goes without `--schema-only`:
    /// that flag also drops large objects, whose metadata (`lo_create`, owner, comment, grants)
    /// pg_dump writes in pre-data; the section alone already leaves every row out. Post-data
    /// keeps it, or it would gain `REFRESH MATERIALIZED VIEW` (restore refreshes those itself).
    fn args(self) -> &'static [&'static str] {
        match self {
            Section::PreData => &["--section=pre-data"],
            Section::PostData => &["--schema-only", "--section=post-data"],
        }
    }
}

/// The schema of one section (pre-data with large objects' metadata) at an exported snapshot.
/// Owners and privileges are kept (restore skips them by default); the script is returned
/// whole, and a non-zero exit is an error carrying pg_dump's own message.
pub async fn pg_dump_schema(
    tool: &PgTool,
    target: &PgTarget,
    snapshot: &str,
    section: Section,
) -> Result<Vec<u8>> {
    let mut cmd = command_for(tool, target);
    cmd.args(section.args());
    cmd.args(["--no-password", &format!("--snapshot={snapshot}")]);
    let output = cmd.output().await.map_err(|e| Error::Tool {
        program: tool.path.display().to_string(),
        message: format!("cannot run: {e}"),
    })?;
    if !output.status.success() {
        return Err(Error::Tool {
            program: "pg_dump".into(),
            message: format!(
                "{} failed ({}): {}",
                section.flag(),
                output.status,
                stderr_tail(target, &output.stderr)
            ),
        });
    }
    Ok(output.stdout)
}

/// `pg_dump --schema-only` of the whole database as it is now, leaving out `exclude_tables`
/// (for `migrate test`, which compares schemas and must not see its own history tables).
pub async fn pg_dump_schema_now(
    tool: &PgTool,
    target: &PgTarget,
    exclude_tables: &[&str],
) -> Result<String> {
    let mut cmd = command_for(tool, target);
    cmd.args([
        "--schema-only",
        "--no-password",
        "--no-owner",
        "--no-privileges",
    ]);
    for table in exclude_tables {
        cmd.arg(format!("--exclude-table={table}"));
    }
    let output = cmd.output().await.map_err(|e| Error::Tool {
        program: tool.path.display().to_string(),
        message: format!("cannot run: {e}"),
    })?;
    if !output.status.success() {
        return Err(Error::Tool {
            program: "pg_dump".into(),
            message: format!(
                "--schema-only failed ({}): {}",
                output.status,
                stderr_tail(target, &output.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a SQL script with `psql -X -v ON_ERROR_STOP=1` on `target`, feeding it on stdin. `what`
/// names the script in errors.
pub async fn psql_run(tool: &PgTool, target: &PgTarget, script: Vec<u8>, what: &str) -> Result<()> {
    let mut cmd = command_for(tool, target);
    cmd.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--no-password",
        "-f",
        "-",
    ])
    .stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Tool {
        program: tool.path.display().to_string(),
        message: format!("cannot run: {e}"),
    })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Feed stdin concurrently with draining stdout/stderr, so a chatty psql cannot deadlock on a
    // full pipe while we are still writing.
    let feed = async move {
        let result = stdin.write_all(&script).await;
        drop(stdin);
        result
    };
    let (fed, output) = tokio::join!(feed, child.wait_with_output());
    let output = output.map_err(|e| Error::Tool {
        program: "psql".into(),
        message: format!("running {what}: {e}"),
    })?;
    if !output.status.success() {
        return Err(Error::Tool {
            program: "psql".into(),
            message: format!(
                "{what} failed ({}): {}",
                output.status,
                stderr_tail(target, &output.stderr)
            ),
        });
    }
    fed.map_err(|e| Error::Tool {
        program: "psql".into(),
        message: format!("feeding {what}: {e}"),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"),
            Some(("15.20".into(), 15))
        );
        assert_eq!(
            parse_version("psql (PostgreSQL) 9.6.24"),
            Some(("9.6.24".into(), 9))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 17devel"),
            Some(("17devel".into(), 17))
        );
        assert_eq!(parse_version("garbage"), None);
    }
}
