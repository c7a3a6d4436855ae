//! Proof against the real thing: the NestJS service (`../shared/seed-app`,
//! found by walking up from the repository, or `TROUPE_NESTJS_DIR`) built
//! and run on a fresh database, users signed up and logged in through its
//! API, stopped with a `processing` job left as its crashed worker would
//! leave it; then Troupe refuses to serve, `troupe migrate` adopts it, and
//! Troupe serves its users and runs its jobs.
//!
//! Needs node and npm, and the npm registry on the first run: the copy, its
//! `node_modules` and `dist` are cached in `target/nestjs/` (built again
//! only when its `package-lock.json` changes).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};
use troupe::config::Settings;
use troupe_actors::queue::handlers::JobHandlers;

use crate::helpers::{
    eventually, find_documents, free_port, observer, remove_stores, start, test_settings,
};
use crate::migrations::refused;

/// The NestJS service's sources.
fn sources() -> PathBuf {
    if let Ok(dir) = std::env::var("TROUPE_NESTJS_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/seed-app"))
        .find(|dir| dir.join("package.json").is_file())
        .expect("the NestJS service's sources (../shared/seed-app or TROUPE_NESTJS_DIR)")
}

fn run(command: &mut std::process::Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{what}: {e} (node and npm must be installed)"));
    assert!(status.success(), "{what} failed: {status}");
}

/// Its built copy in `target/nestjs/seed-app`, built once per lock file
/// (`cp -r`, `npm ci`, `nest build`: shared/ is read-only).
pub fn built() -> PathBuf {
    // One build at a time (the tests of this file run in parallel threads).
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let source = sources();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../nestjs");
    let app = cache.join("seed-app");
    let lock = std::fs::read(source.join("package-lock.json")).unwrap();
    let stamp = app.join(".troupe-built");
    let main = app.join("dist/src/main.js");
    if main.is_file() && std::fs::read(&stamp).ok().as_deref() == Some(&lock[..]) {
        return app;
    }
    let _ = std::fs::remove_dir_all(&app);
    std::fs::create_dir_all(&cache).unwrap();
    run(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(&source)
            .arg(&app),
        "copy the NestJS service",
    );
    run(
        std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&app),
        "npm ci",
    );
    run(
        std::process::Command::new("npx")
            .args(["nest", "build"])
            .current_dir(&app),
        "nest build",
    );
    assert!(main.is_file(), "nest build wrote no {}", main.display());
    std::fs::write(&stamp, lock).unwrap();
    app
}

/// The NestJS service, killed when dropped.
struct Nest {
    child: std::process::Child,
    base: String,
}

impl Drop for Nest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run it on `settings`' database; once it answers `GET /`.
async fn nest(app: &Path, settings: &Settings) -> Nest {
    use secrecy::ExposeSecret;
    let port = free_port();
    let mongo = settings
        .mongodb
        .uri
        .expose_secret()
        .trim_end_matches('/')
        .to_owned();
    let (mongo, query) = mongo
        .split_once('?')
        .map_or((mongo.clone(), String::new()), |(u, q)| {
            (u.to_owned(), format!("?{q}"))
        });
    let redis = url_host_port(settings.redis.url.expose_secret());
    let child = std::process::Command::new("node")
        .arg("dist/src/main.js")
        .current_dir(app)
        .env(
            "MONGODB_URI",
            format!("{mongo}/{}{query}", settings.mongodb.database),
        )
        .env("PORT", port.to_string())
        .env("REDIS_HOST", &redis.0)
        .env("REDIS_PORT", &redis.1)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let nest = Nest {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(60),
        "the NestJS service to answer",
        || {
            let (client, url) = (client.clone(), nest.base.clone());
            async move {
                client
                    .get(&url)
                    .send()
                    .await
                    .ok()?
                    .status()
                    .is_success()
                    .then_some(())
            }
        },
    )
    .await;
    nest
}

fn url_host_port(url: &str) -> (String, String) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = authority.split_once(':').unwrap_or((authority, "6379"));
    (host.to_owned(), port.to_owned())
}

/// Sign up through its API (201 expected); then log in (200 expected).
async fn nest_signup(nest: &Nest, name: &str, email: &str, password: &str, age: Option<u8>) {
    let client = reqwest::Client::new();
    let mut body = json!({"name": name, "email": email, "password": password});
    if let Some(age) = age {
        body["age"] = json!(age);
    }
    let signup = client
        .post(format!("{}/users/signup", nest.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        signup.status(),
        StatusCode::CREATED,
        "NestJS signup of {email}"
    );
    let login = client
        .post(format!("{}/users/login", nest.base))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK, "NestJS login of {email}");
}

const USERS: [(&str, &str, &str, Option<u8>); 3] = [
    (
        "Ann Smith",
        "Ann.Smith@Example.com",
        "ann-password-1",
        Some(41),
    ),
    ("Bo", "bo@example.com", "bo-password-12", None),
    ("Cy", "cy@example.com", "cy-password-123", Some(7)),
];

#[tokio::test]
async fn troupe_takes_over_a_database_the_real_nestjs_service_wrote() {
    let app_dir = tokio::task::spawn_blocking(built).await.unwrap();
    let mut settings = test_settings();
    settings.mongodb.database = format!(
        "troupe_migrate_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let db = observer(&settings).await;
    let nest = nest(&app_dir, &settings).await;
    for (name, email, password, age) in USERS {
        nest_signup(&nest, name, email, password, age).await;
    }
    drop(nest); // stopped (killed: whatever its worker held stays as it was)
                // Its crashed worker's job: `processing`, never finished.
    let bo = find_documents(&db, "users", doc! {"email": "bo@example.com"})
        .await
        .remove(0);
    let bo_id = bo.get_object_id("_id").unwrap();
    let crashed = ObjectId::new();
    let at = DateTime::now();
    db.collection::<Document>("jobs")
        .insert_one(doc! {"_id": crashed, "type": "user.created",
        "payload": {"userId": bo_id.to_hex(), "email": "bo@example.com"},
        "status": "processing", "createdAt": at, "updatedAt": at, "__v": 0})
        .await
        .unwrap();
    let before_users = find_documents(&db, "users", doc! {}).await;
    let text = refused(&settings).await;
    assert!(
        text.contains("adopt-nestjs") && text.contains("`troupe migrate`"),
        "{text}"
    );
    assert_eq!(
        find_documents(&db, "users", doc! {}).await,
        before_users,
        "refusing changed nothing"
    );
    let report = troupe::migrations::migrate(&settings, false).await.unwrap();
    assert!(report.to_string().contains("users adopted: 3"), "{report}");
    let again = troupe::migrations::migrate(&settings, false).await.unwrap();
    assert!(again.migrations.is_empty(), "{again}");

    let app = start(settings.clone(), JobHandlers::new()).await;
    for (name, email, password, age) in USERS {
        let login = app.login(&email.to_uppercase(), password).await;
        assert_eq!(
            login.status(),
            StatusCode::OK,
            "{email} logs in with the old password"
        );
        let tokens: Value = login.json().await.unwrap();
        let profile: Value = app
            .get_bearer("/users/profile", tokens["access_token"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        let old = before_users
            .iter()
            .find(|u| u.get_str("email") == Ok(email))
            .unwrap();
        let id = old.get_object_id("_id").unwrap().to_hex();
        assert_eq!(profile["id"], id.as_str());
        assert_eq!(profile["name"], name);
        assert_eq!(profile["age"].as_u64(), age.map(u64::from));
        let public = app.get(&format!("/users/{id}")).await;
        assert_eq!(public.status(), StatusCode::OK);
    }
    let again = app
        .post_json("/users/signup", &json!({"name": "Ann", "email": "ann.smith@EXAMPLE.COM", "password": "staple gun orbit lantern"}))
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    // Every adopted job that was waiting, and the crashed one, completes.
    app.nudge();
    let finished = app
        .wait_for_job(crashed, "completed", Duration::from_secs(60))
        .await;
    assert_eq!(finished["history"][0]["outcome"], "crashed", "{finished}");
    crate::helpers::all_jobs_completed(&db, Duration::from_secs(60)).await;
    let outbox = std::fs::read_dir(&settings.mail.outbox_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default());
    assert!(
        outbox.into_iter().any(|m| m.contains("bo@example.com")),
        "Bo's welcome e-mail"
    );
    // The jobs the NestJS worker finished are listed like any other.
    let nest_done = find_documents(&db, "jobs", doc! {"_id": {"$ne": crashed}}).await;
    let listed = app.listed_job_ids("status=completed&limit=100").await;
    for job in &nest_done {
        let id = job.get_object_id("_id").unwrap().to_hex();
        assert!(listed.contains(&id), "{id} listed: {listed:?}");
    }
    drop(app);
}

#[tokio::test]
async fn a_nestjs_database_with_colliding_emails_is_refused_with_nothing_changed() {
    let app_dir = tokio::task::spawn_blocking(built).await.unwrap();
    let mut settings = test_settings();
    settings.mongodb.database = format!(
        "troupe_migrate_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let db = observer(&settings).await;
    let nest = nest(&app_dir, &settings).await;
    // Its unique index is case-sensitive: both are accepted.
    nest_signup(&nest, "Dee", "Dee@x.com", "dee-password-1", None).await;
    nest_signup(&nest, "dee", "dee@x.com", "dee-password-2", None).await;
    drop(nest);
    let users = find_documents(&db, "users", doc! {}).await;
    let jobs = find_documents(&db, "jobs", doc! {}).await;
    assert!(refused(&settings).await.contains("adopt-nestjs"));
    let err = troupe::migrations::migrate(&settings, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("e-mail dee@x.com is held by 2 users"), "{err}");
    for user in &users {
        let id = user.get_object_id("_id").unwrap().to_hex();
        assert!(err.contains(&id), "{id} named: {err}");
    }
    assert_eq!(find_documents(&db, "users", doc! {}).await, users);
    assert_eq!(find_documents(&db, "jobs", doc! {}).await, jobs);
    assert!(find_documents(&db, "migrations", doc! {}).await.is_empty());
    remove_stores(&settings).await;
}
