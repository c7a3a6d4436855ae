//! MongoDB taken away under the service and brought back.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, eventually, free_port, spawn_app_with, unique_email, PASSWORD,
};

/// A FerretDB of the test's own on a free port, over a PostgreSQL database of
/// its own (removed when dropped).
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
        services(&["mongo-extra", "remove", &self.port.to_string()]);
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

#[tokio::test]
async fn a_jobs_end_that_cannot_be_written_in_an_outage_is_retried_and_the_job_is_done_only_once_written(
) {
    use mongodb::bson::doc;
    use troupe_actors::queue::handlers::JobHandlers;
    use troupe_actors::queue::job::{JobStatus, Outcome};

    if std::env::var("MONGODB_URI").is_ok_and(|uri| !uri.contains("127.0.0.1:27017")) {
        eprintln!("skipped: MONGODB_URI is not the local FerretDB");
        return;
    }
    let mongo = OwnMongo::start();
    let port = mongo.port;
    // The handler returns when the test says so (after the store went away).
    let (started, mut running) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (release, released) = tokio::sync::watch::channel(false);
    let handlers = JobHandlers::new().with("test.gate", move |_job| {
        let (started, mut released) = (started.clone(), released.clone());
        async move {
            let _ = started.send(());
            let _ = released.wait_for(|go| *go).await;
            Ok(mongodb::bson::Document::new())
        }
    });
    // One executor: none idle to claim the job again behind the test's back.
    let app = crate::helpers::spawn_app_with_jobs(
        |s| {
            s.mongodb.uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true").into();
            s.mongodb.timeout = Duration::from_secs(1);
            s.queue.executors = 1;
            s.queue.lease = Duration::from_secs(10);
            s.queue.job_timeout = Duration::from_secs(10);
        },
        handlers,
    )
    .await;
    let mut events = app.completions();
    let id = app.jobs().enqueue("test.gate", doc! {}).await.unwrap();
    app.nudge();
    tokio::time::timeout(Duration::from_secs(10), running.recv())
        .await
        .expect("the job to start");

    mongo.down();
    release.send(true).unwrap();
    // Its end cannot be written: for a while (absence has to be watched),
    // the job is done to no one and its executor stays taken.
    let watched = tokio::time::timeout(Duration::from_secs(3), events.recv()).await;
    assert!(watched.is_err(), "no JobCompleted while the store is away");
    let pool = app.state.actors.queue.pool().await.unwrap();
    assert_eq!(pool.busy, 1, "{pool:?}");

    mongo.up();
    tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("JobCompleted once the store is back")
        .expect("the bus");
    let (job, attempts) = app.jobs().get(id).await.unwrap().expect("the job");
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(attempts.len(), 1, "written, not run again");
    assert_eq!(attempts[0].outcome, Outcome::Completed);
    drop(app); // removes its database while this FerretDB still runs
}
