//! Issue #28, item 3: handler controls — snooze, progress, results (stored
//! on every store, and waited for with `GET /jobs/{id}/result?wait=`) and
//! per-job `maxAttempts` / `timeout` — against FerretDB and Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use troupe_actors::events::{Event, EventKind, Filter};
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::JobStatus;
use troupe_actors::queue::worker::Polled;

use crate::helpers::{
    assert_problem, eventually, executed, spawn_app_with_jobs, spawn_manual_app_with_jobs, start,
    TestApp,
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

fn oid(id: &Value) -> ObjectId {
    ObjectId::parse_str(id.as_str().expect("an id")).unwrap()
}

/// A handler of `kind` that waits for a permit of the returned gate,
/// then returns `{"done": true}`.
fn gated(kind: &str) -> (JobHandlers, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    let handlers = JobHandlers::new().with(kind, move |_job| {
        let gate = Arc::clone(&held);
        async move {
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            Ok(doc! { "done": true })
        }
    });
    (handlers, gate)
}

#[tokio::test]
async fn a_snoozed_job_runs_again_after_its_delay_without_spending_an_attempt() {
    let handlers = JobHandlers::new().with("test.snooze", |job| async move {
        if job.attempts == 1 {
            return job.snooze(Duration::from_secs(30));
        }
        Ok(doc! { "ran": job.attempts })
    });
    // One attempt only: were the snooze to spend it, the job would fail.
    let app = spawn_manual_app_with_jobs(|s| s.queue.max_attempts = 1, handlers).await;
    let id = app.jobs().enqueue("test.snooze", doc! {}).await.unwrap();
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Pending));
    app.advance_clock(Duration::from_millis(29_999));
    assert_eq!(app.run_one_job().await, Polled::Empty, "not before 30 s");
    app.advance_clock(Duration::from_millis(1));
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Completed));

    let job = app.job(id).await;
    assert_eq!(
        (job["attempts"].as_i64(), job["maxAttempts"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(job["result"], json!({ "ran": 2 }));
    let history = job["history"].as_array().unwrap();
    assert_eq!(history[0]["outcome"], "snoozed");
    assert_eq!(history[0]["error"], "snoozed for 30s");
    assert_eq!(history[1]["outcome"], "completed");
}

#[tokio::test]
async fn a_snooze_longer_than_a_week_fails_the_job_for_good_saying_why() {
    let handlers = JobHandlers::new().with("test.oversleep", |job| async move {
        job.snooze(Duration::from_secs(8 * 24 * 3600))
    });
    let app = spawn_manual_app_with_jobs(|_| {}, handlers).await;
    let id = app.jobs().enqueue("test.oversleep", doc! {}).await.unwrap();
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Failed));
    let job = app.job(id).await;
    assert_eq!(
        job["lastError"],
        "the handler snoozed for 8days; a snooze is at most 7days"
    );
    assert_eq!(job["history"][0]["outcome"], "failed");
}

#[tokio::test]
async fn progress_is_shown_by_the_job_and_published_as_an_event() {
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    let handlers = JobHandlers::new().with("test.progress", move |job| {
        let gate = Arc::clone(&held);
        async move {
            job.progress(40, "copied 4 of 10 files");
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            Ok(Document::new())
        }
    });
    let app = spawn_app_with_jobs(|_| {}, handlers).await;
    let mut events = app.state.actors.registry.subscribe_channel(
        "test-progress",
        Filter::local().kinds(&[EventKind::JobProgress]),
        16,
    );
    let id = app.jobs().enqueue("test.progress", doc! {}).await.unwrap();
    app.nudge();

    let published = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a JobProgress event")
        .expect("the bus");
    let Event::JobProgress {
        job_id,
        job_type,
        attempt,
        percent,
        message,
    } = &published.event
    else {
        panic!("{:?}", published.event);
    };
    assert_eq!(
        (job_id.as_str(), job_type.as_str()),
        (id.to_hex().as_str(), "test.progress")
    );
    assert_eq!((*attempt, *percent), (1, 40));
    assert_eq!(message.as_deref(), Some("copied 4 of 10 files"));
    let json = serde_json::to_value(&*published).unwrap();
    assert_eq!(
        json["jobId"],
        id.to_hex(),
        "camelCase like every event: {json}"
    );

    // Written before it was published: the job shows it while it runs.
    let job = app.job(id).await;
    assert_eq!(job["status"], "processing");
    assert_eq!(job["progress"]["percent"], 40);
    assert_eq!(job["progress"]["message"], "copied 4 of 10 files");
    assert!(job["progress"]["at"].as_str().unwrap().ends_with('Z'));
    gate.add_permits(1);
    app.wait_for_job(id, "completed", Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn a_chatty_handler_is_throttled_and_its_last_report_wins() {
    let handlers = JobHandlers::new().with("test.chatty", |job| async move {
        for percent in 1..=100 {
            job.progress(percent, format!("step {percent}"));
            tokio::task::yield_now().await;
        }
        Ok(Document::new())
    });
    let app = spawn_app_with_jobs(
        |s| s.queue.progress_interval = Duration::from_secs(1),
        handlers,
    )
    .await;
    let mut events = app.state.actors.registry.subscribe_channel(
        "test-chatty",
        Filter::local().kinds(&[EventKind::JobProgress, EventKind::JobCompleted]),
        256,
    );
    let id = app.jobs().enqueue("test.chatty", doc! {}).await.unwrap();
    app.nudge();
    let mut reports = Vec::new();
    loop {
        let published = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("events")
            .expect("the bus");
        match &published.event {
            Event::JobProgress { percent, .. } => reports.push(*percent),
            Event::JobCompleted { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    // 100 reports within a second: the first written, then the last.
    assert!(reports.len() <= 2, "throttled: {reports:?}");
    assert_eq!(
        reports.last(),
        Some(&100),
        "the last report wins: {reports:?}"
    );
    let job = app.job(id).await;
    assert_eq!(job["progress"]["percent"], 100);
    assert_eq!(job["progress"]["message"], "step 100");
}

#[tokio::test]
async fn a_result_with_nested_arrays_survives_the_store_and_reads_back_the_same() {
    let handlers = JobHandlers::new().with("test.matrix", |_job| async {
        Ok(doc! { "matrix": [[1, 2], [3]], "$note": "a.b", "rows": 2 })
    });
    let app = spawn_manual_app_with_jobs(|_| {}, handlers).await;
    let id = app.jobs().enqueue("test.matrix", doc! {}).await.unwrap();
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Completed));
    let expected = json!({ "matrix": [[1, 2], [3]], "$note": "a.b", "rows": 2 });
    assert_eq!(app.job(id).await["result"], expected);
    let answer = app.get_ops(&format!("/jobs/{id}/result")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(
        answer,
        json!({ "id": id.to_hex(), "status": "completed", "result": expected })
    );
}

#[tokio::test]
async fn a_result_too_large_to_keep_fails_the_job_for_good_saying_so() {
    let handlers = JobHandlers::new().with("test.huge", |_job| async {
        Ok(doc! { "blob": "x".repeat(70_000) })
    });
    let app = spawn_manual_app_with_jobs(|_| {}, handlers).await;
    let id = app.jobs().enqueue("test.huge", doc! {}).await.unwrap();
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Failed));
    let answer: Value = app
        .get_ops(&format!("/jobs/{id}/result"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "failed");
    let error = answer["error"].as_str().unwrap();
    assert!(error.starts_with("the result is 700"), "{error}");
    assert!(
        error.ends_with("bytes stored; at most 65536 are kept"),
        "{error}"
    );
}

/// Whether `app` has a request waiting for a job's result (subscribed).
fn waiting(app: &TestApp) -> Option<()> {
    let stats = app.state.actors.registry.stats();
    stats
        .iter()
        .any(|s| s.name.starts_with("sse-result-"))
        .then_some(())
}

/// `GET /jobs/{id}/result?wait=…` from a task of its own: its answer,
/// body and how long it took.
fn wait_for_result(
    app: &TestApp,
    id: ObjectId,
    wait: &str,
) -> tokio::task::JoinHandle<(StatusCode, Value, Duration)> {
    use secrecy::ExposeSecret;
    let request = app
        .client
        .get(app.url(&format!("/jobs/{id}/result?wait={wait}")))
        .bearer_auth(app.settings.ops.token.expose_secret());
    tokio::spawn(async move {
        let started = Instant::now();
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap(), started.elapsed())
    })
}

#[tokio::test]
async fn a_wait_for_a_result_returns_as_soon_as_the_job_finishes() {
    let (handlers, gate) = gated("test.gated");
    let app = spawn_app_with_jobs(|_| {}, handlers).await;
    let id = app.jobs().enqueue("test.gated", doc! {}).await.unwrap();
    app.nudge();
    app.wait_for_job(id, "processing", Duration::from_secs(10))
        .await;
    let answer = wait_for_result(&app, id, "8s");
    eventually(Duration::from_secs(5), "the request waits", || async {
        waiting(&app)
    })
    .await;
    let released = Instant::now();
    gate.add_permits(1);
    let (status, body, _) = answer.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "id": id.to_hex(), "status": "completed", "result": { "done": true } })
    );
    assert!(
        released.elapsed() < Duration::from_secs(4),
        "answered once finished, not at the deadline: {:?}",
        released.elapsed()
    );
}

#[tokio::test]
async fn a_wait_that_ends_first_answers_202_with_the_status() {
    let (handlers, gate) = gated("test.gated");
    let app = spawn_app_with_jobs(|_| {}, handlers).await;
    let id = app.jobs().enqueue("test.gated", doc! {}).await.unwrap();
    app.nudge();
    app.wait_for_job(id, "processing", Duration::from_secs(10))
        .await;
    let (status, body, took) = wait_for_result(&app, id, "400ms").await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({ "id": id.to_hex(), "status": "processing" }));
    assert!(
        took >= Duration::from_millis(400),
        "waited the whole wait: {took:?}"
    );
    gate.add_permits(1);
}

#[tokio::test]
async fn a_wait_sees_a_job_finished_by_another_instance() {
    let (handlers, gate) = gated("test.elsewhere");
    // `a` does not run the type; `b`, on the same database and Redis, does.
    let a = spawn_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let mut b = start(a.settings.clone(), handlers).await;
    b.owns_database = false;
    let id = b.jobs().enqueue("test.elsewhere", doc! {}).await.unwrap();
    b.nudge();
    b.wait_for_job(id, "processing", Duration::from_secs(10))
        .await;
    let answer = wait_for_result(&a, id, "8s");
    eventually(Duration::from_secs(5), "the request waits", || async {
        waiting(&a)
    })
    .await;
    let released = Instant::now();
    gate.add_permits(1);
    let (status, body, _) = answer.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"], json!({ "done": true }));
    assert!(
        released.elapsed() < Duration::from_secs(4),
        "seen through the relay: {:?}",
        released.elapsed()
    );
}

#[tokio::test]
async fn bad_waits_are_400_naming_wait_and_an_unknown_job_is_404() {
    let app = spawn_manual_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let id = app.jobs().enqueue("noop", doc! {}).await.unwrap();
    for wait in ["soon", "-1s", "1h"] {
        let response = app.get_ops(&format!("/jobs/{id}/result?wait={wait}")).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["errors"][0]["field"], "wait", "{wait}: {problem}");
    }
    let pending = app.get_ops(&format!("/jobs/{id}/result")).await;
    assert_eq!(pending.status(), StatusCode::ACCEPTED, "no wait: at once");
    let unknown = app
        .get_ops(&format!("/jobs/{}/result?wait=1s", ObjectId::new()))
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_job_enqueued_with_its_own_max_attempts_fails_after_them() {
    let handlers = JobHandlers::new().with("test.flaky", |_job| async { Err("flaky".into()) });
    let app = spawn_manual_app_with_jobs(|s| s.queue.max_attempts = 5, handlers).await;
    let body = json!({ "type": "test.flaky", "payload": {}, "maxAttempts": 2 });
    let created: Value = enqueue(&app, &body).await.json().await.unwrap();
    assert_eq!(created["maxAttempts"], 2);
    let id = oid(&created["id"]);
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Pending));
    app.advance_clock(Duration::from_secs(60));
    assert_eq!(
        app.run_one_job().await,
        executed(id, JobStatus::Failed),
        "after 2, not 5"
    );
}

#[tokio::test]
async fn a_job_enqueued_with_its_own_timeout_times_out_after_it() {
    let handlers = JobHandlers::new().with("test.slow", |_job| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(Document::new())
    });
    // The queue's timeout (2 s in tests) would let it finish.
    let app = spawn_manual_app_with_jobs(|_| {}, handlers).await;
    let body = json!({ "type": "test.slow", "payload": {}, "timeout": "100ms" });
    let created: Value = enqueue(&app, &body).await.json().await.unwrap();
    assert_eq!(created["timeout"], "100ms");
    let id = oid(&created["id"]);
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Pending));
    let job = app.job(id).await;
    assert_eq!(job["lastError"], "timed out after 100ms");
    assert_eq!(job["history"][0]["outcome"], "timed_out");
}

#[tokio::test]
async fn bad_attempts_and_timeouts_are_400_naming_each_field() {
    let app = spawn_manual_app_with_jobs(|_| {}, JobHandlers::new()).await;
    for (attempts, timeout) in [
        (json!(0), json!("1ms")),
        (json!(101), json!("25h")),
        (json!("3"), json!("soon")),
    ] {
        let body =
            json!({ "type": "noop", "payload": {}, "maxAttempts": attempts, "timeout": timeout });
        let problem = assert_problem(enqueue(&app, &body).await, StatusCode::BAD_REQUEST).await;
        let mut fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["maxAttempts", "timeout"], "{problem}");
    }
    let jobs = app.db.collection::<Document>("jobs");
    assert_eq!(
        jobs.count_documents(doc! {}).await.unwrap(),
        0,
        "nothing written"
    );
}
