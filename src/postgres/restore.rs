//! PostgreSQL restore from a verified archive.
//!
//! The archive has already passed V0 ([`VerifiedArchive::open`]) before this module runs, so a
//! damaged archive never touches the target. Then:
//! 1. safety: refuse to restore onto the archive's own source database (same server system
//!    identifier and database name, or same host/port/database), and refuse a non-empty target
//!    unless `--mode replace` (which drops and recreates it);
//! 2. create the target database if absent (from template0, in the source's encoding);
//! 3. pre-data schema with psql (owner and privilege statements skipped unless kept, counted);
//! 4. parallel `COPY ... FROM STDIN`, one chunk per COPY, chunks decompressed on blocking threads
//!    ahead of the workers; as soon as a table's last chunk is loaded, its index and primary
//!    key / unique builds start on the same workers, overlapping the other tables' COPY (as
//!    pg_restore -j does);
//! 5. the rest of post-data after all data and builds: foreign keys, index attachments,
//!    triggers, policies and the rest in script order;
//! 6. sequences (`setval`), then `REFRESH MATERIALIZED VIEW` for views that held data.
//!
//! Large objects are created (same OIDs, owners, comments, grants) by pre-data, as pg_dump
//! writes them; their data is written with `lo_put` on one more connection alongside step 4
//! ([`crate::postgres::large_objects::restore`]).
//!
//! Proving the result (V2: counts, sequences, indexes, schema, content) is
//! [`crate::postgres::verify`], which the caller runs afterwards, the same check `verify` runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::SinkExt;
use serde::Serialize;
use tokio_postgres::Client;

use crate::archive::chunk::DecodedChunk;
use crate::archive::reader::VerifiedArchive;
use crate::archive::selection::Selection;
use crate::archive::{Dataset, Source};
use crate::error::{Engine, Error, Result};
use crate::postgres::connect::describe_error;
use crate::postgres::dump::{PgArchiveMeta, PgDatasetExtra, ENGINE_KEY};
use crate::postgres::inspect::{self, db_error, quote_ident, quote_qualified};
use crate::postgres::large_objects;
use crate::postgres::tools::{self, PgTool};
use crate::postgres::PgTarget;
use crate::postgres::{column_order, data_only, script};

/// What to restore: the options every engine's restore takes.
pub use crate::engine::RestoreOptions;

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub target: String,
    pub database: String,
    /// `created`, `reused-empty`, `replaced`, or `existing` (`--data-only`: its schema kept).
    pub database_action: &'static str,
    pub tables: usize,
    pub rows: u64,
    pub raw_bytes: u64,
    pub chunks: usize,
    pub sequences: usize,
    pub materialized_views: usize,
    /// Large objects restored (created by pre-data, then their data written).
    pub large_objects: usize,
    pub skipped_owner_statements: usize,
    pub skipped_privilege_statements: usize,
    pub seconds: RestoreTimings,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreTimings {
    pub pre_data: f64,
    /// COPY of all tables, with the index and key builds that overlap it.
    pub data: f64,
    /// Post-data after the load: foreign keys, triggers, the rest.
    pub post_data: f64,
    pub finish: f64,
}

/// The PostgreSQL part of an archive, with its metadata decoded.
pub fn archive_meta(archive: &VerifiedArchive) -> Result<Option<(Source, PgArchiveMeta)>> {
    let manifest = archive.manifest();
    let (Some(source), Some(meta)) = (
        manifest.source(Engine::Postgres),
        manifest.engines.get(ENGINE_KEY),
    ) else {
        return Ok(None);
    };
    let meta: PgArchiveMeta = serde_json::from_value(meta.clone()).map_err(|e| {
        Error::bad_input(
            format!("archive {}", archive.path().display()),
            format!("MANIFEST.json engines.postgres is not valid: {e}"),
        )
    })?;
    Ok(Some((source.clone(), meta)))
}

/// Checks everything [`restore`] would refuse (no PostgreSQL data, missing psql, the target is
/// the source, a non-empty target without `--mode replace`) without changing anything, so a
/// restore of several engines can refuse before it touches any of them.
pub async fn preflight(
    archive: &VerifiedArchive,
    target: &PgTarget,
    options: &RestoreOptions,
) -> Result<()> {
    let Some((source, meta)) = archive_meta(archive)? else {
        return Err(no_postgres_data(archive));
    };
    let admin = connect_maintenance(target).await?;
    if options.data_only {
        return check_data_only(archive, &admin, target, &source, &meta, options).await;
    }
    let major = inspect::server_major(&admin).await?;
    tools::find_tool("psql", major).await?;
    refuse_overwriting(archive, &admin, target, &source, &meta, options).await?;
    if !options.replace && database_exists(&admin, target).await? {
        refuse_non_empty(target).await?;
    }
    Ok(())
}

/// The checks of a `--data-only` restore: not the source, and the target ready to load into.
async fn check_data_only(
    archive: &VerifiedArchive,
    admin: &Client,
    target: &PgTarget,
    source: &Source,
    meta: &PgArchiveMeta,
    options: &RestoreOptions,
) -> Result<()> {
    if !options.overwrite_source {
        refuse_source(admin, target, source).await?;
    }
    let exists = database_exists(admin, target).await?;
    data_only::check_target(archive, target, meta, options, exists).await
}

fn no_postgres_data(archive: &VerifiedArchive) -> Error {
    Error::Usage(format!(
        "archive {} holds no PostgreSQL data; drop --pg-url or pick another archive",
        archive.path().display()
    ))
}

async fn database_exists(admin: &Client, target: &PgTarget) -> Result<bool> {
    Ok(admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&target.dbname()],
        )
        .await
        .map_err(|e| db_error("looking up the target database", &e))?
        .is_some())
}

/// What the existing target database holds besides what a new one would, if anything; when
/// it holds something and carries the unfinished-restore mark, says so.
async fn target_contents(target: &PgTarget) -> Result<Option<String>> {
    let client = target.connect().await?;
    let Some(found) = inspect::user_objects(&client).await? else {
        return Ok(None);
    };
    Ok(Some(match unfinished_restore(&client).await? {
        Some(mark) => format!("{found}; it is left from a {mark} that did not finish"),
        None => found,
    }))
}

/// The database-level setting that marks a restore in progress. Set (with `ALTER DATABASE ...
/// SET`, so no user-visible object is created) as soon as the target database is ready and
/// reset only after the last step, so a restore that was killed, or lost its server, leaves a
/// target that can never be mistaken for a complete one (a restore killed during post-data has
/// every row but no indexes: counts alone would pass).
pub const RESTORE_MARK_SETTING: &str = "dbkeeper.restore_in_progress";

/// The unfinished-restore mark of the database `client` is connected to (what restore started,
/// when), if a restore into it started and did not finish. For verification of a target.
pub async fn unfinished_restore(client: &Client) -> Result<Option<String>> {
    database_setting(client, RESTORE_MARK_SETTING)
        .await
        .map_err(|e| db_error("reading the unfinished-restore mark", &e))
}

/// A setting made with `ALTER DATABASE ... SET` on the database `client` is connected to.
async fn database_setting(
    client: &Client,
    name: &str,
) -> std::result::Result<Option<String>, tokio_postgres::Error> {
    let prefix = format!("{name}=");
    let row = client
        .query_opt(
            "SELECT substr(s, length($1) + 1) \
             FROM pg_catalog.pg_db_role_setting r \
             JOIN pg_catalog.pg_database d ON d.oid = r.setdatabase \
             CROSS JOIN LATERAL unnest(r.setconfig) AS s \
             WHERE d.datname = current_database() AND r.setrole = 0 AND starts_with(s, $1)",
            &[&prefix],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Marks `target` as being restored from `archive` (see [`RESTORE_MARK_SETTING`]). Needs
/// ownership of the database; without it the restore goes on, warned, unmarked.
async fn set_restore_mark(admin: &Client, target: &PgTarget, archive: &VerifiedArchive) {
    let name = archive.file_name();
    let mark = format!(
        "restore of {name} started {} (pid {})",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ"),
        std::process::id()
    );
    let sql = format!(
        "ALTER DATABASE {} SET {RESTORE_MARK_SETTING} = '{}'",
        quote_ident(&target.dbname()),
        mark.replace('\'', "''")
    );
    if let Err(e) = admin.batch_execute(&sql).await {
        tracing::warn!(
            "cannot mark {} as being restored ({}); an interrupted restore will not be flagged",
            target.describe(),
            describe_error(&e)
        );
    }
}

/// The database-level setting recording which of owners and privileges the last restore
/// applied (`owner`, `privileges`, or both; absent for neither), so verify compares them only
/// then.
pub const RESTORE_KEPT_SETTING: &str = "dbkeeper.restore_kept";

/// What [`RESTORE_KEPT_SETTING`] says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kept {
    pub owner: bool,
    pub privileges: bool,
}

/// Which of owners and privileges the restore into the database `client` is connected to
/// applied (neither when it was not restored by dbkeeper).
pub async fn restore_kept(client: &Client) -> Result<Kept> {
    let value = database_setting(client, RESTORE_KEPT_SETTING)
        .await
        .map_err(|e| db_error("reading what the restore kept", &e))?
        .unwrap_or_default();
    Ok(Kept {
        owner: value.split(',').any(|v| v == "owner"),
        privileges: value.split(',').any(|v| v == "privileges"),
    })
}

/// Removes the mark once every step of the restore is done, and records what it kept (a
/// `--data-only` restore ran no owner or privilege statement: what the schema's restore kept
/// stays recorded).
async fn clear_restore_mark(target: &PgTarget, options: &RestoreOptions) -> Result<()> {
    let admin = connect_maintenance(target).await?;
    let database = quote_ident(&target.dbname());
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} RESET {RESTORE_MARK_SETTING}"
        ))
        .await
        .map_err(|e| db_error("clearing the unfinished-restore mark", &e))?;
    if options.data_only {
        return Ok(());
    }
    let kept: Vec<&str> = [
        (options.keep_owner, "owner"),
        (options.keep_privileges, "privileges"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let record = if kept.is_empty() {
        format!("ALTER DATABASE {database} RESET {RESTORE_KEPT_SETTING}")
    } else {
        format!(
            "ALTER DATABASE {database} SET {RESTORE_KEPT_SETTING} = '{}'",
            kept.join(",")
        )
    };
    // Like the mark, this needs a role that may set custom database settings; without it,
    // verify compares neither owners nor privileges.
    if let Err(e) = admin.batch_execute(&record).await {
        if !kept.is_empty() {
            tracing::warn!(
                "cannot record on {} that owners/privileges were restored ({}); verify will \
                 not compare them",
                target.describe(),
                describe_error(&e)
            );
        }
    }
    Ok(())
}

/// Refuses an existing target database that holds anything.
async fn refuse_non_empty(target: &PgTarget) -> Result<()> {
    match target_contents(target).await? {
        None => Ok(()),
        Some(found) => Err(non_empty(target, &found)),
    }
}

fn non_empty(target: &PgTarget, found: &str) -> Error {
    Error::Refused(format!(
        "target database {} is not empty ({found}); restore into a new database, or pass \
         --mode replace to drop and recreate it",
        target.describe()
    ))
}

/// Restores the archive's PostgreSQL part into `target` (its database is created if absent).
pub async fn restore(
    archive: Arc<VerifiedArchive>,
    target: &PgTarget,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    let Some((source, meta)) = archive_meta(&archive)? else {
        return Err(no_postgres_data(&archive));
    };
    let admin = connect_maintenance(target).await?;
    if options.data_only {
        check_data_only(&archive, &admin, target, &source, &meta, options).await?;
        set_restore_mark(&admin, target, &archive).await;
        drop(admin);
        return restore_data(&archive, target, options, &meta).await;
    }
    let major = inspect::server_major(&admin).await?;
    let psql = tools::find_tool("psql", major).await?;
    refuse_overwriting(&archive, &admin, target, &source, &meta, options).await?;
    let database_action = prepare_database(&admin, target, &meta, options.replace).await?;
    set_restore_mark(&admin, target, &archive).await;
    drop(admin);

    let result = restore_into(&archive, target, options, &meta, &psql, database_action).await;
    match result {
        // The archive lied in a way only decoding shows (V0 passed: every hash and the COMMIT
        // agree, so it was forged or written by a broken tool). A database this run created
        // holds nothing anyone had before: drop it, so the target is as it was.
        Err(e @ Error::BadInput { .. }) if database_action == "created" => {
            Err(drop_created_database(target, e).await)
        }
        other => other,
    }
}

/// Drops the target database this restore created, after `cause` stopped the restore.
async fn drop_created_database(target: &PgTarget, cause: Error) -> Error {
    let dbname = target.dbname();
    let dropped = match connect_maintenance(target).await {
        Ok(admin) => admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&dbname)
            ))
            .await
            .map_err(|e| describe_error(&e)),
        Err(e) => Err(e.to_string()),
    };
    let note = match dropped {
        Ok(()) => format!("the database {dbname} this restore had created was dropped again"),
        Err(e) => format!(
            "the database {dbname} this restore created could not be dropped ({e}); it is \
             partly restored"
        ),
    };
    match cause {
        Error::BadInput { what, message } => Error::BadInput {
            what,
            message: format!("{message}\n{note}"),
        },
        other => other,
    }
}

/// Everything after the target database is ready: schema, data, post-data, sequences, counts.
async fn restore_into(
    archive: &Arc<VerifiedArchive>,
    target: &PgTarget,
    options: &RestoreOptions,
    meta: &PgArchiveMeta,
    psql: &PgTool,
    database_action: &'static str,
) -> Result<RestoreReport> {
    let mut timings = RestoreTimings::default();
    let mut clock = Instant::now();
    let column_orders = column_orders_to_restore(target, meta).await?;
    crate::progress::step("schema");
    let pre = run_schema(
        archive,
        psql,
        target,
        &meta.pre_data_member,
        options,
        &column_orders,
    )
    .await?;
    timings.pre_data = lap(&mut clock);

    let datasets = match options.schema_only {
        true => Vec::new(),
        false => data_only::selected_tables(archive, options),
    };
    let post = PostData::read(archive, &meta.post_data_member, options).await?;
    let plan = post.plan();
    crate::progress::step("data");
    let load = async {
        load_and_build(archive, target, &datasets, options, &plan, &post.member)
            .await
            .map_err(|e| partial_restore(target, e))
    };
    let blobs = async {
        // Large objects are data: a schema-only restore leaves them out, as pg_restore does.
        if meta.large_objects.is_none() || options.schema_only {
            return Ok(());
        }
        let client = target.connect().await?;
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(|e| db_error("preparing the large-object writer", &e))?;
        large_objects::restore(archive, &client)
            .await
            .map_err(|e| partial_restore(target, e))?;
        Ok(())
    };
    let ((chunks, retry), ()) = tokio::try_join!(load, blobs)?;
    timings.data = lap(&mut clock);

    crate::faultpoint::pause("post-data");
    crate::progress::step("constraints");
    run_serial_post_data(target, &post.member, &plan, &retry).await?;
    timings.post_data = lap(&mut clock);

    if !options.schema_only {
        let client = target.connect().await?;
        set_sequences(&client, meta).await?;
        refresh_matviews(&client, meta).await?;
    }
    clear_restore_mark(target, options).await?;
    timings.finish = lap(&mut clock);
    let mut report = report(archive, target, meta, &datasets, chunks, timings);
    report.database_action = database_action;
    report.skipped_owner_statements = pre.skipped_owner + post.filtered.skipped_owner;
    report.skipped_privilege_statements = pre.skipped_privileges + post.filtered.skipped_privileges;
    Ok(report)
}

/// `--data-only`, once [`data_only::check_target`] passed: rows into the existing tables on
/// `jobs` connections, then sequence values and materialized views; no schema statement runs.
/// As a superuser, foreign keys and user triggers are off for the load
/// (`session_replication_role = replica`, as `pg_restore --disable-triggers`): tables load in
/// parallel in no dependency order, and the rows already are what the triggers made of them.
async fn restore_data(
    archive: &Arc<VerifiedArchive>,
    target: &PgTarget,
    options: &RestoreOptions,
    meta: &PgArchiveMeta,
) -> Result<RestoreReport> {
    let mut timings = RestoreTimings::default();
    let mut clock = Instant::now();
    let datasets = data_only::selected_tables(archive, options);
    let client = target.connect().await?;
    let triggers_off = data_only::can_disable_triggers(&client).await?;
    crate::progress::step("data");
    // No post-data: the load connections only run the preamble.
    let plan = PostDataPlan {
        preamble: match triggers_off {
            true => "SET session_replication_role = replica".into(),
            false => String::new(),
        },
        builds: Vec::new(),
        serial: Vec::new(),
    };
    let (chunks, _) = load_and_build(archive, target, &datasets, options, &plan, "data")
        .await
        .map_err(|e| data_only::partly_loaded(target, e, triggers_off))?;
    timings.data = lap(&mut clock);
    set_sequences(&client, meta).await?;
    refresh_matviews(&client, meta).await?;
    clear_restore_mark(target, options).await?;
    timings.finish = lap(&mut clock);
    let mut report = report(archive, target, meta, &datasets, chunks, timings);
    report.database_action = "existing";
    report.large_objects = 0;
    Ok(report)
}

/// The report of a restore that loaded `datasets` in `chunks` chunks.
fn report(
    archive: &VerifiedArchive,
    target: &PgTarget,
    meta: &PgArchiveMeta,
    datasets: &[usize],
    chunks: usize,
    timings: RestoreTimings,
) -> RestoreReport {
    let manifest = archive.manifest();
    RestoreReport {
        target: target.describe(),
        database: target.dbname(),
        database_action: "",
        tables: datasets.len(),
        rows: datasets.iter().map(|&i| manifest.datasets[i].rows).sum(),
        raw_bytes: datasets
            .iter()
            .map(|&i| manifest.datasets[i].raw_bytes)
            .sum(),
        chunks,
        sequences: meta.sequences.len(),
        materialized_views: meta.materialized_views.len(),
        large_objects: meta.large_objects.as_ref().map_or(0, |l| l.objects.len()),
        skipped_owner_statements: 0,
        skipped_privilege_statements: 0,
        seconds: timings,
    }
}

fn lap(clock: &mut Instant) -> f64 {
    let seconds = clock.elapsed().as_secs_f64();
    *clock = Instant::now();
    (seconds * 1000.0).round() / 1000.0
}

/// A connection to the server's maintenance database (`postgres`, else `template1`), for
/// creating and dropping the target.
async fn connect_maintenance(target: &PgTarget) -> Result<Client> {
    match target.with_dbname("postgres").connect().await {
        Ok(client) => Ok(client),
        Err(first) => target
            .with_dbname("template1")
            .connect()
            .await
            .map_err(|_| first),
    }
}

/// What neither the preflight nor the restore itself may do: overwrite the source (unless
/// `--overwrite-source`), or replace a database whose other tables an archive of only some
/// tables would empty.
async fn refuse_overwriting(
    archive: &VerifiedArchive,
    admin: &Client,
    target: &PgTarget,
    source: &Source,
    meta: &PgArchiveMeta,
    options: &RestoreOptions,
) -> Result<()> {
    if !options.overwrite_source {
        refuse_source(admin, target, source).await?;
    }
    if options.replace && database_exists(admin, target).await? {
        refuse_losing_unarchived_tables(archive, target, meta, &options.selection).await?;
    }
    Ok(())
}

/// `--mode replace` drops and recreates the whole database. From an archive of only some tables
/// (`backup --include/--exclude`) that would silently empty every other table: refused, naming
/// them, unless the target holds no table the archive lacks.
async fn refuse_losing_unarchived_tables(
    archive: &VerifiedArchive,
    target: &PgTarget,
    meta: &PgArchiveMeta,
    selection: &Selection,
) -> Result<()> {
    if meta.excluded_tables.is_empty() && selection.is_everything() {
        return Ok(());
    }
    let client = target.connect().await?;
    let archived: std::collections::BTreeSet<String> = archive
        .manifest()
        .datasets
        .iter()
        .filter(|d| d.engine == Engine::Postgres && selection.selects_dataset(d))
        .map(|d| format!("{}.{}", d.namespace, d.name))
        .collect();
    let lost: Vec<String> = inspect::list_tables(&client)
        .await?
        .iter()
        .map(inspect::TableInfo::qualified)
        .filter(|t| !archived.contains(t))
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "refusing --mode replace of {}: only some tables are restored (the backup or this \
         restore used --include/--exclude), and replacing drops the whole database, so these tables would be \
         emptied or lost: {}. Restore into another database, or drop them first if that is intended",
        target.describe(),
        lost.join(", ")
    )))
}

/// Refuses when the target is the database the archive was taken from.
async fn refuse_source(admin: &Client, target: &PgTarget, source: &Source) -> Result<()> {
    let same_database = source.database == target.dbname();
    let target_id = inspect::system_identifier(admin).await;
    let same_server = match (&source.system_identifier, &target_id) {
        (Some(a), Some(b)) => a == b,
        // Without identifiers, compare where the URLs point.
        _ => PgTarget::new(
            &crate::redact::SecretUrl::new(source.url.clone()),
            Default::default(),
        )
        .map(|s| s.describe() == target.describe())
        .unwrap_or(false),
    };
    if same_database && same_server {
        return Err(Error::Refused(format!(
            "refusing to restore onto {}: it is the database this archive was taken from. \
             Restore into another database (change the database name in --pg-url)",
            target.describe()
        )));
    }
    Ok(())
}

/// Makes sure the target database exists and is empty; returns what was done.
async fn prepare_database(
    admin: &Client,
    target: &PgTarget,
    meta: &PgArchiveMeta,
    replace: bool,
) -> Result<&'static str> {
    let dbname = target.dbname();
    let create = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING '{}'",
        quote_ident(&dbname),
        meta.encoding.replace('\'', "''")
    );
    if !database_exists(admin, target).await? {
        admin
            .batch_execute(&create)
            .await
            .map_err(|e| db_error(&format!("creating database {dbname}"), &e))?;
        return Ok("created");
    }
    match (target_contents(target).await?, replace) {
        (None, _) => Ok("reused-empty"),
        (Some(found), false) => Err(non_empty(target, &found)),
        (Some(_), true) => {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE {} WITH (FORCE)",
                    quote_ident(&dbname)
                ))
                .await
                .map_err(|e| db_error(&format!("dropping database {dbname}"), &e))?;
            admin
                .batch_execute(&create)
                .await
                .map_err(|e| db_error(&format!("creating database {dbname}"), &e))?;
            Ok("replaced")
        }
    }
}

/// A schema member's text.
async fn schema_text(archive: &Arc<VerifiedArchive>, member: &str) -> Result<String> {
    let bytes = {
        let archive = archive.clone();
        let member = member.to_string();
        tokio::task::spawn_blocking(move || archive.read_member(&member))
            .await
            .map_err(|e| Error::io("reading the schema", std::io::Error::other(e)))??
    };
    String::from_utf8(bytes).map_err(|_| {
        Error::bad_input(
            format!("archive {}, member {member}", archive.path().display()),
            "is not UTF-8 text",
        )
    })
}

/// The column orders of inheriting tables that restore puts back (see
/// [`super::column_order`]): all of them as a superuser; none otherwise (each is then a
/// warning of verify), said once here.
async fn column_orders_to_restore(
    target: &PgTarget,
    meta: &PgArchiveMeta,
) -> Result<BTreeMap<String, Vec<String>>> {
    let Some(orders) = meta.schema.as_ref().map(|s| &s.column_orders) else {
        return Ok(BTreeMap::new());
    };
    if orders.is_empty() {
        return Ok(BTreeMap::new());
    }
    let client = target.connect().await?;
    let superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| db_error("checking whether the restoring role is a superuser", &e))?
        .get(0);
    if superuser {
        return Ok(orders.clone());
    }
    tracing::warn!(
        "{} table(s) that inherit ({}) may get their columns in another order than in the \
         source: putting the order back needs a superuser",
        orders.len(),
        orders.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(BTreeMap::new())
}

/// Runs the pre-data schema member through psql, filtered as the options say, with the
/// column orders of inheriting tables put back.
async fn run_schema(
    archive: &Arc<VerifiedArchive>,
    psql: &PgTool,
    target: &PgTarget,
    member: &str,
    options: &RestoreOptions,
    column_orders: &BTreeMap<String, Vec<String>>,
) -> Result<script::Filtered> {
    let text = schema_text(archive, member).await?;
    let filtered = script::filter(&text, options.keep_owner, options.keep_privileges);
    let (sql, reordered) = column_order::restore_order(&filtered.sql, column_orders);
    if reordered > 0 {
        tracing::info!("putting back the column order of {reordered} inheriting table(s)");
    }
    tools::psql_run(
        psql,
        target,
        sql.into_bytes(),
        &format!("pre-data schema ({member})"),
    )
    .await
    .map_err(|e| partial_restore(target, e))?;
    Ok(filtered)
}

/// Entry kinds of post-data that only read their table and can be built side by side, as
/// pg_restore -j does: indexes and primary key / unique / exclusion constraints.
const PARALLEL_KINDS: [&str; 2] = ["INDEX", "CONSTRAINT"];

/// The post-data script split for the restore: index and key builds run as soon as their
/// table is loaded, on the COPY connections (overlapping other tables' COPY, as pg_restore -j
/// does); everything else (foreign keys, index attachments, triggers, policies, comments) runs
/// after all data and builds, in script order.
struct PostData {
    member: String,
    filtered: script::Filtered,
}

struct PostDataPlan<'a> {
    /// `SET` statements before the first entry; every connection running post-data runs them.
    preamble: String,
    builds: Vec<Build<'a>>,
    serial: Vec<&'a str>,
}

/// An index or key build and the table it reads.
struct Build<'a> {
    sql: &'a str,
    table: Option<(String, String)>,
}

impl PostData {
    async fn read(
        archive: &Arc<VerifiedArchive>,
        member: &str,
        options: &RestoreOptions,
    ) -> Result<PostData> {
        let text = schema_text(archive, member).await?;
        Ok(PostData {
            member: member.to_string(),
            filtered: script::filter(&text, options.keep_owner, options.keep_privileges),
        })
    }

    fn plan(&self) -> PostDataPlan<'_> {
        // Whole entries: pg_dump writes some as several statements that must run in order.
        let statements = script::entries(&self.filtered.sql);
        let preamble = statements
            .iter()
            .filter(|s| s.kind.is_none())
            .map(|s| s.sql)
            .collect();
        let (parallel, serial): (Vec<&script::Statement>, Vec<&script::Statement>) = statements
            .iter()
            .filter(|s| s.kind.is_some())
            .partition(|s| s.kind.is_some_and(|k| PARALLEL_KINDS.contains(&k)));
        PostDataPlan {
            preamble,
            builds: parallel
                .into_iter()
                .map(|s| Build {
                    sql: s.sql,
                    table: script::statement_table(s.sql),
                })
                .collect(),
            serial: serial.into_iter().map(|s| s.sql).collect(),
        }
    }
}

/// Runs the post-data statements left after the load: builds that lost a deadlock (retried
/// alone), then the serial rest in script order, on one connection.
async fn run_serial_post_data(
    target: &PgTarget,
    member: &str,
    plan: &PostDataPlan<'_>,
    retry: &[&str],
) -> Result<()> {
    let client = target.connect().await?;
    run_statement(&client, &plan.preamble, member).await?;
    for sql in retry.iter().chain(&plan.serial) {
        run_statement(&client, sql, member)
            .await
            .map_err(|e| partial_restore(target, e))?;
    }
    Ok(())
}

async fn run_statement(client: &Client, sql: &str, member: &str) -> Result<()> {
    if sql.trim().is_empty() {
        return Ok(());
    }
    client
        .batch_execute(sql)
        .await
        .map_err(|e| statement_error(member, sql, &e))
}

fn statement_error(member: &str, sql: &str, e: &tokio_postgres::Error) -> Error {
    let first_line = script::statements(sql)
        .first()
        .map(|s| s.sql)
        .unwrap_or(sql)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--"))
        .unwrap_or("")
        .to_string();
    Error::db(
        Engine::Postgres,
        format!("{member}: `{first_line}` failed: {}", describe_error(e)),
    )
}

/// Adds "the target is partly restored" to errors after the target was touched.
fn partial_restore(target: &PgTarget, e: Error) -> Error {
    match e {
        Error::Tool { program, message } => Error::Tool {
            program,
            message: format!(
                "{message}\nthe target {} is partly restored; fix the cause and run again with \
                 --mode replace",
                target.describe()
            ),
        },
        Error::Database { engine, message } => Error::Database {
            engine,
            message: format!(
                "{message}\nthe target {} is partly restored; fix the cause and run again with \
                 --mode replace",
                target.describe()
            ),
        },
        other => other,
    }
}

/// Hands chunks to COPY workers so that, while there are tables enough, no two workers load the
/// same table: concurrent COPYs into one heap contend on its extension lock. A worker stays on
/// its table until it is done, then takes the largest untouched table, and only helps with a
/// table another worker is on when none is left (and no index build is ready, see
/// [`load_worker`]).
struct Scheduler {
    tables: Vec<TableQueue>,
}

struct TableQueue {
    dataset: usize,
    chunks: std::collections::VecDeque<usize>,
    remaining_bytes: u64,
    workers: usize,
}

impl Scheduler {
    fn new(archive: &VerifiedArchive, datasets: &[usize]) -> Scheduler {
        let manifest = archive.manifest();
        let tables = datasets
            .iter()
            .map(|&d| {
                let dataset = &manifest.datasets[d];
                TableQueue {
                    dataset: d,
                    chunks: (0..dataset.chunks.len()).collect(),
                    remaining_bytes: dataset.raw_bytes,
                    workers: 0,
                }
            })
            .collect();
        Scheduler { tables }
    }

    /// The next chunk for a worker currently on table slot `current`, as (slot, dataset,
    /// chunk): from its own table while that has chunks, else from the largest untouched
    /// table, else (if `help`) from the table with the most left.
    fn next(
        &mut self,
        archive: &VerifiedArchive,
        current: &mut Option<usize>,
        help: bool,
    ) -> Option<(usize, usize, usize)> {
        let stay = current.filter(|&t| !self.tables[t].chunks.is_empty());
        let slot = match stay {
            Some(t) => t,
            None => {
                if let Some(t) = current.take() {
                    self.tables[t].workers -= 1;
                }
                let open = self
                    .tables
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| !t.chunks.is_empty());
                let untouched = open.clone().filter(|(_, t)| t.workers == 0);
                let (t, _) = untouched
                    .max_by_key(|(_, t)| t.remaining_bytes)
                    .or_else(|| help.then(|| open.max_by_key(|(_, t)| t.remaining_bytes))?)?;
                self.tables[t].workers += 1;
                *current = Some(t);
                t
            }
        };
        self.take_from(archive, slot)
            .map(|(dataset, chunk)| (slot, dataset, chunk))
    }

    /// The next chunk of table slot `slot`, if it has one left.
    fn take_from(&mut self, archive: &VerifiedArchive, slot: usize) -> Option<(usize, usize)> {
        let table = &mut self.tables[slot];
        let chunk = table.chunks.pop_front()?;
        let raw = archive.manifest().datasets[table.dataset].chunks[chunk].raw_bytes;
        table.remaining_bytes = table.remaining_bytes.saturating_sub(raw);
        Some((table.dataset, chunk))
    }
}

type Decoding = tokio::task::JoinHandle<Result<DecodedChunk>>;

/// Starts decompressing (and, with `--mask`, masking) a chunk on a blocking thread.
fn decode(
    archive: &Arc<VerifiedArchive>,
    mask: Option<&crate::mask::PgMask>,
    dataset: usize,
    chunk: usize,
) -> Decoding {
    let archive = archive.clone();
    let d = &archive.manifest().datasets[dataset];
    let table = mask.and_then(|m| m.table(&d.namespace, &d.name)).cloned();
    tokio::task::spawn_blocking(move || {
        let d = &archive.manifest().datasets[dataset];
        let decoded = archive.read_chunk(d, &d.chunks[chunk])?;
        match table {
            Some(table) => crate::mask::mask_chunk(
                crate::mask::ChunkMask::Table(&table),
                decoded,
                &d.chunks[chunk].member,
            ),
            None => Ok(decoded),
        }
    })
}

/// What the load workers share: which chunks are left, and which builds may start.
struct LoadState {
    scheduler: Scheduler,
    /// Per table slot, chunks not loaded yet (queued or in flight).
    unloaded: Vec<usize>,
    unloaded_total: usize,
    /// Per table slot, the builds waiting for it.
    waiting: Vec<Vec<usize>>,
    /// Builds whose table has no data in the archive (or could not be read): after all data.
    after_all: Vec<usize>,
    /// Builds whose table is loaded, not yet taken.
    ready: std::collections::VecDeque<usize>,
    /// Builds that lost a deadlock, to retry alone after the load.
    retry: Vec<usize>,
    /// Per table slot, its name and rows, for reporting it done.
    tables: Vec<(String, u64)>,
    /// Whether any index or key build follows the load (none with `--data-only`).
    has_builds: bool,
}

impl LoadState {
    fn new(archive: &VerifiedArchive, datasets: &[usize], builds: &[Build<'_>]) -> LoadState {
        let manifest = archive.manifest();
        let unloaded: Vec<usize> = datasets
            .iter()
            .map(|&d| manifest.datasets[d].chunks.len())
            .collect();
        let slot_of: std::collections::HashMap<(&str, &str), usize> = datasets
            .iter()
            .enumerate()
            .map(|(slot, &d)| {
                let d = &manifest.datasets[d];
                ((d.namespace.as_str(), d.name.as_str()), slot)
            })
            .collect();
        let mut state = LoadState {
            scheduler: Scheduler::new(archive, datasets),
            unloaded_total: unloaded.iter().sum(),
            waiting: vec![Vec::new(); datasets.len()],
            unloaded,
            after_all: Vec::new(),
            ready: Default::default(),
            retry: Vec::new(),
            tables: datasets
                .iter()
                .map(|&d| {
                    let d = &manifest.datasets[d];
                    (format!("table {}", d.qualified_name()), d.rows)
                })
                .collect(),
            has_builds: !builds.is_empty(),
        };
        for (i, build) in builds.iter().enumerate() {
            let slot = build
                .table
                .as_ref()
                .and_then(|(s, t)| slot_of.get(&(s.as_str(), t.as_str())));
            match slot {
                Some(&slot) if state.unloaded[slot] == 0 => state.ready.push_back(i),
                Some(&slot) => state.waiting[slot].push(i),
                None => state.after_all.push(i),
            }
        }
        if state.unloaded_total == 0 {
            state.ready.extend(state.after_all.drain(..));
        }
        state
    }

    /// Records a loaded chunk of `slot`, releasing the builds that waited for it.
    fn loaded(&mut self, slot: usize) {
        self.unloaded[slot] -= 1;
        self.unloaded_total -= 1;
        if self.unloaded[slot] == 0 {
            self.ready.extend(self.waiting[slot].drain(..));
            let (name, rows) = &self.tables[slot];
            crate::progress::item_done("restored", name, *rows);
        }
        if self.unloaded_total == 0 && self.has_builds {
            self.ready.extend(self.after_all.drain(..));
            // What is left are index and key builds: the data bar is full, say what follows.
            crate::progress::step("indexes");
        }
    }
}

/// What one of the workers does next.
enum Work {
    Build(usize),
    Chunk(usize, usize, usize, Decoding),
    Wait,
    Done,
}

/// Loads every chunk with `jobs` COPY workers, and runs each index / key build as soon as its
/// table's last chunk is loaded, on the same workers; returns how many chunks were loaded and
/// the builds to retry alone.
async fn load_and_build<'a>(
    archive: &Arc<VerifiedArchive>,
    target: &PgTarget,
    datasets: &[usize],
    options: &RestoreOptions,
    post: &PostDataPlan<'a>,
    member: &str,
) -> Result<(usize, Vec<&'a str>)> {
    let (jobs, mask) = (options.jobs, options.masks.postgres.as_deref());
    let state = std::sync::Mutex::new(LoadState::new(archive, datasets, &post.builds));
    let total = state.lock().unwrap().unloaded_total;
    let released = tokio::sync::Notify::new();
    let work = total + post.builds.len();
    let workers = (0..jobs.max(1).min(work.max(1)))
        .map(|_| load_worker(archive, mask, target, &state, &released, post, member));
    futures::future::try_join_all(workers).await?;
    let state = state.into_inner().unwrap();
    Ok((
        total,
        state.retry.iter().map(|&i| post.builds[i].sql).collect(),
    ))
}

/// One connection of the load. Its work, in order of preference: the rest of its table; a table
/// nobody has started; a build whose table is loaded; helping with a table another worker is
/// on. Starting every table's COPY before any build gets builds of the first tables going while
/// the last ones load, and leaves the tail to builds, which parallelise across tables. While a
/// chunk is being loaded the next one of the same table is already decompressing.
async fn load_worker(
    archive: &Arc<VerifiedArchive>,
    mask: Option<&crate::mask::PgMask>,
    target: &PgTarget,
    state: &std::sync::Mutex<LoadState>,
    released: &tokio::sync::Notify,
    post: &PostDataPlan<'_>,
    member: &str,
) -> Result<()> {
    let client = target.connect().await?;
    run_statement(&client, &post.preamble, member).await?;
    // A restore that crashes is rerun anyway, so commit durability per COPY buys nothing.
    client
        .batch_execute("SET synchronous_commit = off; SET row_security = off")
        .await
        .map_err(|e| db_error("preparing a restore worker", &e))?;
    let mut current = None;
    let mut prefetched = None;
    loop {
        let notified = released.notified();
        let work = {
            let mut st = state.lock().unwrap();
            if let Some((slot, d, c, decoding)) = prefetched.take() {
                Work::Chunk(slot, d, c, decoding)
            } else if let Some((slot, d, c)) = st.scheduler.next(archive, &mut current, false) {
                Work::Chunk(slot, d, c, decode(archive, mask, d, c))
            } else if let Some(b) = st.ready.pop_front() {
                Work::Build(b)
            } else if let Some((slot, d, c)) = st.scheduler.next(archive, &mut current, true) {
                Work::Chunk(slot, d, c, decode(archive, mask, d, c))
            } else if st.unloaded_total == 0 {
                Work::Done
            } else {
                Work::Wait
            }
        };
        match work {
            Work::Build(b) => match client.batch_execute(post.builds[b].sql).await {
                Ok(()) => {}
                // Two builds on related tables can deadlock on their locks; the loser is
                // retried alone after the load.
                Err(e)
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
                {
                    state.lock().unwrap().retry.push(b)
                }
                Err(e) => return Err(statement_error(member, post.builds[b].sql, &e)),
            },
            Work::Chunk(slot, d, c, decoding) => {
                let chunk = decoding
                    .await
                    .map_err(|e| Error::io("decoding a chunk", std::io::Error::other(e)))??;
                prefetched = state
                    .lock()
                    .unwrap()
                    .scheduler
                    .take_from(archive, slot)
                    .map(|(d, c)| (slot, d, c, decode(archive, mask, d, c)));
                let dataset = &archive.manifest().datasets[d];
                copy_chunk(&client, dataset, &dataset.chunks[c].member, chunk).await?;
                state.lock().unwrap().loaded(slot);
                // Waiting workers look again: builds may be ready, or the load may be over.
                released.notify_waiters();
            }
            Work::Wait => notified.await,
            Work::Done => return Ok(()),
        }
    }
}

fn dataset_columns(dataset: &Dataset) -> Result<Vec<String>> {
    serde_json::from_value::<PgDatasetExtra>(dataset.extra.clone())
        .map(|e| e.columns)
        .map_err(|e| {
            Error::bad_input(
                format!("manifest dataset {}", dataset.qualified_name()),
                format!("has no valid PostgreSQL column list: {e}"),
            )
        })
}

async fn copy_chunk(
    client: &Client,
    dataset: &Dataset,
    member: &str,
    chunk: DecodedChunk,
) -> Result<()> {
    let columns = dataset_columns(dataset)?;
    let table = quote_qualified(&dataset.namespace, &dataset.name);
    let statement = if columns.is_empty() {
        format!("COPY {table} FROM STDIN")
    } else {
        format!(
            "COPY {table} {} FROM STDIN",
            inspect::quoted_column_list(&columns)
        )
    };
    let what = format!("loading {member} into {}", dataset.qualified_name());
    let expected = chunk.rows();
    let sink = client
        .copy_in::<_, Bytes>(&statement)
        .await
        .map_err(|e| db_error(&what, &e))?;
    futures::pin_mut!(sink);
    sink.send(Bytes::from(chunk.data))
        .await
        .map_err(|e| db_error(&what, &e))?;
    let rows = sink.finish().await.map_err(|e| db_error(&what, &e))?;
    if rows != expected {
        return Err(Error::db(
            Engine::Postgres,
            format!("{what}: COPY loaded {rows} rows, the chunk holds {expected}"),
        ));
    }
    Ok(())
}

async fn set_sequences(client: &Client, meta: &PgArchiveMeta) -> Result<()> {
    for seq in &meta.sequences {
        let name = quote_qualified(&seq.schema, &seq.name);
        client
            .execute(
                "SELECT pg_catalog.setval($1::text::regclass, $2, $3)",
                &[&name, &seq.last_value, &seq.is_called],
            )
            .await
            .map_err(|e| db_error(&format!("setting sequence {}.{}", seq.schema, seq.name), &e))?;
    }
    Ok(())
}

/// Refreshes materialized views. One may read another, so views that fail because a view
/// they read is not populated yet are retried after the others, until no progress is made.
async fn refresh_matviews(client: &Client, meta: &PgArchiveMeta) -> Result<()> {
    let mut pending: Vec<_> = meta.materialized_views.iter().collect();
    if !pending.is_empty() {
        // Each refresh runs its view's query over the restored data: as long as a load.
        crate::progress::step("materialized views");
    }
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = None;
        for view in &pending {
            let sql = format!(
                "REFRESH MATERIALIZED VIEW {}",
                quote_qualified(&view.schema, &view.name)
            );
            if let Err(e) = client.batch_execute(&sql).await {
                last_error = Some(format!(
                    "{}.{}: {}",
                    view.schema,
                    view.name,
                    describe_error(&e)
                ));
                failed.push(*view);
            }
        }
        if failed.len() == pending.len() {
            return Err(Error::db(
                Engine::Postgres,
                format!(
                    "refreshing materialized views failed: {}",
                    last_error.unwrap_or_default()
                ),
            ));
        }
        pending = failed;
    }
    Ok(())
}
