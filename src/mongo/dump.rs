//! Dumping one MongoDB database into an archive.
//!
//! Two steps, because the archive's `HEADER.json` (written first) records every engine's source
//! and point in time before any data is read:
//!
//! 1. [`prepare`] connects, lists the collections and views (after `--include`/`--exclude`),
//!    reads their definitions, and fixes the point in time: it opens a snapshot session, whose
//!    first read makes the server choose a cluster time. If the server refuses snapshot reads
//!    (a standalone server, an old version), collections are read one after another instead, and
//!    the source says so. [`PreparedDump::source`] is what goes into the header.
//! 2. [`PreparedDump::run`] writes every definition as a `mongo/meta/...metadata.json` member,
//!    then reads collections on `jobs` worker tasks. Each worker streams one collection's
//!    documents, exactly as the server returns them (raw BSON, never decoded), into bounded
//!    chunks, compresses a full chunk on the blocking pool while it reads the next, and sends it
//!    to this task through a bounded channel, which records it and passes it on to the archive's
//!    one writer thread, so memory stays at a few chunks per worker whatever the collection size. With a snapshot, every worker's session reads at the
//!    same cluster time.
//!
//! The manifest's counts are the documents written, counted as they are written.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, RawDocumentBuf, Timestamp};
use mongodb::options::FindOptions;
use mongodb::{Client, ClientSession};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::connect::{server_version, short_error};
use super::inspect::{db_error, index_specs, list_collections};
use super::manifest::{ClusterTime, CollectionEntry, Consistency, MongoManifest};
use super::metadata::{self, CollectionKind, CollectionMetadata};
use super::namespace::NamespaceFilter;
use super::MongoTarget;
use crate::archive::chunk::{ChunkBuilder, CompressedChunk, Encoding};
use crate::archive::digest::ContentDigest;
use crate::archive::pipeline::{EncodeAhead, MemberSender};
use crate::archive::writer::Member;
use crate::archive::{chunk_member_name, Dataset, RecordFormat, Source};
use crate::error::{Engine, Error, Result};

/// How to dump: the options every engine's dump takes.
pub use crate::engine::DumpOptions;

/// A dump whose collections and point in time are fixed, ready to run.
pub struct PreparedDump {
    client: Client,
    database: String,
    source: Source,
    /// Collections and views, by name.
    definitions: Vec<CollectionMetadata>,
    snapshot: Option<Timestamp>,
    snapshot_unavailable: Option<String>,
    options: DumpOptions,
    mask: Option<Arc<crate::mask::MongoMask>>,
}

/// Bytes the server may put in one cursor batch. Without a limit it fills 16 MiB per batch,
/// which the driver holds while the worker copies documents into its chunk. Smaller batches
/// also keep the server's and the worker's work overlapping: bench/mongo.sh (400,000
/// documents, medians of 5 alternating runs) measured backup / cursor drain 1.58x at 8 MiB
/// (124 MiB peak RSS), 1.34x at 2 MiB, 1.25x at 1 MiB and 1.10x at 512 KiB (52 MiB).
const CURSOR_BATCH_BYTES: u64 = 512 << 10;

/// Documents read to size a collection's cursor batches.
const SAMPLE_DOCUMENTS: i64 = 16;

/// Documents per batch so that a batch of documents of `average_bytes` is about
/// [`CURSOR_BATCH_BYTES`].
fn batch_size_for(average_bytes: u64) -> u32 {
    let documents = CURSOR_BATCH_BYTES / average_bytes.max(1);
    documents.clamp(1, u32::MAX as u64) as u32
}

/// What one collection's dump produced.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionSummary {
    pub name: String,
    pub documents: u64,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub chunks: usize,
    pub indexes: usize,
}

/// What the dump did, for the command's report.
#[derive(Debug, Clone, Serialize)]
pub struct DumpSummary {
    pub database: String,
    pub consistency: Consistency,
    pub cluster_time: Option<String>,
    pub collections: Vec<CollectionSummary>,
    pub views: Vec<String>,
    pub documents: u64,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    #[serde(serialize_with = "serialize_secs")]
    pub elapsed: Duration,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A finished dump: what goes into the manifest, and the summary.
#[derive(Debug, Clone)]
pub struct MongoDump {
    pub source: Source,
    pub datasets: Vec<Dataset>,
    pub manifest: MongoManifest,
    pub summary: DumpSummary,
}

/// Connects, selects collections, reads their definitions and fixes the point in time.
pub async fn prepare(target: &MongoTarget, options: &DumpOptions) -> Result<PreparedDump> {
    if options.jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let filter = NamespaceFilter::new(&options.include, &options.exclude)?;
    let client = target.connect().await?;
    let database = target.db_name().to_string();
    let db = client.database(&database);
    let mut definitions = Vec::new();
    for info in list_collections(&db).await? {
        let name = info.get_str("name").unwrap_or_default();
        if !filter.selects(&database, name) {
            continue;
        }
        let is_view = info.get_str("type") == Ok(CollectionKind::View.as_str());
        let indexes = if is_view {
            Vec::new()
        } else {
            index_specs(&db, name).await?
        };
        let definition = CollectionMetadata::from_list_collections(&info, indexes)
            .map_err(|message| Error::Usage(format!("MongoDB {database}: {message}")))?;
        definitions.push(definition);
    }

    // Rules are checked against the collections before anything is written.
    let mask = match &options.mask {
        Some(rules) => Some(Arc::new(plan_mask(&db, &definitions, rules).await?)),
        None => None,
    };

    let first_collection = definitions
        .iter()
        .find(|d| d.kind == CollectionKind::Collection)
        .map(|d| d.name.clone());
    let (snapshot, snapshot_unavailable) = match first_collection {
        _ if !options.snapshot_reads => (None, Some("snapshot reads were turned off".to_string())),
        None => (
            None,
            Some("the dump has no collections to read".to_string()),
        ),
        Some(name) => match start_snapshot(&client, &database, &name).await {
            Ok(time) => (Some(time), None),
            Err(reason) => (None, Some(reason)),
        },
    };
    let consistency = match snapshot {
        Some(time) => format!(
            "snapshot read concern: every collection read at cluster time {}",
            cluster_time(time)
        ),
        None => format!(
            "collections read one after another, each at its own point in time ({})",
            snapshot_unavailable.as_deref().unwrap_or_default()
        ),
    };
    let source = Source {
        engine: Engine::Mongo,
        url: target.url().redacted(),
        database: database.clone(),
        server_version: server_version(&client).await?,
        system_identifier: None,
        snapshot: snapshot.map(|t| cluster_time(t).to_string()),
        consistency,
    };
    Ok(PreparedDump {
        client,
        database,
        source,
        definitions,
        snapshot,
        snapshot_unavailable,
        options: options.clone(),
        mask,
    })
}

/// Documents read per collection to learn its field paths for `--mask` (besides its
/// `$jsonSchema`).
const MASK_SAMPLE_DOCUMENTS: i64 = 1000;

async fn plan_mask(
    db: &mongodb::Database,
    definitions: &[CollectionMetadata],
    rules: &crate::mask::Rules,
) -> Result<crate::mask::MongoMask> {
    let mut shapes = Vec::new();
    for definition in definitions
        .iter()
        .filter(|d| d.kind == CollectionKind::Collection)
    {
        let mut shape = crate::mask::plan::MongoCollectionShape {
            name: definition.name.clone(),
            bookkeeping: crate::mongo::mask_schema::is_bookkeeping(&definition.name),
            ..Default::default()
        };
        if let Some(validator) = definition.validator() {
            crate::mask::document::add_schema_paths(
                validator,
                &mut shape.known_paths,
                &mut shape.required_paths,
            );
        }
        let context = || format!("sampling {}.{} for --mask", db.name(), definition.name);
        let mut cursor = db
            .collection::<RawDocumentBuf>(&definition.name)
            .find(doc! {})
            .limit(MASK_SAMPLE_DOCUMENTS)
            .await
            .map_err(|e| db_error(context(), &e))?;
        while cursor
            .advance()
            .await
            .map_err(|e| db_error(context(), &e))?
        {
            crate::mask::document::add_document_paths(cursor.current(), "", &mut shape.known_paths);
        }
        shapes.push(shape);
    }
    crate::mask::plan::plan_mongo(rules, &shapes)
}

/// Opens a snapshot session and reads one document so the server picks the cluster time all
/// workers then read at. Any refusal means snapshot reads are unavailable; the reason is kept
/// for the manifest.
async fn start_snapshot(
    client: &Client,
    database: &str,
    collection: &str,
) -> std::result::Result<Timestamp, String> {
    let mut session = client
        .start_session()
        .snapshot(true)
        .await
        .map_err(|e| short_error(&e))?;
    let coll = client
        .database(database)
        .collection::<RawDocumentBuf>(collection);
    let mut cursor = coll
        .find(doc! {})
        .limit(1)
        .session(&mut session)
        .await
        .map_err(|e| short_error(&e))?;
    while cursor
        .advance(&mut session)
        .await
        .map_err(|e| short_error(&e))?
    {}
    drop(cursor);
    session
        .snapshot_time()
        .ok_or_else(|| "the server answered a snapshot read without a cluster time".to_string())
}

fn cluster_time(t: Timestamp) -> ClusterTime {
    ClusterTime {
        t: t.time,
        i: t.increment,
    }
}

impl PreparedDump {
    /// The source to record in `HEADER.json`.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The masks `--mask` applies (their counts grow while the dump runs).
    pub fn mask(&self) -> Option<Arc<crate::mask::MongoMask>> {
        self.mask.clone()
    }

    /// The collections and views that will be dumped, by name.
    pub fn definitions(&self) -> &[CollectionMetadata] {
        &self.definitions
    }

    /// The collections' metadata document counts (`count` without a filter), for progress
    /// only; `None` when the server cannot say. O(1) on MongoDB, but some MongoDB-wire servers
    /// scan, so the CLI asks only when it shows progress.
    pub async fn estimated_documents(&self) -> Option<u64> {
        let db = self.client.database(&self.database);
        let mut total = 0;
        for definition in &self.definitions {
            if definition.kind == CollectionKind::Collection {
                total += db
                    .collection::<RawDocumentBuf>(&definition.name)
                    .estimated_document_count()
                    .await
                    .ok()?;
            }
        }
        Some(total)
    }

    /// Writes the definitions and every collection's documents to `writer`. Returns what the
    /// manifest needs; nothing is recorded in it here (`engine::run_dumps` does that).
    ///
    /// Member names are `mongo/meta/<i>-<name>.metadata.json` and
    /// `mongo/data/<i>-<db.coll>/<chunk>.bson.gz`, `<i>` being the collection's position in this
    /// dump (the `mongo/` prefix keeps them apart from other engines' members).
    pub async fn run(self, sender: MemberSender) -> Result<MongoDump> {
        let started = Instant::now();
        let mut entries = Vec::with_capacity(self.definitions.len());
        for (index, definition) in self.definitions.iter().enumerate() {
            let member = metadata::member_name(index, &definition.name);
            sender
                .send(Member::new(member.clone(), definition.to_json()))
                .await?;
            entries.push(CollectionEntry {
                name: definition.name.clone(),
                kind: definition.kind,
                metadata_member: member,
            });
        }

        let mut datasets: Vec<Dataset> = Vec::new();
        let mut jobs = VecDeque::new();
        for (index, definition) in self.definitions.iter().enumerate() {
            if definition.kind != CollectionKind::Collection {
                continue;
            }
            jobs.push_back(CollectionJob {
                dataset: datasets.len(),
                member_index: index,
                name: definition.name.clone(),
            });
            datasets.push(Dataset {
                engine: Engine::Mongo,
                namespace: self.database.clone(),
                name: definition.name.clone(),
                format: RecordFormat::Bson,
                rows: 0,
                raw_bytes: 0,
                digest: ContentDigest::new().to_hex(),
                chunks: Vec::new(),
                extra: serde_json::json!({ "metadata_member": entries[index].metadata_member }),
            });
        }
        let digests = self.read_collections(jobs, &sender, &mut datasets);
        let digests = digests.await?;
        for (dataset, digest) in datasets.iter_mut().zip(digests) {
            dataset.digest = digest.to_hex();
        }

        let summary = self.summary(&datasets, started.elapsed());
        Ok(MongoDump {
            source: self.source,
            datasets,
            manifest: MongoManifest {
                database: self.database,
                consistency: summary.consistency,
                cluster_time: self.snapshot.map(cluster_time),
                snapshot_unavailable: self.snapshot_unavailable,
                collections: entries,
            },
            summary,
        })
    }

    /// Runs the workers and sends their chunks to the archive writer as they arrive, filling in each
    /// dataset's chunks and totals. Returns each dataset's content digest. The first error stops
    /// everything (dropping the join set aborts the other workers).
    async fn read_collections(
        &self,
        jobs: VecDeque<CollectionJob>,
        sender: &MemberSender,
        datasets: &mut [Dataset],
    ) -> Result<Vec<ContentDigest>> {
        let mut digests = vec![ContentDigest::new(); datasets.len()];
        let workers = self.options.jobs.min(jobs.len()).max(1);
        let jobs = Arc::new(Mutex::new(jobs));
        // Two compressed chunks per worker in flight bound memory; more would not speed anything
        // up, the writer is never the slow part.
        let (tx, mut rx) = mpsc::channel(workers * 2);
        let mut set = JoinSet::new();
        for _ in 0..workers {
            let worker = Worker {
                client: self.client.clone(),
                database: self.database.clone(),
                snapshot: self.snapshot,
                chunk_bytes: self.options.chunk_bytes,
                encoding: self.options.encoding.clone(),
                mask: self.mask.clone(),
                tx: tx.clone(),
            };
            set.spawn(worker.run(Arc::clone(&jobs)));
        }
        drop(tx);
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(DumpedChunk { dataset, chunk }) => {
                        let d = &mut datasets[dataset];
                        let entry = chunk.entry();
                        sender.send(chunk.member).await?;
                        d.rows += chunk.rows;
                        d.raw_bytes += chunk.raw_bytes;
                        digests[dataset].merge(&chunk.digest);
                        d.chunks.push(entry);
                    }
                    None => break,
                },
                Some(joined) = set.join_next() => {
                    joined.map_err(worker_panicked)??;
                }
            }
        }
        while let Some(joined) = set.join_next().await {
            joined.map_err(worker_panicked)??;
        }
        Ok(digests)
    }

    fn summary(&self, datasets: &[Dataset], elapsed: Duration) -> DumpSummary {
        let collections: Vec<CollectionSummary> = datasets
            .iter()
            .map(|d| CollectionSummary {
                name: d.name.clone(),
                documents: d.rows,
                raw_bytes: d.raw_bytes,
                compressed_bytes: d.chunks.iter().map(|c| c.size).sum(),
                chunks: d.chunks.len(),
                indexes: self
                    .definitions
                    .iter()
                    .find(|m| m.name == d.name)
                    .map_or(0, |m| m.indexes.len()),
            })
            .collect();
        DumpSummary {
            database: self.database.clone(),
            consistency: if self.snapshot.is_some() {
                Consistency::Snapshot
            } else {
                Consistency::Sequential
            },
            cluster_time: self.snapshot.map(|t| cluster_time(t).to_string()),
            documents: collections.iter().map(|c| c.documents).sum(),
            raw_bytes: collections.iter().map(|c| c.raw_bytes).sum(),
            compressed_bytes: collections.iter().map(|c| c.compressed_bytes).sum(),
            views: self
                .definitions
                .iter()
                .filter(|d| d.kind == CollectionKind::View)
                .map(|d| d.name.clone())
                .collect(),
            collections,
            elapsed,
        }
    }
}

fn worker_panicked(e: tokio::task::JoinError) -> Error {
    Error::db(Engine::Mongo, format!("a dump worker failed: {e}"))
}

struct CollectionJob {
    /// Position among the dump's datasets.
    dataset: usize,
    /// Position among the dump's collections and views (names the members).
    member_index: usize,
    name: String,
}

/// Find options whose batches hold about [`CURSOR_BATCH_BYTES`], sized from the first few
/// documents (one short round trip; a sizing hint only, so it need not be in the snapshot).
async fn sized_batches(
    coll: &mongodb::Collection<RawDocumentBuf>,
) -> mongodb::error::Result<FindOptions> {
    let mut sample = coll.find(doc! {}).limit(SAMPLE_DOCUMENTS).await?;
    let (mut documents, mut bytes) = (0u64, 0u64);
    while sample.advance().await? {
        documents += 1;
        bytes += sample.current().as_bytes().len() as u64;
    }
    let mut options = FindOptions::default();
    options.batch_size = bytes.checked_div(documents).map(batch_size_for);
    Ok(options)
}

/// A compressed chunk of one dataset, from a worker to the archive writer.
struct DumpedChunk {
    dataset: usize,
    chunk: CompressedChunk,
}

struct Worker {
    client: Client,
    database: String,
    snapshot: Option<Timestamp>,
    chunk_bytes: usize,
    encoding: Encoding,
    mask: Option<Arc<crate::mask::MongoMask>>,
    tx: mpsc::Sender<DumpedChunk>,
}

impl Worker {
    /// Takes collections from the shared queue until it is empty.
    async fn run(self, jobs: Arc<Mutex<VecDeque<CollectionJob>>>) -> Result<()> {
        let mut session = match self.snapshot {
            Some(time) => Some(
                self.client
                    .start_session()
                    .snapshot(true)
                    .snapshot_time(time)
                    .await
                    .map_err(|e| db_error("starting a snapshot session", &e))?,
            ),
            None => None,
        };
        loop {
            let Some(job) = jobs.lock().expect("job queue").pop_front() else {
                return Ok(());
            };
            self.dump_collection(&job, session.as_mut()).await?;
        }
    }

    async fn dump_collection(
        &self,
        job: &CollectionJob,
        session: Option<&mut ClientSession>,
    ) -> Result<()> {
        let qualified = format!("{}.{}", self.database, job.name);
        crate::progress::item(&format!("collection {qualified}"));
        let context = || format!("reading {qualified}");
        let mut chunks = ChunkPipeline {
            worker: self,
            job,
            qualified: qualified.clone(),
            builder: ChunkBuilder::new(RecordFormat::Bson, self.chunk_bytes),
            next_chunk: 0,
            ahead: EncodeAhead::default(),
            documents: 0,
            read: 0,
            reported: 0,
            in_flight_reported: 0,
        };
        let coll = self
            .client
            .database(&self.database)
            .collection::<RawDocumentBuf>(&job.name);
        let find_options = sized_batches(&coll)
            .await
            .map_err(|e| db_error(context(), &e))?;
        match session {
            Some(session) => {
                let mut cursor = coll
                    .find(doc! {})
                    .with_options(find_options)
                    .session(&mut *session)
                    .await
                    .map_err(|e| snapshot_error(context(), &e))?;
                while cursor
                    .advance(session)
                    .await
                    .map_err(|e| snapshot_error(context(), &e))?
                {
                    chunks.push(cursor.current().as_bytes()).await?;
                }
            }
            None => {
                let mut cursor = coll
                    .find(doc! {})
                    .with_options(find_options)
                    .await
                    .map_err(|e| db_error(context(), &e))?;
                while cursor
                    .advance()
                    .await
                    .map_err(|e| db_error(context(), &e))?
                {
                    chunks.push(cursor.current().as_bytes()).await?;
                }
            }
        }
        let documents = chunks.documents;
        chunks.finish().await?;
        crate::progress::item_done("dumped", &format!("collection {qualified}"), documents);
        Ok(())
    }

    async fn send(&self, message: DumpedChunk) -> Result<()> {
        // The receiver only goes away when the dump already failed; that error is the one
        // reported, this one is never seen.
        self.tx
            .send(message)
            .await
            .map_err(|_| Error::db(Engine::Mongo, "the archive writer stopped"))
    }
}

/// A snapshot read can fail because the snapshot aged out of the server's history window while
/// other work ran; say what to do about it.
fn snapshot_error(context: String, e: &mongodb::error::Error) -> Error {
    let hint = match command_code(e) {
        Some(239 | 246) => {
            "; the snapshot is older than the server keeps history for \
             (minSnapshotHistoryWindowInSeconds): raise that setting or back up less at once"
        }
        _ => "",
    };
    Error::db(
        Engine::Mongo,
        format!("{context} at the dump's snapshot: {}{hint}", short_error(e)),
    )
}

/// The server's error code, if the error is a command error.
pub(crate) fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// One collection's documents on their way into chunks: fills a chunk, compresses it on the
/// blocking pool while the next fills, and sends it to the writer in order.
struct ChunkPipeline<'w> {
    worker: &'w Worker,
    job: &'w CollectionJob,
    qualified: String,
    builder: ChunkBuilder,
    next_chunk: usize,
    ahead: EncodeAhead,
    documents: u64,
    /// Documents in the chunk being filled, and how many of them progress has been told about
    /// (every [`READ_PROGRESS_EVERY`]); the chunk in flight's reported ones are taken back once
    /// its own progress report (made when it is compressed) has counted them.
    read: u64,
    reported: u64,
    in_flight_reported: u64,
}

/// Documents between progress reports while a chunk fills.
const READ_PROGRESS_EVERY: u64 = 1000;

impl ChunkPipeline<'_> {
    async fn push(&mut self, document: &[u8]) -> Result<()> {
        self.builder.push_record(document);
        self.documents += 1;
        self.read += 1;
        if self.read - self.reported >= READ_PROGRESS_EVERY {
            crate::progress::reading((self.read - self.reported) as i64);
            self.reported = self.read;
        }
        if self.builder.is_full() {
            self.cut().await?;
        }
        Ok(())
    }

    async fn cut(&mut self) -> Result<()> {
        let Some(raw) = self.builder.take() else {
            return Ok(());
        };
        self.send_in_flight().await?;
        self.in_flight_reported = std::mem::take(&mut self.reported);
        self.read = 0;
        let name = chunk_member_name(
            Engine::Mongo.as_str(),
            self.job.member_index,
            &self.qualified,
            self.next_chunk,
            RecordFormat::Bson,
            self.worker.encoding.compression.codec,
        );
        self.next_chunk += 1;
        let encoding = self.worker.encoding.clone();
        let mask = self
            .worker
            .mask
            .as_ref()
            .and_then(|m| m.collection(&self.job.name))
            .cloned();
        self.ahead.start(move || {
            let raw = match mask {
                Some(mask) => crate::mask::mask_raw_chunk(
                    crate::mask::ChunkMask::Collection(&mask),
                    raw,
                    &name,
                )?,
                None => raw,
            };
            raw.encode(name, &encoding)
        });
        Ok(())
    }

    async fn send_in_flight(&mut self) -> Result<()> {
        if let Some(chunk) = self.ahead.finished().await? {
            let reported = std::mem::take(&mut self.in_flight_reported);
            if reported > 0 {
                crate::progress::reading(-(reported as i64));
            }
            self.worker
                .send(DumpedChunk {
                    dataset: self.job.dataset,
                    chunk,
                })
                .await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<()> {
        self.cut().await?;
        self.send_in_flight().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_batches_hold_about_the_byte_budget() {
        assert_eq!(batch_size_for(512) as u64, CURSOR_BATCH_BYTES / 512);
        assert_eq!(batch_size_for(0) as u64, CURSOR_BATCH_BYTES);
        // Documents bigger than the budget still come one per batch.
        assert_eq!(batch_size_for(15 << 20), 1);
    }
}
