//! Finished attempts written in bulk (`queue.finish_batch`,
//! `queue.finish_delay`): no one sees a job done before its end is
//! durable, one refused document fails only its own job, and a process
//! killed before the write runs the job again with the attempt recorded.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Document};
use tokio::sync::mpsc;
use troupe_actors::events::{Event, EventKind, Filter};
use troupe_actors::queue::handlers::{HandlerError, JobHandlers};
use troupe_actors::queue::job::{Job, JobStatus, Outcome};

use crate::helpers::{eventually, free_port, spawn_app_with_jobs, start, test_settings, TestApp};

/// A handler that tells the test (on the returned channel) each time it
/// returns, with the job's id.
fn signalling(kind: &str) -> (JobHandlers, mpsc::UnboundedReceiver<ObjectId>) {
    let (ran, returned) = mpsc::unbounded_channel();
    let handlers = JobHandlers::new().with(kind, move |job| {
        let ran = ran.clone();
        async move {
            let _ = ran.send(job.id);
            Ok(Document::new())
        }
    });
    (handlers, returned)
}

async fn job_and_attempts(
    app: &TestApp,
    id: ObjectId,
) -> (Job, Vec<troupe_actors::queue::job::Attempt>) {
    app.jobs().get(id).await.unwrap().expect("the job")
}

#[tokio::test]
async fn a_finished_job_counts_as_done_to_no_one_before_its_batch_is_written() {
    let (handlers, mut returned) = signalling("test.signal");
    // Endings wait most of a second for company: a window to look in.
    let app = spawn_app_with_jobs(
        |s| s.queue.finish_delay = Duration::from_millis(900),
        handlers,
    )
    .await;
    let mut events = app.state.actors.registry.subscribe_channel(
        "test",
        Filter::local().kinds(&[EventKind::JobCompleted]),
        16,
    );
    let id = app.jobs().enqueue("test.signal", doc! {}).await.unwrap();
    app.nudge();
    let ran = tokio::time::timeout(Duration::from_secs(10), returned.recv()).await;
    assert_eq!(ran.unwrap(), Some(id), "the handler ran and returned");

    // The handler returned; its end waits for the batch to be written.
    let (job, attempts) = job_and_attempts(&app, id).await;
    assert_eq!(job.status, JobStatus::Processing);
    assert_eq!(attempts[0].outcome, Outcome::Running);
    assert!(events.try_recv().is_err(), "no JobCompleted yet");
    let pool = app.state.actors.queue.pool().await.unwrap();
    let busy = |pool: &troupe_actors::queue::pool::PoolInfo| {
        pool.executors
            .iter()
            .any(|e| e.job.as_deref() == Some(id.to_hex().as_str()))
    };
    assert!(busy(&pool), "its executor slot is still taken: {pool:?}");

    // The event comes once the end is durable, and not before.
    let published = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("JobCompleted")
        .expect("the bus");
    let (job, attempts) = job_and_attempts(&app, id).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(attempts[0].outcome, Outcome::Completed);
    assert!(
        matches!(&published.event, Event::JobCompleted { job_id, .. } if *job_id == id.to_hex())
    );
    let pool = app.state.actors.queue.pool().await.unwrap();
    assert!(!busy(&pool), "its slot is free once written");
}

#[tokio::test]
async fn endings_of_one_batch_share_one_write_per_collection_and_each_record_keeps_its_own_outcome()
{
    let handlers = JobHandlers::new().with("test.mixed", |job| async move {
        match job.payload.get_str("mode").unwrap_or_default() {
            "ok" => Ok(doc! { "done": true }),
            "fail" => Err(HandlerError::permanent("no retry can mend this")),
            _ => Err("a flaky dependency".into()),
        }
    });
    // Four executors (the test profile's) and batches of four: the four
    // jobs' endings go in one batch, whatever order they finish in.
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.finish_batch = 4;
            s.queue.finish_delay = Duration::from_secs(1);
            s.queue.backoff_base = Duration::from_secs(3600);
            s.queue.backoff_max = Duration::from_secs(3600);
        },
        handlers,
    )
    .await;
    let commands = &app.state.mongo_commands;
    let updates = || {
        [
            commands.sent_on("update", "job_attempts"),
            commands.sent_on("update", "jobs"),
        ]
    };
    let before = updates();
    let mut ids = Vec::new();
    for mode in ["ok", "fail", "retry", "ok"] {
        let id = app
            .jobs()
            .enqueue("test.mixed", doc! { "mode": mode })
            .await
            .unwrap();
        ids.push(id);
    }
    app.nudge();
    let settled = doc! { "_id": { "$in": &ids }, "status": { "$ne": "processing" }, "attempts": 1 };
    let jobs = app.db.collection::<Document>("jobs");
    eventually(Duration::from_secs(10), "the four ends written", || {
        let (jobs, settled) = (jobs.clone(), settled.clone());
        async move { (jobs.count_documents(settled).await.ok()? == 4).then_some(()) }
    })
    .await;
    let after = updates();
    assert_eq!(
        [after[0] - before[0], after[1] - before[1]],
        [1, 1],
        "one update of the attempt records, one of the jobs"
    );
    let expected = [
        (JobStatus::Completed, Outcome::Completed),
        (JobStatus::Failed, Outcome::Failed),
        (JobStatus::Pending, Outcome::Failed),
        (JobStatus::Completed, Outcome::Completed),
    ];
    for (id, (status, outcome)) in ids.iter().zip(expected) {
        let (job, attempts) = job_and_attempts(&app, *id).await;
        assert_eq!(job.status, status, "{id}");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, outcome, "{id}");
        assert!(attempts[0].finished_at.is_some());
    }
}

#[tokio::test]
async fn a_document_the_store_refuses_fails_only_its_own_job_and_the_rest_of_its_batch_completes() {
    // FerretDB v1 cannot store NUL in a string; MongoDB can.
    if std::env::var("MONGODB_URI").is_ok_and(|uri| !uri.contains("127.0.0.1:27017")) {
        eprintln!("skipped: MONGODB_URI is not the local FerretDB");
        return;
    }
    let handlers = JobHandlers::new().with("test.result", |job| async move {
        match job.payload.get_bool("storable").unwrap_or(true) {
            true => Ok(doc! { "m": [1] }),
            false => Ok(doc! { "m": "a\0b" }),
        }
    });
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.finish_batch = 3;
            s.queue.finish_delay = Duration::from_secs(1);
        },
        handlers,
    )
    .await;
    let mut events = app.state.actors.registry.subscribe_channel(
        "test",
        Filter::local().kinds(&[EventKind::JobCompleted]),
        16,
    );
    let mut ids = Vec::new();
    for storable in [true, false, true] {
        let payload = doc! { "storable": storable };
        ids.push(app.jobs().enqueue("test.result", payload).await.unwrap());
    }
    app.nudge();
    let mut completed = Vec::new();
    for _ in 0..2 {
        let published = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("JobCompleted")
            .expect("the bus");
        if let Event::JobCompleted { job_id, .. } = &published.event {
            completed.push(job_id.clone());
        }
    }
    completed.sort();
    let mut storable = vec![ids[0].to_hex(), ids[2].to_hex()];
    storable.sort();
    assert_eq!(completed, storable, "the storable two completed");
    for id in [ids[0], ids[2]] {
        assert_eq!(
            job_and_attempts(&app, id).await.0.status,
            JobStatus::Completed
        );
    }
    let (refused, _) = job_and_attempts(&app, ids[1]).await;
    assert_eq!(
        refused.status,
        JobStatus::Processing,
        "not done: it settles when its lease expires"
    );
    assert!(events.try_recv().is_err(), "no JobCompleted for it");
}

#[tokio::test]
async fn a_job_whose_end_was_not_written_when_its_instance_was_killed_runs_again_with_the_attempt_recorded_crashed(
) {
    let settings = test_settings();
    let db = crate::helpers::observer(&settings).await;
    // The killed binary holds each end 1.5 s before writing it.
    let mut command = crate::helpers::binary_command(&settings, free_port(), "4s");
    command.env("TROUPE__QUEUE__FINISH_DELAY", "1500ms");
    let mut process = crate::helpers::Process {
        child: command.spawn().expect("start the troupe binary"),
    };
    let job = Job::new("noop", Document::new(), 5);
    let id = job.id;
    db.collection::<Job>("jobs").insert_one(&job).await.unwrap();
    let jobs = db.collection::<Document>("jobs");
    // Claimed: a noop returns at once, and its end then waits in the batch.
    eventually(Duration::from_secs(30), "the job to be claimed", || {
        let jobs = jobs.clone();
        async move {
            let job = jobs.find_one(doc! { "_id": id }).await.ok()??;
            (job.get_str("status").ok()? == "processing").then_some(())
        }
    })
    .await;
    process.child.kill().unwrap(); // SIGKILL
    process.child.wait().unwrap();
    let job = jobs.find_one(doc! { "_id": id }).await.unwrap().unwrap();
    assert_eq!(
        job.get_str("status").unwrap(),
        "processing",
        "killed before its end was written"
    );

    // Another instance takes it over once the lease expires, and runs it.
    let other = start(settings.clone(), JobHandlers::new()).await;
    other
        .wait_for_job(id, "completed", Duration::from_secs(30))
        .await;
    let (job, attempts) = job_and_attempts(&other, id).await;
    assert_eq!(job.attempts, 2);
    let outcomes: Vec<Outcome> = attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::Crashed, Outcome::Completed]);
}
