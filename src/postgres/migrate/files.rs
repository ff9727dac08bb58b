//! Reading SQL migration files, in dbkeeper's layout and in golang-migrate's, dbmate's and
//! sqlx's, with the checksums refinery computes.
//!
//! refinery's checksum is SipHash-1-3 over (name, version, up script), the version hashed as
//! refinery's `SchemaVersion`: `i32`, or `i64` when refinery is built with its `int8-versions`
//! feature. A set with any version beyond `i32` (a timestamp version such as `20260717060208`)
//! can only be read by the latter, so every checksum of such a set is computed that way.

use std::hash::{Hash, Hasher};
use std::path::Path;

use siphasher::sip::SipHasher13;

use super::script::{self, NO_TRANSACTION_DIRECTIVE};
use crate::error::{Error, Result};
use crate::migrate::{discover, repeatable, Layout, Migration, MigrationSource, Repeatable};

pub const FILE_EXTENSION: &str = "sql";

/// dbmate's section markers, and its option to run a section outside a transaction.
const DBMATE_UP: &str = "-- migrate:up";
const DBMATE_DOWN: &str = "-- migrate:down";
const DBMATE_NO_TRANSACTION: &str = "transaction:false";
/// sqlx's first-line marker for a migration that runs outside a transaction.
const SQLX_NO_TRANSACTION: &str = "-- no-transaction";

/// Reads every migration in `dir` (+ down scripts).
pub fn load_migrations(dir: &Path) -> Result<Vec<Migration>> {
    let sources = discover(dir, FILE_EXTENSION)?;
    let wide = sources.iter().any(|s| s.version > i64::from(i32::MAX));
    sources.into_iter().map(|s| load_one(s, wide)).collect()
}

/// Reads every repeatable `R__{name}.sql` in `dir`. Each runs in one transaction with its
/// record, so it may neither control the transaction nor ask to run outside one.
pub fn load_repeatables(dir: &Path) -> Result<Vec<Repeatable>> {
    let found = repeatable::load(dir, FILE_EXTENSION)?;
    for r in &found {
        if script::has_no_transaction_directive(&r.script) {
            return Err(Error::bad_input(
                format!("{}:1", r.path.display()),
                format!(
                    "`{NO_TRANSACTION_DIRECTIVE}` is not allowed in a repeatable migration: it runs \
                     in one transaction with its record so that a failure leaves nothing behind. \
                     Move statements that cannot run in a transaction into a versioned migration"
                ),
            ));
        }
        refuse_transaction_control(&r.path, &r.script)?;
    }
    Ok(found)
}

fn load_one(source: MigrationSource, wide: bool) -> Result<Migration> {
    let text = read(&source.up_path)?;
    let file_down = source.down_path.as_deref().map(read).transpose()?;
    let parts = match source.layout {
        Layout::Single if has_dbmate_sections(&text) => {
            split_dbmate(&text).map_err(|why| Error::bad_input(path_of(&source), why))?
        }
        _ => Parts {
            no_transaction: script::has_no_transaction_directive(&text)
                || (source.layout.is_foreign() && first_line_is(&text, SQLX_NO_TRANSACTION)),
            up: text,
            down: file_down,
            down_no_transaction: false,
        },
    };
    // Other tools run a file as the server gets it, so their files may hold their own BEGIN and
    // COMMIT: such a file runs statement by statement outside dbkeeper's transaction, as its
    // tool ran it (and is tracked as a no-transaction migration).
    let no_transaction =
        parts.no_transaction || (source.layout.is_foreign() && controls_transaction(&parts.up));
    if !no_transaction {
        refuse_transaction_control(&source.up_path, &parts.up)?;
    }
    // The down script of a no-transaction migration runs outside a transaction too
    // (`DROP INDEX CONCURRENTLY` undoes `CREATE INDEX CONCURRENTLY`): it inherits the
    // directive, and is captured with it, so a rollback never fails on it later.
    let down = match parts.down {
        Some(down)
            if (no_transaction
                || parts.down_no_transaction
                || (source.layout.is_foreign() && controls_transaction(&down)))
                && !script::has_no_transaction_directive(&down) =>
        {
            Some(format!("{}\n{down}", script::NO_TRANSACTION_DIRECTIVE))
        }
        down => down,
    };
    if let Some(down) = &down {
        if !script::has_no_transaction_directive(down) {
            let path = source.down_path.as_deref().unwrap_or(&source.up_path);
            refuse_transaction_control(path, down)?;
        }
    }
    Ok(Migration {
        checksum: checksum(&source.name, source.version, wide, &parts.up).to_string(),
        version: source.version,
        name: source.name,
        up: parts.up,
        up_path: source.up_path,
        down,
        down_path: source.down_path,
        no_transaction,
    })
}

/// refinery's checksum (see the module documentation for `wide`).
pub fn checksum(name: &str, version: i64, wide: bool, up: &str) -> u64 {
    let mut hasher = SipHasher13::new();
    name.hash(&mut hasher);
    if wide {
        version.hash(&mut hasher);
    } else {
        // Versions of a narrow set fit: `wide` is false only when every one does.
        (version as i32).hash(&mut hasher);
    }
    up.hash(&mut hasher);
    hasher.finish()
}

struct Parts {
    up: String,
    no_transaction: bool,
    down: Option<String>,
    down_no_transaction: bool,
}

fn has_dbmate_sections(text: &str) -> bool {
    text.lines().any(|l| l.trim_start().starts_with(DBMATE_UP))
}

/// Splits a dbmate file into its `-- migrate:up` and `-- migrate:down` sections.
fn split_dbmate(text: &str) -> std::result::Result<Parts, String> {
    let mut up: Option<(usize, bool)> = None;
    let mut down: Option<(usize, usize, bool)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let options = |marker: &str| {
            trimmed[marker.len()..]
                .split_whitespace()
                .any(|o| o == DBMATE_NO_TRANSACTION)
        };
        if trimmed.starts_with(DBMATE_UP) {
            if up.is_some() {
                return Err(format!("a second `{DBMATE_UP}` section; dbmate allows one"));
            }
            up = Some((offset + line.len(), options(DBMATE_UP)));
        } else if trimmed.starts_with(DBMATE_DOWN) {
            if up.is_none() {
                return Err(format!(
                    "`{DBMATE_DOWN}` before `{DBMATE_UP}`; put the up section first"
                ));
            }
            if down.is_some() {
                return Err(format!(
                    "a second `{DBMATE_DOWN}` section; dbmate allows one"
                ));
            }
            down = Some((offset, offset + line.len(), options(DBMATE_DOWN)));
        }
        offset += line.len();
    }
    let (up_start, up_no_tx) = up.expect("called only when the file has an up marker");
    let up_end = down.map_or(text.len(), |(marker, _, _)| marker);
    Ok(Parts {
        up: text[up_start..up_end].to_string(),
        no_transaction: up_no_tx,
        down: down.map(|(_, start, _)| text[start..].to_string()),
        down_no_transaction: down.is_some_and(|(_, _, no_tx)| no_tx),
    })
}

fn first_line_is(text: &str, marker: &str) -> bool {
    text.lines().next().map(str::trim) == Some(marker)
}

fn controls_transaction(sql: &str) -> bool {
    script::split_statements(sql)
        .iter()
        .any(|s| script::controls_transaction(s.text))
}

fn path_of(source: &MigrationSource) -> String {
    source.up_path.display().to_string()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// dbkeeper commits each migration with its history rows; a `COMMIT` inside the file would
/// commit half of it without them.
fn refuse_transaction_control(path: &Path, sql: &str) -> Result<()> {
    for stmt in script::split_statements(sql) {
        if script::controls_transaction(stmt.text) {
            let (line, _) = script::line_col(sql, stmt.offset);
            return Err(Error::bad_input(
                format!("{}:{line}", path.display()),
                format!(
                    "`{}` controls the transaction, but dbkeeper already runs each migration in one \
                     transaction with its history rows. Remove it, or make the first line \
                     `{NO_TRANSACTION_DIRECTIVE}` to manage transactions yourself",
                    stmt.text.lines().next().unwrap_or("").trim()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn checksums_names_and_versions_match_refinerys_own_loader() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "V1__create_users.sql",
            "CREATE TABLE users (id int);\n",
        );
        write(
            dir.path(),
            "V1__create_users.down.sql",
            "DROP TABLE users;\n",
        );
        write(
            dir.path(),
            "V2__index.sql",
            "-- dbkeeper:no-transaction\nCREATE INDEX CONCURRENTLY i ON users (id);\n",
        );
        write(
            dir.path(),
            "V10__more.sql",
            "ALTER TABLE users ADD email text;",
        );
        let ours = load_migrations(dir.path()).unwrap();
        let theirs = refinery_core::load_sql_migrations(dir.path()).unwrap();
        assert_eq!(ours.len(), 3);
        assert_eq!(theirs.len(), 3, "refinery must skip .down.sql files");
        for (o, t) in ours.iter().zip(&theirs) {
            assert_eq!(o.version, i64::from(t.version()));
            assert_eq!(o.name, t.name());
            assert_eq!(o.checksum, t.checksum().to_string());
        }
        assert!(ours[0].down.is_some() && ours[1].down.is_none());
        assert!(!ours[0].no_transaction && ours[1].no_transaction);
    }

    #[test]
    fn transaction_control_in_a_transactional_file_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "V1__tx.sql",
            "CREATE TABLE a (id int);\nCOMMIT;\n",
        );
        let err = load_migrations(dir.path()).unwrap_err();
        assert_eq!(err.exit_code(), crate::ExitCode::Usage);
        assert!(err.to_string().contains("V1__tx.sql:2"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "V1__tx.sql",
            "-- dbkeeper:no-transaction\nBEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n",
        );
        assert!(load_migrations(dir.path()).is_ok());
    }

    #[test]
    fn dbmate_sections_split_into_up_and_down_with_their_options() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "20260717060208_index-orders.sql",
            "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON orders (id);\n\n-- migrate:down\nDROP INDEX i;\n",
        );
        let m = &load_migrations(dir.path()).unwrap()[0];
        assert_eq!(m.up, "CREATE INDEX CONCURRENTLY i ON orders (id);\n\n");
        assert!(m.no_transaction);
        let down = m.down.as_deref().unwrap();
        assert!(script::has_no_transaction_directive(down), "{down}");
        assert!(down.ends_with("DROP INDEX i;\n"));
        assert_eq!(m.name, "index-orders");
    }

    #[test]
    fn foreign_files_keep_their_own_transaction_handling() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "1_a.up.sql",
            "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n",
        );
        write(
            dir.path(),
            "2_b.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY b ON a (id);\n",
        );
        write(dir.path(), "3_c.sql", "CREATE TABLE c (id int);\n");
        let found = load_migrations(dir.path()).unwrap();
        let no_tx: Vec<_> = found.iter().map(|m| m.no_transaction).collect();
        assert_eq!(no_tx, vec![true, true, false]);
        // dbkeeper's own layout still refuses a COMMIT in a transactional file.
        write(dir.path(), "V4__d.sql", "COMMIT;\n");
        assert!(load_migrations(dir.path()).is_err());
    }

    #[test]
    fn a_set_with_64_bit_versions_hashes_every_version_as_i64() {
        let narrow = checksum("add-orders", 3, false, "SELECT 1;");
        let wide = checksum("add-orders", 3, true, "SELECT 1;");
        assert_ne!(narrow, wide);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "3_add-orders.up.sql", "SELECT 1;");
        assert_eq!(
            load_migrations(dir.path()).unwrap()[0].checksum,
            narrow.to_string()
        );
        write(dir.path(), "20260717060208_later.up.sql", "SELECT 2;");
        assert_eq!(
            load_migrations(dir.path()).unwrap()[0].checksum,
            wide.to_string()
        );
    }
}
