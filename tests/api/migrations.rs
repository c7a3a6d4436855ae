//! Versioned migrations against the real store: start-up initialises an
//! empty database, refuses one with data and pending migrations (or newer
//! breaking ones) before binding, and `troupe migrate` adopts the NestJS
//! service's users and jobs (documents written here in its exact shapes;
//! `nestjs.rs` runs the real service).

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::{Database, IndexModel};
use reqwest::StatusCode;
use serde_json::Value;
use troupe::config::Settings;
use troupe::startup::StartupError;
use troupe::Application;
use troupe_actors::queue::handlers::JobHandlers;

use crate::helpers::{observer, remove_stores, spawn_app, start, test_settings, TestApp, PASSWORD};

/// Build the app on `settings`; the refusal's text (panics if it serves).
pub async fn refused(settings: &Settings) -> String {
    match Application::build(settings.clone()).await {
        Err(err @ StartupError::Refused(_)) => err.to_string(),
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("the service served a database it must refuse"),
    }
}

/// A user as the NestJS service stores it (mongoose, `timestamps: true`).
pub fn nest_user(name: &str, email: &str, age: Option<i32>, password: &str) -> Document {
    let at = DateTime::from_millis(1_700_000_000_000);
    let mut user = doc! {
        "_id": ObjectId::new(), "name": name, "email": email,
        "hash": bcrypt::hash(password, 4).unwrap(),
        "hashedRt": bcrypt::hash("a-refresh-jwt", 4).unwrap(),
        "createdAt": at, "updatedAt": at, "__v": 0,
    };
    if let Some(age) = age {
        user.insert("age", age);
    }
    user
}

/// A job as the NestJS service stores it.
pub fn nest_job(kind: &str, payload: Document, status: &str, at_ms: i64) -> Document {
    let at = DateTime::from_millis(at_ms);
    doc! { "_id": ObjectId::new(), "type": kind, "payload": payload, "status": status,
    "createdAt": at, "updatedAt": at, "__v": 0 }
}

/// The NestJS service's one index: `email`, unique, case-sensitive.
pub async fn nest_indexes(db: &Database) {
    let unique = mongodb::options::IndexOptions::builder()
        .unique(true)
        .name("email_1".to_string())
        .build();
    let index = IndexModel::builder()
        .keys(doc! { "email": 1 })
        .options(unique)
        .build();
    db.collection::<Document>("users")
        .create_index(index)
        .await
        .unwrap();
}

async fn records(db: &Database) -> Vec<i32> {
    let mut versions: Vec<i32> = db
        .collection::<Document>("migrations")
        .distinct("_id", doc! {})
        .await
        .unwrap()
        .into_iter()
        .filter_map(|v| v.as_i32())
        .collect();
    versions.sort();
    versions
}

async fn count(db: &Database, collection: &str, filter: Document) -> u64 {
    db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_empty_database_is_initialised_at_start_every_migration_recorded() {
    let app = spawn_app().await;
    assert_eq!(records(&app.db).await, [1, 2]);
    let baseline = app
        .db
        .collection::<Document>("migrations")
        .find_one(doc! { "_id": 1 })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(baseline.get_str("name").unwrap(), "baseline-indexes");
    assert_eq!(
        baseline.get_str("by").unwrap(),
        &*app.state.actors.instance,
        "recorded by the instance that applied it"
    );
    let indexes = app
        .db
        .collection::<Document>("jobs")
        .list_index_names()
        .await
        .unwrap();
    assert!(
        indexes.contains(&"status_1_rank_1".to_string()),
        "{indexes:?}"
    );
    // Another instance on it serves at once (nothing pending).
    let mut second = start(app.settings.clone(), JobHandlers::new()).await;
    second.owns_database = false;
    assert_eq!(second.get("/health/ready").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_troupe_database_from_before_migrations_is_recorded_at_start_and_served() {
    let mut app = spawn_app().await;
    let email = crate::helpers::unique_email();
    app.signup(&email).await;
    app.stop().await.unwrap();
    // Troupe before migrations: its data and indexes, no records.
    app.db
        .collection::<Document>("migrations")
        .drop()
        .await
        .unwrap();
    let mut served = start(app.settings.clone(), JobHandlers::new()).await;
    served.owns_database = false;
    assert_eq!(records(&app.db).await, [1, 2]);
    assert_eq!(
        served.login(&email, PASSWORD).await.status(),
        StatusCode::OK
    );
    served.stop().await.unwrap();
    // Recorded, it is like any other: a pending migration (here: a record
    // removed) on its data is refused, naming it and `troupe migrate`.
    app.db
        .collection::<Document>("migrations")
        .delete_one(doc! { "_id": 2 })
        .await
        .unwrap();
    let text = refused(&app.settings).await;
    assert!(
        text.contains("pending migrations (2 adopt-nestjs)") && text.contains("`troupe migrate`"),
        "{text}"
    );
    assert_eq!(records(&app.db).await, [1], "the refusal changed nothing");
    let report = troupe::migrations::migrate(&app.settings, false)
        .await
        .unwrap();
    assert!(report.to_string().contains("users adopted: 0"), "{report}");
    assert_eq!(records(&app.db).await, [1, 2]);
}

#[tokio::test]
async fn a_breaking_migration_unknown_to_this_binary_is_refused_before_binding() {
    let mut app = spawn_app().await;
    app.stop().await.unwrap();
    app.db
        .collection::<Document>("migrations")
        .insert_one(
            doc! { "_id": 99, "name": "from-the-future", "description": "",
            "compat": "breaking", "appliedAt": DateTime::now(), "by": "a newer binary" },
        )
        .await
        .unwrap();
    // The port is taken: were it bound before the check, this would be a
    // Bind error instead.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = app.settings.clone();
    settings.server.port = taken.local_addr().unwrap().port();
    let text = refused(&settings).await;
    assert!(
        text.contains("99 from-the-future") && text.contains("newer Troupe"),
        "{text}"
    );
    let err = troupe::migrations::migrate(&settings, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newer Troupe"), "{err}");
}

/// Two NestJS users (one with an e-mail in mixed case, one without an age),
/// and its jobs in every status.
struct NestData {
    ann: Document,
    bo: Document,
    pending: ObjectId,
    crashed: ObjectId,
    completed: ObjectId,
    failed: ObjectId,
}

async fn write_nest_data(db: &Database) -> NestData {
    nest_indexes(db).await;
    let ann = nest_user(
        "Ann Smith",
        "Ann.Smith@Example.com",
        Some(41),
        "ann-password-1",
    );
    let bo = nest_user("Bo", "bo@example.com", None, "bo-password-12");
    db.collection::<Document>("users")
        .insert_many([&ann, &bo])
        .await
        .unwrap();
    let hex = |u: &Document| u.get_object_id("_id").unwrap().to_hex();
    let jobs = [
        nest_job(
            "user.created",
            doc! {"userId": hex(&ann), "email": "Ann.Smith@Example.com"},
            "pending",
            1_700_000_001_000,
        ),
        nest_job(
            "user.created",
            doc! {"userId": hex(&bo), "email": "bo@example.com"},
            "processing",
            1_700_000_000_500,
        ),
        nest_job(
            "user.login",
            doc! {"userId": hex(&ann)},
            "completed",
            1_700_000_000_100,
        ),
        nest_job(
            "user.login",
            doc! {"userId": hex(&bo)},
            "failed",
            1_700_000_000_200,
        ),
    ];
    let mut jobs = jobs.to_vec();
    jobs[2].insert("result", "Success");
    jobs[3].insert("error", "boom");
    db.collection::<Document>("jobs")
        .insert_many(&jobs)
        .await
        .unwrap();
    let id = |j: &Document| j.get_object_id("_id").unwrap();
    NestData {
        pending: id(&jobs[0]),
        crashed: id(&jobs[1]),
        completed: id(&jobs[2]),
        failed: id(&jobs[3]),
        ann,
        bo,
    }
}

#[tokio::test]
async fn troupe_migrate_adopts_the_nestjs_users_and_jobs() {
    let settings = test_settings();
    let db = observer(&settings).await;
    let nest = write_nest_data(&db).await;
    // Refused before anything changes.
    let text = refused(&settings).await;
    assert!(
        text.contains("2 adopt-nestjs") && text.contains("`troupe migrate`"),
        "{text}"
    );
    // The dry run says what would change, and changes nothing.
    let plan = troupe::migrations::migrate(&settings, true).await.unwrap();
    let plan = plan.to_string();
    assert!(plan.contains("users to adopt: 2"), "{plan}");
    assert!(
        plan.contains("pending 1, processing 1, completed 1, failed 1"),
        "{plan}"
    );
    assert_eq!(
        count(&db, "users", doc! {"hash": {"$exists": true}}).await,
        2
    );
    assert!(records(&db).await.is_empty());
    // Applied: the summary; a second run changes nothing.
    let report = troupe::migrations::migrate(&settings, false).await.unwrap();
    let text = report.to_string();
    assert!(
        text.contains("users adopted: 2") && text.contains("logs in once more"),
        "{text}"
    );
    assert!(text.contains("queue.retention"), "{text}");
    assert_eq!(records(&db).await, [1, 2]);
    let again = troupe::migrations::migrate(&settings, false).await.unwrap();
    assert!(again.migrations.is_empty(), "{again}");
    // Stored in Troupe's shape.
    let ann_id = nest.ann.get_object_id("_id").unwrap();
    let ann = db
        .collection::<Document>("users")
        .find_one(doc! {"_id": ann_id})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.get_str("email").unwrap(), "ann.smith@example.com");
    assert_eq!(
        ann.get_str("passwordHash").unwrap(),
        nest.ann.get_str("hash").unwrap()
    );
    assert!(!ann.get_bool("emailVerified").unwrap());
    for gone in ["hash", "hashedRt", "__v"] {
        assert!(!ann.contains_key(gone), "{gone} dropped: {ann}");
    }
    let app = start(settings, JobHandlers::new()).await;
    serves_the_adopted_users(&app, &nest).await;
    runs_and_lists_the_adopted_jobs(&app, &nest).await;
}

async fn serves_the_adopted_users(app: &TestApp, nest: &NestData) {
    let login = app.login("ANN.SMITH@example.COM", "ann-password-1").await;
    assert_eq!(login.status(), StatusCode::OK, "the old password, any case");
    let tokens: Value = login.json().await.unwrap();
    let profile: Value = app
        .get_bearer("/users/profile", tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let ann_id = nest.ann.get_object_id("_id").unwrap().to_hex();
    assert_eq!(profile["id"], ann_id.as_str());
    assert_eq!(
        (profile["name"].as_str(), profile["age"].as_i64()),
        (Some("Ann Smith"), Some(41))
    );
    let bo_id = nest.bo.get_object_id("_id").unwrap().to_hex();
    assert_eq!(
        app.login("bo@example.com", "bo-password-12").await.status(),
        StatusCode::OK
    );
    let public = app.get(&format!("/users/{bo_id}")).await;
    assert_eq!(public.status(), StatusCode::OK);
    assert_eq!(public.json::<Value>().await.unwrap()["name"], "Bo");
    let again = app
        .post_json(
            "/users/signup",
            &serde_json::json!({"name": "Ann", "email": "ann.smith@EXAMPLE.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

async fn runs_and_lists_the_adopted_jobs(app: &TestApp, nest: &NestData) {
    app.nudge();
    let deadline = Duration::from_secs(30);
    app.wait_for_job(nest.pending, "completed", deadline).await;
    let crashed = app.wait_for_job(nest.crashed, "completed", deadline).await;
    let history = crashed["history"].as_array().unwrap();
    assert_eq!(history[0]["outcome"], "crashed", "{crashed}");
    assert_eq!(history[0]["instance"], "nestjs");
    let outbox_has = |who: &str| {
        std::fs::read_dir(&app.settings.mail.outbox_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| {
                std::fs::read_to_string(f.path())
                    .unwrap_or_default()
                    .contains(who)
            })
    };
    assert!(outbox_has("ann.smith@example.com") && outbox_has("bo@example.com"));
    for (status, id) in [("completed", nest.completed), ("failed", nest.failed)] {
        let ids = app
            .listed_job_ids(&format!("status={status}&type=user.login"))
            .await;
        assert!(ids.contains(&id.to_hex()), "{status}: {ids:?}");
    }
    let failed = app.job(nest.failed).await;
    assert_eq!(failed["lastError"], "boom", "{failed}");
    let _ = Bson::Null;
}

#[tokio::test]
async fn colliding_or_invalid_nestjs_users_stop_the_migration_with_nothing_changed() {
    let settings = test_settings();
    let db = observer(&settings).await;
    nest_indexes(&db).await;
    let users = [
        nest_user("Bob", "Bob@x.com", Some(30), "password-one"),
        nest_user("bob", "bob@x.com", None, "password-two"),
        nest_user("Old", "old@x.com", Some(200), "password-three"),
        nest_user("Bad", "not an address", None, "password-four"),
    ];
    db.collection::<Document>("users")
        .insert_many(&users)
        .await
        .unwrap();
    let before: Vec<Document> = {
        use futures::TryStreamExt;
        db.collection::<Document>("users")
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert!(refused(&settings).await.contains("adopt-nestjs"));
    let plan = troupe::migrations::migrate(&settings, true).await;
    assert_ne!(
        troupe::migrations::exit_code(&plan),
        std::process::ExitCode::SUCCESS
    );
    let plan = plan.unwrap().to_string();
    let err = troupe::migrations::migrate(&settings, false)
        .await
        .unwrap_err()
        .to_string();
    let id = |i: usize| users[i].get_object_id("_id").unwrap().to_hex();
    for text in [&plan, &err] {
        assert!(
            text.contains("e-mail bob@x.com is held by 2 users"),
            "{text}"
        );
        assert!(text.contains(&id(0)) && text.contains(&id(1)), "{text}");
        assert!(text.contains(&format!("user {}: age 200", id(2))), "{text}");
        assert!(text.contains(&format!("user {}: e-mail", id(3))), "{text}");
    }
    assert!(err.contains("nothing was changed"), "{err}");
    let after: Vec<Document> = {
        use futures::TryStreamExt;
        db.collection::<Document>("users")
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(before, after);
    assert!(records(&db).await.is_empty());
    let jobs_indexes = db
        .collection::<Document>("jobs")
        .list_index_names()
        .await
        .unwrap_or_default();
    assert!(
        jobs_indexes.len() <= 1,
        "no index created: {jobs_indexes:?}"
    );
    remove_stores(&settings).await;
}

#[tokio::test]
async fn an_unreadable_job_is_skipped_in_lists_and_answered_alone_naming_the_migration() {
    let app = spawn_app().await;
    let readable = app
        .jobs()
        .enqueue("noop.never", Document::new())
        .await
        .unwrap();
    // A NestJS-shaped job written behind the service's back.
    let foreign = nest_job(
        "user.login",
        doc! {"userId": "x"},
        "pending",
        1_700_000_000_000,
    );
    let foreign_id = foreign.get_object_id("_id").unwrap();
    app.db
        .collection::<Document>("jobs")
        .insert_one(&foreign)
        .await
        .unwrap();
    let list = app.get_ops("/jobs?limit=10").await;
    assert_eq!(list.status(), StatusCode::OK);
    let page: Value = list.json().await.unwrap();
    let ids: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, [readable.to_hex().as_str()], "{page}");
    let one = app.get_ops(&format!("/jobs/{foreign_id}")).await;
    let problem = crate::helpers::assert_problem(one, StatusCode::CONFLICT).await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("troupe migrate") && detail.contains("adopt-nestjs"),
        "{problem}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("troupe_unreadable_documents_total{collection=\"jobs\"}"),
        "counted"
    );
}

#[tokio::test]
async fn an_unreadable_user_is_answered_alone_naming_the_migration_not_503() {
    let app = spawn_app().await;
    let readable = crate::helpers::unique_email();
    app.signup(&readable).await;
    // A NestJS-shaped user written behind the service's back.
    let foreign = nest_user("Nest", "nest-user@example.com", Some(30), "nest-password");
    let id = foreign.get_object_id("_id").unwrap();
    app.db
        .collection::<Document>("users")
        .insert_one(&foreign)
        .await
        .unwrap();
    let one = app.get(&format!("/users/{id}")).await;
    let problem = crate::helpers::assert_problem(one, StatusCode::CONFLICT).await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("troupe migrate") && detail.contains("adopt-nestjs"),
        "{problem}"
    );
    let login = app.login("nest-user@example.com", "nest-password").await;
    crate::helpers::assert_problem(login, StatusCode::CONFLICT).await;
    // Everyone else is served as before.
    assert_eq!(
        app.login(&readable, PASSWORD).await.status(),
        StatusCode::OK
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("troupe_unreadable_documents_total{collection=\"users\"}"));
}

/// `troupe args…` (the built binary) against `settings`' stores, from the
/// environment alone: (exit code, stdout, stderr).
async fn troupe_binary(
    settings: &Settings,
    args: &[&str],
    extra: &[(&str, &str)],
) -> (i32, String, String) {
    use secrecy::ExposeSecret;
    let log_dir = crate::helpers::log_dir();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_troupe"))
        .env_clear()
        .env("TROUPE_ENV", "test")
        .env("TROUPE_CONFIG_DIR", crate::helpers::config_dir())
        .env("MONGODB_URI", settings.mongodb.uri.expose_secret())
        .env("MONGODB_DB", &settings.mongodb.database)
        .env("REDIS_URL", settings.redis.url.expose_secret())
        .env("REDIS_KEY_PREFIX", &settings.redis.key_prefix)
        .env("LOG_DIR", &log_dir)
        .env("PORT", "0")
        .envs(extra.iter().copied())
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the binary answers within a minute")
        .expect("the binary runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[tokio::test]
async fn the_binary_refuses_to_serve_nestjs_data_with_exit_3_and_migrates_it_by_command() {
    let settings = test_settings();
    let db = observer(&settings).await;
    write_nest_data(&db).await;
    let (code, _, stderr) = troupe_binary(&settings, &["serve"], &[]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("troupe migrate") && stderr.contains("adopt-nestjs"),
        "{stderr}"
    );

    let (code, status, _) = troupe_binary(&settings, &["migrate", "status"], &[]).await;
    assert_eq!(code, 0);
    assert!(
        status.contains("pending  2 adopt-nestjs (breaking)"),
        "{status}"
    );
    let (code, plan, _) = troupe_binary(&settings, &["migrate", "--dry-run"], &[]).await;
    assert_eq!(code, 0, "{plan}");
    assert!(
        plan.contains("users to adopt: 2") && plan.contains("nothing was changed"),
        "{plan}"
    );
    assert_eq!(
        count(&db, "users", doc! {"hash": {"$exists": true}}).await,
        2
    );
    assert!(records(&db).await.is_empty());

    let (code, report, stderr) = troupe_binary(&settings, &["migrate"], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(report.contains("users adopted: 2"), "{report}");
    assert_eq!(
        count(&db, "users", doc! {"hash": {"$exists": true}}).await,
        0
    );
    let (code, again, _) = troupe_binary(&settings, &["migrate"], &[]).await;
    assert_eq!(code, 0);
    assert!(again.contains("no pending migrations"), "{again}");
    let (_, status, _) = troupe_binary(&settings, &["migrate", "status"], &[]).await;
    assert!(
        status.contains("up to date") && status.contains("applied  2 adopt-nestjs"),
        "{status}"
    );
    remove_stores(&settings).await;
}

#[tokio::test]
async fn migrate_against_an_unreachable_mongodb_is_one_line_naming_mongodb_uri() {
    let settings = test_settings();
    let unreachable = [
        ("MONGODB_URI", "mongodb://127.0.0.1:1"),
        ("TROUPE__MONGODB__TIMEOUT", "200ms"),
    ];
    for args in [&["migrate"][..], &["migrate", "status"]] {
        let (code, stdout, stderr) = troupe_binary(&settings, args, &unreachable).await;
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("MONGODB_URI"), "{stderr}");
        assert!(!stderr.contains("Topology"), "{stderr}");
    }
}

#[tokio::test]
async fn the_openapi_document_names_the_409_of_an_unreadable_account() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api-json").await.json().await.unwrap();
    for (path, method) in [
        ("/users/login", "post"),
        ("/users/refresh", "post"),
        ("/users/profile", "get"),
        ("/users/profile", "patch"),
        ("/users/{id}", "get"),
    ] {
        let conflict = &doc["paths"][path][method]["responses"]["409"];
        assert!(
            conflict["description"]
                .as_str()
                .is_some_and(|text| text.contains("troupe migrate")),
            "{method} {path}: {conflict}"
        );
    }
}
