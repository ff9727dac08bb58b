//! The migration lock: a session advisory lock on the migrator's one dedicated connection.
//!
//! A session lock (not a transaction lock) because a run spans many transactions and
//! no-transaction migrations; it dies with the connection, so a crashed runner cannot leave it
//! behind. It is taken by polling `pg_try_advisory_lock` rather than blocking in
//! `pg_advisory_lock`, so the waiter can give up at `--lock-timeout` and say, while it waits,
//! which session holds it.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::history::db_error;
use crate::error::{Error, Result};

/// The advisory lock key: the first 8 bytes of SHA-256("dbkeeper-migrate"), as a big-endian
/// `bigint`. Advisory locks are scoped to the current database, so one key serves every database;
/// other tooling can take `pg_advisory_lock(MIGRATION_LOCK_KEY)` to keep dbkeeper out.
pub const MIGRATION_LOCK_KEY: i64 = 0xc706_0191_51ce_8ab7_u64 as i64;

/// How often a waiting runner retries; short enough that queued deploys follow each other closely.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often the "still waiting" message repeats when the holder has not changed.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Takes the lock, waiting up to `timeout`. `database` names the database in messages.
pub async fn acquire(client: &Client, database: &str, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let mut last_report: Option<(Instant, String)> = None;
    loop {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .map_err(|e| db_error("taking the migration lock", &e))?;
        if row.get::<_, bool>(0) {
            if last_report.is_some() {
                tracing::info!(
                    "took the migration lock on {database} after {:.1}s",
                    started.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        let (pid, holder) = describe_holder(client).await?;
        if started.elapsed() >= timeout {
            let pid = pid.map_or_else(|| "pid".to_string(), |p| p.to_string());
            return Err(Error::LockTimeout(format!(
                "gave up after {}s waiting for the migration lock on {database}: it is held by {holder}. \
                 If that runner is stuck, end it (SELECT pg_terminate_backend({pid})); otherwise retry \
                 with a longer --lock-timeout",
                timeout.as_secs()
            )));
        }
        let due = match &last_report {
            None => true,
            Some((at, previous)) => *previous != holder || at.elapsed() >= REPORT_INTERVAL,
        };
        if due {
            let left = timeout.saturating_sub(started.elapsed());
            tracing::warn!(
                "waiting for the migration lock on {database} (up to {}s more): held by {holder}",
                left.as_secs_f64().ceil()
            );
            last_report = Some((Instant::now(), holder));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Releases the lock. `false` from the server means this session did not hold it.
pub async fn release(client: &Client) -> Result<()> {
    let row = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|e| db_error("releasing the migration lock", &e))?;
    if !row.get::<_, bool>(0) {
        tracing::warn!("the migration lock was not held by this session when releasing it");
    }
    Ok(())
}

/// The holder's pid and "application_name 'x' (pid N, user u, connected since T, state S since
/// T)", or a note that the holder just left.
async fn describe_holder(client: &Client) -> Result<(Option<i32>, String)> {
    let key = MIGRATION_LOCK_KEY as u64;
    let (high, low) = ((key >> 32) as i64, (key & 0xffff_ffff) as i64);
    let row = client
        .query_opt(
            "SELECT a.pid, a.application_name, a.usename::text,
                    to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    a.state, to_char(a.state_change, 'YYYY-MM-DD HH24:MI:SS TZ')
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1
             LIMIT 1",
            &[&high, &low],
        )
        .await
        .map_err(|e| db_error("looking up who holds the migration lock", &e))?;
    let Some(row) = row else {
        return Ok((None, "a session that has just released it".to_string()));
    };
    let pid: i32 = row.get(0);
    let app: Option<String> = row.get(1);
    let user: Option<String> = row.get(2);
    let since: Option<String> = row.get(3);
    let state: Option<String> = row.get(4);
    let state_since: Option<String> = row.get(5);
    let mut s = format!(
        "application_name '{}' (pid {pid}",
        app.as_deref().unwrap_or("")
    );
    if let Some(user) = user {
        s.push_str(&format!(", user {user}"));
    }
    if let Some(since) = since {
        s.push_str(&format!(", connected since {since}"));
    }
    if let (Some(state), Some(state_since)) = (state, state_since) {
        s.push_str(&format!(", {state} since {state_since}"));
    }
    s.push(')');
    Ok((Some(pid), s))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    #[test]
    fn lock_key_is_derived_from_its_documented_name() {
        let digest = Sha256::digest(b"dbkeeper-migrate");
        let key = i64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(key, super::MIGRATION_LOCK_KEY, "{key:#x}");
    }
}
