//! Issue #23 (job safety II): job types across a fleet whose instances run
//! different handler sets (a rolling deploy), permanent handler failures
//! and the users' jobs' payloads, payloads no store can keep.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::{Candidate, JobStatus};
use troupe_actors::queue::pause::Pauses;

use crate::helpers::{
    assert_problem, eventually, executed, spawn_app, spawn_app_with_jobs,
    spawn_manual_app_with_jobs, start, TestApp,
};

/// `method path` with the ops token and a JSON body.
async fn ops_json(app: &TestApp, method: Method, path: &str, body: &Value) -> Response {
    use secrecy::ExposeSecret;
    app.client
        .request(method, app.url(path))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(body)
        .send()
        .await
        .expect("request")
}

/// Handlers of `kinds`, each answering which type it ran.
fn handlers(kinds: &[&'static str]) -> JobHandlers {
    kinds.iter().fold(JobHandlers::new(), |jobs, &kind| {
        jobs.with(kind, move |_job| async move { Ok(doc! { "ran": kind }) })
    })
}

/// Two instances on one database: `old` runs `test.both`; `new` runs
/// `test.both` and `test.new` (a newer binary, mid-deploy).
async fn mid_deploy() -> (TestApp, TestApp) {
    let old = spawn_app_with_jobs(|_| {}, handlers(&["test.both"])).await;
    let mut new = start(old.settings.clone(), handlers(&["test.both", "test.new"])).await;
    new.owns_database = false;
    (old, new)
}

fn instance(app: &TestApp) -> String {
    app.state.actors.instance.to_string()
}

fn oid(job: &Value) -> ObjectId {
    ObjectId::parse_str(job["id"].as_str().unwrap()).unwrap()
}

/// The instance each attempt of the job `id` ran on.
async fn ran_on(app: &TestApp, id: ObjectId) -> Vec<String> {
    let job = app.job(id).await;
    let history = job["history"].as_array().expect("a history");
    history
        .iter()
        .map(|a| a["instance"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn in_a_rolling_deploy_no_job_fails_for_want_of_a_handler_and_each_type_runs_where_registered(
) {
    let (old, new) = mid_deploy().await;
    let (mut news, mut boths) = (Vec::new(), Vec::new());
    for app in [&old, &new, &old, &new, &old, &new] {
        news.push(
            app.jobs()
                .enqueue("test.new", Document::new())
                .await
                .unwrap(),
        );
        boths.push(
            app.jobs()
                .enqueue("test.both", Document::new())
                .await
                .unwrap(),
        );
        app.nudge();
    }
    let deadline = Duration::from_secs(30);
    let filter = doc! { "type": { "$in": ["test.new", "test.both"] } };
    old.wait_for_jobs(filter, "completed", 12, deadline).await;
    for id in &news {
        assert_eq!(ran_on(&old, *id).await, [instance(&new)], "test.new");
    }
    let mut where_both = Vec::new();
    for id in &boths {
        let ran = ran_on(&old, *id).await;
        assert_eq!(ran.len(), 1, "one attempt: {ran:?}");
        where_both.extend(ran);
    }
    assert!(where_both
        .iter()
        .all(|i| *i == instance(&old) || *i == instance(&new)));
}

#[tokio::test]
async fn a_claim_by_id_of_a_type_this_instance_does_not_run_takes_nothing() {
    let app = spawn_app().await;
    let id = app
        .jobs()
        .enqueue("test.elsewhere", Document::new())
        .await
        .unwrap();
    let (lease, candidate) = (
        Duration::from_secs(5),
        Candidate::enqueued(id, DateTime::now()),
    );
    let here = app.jobs().handling(["noop".to_owned()].into());
    let claimed = here
        .claim(&candidate, lease, "t", &Pauses::default())
        .await
        .unwrap();
    assert!(claimed.is_none(), "claimed a job of a type it does not run");
    let job = app.job(id).await;
    assert_eq!(
        (&job["status"], &job["attempts"]),
        (&json!("pending"), &json!(0))
    );
    let there = app.jobs().handling(["test.elsewhere".to_owned()].into());
    let claimed = there
        .claim(&candidate, lease, "t", &Pauses::default())
        .await
        .unwrap();
    assert!(claimed.is_some(), "an instance that runs it claims it");
}

#[tokio::test]
async fn enqueueing_a_type_only_another_live_instance_runs_is_accepted_and_runs_there() {
    let (old, new) = mid_deploy().await;
    let body = json!({"type": "test.new", "payload": {}});
    // Accepted once `old` has read `new`'s heartbeat (within one interval).
    let job = eventually(
        Duration::from_secs(10),
        "test.new accepted on old",
        || async {
            let response = ops_json(&old, Method::POST, "/jobs", &body).await;
            (response.status() == StatusCode::CREATED).then_some(response)
        },
    )
    .await;
    let id = oid(&job.json().await.unwrap());
    old.wait_for_job(id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(ran_on(&old, id).await, [instance(&new)]);
    let paused = ops_json(
        &old,
        Method::POST,
        "/jobs/pauses",
        &json!({"type": "test.new"}),
    )
    .await;
    assert_eq!(
        paused.status(),
        StatusCode::OK,
        "a type another instance runs can be paused"
    );
}

#[tokio::test]
async fn enqueueing_a_type_no_live_instance_runs_is_refused_listing_the_registered_types() {
    let app = spawn_app().await;
    let response = ops_json(
        &app,
        Method::POST,
        "/jobs",
        &json!({"type": "nope", "payload": {}}),
    )
    .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(problem["errors"][0]["field"], "type", "{problem}");
    for registered in ["noop", "user.created", "user.login"] {
        assert!(message.contains(registered), "{message}");
    }
    let stats: Value = app.get_ops("/jobs/stats").await.json().await.unwrap();
    let registered = stats["registeredTypes"]
        .as_array()
        .expect("registeredTypes");
    assert!(registered.contains(&json!("noop")), "{stats}");
}

#[tokio::test]
async fn a_pending_job_of_a_type_no_live_instance_runs_waits_and_is_shown_as_unhandled() {
    let app = spawn_app().await;
    let id = app
        .jobs()
        .enqueue("test.gone", Document::new())
        .await
        .unwrap();
    app.nudge();
    let control = app.jobs().enqueue("noop", Document::new()).await.unwrap();
    app.nudge();
    app.wait_for_job(control, "completed", Duration::from_secs(20))
        .await;
    let stats: Value = app.get_ops("/jobs/stats").await.json().await.unwrap();
    assert_eq!(stats["unhandledTypes"], json!(["test.gone"]), "{stats}");
    let job = app.job(id).await;
    assert_eq!(
        (&job["status"], &job["attempts"]),
        (&json!("pending"), &json!(0)),
        "{job}"
    );
}

#[tokio::test]
async fn a_user_job_enqueued_with_the_user_id_as_the_api_shows_it_runs() {
    let app = spawn_app().await;
    let tokens = app.signup(&crate::helpers::unique_email()).await;
    let user = app.user_id(&tokens.access_token).await;
    let at = "2026-01-02T03:04:05Z";
    for (kind, payload) in [
        ("user.login", json!({"userId": user, "at": at})),
        (
            "user.created",
            json!({"userId": user, "email": "x@example.com", "name": "X"}),
        ),
    ] {
        let response = ops_json(
            &app,
            Method::POST,
            "/jobs",
            &json!({"type": kind, "payload": payload}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        let id = oid(&response.json().await.unwrap());
        let job = app
            .wait_for_job(id, "completed", Duration::from_secs(20))
            .await;
        assert_eq!(job["attempts"], 1, "{job}");
    }
}

#[tokio::test]
async fn a_permanent_handler_error_fails_the_job_at_once_with_its_reason() {
    use troupe_actors::queue::handlers::HandlerError;
    let jobs = JobHandlers::new().with("test.strict", |_job| async {
        Err(HandlerError::permanent("payload lacks to"))
    });
    let app = spawn_manual_app_with_jobs(|_| {}, jobs).await;
    let id = app
        .jobs()
        .enqueue("test.strict", Document::new())
        .await
        .unwrap();
    // One run, and the job is failed: no retry is due, however late.
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(id, JobStatus::Failed)]
    );
    app.advance_clock(Duration::from_secs(3600));
    assert_eq!(app.run_jobs_until_idle().await, []);
    let job = app.job(id).await;
    assert_eq!(job["attempts"], 1, "no retry: {job}");
    assert_eq!(job["lastError"], "payload lacks to");
    assert_eq!(job["history"][0]["outcome"], "failed");
}

#[tokio::test]
async fn a_user_job_with_a_malformed_payload_fails_at_once_with_its_reason() {
    let app = spawn_app().await;
    let body = json!({"type": "user.login", "payload": {"userId": "not-an-id"}});
    let response = ops_json(&app, Method::POST, "/jobs", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = oid(&response.json().await.unwrap());
    let job = app
        .wait_for_job(id, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(job["attempts"], 1, "no retry: {job}");
    let reason = "payload's userId must be an ObjectId or its 24 hex digits";
    assert_eq!(job["lastError"], reason);
    assert_eq!(job["history"][0]["error"], reason);
}

#[tokio::test]
async fn a_payload_with_a_nested_array_is_refused_naming_the_payload() {
    let app = spawn_app().await;
    let body = json!({"type": "noop", "payload": {"matrix": [[1, 2], [3]]}});
    let response = ops_json(&app, Method::POST, "/jobs", &body).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"][0]["field"], "payload", "{problem}");
    let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("matrix[0]"), "{message}");
    let fine = json!({"type": "noop", "payload": {"rows": [{"cells": [1, 2]}]}});
    let response = ops_json(&app, Method::POST, "/jobs", &fine).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_write_the_store_refuses_for_good_is_a_refusal_not_an_outage() {
    use troupe_actors::queue::{JobSpec, QueueError, SpecError};
    let app = spawn_app().await;
    // A Rust producer's document skips the API's checks: the store's own
    // refusal (FerretDB cannot store a nested array) is the producer's fault.
    let spec = JobSpec::new("noop", doc! { "m": [[1]] });
    match app.state.actors.jobs.enqueue_spec(spec).await {
        Err(QueueError::Refused(SpecError::PayloadRefused { .. })) => {}
        Ok(_) => {} // a store that keeps it (MongoDB)
        Err(other) => panic!("expected a refusal, got {other:?}"),
    }
}
