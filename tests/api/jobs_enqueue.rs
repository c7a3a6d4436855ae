//! Issue #18 (enqueue half): `POST /jobs` and `JobQueue::enqueue_spec` —
//! delays, priorities, unique keys — against FerretDB and Redis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::JobStatus;

use crate::helpers::{
    assert_problem, eventually, executed, spawn_app, spawn_app_with, spawn_app_with_jobs,
    spawn_manual_app_with_jobs, three_instances, TestApp,
};

/// `POST /jobs` with the ops token.
async fn enqueue(app: &TestApp, body: &Value) -> Response {
    use secrecy::ExposeSecret;
    app.client
        .post(app.url("/jobs"))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(body)
        .send()
        .await
        .expect("request")
}

/// `POST /jobs`, expecting `status`; the job it answers.
async fn enqueued(app: &TestApp, body: &Value, status: StatusCode) -> Value {
    let response = enqueue(app, body).await;
    assert_eq!(response.status(), status, "{body}");
    response.json().await.unwrap()
}

fn oid(job: &Value) -> ObjectId {
    ObjectId::parse_str(job["id"].as_str().unwrap()).unwrap()
}

fn millis(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// A job type whose handler waits for a permit of `gate` (one per job).
fn gated(gate: &Arc<Semaphore>) -> JobHandlers {
    let gate = Arc::clone(gate);
    JobHandlers::new().with("test.gate", move |_job| {
        let gate = Arc::clone(&gate);
        async move {
            gate.acquire().await.expect("open").forget();
            Ok(Document::new())
        }
    })
}

#[tokio::test]
async fn an_enqueued_job_is_shown_with_its_priority_and_key_runs_and_is_counted() {
    let app = spawn_app().await;
    let body = json!({"type": "noop", "payload": {"n": 1}, "priority": 7, "uniqueKey": "smoke"});
    let job = enqueued(&app, &body, StatusCode::CREATED).await;
    assert_eq!(
        (
            &job["type"],
            &job["payload"],
            &job["priority"],
            &job["uniqueKey"]
        ),
        (&json!("noop"), &json!({"n": 1}), &json!(7), &json!("smoke"))
    );
    assert!(
        job["runAt"].is_string() && job["history"].is_array(),
        "{job}"
    );
    let done = app
        .wait_for_job(oid(&job), "completed", Duration::from_secs(20))
        .await;
    assert_eq!(done["priority"], 7);

    let stats: Value = app.get_ops("/jobs/stats").await.json().await.unwrap();
    assert_eq!(stats["byType"]["noop"]["completed"], 1, "{stats}");
    assert_eq!(stats["byPriority"]["7"]["completed"], 1, "{stats}");
    assert_eq!(stats["completed"], 1, "the totals stay: {stats}");
}

/// A `test.record` handler that records each job's `payload.name`, in the
/// order they run.
fn recorder() -> (Arc<Mutex<Vec<String>>>, JobHandlers) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let handlers = JobHandlers::new().with("test.record", move |job| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock()
                .unwrap()
                .push(job.payload.get_str("name").unwrap().to_owned());
            Ok(Document::new())
        }
    });
    (order, handlers)
}

#[tokio::test]
async fn due_jobs_run_by_priority_then_in_order_of_enqueue() {
    let (order, handlers) = recorder();
    let app = spawn_manual_app_with_jobs(|_| {}, handlers).await;
    // Nothing runs until the test says so: every job below is due and
    // waiting when it does.
    for (name, priority) in [("a", 0), ("b", 10), ("c", -5), ("d", 10)] {
        let body = json!({"type": "test.record", "payload": {"name": name}, "priority": priority});
        enqueued(&app, &body, StatusCode::CREATED).await;
        app.advance_clock(Duration::from_millis(1));
    }
    assert_eq!(app.run_jobs_until_idle().await.len(), 4);
    assert_eq!(*order.lock().unwrap(), ["b", "d", "a", "c"]);
}

#[tokio::test]
async fn aging_lets_a_low_priority_job_that_waited_pass_a_newer_high_one() {
    let (order, handlers) = recorder();
    let aging = Duration::from_secs(10);
    let app = spawn_manual_app_with_jobs(|s| s.queue.priority_aging = aging, handlers).await;
    let record = |name: &str, priority: i32| json!({"type": "test.record", "payload": {"name": name}, "priority": priority});
    enqueued(&app, &record("old-low", 0), StatusCode::CREATED).await;
    // 10 priorities' worth of waiting, and a millisecond: the old job ranks
    // ahead of a priority-10 job enqueued now, behind a priority-11 one.
    app.advance_clock(aging * 10 + Duration::from_millis(1));
    enqueued(&app, &record("new-10", 10), StatusCode::CREATED).await;
    enqueued(&app, &record("new-11", 11), StatusCode::CREATED).await;
    assert_eq!(app.run_jobs_until_idle().await.len(), 3);
    assert_eq!(*order.lock().unwrap(), ["new-11", "old-low", "new-10"]);
}

#[tokio::test]
async fn a_delayed_job_is_due_at_its_delay_not_before() {
    let app = spawn_manual_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let job = enqueued(
        &app,
        &json!({"type": "noop", "payload": {}, "delay": "2s"}),
        StatusCode::CREATED,
    )
    .await;
    let (created, run_at) = (millis(&job["createdAt"]), millis(&job["runAt"]));
    assert_eq!(run_at - created, 2000, "{job}");
    app.advance_clock(Duration::from_millis(1999));
    assert!(app.run_jobs_until_idle().await.is_empty(), "ran early");
    app.advance_clock(Duration::from_millis(1));
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(oid(&job), JobStatus::Completed)]
    );
    let done = app.job(oid(&job)).await;
    assert_eq!(millis(&done["history"][0]["startedAt"]), run_at);
}

#[tokio::test]
async fn a_job_due_at_a_given_time_waits_for_it() {
    let app = spawn_manual_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let clock = &app.settings.queue.clock;
    let at = clock.utc() + chrono::Duration::hours(1);
    let body = json!({"type": "noop", "payload": {}, "runAt": at.to_rfc3339()});
    let job = enqueued(&app, &body, StatusCode::CREATED).await;
    assert_eq!(millis(&job["runAt"]), at.timestamp_millis());
    // A millisecond before its time it is still waiting.
    app.advance_clock(Duration::from_millis(3_600_000 - 1));
    assert!(app.run_jobs_until_idle().await.is_empty(), "ran early");
    let response = app.get_ops(&format!("/jobs/{}", oid(&job))).await;
    let now: Value = response.json().await.unwrap();
    assert_eq!(
        (&now["status"], &now["attempts"]),
        (&json!("pending"), &json!(0))
    );
    app.advance_clock(Duration::from_millis(1));
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(oid(&job), JobStatus::Completed)]
    );
}

#[tokio::test]
async fn twenty_concurrent_enqueues_of_one_key_on_three_instances_make_one_job() {
    let gate = Arc::new(Semaphore::new(0));
    let apps = three_instances(|_| {}, gated(&gate)).await;
    let body = json!({"type": "test.gate", "payload": {}, "uniqueKey": "nightly"});
    let answers = join_all((0..20).map(|i| enqueue(&apps[i % 3], &body))).await;
    let mut statuses = Vec::new();
    let mut ids = Vec::new();
    for answer in answers {
        statuses.push(answer.status());
        ids.push(oid(&answer.json::<Value>().await.unwrap()));
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let existing = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((created, existing), (1, 19), "{statuses:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let jobs = apps[0].db.collection::<Document>("jobs");
    assert_eq!(
        jobs.count_documents(doc! {"type": "test.gate"})
            .await
            .unwrap(),
        1
    );

    // Once it has ended, the key is free again: a new job.
    gate.add_permits(1);
    apps[0]
        .wait_for_job(ids[0], "completed", Duration::from_secs(20))
        .await;
    let again = enqueued(&apps[1], &body, StatusCode::CREATED).await;
    assert_ne!(oid(&again), ids[0]);
    gate.add_permits(1);
}

/// Write the key `key` of type `noop` naming `job`, as if written `age` ago.
async fn plant_key(app: &TestApp, key: &str, job: ObjectId, age: Duration) {
    let at = DateTime::from_millis(DateTime::now().timestamp_millis() - age.as_millis() as i64);
    let keys = app.db.collection::<Document>("job_keys");
    keys.insert_one(doc! {"_id": format!("noop\u{1f}{key}"), "jobId": job, "createdAt": at})
        .await
        .unwrap();
}

/// The job the key `key` of type `noop` names.
async fn key_holder(app: &TestApp, key: &str) -> Option<ObjectId> {
    let keys = app.db.collection::<Document>("job_keys");
    let found = keys
        .find_one(doc! {"_id": format!("noop\u{1f}{key}")})
        .await
        .unwrap()?;
    found.get_object_id("jobId").ok()
}

#[tokio::test]
async fn a_key_whose_job_ended_long_ago_without_releasing_it_is_taken_over() {
    // No poller claims: the job below ends only as the test writes it (a
    // poller running it meanwhile would stamp a recent end, a key in flight).
    let app = spawn_manual_app_with_jobs(|_| {}, JobHandlers::new()).await;
    // A completed job whose release was lost, an hour ago.
    let ended = app.jobs().enqueue("noop", Document::new()).await.unwrap();
    let hour_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    app.db
        .collection::<Document>("jobs")
        .update_one(
            doc! {"_id": ended},
            doc! {"$set": {"status": "completed", "completedAt": hour_ago, "updatedAt": hour_ago}},
        )
        .await
        .unwrap();
    plant_key(&app, "lost", ended, Duration::from_secs(3600)).await;
    // And a key whose producer died before writing its job.
    plant_key(&app, "orphan", ObjectId::new(), Duration::from_secs(3600)).await;

    for key in ["lost", "orphan"] {
        let body = json!({"type": "noop", "payload": {}, "uniqueKey": key});
        let job = enqueued(&app, &body, StatusCode::CREATED).await;
        assert_ne!(oid(&job), ended);
        assert_eq!(
            app.run_jobs_until_idle().await,
            [executed(oid(&job), JobStatus::Completed)]
        );
    }
}

#[tokio::test]
async fn a_key_naming_a_job_not_written_yet_is_waited_for_not_taken_over() {
    let app = spawn_app().await;
    // A producer between its two writes (moments ago): the key, no job yet.
    let in_flight = ObjectId::new();
    plant_key(&app, "busy", in_flight, Duration::ZERO).await;
    let body = json!({"type": "noop", "payload": {}, "uniqueKey": "busy"});
    let problem = assert_problem(enqueue(&app, &body).await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("retry"),
        "{problem}"
    );
    assert_eq!(
        key_holder(&app, "busy").await,
        Some(in_flight),
        "not taken over"
    );
    let jobs = app.db.collection::<Document>("jobs");
    assert_eq!(
        jobs.count_documents(doc! {"uniqueKey": "busy"})
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_retried_unique_job_takes_its_key_back_unless_another_job_holds_it() {
    let gate = Arc::new(Semaphore::new(0));
    let app = spawn_app_with_jobs(|s| s.queue.max_attempts = 1, gated(&gate)).await;
    // A unique job of an unregistered-at-run-time kind is not possible; a
    // gated one that times out (2 s) with one attempt fails for good.
    let body = json!({"type": "test.gate", "payload": {}, "uniqueKey": "r"});
    let first = oid(&enqueued(&app, &body, StatusCode::CREATED).await);
    app.wait_for_job(first, "failed", Duration::from_secs(20))
        .await;
    // Its key was released: a second job takes it.
    let second = enqueued(&app, &body, StatusCode::CREATED).await;
    let retry = app.post_ops(&format!("/jobs/{first}/retry")).await;
    assert_problem(retry, StatusCode::CONFLICT).await;
    gate.add_permits(1);
    app.wait_for_job(oid(&second), "completed", Duration::from_secs(20))
        .await;
    eventually(
        Duration::from_secs(5),
        "the second job's key released",
        || async {
            let holder = app.db.collection::<Document>("job_keys");
            (holder.count_documents(doc! {}).await.ok()? == 0).then_some(())
        },
    )
    .await;
    let retry = app.post_ops(&format!("/jobs/{first}/retry")).await;
    assert_eq!(retry.status(), StatusCode::OK);
    gate.add_permits(1);
    app.wait_for_job(first, "completed", Duration::from_secs(20))
        .await;
}

/// The field named by the only error of a 400/413 problem.
async fn refused_field(app: &TestApp, body: Value, status: StatusCode) -> String {
    let problem = assert_problem(enqueue(app, &body).await, status).await;
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{problem}");
    errors[0]["field"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_enqueues_are_refused_naming_the_field_and_nothing_is_written() {
    let app = spawn_app_with(|s| s.queue.max_payload = 1024).await;
    let bad = StatusCode::BAD_REQUEST;
    let cases = [
        (json!({"type": "no.such.type", "payload": {}}), bad, "type"),
        (json!({"payload": {}}), bad, "type"),
        (json!({"type": "noop", "payload": [1, 2]}), bad, "payload"),
        (json!({"type": "noop"}), bad, "payload"),
        (
            json!({"type": "noop", "payload": {"$set": 1}}),
            bad,
            "payload",
        ),
        (
            json!({"type": "noop", "payload": {"a.b": 1}}),
            bad,
            "payload",
        ),
        (
            json!({"type": "noop", "payload": {"x": "y".repeat(2000)}}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload",
        ),
        (
            json!({"type": "noop", "payload": {}, "runAt": "2030-01-01T00:00:00Z", "delay": "5s"}),
            bad,
            "delay",
        ),
        (
            json!({"type": "noop", "payload": {}, "runAt": "tomorrow"}),
            bad,
            "runAt",
        ),
        (
            json!({"type": "noop", "payload": {}, "delay": "soon"}),
            bad,
            "delay",
        ),
        (
            json!({"type": "noop", "payload": {}, "delay": "20years"}),
            bad,
            "runAt",
        ),
        (
            json!({"type": "noop", "payload": {}, "priority": 101}),
            bad,
            "priority",
        ),
        (
            json!({"type": "noop", "payload": {}, "priority": -101}),
            bad,
            "priority",
        ),
        (
            json!({"type": "noop", "payload": {}, "priority": 1.5}),
            bad,
            "priority",
        ),
        (
            json!({"type": "noop", "payload": {}, "uniqueKey": ""}),
            bad,
            "uniqueKey",
        ),
        (
            json!({"type": "noop", "payload": {}, "uniqueKey": "k".repeat(201)}),
            bad,
            "uniqueKey",
        ),
        (
            json!({"type": "noop", "payload": {}, "when": "now"}),
            bad,
            "when",
        ),
    ];
    for (body, status, field) in cases {
        assert_eq!(
            refused_field(&app, body.clone(), status).await,
            field,
            "{body}"
        );
    }
    let jobs = app.db.collection::<Document>("jobs");
    assert_eq!(jobs.count_documents(doc! {}).await.unwrap(), 0);
    // Just within the limits.
    let body = json!({"type": "noop", "payload": {"x": "y".repeat(900)}, "priority": 100, "uniqueKey": "k".repeat(200)});
    enqueued(&app, &body, StatusCode::CREATED).await;
}

#[tokio::test]
async fn enqueueing_needs_the_ops_token_and_is_in_the_openapi_document() {
    let app = spawn_app().await;
    let body = json!({"type": "noop", "payload": {}});
    let anonymous = app.post_json("/jobs", &body).await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let jobs = app.db.collection::<Document>("jobs");
    assert_eq!(jobs.count_documents(doc! {}).await.unwrap(), 0);

    let doc: Value = app.get("/api-json").await.json().await.unwrap();
    let post = &doc["paths"]["/jobs"]["post"];
    for status in ["200", "201", "400", "401", "413"] {
        assert!(post["responses"][status].is_object(), "{status}: {post}");
    }
    let schema = &doc["components"]["schemas"]["EnqueueRequest"]["properties"];
    for field in ["type", "payload", "runAt", "delay", "priority", "uniqueKey"] {
        assert!(schema[field].is_object(), "{field}: {schema}");
    }
    let view = &doc["components"]["schemas"]["JobView"]["properties"];
    assert!(
        view["priority"].is_object() && view["uniqueKey"].is_object(),
        "{view}"
    );
    let stats = &doc["components"]["schemas"]["JobStats"]["properties"];
    assert!(
        stats["byType"].is_object() && stats["byPriority"].is_object(),
        "{stats}"
    );
}
