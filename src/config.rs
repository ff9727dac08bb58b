//! Configuration: flags > environment > `dbkeeper.toml` > defaults, resolved in one place.
//!
//! The CLI hands over what the user typed ([`Overrides`]) and a way to read the environment;
//! [`Settings::resolve`] merges them with the config file. Keeping the environment behind a
//! function lets tests prove the precedence without touching the process environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::archive::codec::{Codec, Compression};
use crate::error::{Error, Result};
use crate::redact::SecretUrl;

/// The config file looked up in the working directory when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "dbkeeper.toml";

pub const ENV_PG_URL: &str = "DBKEEPER_PG_URL";
pub const ENV_PG_URL_FALLBACK: &str = "DATABASE_URL";
pub const ENV_MONGO_URL: &str = "DBKEEPER_MONGO_URL";
pub const ENV_MONGO_URL_FALLBACK: &str = "MONGODB_URI";
pub const ENV_MONGO_DB: &str = "DBKEEPER_MONGO_DB";

/// What the command line said; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub pg_url: Option<SecretUrl>,
    pub mongo_url: Option<SecretUrl>,
    pub mongo_db: Option<String>,
    pub connect_timeout: Option<Duration>,
}

/// The `dbkeeper.toml` file. Unknown keys are errors: a typo must not silently fall back to a
/// default (think `keep_dialy`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub postgres: PostgresSection,
    #[serde(default)]
    pub mongo: MongoSection,
    #[serde(default)]
    pub migrate: MigrateSection,
    #[serde(default)]
    pub backup: BackupSection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub storage: crate::storage::StorageSection,
    #[serde(default)]
    pub encryption: EncryptionSection,
}

/// `[encryption]`: who new archives are encrypted to, and how this host opens them. Only paths
/// and public keys: a secret never belongs in the config file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// Public keys (`age1…`, `ssh-ed25519 …`) every new archive is encrypted to.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// A file of public keys, one per line.
    pub recipients_file: Option<PathBuf>,
    /// The age identity (or unencrypted OpenSSH key) restore, verify and list open archives with.
    pub identity_file: Option<PathBuf>,
    /// A file whose first line is the passphrase (passphrase mode, for both backup and restore).
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    pub url: Option<String>,
    pub migrations: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSection {
    pub url: Option<String>,
    pub database: Option<String>,
    pub migrations: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateSection {
    pub lock_timeout_secs: Option<u64>,
    /// What `migrate up` does with lint errors in pending migrations.
    pub lint: Option<LintOnUp>,
}

/// `[migrate] lint`: `migrate up` lints the migrations it is about to apply and either prints
/// the findings as warnings (`"warn"`, the default), refuses to run with exit 4 on error-level
/// findings (`"error"`), or skips linting (`"off"`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LintOnUp {
    Off,
    #[default]
    Warn,
    Error,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    pub output: Option<PathBuf>,
    pub prefix: Option<String>,
    pub jobs: Option<usize>,
    /// `zstd` (default), `gzip` or `none`.
    pub compression: Option<String>,
    pub compression_level: Option<i32>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
}

/// Everything a command needs to know, after precedence has been applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    pub pg_url: Option<SecretUrl>,
    pub mongo_url: Option<SecretUrl>,
    /// MongoDB database: `--mongo-db`, else the URL path, else the file's `mongo.database`.
    pub mongo_db: Option<String>,
    pub migrations_dir: PathBuf,
    pub mongo_migrations_dir: PathBuf,
    pub lock_timeout: Duration,
    pub lint_on_up: LintOnUp,
    pub connect_timeout: Duration,
    pub backup_dir: PathBuf,
    pub archive_prefix: String,
    pub jobs: usize,
    /// `[backup] compression` and `compression_level`, checked against each other.
    pub compression: Compression,
    pub retention: RetentionSection,
    /// Object storage client settings (`[storage]`).
    pub storage: crate::storage::StorageSection,
    /// `[encryption]`, paths resolved against the config file's directory.
    pub encryption: EncryptionSection,
}

pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_JOBS: usize = 2;
pub const DEFAULT_ARCHIVE_PREFIX: &str = "dbkeeper";

/// The `[backup]` section's codec and level, validated together.
fn file_compression(backup: &BackupSection) -> std::result::Result<Compression, String> {
    let codec = match backup.compression.as_deref() {
        None => Codec::default(),
        Some(name) => Codec::parse(name).ok_or_else(|| {
            format!("backup.compression = {name:?}: must be \"zstd\", \"gzip\" or \"none\"")
        })?,
    };
    Compression::new(codec, backup.compression_level)
        .map_err(|e| format!("backup.compression_level: {e}"))
}

impl Settings {
    /// Merges flags, environment (read through `env`), the config file and defaults.
    pub fn resolve(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        let (config_file, file) = load_file(overrides.config.as_deref())?;
        let env_nonempty = |key: &str| env(key).filter(|v| !v.trim().is_empty());

        // DATABASE_URL is every framework's variable: one that is not PostgreSQL's (a Rails app's
        // mysql2://) is not ours, and must not break a MongoDB-only command.
        let database_url = env_nonempty(ENV_PG_URL_FALLBACK).filter(|u| {
            let ours = !u.contains("://")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://");
            if !ours {
                tracing::debug!("ignoring {ENV_PG_URL_FALLBACK}: not a PostgreSQL URL");
            }
            ours
        });
        let pg_url = first_url([
            ("--pg-url", overrides.pg_url.clone()),
            (ENV_PG_URL, env_nonempty(ENV_PG_URL).map(SecretUrl::new)),
            (ENV_PG_URL_FALLBACK, database_url.map(SecretUrl::new)),
            (
                "[postgres] url in the config file",
                file.postgres.url.clone().map(SecretUrl::new),
            ),
        ]);
        let mongo_url = first_url([
            ("--mongo-url", overrides.mongo_url.clone()),
            (
                ENV_MONGO_URL,
                env_nonempty(ENV_MONGO_URL).map(SecretUrl::new),
            ),
            (
                ENV_MONGO_URL_FALLBACK,
                env_nonempty(ENV_MONGO_URL_FALLBACK).map(SecretUrl::new),
            ),
            (
                "[mongo] url in the config file",
                file.mongo.url.clone().map(SecretUrl::new),
            ),
        ]);

        if let Some((url, origin)) = &pg_url {
            validate_pg_url(url, origin)?;
        }
        if let Some((url, origin)) = &mongo_url {
            validate_mongo_url(url, origin)?;
        }
        let (pg_url, mongo_url) = (pg_url.map(|(u, _)| u), mongo_url.map(|(u, _)| u));

        let mongo_db = overrides
            .mongo_db
            .clone()
            .or_else(|| env_nonempty(ENV_MONGO_DB))
            .or_else(|| {
                mongo_url
                    .as_ref()
                    .and_then(|u| mongo_db_from_url(u.expose()))
            })
            .or_else(|| file.mongo.database.clone());
        if let Some(name) = &mongo_db {
            validate_mongo_db_name(name)?;
        }

        let base = config_file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        // Paths in the file are relative to the file, like Cargo.toml's.
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let compression = file_compression(&file.backup).map_err(|message| Error::Config {
            path: config_file.clone().unwrap_or_default(),
            message,
        })?;
        let jobs = file.backup.jobs.unwrap_or(DEFAULT_JOBS);
        if jobs == 0 {
            return Err(Error::Config {
                path: config_file.clone().unwrap_or_default(),
                message: "backup.jobs = 0: must be at least 1".into(),
            });
        }

        Ok(Settings {
            pg_url,
            mongo_url,
            mongo_db,
            migrations_dir: file
                .postgres
                .migrations
                .map(rel)
                .unwrap_or_else(|| "migrations".into()),
            mongo_migrations_dir: file
                .mongo
                .migrations
                .map(rel)
                .unwrap_or_else(|| "mongo_migrations".into()),
            lock_timeout: file
                .migrate
                .lock_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_LOCK_TIMEOUT),
            lint_on_up: file.migrate.lint.unwrap_or_default(),
            connect_timeout: overrides.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            backup_dir: file
                .backup
                .output
                // A bucket URL is not a path relative to the config file.
                .map(|p| match p.to_str() {
                    Some(url) if crate::storage::Location::is_object_url(url) => p,
                    _ => rel(p),
                })
                .unwrap_or_else(|| "backups".into()),
            archive_prefix: file
                .backup
                .prefix
                .unwrap_or_else(|| DEFAULT_ARCHIVE_PREFIX.to_string()),
            jobs,
            compression,
            retention: file.retention,
            storage: file.storage,
            encryption: EncryptionSection {
                recipients_file: file.encryption.recipients_file.map(rel),
                identity_file: file.encryption.identity_file.map(rel),
                passphrase_file: file.encryption.passphrase_file.map(rel),
                recipients: file.encryption.recipients,
            },
            config_file,
        })
    }

    /// Fails with a message naming every way to configure an engine when neither is set.
    pub fn require_any_engine(&self) -> Result<()> {
        if self.pg_url.is_none() && self.mongo_url.is_none() {
            return Err(Error::Usage(format!(
                "no database configured: pass --pg-url and/or --mongo-url, set {ENV_PG_URL} / \
                 {ENV_MONGO_URL}, or add [postgres] url / [mongo] url to {DEFAULT_CONFIG_FILE}"
            )));
        }
        Ok(())
    }

    pub fn require_pg(&self) -> Result<&SecretUrl> {
        self.pg_url.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "no PostgreSQL database configured: pass --pg-url, set {ENV_PG_URL} (or \
                 {ENV_PG_URL_FALLBACK}), or add [postgres] url to {DEFAULT_CONFIG_FILE}"
            ))
        })
    }

    pub fn require_mongo(&self) -> Result<(&SecretUrl, &str)> {
        let url = self.mongo_url.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "no MongoDB database configured: pass --mongo-url, set {ENV_MONGO_URL} (or \
                 {ENV_MONGO_URL_FALLBACK}), or add [mongo] url to {DEFAULT_CONFIG_FILE}"
            ))
        })?;
        let db = self.mongo_db.as_deref().ok_or_else(|| {
            Error::Usage(format!(
                "no MongoDB database name: put it in the URL path ({}/NAME), pass --mongo-db \
                 NAME, or set [mongo] database in {DEFAULT_CONFIG_FILE}",
                url.redacted().trim_end_matches('/')
            ))
        })?;
        Ok((url, db))
    }
}

fn load_file(explicit: Option<&Path>) -> Result<(Option<PathBuf>, FileConfig)> {
    let path = match explicit {
        Some(p) => {
            if !p.exists() {
                return Err(Error::Config {
                    path: p.to_path_buf(),
                    message: "no such file (given with --config)".into(),
                });
            }
            p.to_path_buf()
        }
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !p.exists() {
                return Ok((None, FileConfig::default()));
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
        path: path.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let file = parse_file(&text).map_err(|message| Error::Config {
        path: path.clone(),
        message,
    })?;
    Ok((Some(path), file))
}

/// Parses config text; the error names line and column (toml's message does) and never echoes a
/// URL value, which might carry a password.
pub fn parse_file(text: &str) -> std::result::Result<FileConfig, String> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let span = e.span().map(|s| line_col(text, s.start));
        match span {
            Some((line, col)) => format!("line {line}, column {col}: {}", e.message()),
            None => e.message().to_string(),
        }
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|nl| offset - nl)
        .unwrap_or(offset + 1);
    (line, col)
}

/// The first URL set, with where it came from (for error messages).
fn first_url(
    candidates: [(&'static str, Option<SecretUrl>); 4],
) -> Option<(SecretUrl, &'static str)> {
    candidates
        .into_iter()
        .find_map(|(origin, url)| url.map(|u| (u, origin)))
}

fn validate_pg_url(url: &SecretUrl, origin: &str) -> Result<()> {
    let invalid = |message: &str| {
        Error::Usage(format!(
            "invalid PostgreSQL URL {} (from {origin}): {}; expected \
             postgres://user[:password]@host[:port]/dbname[?sslmode=...&sslrootcert=FILE]",
            url.redacted(),
            url.scrub(message)
        ))
    };
    crate::postgres::connect::check_url(url.expose()).map_err(|e| invalid(&e))
}

fn validate_mongo_url(url: &SecretUrl, origin: &str) -> Result<()> {
    let u = url.expose();
    if !(u.starts_with("mongodb://") || u.starts_with("mongodb+srv://")) {
        return Err(Error::Usage(format!(
            "invalid MongoDB URL {} (from {origin}): must start with mongodb:// or mongodb+srv://",
            url.redacted()
        )));
    }
    Ok(())
}

/// MongoDB's rules for database names (the server would refuse the first write, after the
/// restore had already begun): not empty, under 64 bytes, none of `/\. "$` or NUL.
fn validate_mongo_db_name(name: &str) -> Result<()> {
    let bad = name.chars().find(|c| "/\\. \"$\0".contains(*c));
    if name.is_empty() || name.len() >= 64 || bad.is_some() {
        return Err(Error::Usage(format!(
            "MongoDB database name {name:?} (from --mongo-db, {ENV_MONGO_DB}, the URL's path or \
             the config file) is not valid: it must be 1 to 63 bytes without any of / \\ . space \
             \" $"
        )));
    }
    Ok(())
}

/// The database named in a MongoDB URL's path (`mongodb://h/app?x=y` -> `app`).
pub fn mongo_db_from_url(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority_end = rest.rfind('@').map(|at| at + 1).unwrap_or(0);
    let after_auth = &rest[authority_end..];
    let path = &after_auth[after_auth.find('/')? + 1..];
    let name = path.split(['?', '#']).next().unwrap_or("");
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dbkeeper.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let (_dir, path) = write_config(
            "[postgres]\nurl = \"postgres://file/db\"\n[mongo]\nurl = \"mongodb://file/fdb\"\n",
        );
        let mut o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let env = env_of(&[
            ("DATABASE_URL", "postgres://fallback/db"),
            ("MONGODB_URI", "mongodb://fallback/mdb"),
        ]);
        let s = Settings::resolve(&o, &env).unwrap();
        assert_eq!(s.pg_url.unwrap().expose(), "postgres://fallback/db");
        assert_eq!(s.mongo_db.as_deref(), Some("mdb"));

        let env = env_of(&[
            ("DATABASE_URL", "postgres://fallback/db"),
            ("DBKEEPER_PG_URL", "postgres://env/db"),
        ]);
        let s = Settings::resolve(&o, &env).unwrap();
        assert_eq!(s.pg_url.unwrap().expose(), "postgres://env/db");
        assert_eq!(s.mongo_url.unwrap().expose(), "mongodb://file/fdb");

        o.pg_url = Some(SecretUrl::new("postgres://flag/db"));
        o.mongo_db = Some("flagdb".into());
        let s = Settings::resolve(&o, &env).unwrap();
        assert_eq!(s.pg_url.unwrap().expose(), "postgres://flag/db");
        assert_eq!(s.mongo_db.as_deref(), Some("flagdb"));

        let s = Settings::resolve(&Overrides::default(), &env_of(&[])).unwrap();
        assert!(s.pg_url.is_none());
        assert_eq!(s.jobs, DEFAULT_JOBS);
        assert!(s.require_any_engine().is_err());
    }

    #[test]
    fn malformed_file_names_file_and_line() {
        let (_dir, path) = write_config("[postgres]\nurl = \"postgres://x/y\"\nbogus = 1\n");
        let o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let err = Settings::resolve(&o, &env_of(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("dbkeeper.toml"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert_eq!(err.exit_code(), crate::error::ExitCode::Usage);
    }

    #[test]
    fn bad_url_is_usage_error_without_password() {
        let o = Overrides {
            pg_url: Some(SecretUrl::new("postgres://u:hunter2@h:notaport/db")),
            ..Default::default()
        };
        let err = Settings::resolve(&o, &env_of(&[])).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::ExitCode::Usage);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("--pg-url"), "{err}");
    }

    #[test]
    fn a_bad_url_names_where_it_came_from_and_a_foreign_database_url_is_ignored() {
        let o = Overrides::default();
        let err = Settings::resolve(&o, &env_of(&[("DATABASE_URL", "postgres://u:pw@h:x/db")]))
            .unwrap_err();
        assert!(err.to_string().contains("(from DATABASE_URL)"), "{err}");
        assert!(!err.to_string().contains("pw@"), "{err}");

        let s = Settings::resolve(
            &o,
            &env_of(&[
                ("DATABASE_URL", "mysql2://app:pw@db/app"),
                ("DBKEEPER_MONGO_URL", "mongodb://m/app"),
            ]),
        )
        .unwrap();
        assert!(s.pg_url.is_none(), "a MySQL DATABASE_URL is not ours");
        assert!(s.mongo_url.is_some());
    }

    #[test]
    fn invalid_mongo_database_names_are_refused() {
        for bad in ["", "a.b", "a b", "a$b", "a/b", &"x".repeat(64)] {
            assert!(validate_mongo_db_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_mongo_db_name("shop_restored-1").is_ok());
    }

    #[test]
    fn mongo_db_comes_from_url_path() {
        assert_eq!(
            mongo_db_from_url("mongodb://h:1/app?w=1"),
            Some("app".into())
        );
        assert_eq!(
            mongo_db_from_url("mongodb://u:p/w@h1,h2/shop"),
            Some("shop".into())
        );
        assert_eq!(mongo_db_from_url("mongodb://h:1"), None);
        assert_eq!(mongo_db_from_url("mongodb://h:1/?w=1"), None);
    }
}
