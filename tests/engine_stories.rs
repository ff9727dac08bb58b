//! One story per capability, told once and run over every engine in the registry through the
//! library's operations (`dbkeeper::ops`), which reach the engines only through the contract in
//! `dbkeeper::engine`. What differs per engine is only the fixture: how a test database is made,
//! seeded and inspected, and how a migration file is written.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{MongoTestDb, PgTestDb};
use dbkeeper::config::{Overrides, Settings};
use dbkeeper::engine::REGISTRY;
use dbkeeper::migrate::runner::DirtyResolution;
use dbkeeper::migrate::StatusKind;
use dbkeeper::ops::backup::{self, BackupOptions};
use dbkeeper::ops::migrate::{self, Context, Move, Outcome, Purpose, Scope};
use dbkeeper::ops::restore::{self, RestoreOutcome, RestoreRequest};
use dbkeeper::ops::verify::{self, NamedTargets, VerifyRequest};
use dbkeeper::redact::SecretUrl;
use dbkeeper::Engine;
use mongodb::bson::doc;

/// A throwaway database of one engine.
enum TestDb {
    Postgres(PgTestDb),
    Mongo(MongoTestDb),
}

impl TestDb {
    async fn create(engine: Engine) -> TestDb {
        match engine {
            Engine::Postgres => TestDb::Postgres(PgTestDb::create().await),
            Engine::Mongo => TestDb::Mongo(MongoTestDb::create().await),
        }
    }

    /// Settings naming this database alone, read from an empty config file in `work` (no
    /// environment variable leaks in).
    fn settings(&self, work: &Path) -> Settings {
        let config = work.join("dbkeeper.toml");
        std::fs::write(&config, "").unwrap();
        let mut overrides = Overrides {
            config: Some(config),
            connect_timeout: Some(Duration::from_secs(10)),
            ..Overrides::default()
        };
        match self {
            TestDb::Postgres(db) => overrides.pg_url = Some(SecretUrl::new(&db.url)),
            TestDb::Mongo(db) => overrides.mongo_url = Some(SecretUrl::new(&db.url)),
        }
        Settings::resolve(&overrides, &|_| None).unwrap()
    }

    /// Two tables or collections of rows.
    async fn seed(&self) {
        match self {
            TestDb::Postgres(db) => db
                .client()
                .await
                .batch_execute(
                    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
                     INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g;
                     CREATE TABLE notes (id serial PRIMARY KEY, body text);
                     INSERT INTO notes (body) SELECT md5(g::text) FROM generate_series(1, 70) g;",
                )
                .await
                .unwrap(),
            TestDb::Mongo(db) => {
                let db = db.db().await;
                let items: Vec<_> = (1..=500)
                    .map(|i| doc! { "_id": i, "name": format!("item {i}") })
                    .collect();
                db.collection("items").insert_many(items).await.unwrap();
                let notes: Vec<_> = (1..=70).map(|i| doc! { "body": i.to_string() }).collect();
                db.collection("notes").insert_many(notes).await.unwrap();
            }
        }
    }

    /// The user tables or collections, sorted.
    async fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            TestDb::Postgres(db) => db
                .client()
                .await
                .query(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'
                     AND tablename NOT LIKE '%schema_history%' AND tablename NOT LIKE 'dbkeeper%'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            TestDb::Mongo(db) => db
                .db()
                .await
                .list_collection_names()
                .await
                .unwrap()
                .into_iter()
                .filter(|n| !n.starts_with("dbkeeper") && !n.starts_with("system."))
                .collect(),
        };
        names.sort();
        names
    }
}

/// A migration creating `name`, with its down file, in the engine's own format.
fn creates(engine: Engine, version: i64, name: &str) -> [(String, String); 2] {
    let (up, down, ext) = match engine {
        Engine::Postgres => (
            format!("CREATE TABLE {name} (id int);"),
            format!("DROP TABLE {name};"),
            "sql",
        ),
        Engine::Mongo => (
            format!(r#"[{{"create": "{name}"}}]"#),
            format!(r#"[{{"drop": "{name}"}}]"#),
            "json",
        ),
    };
    [
        (format!("V{version}__{name}.{ext}"), up),
        (format!("V{version}__{name}.down.{ext}"), down),
    ]
}

/// A migration that creates `name` and then fails, outside any transaction: the engine cannot
/// undo the first step, so the version is left dirty.
fn half_fails(engine: Engine, version: i64, name: &str) -> (String, String) {
    match engine {
        Engine::Postgres => (
            format!("V{version}__{name}.sql"),
            format!(
                "-- dbkeeper:no-transaction\nCREATE TABLE {name} (id int);\n\
                 CREATE INDEX CONCURRENTLY {name}_idx ON missing_table (id);\n"
            ),
        ),
        Engine::Mongo => (
            format!("V{version}__{name}.json"),
            format!(r#"[{{"create": "{name}"}}, {{"frobnicate": "{name}"}}]"#),
        ),
    }
}

fn write_files(dir: &Path, files: &[(String, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn scope(engine: Engine, dir: &Path) -> Scope {
    Scope {
        purpose: Purpose::Other,
        engine: Some(engine),
        lock_timeout: Some(Duration::from_secs(30)),
        migrations_dir: Some(dir.to_path_buf()),
        mongo_migrations_dir: Some(dir.to_path_buf()),
    }
}

/// Applies (or reverts) and returns each run's steps; panics naming the engine on an error.
async fn run(engine: Engine, dir: &Path, settings: &Settings, movement: Move) -> migrate::Moved {
    let ctx = Context::new(&scope(engine, dir), settings).unwrap();
    let moved = migrate::run_moves(&ctx, movement, false).await;
    assert!(moved.refused_by.is_none(), "{engine}: refused");
    moved
}

async fn statuses(engine: Engine, dir: &Path, settings: &Settings) -> Vec<(i64, StatusKind)> {
    let ctx = Context::new(&scope(engine, dir), settings).unwrap();
    let reports = migrate::status(&ctx).await.unwrap();
    reports[0]
        .migrations
        .iter()
        .map(|m| (m.version, m.status))
        .collect()
}

/// up, down, four racing deploys, a migration left dirty, repair, up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_go_up_down_race_go_dirty_and_are_repaired_on_every_engine() {
    for entry in &REGISTRY {
        let engine = entry.engine;
        let db = TestDb::create(engine).await;
        let work = tempfile::tempdir().unwrap();
        let settings = db.settings(work.path());
        let dir = work.path().join("migrations");
        let mut files: Vec<(String, String)> = Vec::new();
        files.extend(creates(engine, 1, "story_a"));
        files.extend(creates(engine, 2, "story_b"));
        write_files(&dir, &files);

        let up = run(engine, &dir, &settings, Move::Up { to: None }).await;
        assert!(up.error.is_none(), "{engine}: {:?}", up.error);
        assert_eq!(up.runs[0].report.steps.len(), 2, "{engine}");
        assert_eq!(db.names().await, ["story_a", "story_b"], "{engine}");

        let down = Move::Down {
            steps: Some(1),
            to: None,
        };
        let reverted = run(engine, &dir, &settings, down).await;
        assert_eq!(reverted.runs[0].report.steps.len(), 1, "{engine}");
        assert_eq!(db.names().await, ["story_a"], "{engine}");

        // Four deploys at once: the lock lets exactly one apply V2.
        let racers = (0..4).map(|_| run(engine, &dir, &settings, Move::Up { to: None }));
        let raced = futures::future::join_all(racers).await;
        let applied: usize = raced.iter().map(|m| m.runs[0].report.steps.len()).sum();
        assert_eq!(applied, 1, "{engine}: V2 applied once, not {applied} times");
        assert!(raced.iter().all(|m| m.error.is_none()), "{engine}");

        write_files(&dir, &[half_fails(engine, 3, "story_c")]);
        let failed = run(engine, &dir, &settings, Move::Up { to: None }).await;
        assert!(failed.runs[0].outcome == Outcome::Failed, "{engine}");
        let status = statuses(engine, &dir, &settings).await;
        assert_eq!(status.last(), Some(&(3, StatusKind::Dirty)), "{engine}");

        // The operator undoes the half-done work by hand, says so, and ships a fixed file.
        let ctx = Context::new(&scope(engine, &dir), &settings).unwrap();
        let repaired = migrate::repair(&ctx, Some(DirtyResolution::RolledBack), false).await;
        assert_eq!(repaired.unwrap()[0].1.len(), 1, "{engine}");
        std::fs::remove_file(dir.join(&half_fails(engine, 3, "story_c").0)).unwrap();
        match &db {
            TestDb::Postgres(pg) => pg
                .client()
                .await
                .batch_execute("DROP TABLE story_c")
                .await
                .unwrap(),
            TestDb::Mongo(mongo) => mongo
                .db()
                .await
                .collection::<mongodb::bson::Document>("story_c")
                .drop()
                .await
                .unwrap(),
        }
        write_files(&dir, &creates(engine, 3, "story_c"));
        let fixed = run(engine, &dir, &settings, Move::Up { to: None }).await;
        assert!(fixed.error.is_none(), "{engine}: {:?}", fixed.error);
        assert_eq!(
            db.names().await,
            ["story_a", "story_b", "story_c"],
            "{engine}"
        );
        let status = statuses(engine, &dir, &settings).await;
        assert!(
            status.iter().all(|(_, s)| *s == StatusKind::Applied),
            "{engine}: {status:?}"
        );
    }
}

/// backup -> list -> restore into a fresh database (V2 inside) -> verify it again, online.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_restore_and_verify_prove_every_engine_round_trips() {
    for entry in &REGISTRY {
        let engine = entry.engine;
        let source = TestDb::create(engine).await;
        source.seed().await;
        let work = tempfile::tempdir().unwrap();
        let backups = work.path().join("backups");
        let options = BackupOptions {
            output: Some(backups.display().to_string()),
            ..BackupOptions::default()
        };
        let report = backup::backup(&options, &source.settings(work.path()))
            .await
            .unwrap();
        let (tables, records) = match (&report.postgres, &report.mongo) {
            (Some(pg), None) => (pg.tables, pg.rows),
            (None, Some(m)) => (m.collections.len(), m.documents),
            other => panic!("{engine}: the backup reports {other:?}"),
        };
        assert_eq!((tables, records), (2, 570), "{engine}");
        let archive = PathBuf::from(&report.archive);

        let target = TestDb::create(engine).await;
        let settings = target.settings(work.path());
        let request = RestoreRequest {
            archive: archive.clone(),
            ..RestoreRequest::default()
        };
        let restored = match restore::restore(&request, &settings).await.unwrap() {
            RestoreOutcome::Restored(report) => report,
            RestoreOutcome::Listed(_) => panic!("{engine}: listed instead of restored"),
        };
        assert_eq!(restored.mismatches(), 0, "{engine}");
        assert!(restored.not_restored.is_empty(), "{engine}");
        assert_eq!(target.names().await, ["items", "notes"], "{engine}");

        let request = VerifyRequest {
            archive,
            deep: true,
            jobs: None,
            keys: Default::default(),
            named: NamedTargets {
                pg: engine == Engine::Postgres,
                mongo: engine == Engine::Mongo,
                mongo_db: false,
            },
        };
        let verified = verify::verify(&request, &settings).await.unwrap();
        assert!(
            verified.report.ok,
            "{engine}: {:?}",
            verified.report.mismatches
        );
        assert_eq!(
            verified.report.targets.len(),
            1,
            "{engine}: V2 ran on the target"
        );
    }
}
