//! MongoDB backup and restore against their floors, on one server, phase by phase; each phase
//! runs in its own process so bench/mongo.sh can take its peak RSS with /usr/bin/time.
//!
//! - backup: `mongo::dump` (prepare + run into an archive file) vs a raw cursor drain of the
//!   same collections with the same parallelism (every document fetched, nothing kept);
//!   backup-encrypted: the same backup encrypted to a fresh age recipient (what encryption
//!   costs: its ratio to backup);
//! - restore: `mongo::restore` (V0 check + create + raw inserts + indexes) vs a raw unordered
//!   `insert_many` of the same documents, preloaded in memory (untimed), with the same 16 MiB
//!   batches, parallelism and secondary indexes (same end state).
//!
//! Usage: mongo_backup PHASE [--url URL] [--documents N] [--collections N] [--jobs N]
//!        [--archive PATH], PHASE one of generate, drain, backup, backup-encrypted, restore,
//!        insert, cleanup.
//! Each phase prints one `phase=... seconds=... documents=... bytes=...` line on stdout.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbkeeper::archive::chunk::Encoding;
use dbkeeper::archive::codec::{Codec, Compression};
use dbkeeper::archive::crypt::{RecipientKey, Sealer};
use dbkeeper::archive::reader::VerifiedArchive;
use dbkeeper::archive::Header;
use dbkeeper::engine::DumpReport;
use dbkeeper::mongo::dump::{self, DumpOptions};
use dbkeeper::mongo::restore::{self, RestoreOptions};
use dbkeeper::mongo::MongoTarget;
use dbkeeper::ops::backup;
use dbkeeper::redact::SecretUrl;
use mongodb::bson::{doc, oid::ObjectId, rawdoc, DateTime, Decimal128, Document, RawDocumentBuf};
use mongodb::{Client, Database};

struct Args {
    phase: String,
    url: String,
    documents: usize,
    collections: usize,
    jobs: usize,
    codec: Codec,
    compression_level: Option<i32>,
    archive: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        phase: String::new(),
        url: "mongodb://127.0.0.1:58018".into(),
        documents: 400_000,
        collections: 4,
        jobs: 2,
        codec: Codec::default(),
        compression_level: None,
        archive: PathBuf::from("target/bench-mongo.dbk.tar"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => args.url = value(),
            "--documents" => args.documents = value().parse().expect("--documents N"),
            "--collections" => args.collections = value().parse().expect("--collections N"),
            "--jobs" => args.jobs = value().parse().expect("--jobs N"),
            "--archive" => args.archive = PathBuf::from(value()),
            "--compression" => {
                args.codec = Codec::parse(&value()).expect("--compression zstd|gzip|none")
            }
            "--compression-level" => {
                args.compression_level = Some(value().parse().expect("--compression-level N"))
            }
            "--bench" => {} // passed by `cargo bench`
            phase if !phase.starts_with('-') && args.phase.is_empty() => {
                args.phase = phase.to_string()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// An order-like document of a few hundred bytes: nested customer, an array of line items,
/// dates, decimals, ObjectIds, strings of varying length. Deterministic in `i`.
const STATUSES: [&str; 5] = ["new", "paid", "shipped", "delivered", "cancelled"];
const CITIES: [&str; 4] = ["Lyon", "Oslo", "Lima", "Pune"];

fn order(i: usize) -> RawDocumentBuf {
    let mut items = mongodb::bson::RawArrayBuf::new();
    for line in 0..(1 + i % 5) {
        items.push(rawdoc! {
            "sku": format!("SKU-{:06}", (i * 7 + line * 13) % 100_000),
            "qty": ((i + line) % 9 + 1) as i32,
            "price": Decimal128::from_bytes(price_bytes((i * 31 + line) % 10_000)),
        });
    }
    let mut oid = [0u8; 12];
    oid[4..12].copy_from_slice(&(i as u64).to_be_bytes());
    rawdoc! {
        "_id": ObjectId::from_bytes(oid),
        "number": i as i64,
        "status": STATUSES[i % 5],
        "created": DateTime::from_millis(1_600_000_000_000 + (i as i64) * 37_000),
        "customer": {
            "name": format!("Customer {}", i % 50_000),
            "email": format!("customer{}@example.com", i % 50_000),
            "address": { "city": CITIES[i % 4], "zip": format!("{:05}", i % 99_999) },
        },
        "items": items,
        "note": "n".repeat(i % 200),
        "total": ((i % 10_000) as f64) / 7.0,
    }
}

/// A Decimal128 with coefficient `cents` and exponent -2, as raw IEEE 754-2008 BID bytes.
fn price_bytes(cents: usize) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(cents as u64).to_le_bytes());
    // Exponent bias 6176, exponent -2 -> 6174, stored in bits 49..63 of the high word.
    let high: u64 = 6174u64 << 49;
    bytes[8..].copy_from_slice(&high.to_le_bytes());
    bytes
}

fn collection_name(c: usize) -> String {
    format!("orders_{c}")
}

/// Secondary indexes of every generated collection (built by both restore paths).
fn index_specs() -> Vec<Document> {
    vec![
        doc! { "key": { "customer.email": 1 }, "name": "customer_email" },
        doc! { "key": { "status": 1, "created": -1 }, "name": "status_created" },
    ]
}

async fn generate(db: &Database, args: &Args) {
    db.drop().await.unwrap();
    let per_collection = args.documents / args.collections;
    for c in 0..args.collections {
        let coll = db.collection::<RawDocumentBuf>(&collection_name(c));
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..per_collection {
            batch.push(order(c * per_collection + i));
            if batch.len() == 10_000 {
                coll.insert_many(&batch).ordered(false).await.unwrap();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            coll.insert_many(&batch).ordered(false).await.unwrap();
        }
        db.run_command(doc! { "createIndexes": collection_name(c), "indexes": index_specs() })
            .await
            .unwrap();
    }
}

/// Runs `work` for every collection on `jobs` tasks, like the dump and restore do.
async fn per_collection<F, Fut, T>(collections: usize, jobs: usize, work: F) -> Vec<T>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let queue: Arc<Mutex<VecDeque<String>>> =
        Arc::new(Mutex::new((0..collections).map(collection_name).collect()));
    let work = Arc::new(work);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let (queue, work) = (Arc::clone(&queue), Arc::clone(&work));
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let Some(name) = queue.lock().unwrap().pop_front() else {
                    return out;
                };
                out.push(work(name).await);
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = set.join_next().await {
        all.extend(done.unwrap());
    }
    all
}

/// The backup floor: fetch every document of every collection, keep nothing. With `snapshot`,
/// each collection is read in a snapshot session (what the dump does when the server allows).
async fn raw_drain(client: &Client, args: &Args, snapshot: bool) -> (u64, u64) {
    let client = client.clone();
    let results = per_collection(args.collections, args.jobs, move |name| {
        let client = client.clone();
        async move {
            let coll = client.database(SOURCE).collection::<RawDocumentBuf>(&name);
            let (mut docs, mut bytes) = (0u64, 0u64);
            if snapshot {
                let mut session = client.start_session().snapshot(true).await.unwrap();
                let mut cursor = coll.find(doc! {}).session(&mut session).await.unwrap();
                while cursor.advance(&mut session).await.unwrap() {
                    docs += 1;
                    bytes += cursor.current().as_bytes().len() as u64;
                }
            } else {
                let mut cursor = coll.find(doc! {}).await.unwrap();
                while cursor.advance().await.unwrap() {
                    docs += 1;
                    bytes += cursor.current().as_bytes().len() as u64;
                }
            }
            (docs, bytes)
        }
    })
    .await;
    results
        .into_iter()
        .fold((0, 0), |(d, b), (d2, b2)| (d + d2, b + b2))
}

async fn dbkeeper_dump(target: &MongoTarget, archive: &Path, args: &Args, encrypt: bool) -> u64 {
    let mut encoding = Encoding::new(Compression::new(args.codec, args.compression_level).unwrap());
    if encrypt {
        let public = age::x25519::Identity::generate().to_public().to_string();
        let recipient = RecipientKey::parse(&public, "bench recipient").unwrap();
        encoding.seal = Some(Arc::new(Sealer::to_recipients(vec![recipient]).unwrap()));
    }
    let options = DumpOptions {
        jobs: args.jobs,
        encoding,
        ..DumpOptions::default()
    };
    let t0 = Instant::now();
    let prepared = dump::prepare(target, &options).await.unwrap();
    let t_prepare = t0.elapsed();
    let header = Header::new(chrono::Utc::now(), vec![prepared.source().clone()]);
    let sealer = options.encoding.seal.clone();
    let (_, _, reports) = backup::dump_to_file(
        archive,
        &header,
        vec![Box::new(prepared)],
        options.jobs,
        sealer,
        || None,
    )
    .await
    .unwrap();
    eprintln!(
        "backup: prepare {:.3} s, data+finish+fsync {:.3} s",
        t_prepare.as_secs_f64(),
        (t0.elapsed() - t_prepare).as_secs_f64()
    );
    match reports.into_iter().next() {
        Some(DumpReport::Mongo(summary)) => summary.documents,
        _ => unreachable!("a MongoDB dump reports a MongoDB summary"),
    }
}

/// The restore floor: the same documents, already in memory, inserted unordered in the same
/// 16 MiB batches on the same number of tasks, then the same indexes.
async fn raw_insert(
    target: &Database,
    documents: Vec<(String, Vec<RawDocumentBuf>)>,
    jobs: usize,
) -> Duration {
    let queue = Arc::new(Mutex::new(VecDeque::from(documents)));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let (queue, db) = (Arc::clone(&queue), target.clone());
        set.spawn(async move {
            loop {
                let Some((name, docs)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let coll = db.collection::<RawDocumentBuf>(&name);
                let mut start = 0;
                while start < docs.len() {
                    let mut end = start;
                    let mut bytes = 0;
                    while end < docs.len()
                        && (end == start || bytes + docs[end].as_bytes().len() <= 16 << 20)
                    {
                        bytes += docs[end].as_bytes().len();
                        end += 1;
                    }
                    coll.insert_many(&docs[start..end])
                        .ordered(false)
                        .await
                        .unwrap();
                    start = end;
                }
                db.run_command(doc! { "createIndexes": &name, "indexes": index_specs() })
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    started.elapsed()
}

async fn load_all(db: &Database, collections: usize) -> Vec<(String, Vec<RawDocumentBuf>)> {
    let mut out = Vec::new();
    for c in 0..collections {
        let name = collection_name(c);
        let mut cursor = db
            .collection::<RawDocumentBuf>(&name)
            .find(doc! {})
            .await
            .unwrap();
        let mut docs = Vec::new();
        while cursor.advance().await.unwrap() {
            docs.push(cursor.current().to_raw_document_buf());
        }
        out.push((name, docs));
    }
    out
}

const SOURCE: &str = "dbk_bench_source";
const RAW_INSERT: &str = "dbk_bench_raw_insert";
const RESTORED: &str = "dbk_bench_restored";

/// Where backup-encrypted writes (beside the unencrypted archive, deleted after the phase).
fn encrypted_archive(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_os_string();
    name.push(".encrypted");
    PathBuf::from(name)
}

fn report(phase: &str, elapsed: Duration, documents: u64, bytes: u64) {
    println!(
        "phase={phase} seconds={:.3} documents={documents} bytes={bytes}",
        elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = parse_args();
    let client = Client::with_uri_str(&args.url).await.unwrap();
    let source = client.database(SOURCE);
    let url = SecretUrl::new(&args.url);
    let target = |db: &str| MongoTarget::new(&url, db, Duration::from_secs(10));
    let started = Instant::now();
    match args.phase.as_str() {
        "generate" => {
            generate(&source, &args).await;
            report("generate", started.elapsed(), args.documents as u64, 0);
        }
        "drain" => {
            let (documents, bytes) = raw_drain(&client, &args, false).await;
            report("drain", started.elapsed(), documents, bytes);
        }
        "drain-snapshot" => {
            let (documents, bytes) = raw_drain(&client, &args, true).await;
            report("drain-snapshot", started.elapsed(), documents, bytes);
        }
        "backup" => {
            let _ = std::fs::remove_file(&args.archive);
            let documents = dbkeeper_dump(&target(SOURCE), &args.archive, &args, false).await;
            let bytes = std::fs::metadata(&args.archive).unwrap().len();
            report("backup", started.elapsed(), documents, bytes);
        }
        "backup-encrypted" => {
            let archive = encrypted_archive(&args.archive);
            let _ = std::fs::remove_file(&archive);
            let documents = dbkeeper_dump(&target(SOURCE), &archive, &args, true).await;
            let bytes = std::fs::metadata(&archive).unwrap().len();
            let _ = std::fs::remove_file(&archive);
            report("backup-encrypted", started.elapsed(), documents, bytes);
        }
        "restore" => {
            client.database(RESTORED).drop().await.unwrap();
            let started = Instant::now();
            let archive = Arc::new(VerifiedArchive::open(&args.archive).unwrap());
            let options = RestoreOptions {
                jobs: args.jobs,
                ..RestoreOptions::default()
            };
            let restored = restore::restore_database(&archive, &target(RESTORED), &options)
                .await
                .unwrap();
            report("restore", started.elapsed(), restored.documents, 0);
        }
        "insert" => {
            client.database(RAW_INSERT).drop().await.unwrap();
            let preloaded = load_all(&source, args.collections).await;
            let documents = preloaded.iter().map(|(_, d)| d.len() as u64).sum();
            let elapsed = raw_insert(&client.database(RAW_INSERT), preloaded, args.jobs).await;
            report("insert", elapsed, documents, 0);
        }
        "cleanup" => {
            for name in [SOURCE, RAW_INSERT, RESTORED] {
                client.database(name).drop().await.unwrap();
            }
            let _ = std::fs::remove_file(&args.archive);
        }
        other => {
            panic!(
                "unknown phase {other:?}: generate, drain, backup, backup-encrypted, restore, \
                 insert or cleanup"
            )
        }
    }
}
