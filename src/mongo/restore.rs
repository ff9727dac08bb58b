//! Restoring the MongoDB dump of an archive into a database.
//!
//! Order, as mongorestore does it and for the same reasons:
//! 1. Everything that can be checked without the target is checked first: the archive is a
//!    [`VerifiedArchive`] (V0: every member's SHA-256, COMMIT), every definition member parses,
//!    renames leave no two collections with one name. Only then is the target touched.
//! 2. The target is checked for collections or views with the names the archive would create:
//!    [`RestoreMode::Create`] refuses (exit 4), [`RestoreMode::Replace`] drops those (and only
//!    those) first.
//! 3. Collections are created with their options (validator, capped size, collation, ...).
//! 4. On `jobs` workers, one collection each: documents are inserted as the raw BSON the archive
//!    holds (never decoded), in unordered batches with document validation bypassed (a dump can
//!    hold documents written before the validator existed; they must come back exactly), then
//!    the documents the validator would reject are counted, then the indexes are built (after
//!    the data: one build instead of maintenance on every insert).
//! 5. Views are created last.
//!
//! Chunks are read and decompressed on the blocking pool one ahead of the inserts, so memory
//! stays at a few chunks per worker.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Bson, Document, RawDocument};
use mongodb::Database;
use serde::Serialize;
use tokio::task::JoinSet;

use super::connect::short_error;
use super::inspect::db_error;
use super::manifest::{load_collections, MongoManifest};
use super::metadata::{CollectionKind, CollectionMetadata};
use super::namespace::{renamed, Rename};
use super::restore_mark;
use super::MongoTarget;
use crate::archive::digest::ContentDigest;
use crate::archive::reader::VerifiedArchive;
use crate::archive::selection::Selection;
use crate::archive::Dataset;
use crate::error::{Engine, Error, Result};

/// What to do when the target already has a collection or view the archive would create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// Refuse (exit 4) and touch nothing.
    Create,
    /// Drop those collections and views first (others in the database are left alone).
    Replace,
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Collections restored in parallel.
    pub jobs: usize,
    pub mode: RestoreMode,
    /// Collection renames, first match wins (`--ns-from`/`--ns-to`).
    pub renames: Vec<Rename>,
    /// Largest batch handed to one `insert_many`, in BSON bytes (a larger document is a batch
    /// alone). 2 MiB restores as fast as 16 MiB in bench/mongo.sh (8.9–9.3 s vs 9.8 s for 400k
    /// documents) at 85–89 MiB peak RSS instead of 148 MiB: the driver builds each batch's
    /// message in memory.
    pub batch_bytes: usize,
    /// Allow restoring onto the database the archive was taken from (`--overwrite-source`).
    pub overwrite_source: bool,
    /// The collections and views restored (`--include`/`--exclude`, archived names).
    pub selection: Selection,
    /// `--schema-only`: collections with their options and indexes, and views; no documents.
    pub schema_only: bool,
    /// `--data-only`: documents into the existing, empty collections of the target (their
    /// options and indexes are the target's own); no collection is created or dropped, no
    /// index built, no view created. A collection that is missing is a usage error (exit 2),
    /// one that holds documents is refused (exit 4), both before anything is written.
    pub data_only: bool,
    /// Masks applied to documents on their way into the target (`--mask`), by archive
    /// collection name.
    pub mask: Option<Arc<crate::mask::MongoMask>>,
}

impl Default for RestoreOptions {
    fn default() -> RestoreOptions {
        RestoreOptions {
            jobs: crate::config::DEFAULT_JOBS,
            mode: RestoreMode::Create,
            renames: Vec::new(),
            batch_bytes: 2 << 20,
            overwrite_source: false,
            selection: Selection::default(),
            schema_only: false,
            data_only: false,
            mask: None,
        }
    }
}

/// What happened to one collection.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredCollection {
    /// The name in the target database.
    pub name: String,
    /// The name in the archive, when renamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    pub documents: u64,
    /// Indexes built besides `_id`.
    pub indexes: usize,
    /// Documents the collection's validator rejects (restored anyway, as they were in the
    /// source); `None` when the collection has no validator or the count failed (see
    /// `validator_check_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_validator: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validator_check_failed: Option<String>,
}

/// What the restore did, for the command's report.
#[derive(Debug, Clone, Serialize)]
pub struct MongoRestoreReport {
    pub database: String,
    /// Collections and views dropped first ([`RestoreMode::Replace`]).
    pub dropped: Vec<String>,
    pub collections: Vec<RestoredCollection>,
    pub views: Vec<String>,
    pub documents: u64,
    /// Sum of `failing_validator` over all collections.
    pub documents_failing_validator: u64,
    #[serde(serialize_with = "serialize_secs")]
    pub elapsed: Duration,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One collection or view to create, under its target name.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) target_name: String,
    /// As archived, with renames applied to a view's `viewOn`.
    pub(crate) definition: CollectionMetadata,
    pub(crate) dataset: Option<Dataset>,
}

/// Checks what [`restore_database`] would refuse (no MongoDB dump, clashing renames, existing
/// collections without `--mode replace`) without changing anything, so a restore of several
/// engines can refuse before it touches any of them.
pub async fn preflight(
    archive: &VerifiedArchive,
    target: &MongoTarget,
    options: &RestoreOptions,
) -> Result<()> {
    let plan = checked_plan(archive, target, options).await?;
    let db = target.database().await?;
    if options.data_only {
        return check_data_only(&db, target, &plan).await;
    }
    let conflicts = conflicts(&db, target, &plan).await?;
    if !conflicts.is_empty() && options.mode == RestoreMode::Create {
        return Err(refuse_conflicts(&db, target, &conflicts).await);
    }
    Ok(())
}

/// What the restore creates, under which names, once nothing forbids it: the archive has a
/// MongoDB dump, the renames do not clash, and the target is not the source (unless
/// `--overwrite-source`). Shared by [`preflight`] and [`restore_database`].
async fn checked_plan(
    archive: &VerifiedArchive,
    target: &MongoTarget,
    options: &RestoreOptions,
) -> Result<Vec<Planned>> {
    let mongo =
        MongoManifest::from_manifest(archive.manifest())?.ok_or_else(|| no_mongo_dump(archive))?;
    let loaded = selected(
        archive,
        load_collections(archive, &mongo)?,
        &options.selection,
    );
    let mut plan = plan(loaded, &options.renames)?;
    if options.data_only {
        // Views hold no documents: they are definitions, which the target has or not.
        plan.retain(|p| p.dataset.is_some());
    }
    if !options.overwrite_source {
        refuse_source(archive, target).await?;
    }
    Ok(plan)
}

/// What `--data-only` needs: every collection the documents go into exists and is empty.
async fn check_data_only(db: &Database, target: &MongoTarget, plan: &[Planned]) -> Result<()> {
    let existing: BTreeSet<String> = db
        .list_collection_names()
        .await
        .map_err(|e| db_error(format!("listing collections of {}", target.describe()), &e))?
        .into_iter()
        .collect();
    let missing: Vec<String> = plan
        .iter()
        .map(|p| p.target_name.clone())
        .filter(|name| !existing.contains(name))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "--data-only: MongoDB database {} lacks {} collection(s) the archive has documents \
             for: {}; create them first (dbkeeper migrate up, or restore --schema-only), leave \
             them out with --exclude, or restore without --data-only",
            target.describe(),
            missing.len(),
            crate::error::name_list(&missing)
        )));
    }
    let mut non_empty = Vec::new();
    for item in plan {
        let one = db
            .collection::<Document>(&item.target_name)
            .find_one(doc! {})
            .await
            .map_err(|e| {
                db_error(
                    format!("looking into {}.{}", db.name(), item.target_name),
                    &e,
                )
            })?;
        if one.is_some() {
            non_empty.push(item.target_name.clone());
        }
    }
    if non_empty.is_empty() {
        return Ok(());
    }
    let marks = restore_mark::unfinished(db, &non_empty).await?;
    Err(Error::Refused(format!(
        "--data-only loads into empty collections, and these collections of MongoDB database \
         {} hold documents: {}{}; nothing was changed. Empty them first, leave them out with \
         --exclude, or restore into another database without --data-only",
        target.describe(),
        crate::error::name_list(&non_empty),
        restore_mark::refusal_note(&marks)
    )))
}

/// Refuses to restore onto the database the archive was dumped from: same database name on a
/// server reached at the same address (`--mode replace` would otherwise overwrite the live data
/// with an older copy). MongoDB has no server identity that survives in the archive the way
/// PostgreSQL's system identifier does, so addresses are compared after resolving host names
/// (`localhost` and `127.0.0.1` are the same server).
async fn refuse_source(archive: &VerifiedArchive, target: &MongoTarget) -> Result<()> {
    let sources = &archive.manifest().sources;
    let Some(source) = sources.iter().find(|s| s.engine == Engine::Mongo) else {
        return Ok(());
    };
    if source.database != target.db_name() {
        return Ok(());
    }
    let source_target = MongoTarget::new(
        &crate::redact::SecretUrl::new(source.url.clone()),
        &source.database,
        Duration::ZERO,
    );
    if same_server(&source_target.describe(), &target.describe()).await {
        return Err(Error::Refused(format!(
            "refusing to restore onto MongoDB {}: it is the database this archive was taken \
             from. Restore into another database (--mongo-db NAME, or another database in \
             --mongo-url)",
            target.describe()
        )));
    }
    Ok(())
}

/// Whether two `hosts/db` descriptions (see [`MongoTarget::describe`]) share a server address.
async fn same_server(a: &str, b: &str) -> bool {
    let (a, b) = (resolve_hosts(a).await, resolve_hosts(b).await);
    a.iter().any(|address| b.contains(address))
}

/// Every address the hosts of a `hosts/db` description resolve to; a host that does not
/// resolve stands for itself (compared as text).
async fn resolve_hosts(described: &str) -> BTreeSet<String> {
    let hosts = described.rsplit_once('/').map_or(described, |(h, _)| h);
    let mut addresses = BTreeSet::new();
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        let with_port = match host.rsplit_once(':') {
            Some((_, port)) if !host.ends_with(']') && port.parse::<u16>().is_ok() => {
                host.to_string()
            }
            _ => format!("{host}:27017"),
        };
        match tokio::net::lookup_host(with_port.clone()).await {
            Ok(resolved) => addresses.extend(resolved.map(|a| a.to_string())),
            Err(_) => {
                addresses.insert(with_port.to_ascii_lowercase());
            }
        }
    }
    addresses
}

fn no_mongo_dump(archive: &VerifiedArchive) -> Error {
    Error::Usage(format!(
        "archive {} holds no MongoDB dump; restore it without MongoDB options",
        archive.path().display()
    ))
}

/// Restores the archive's MongoDB dump into `target`'s database.
pub async fn restore_database(
    archive: &Arc<VerifiedArchive>,
    target: &MongoTarget,
    options: &RestoreOptions,
) -> Result<MongoRestoreReport> {
    let started = Instant::now();
    if options.jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let plan = checked_plan(archive, target, options).await?;

    let db = target.database().await?;
    let dropped = match options.data_only {
        true => {
            check_data_only(&db, target, &plan).await?;
            Vec::new()
        }
        false => clear_conflicts(&db, target, &plan, options.mode).await?,
    };
    let names: Vec<String> = plan.iter().map(|p| p.target_name.clone()).collect();
    restore_mark::set(&db, &names, &archive.file_name()).await;
    let filled = async {
        for item in plan
            .iter()
            .filter(|p| p.definition.kind == CollectionKind::Collection && !options.data_only)
        {
            create(&db, item).await?;
        }

        let queue: VecDeque<Planned> = plan
            .iter()
            .filter(|p| p.dataset.is_some())
            .cloned()
            .collect();
        let collections = insert_all(archive, &db, queue, options).await?;

        let mut views = Vec::new();
        for item in plan
            .iter()
            .filter(|p| p.definition.kind == CollectionKind::View)
        {
            create(&db, item).await?;
            views.push(item.target_name.clone());
        }
        restore_mark::clear(&db, &names).await?;
        Ok::<_, Error>((collections, views))
    }
    .await;
    let (collections, views) = match filled {
        // The archive lied in a way only decoding shows (V0 passed, so it was forged or written
        // by a broken tool). In create mode none of the planned collections existed before:
        // drop them again, so the target is as it was.
        Err(Error::BadInput { what, message })
            if options.mode == RestoreMode::Create && !options.data_only =>
        {
            let mut note = String::from("the collections this restore had created were dropped");
            for item in &plan {
                let dropped = db
                    .collection::<mongodb::bson::Document>(&item.target_name)
                    .drop()
                    .await;
                if let Err(e) = dropped {
                    note = format!(
                        "dropping the collections this restore created failed at {}: {e}",
                        item.target_name
                    );
                    break;
                }
            }
            if note.starts_with("the collections") {
                // Nothing of this restore is left to flag as unfinished.
                if let Err(e) = restore_mark::clear(&db, &names).await {
                    note = format!("{note}; clearing the unfinished-restore marks failed: {e}");
                }
            }
            return Err(Error::BadInput {
                what,
                message: format!("{message}\n{note}"),
            });
        }
        other => other?,
    };

    Ok(MongoRestoreReport {
        database: target.db_name().to_string(),
        dropped,
        documents: collections.iter().map(|c| c.documents).sum(),
        documents_failing_validator: collections.iter().filter_map(|c| c.failing_validator).sum(),
        collections,
        views,
        elapsed: started.elapsed(),
    })
}

/// The archived collections and views `selection` names (matched as `database.name` or `name`,
/// by their archived names).
pub(crate) fn selected(
    archive: &VerifiedArchive,
    loaded: Vec<(CollectionMetadata, Option<Dataset>)>,
    selection: &Selection,
) -> Vec<(CollectionMetadata, Option<Dataset>)> {
    let database = archive
        .manifest()
        .source(Engine::Mongo)
        .map(|s| s.database.clone())
        .unwrap_or_default();
    loaded
        .into_iter()
        .filter(|(definition, _)| selection.selects(&database, &definition.name))
        .collect()
}

/// Applies renames (also to views' `viewOn`) and refuses two things ending up with one name.
pub(crate) fn plan(
    loaded: Vec<(CollectionMetadata, Option<Dataset>)>,
    renames: &[Rename],
) -> Result<Vec<Planned>> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut plan = Vec::with_capacity(loaded.len());
    for (mut definition, dataset) in loaded {
        let target_name = renamed(renames, &definition.name);
        if let Some(other) = seen.insert(target_name.clone(), definition.name.clone()) {
            return Err(Error::Usage(format!(
                "--ns-from/--ns-to would restore both {other} and {} as {target_name}",
                definition.name
            )));
        }
        if definition.kind == CollectionKind::View {
            if let Ok(on) = definition.options.get_str("viewOn") {
                let on = renamed(renames, on);
                definition.options.insert("viewOn", on);
            }
        }
        plan.push(Planned {
            target_name,
            definition,
            dataset,
        });
    }
    // A pattern that matches nothing is a typo; restoring under the original names instead
    // would put collections where the user did not ask for them.
    if let Some(unused) = renames
        .iter()
        .find(|r| !plan.iter().any(|p| r.apply(&p.definition.name).is_some()))
    {
        let names: Vec<&str> = plan.iter().map(|p| p.definition.name.as_str()).collect();
        return Err(Error::Usage(format!(
            "--ns-from {:?} matches no collection or view in the archive ({}); nothing was \
             restored",
            unused.pattern(),
            names.join(", ")
        )));
    }
    Ok(plan)
}

/// Refuses, or drops, target collections and views the restore would create.
async fn clear_conflicts(
    db: &Database,
    target: &MongoTarget,
    plan: &[Planned],
    mode: RestoreMode,
) -> Result<Vec<String>> {
    let conflicts = conflicts(db, target, plan).await?;
    if conflicts.is_empty() {
        return Ok(conflicts);
    }
    if mode == RestoreMode::Create {
        return Err(refuse_conflicts(db, target, &conflicts).await);
    }
    for name in &conflicts {
        db.collection::<Document>(name)
            .drop()
            .await
            .map_err(|e| db_error(format!("dropping {}.{name}", db.name()), &e))?;
    }
    Ok(conflicts)
}

/// Target names of the plan that already exist in the target database.
async fn conflicts(db: &Database, target: &MongoTarget, plan: &[Planned]) -> Result<Vec<String>> {
    let existing: BTreeSet<String> = db
        .list_collection_names()
        .await
        .map_err(|e| db_error(format!("listing collections of {}", target.describe()), &e))?
        .into_iter()
        .collect();
    Ok(plan
        .iter()
        .map(|p| p.target_name.clone())
        .filter(|name| existing.contains(name))
        .collect())
}

/// The refusal of existing collections, saying when they are left from a restore that did not
/// finish (as PostgreSQL's refusal of a non-empty target does).
async fn refuse_conflicts(db: &Database, target: &MongoTarget, conflicts: &[String]) -> Error {
    let unfinished = match restore_mark::unfinished(db, conflicts).await {
        Ok(marks) => restore_mark::refusal_note(&marks),
        Err(e) => format!("; (could not read the unfinished-restore marks: {e})"),
    };
    Error::Refused(format!(
        "MongoDB database {} already has {} of the collections this archive restores \
         ({}{unfinished}); nothing was changed. Restore into another database (--mongo-db), \
         rename them (--ns-from/--ns-to), or pass --mode replace to drop them first",
        target.describe(),
        conflicts.len(),
        crate::error::name_list(conflicts)
    ))
}

/// `create` with the archived options, verbatim (the UUID is not an option: the server assigns
/// a new one).
async fn create(db: &Database, item: &Planned) -> Result<()> {
    let mut command = doc! { "create": &item.target_name };
    for (key, value) in &item.definition.options {
        command.insert(key.clone(), value.clone());
    }
    db.run_command(command).await.map_err(|e| {
        db_error(
            format!(
                "creating {} {}.{}",
                item.definition.kind.as_str(),
                db.name(),
                item.target_name
            ),
            &e,
        )
    })?;
    Ok(())
}

async fn insert_all(
    archive: &Arc<VerifiedArchive>,
    db: &Database,
    queue: VecDeque<Planned>,
    options: &RestoreOptions,
) -> Result<Vec<RestoredCollection>> {
    let workers = options.jobs.min(queue.len()).max(1);
    let queue = Arc::new(Mutex::new(queue));
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (archive, db, queue) = (Arc::clone(archive), db.clone(), Arc::clone(&queue));
        let (batch_bytes, schema_only) = (options.batch_bytes, options.schema_only);
        let indexes = !options.data_only;
        let mask = options.mask.clone();
        set.spawn(async move {
            let mut done = Vec::new();
            loop {
                let Some(item) = queue.lock().expect("restore queue").pop_front() else {
                    return Ok::<_, Error>(done);
                };
                let mask = item
                    .dataset
                    .as_ref()
                    .and_then(|d| mask.as_ref()?.collection(&d.name).cloned());
                let restored = restore_collection(
                    &archive,
                    &db,
                    &item,
                    batch_bytes,
                    schema_only,
                    indexes,
                    mask,
                );
                done.push(restored.await?);
            }
        });
    }
    let mut restored = Vec::new();
    while let Some(joined) = set.join_next().await {
        let done = joined
            .map_err(|e| Error::db(Engine::Mongo, format!("a restore worker failed: {e}")))??;
        restored.extend(done);
    }
    restored.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(restored)
}

/// Documents, then the validator count, then indexes, of one collection.
async fn restore_collection(
    archive: &Arc<VerifiedArchive>,
    db: &Database,
    item: &Planned,
    batch_bytes: usize,
    schema_only: bool,
    indexes: bool,
    mask: Option<Arc<crate::mask::document::CollectionMask>>,
) -> Result<RestoredCollection> {
    let mut dataset = item.dataset.clone().expect("only collections are queued");
    if schema_only {
        // No documents: nothing to read, and nothing to count against the manifest.
        dataset.chunks.clear();
        dataset.rows = 0;
        dataset.digest = ContentDigest::new().to_hex();
    }
    let name = &item.target_name;
    let coll = db.collection::<&RawDocument>(name);

    // Decompress (and mask) on the blocking pool, one chunk ahead of the inserts: at most two
    // decoded chunks per worker exist at any time.
    let dataset = Arc::new(dataset);
    let decode = |index: usize| {
        let (archive, dataset, mask) = (Arc::clone(archive), Arc::clone(&dataset), mask.clone());
        tokio::task::spawn_blocking(move || {
            let chunk = &dataset.chunks[index];
            let decoded = archive.read_chunk(&dataset, chunk)?;
            match mask {
                Some(mask) => crate::mask::mask_chunk(
                    crate::mask::ChunkMask::Collection(&mask),
                    decoded,
                    &chunk.member,
                ),
                None => Ok(decoded),
            }
        })
    };
    let mut digest = ContentDigest::new();
    let mut inserted = 0u64;
    let mut next = (!dataset.chunks.is_empty()).then(|| decode(0));
    for index in 0..dataset.chunks.len() {
        let decoded = next
            .take()
            .expect("the next chunk is always being decoded")
            .await
            .map_err(|e| Error::db(Engine::Mongo, format!("reading the archive failed: {e}")))??;
        if index + 1 < dataset.chunks.len() {
            next = Some(decode(index + 1));
        }
        digest.merge(&decoded.digest);
        let documents = split_documents(&decoded.data).map_err(|message| {
            Error::bad_input(
                format!(
                    "archive {}, collection {}",
                    archive.path().display(),
                    dataset.name
                ),
                message,
            )
        })?;
        let batches = batches_of(documents, batch_bytes);
        for batch in batches {
            let documents = batch.len() as u64;
            coll.insert_many(batch)
                .ordered(false)
                .bypass_document_validation(true)
                .await
                .map_err(|e| insert_error(db, name, &e))?;
            inserted += documents;
        }
    }
    if inserted != dataset.rows || digest.to_hex() != dataset.digest {
        return Err(Error::bad_input(
            format!("archive {}", archive.path().display()),
            format!(
                "collection {} holds {inserted} documents with digest {}, the manifest says {} \
                 with {}; {}.{name} is incomplete",
                dataset.name,
                digest.to_hex(),
                dataset.rows,
                dataset.digest,
                db.name()
            ),
        ));
    }

    let (failing_validator, validator_check_failed) = match item.definition.validator() {
        None => (None, None),
        Some(validator) => match count_failing(db, name, validator).await {
            Ok(n) => (Some(n), None),
            Err(reason) => (None, Some(reason)),
        },
    };
    crate::faultpoint::pause("mongo-indexes");
    let indexes = match indexes {
        true => {
            crate::progress::item(&format!("indexes of collection {name}"));
            build_indexes(db, name, &item.definition).await?
        }
        // `--data-only`: the collection's indexes are the target's own.
        false => 0,
    };
    crate::progress::item_done("restored", &format!("collection {name}"), inserted);
    Ok(RestoredCollection {
        name: name.clone(),
        renamed_from: (dataset.name != *name).then(|| dataset.name.clone()),
        documents: inserted,
        indexes,
        failing_validator,
        validator_check_failed,
    })
}

/// The documents of a decoded chunk, borrowed. (Framing was already checked when the chunk was
/// decoded; this only fails on a chunk that changed in between.)
fn split_documents(mut data: &[u8]) -> std::result::Result<Vec<&RawDocument>, String> {
    let mut documents = Vec::new();
    while !data.is_empty() {
        let len = data
            .get(..4)
            .map(|p| i32::from_le_bytes([p[0], p[1], p[2], p[3]]))
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l >= 5 && l <= data.len())
            .ok_or_else(|| format!("bad BSON document length at document {}", documents.len()))?;
        let (document, rest) = data.split_at(len);
        documents.push(RawDocument::from_bytes(document).map_err(|e| e.to_string())?);
        data = rest;
    }
    Ok(documents)
}

/// Groups documents into batches of at most `batch_bytes` (a larger document is a batch alone).
fn batches_of(documents: Vec<&RawDocument>, batch_bytes: usize) -> Vec<Vec<&RawDocument>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut size = 0usize;
    for document in documents {
        let len = document.as_bytes().len();
        if size + len > batch_bytes && !batch.is_empty() {
            batches.push(std::mem::take(&mut batch));
            size = 0;
        }
        size += len;
        batch.push(document);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

fn insert_error(db: &Database, collection: &str, e: &mongodb::error::Error) -> Error {
    use mongodb::error::ErrorKind;
    let detail = match e.kind.as_ref() {
        ErrorKind::InsertMany(failure) => {
            let errors = failure.write_errors.as_deref().unwrap_or_default();
            let first: Vec<String> = errors
                .iter()
                .take(3)
                .map(|w| format!("document {}: {} (code {})", w.index, w.message, w.code))
                .collect();
            format!(
                "{} documents refused, e.g. {}",
                errors.len(),
                first.join("; ")
            )
        }
        _ => short_error(e),
    };
    Error::db(
        Engine::Mongo,
        format!(
            "inserting into {}.{collection}: {detail}. The collection is partially restored; fix \
             the cause and restore again with --mode replace",
            db.name()
        ),
    )
}

/// How many documents the validator rejects: `countDocuments({$nor: [validator]})`. A validator
/// is a query filter (`$jsonSchema` included), so this asks exactly "which documents does it
/// not match", the check MongoDB's documentation gives for finding invalid documents. Failure is
/// reported, not fatal: the data is already restored exactly.
async fn count_failing(
    db: &Database,
    collection: &str,
    validator: &Document,
) -> std::result::Result<u64, String> {
    let filter = doc! { "$nor": [Bson::Document(validator.clone())] };
    db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .map_err(|e| short_error(&e))
}

/// `createIndexes` with every archived spec but `_id`'s, in one command so the server builds
/// them in one pass over the data. Returns how many.
async fn build_indexes(
    db: &Database,
    collection: &str,
    definition: &CollectionMetadata,
) -> Result<usize> {
    let specs: Vec<Bson> = definition
        .secondary_indexes()
        .cloned()
        .map(Bson::Document)
        .collect();
    if specs.is_empty() {
        return Ok(0);
    }
    let count = specs.len();
    db.run_command(doc! { "createIndexes": collection, "indexes": specs })
        .await
        .map_err(|e| {
            db_error(
                format!("building indexes of {}.{collection}", db.name()),
                &e,
            )
        })?;
    Ok(count)
}
