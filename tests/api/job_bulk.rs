//! `POST /jobs/bulk`: retry, cancel or delete every job a filter matches,
//! bounded per call and resumable.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use troupe_actors::queue::handlers::JobHandlers;

use crate::helpers::{assert_problem, find_documents, spawn_manual_app_with_jobs, TestApp};

/// `POST /jobs/bulk` with the ops token.
async fn bulk(app: &TestApp, body: Value) -> Response {
    use secrecy::ExposeSecret;
    app.client
        .post(app.url("/jobs/bulk"))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// A bulk call expected to succeed: its answer.
async fn bulk_ok(app: &TestApp, body: Value) -> Value {
    let response = bulk(app, body).await;
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Two job types whose every attempt fails, and one that completes.
fn handlers() -> JobHandlers {
    JobHandlers::new()
        .with("test.flaky", |_| async {
            Err("the provider is down".into())
        })
        .with("test.other", |_| async {
            Err("the provider is down".into())
        })
        .with("test.ok", |_| async { Ok(Document::new()) })
}

/// An app whose jobs fail for good at their first failure.
async fn app() -> TestApp {
    spawn_manual_app_with_jobs(|s| s.queue.max_attempts = 1, handlers()).await
}

/// Enqueue `n` jobs of `kind`; their ids.
async fn enqueue(app: &TestApp, kind: &str, n: usize) -> Vec<ObjectId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(app.jobs().enqueue(kind, doc! {}).await.unwrap());
    }
    ids
}

async fn status(app: &TestApp, id: ObjectId) -> String {
    app.job(id).await["status"].as_str().unwrap().to_owned()
}

async fn statuses(app: &TestApp, ids: &[ObjectId]) -> Vec<String> {
    let mut all = Vec::new();
    for id in ids {
        all.push(status(app, *id).await);
    }
    all
}

fn all(status: &str, n: usize) -> Vec<String> {
    vec![status.to_owned(); n]
}

#[tokio::test]
async fn a_bulk_retry_puts_back_every_failed_job_of_the_type_and_a_dry_run_changes_nothing() {
    let app = app().await;
    let flaky = enqueue(&app, "test.flaky", 4).await;
    let other = enqueue(&app, "test.other", 2).await;
    assert_eq!(app.run_jobs_until_idle().await.len(), 6);
    assert_eq!(statuses(&app, &flaky).await, all("failed", 4));

    let filter = json!({"type": "test.flaky", "status": "failed"});
    let dry = bulk_ok(
        &app,
        json!({"action": "retry", "filter": filter, "dryRun": true}),
    )
    .await;
    assert_eq!(
        dry,
        json!({"matched": 4, "applied": 0, "more": false, "dryRun": true})
    );
    assert_eq!(
        statuses(&app, &flaky).await,
        all("failed", 4),
        "a dry run changes nothing"
    );

    let done = bulk_ok(&app, json!({"action": "retry", "filter": filter})).await;
    assert_eq!(
        done,
        json!({"matched": 4, "applied": 4, "more": false, "dryRun": false})
    );
    assert_eq!(statuses(&app, &flaky).await, all("pending", 4));
    assert_eq!(
        statuses(&app, &other).await,
        all("failed", 2),
        "another type stays failed"
    );
    // Retried as the single-job route does: a fresh attempt budget, run again.
    let again = app.run_jobs_until_idle().await;
    assert_eq!(again.len(), 4, "the retried jobs run again: {again:?}");
}

#[tokio::test]
async fn a_bulk_call_takes_at_most_its_limit_and_the_next_call_goes_on_where_it_stopped() {
    let app = app().await;
    let ids = enqueue(&app, "test.flaky", 5).await;
    app.run_jobs_until_idle().await;
    let call = json!({"action": "retry", "limit": 2});
    let answers = [
        json!({"matched": 5, "applied": 2, "more": true, "dryRun": false}),
        json!({"matched": 3, "applied": 2, "more": true, "dryRun": false}),
        json!({"matched": 1, "applied": 1, "more": false, "dryRun": false}),
        json!({"matched": 0, "applied": 0, "more": false, "dryRun": false}),
    ];
    for (round, expected) in answers.into_iter().enumerate() {
        assert_eq!(bulk_ok(&app, call.clone()).await, expected, "call {round}");
    }
    // Oldest first: the first call took the first two enqueued.
    assert_eq!(statuses(&app, &ids).await, all("pending", 5));
}

#[tokio::test]
async fn a_bulk_delete_removes_finished_jobs_and_their_history_and_never_a_live_one() {
    let app = app().await;
    let failed = enqueue(&app, "test.flaky", 2).await;
    let completed = enqueue(&app, "test.ok", 2).await;
    app.run_jobs_until_idle().await;
    let pending = enqueue(&app, "test.ok", 2).await;
    let done = bulk_ok(&app, json!({"action": "delete"})).await;
    assert_eq!(
        done,
        json!({"matched": 4, "applied": 4, "more": false, "dryRun": false})
    );
    for id in failed.iter().chain(&completed) {
        let response = app.get_ops(&format!("/jobs/{id}")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "job {id} is gone");
        let history = find_documents(&app.db, "job_attempts", doc! { "jobId": id }).await;
        assert!(
            history.is_empty(),
            "job {id}'s history is gone: {history:?}"
        );
    }
    assert_eq!(
        statuses(&app, &pending).await,
        all("pending", 2),
        "live jobs stay"
    );
}

#[tokio::test]
async fn a_bulk_cancel_takes_only_the_pending_jobs_created_in_the_time_range() {
    let app = app().await;
    let hour = Duration::from_secs(3600);
    let before = enqueue(&app, "test.ok", 2).await;
    app.advance_clock(hour);
    let from = app.jobs().clock().utc();
    let inside = enqueue(&app, "test.ok", 3).await;
    app.advance_clock(hour);
    let to = app.jobs().clock().utc();
    let after = enqueue(&app, "test.ok", 2).await;
    let filter = json!({"type": "test.ok", "from": from.to_rfc3339(), "to": to.to_rfc3339()});
    let done = bulk_ok(&app, json!({"action": "cancel", "filter": filter})).await;
    assert_eq!(
        done,
        json!({"matched": 3, "applied": 3, "more": false, "dryRun": false})
    );
    assert_eq!(statuses(&app, &inside).await, all("cancelled", 3));
    assert_eq!(statuses(&app, &before).await, all("pending", 2));
    assert_eq!(statuses(&app, &after).await, all("pending", 2));
    let ran = app.run_jobs_until_idle().await;
    assert_eq!(ran.len(), 4, "the cancelled jobs never run: {ran:?}");
    assert!(statuses(&app, &inside)
        .await
        .iter()
        .all(|s| s == "cancelled"));
}

#[tokio::test]
async fn bad_bulk_bodies_are_refused_naming_each_field() {
    let app = app().await;
    let cases = [
        (json!({}), vec!["action"]),
        (json!({"action": "purge"}), vec!["action"]),
        (
            json!({"action": "delete", "filter": {"status": "pending"}}),
            vec!["filter.status"],
        ),
        (
            json!({"action": "retry", "filter": {"status": "done"}}),
            vec!["filter.status"],
        ),
        (json!({"action": "retry", "limit": 0}), vec!["limit"]),
        (json!({"action": "retry", "limit": 1001}), vec!["limit"]),
        (json!({"action": "retry", "dryRun": "yes"}), vec!["dryRun"]),
        (
            json!({"action": "retry", "filter": {"from": "yesterday"}}),
            vec!["filter.from"],
        ),
        (
            json!({"action": "retry", "filter": {"from": "2026-12-07T10:00:00Z", "to": "2026-12-07T09:00:00Z"}}),
            vec!["filter.to"],
        ),
        (
            json!({"action": "retry", "filter": {"kind": "x"}}),
            vec!["filter.kind"],
        ),
        (
            json!({"action": "retry", "filter": "failed"}),
            vec!["filter"],
        ),
        (json!({"action": "retry", "force": true}), vec!["force"]),
    ];
    for (body, fields) in cases {
        let problem = assert_problem(bulk(&app, body.clone()).await, StatusCode::BAD_REQUEST).await;
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("errors for {body}: {problem}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "{body}");
    }
    let anonymous = app
        .client
        .post(app.url("/jobs/bulk"))
        .json(&json!({"action": "delete"}))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
}
