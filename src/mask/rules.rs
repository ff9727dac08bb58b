//! The rules file (TOML):
//!
//! ```toml
//! key_file = "mask.key"          # or the environment variable DBKEEPER_MASK_KEY
//!
//! [postgres."public.customers"]  # "schema.table" = { column = "transform" }
//! email = "email"
//!
//! [mongo.users]                  # collection = { "dotted.path" = "transform" }
//! "profile.phone" = "null"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::key::{MaskKey, MIN_SECRET_BYTES};
use super::transform::Transform;
use crate::error::{Error, Result};

/// The environment variable holding the secret when the rules file names no `key_file`.
pub const KEY_ENV: &str = "DBKEEPER_MASK_KEY";

/// A parsed rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The file, for messages.
    pub path: PathBuf,
    pub key: MaskKey,
    /// `(schema, table)` -> column -> transform.
    pub postgres: BTreeMap<(String, String), BTreeMap<String, Transform>>,
    /// collection -> dotted path -> transform.
    pub mongo: BTreeMap<String, BTreeMap<String, Transform>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    key_file: Option<PathBuf>,
    #[serde(default)]
    postgres: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    mongo: BTreeMap<String, BTreeMap<String, String>>,
}

impl Rules {
    /// Reads and checks a rules file and loads its key (from `key_file`, relative to the rules
    /// file, else from [`KEY_ENV`]).
    pub fn load(path: &Path) -> Result<Rules> {
        let config = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            config(format!(
                "cannot read the masking rules: {e}; check the --mask path"
            ))
        })?;
        let file: RulesFile = toml::from_str(&text).map_err(|e| {
            config(format!(
                "is not a valid masking rules file: {}",
                e.message().trim()
            ))
        })?;
        let key = load_key(path, file.key_file.as_deref())?;
        let mut postgres = BTreeMap::new();
        for (table, columns) in file.postgres {
            let Some((schema, name)) = table.split_once('.') else {
                return Err(config(format!(
                    "[postgres.{table:?}]: name the table as \"schema.table\" (e.g. \
                     \"public.{table}\")"
                )));
            };
            let parsed = parse_transforms(columns, |c| format!("[postgres.\"{table}\"] {c}"))
                .map_err(config)?;
            postgres.insert((schema.to_string(), name.to_string()), parsed);
        }
        let mut mongo = BTreeMap::new();
        for (collection, fields) in file.mongo {
            let parsed = parse_transforms(fields, |f| format!("[mongo.{collection}] {f}"))
                .map_err(config)?;
            if let Some(bad) = parsed.keys().find(|p| p.split('.').any(str::is_empty)) {
                return Err(config(format!(
                    "[mongo.{collection}] {bad:?} is not a dotted field path"
                )));
            }
            mongo.insert(collection, parsed);
        }
        Ok(Rules {
            path: path.to_path_buf(),
            key,
            postgres,
            mongo,
        })
    }
}

fn parse_transforms(
    raw: BTreeMap<String, String>,
    place: impl Fn(&str) -> String,
) -> std::result::Result<BTreeMap<String, Transform>, String> {
    raw.into_iter()
        .map(|(name, text)| match Transform::parse(&text) {
            Ok(t) => Ok((name, t)),
            Err(e) => Err(format!("{}: {e}", place(&name))),
        })
        .collect()
}

fn load_key(rules: &Path, key_file: Option<&Path>) -> Result<MaskKey> {
    let too_short = |source: &str| Error::Config {
        path: rules.to_path_buf(),
        message: format!(
            "the masking key from {source} is shorter than {MIN_SECRET_BYTES} bytes; use a \
             long random secret (e.g. `openssl rand -hex 32`)"
        ),
    };
    match key_file {
        Some(file) => {
            let file = rules.parent().unwrap_or(Path::new(".")).join(file);
            let secret = std::fs::read(&file).map_err(|e| Error::Config {
                path: rules.to_path_buf(),
                message: format!("cannot read key_file {}: {e}", file.display()),
            })?;
            MaskKey::from_secret(&secret).ok_or_else(|| too_short(&file.display().to_string()))
        }
        None => match std::env::var_os(KEY_ENV) {
            Some(secret) => {
                MaskKey::from_secret(secret.as_encoded_bytes()).ok_or_else(|| too_short(KEY_ENV))
            }
            None => Err(Error::Config {
                path: rules.to_path_buf(),
                message: format!(
                    "no masking key: set key_file in the rules file or the environment \
                     variable {KEY_ENV}"
                ),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::write(dir.join("mask.key"), "0123456789abcdef0123\n").unwrap();
        let path = dir.join("rules.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_rules_file_parses_with_its_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "key_file = \"mask.key\"\n[postgres.\"public.customers\"]\nemail = \"email\"\n\
             [mongo.users]\n\"profile.phone\" = \"null\"\n",
        );
        let rules = Rules::load(&path).unwrap();
        assert_eq!(
            rules.postgres[&("public".into(), "customers".into())]["email"],
            Transform::Email
        );
        assert_eq!(rules.mongo["users"]["profile.phone"], Transform::Null);
        assert!(!format!("{rules:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn bad_rules_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "key_file = \"mask.key\"\n[postgres.customers]\nemail = \"email\"\n",
                "\"schema.table\"",
            ),
            (
                "key_file = \"mask.key\"\n[mongo.users]\nemail = \"scramble\"\n",
                "[mongo.users] email",
            ),
            ("key_file = \"mask.key\"\nkey = \"x\"\n", "unknown field"),
            ("key_file = \"missing.key\"\n", "missing.key"),
            (
                "key_file = \"mask.key\"\n[mongo.users]\n\"a..b\" = \"hash\"\n",
                "dotted field path",
            ),
        ];
        for (text, expected) in cases {
            let err = Rules::load(&write(dir.path(), text))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("rules.toml"), "{err}");
        }
    }
}
