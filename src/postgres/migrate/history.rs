//! Where PostgreSQL migration history lives.
//!
//! - `refinery_schema_history`: created with refinery's own DDL and written with exactly the
//!   values refinery writes (version, name, `applied_on` as RFC 3339 from the `time` crate,
//!   checksum as the decimal SipHash-1-3), so refinery and dbkeeper can take turns on a database.
//!   A version is applied when it has a row here.
//! - `dbkeeper_schema_history`: one row per version with what refinery lacks: state (a
//!   no-transaction migration is `in_progress` until it finishes, so a crash shows as dirty), the
//!   down script captured at apply time, timings, who ran it and the run id.
//! - `dbkeeper_schema_log`: an append-only audit trail of every apply, revert, baseline and
//!   repair, so a `repair` is never silent.
//! - `dbkeeper_schema_repeatable`: the checksum each repeatable (`R__`) migration was last
//!   applied with. Created with the first repeatable applied, so a database without them has
//!   exactly the tables it had before they existed.
//!
//! All three live in the schema that was current when dbkeeper connected (where refinery's
//! unqualified name resolves), and are always schema-qualified so a migration that changes
//! `search_path` cannot send history rows elsewhere.

use refinery_core::AsyncMigrate;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::GenericClient;

use crate::error::{Engine, Error, Result};
use crate::migrate::repeatable;
use crate::migrate::{AppliedMigration, AppliedRepeatable, AppliedState, RunInfo};
use crate::postgres::connect::describe_error;

pub const REFINERY_TABLE: &str = "refinery_schema_history";
pub const COMPANION_TABLE: &str = "dbkeeper_schema_history";
pub const LOG_TABLE: &str = "dbkeeper_schema_log";
pub const REPEATABLE_TABLE: &str = "dbkeeper_schema_repeatable";

/// The companion table's `state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Recorded and finished.
    Applied,
    /// A no-transaction migration started and has not recorded completion.
    InProgress,
    /// A no-transaction down script started and has not recorded completion.
    Reverting,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::InProgress => "in_progress",
            State::Reverting => "reverting",
        }
    }
}

/// The history tables of one schema, with their qualified names.
#[derive(Debug, Clone)]
pub struct Tables {
    refinery: String,
    companion: String,
    log: String,
    repeatable: String,
}

impl Tables {
    pub fn in_schema(schema: &str) -> Tables {
        let schema = quote_ident(schema);
        Tables {
            refinery: format!("{schema}.{REFINERY_TABLE}"),
            companion: format!("{schema}.{COMPANION_TABLE}"),
            log: format!("{schema}.{LOG_TABLE}"),
            repeatable: format!("{schema}.{REPEATABLE_TABLE}"),
        }
    }

    /// Creates whatever is missing. Refinery's table gets refinery's exact DDL.
    pub async fn create(&self, client: &impl GenericClient) -> Result<()> {
        let refinery_ddl =
            <tokio_postgres::Client as AsyncMigrate>::assert_migrations_table_query(&self.refinery);
        let companion_ddl = format!(
            "CREATE TABLE IF NOT EXISTS {companion} (
                version int4 PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                state text NOT NULL CHECK (state IN ('applied', 'in_progress', 'reverting')),
                no_transaction boolean NOT NULL DEFAULT false,
                down_sql text,
                started_at timestamptz NOT NULL,
                applied_at timestamptz,
                duration_ms bigint,
                applied_by text NOT NULL,
                run_id text NOT NULL,
                dirty_detail text
            );
            CREATE TABLE IF NOT EXISTS {log} (
                id bigserial PRIMARY KEY,
                at timestamptz NOT NULL DEFAULT clock_timestamp(),
                version int4 NOT NULL,
                name text NOT NULL,
                action text NOT NULL,
                detail text,
                actor text NOT NULL,
                run_id text NOT NULL
            );",
            companion = self.companion,
            log = self.log,
        );
        client
            .batch_execute(&format!("{refinery_ddl}\n{companion_ddl}"))
            .await
            .map_err(|e| db_error("creating the migration history tables", &e))
    }

    /// Widens the version columns to int8 (what refinery's `int8-versions` feature creates)
    /// before the first version beyond int4 is recorded, e.g. a timestamp version
    /// `20260717060208` from golang-migrate or dbmate. Returns whether anything changed.
    pub async fn widen_versions(&self, client: &impl GenericClient) -> Result<bool> {
        let row = client
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
                 WHERE attrelid = pg_catalog.to_regclass($1) AND attname = 'version'",
                &[&self.refinery],
            )
            .await
            .map_err(|e| db_error("reading the history version column's type", &e))?;
        if row.get::<_, String>(0) == "bigint" {
            return Ok(false);
        }
        client
            .batch_execute(&format!(
                "ALTER TABLE {} ALTER COLUMN version TYPE int8;
                 ALTER TABLE {} ALTER COLUMN version TYPE int8;
                 ALTER TABLE {} ALTER COLUMN version TYPE int8;",
                self.refinery, self.companion, self.log
            ))
            .await
            .map_err(|e| db_error("widening the history version columns to int8", &e))?;
        Ok(true)
    }

    /// Every recorded version, oldest first. Reads only; absent tables mean no history.
    pub async fn read(&self, client: &impl GenericClient) -> Result<Vec<AppliedMigration>> {
        let row = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL",
                &[&self.refinery, &self.companion],
            )
            .await
            .map_err(|e| db_error("looking for the migration history tables", &e))?;
        let (has_refinery, has_companion): (bool, bool) = (row.get(0), row.get(1));
        // Columns: version, name, checksum, applied_on, down_sql, state, dirty_detail, started.
        let applied = match has_companion {
            true => format!(
                "SELECT r.version::int8, r.name, r.checksum, r.applied_on,
                        CASE WHEN c.checksum = r.checksum THEN c.down_sql END,
                        c.state, c.dirty_detail, c.started_at::text, c.applied_by
                 FROM {r} r LEFT JOIN {c} c ON c.version = r.version",
                r = self.refinery,
                c = self.companion
            ),
            false => format!(
                "SELECT version::int8, name, checksum, applied_on, NULL::text, NULL::text, NULL::text,
                        NULL::text, NULL::text
                 FROM {r}",
                r = self.refinery
            ),
        };
        // A no-transaction migration that never finished has only its companion row.
        let unfinished = format!(
            "SELECT version::int8, name, checksum, NULL::varchar, down_sql, state, dirty_detail,
                    started_at::text, applied_by
             FROM {c} c WHERE state <> 'applied'{also}",
            c = self.companion,
            also = match has_refinery {
                true => format!(
                    " AND NOT EXISTS (SELECT 1 FROM {r} r WHERE r.version = c.version)",
                    r = self.refinery
                ),
                false => String::new(),
            }
        );
        let query = match (has_refinery, has_companion) {
            (false, false) => return Ok(Vec::new()),
            (true, false) => applied,
            (false, true) => unfinished,
            (true, true) => format!("{applied} UNION ALL {unfinished}"),
        };
        let rows = client
            .query(&format!("{query} ORDER BY 1"), &[])
            .await
            .map_err(|e| db_error("reading migration history", &e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let version: i64 = row.get(0);
                let state: Option<String> = row.get(5);
                let dirty = matches!(state.as_deref(), Some("in_progress" | "reverting"));
                let detail: Option<String> = row.get(6);
                let started: Option<String> = row.get(7);
                let by: Option<String> = row.get(8);
                let dirty_detail = dirty.then(|| {
                    let what = match state.as_deref() {
                        Some("reverting") => "its no-transaction down script",
                        _ => "this no-transaction migration",
                    };
                    let mut d = format!(
                        "{what} started {} by {} and did not record completion",
                        started.as_deref().unwrap_or("?"),
                        by.as_deref().unwrap_or("?")
                    );
                    if let Some(detail) = detail {
                        d.push_str(&format!("; {detail}"));
                    }
                    d
                });
                AppliedMigration {
                    version,
                    name: row.get::<_, Option<String>>(1).unwrap_or_default(),
                    checksum: row.get::<_, Option<String>>(2).unwrap_or_default(),
                    applied_on: row.get(3),
                    state: if dirty {
                        AppliedState::Dirty
                    } else {
                        AppliedState::Applied
                    },
                    down: row.get(4),
                    dirty_detail,
                }
            })
            .collect())
    }

    /// The repeatable migrations' records, by name. Reads only; an absent table means none.
    pub async fn read_repeatables(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<AppliedRepeatable>> {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.repeatable])
            .await
            .map_err(|e| db_error(&format!("looking for {REPEATABLE_TABLE}"), &e))?
            .get(0);
        if !exists {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!(
                    "SELECT name, checksum, applied_on::text FROM {} ORDER BY name",
                    self.repeatable
                ),
                &[],
            )
            .await
            .map_err(|e| db_error(&format!("reading {REPEATABLE_TABLE}"), &e))?;
        Ok(rows
            .iter()
            .map(|row| AppliedRepeatable {
                name: row.get(0),
                checksum: row.get(1),
                applied_on: row.get(2),
            })
            .collect())
    }

    /// Records that a repeatable migration was applied with `checksum` (in the transaction that
    /// ran it), creating the table the first time.
    pub async fn record_repeatable(
        &self,
        client: &impl GenericClient,
        name: &str,
        checksum: &str,
        duration_ms: i64,
        run: &RunInfo,
    ) -> Result<()> {
        let context = format!(
            "recording {} in {REPEATABLE_TABLE}",
            repeatable::label(name)
        );
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    applied_on timestamptz NOT NULL,
                    duration_ms bigint NOT NULL,
                    applied_by text NOT NULL,
                    run_id text NOT NULL
                )",
                self.repeatable
            ))
            .await
            .map_err(|e| db_error(&context, &e))?;
        client
            .execute(
                &format!(
                    "INSERT INTO {} (name, checksum, applied_on, duration_ms, applied_by, run_id)
                     VALUES ($1, $2, clock_timestamp(), $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum,
                        applied_on = EXCLUDED.applied_on, duration_ms = EXCLUDED.duration_ms,
                        applied_by = EXCLUDED.applied_by, run_id = EXCLUDED.run_id",
                    self.repeatable
                ),
                &[&name, &checksum, &duration_ms, &run.actor, &run.run_id],
            )
            .await
            .map(drop)
            .map_err(|e| db_error(&context, &e))
    }

    /// Forgets every repeatable's record (the next `up` applies them all again). Returns how
    /// many were forgotten.
    pub async fn forget_repeatables(&self, client: &impl GenericClient) -> Result<u64> {
        let context = format!("clearing {REPEATABLE_TABLE}");
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.repeatable])
            .await
            .map_err(|e| db_error(&context, &e))?
            .get(0);
        if !exists {
            return Ok(0);
        }
        client
            .execute(&format!("DELETE FROM {}", self.repeatable), &[])
            .await
            .map_err(|e| db_error(&context, &e))
    }

    /// The row refinery's runner would insert for this migration.
    pub async fn insert_refinery_row(
        &self,
        client: &impl GenericClient,
        version: i64,
        name: &str,
        checksum: &str,
        applied_on: &str,
    ) -> Result<()> {
        client
            .execute(
                &format!(
                    "INSERT INTO {} (version, name, applied_on, checksum) VALUES ($1::int8, $2, $3, $4)",
                    self.refinery
                ),
                &[&version, &name, &applied_on, &checksum],
            )
            .await
            .map(drop)
            .map_err(|e| db_error(&format!("recording V{version} in {REFINERY_TABLE}"), &e))
    }

    /// Inserts or replaces the companion row of `row.version`.
    pub async fn upsert_companion(
        &self,
        client: &impl GenericClient,
        row: &CompanionRow<'_>,
    ) -> Result<()> {
        client
            .execute(
                &format!(
                    "INSERT INTO {} AS c (version, name, checksum, state, no_transaction, down_sql,
                        started_at, applied_at, duration_ms, applied_by, run_id, dirty_detail)
                     VALUES ($1::int8, $2, $3, $4, $5, $6, now(),
                        CASE WHEN $4 = 'applied' THEN clock_timestamp() END, $7, $8, $9, NULL)
                     ON CONFLICT (version) DO UPDATE SET
                        name = EXCLUDED.name, checksum = EXCLUDED.checksum, state = EXCLUDED.state,
                        no_transaction = EXCLUDED.no_transaction, down_sql = EXCLUDED.down_sql,
                        started_at = EXCLUDED.started_at, applied_at = EXCLUDED.applied_at,
                        duration_ms = EXCLUDED.duration_ms, applied_by = EXCLUDED.applied_by,
                        run_id = EXCLUDED.run_id, dirty_detail = NULL",
                    self.companion
                ),
                &[
                    &row.version,
                    &row.name,
                    &row.checksum,
                    &row.state.as_str(),
                    &row.no_transaction,
                    &row.down_sql,
                    &row.duration_ms,
                    &row.run.actor,
                    &row.run.run_id,
                ],
            )
            .await
            .map(drop)
            .map_err(|e| {
                db_error(
                    &format!("recording V{} in {COMPANION_TABLE}", row.version),
                    &e,
                )
            })
    }

    /// Moves a companion row to `state`; `applied` also stamps completion time and duration.
    pub async fn set_state(
        &self,
        client: &impl GenericClient,
        version: i64,
        state: State,
        duration_ms: Option<i64>,
    ) -> Result<()> {
        client
            .execute(
                &format!(
                    "UPDATE {} SET state = $2, dirty_detail = NULL,
                        applied_at = CASE WHEN $2 = 'applied' THEN clock_timestamp() ELSE applied_at END,
                        duration_ms = COALESCE($3, duration_ms)
                     WHERE version = $1::int8",
                    self.companion
                ),
                &[&version, &state.as_str(), &duration_ms],
            )
            .await
            .map(drop)
            .map_err(|e| db_error(&format!("updating V{version} in {COMPANION_TABLE}"), &e))
    }

    /// Notes why a dirty migration stopped, for `status` to show.
    pub async fn set_dirty_detail(
        &self,
        client: &impl GenericClient,
        version: i64,
        detail: &str,
    ) -> Result<()> {
        client
            .execute(
                &format!(
                    "UPDATE {} SET dirty_detail = $2 WHERE version = $1::int8",
                    self.companion
                ),
                &[&version, &detail],
            )
            .await
            .map(drop)
            .map_err(|e| db_error(&format!("updating V{version} in {COMPANION_TABLE}"), &e))
    }

    /// Records a changed file: refinery's name and checksum, and the companion's (keeping the
    /// captured down script when the file now has none, so rollback stays possible).
    pub async fn update_checksum(
        &self,
        client: &impl GenericClient,
        version: i64,
        name: &str,
        checksum: &str,
        down_sql: Option<&str>,
        run: &RunInfo,
    ) -> Result<()> {
        let context = format!("recording the new checksum of V{version}");
        client
            .execute(
                &format!(
                    "UPDATE {} SET name = $2, checksum = $3 WHERE version = $1::int8",
                    self.refinery
                ),
                &[&version, &name, &checksum],
            )
            .await
            .map_err(|e| db_error(&context, &e))?;
        client
            .execute(
                &format!(
                    "INSERT INTO {} AS c (version, name, checksum, state, down_sql, started_at,
                        applied_at, applied_by, run_id)
                     VALUES ($1::int8, $2, $3, 'applied', $4, now(), now(), $5, $6)
                     ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name,
                        checksum = EXCLUDED.checksum, down_sql = COALESCE(EXCLUDED.down_sql, c.down_sql)",
                    self.companion
                ),
                &[&version, &name, &checksum, &down_sql, &run.actor, &run.run_id],
            )
            .await
            .map(drop)
            .map_err(|e| db_error(&context, &e))
    }

    /// Name and checksum of a companion row (for marking a dirty migration applied).
    pub async fn companion_identity(
        &self,
        client: &impl GenericClient,
        version: i64,
    ) -> Result<Option<(String, String)>> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT name, checksum FROM {} WHERE version = $1::int8",
                    self.companion
                ),
                &[&version],
            )
            .await
            .map_err(|e| db_error(&format!("reading V{version} from {COMPANION_TABLE}"), &e))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub async fn has_refinery_row(
        &self,
        client: &impl GenericClient,
        version: i64,
    ) -> Result<bool> {
        client
            .query_opt(
                &format!("SELECT 1 FROM {} WHERE version = $1::int8", self.refinery),
                &[&version],
            )
            .await
            .map(|r| r.is_some())
            .map_err(|e| db_error(&format!("reading V{version} from {REFINERY_TABLE}"), &e))
    }

    /// Removes every history row of `version` (after a rollback).
    pub async fn delete(&self, client: &impl GenericClient, version: i64) -> Result<()> {
        for table in [&self.refinery, &self.companion] {
            client
                .execute(
                    &format!("DELETE FROM {table} WHERE version = $1::int8"),
                    &[&version],
                )
                .await
                .map_err(|e| db_error(&format!("removing V{version} from {table}"), &e))?;
        }
        Ok(())
    }

    /// Appends to the audit log.
    pub async fn log(
        &self,
        client: &impl GenericClient,
        version: i64,
        name: &str,
        action: &str,
        detail: Option<&str>,
        run: &RunInfo,
    ) -> Result<()> {
        client
            .execute(
                &format!(
                    "INSERT INTO {} (version, name, action, detail, actor, run_id)
                     VALUES ($1::int8, $2, $3, $4, $5, $6)",
                    self.log
                ),
                &[&version, &name, &action, &detail, &run.actor, &run.run_id],
            )
            .await
            .map(drop)
            .map_err(|e| db_error(&format!("writing {LOG_TABLE}"), &e))
    }
}

/// What dbkeeper records next to refinery's row.
pub struct CompanionRow<'a> {
    pub version: i64,
    pub name: &'a str,
    pub checksum: &'a str,
    pub state: State,
    pub no_transaction: bool,
    pub down_sql: Option<&'a str>,
    pub duration_ms: Option<i64>,
    pub run: &'a RunInfo,
}

/// `applied_on` exactly as refinery's runner writes it: `OffsetDateTime::now_utc()` in RFC 3339.
pub fn refinery_timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current UTC time always formats as RFC 3339")
}

pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

pub fn db_error(context: &str, e: &tokio_postgres::Error) -> Error {
    Error::db(
        Engine::Postgres,
        format!("{context}: {}", describe_error(e)),
    )
}
