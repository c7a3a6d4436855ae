//! `POST /jobs/{id}/retry`: a failed job back in line, with the attempts
//! it was given at enqueue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::JobStatus;
use troupe_actors::queue::{Enqueued, JobSpec};

use crate::helpers::{assert_problem, executed, spawn_manual_app_with_jobs};

#[tokio::test]
async fn retry_puts_a_failed_job_back_and_stats_count_by_status() {
    let fail_first = Arc::new(AtomicU64::new(0));
    let calls = Arc::clone(&fail_first);
    let handlers = JobHandlers::new().with("test.flaky", move |_job| {
        let calls = Arc::clone(&calls);
        async move {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err("first call fails".into()),
                _ => Ok(doc! {"second": true}),
            }
        }
    });
    let app = spawn_manual_app_with_jobs(|s| s.queue.max_attempts = 1, handlers).await;
    let id = app
        .jobs()
        .enqueue("test.flaky", Document::new())
        .await
        .unwrap();
    let done = app.jobs().enqueue("noop", Document::new()).await.unwrap();
    assert_eq!(
        app.run_jobs_until_idle().await,
        [
            executed(id, JobStatus::Failed),
            executed(done, JobStatus::Completed)
        ]
    );

    let stats: Value = app.get_ops("/jobs/stats").await.json().await.unwrap();
    assert_eq!(
        (
            stats["failed"].as_u64(),
            stats["completed"].as_u64(),
            stats["pending"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(stats["completedLastMinute"], 1);
    assert!(stats["oldestPendingAgeSeconds"].is_null());

    assert_problem(
        app.post_ops(&format!("/jobs/{done}/retry")).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_problem(
        app.post_ops(&format!("/jobs/{}/retry", ObjectId::new()))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.post_ops("/jobs/not-an-id/retry").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        app.get_ops(&format!("/jobs/{}", ObjectId::new())).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let response = app.post_ops(&format!("/jobs/{id}/retry")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let retried: Value = response.json().await.unwrap();
    assert_eq!(retried["status"], "pending");
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(id, JobStatus::Completed)]
    );
    let job = app.job(id).await;
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["result"], json!({"second": true}));
    assert_eq!(job["history"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_retried_job_gets_its_own_attempt_budget_again_not_the_queues() {
    let handlers =
        JobHandlers::new().with("test.broken", |_job| async { Err("always fails".into()) });
    let app = spawn_manual_app_with_jobs(|s| s.queue.max_attempts = 5, handlers).await;
    let spec = JobSpec::new("test.broken", Document::new()).max_attempts(1);
    let Ok(Enqueued::Created(id)) = app.state.actors.jobs.enqueue_spec(spec).await else {
        panic!("the job is created");
    };
    let id = id.object_id();
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(id, JobStatus::Failed)]
    );

    let response = app.post_ops(&format!("/jobs/{id}/retry")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let retried: Value = response.json().await.unwrap();
    // One attempt spent, one granted anew: its own budget, not the queue's five.
    assert_eq!(retried["maxAttempts"], 2);
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(id, JobStatus::Failed)]
    );
    let job = app.job(id).await;
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["history"].as_array().unwrap().len(), 2);
}
