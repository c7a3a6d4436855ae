//! MongoDB taken away under the service and brought back.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, eventually, free_port, spawn_app_with, unique_email, PASSWORD,
};

/// A FerretDB of the test's own (over the shared PostgreSQL), on a free port.
struct OwnMongo {
    port: u16,
}

fn services(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
    let status = Command::new(script)
        .args(args)
        .status()
        .expect("run scripts/services");
    assert!(status.success(), "scripts/services {args:?} failed");
}

impl OwnMongo {
    fn start() -> Self {
        let port = free_port();
        let me = Self { port };
        me.up();
        me
    }
    fn up(&self) {
        services(&["mongo-extra", "up", &self.port.to_string()]);
    }
    fn down(&self) {
        services(&["mongo-extra", "down", &self.port.to_string()]);
    }
}

impl Drop for OwnMongo {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test]
async fn a_mongodb_outage_answers_503_promptly_and_recovers_by_itself() {
    // The test runs its own FerretDB; against a MongoDB of your own it is skipped.
    if std::env::var("MONGODB_URI").is_ok_and(|uri| !uri.contains("127.0.0.1:27017")) {
        eprintln!("skipped: MONGODB_URI is not the local FerretDB");
        return;
    }
    let mongo = OwnMongo::start();
    let port = mongo.port;
    let app = spawn_app_with(|s| {
        s.mongodb.uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true").into();
        s.mongodb.timeout = Duration::from_secs(1);
    })
    .await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let id = app.user_id(&tokens.access_token).await;
    assert_eq!(
        app.get(&format!("/users/{id}")).await.status(),
        StatusCode::OK
    ); // now cached

    mongo.down();
    let started = Instant::now();
    let signup = app
        .post_json(
            "/users/signup",
            &json!({"name": "N", "email": unique_email(), "password": PASSWORD}),
        )
        .await;
    assert_problem(signup, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_problem(
        app.login(&email, PASSWORD).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        started.elapsed() < app.settings.server.request_timeout,
        "503 within the request timeout"
    );
    // Readiness probes are shared for a second: wait for a fresh one.
    let ready = eventually(Duration::from_secs(10), "readiness to turn 503", || async {
        let ready = app.get("/health/ready").await;
        (ready.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(ready)
    })
    .await;
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["failing"], json!(["mongodb"]));
    // What Redis holds is still served.
    assert_eq!(
        app.get(&format!("/users/{id}")).await.status(),
        StatusCode::OK
    );

    mongo.up();
    eventually(Duration::from_secs(30), "readiness to recover", || async {
        (app.get("/health/ready").await.status() == StatusCode::OK).then_some(())
    })
    .await;
    // The write acknowledged before the outage is there; new writes work.
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    app.signup(&unique_email()).await;
    drop(app); // removes its database while this FerretDB still runs
}
