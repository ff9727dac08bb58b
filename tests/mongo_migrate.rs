//! `dbkeeper migrate --engine mongo` against the real MongoDB-wire server: every verb, drift,
//! bad files, failures mid-file, dirty state and repair, the lease lock under concurrency, and the
//! example migrations in mongo_migrations/.

mod common;

use common::stdout_json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{dbkeeper, stderr, MongoTestDb};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use predicates::prelude::*;

/// `dbkeeper --mongo-url URL migrate ARGS --engine mongo --mongo-migrations-dir DIR`.
fn migrate(db: &MongoTestDb, dir: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = dbkeeper(dir.parent().unwrap());
    cmd.args(["--mongo-url", &db.url, "migrate"])
        .args(args)
        .args(["--engine", "mongo", "--mongo-migrations-dir"])
        .arg(dir);
    cmd
}

/// A temp workdir with a `mongo_migrations/` directory holding `files`.
fn migrations(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    common::files_in("mongo_migrations", files)
}

async fn history(db: &MongoTestDb) -> Vec<Document> {
    db.db()
        .await
        .collection::<Document>("dbkeeper_migrations")
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn collections(db: &MongoTestDb) -> Vec<String> {
    let mut names = db.db().await.list_collection_names().await.unwrap();
    names.sort();
    names
}

async fn count(db: &MongoTestDb, collection: &str, filter: Document) -> u64 {
    db.db()
        .await
        .collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

const V1: &str = r#"[{"create": "alpha"}, {"insert": "ledger", "documents": [{"v": 1}]}]"#;
const V1_DOWN: &str =
    r#"[{"drop": "alpha"}, {"delete": "ledger", "deletes": [{"q": {"v": 1}, "limit": 0}]}]"#;
const V2: &str = r#"[{"create": "beta"}, {"insert": "ledger", "documents": [{"v": 2}]}]"#;
const V2_DOWN: &str =
    r#"[{"drop": "beta"}, {"delete": "ledger", "deletes": [{"q": {"v": 2}, "limit": 0}]}]"#;

fn two_migrations() -> (tempfile::TempDir, PathBuf) {
    migrations(&[
        ("V1__alpha.json", V1),
        ("V1__alpha.down.json", V1_DOWN),
        ("V2__beta.json", V2),
        ("V2__beta.down.json", V2_DOWN),
    ])
}

#[tokio::test]
async fn status_up_down_with_dry_run_and_json() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = two_migrations();

    // status is read-only and says what is pending; --exit-code turns pending into exit 1.
    let out = migrate(&db, &dir, &["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout_json(&out);
    assert_eq!(report["engines"][0]["pending"], 2, "{report}");
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .code(1);
    // A dry run shows the commands and changes nothing, not even the history collection.
    let out = migrate(&db, &dir, &["up", "--dry-run", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout_json(&out);
    let steps = report["runs"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report}");
    assert!(steps[0]["script"].as_str().unwrap().contains("alpha"));
    assert!(collections(&db).await.is_empty(), "dry run wrote something");

    migrate(&db, &dir, &["up", "--to", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("applied V1__alpha"));
    assert!(collections(&db).await.contains(&"alpha".into()));
    assert!(!collections(&db).await.contains(&"beta".into()));
    let h = history(&db).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].get_str("state").unwrap(), "applied");
    assert_eq!(h[0].get_str("name").unwrap(), "alpha");
    assert!(h[0].get_datetime("applied_at").is_ok());
    assert!(h[0].get_i64("duration_ms").is_ok());
    assert_eq!(h[0].get_str("down").unwrap(), V1_DOWN);
    assert_eq!(h[0].get_str("checksum").unwrap().len(), 64);

    let out = migrate(&db, &dir, &["up", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["runs"][0]["steps"][0]["version"], 2);
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2 applied, 0 pending"));
    migrate(&db, &dir, &["up"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));

    // down: dry run shows the captured down commands; default is one step.
    migrate(&db, &dir, &["down", "--dry-run"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("would revert V2__beta").and(predicate::str::contains("drop")),
        );
    assert_eq!(count(&db, "ledger", doc! {}).await, 2);
    migrate(&db, &dir, &["down"]).assert().success();
    assert!(!collections(&db).await.contains(&"beta".into()));
    assert_eq!(count(&db, "ledger", doc! {}).await, 1);
    migrate(&db, &dir, &["down", "--to", "0"])
        .assert()
        .success()
        .stdout(predicate::str::contains("reverted V1__alpha"));
    assert!(history(&db).await.is_empty());
    assert_eq!(count(&db, "ledger", doc! {}).await, 0);
    // Rollbacks remove history documents; the audit collection keeps what happened.
    assert_eq!(
        count(
            &db,
            "dbkeeper_migrations_audit",
            doc! { "action": "reverted" }
        )
        .await,
        2
    );
}

#[tokio::test]
async fn reformatting_a_file_is_not_drift_but_changing_a_command_is() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = migrations(&[(
        "V1__users.json",
        r#"[{"create": "users"}, {"createIndexes": "users", "indexes": [{"key": {"email": 1}, "name": "email", "unique": true}]}]"#,
    )]);
    migrate(&db, &dir, &["up"]).assert().success();
    migrate(&db, &dir, &["validate"]).assert().success();

    // Same commands: new layout, canonical Extended JSON numbers, a trailing newline.
    std::fs::write(
        dir.join("V1__users.json"),
        "[\n  { \"create\" : \"users\" },\n  {\n    \"createIndexes\": \"users\",\n    \"indexes\": [\n      { \"key\": { \"email\": { \"$numberInt\": \"1\" } }, \"name\": \"email\", \"unique\": true }\n    ]\n  }\n]\n",
    )
    .unwrap();
    migrate(&db, &dir, &["validate"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok"));

    // A changed command is drift: validate fails (1), up refuses (4) naming the migration.
    std::fs::write(
        dir.join("V1__users.json"),
        r#"[{"create": "users"}, {"createIndexes": "users", "indexes": [{"key": {"email": -1}, "name": "email", "unique": true}]}]"#,
    )
    .unwrap();
    migrate(&db, &dir, &["validate"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("V1__users").and(predicate::str::contains("divergent")));
    migrate(&db, &dir, &["up"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("V1__users"));

    // repair records the file as it is now (dry run first changes nothing).
    migrate(&db, &dir, &["repair", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("would record V1__users checksum"));
    migrate(&db, &dir, &["validate"]).assert().code(1);
    migrate(&db, &dir, &["repair"]).assert().success();
    migrate(&db, &dir, &["validate"]).assert().success();
    assert_eq!(
        count(
            &db,
            "dbkeeper_migrations_audit",
            doc! { "action": "checksum_updated" }
        )
        .await,
        1
    );
}

#[tokio::test]
async fn bad_json_and_bad_extended_json_exit_2_naming_file_line_and_column() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = migrations(&[
        ("V1__ok.json", r#"[{"create": "ok"}]"#),
        (
            "V2__broken.json",
            "[\n  {\"create\": \"x\"},\n  {\"create\": \"y\" \"capped\": true}\n]\n",
        ),
    ]);
    for verb in ["status", "up", "validate"] {
        migrate(&db, &dir, &[verb]).assert().code(2).stderr(
            predicate::str::contains("V2__broken.json: line 3, column 18")
                .and(predicate::str::contains("command at index 1")),
        );
    }
    std::fs::write(
        dir.join("V2__broken.json"),
        "[\n  {\"insert\": \"x\", \"documents\": [\n    {\"at\": {\"$date\": \"not a date\"}}\n  ]}\n]\n",
    )
    .unwrap();
    migrate(&db, &dir, &["up"]).assert().code(2).stderr(
        predicate::str::contains("V2__broken.json: line 3")
            .and(predicate::str::contains("Extended JSON")),
    );
    // Nothing ran: files are checked before anything touches the database.
    assert!(collections(&db).await.is_empty());
}

#[tokio::test]
async fn a_failing_command_leaves_the_version_dirty_and_nothing_after_it_runs() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = migrations(&[
        ("V1__alpha.json", V1),
        ("V1__alpha.down.json", V1_DOWN),
        (
            "V2__half.json",
            r#"[{"create": "first"}, {"frobnicate": "users"}, {"create": "never"}]"#,
        ),
        ("V2__half.down.json", r#"[{"drop": "first"}]"#),
        ("V3__later.json", r#"[{"create": "later"}]"#),
    ]);
    migrate(&db, &dir, &["up"]).assert().code(3).stderr(
        predicate::str::contains("V2__half.json")
            .and(predicate::str::contains("index 1"))
            .and(predicate::str::contains("frobnicate"))
            .and(predicate::str::contains("repair")),
    );
    let names = collections(&db).await;
    assert!(names.contains(&"alpha".into()) && names.contains(&"first".into()));
    assert!(!names.contains(&"never".into()) && !names.contains(&"later".into()));
    let h = history(&db).await;
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].get_str("state").unwrap(), "dirty");
    assert_eq!(h[1].get_i64("failed_command").unwrap(), 1);
    assert_eq!(h[1].get_i64("completed_commands").unwrap(), 1);
    assert!(h[1].get_str("error").unwrap().contains("frobnicate"));

    // Dirty blocks up (4) and down (4); status and validate show it.
    migrate(&db, &dir, &["up"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("V2__half is dirty"));
    migrate(&db, &dir, &["down"]).assert().code(4);
    migrate(&db, &dir, &["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("dirty").and(predicate::str::contains("index 1")));
    migrate(&db, &dir, &["validate"]).assert().code(1);
    // repair needs to be told how it ended.
    migrate(&db, &dir, &["repair"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--dirty applied"));

    // The operator undoes the partial effects and fixes the file; `rolled-back` forgets V2.
    db.db()
        .await
        .collection::<Document>("first")
        .drop()
        .await
        .unwrap();
    std::fs::write(
        dir.join("V2__half.json"),
        r#"[{"create": "first"}, {"create": "never"}]"#,
    )
    .unwrap();
    migrate(&db, &dir, &["repair", "--dirty", "rolled-back"])
        .assert()
        .success()
        .stdout(predicate::str::contains("forget dirty V2__half"));
    assert_eq!(history(&db).await.len(), 1);
    migrate(&db, &dir, &["up"]).assert().success();
    let names = collections(&db).await;
    assert!(names.contains(&"never".into()) && names.contains(&"later".into()));
    assert_eq!(
        count(
            &db,
            "dbkeeper_migrations_audit",
            doc! { "action": "dirty_forgotten" }
        )
        .await,
        1
    );
}

#[tokio::test]
async fn repair_dirty_applied_keeps_the_version_and_its_down_commands() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = migrations(&[
        (
            "V1__validated.json",
            r#"[{"create": "people", "validator": {"$jsonSchema": {"bsonType": "object", "required": ["email"]}}},
                {"insert": "people", "documents": [{"name": "no email"}]}]"#,
        ),
        ("V1__validated.down.json", r#"[{"drop": "people"}]"#),
    ]);
    // A write the validator rejects comes back as writeErrors in an ok reply: still a failure.
    migrate(&db, &dir, &["up"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("index 1").and(predicate::str::contains("write error")));
    assert_eq!(count(&db, "people", doc! {}).await, 0);
    assert_eq!(history(&db).await[0].get_str("state").unwrap(), "dirty");

    // The operator decides the insert was not needed: the migration counts as applied.
    migrate(&db, &dir, &["repair", "--dirty", "applied"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "mark dirty V1__validated as applied",
        ));
    let h = history(&db).await;
    assert_eq!(h[0].get_str("state").unwrap(), "applied");
    assert!(h[0].get("failed_command").is_none());
    migrate(&db, &dir, &["status", "--exit-code"])
        .assert()
        .success();
    migrate(&db, &dir, &["down"]).assert().success();
    assert!(!collections(&db).await.contains(&"people".into()));
}

#[tokio::test]
async fn rollback_works_after_the_down_file_is_deleted() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = two_migrations();
    migrate(&db, &dir, &["up"]).assert().success();
    std::fs::remove_file(dir.join("V2__beta.down.json")).unwrap();
    std::fs::remove_file(dir.join("V1__alpha.down.json")).unwrap();
    migrate(&db, &dir, &["down", "--to", "0"])
        .assert()
        .success();
    assert!(!collections(&db).await.contains(&"alpha".into()));
    assert!(!collections(&db).await.contains(&"beta".into()));
    assert_eq!(count(&db, "ledger", doc! {}).await, 0);

    // A migration applied without a down file cannot be rolled back: refused, nothing run.
    migrate(&db, &dir, &["up"]).assert().success();
    migrate(&db, &dir, &["down"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("V2__beta"));
    assert!(collections(&db).await.contains(&"beta".into()));
}

#[tokio::test]
async fn golang_migrate_files_are_accepted_as_they_are() {
    let db = MongoTestDb::create().await;
    // golang-migrate's MongoDB format: an array of runCommand documents, pretty-printed, with
    // options such as `background` and an aggregate carrying `cursor: {}`.
    let up = r#"[
    {
        "insert": "users",
        "documents": [
            { "firstname": "Ada", "lastname": "Lovelace", "born": { "$date": { "$numberLong": "-4952908800000" } } },
            { "firstname": "Alan", "lastname": "Turing", "born": { "$date": "1912-06-23T00:00:00Z" } }
        ]
    },
    {
        "createIndexes": "users",
        "indexes": [
            {
                "key": { "lastname": -1 },
                "name": "lastname_idx",
                "unique": true,
                "background": true
            }
        ]
    },
    {
        "aggregate": "users",
        "pipeline": [ { "$match": { "lastname": "Turing" } } ],
        "cursor": {}
    },
    {
        "update": "users",
        "updates": [ { "q": {}, "u": { "$set": { "active": true } }, "multi": true } ]
    }
]"#;
    let down = r#"[
    { "dropIndexes": "users", "index": "lastname_idx" },
    { "drop": "users" }
]"#;
    let (_work, dir) = migrations(&[("V1__users.json", up), ("V1__users.down.json", down)]);
    migrate(&db, &dir, &["up"]).assert().success();
    assert_eq!(count(&db, "users", doc! { "active": true }).await, 2);
    let ada = db
        .db()
        .await
        .collection::<Document>("users")
        .find_one(doc! { "firstname": "Ada" })
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ada.get("born"), Some(Bson::DateTime(_))), "{ada}");
    migrate(&db, &dir, &["down"]).assert().success();
    assert!(!collections(&db).await.contains(&"users".into()));
}

#[tokio::test]
async fn a_command_can_name_another_database_with_dollar_db() {
    let db = MongoTestDb::create().await;
    let other = MongoTestDb::create().await;
    let up = format!(
        r#"[{{"create": "elsewhere", "$db": "{0}"}}, {{"insert": "elsewhere", "documents": [{{"x": 1}}], "$db": "{0}"}}]"#,
        other.name
    );
    let down = format!(r#"[{{"drop": "elsewhere", "$db": "{}"}}]"#, other.name);
    let (_work, dir) = migrations(&[("V1__other.json", &up), ("V1__other.down.json", &down)]);
    migrate(&db, &dir, &["up"]).assert().success();
    assert_eq!(count(&other, "elsewhere", doc! {}).await, 1);
    assert!(!collections(&db).await.contains(&"elsewhere".into()));
    migrate(&db, &dir, &["down"]).assert().success();
    assert!(!collections(&other).await.contains(&"elsewhere".into()));
}

#[tokio::test]
async fn baseline_records_without_running_and_refuses_a_second_time() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = migrations(&[
        ("V1__alpha.json", V1),
        ("V1__alpha.down.json", V1_DOWN),
        ("V2__beta.json", V2),
        ("V3__gamma.json", r#"[{"create": "gamma"}]"#),
    ]);
    migrate(&db, &dir, &["baseline", "2", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"version\": 2"));
    let names = collections(&db).await;
    assert!(!names.contains(&"alpha".into()) && !names.contains(&"beta".into()));
    let h = history(&db).await;
    assert_eq!(h.len(), 2);
    assert!(h.iter().all(|d| d.get_bool("baseline") == Ok(true)));
    migrate(&db, &dir, &["baseline", "2"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("already recorded"));
    migrate(&db, &dir, &["baseline", "9"]).assert().code(2);
    migrate(&db, &dir, &["up"])
        .assert()
        .success()
        .stdout(predicate::str::contains("V3__gamma").and(predicate::str::contains("V1__").not()));
    assert!(collections(&db).await.contains(&"gamma".into()));
}

#[tokio::test]
async fn new_writes_a_pair_that_applies_and_rolls_back() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = two_migrations();
    migrate(&db, &dir, &["new", "reviews"])
        .assert()
        .success()
        .stdout(predicate::str::contains("V3__reviews.json"));
    assert!(dir.join("V3__reviews.down.json").exists());
    migrate(&db, &dir, &["up"]).assert().success();
    assert!(collections(&db).await.contains(&"reviews".into()));
    migrate(&db, &dir, &["down"]).assert().success();
    assert!(!collections(&db).await.contains(&"reviews".into()));
}

#[test]
fn eight_concurrent_runners_apply_each_migration_exactly_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(MongoTestDb::create());
    let mut files = Vec::new();
    for v in 1..=6 {
        files.push((
            format!("V{v}__step{v}.json"),
            format!(
                r#"[{{"insert": "ledger", "documents": [{{"v": {v}}}]}}, {{"create": "c{v}"}}, {{"insert": "ledger", "documents": [{{"v": {v}, "second": true}}]}}]"#
            ),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let (work, dir) = migrations(&refs);
    let children: Vec<std::process::Child> = (0..8)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_dbkeeper"))
                .current_dir(work.path())
                .env_remove("DBKEEPER_MONGO_URL")
                .env_remove("MONGODB_URI")
                .args(["--mongo-url", &db.url, "migrate", "up", "--engine", "mongo"])
                .args(["--lock-timeout", "120", "--mongo-migrations-dir"])
                .arg(&dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied_by = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        applied_by.push(
            String::from_utf8_lossy(&out.stdout)
                .matches("applied V")
                .count(),
        );
    }
    assert_eq!(applied_by.iter().sum::<usize>(), 6, "{applied_by:?}");
    rt.block_on(async {
        for v in 1..=6 {
            assert_eq!(count(&db, "ledger", doc! { "v": v }).await, 2, "v{v}");
        }
        let h = history(&db).await;
        assert_eq!(h.len(), 6);
        assert!(h.iter().all(|d| d.get_str("state") == Ok("applied")));
        // Every runner released the lease.
        assert_eq!(count(&db, "dbkeeper_migrations_lock", doc! {}).await, 0);
    });
}

#[tokio::test]
async fn a_live_lease_blocks_until_timeout_and_a_dead_holders_lease_is_taken_over() {
    let db = MongoTestDb::create().await;
    let (_work, dir) = two_migrations();
    let locks = db
        .db()
        .await
        .collection::<Document>("dbkeeper_migrations_lock");
    let in_ms = |ms: i64| DateTime::from_millis(DateTime::now().timestamp_millis() + ms);
    locks
        .insert_one(doc! {
            "_id": "migrate",
            "owner": "deploy@ghost-host (pid 4242) (run r-1)",
            "token": "someone-else",
            "acquired_at": DateTime::now(),
            "heartbeat_at": DateTime::now(),
            "expires_at": in_ms(600_000),
        })
        .await
        .unwrap();
    let started = Instant::now();
    migrate(&db, &dir, &["up", "--lock-timeout", "1"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("deploy@ghost-host (pid 4242)"));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(history(&db).await.is_empty());

    // The holder died: it stopped renewing, and its lease runs out two seconds from now.
    locks
        .update_one(
            doc! { "_id": "migrate" },
            doc! { "$set": { "expires_at": in_ms(2_000) } },
        )
        .await
        .unwrap();
    let started = Instant::now();
    migrate(&db, &dir, &["up", "--lock-timeout", "30"])
        .assert()
        .success();
    assert!(started.elapsed() >= Duration::from_millis(1_500));
    assert_eq!(history(&db).await.len(), 2);
    assert_eq!(locks.count_documents(doc! {}).await.unwrap(), 0);
}

#[tokio::test]
async fn the_heartbeat_keeps_a_lease_alive_past_its_duration() {
    use dbkeeper::migrate::MigrationEngine;
    use dbkeeper::mongo::migrate::MongoMigrator;
    use dbkeeper::mongo::MongoTarget;
    use dbkeeper::redact::SecretUrl;

    let db = MongoTestDb::create().await;
    let url = SecretUrl::new(db.url.clone());
    let target = MongoTarget::new(&url, &db.name, Duration::from_secs(10));
    let lease = Duration::from_secs(1);
    let mut holder = MongoMigrator::connect_with_lease(&target, lease)
        .await
        .unwrap();
    let mut waiter = MongoMigrator::connect_with_lease(&target, lease)
        .await
        .unwrap();
    holder.lock(Duration::from_secs(5)).await.unwrap();
    // Three lease durations later the holder's heartbeat has kept it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = waiter.lock(Duration::from_millis(500)).await.unwrap_err();
    assert_eq!(err.exit_code(), dbkeeper::ExitCode::Runtime, "{err}");
    holder.unlock().await.unwrap();
    waiter.lock(Duration::from_secs(2)).await.unwrap();
    // Dropped without unlocking (a crash): the lease expires on its own.
    drop(waiter);
    holder.lock(Duration::from_secs(5)).await.unwrap();
    holder.unlock().await.unwrap();
}

#[tokio::test]
async fn example_migrations_apply_and_roll_back_cleanly() {
    let db = MongoTestDb::create().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mongo_migrations");
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = dbkeeper(work.path());
        cmd.args(["--mongo-url", &db.url, "migrate"])
            .args(args)
            .args(["--engine", "mongo", "--mongo-migrations-dir"])
            .arg(&dir);
        cmd
    };
    let mdb = db.db().await;
    let users = mdb.collection::<Document>("users");
    let products = mdb.collection::<Document>("products");

    run(&["up", "--to", "3"]).assert().success();
    // $jsonSchema validators are in force.
    users
        .insert_one(doc! { "email": "ada@example.org", "full_name": "Ada Lovelace", "status": "active", "created_at": DateTime::now() })
        .await
        .unwrap();
    assert!(users
        .insert_one(doc! { "email": "not-an-email", "full_name": "X", "status": "active", "created_at": DateTime::now() })
        .await
        .is_err());
    assert!(users
        .insert_one(doc! { "email": "ada@example.org", "full_name": "Dup", "status": "active", "created_at": DateTime::now() })
        .await
        .is_err(), "email is unique");
    products
        .insert_one(doc! { "sku": "BK-001", "name": "Notebook", "price": 4.5, "stock": 10 })
        .await
        .unwrap();
    // Indexes: unique, partial, compound, TTL.
    let indexes: Vec<Document> = mdb
        .run_command(doc! { "listIndexes": "carts" })
        .await
        .unwrap()
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|i| i.as_document().unwrap().clone())
        .collect();
    let ttl = indexes
        .iter()
        .find(|i| i.get_str("name") == Ok("carts_expire_after_a_day"))
        .expect("TTL index");
    assert_eq!(ttl.get("expireAfterSeconds"), Some(&Bson::Int32(86400)));
    let user_indexes = mdb
        .run_command(doc! { "listIndexes": "users" })
        .await
        .unwrap()
        .to_string();
    assert!(
        user_indexes.contains("partialFilterExpression"),
        "{user_indexes}"
    );

    // V4: backfills status, then the collMod validator requires it.
    run(&["up", "--to", "4"]).assert().success();
    assert_eq!(count(&db, "products", doc! { "status": "active" }).await, 1);
    assert!(products
        .insert_one(doc! { "sku": "BK-002", "name": "Pen", "price": 1, "stock": 3 })
        .await
        .is_err());

    // V5: renames full_name to display_name with an aggregation-pipeline update.
    run(&["up"]).assert().success();
    let ada = users.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(ada.get_str("display_name").unwrap(), "Ada Lovelace");
    assert!(ada.get("full_name").is_none());
    run(&["status", "--exit-code"]).assert().success();

    run(&["down"]).assert().success();
    let ada = users.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(ada.get_str("full_name").unwrap(), "Ada Lovelace");
    assert!(ada.get("display_name").is_none());

    run(&["down", "--to", "0"]).assert().success();
    let left: Vec<String> = collections(&db)
        .await
        .into_iter()
        .filter(|c| !c.starts_with("dbkeeper_"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(history(&db).await.is_empty());
    // And up again from scratch, so the downs really restored the starting point.
    run(&["up"]).assert().success();
}

#[tokio::test]
async fn a_killed_runner_leaves_exact_progress_and_its_lease_expires() {
    let db = MongoTestDb::create().await;
    // Enough commands that the run is still going when the test kills it.
    let commands: Vec<String> = (0..3000)
        .map(|i| format!(r#"{{"insert": "slow", "documents": [{{"i": {i}}}]}}"#))
        .collect();
    let up = format!("[{}]", commands.join(",\n"));
    let (work, dir) = migrations(&[("V1__slow.json", &up)]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dbkeeper"))
        .current_dir(work.path())
        .env("DBKEEPER_MONGO_LEASE_SECS", "2")
        .args(["--mongo-url", &db.url, "migrate", "up", "--engine", "mongo"])
        .arg("--mongo-migrations-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = history(&db).await;
        if h.first()
            .and_then(|d| d.get_i64("completed_commands").ok())
            .is_some_and(|n| n >= 10)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the run never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let h = history(&db).await;
    assert_eq!(h[0].get_str("state").unwrap(), "dirty", "{:?}", h[0]);
    let completed = h[0].get_i64("completed_commands").unwrap();
    assert!(completed < 3000, "finished before it was killed");
    // Progress is recorded after each command, so it matches what ran (or is one behind).
    let inserted = count(&db, "slow", doc! {}).await as i64;
    assert!(
        inserted == completed || inserted == completed + 1,
        "{inserted} inserted, {completed} recorded"
    );
    migrate(&db, &dir, &["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("the process may have died"));
    // The dead runner's lease is still there; the next runner waits it out, then refuses the dirty version.
    assert_eq!(count(&db, "dbkeeper_migrations_lock", doc! {}).await, 1);
    migrate(&db, &dir, &["up", "--lock-timeout", "20"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("V1__slow is dirty"));
    migrate(&db, &dir, &["repair", "--dirty", "rolled-back"])
        .assert()
        .success();
    assert!(history(&db).await.is_empty());
}

#[tokio::test]
async fn a_runner_whose_lease_was_taken_over_stops_before_its_next_command() {
    use dbkeeper::migrate::{MigrationEngine, RunInfo};
    use dbkeeper::mongo::migrate::{load_migrations, MongoMigrator};
    use dbkeeper::mongo::MongoTarget;
    use dbkeeper::redact::SecretUrl;

    let db = MongoTestDb::create().await;
    let (_work, dir) = migrations(&[("V1__alpha.json", V1)]);
    let files = load_migrations(&dir).unwrap();
    let target = MongoTarget::new(
        &SecretUrl::new(db.url.clone()),
        &db.name,
        Duration::from_secs(10),
    );
    let mut runner = MongoMigrator::connect_with_lease(&target, Duration::from_secs(1))
        .await
        .unwrap();
    runner.lock(Duration::from_secs(5)).await.unwrap();
    runner.prepare_history().await.unwrap();
    // Another runner takes the lease over (as if ours had expired while we were paused).
    db.db()
        .await
        .collection::<Document>("dbkeeper_migrations_lock")
        .update_one(
            doc! { "_id": "migrate" },
            doc! { "$set": { "token": "the-new-holder", "owner": "someone else" } },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let err = runner
        .apply(&files[0], &RunInfo::current())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("lost the MongoDB migration lock"),
        "{err}"
    );
    assert!(!collections(&db).await.contains(&"alpha".into()));
    assert_eq!(count(&db, "ledger", doc! {}).await, 0);
    // Releasing must not delete the new holder's lease.
    runner.unlock().await.unwrap();
    assert_eq!(count(&db, "dbkeeper_migrations_lock", doc! {}).await, 1);
}

/// With both engines configured, every engine's files are read before any database is touched:
/// a bad MongoDB file stops the run before the PostgreSQL migrations are applied. A migrations
/// directory the user named must exist; with no directory at all (the wrong working directory)
/// nothing "succeeds"; a near-miss file name is warned about instead of silently skipped.
#[tokio::test]
async fn migration_files_of_every_engine_are_checked_before_anything_runs() {
    let (pg, mongo) = (
        common::PgTestDb::create().await,
        MongoTestDb::create().await,
    );
    let (work, mongo_dir) = migrations(&[("V1__bad.json", r#"[{"create": "x"},]"#)]);
    let pg_dir = work.path().join("migrations");
    std::fs::create_dir(&pg_dir).unwrap();
    std::fs::write(pg_dir.join("V1__t.sql"), "CREATE TABLE t (id int);").unwrap();
    std::fs::write(pg_dir.join("V1__t.down.sql"), "DROP TABLE t;").unwrap();
    std::fs::write(pg_dir.join("v2__lowercase.sql"), "CREATE TABLE u (id int);").unwrap();
    let both = |args: &[&str]| {
        let mut cmd = dbkeeper(work.path());
        cmd.args(["--pg-url", &pg.url, "--mongo-url", &mongo.url, "migrate"])
            .args(args);
        cmd
    };

    let out = both(&["up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("V1__bad.json"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("v2__lowercase.sql"),
        "the near-miss name is warned about: {}",
        stderr(&out)
    );
    let applied = pg
        .client()
        .await
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'refinery_schema_history'",
            &[],
        )
        .await
        .unwrap();
    assert!(applied.is_none(), "PostgreSQL was not touched");

    // Fixed: both engines run.
    std::fs::write(mongo_dir.join("V1__bad.json"), r#"[{"create": "x"}]"#).unwrap();
    std::fs::write(mongo_dir.join("V1__bad.down.json"), r#"[{"drop": "x"}]"#).unwrap();
    both(&["up"]).assert().success();

    // A directory named on the command line must exist.
    let out = both(&["up", "--migrations-dir", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nope") && stderr(&out).contains("does not exist"),
        "{}",
        stderr(&out)
    );

    // No migrations directory for any engine: the wrong working directory, not "nothing to do".
    let elsewhere = tempfile::tempdir().unwrap();
    let out = dbkeeper(elsewhere.path())
        .args([
            "--pg-url",
            &pg.url,
            "--mongo-url",
            &mongo.url,
            "migrate",
            "up",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no migrations directory here"),
        "{}",
        stderr(&out)
    );
    // `down` needs no files: it runs the scripts captured at apply time.
    dbkeeper(elsewhere.path())
        .args([
            "--pg-url",
            &pg.url,
            "--mongo-url",
            &mongo.url,
            "migrate",
            "down",
        ])
        .assert()
        .success();
}
