//! PostgreSQL backup: one consistent snapshot, schema from pg_dump, data from parallel COPY.
//!
//! 1. [`PgDump::begin`]: a leader connection opens a REPEATABLE READ, READ ONLY transaction,
//!    exports its snapshot, locks the dumped tables in ACCESS SHARE mode (so a concurrent DROP
//!    or TRUNCATE cannot empty them under us, as pg_dump does), and collects what the archive
//!    header needs. It refuses early: pg_dump missing or older than the server.
//! 2. [`PgDump::run`]: `pg_dump --snapshot` writes pre-data (with large objects' metadata) and
//!    post-data; `jobs` workers import the same snapshot and stream `COPY ... TO STDOUT` (text)
//!    per table — big tables split into ctid ranges so workers share them — into row-aligned
//!    chunks, compressed on blocking threads and sent to the archive writer; one more connection
//!    in the snapshot reads large objects' data ([`crate::postgres::large_objects`]). Rows
//!    committed by others after the snapshot are invisible to every part, so the archive is one
//!    point in time.
//!
//! Ownership and privileges are kept in the schema members exactly as pg_dump wrote them;
//! restore decides whether to apply them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::archive::chunk::{ChunkBuilder, CompressedChunk, Encoding, RecordFormat};
use crate::archive::digest::ContentDigest;
use crate::archive::pipeline::{EncodeAhead, MemberSender};
use crate::archive::selection::Selection;
use crate::archive::{chunk_member_name, ChunkEntry, Dataset, Member, Source};
use crate::error::{Engine, Error, Result};
use crate::postgres::connect::server_version;
use crate::postgres::fingerprint::{self, IndexDef, SchemaFingerprint};
use crate::postgres::inspect::{self, db_error, MatView, SequenceValue, TableInfo};
use crate::postgres::large_objects::{self, LargeObjectsMeta};
use crate::postgres::tools::{self, PgTool, Section};
use crate::postgres::PgTarget;

/// Member holding the pre-data schema script.
pub const PRE_DATA_MEMBER: &str = "postgres/schema/pre-data.sql";
/// Member holding the post-data schema script.
pub const POST_DATA_MEMBER: &str = "postgres/schema/post-data.sql";
/// Engine name in member paths and the manifest's `engines` map.
pub const ENGINE_KEY: &str = "postgres";

/// Tables larger than this many chunks on disk are split into ctid ranges of about that size,
/// so parallel workers share a big table instead of one worker copying it alone (64 MiB with
/// the default chunk size).
const SPLIT_CHUNKS: i64 = 8;
/// TID range scans (`ctid >= ... AND ctid < ...` without a full scan) exist from PostgreSQL 14.
const TID_RANGE_SCAN_MAJOR: u32 = 14;

/// How to dump: the options every engine's dump takes.
pub use crate::engine::DumpOptions;

/// What the manifest's `engines.postgres` entry holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgArchiveMeta {
    pub pre_data_member: String,
    pub post_data_member: String,
    pub pg_dump_version: String,
    pub encoding: String,
    /// Every sequence's value, restored with `setval` after the data.
    pub sequences: Vec<SequenceValue>,
    /// Materialized views that were populated, refreshed after restore.
    pub materialized_views: Vec<MatView>,
    /// Tables left out by `--include`/`--exclude` (their schema is in the archive, not their
    /// rows).
    pub excluded_tables: Vec<String>,
    /// Every index definition at the snapshot, compared one by one by verify. Absent in
    /// archives written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexes: Option<Vec<IndexDef>>,
    /// The schema fingerprint at the snapshot (see [`crate::postgres::fingerprint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaFingerprint>,
    /// Every large object (absent when there are none; archives written before large objects
    /// were backed up never had any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<LargeObjectsMeta>,
}

/// The PostgreSQL part of a dataset's `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgDatasetExtra {
    /// The COPY column list, in order (generated columns are left out and recomputed).
    pub columns: Vec<String>,
}

/// A dump in progress: the leader's snapshot is held until [`PgDump::run`] ends.
pub struct PgDump {
    target: PgTarget,
    leader: Client,
    snapshot: String,
    source: Source,
    pg_dump: PgTool,
    tables: Vec<TableInfo>,
    excluded: Vec<String>,
    encoding: String,
    split_tables: bool,
    /// Whether the database has large objects to dump.
    has_large_objects: bool,
    options: DumpOptions,
    mask: Option<Arc<crate::mask::PgMask>>,
}

/// A PostgreSQL dump in a backup's report.
#[derive(Debug, Clone, Serialize)]
pub struct PgDumpSummary {
    pub database: String,
    pub tables: usize,
    pub rows: u64,
    /// Uncompressed COPY text bytes.
    pub raw_bytes: u64,
    pub chunks: usize,
    /// Large objects (their data chunks are not counted in `chunks`).
    pub large_objects: usize,
    pub server_version: String,
    pub snapshot: Option<String>,
}

impl PgDumpSummary {
    /// From the dump's datasets: its tables (the large objects' dataset counts apart).
    pub fn new(source: &Source, datasets: &[Dataset], meta: &PgArchiveMeta) -> PgDumpSummary {
        let datasets: Vec<&Dataset> = datasets.iter().filter(|d| d.is_table()).collect();
        PgDumpSummary {
            database: source.database.clone(),
            tables: datasets.len(),
            rows: datasets.iter().map(|d| d.rows).sum(),
            raw_bytes: datasets.iter().map(|d| d.raw_bytes).sum(),
            chunks: datasets.iter().map(|d| d.chunks.len()).sum(),
            large_objects: meta.large_objects.as_ref().map_or(0, |l| l.objects.len()),
            server_version: source.server_version.clone(),
            snapshot: source.snapshot.clone(),
        }
    }
}

/// What a finished dump contributes to the manifest.
#[derive(Debug)]
pub struct PgDumpOutput {
    pub datasets: Vec<Dataset>,
    pub meta: PgArchiveMeta,
}

impl PgDump {
    /// Opens the snapshot and checks everything that can be checked before writing anything.
    pub async fn begin(target: &PgTarget, options: DumpOptions) -> Result<PgDump> {
        let filter = Selection::new(&options.include, &options.exclude)?;
        let leader = target.connect().await?;
        let major = inspect::server_major(&leader).await?;
        let pg_dump = tools::find_tool("pg_dump", major).await?;
        leader
            .batch_execute(
                "SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0;
                 BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            )
            .await
            .map_err(|e| db_error("starting the snapshot transaction", &e))?;
        let snapshot: String = leader
            .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
            .await
            .map_err(|e| db_error("exporting the snapshot", &e))?
            .get(0);

        let has_large_objects = inspect::large_object_count(&leader).await? > 0;
        let (tables, excluded): (Vec<_>, Vec<_>) = inspect::list_tables(&leader)
            .await?
            .into_iter()
            .partition(|t| filter.selects(&t.schema, &t.name));
        lock_tables(&leader, &tables).await?;
        // Rules are checked against the snapshot's catalog before anything is written.
        let mask = match &options.mask {
            Some(rules) => Some(Arc::new(
                crate::postgres::mask_schema::plan_live(&leader, &tables, rules).await?,
            )),
            None => None,
        };

        let source = Source {
            engine: Engine::Postgres,
            url: target.url().redacted(),
            database: target.dbname(),
            server_version: server_version(&leader).await?,
            system_identifier: inspect::system_identifier(&leader).await,
            snapshot: Some(snapshot.clone()),
            consistency: "one exported snapshot (REPEATABLE READ, READ ONLY) shared by pg_dump \
                          and every COPY worker"
                .into(),
        };
        let encoding = inspect::database_encoding(&leader).await?;
        Ok(PgDump {
            target: target.clone(),
            leader,
            snapshot,
            source,
            pg_dump,
            excluded: excluded.iter().map(TableInfo::qualified).collect(),
            tables,
            encoding,
            split_tables: major >= TID_RANGE_SCAN_MAJOR,
            has_large_objects,
            options,
            mask,
        })
    }

    /// The source as the archive header records it.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The masks `--mask` applies (their counts grow while the dump runs).
    pub fn mask(&self) -> Option<Arc<crate::mask::PgMask>> {
        self.mask.clone()
    }

    /// The tables whose rows will be dumped.
    pub fn tables(&self) -> &[TableInfo] {
        &self.tables
    }

    /// The planner's estimate of the rows the dump will read, for progress; `None` when a
    /// table was never analyzed.
    pub fn estimated_rows(&self) -> Option<u64> {
        self.tables.iter().map(|t| t.estimated_rows).sum()
    }

    /// Dumps schema and data, sending every member to `sender`.
    pub async fn run(self, sender: MemberSender) -> Result<PgDumpOutput> {
        let pre = tools::pg_dump_schema(
            &self.pg_dump,
            &self.target,
            &self.snapshot,
            Section::PreData,
        );
        let post = tools::pg_dump_schema(
            &self.pg_dump,
            &self.target,
            &self.snapshot,
            Section::PostData,
        );
        // The schema dumps (pg_dump takes a few hundred milliseconds to start and read the
        // catalog) run alongside the data COPY instead of before it; readers find members by
        // name, so pre-data may land between data chunks.
        let schema = async {
            let (pre, post) = tokio::try_join!(pre, post)?;
            sender.send(Member::new(PRE_DATA_MEMBER, pre)).await?;
            Ok::<_, Error>(post)
        };
        let tables = Arc::new(self.tables);
        let data = copy_all_tables(
            &self.target,
            &self.snapshot,
            tables.clone(),
            &self.options,
            self.split_tables,
            self.mask.clone(),
            &sender,
        );
        let (target, snapshot, options) = (&self.target, &self.snapshot, &self.options);
        let has_large_objects = self.has_large_objects;
        let blobs = async {
            if !has_large_objects {
                return Ok(None);
            }
            let client = snapshot_connection(target, snapshot).await?;
            let dumped = large_objects::dump(
                &client,
                tables.len(),
                &options.encoding,
                options.chunk_bytes,
                &sender,
            )
            .await?;
            end_snapshot_connection(&client).await?;
            Ok::<_, Error>(Some(dumped))
        };
        let (post, results, blobs) = tokio::try_join!(schema, data, blobs)?;
        sender.send(Member::new(POST_DATA_MEMBER, post)).await?;

        let sequences = inspect::sequence_values(&self.leader).await?;
        let materialized_views = inspect::populated_matviews(&self.leader).await?;
        // Last on the leader: the pinned search path lasts until the COMMIT below.
        self.leader
            .batch_execute(fingerprint::PIN_SEARCH_PATH)
            .await
            .map_err(|e| db_error("describing the schema", &e))?;
        let schema = fingerprint::describe(&self.leader).await?;
        self.leader
            .batch_execute("COMMIT")
            .await
            .map_err(|e| db_error("ending the snapshot transaction", &e))?;

        let mut datasets: Vec<Dataset> = tables
            .iter()
            .zip(results)
            .map(|(table, acc)| acc.into_dataset(table))
            .collect();
        let (blob_data, large_objects) = blobs.unzip();
        datasets.extend(blob_data);
        Ok(PgDumpOutput {
            datasets,
            meta: PgArchiveMeta {
                pre_data_member: PRE_DATA_MEMBER.into(),
                post_data_member: POST_DATA_MEMBER.into(),
                pg_dump_version: self.pg_dump.version.clone(),
                encoding: self.encoding,
                sequences,
                materialized_views,
                excluded_tables: self.excluded,
                schema: Some(schema.fingerprint()),
                indexes: Some(schema.indexes),
                large_objects,
            },
        })
    }
}

async fn lock_tables(leader: &Client, tables: &[TableInfo]) -> Result<()> {
    for batch in tables.chunks(500) {
        let list: Vec<String> = batch.iter().map(TableInfo::quoted).collect();
        leader
            .batch_execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                list.join(", ")
            ))
            .await
            .map_err(|e| db_error("locking the tables to dump", &e))?;
    }
    Ok(())
}

/// A slice of one table for one COPY: the whole table, or a range of heap pages.
#[derive(Debug, Clone, Copy)]
struct Part {
    table: usize,
    /// First page, and the page after the last (`None`: to the end of the table).
    pages: Option<(i64, Option<i64>)>,
    estimated_bytes: i64,
}

fn plan_parts(tables: &[TableInfo], jobs: usize, split_bytes: Option<i64>) -> VecDeque<Part> {
    let mut parts = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let pieces = match split_bytes {
            Some(split) if jobs > 1 && table.pages > 0 => {
                (table.bytes / split.max(1)).clamp(1, 256)
            }
            _ => 1,
        };
        if pieces == 1 {
            parts.push(Part {
                table: index,
                pages: None,
                estimated_bytes: table.bytes,
            });
            continue;
        }
        let step = (table.pages + pieces - 1) / pieces;
        for k in 0..pieces {
            let start = k * step;
            let end = (k + 1 < pieces).then_some((k + 1) * step);
            parts.push(Part {
                table: index,
                pages: Some((start, end)),
                estimated_bytes: table.bytes / pieces,
            });
        }
    }
    // Biggest first, so the last part to finish is a small one.
    parts.sort_by_key(|p| std::cmp::Reverse(p.estimated_bytes));
    parts.into()
}

/// What the workers found for one table.
#[derive(Debug, Default)]
struct TableAcc {
    chunks: Vec<ChunkEntry>,
    digest: ContentDigest,
    raw_bytes: u64,
    /// Next chunk number, shared by the parts of the table.
    next_chunk: usize,
}

impl TableAcc {
    fn into_dataset(mut self, table: &TableInfo) -> Dataset {
        self.chunks.sort_by(|a, b| a.member.cmp(&b.member));
        Dataset {
            engine: Engine::Postgres,
            namespace: table.schema.clone(),
            name: table.name.clone(),
            format: RecordFormat::CopyText,
            rows: self.digest.count(),
            raw_bytes: self.raw_bytes,
            digest: self.digest.to_hex(),
            chunks: self.chunks,
            extra: serde_json::to_value(PgDatasetExtra {
                columns: table.columns.clone(),
            })
            .expect("column lists serialize"),
        }
    }
}

/// Shared state of the copy workers.
struct CopyJob {
    tables: Arc<Vec<TableInfo>>,
    queue: Mutex<VecDeque<Part>>,
    results: Mutex<Vec<TableAcc>>,
    sender: MemberSender,
    encoding: Encoding,
    chunk_bytes: usize,
    mask: Option<Arc<crate::mask::PgMask>>,
}

async fn copy_all_tables(
    target: &PgTarget,
    snapshot: &str,
    tables: Arc<Vec<TableInfo>>,
    options: &DumpOptions,
    split: bool,
    mask: Option<Arc<crate::mask::PgMask>>,
    sender: &MemberSender,
) -> Result<Vec<TableAcc>> {
    let jobs = options.jobs.max(1);
    let split_bytes = split.then(|| options.chunk_bytes as i64 * SPLIT_CHUNKS);
    let queue = plan_parts(&tables, jobs, split_bytes);
    let workers = jobs.min(queue.len()).max(1);
    let job = Arc::new(CopyJob {
        results: Mutex::new((0..tables.len()).map(|_| TableAcc::default()).collect()),
        tables,
        queue: Mutex::new(queue),
        sender: sender.clone(),
        encoding: options.encoding.clone(),
        chunk_bytes: options.chunk_bytes,
        mask,
    });
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let job = job.clone();
        let target = target.clone();
        let snapshot = snapshot.to_string();
        handles.push(tokio::spawn(async move {
            copy_worker(&target, &snapshot, &job).await
        }));
    }
    // The first error wins; the other workers are aborted (their connections close).
    let result = futures::future::try_join_all(handles.iter_mut().map(|h| async move {
        h.await.map_err(|e| {
            Error::io(
                "COPY worker",
                std::io::Error::other(format!("worker task failed: {e}")),
            )
        })?
    }))
    .await;
    if result.is_err() {
        handles.iter().for_each(JoinHandle::abort);
    }
    result?;
    let job = Arc::into_inner(job).expect("every worker has finished");
    Ok(job.results.into_inner().expect("no worker panicked"))
}

/// A new connection inside the leader's exported snapshot (REPEATABLE READ, READ ONLY).
async fn snapshot_connection(target: &PgTarget, snapshot: &str) -> Result<Client> {
    let client = target.connect().await?;
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0;
             SET row_security = off;
             BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
             SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        ))
        .await
        .map_err(|e| db_error("importing the snapshot in a dump worker", &e))?;
    Ok(client)
}

async fn end_snapshot_connection(client: &Client) -> Result<()> {
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| db_error("ending a dump worker's transaction", &e))
}

async fn copy_worker(target: &PgTarget, snapshot: &str, job: &CopyJob) -> Result<()> {
    let client = snapshot_connection(target, snapshot).await?;
    loop {
        let part = job.queue.lock().unwrap().pop_front();
        let Some(part) = part else { break };
        copy_part(&client, job, part).await?;
    }
    end_snapshot_connection(&client).await
}

fn copy_statement(table: &TableInfo, pages: Option<(i64, Option<i64>)>) -> String {
    let columns = table
        .columns
        .iter()
        .map(|c| inspect::quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    match pages {
        None if !table.columns.is_empty() => {
            format!(
                "COPY {} {} TO STDOUT",
                table.quoted(),
                table.quoted_columns()
            )
        }
        None => format!("COPY (SELECT FROM ONLY {}) TO STDOUT", table.quoted()),
        Some((start, end)) => {
            let mut filter = format!("ctid >= '({start},0)'::tid");
            if let Some(end) = end {
                filter.push_str(&format!(" AND ctid < '({end},0)'::tid"));
            }
            format!(
                "COPY (SELECT {columns} FROM ONLY {} WHERE {filter}) TO STDOUT",
                table.quoted()
            )
        }
    }
}

/// Streams one part through COPY, cutting it into chunks on row boundaries. While one chunk is
/// compressed on a blocking thread, the next is being filled.
async fn copy_part(client: &Client, job: &CopyJob, part: Part) -> Result<()> {
    let table = &job.tables[part.table];
    let statement = copy_statement(table, part.pages);
    let what = format!("COPY of table {}", table.qualified());
    crate::progress::item(&format!("table {}", table.qualified()));
    let mut rows = 0u64;
    let stream = client
        .copy_out(&statement)
        .await
        .map_err(|e| db_error(&what, &e))?;
    futures::pin_mut!(stream);
    let mut builder = ChunkBuilder::new(RecordFormat::CopyText, job.chunk_bytes);
    let mut carry: Vec<u8> = Vec::new();
    let mut ahead = EncodeAhead::default();
    while let Some(message) = stream.next().await {
        let message = message.map_err(|e| db_error(&what, &e))?;
        let mut data: &[u8] = &message;
        if !carry.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(p) => {
                    carry.extend_from_slice(&data[..=p]);
                    builder.push_record(&carry);
                    rows += 1;
                    carry.clear();
                    data = &data[p + 1..];
                }
                None => {
                    carry.extend_from_slice(data);
                    continue;
                }
            }
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            builder.push_record(&data[start..=end]);
            rows += 1;
            start = end + 1;
            if builder.is_full() {
                cut_chunk(job, part.table, &mut builder, &mut ahead).await?;
            }
        }
        carry.extend_from_slice(&data[start..]);
        if builder.is_full() {
            cut_chunk(job, part.table, &mut builder, &mut ahead).await?;
        }
    }
    if !carry.is_empty() {
        return Err(Error::db(
            Engine::Postgres,
            format!("{what}: the output ended in the middle of a row"),
        ));
    }
    cut_chunk(job, part.table, &mut builder, &mut ahead).await?;
    if let Some(last) = ahead.finished().await? {
        deliver(job, part.table, last).await?;
    }
    let name = match part.pages {
        None => format!("table {}", table.qualified()),
        Some((start, _)) => format!("table {} (from page {start})", table.qualified()),
    };
    crate::progress::item_done("dumped", &name, rows);
    Ok(())
}

/// Starts compressing the builder's chunk (if any) after delivering the previous one.
async fn cut_chunk(
    job: &CopyJob,
    table: usize,
    builder: &mut ChunkBuilder,
    ahead: &mut EncodeAhead,
) -> Result<()> {
    let Some(raw) = builder.take() else {
        return Ok(());
    };
    if let Some(previous) = ahead.finished().await? {
        deliver(job, table, previous).await?;
    }
    let name = {
        let mut results = job.results.lock().unwrap();
        let acc = &mut results[table];
        let index = acc.next_chunk;
        acc.next_chunk += 1;
        chunk_member_name(
            ENGINE_KEY,
            table,
            &job.tables[table].qualified(),
            index,
            RecordFormat::CopyText,
            job.encoding.compression.codec,
        )
    };
    let encoding = job.encoding.clone();
    let info = &job.tables[table];
    let mask = job
        .mask
        .as_ref()
        .and_then(|m| m.table(&info.schema, &info.name))
        .cloned();
    ahead.start(move || {
        let raw = match mask {
            Some(mask) => {
                crate::mask::mask_raw_chunk(crate::mask::ChunkMask::Table(&mask), raw, &name)?
            }
            None => raw,
        };
        raw.encode(name, &encoding)
    });
    Ok(())
}

/// Records a compressed chunk and sends it to the writer.
async fn deliver(job: &CopyJob, table: usize, chunk: CompressedChunk) -> Result<()> {
    {
        let mut results = job.results.lock().unwrap();
        let acc = &mut results[table];
        acc.digest.merge(&chunk.digest);
        acc.raw_bytes += chunk.raw_bytes;
        acc.chunks.push(chunk.entry());
    }
    job.sender.send(chunk.member).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str, bytes: i64) -> TableInfo {
        TableInfo {
            schema: schema.into(),
            name: name.into(),
            columns: vec!["id".into()],
            bytes,
            pages: bytes / 8192,
            estimated_rows: None,
        }
    }

    #[test]
    fn filter_matches_qualified_and_bare_names() {
        let selects = |f: &Selection, t: TableInfo| f.selects(&t.schema, &t.name);
        let f = Selection::new(&["public.*".into()], &["*_log".into()]).unwrap();
        assert!(selects(&f, table("public", "users", 0)));
        assert!(!selects(&f, table("public", "audit_log", 0)));
        assert!(!selects(&f, table("other", "users", 0)));
        let all = Selection::new(&[], &[]).unwrap();
        assert!(selects(&all, table("x", "y", 0)));
        assert!(Selection::new(&["[".into()], &[]).is_err());
    }

    #[test]
    fn big_tables_are_split_into_page_ranges_covering_everything() {
        let tables = vec![table("s", "big", 200 << 20), table("s", "small", 8192)];
        let parts = plan_parts(&tables, 2, Some(64 << 20));
        let big: Vec<_> = parts.iter().filter(|p| p.table == 0).collect();
        assert_eq!(big.len(), 3);
        let mut ranges: Vec<_> = big.iter().map(|p| p.pages.unwrap()).collect();
        ranges.sort();
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges[0].1, Some(ranges[1].0));
        assert_eq!(ranges[1].1, Some(ranges[2].0));
        assert_eq!(ranges[2].1, None, "the last range is open-ended");
        assert_eq!(plan_parts(&tables, 1, Some(64 << 20)).len(), 2);
        assert_eq!(plan_parts(&tables, 2, None).len(), 2);
    }

    #[test]
    fn copy_statements_quote_everything() {
        let mut t = table("we\"ird", "Tab le", 0);
        t.columns = vec!["a\"b".into(), "c".into()];
        assert_eq!(
            copy_statement(&t, None),
            r#"COPY "we""ird"."Tab le" ("a""b", "c") TO STDOUT"#
        );
        assert!(copy_statement(&t, Some((10, None)))
            .ends_with("WHERE ctid >= '(10,0)'::tid) TO STDOUT"));
        t.columns.clear();
        assert_eq!(
            copy_statement(&t, None),
            r#"COPY (SELECT FROM ONLY "we""ird"."Tab le") TO STDOUT"#
        );
    }
}
