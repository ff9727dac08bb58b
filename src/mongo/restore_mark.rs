//! The unfinished-restore mark of a MongoDB database, the counterpart of PostgreSQL's
//! `dbkeeper.restore_in_progress` database setting.
//!
//! A restore writes one document per collection and view it is about to create into the
//! collection [`MARKS_COLLECTION`] before it touches any of them, and deletes those documents
//! (and the collection, once empty) only after the last step. A restore that was killed or lost
//! its server therefore leaves the collections it had started on marked: a rerun in create mode
//! says the earlier restore did not finish, and `verify` reports the target as incomplete
//! whatever its counts say (a restore killed before its index builds has every document).
//!
//! One document per collection, not one per database, so that a scoped restore (`--include`)
//! that finishes clears only its own marks, never those of another collection left half-done.
//! The marks collection is never dumped, listed or verified as application data.

use mongodb::bson::{doc, Document};
use mongodb::Database;

use super::inspect::db_error;
use crate::error::Result;

/// The collection holding the marks.
pub const MARKS_COLLECTION: &str = "dbkeeper_restore_in_progress";

/// Marks `collections` of `db` as being restored from `archive_name`. Needs write access, which
/// the restore needs anyway; if it fails the restore goes on, warned, unmarked (as PostgreSQL's
/// does without ownership of the database).
pub async fn set(db: &Database, collections: &[String], archive_name: &str) {
    if collections.is_empty() {
        return;
    }
    let mark = format!(
        "restore of {archive_name} started {} (pid {})",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ"),
        std::process::id()
    );
    let marks = db.collection::<Document>(MARKS_COLLECTION);
    for name in collections {
        let written = marks
            .replace_one(doc! { "_id": name }, doc! { "_id": name, "restore": &mark })
            .upsert(true)
            .await;
        if let Err(e) = written {
            tracing::warn!(
                "cannot mark {}.{name} as being restored ({}); an interrupted restore will not \
                 be flagged",
                db.name(),
                super::connect::short_error(&e)
            );
            return;
        }
    }
}

/// Removes the marks of `collections` once everything the restore does to them is done, and
/// the marks collection with the last one.
pub async fn clear(db: &Database, collections: &[String]) -> Result<()> {
    let marks = db.collection::<Document>(MARKS_COLLECTION);
    let what = || format!("clearing the unfinished-restore mark of {}", db.name());
    marks
        .delete_many(doc! { "_id": { "$in": collections } })
        .await
        .map_err(|e| db_error(what(), &e))?;
    let left = marks
        .count_documents(doc! {})
        .await
        .map_err(|e| db_error(what(), &e))?;
    if left == 0 {
        marks.drop().await.map_err(|e| db_error(what(), &e))?;
    }
    Ok(())
}

/// The marks left on `collections` (what restore started, when), by collection name: the
/// restores into them that started and did not finish.
pub async fn unfinished(db: &Database, collections: &[String]) -> Result<Vec<(String, String)>> {
    use futures::TryStreamExt;
    let found: Vec<Document> = db
        .collection::<Document>(MARKS_COLLECTION)
        .find(doc! { "_id": { "$in": collections } })
        .await
        .map_err(|e| db_error("reading the unfinished-restore marks", &e))?
        .try_collect()
        .await
        .map_err(|e| db_error("reading the unfinished-restore marks", &e))?;
    let mut marks: Vec<(String, String)> = found
        .iter()
        .filter_map(|d| {
            Some((
                d.get_str("_id").ok()?.to_string(),
                d.get_str("restore").ok()?.to_string(),
            ))
        })
        .collect();
    marks.sort();
    Ok(marks)
}

/// "; it is left from a restore of ... that did not finish" for a refusal naming existing
/// collections, when any of them carries a mark.
pub fn refusal_note(marks: &[(String, String)]) -> String {
    match marks.first() {
        None => String::new(),
        Some((name, mark)) => format!(
            "; {} left from a {mark} that did not finish",
            match marks.len() {
                1 => format!("{name} is"),
                n => format!("{name} and {} more are", n - 1),
            }
        ),
    }
}
