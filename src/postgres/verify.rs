//! V2 for PostgreSQL: a live database compared with the archive's manifest.
//!
//! - counts: exact `count(*)` of every archived table (never the planner's estimate);
//! - `deep`: instead of counting, every table is read back with the COPY the dump used
//!   (`COPY "s"."t" (columns) TO STDOUT`, the dataset's column list) and each row's text is
//!   hashed exactly as at dump time ([`ContentDigest`]); the digest's count replaces `count(*)`,
//!   so a deep check reads each table once;
//! - sequences: `last_value` and `is_called` as recorded;
//! - indexes: every index definition (`pg_get_indexdef`) as recorded, by name;
//! - schema: the fingerprint of [`crate::postgres::fingerprint`], naming each object that is
//!   missing, unexpected or different;
//! - large objects: their number, each one's presence, size and comment, its owner and ACL when
//!   those were restored, and with `deep` its SHA-256 ([`crate::postgres::large_objects`]).
//!
//! After `restore --mask`, a masked table's rows are compared with the digest of the masked rows
//! the restore streamed into it ([`crate::mask::copy_text::TableMask::streamed_digest`]), not
//! with the archive's digest of the originals.
//!
//! Tables are checked on `jobs` connections, biggest first. A table that cannot be read (it is
//! gone, a column was dropped) is a mismatch, not an error: the report goes on.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::archive::digest::ContentDigest;
use crate::archive::reader::VerifiedArchive;
use crate::archive::Dataset;
use crate::error::{Engine, Error, Result};
use crate::postgres::connect::describe_error;
use crate::postgres::dump::{PgArchiveMeta, PgDatasetExtra};
use crate::postgres::fingerprint::{self, IndexDef, SchemaDescription, SchemaFingerprint};
use crate::postgres::inspect::{self, db_error, quote_qualified};
use crate::postgres::large_objects;
use crate::postgres::restore::{archive_meta, restore_kept, unfinished_restore};
use crate::postgres::schema_objects;
use crate::postgres::PgTarget;
use crate::verify::{Kind, TargetCheck};

/// How much to compare: the options every engine's V2 takes.
pub use crate::engine::CompareOptions as VerifyOptions;

/// What a table's content is compared with.
enum Expected {
    /// The archive's digest of its rows.
    Archive(String),
    /// The digest of the masked rows `restore --mask` streamed into it.
    Masked(String),
    /// Masked, with a `constant:` on a non-text column PostgreSQL stores in its own text form
    /// (the columns named): only the count can be compared.
    Reformatted(Vec<String>),
}

fn expected_content(dataset: &Dataset, masked: Option<&crate::mask::PgMask>) -> Expected {
    match masked.and_then(|m| m.table(&dataset.namespace, &dataset.name)) {
        None => Expected::Archive(dataset.digest.clone()),
        Some(table) => {
            let reformatted = table.reformatted_columns();
            if reformatted.is_empty() {
                Expected::Masked(table.streamed_digest().to_hex())
            } else {
                Expected::Reformatted(reformatted.into_iter().map(String::from).collect())
            }
        }
    }
}

/// Compares `target` with the archive's PostgreSQL part. Errors only when the target cannot be
/// reached or the archive holds no PostgreSQL data; every difference is in the returned check.
pub async fn verify_target(
    archive: &VerifiedArchive,
    target: &PgTarget,
    options: VerifyOptions,
) -> Result<TargetCheck> {
    let started = Instant::now();
    let Some((_, meta)) = archive_meta(archive)? else {
        return Err(Error::Usage(format!(
            "archive {} holds no PostgreSQL data to compare with {}; drop --pg-url",
            archive.path().display(),
            target.describe()
        )));
    };
    let mut check = TargetCheck::new(Engine::Postgres, target.describe(), options.deep);
    let catalog = target.connect().await?;
    catalog
        .batch_execute("SET search_path = pg_catalog")
        .await
        .map_err(|e| db_error("preparing the catalog connection", &e))?;

    // A restore killed during post-data leaves every row but no indexes: counts alone would
    // pass, so the restore's own unfinished mark is checked first.
    match unfinished_restore(&catalog).await? {
        Some(mark) => check.mismatch(
            Kind::IncompleteRestore,
            target.describe(),
            "finished restore",
            mark.clone(),
            format!(
                "a restore into {} started ({mark}) and never finished; run the restore again \
                 with --mode replace",
                target.describe()
            ),
        ),
        None => check.checked(),
    }

    let datasets: Vec<&Dataset> = archive
        .manifest()
        .tables_of(Engine::Postgres)
        .filter(|d| options.selection.selects_dataset(d))
        .collect();
    check.objects = datasets.len();
    let present: HashSet<(String, String)> = inspect::list_tables(&catalog)
        .await?
        .into_iter()
        .map(|t| (t.schema, t.name))
        .collect();
    let (readable, gone): (Vec<&Dataset>, Vec<&Dataset>) = datasets
        .into_iter()
        .partition(|d| present.contains(&(d.namespace.clone(), d.name.clone())));
    for dataset in gone {
        check.mismatch(
            Kind::Missing,
            dataset.qualified_name(),
            dataset.rows,
            Value::Null,
            format!(
                "table {} is missing (the archive has {} rows)",
                dataset.qualified_name(),
                dataset.rows
            ),
        );
    }
    let readable = if options.schema_only {
        Vec::new()
    } else {
        readable
    };
    for (dataset, found) in read_tables(target, readable, options.clone()).await? {
        let expected = expected_content(dataset, options.masks.postgres.as_deref());
        let differs = matches!((&found, &expected),
            (TableRead::Digest(d), Expected::Archive(e)) if d.to_hex() != *e);
        // Narrowing compares with the archive's rows: of no use for a masked table.
        let detail = if differs {
            Some(where_rows_differ(archive, &catalog, dataset).await)
        } else {
            None
        };
        compare_table(&mut check, dataset, found, expected, options.deep, detail);
    }
    if !options.schema_only {
        compare_sequences(&mut check, &meta, &catalog).await?;
    }
    if options.data_only {
        check.sort();
        check.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        return Ok(check);
    }
    compare_indexes(&mut check, &meta, &catalog).await?;
    if !options.schema_only {
        compare_matviews(&mut check, &meta, &catalog).await?;
    }
    compare_schema(&mut check, &meta, &catalog).await?;
    let blobs = large_objects::CompareOptions {
        deep: options.deep,
        owners: options.keep_owner,
        privileges: options.keep_owner && options.keep_privileges,
    };
    // Large objects are data: a schema-only restore leaves them out, as pg_restore does.
    if !options.schema_only {
        large_objects::compare(&mut check, meta.large_objects.as_ref(), &catalog, blobs).await?;
    }
    check.sort();
    check.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    Ok(check)
}

/// What reading one table gave.
enum TableRead {
    Count(u64),
    Digest(ContentDigest),
    /// The server refused the query (SQL error), e.g. a column the archive lists is gone.
    Unreadable(String),
}

/// Counts (or digests) every table on `jobs` connections, biggest tables first.
async fn read_tables<'a>(
    target: &PgTarget,
    mut datasets: Vec<&'a Dataset>,
    options: VerifyOptions,
) -> Result<Vec<(&'a Dataset, TableRead)>> {
    datasets.sort_by_key(|d| std::cmp::Reverse(d.raw_bytes));
    let queue = Mutex::new(datasets.into_iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    let workers = options.jobs.max(1).min(queue.lock().unwrap().len().max(1));
    let worker = || async {
        let client = target.connect().await?;
        client
            .batch_execute("SET statement_timeout = 0; SET row_security = off")
            .await
            .map_err(|e| db_error("preparing a verify connection", &e))?;
        loop {
            let next = queue.lock().unwrap().pop_front();
            let Some(dataset) = next else {
                return Ok::<_, Error>(());
            };
            let found = if options.deep {
                table_digest(&client, dataset).await?
            } else {
                table_count(&client, dataset).await?
            };
            results.lock().unwrap().push((dataset, found));
        }
    };
    futures::future::try_join_all((0..workers).map(|_| worker())).await?;
    Ok(results.into_inner().unwrap())
}

/// A query error the server reported is a finding about the table; anything else (connection
/// lost) is an error.
fn unreadable(what: &str, e: tokio_postgres::Error) -> Result<TableRead> {
    if e.as_db_error().is_some() {
        Ok(TableRead::Unreadable(describe_error(&e)))
    } else {
        Err(db_error(what, &e))
    }
}

async fn table_count(client: &Client, dataset: &Dataset) -> Result<TableRead> {
    let sql = format!(
        "SELECT count(*) FROM ONLY {}",
        quote_qualified(&dataset.namespace, &dataset.name)
    );
    match client.query_one(&sql, &[]).await {
        Ok(row) => Ok(TableRead::Count(row.get::<_, i64>(0) as u64)),
        Err(e) => unreadable(&format!("counting rows of {}", dataset.qualified_name()), e),
    }
}

/// The COPY the dump used for `dataset`, without its ctid range: the same columns in the same
/// order, so every row's text is the same bytes.
fn copy_statement(dataset: &Dataset, columns: &[String]) -> String {
    let table = quote_qualified(&dataset.namespace, &dataset.name);
    if columns.is_empty() {
        format!("COPY (SELECT FROM ONLY {table}) TO STDOUT")
    } else {
        format!(
            "COPY (SELECT {} FROM ONLY {table}) TO STDOUT",
            columns
                .iter()
                .map(|c| inspect::quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

async fn table_digest(client: &Client, dataset: &Dataset) -> Result<TableRead> {
    let columns = serde_json::from_value::<PgDatasetExtra>(dataset.extra.clone())
        .map(|e| e.columns)
        .map_err(|e| {
            Error::bad_input(
                format!("manifest dataset {}", dataset.qualified_name()),
                format!("has no valid PostgreSQL column list: {e}"),
            )
        })?;
    let what = format!("reading table {}", dataset.qualified_name());
    let stream = match client.copy_out(&copy_statement(dataset, &columns)).await {
        Ok(stream) => stream,
        Err(e) => return unreadable(&what, e),
    };
    futures::pin_mut!(stream);
    let mut rows = CopyRows::default();
    while let Some(message) = stream.next().await {
        match message {
            Ok(data) => rows.feed(&data),
            Err(e) => return unreadable(&what, e),
        }
    }
    rows.finish()
        .map(TableRead::Digest)
        .map_err(|message| Error::db(Engine::Postgres, format!("{what}: {message}")))
}

/// Splits a COPY text stream into rows (messages do not end on row boundaries) and digests each
/// row without its `\n`, as [`crate::archive::chunk::ChunkBuilder`] did at dump time.
#[derive(Default)]
struct CopyRows {
    digest: ContentDigest,
    carry: Vec<u8>,
}

impl CopyRows {
    fn feed(&mut self, mut data: &[u8]) {
        if !self.carry.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(end) => {
                    self.carry.extend_from_slice(&data[..end]);
                    self.digest.add(&self.carry);
                    self.carry.clear();
                    data = &data[end + 1..];
                }
                None => {
                    self.carry.extend_from_slice(data);
                    return;
                }
            }
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            self.digest.add(&data[start..end]);
            start = end + 1;
        }
        self.carry.extend_from_slice(&data[start..]);
    }

    fn finish(self) -> std::result::Result<ContentDigest, String> {
        if self.carry.is_empty() {
            Ok(self.digest)
        } else {
            Err("the COPY output ended in the middle of a row".into())
        }
    }
}

/// Which rows of a table whose content differs are the different ones (see
/// [`crate::postgres::narrow`]); a failure to narrow is said, not raised: the mismatch itself
/// was already proven.
async fn where_rows_differ(
    archive: &VerifiedArchive,
    client: &Client,
    dataset: &Dataset,
) -> String {
    let columns = serde_json::from_value::<PgDatasetExtra>(dataset.extra.clone())
        .map(|e| e.columns)
        .unwrap_or_default();
    let statement = copy_statement(dataset, &columns);
    match crate::postgres::narrow::describe_difference(archive, client, dataset, &statement).await {
        Ok(detail) => detail,
        Err(e) => format!("could not narrow it down to rows: {e}"),
    }
}

fn compare_table(
    check: &mut TargetCheck,
    dataset: &Dataset,
    found: TableRead,
    expected: Expected,
    deep: bool,
    detail: Option<String>,
) {
    let table = dataset.qualified_name();
    let count = match &found {
        TableRead::Count(n) => *n,
        TableRead::Digest(d) => d.count(),
        TableRead::Unreadable(message) => {
            let kind = if deep { Kind::Content } else { Kind::Count };
            check.mismatch(
                kind,
                &table,
                dataset.rows,
                Value::Null,
                format!("table {table} cannot be read as archived: {message}"),
            );
            return;
        }
    };
    check.compare(Kind::Count, &table, dataset.rows, count, |e, f| {
        format!("table {table} has {f} rows, the archive has {e}")
    });
    let TableRead::Digest(digest) = found else {
        return;
    };
    match expected {
        Expected::Archive(archived) => check.compare(
            Kind::Content,
            &table,
            archived,
            digest.to_hex(),
            |_, _| match &detail {
                Some(detail) => format!(
                    "table {table}: the content of its rows differs from the archive: {detail}"
                ),
                None => format!("table {table}: the content of its rows differs from the archive"),
            },
        ),
        Expected::Masked(streamed) => {
            check.compare(Kind::Content, &table, streamed, digest.to_hex(), |_, _| {
                format!(
                    "table {table}: the content of its rows differs from the masked rows the \
                     restore wrote into it"
                )
            })
        }
        Expected::Reformatted(columns) => check.warnings.push(format!(
            "table {table}: content not compared, only its row count: PostgreSQL stores the \
             constant of {} in its own text form",
            columns.join(", ")
        )),
    }
}

async fn compare_sequences(
    check: &mut TargetCheck,
    meta: &PgArchiveMeta,
    catalog: &Client,
) -> Result<()> {
    let live: BTreeMap<(String, String), (i64, bool)> = inspect::sequence_values(catalog)
        .await?
        .into_iter()
        .map(|s| ((s.schema, s.name), (s.last_value, s.is_called)))
        .collect();
    let state = |(value, called): (i64, bool)| json!({ "last_value": value, "is_called": called });
    for seq in &meta.sequences {
        let name = format!("{}.{}", seq.schema, seq.name);
        let expected = (seq.last_value, seq.is_called);
        match live.get(&(seq.schema.clone(), seq.name.clone())) {
            None => check.mismatch(
                Kind::Missing,
                &name,
                state(expected),
                Value::Null,
                format!("sequence {name} is missing"),
            ),
            Some(&found) => check.compare(
                Kind::Sequence,
                &name,
                state(expected),
                state(found),
                |_, _| {
                    format!(
                        "sequence {name} is at {}{}, the archive has {}{}",
                        found.0,
                        if found.1 { "" } else { " (not called)" },
                        expected.0,
                        if expected.1 { "" } else { " (not called)" },
                    )
                },
            ),
        }
    }
    Ok(())
}

/// Whether each materialized view holds data: the archive lists the populated ones (restore
/// refreshes exactly those); one created `WITH NO DATA` must stay unpopulated, since querying it
/// fails until someone refreshes it on purpose. Their rows are derived and not compared.
async fn compare_matviews(
    check: &mut TargetCheck,
    meta: &PgArchiveMeta,
    catalog: &Client,
) -> Result<()> {
    let name = |v: &inspect::MatView| format!("{}.{}", v.schema, v.name);
    let archived: BTreeSet<String> = meta.materialized_views.iter().map(name).collect();
    let live: BTreeSet<String> = inspect::populated_matviews(catalog)
        .await?
        .iter()
        .map(name)
        .collect();
    let state = |populated: bool| {
        if populated {
            "populated"
        } else {
            "not populated"
        }
    };
    for view in archived.union(&live) {
        let (expected, found) = (archived.contains(view), live.contains(view));
        check.compare(
            Kind::Schema,
            format!("materialized view {view}"),
            state(expected),
            state(found),
            |_, _| {
                format!(
                    "materialized view {view} is {}, in the archive it is {}",
                    state(found),
                    state(expected)
                )
            },
        );
    }
    Ok(())
}

async fn compare_indexes(
    check: &mut TargetCheck,
    meta: &PgArchiveMeta,
    catalog: &Client,
) -> Result<()> {
    let Some(archived) = &meta.indexes else {
        return Ok(()); // written before index definitions were recorded
    };
    let by_name = |defs: &[IndexDef]| -> BTreeMap<String, String> {
        defs.iter()
            .map(|d| (d.qualified(), d.definition.clone()))
            .collect()
    };
    let expected = by_name(archived);
    let found = by_name(&fingerprint::index_definitions(catalog).await?);
    for (name, definition) in &expected {
        match found.get(name) {
            None => check.mismatch(
                Kind::Index,
                name,
                definition.clone(),
                Value::Null,
                format!("index {name} is missing"),
            ),
            Some(other) => check.compare(
                Kind::Index,
                name,
                definition.clone(),
                other.clone(),
                |_, _| format!("index {name} has a different definition"),
            ),
        }
    }
    for (name, definition) in found.iter().filter(|(n, _)| !expected.contains_key(*n)) {
        check.mismatch(
            Kind::Index,
            name,
            Value::Null,
            definition.clone(),
            format!("index {name} is not in the archive"),
        );
    }
    Ok(())
}

async fn compare_schema(
    check: &mut TargetCheck,
    meta: &PgArchiveMeta,
    catalog: &Client,
) -> Result<()> {
    let Some(archived) = &meta.schema else {
        return Ok(()); // written before the fingerprint was recorded
    };
    let description = fingerprint::describe_version(catalog, archived.version).await?;
    let found = description.fingerprint();
    if found.fingerprint == archived.fingerprint {
        check.checked();
        return Ok(());
    }
    // Owners and privileges are compared only when the restore applied them: otherwise the
    // target's are whatever its restoring role made them, by design.
    let kept = restore_kept(catalog).await?;
    let compared = |key: &String| {
        (kept.owner || !key.starts_with(schema_objects::OWNER_PREFIX))
            && (kept.privileges
                || !schema_objects::PRIVILEGE_PREFIXES
                    .iter()
                    .any(|p| key.starts_with(p)))
    };
    let diff = archived.diff(&found);
    let mismatches_before = check.mismatches.len();
    let hash = |map: &BTreeMap<String, String>, key: &str| map.get(key).cloned();
    for object in diff.missing.iter().filter(|k| compared(k)) {
        check.mismatch(
            Kind::Schema,
            object,
            hash(&archived.objects, object),
            Value::Null,
            format!("{object} is missing"),
        );
    }
    for object in diff.unexpected.iter().filter(|k| compared(k)) {
        check.mismatch(
            Kind::Schema,
            object,
            Value::Null,
            hash(&found.objects, object),
            format!("{object} is not in the archive"),
        );
    }
    for object in diff.changed.iter().filter(|k| compared(k)) {
        if let Some(warning) = column_order_only(archived, &description, object) {
            tracing::warn!("{warning}");
            check.warnings.push(warning);
            check.checked();
            continue;
        }
        check.mismatch(
            Kind::Schema,
            object,
            hash(&archived.objects, object),
            hash(&found.objects, object),
            format!("{object} differs from its archived definition"),
        );
    }
    if check.mismatches.len() == mismatches_before {
        check.checked();
    }
    Ok(())
}

/// The warning for a table that differs from the archive only in the order of its columns,
/// when that table inherits from another: pg_dump recreates it with its parents' columns first
/// and a restore can put them back only as a superuser. `None` for any other difference.
fn column_order_only(
    archived: &SchemaFingerprint,
    found: &SchemaDescription,
    object: &str,
) -> Option<String> {
    let table = object.strip_prefix("table ")?;
    let order = archived.column_orders.get(table)?;
    let text = found.objects.get(object)?;
    let reordered = fingerprint::with_column_order(text, order)?;
    if Some(&fingerprint::object_hash(&reordered)) != archived.objects.get(object) {
        return None;
    }
    let here = found.column_orders.get(table).map(|c| c.join(", "));
    Some(format!(
        "table {table} has its columns in another order than in the archive ({}; archived: \
         {}): it inherits from a table that gained columns after it was created, pg_dump \
         recreates it with the parents' columns first, and restoring the original order needs a \
         superuser (restore as one to get it); it is otherwise identical",
        here.unwrap_or_default(),
        order.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_split_across_messages_digest_like_the_dump() {
        let mut expected = ContentDigest::new();
        for row in [&b"1\tAda"[..], b"2\tGrace", b"3\t\\N"] {
            expected.add(row);
        }
        let mut rows = CopyRows::default();
        for piece in [&b"1\tA"[..], b"da\n2\tGr", b"ace\n", b"3\t\\N\n"] {
            rows.feed(piece);
        }
        assert_eq!(rows.finish().unwrap(), expected);

        let mut cut = CopyRows::default();
        cut.feed(b"1\tAda\n2\tGr");
        assert!(cut.finish().is_err());
    }

    #[test]
    fn copy_statements_use_the_archived_columns() {
        let dataset = Dataset {
            engine: Engine::Postgres,
            namespace: "we\"ird".into(),
            name: "T".into(),
            format: crate::archive::RecordFormat::CopyText,
            rows: 0,
            raw_bytes: 0,
            digest: String::new(),
            chunks: Vec::new(),
            extra: Value::Null,
        };
        assert_eq!(
            copy_statement(&dataset, &["b".into(), "a".into()]),
            r#"COPY (SELECT "b", "a" FROM ONLY "we""ird"."T") TO STDOUT"#
        );
        assert_eq!(
            copy_statement(&dataset, &[]),
            r#"COPY (SELECT FROM ONLY "we""ird"."T") TO STDOUT"#
        );
    }
}
