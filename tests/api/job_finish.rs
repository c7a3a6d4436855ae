//! Finished attempts written in bulk (`queue.finish_batch`,
//! `queue.finish_delay`): no one sees a job done before its end is
//! durable, one refused document fails only its own job, and a process
//! killed before the write runs the job again with the attempt recorded.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Document};
use tokio::sync::mpsc;
use troupe_actors::events::Event;
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
    let mut events = app.completions();
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
async fn endings_of_one_batch_share_one_write_per_collection_and_each_job_gets_its_exact_end() {
    let handlers = JobHandlers::new().with("test.mixed", |job| async move {
        match job.payload.get_str("mode").unwrap_or_default() {
            "ok" => Ok(doc! { "done": job.payload.get_i32("n").unwrap_or(0) }),
            "empty" => Ok(doc! {}),
            "fail" => Err(HandlerError::permanent("no retry can mend this")),
            _ => Err("a flaky dependency".into()),
        }
    });
    // Six executors and batches of six: the six jobs' endings go in one
    // batch, whatever order they finish in (the delay is long: the batch
    // is written once full); the two empty completions share a statement,
    // the others differ per job.
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.executors = 6;
            s.queue.finish_batch = 6;
            s.queue.lease = Duration::from_secs(30);
            s.queue.finish_delay = Duration::from_secs(15);
            s.queue.backoff_base = Duration::from_secs(3600);
            s.queue.backoff_max = Duration::from_secs(3600);
        },
        handlers,
    )
    .await;
    let before = updates(&app);
    let mut ids = Vec::new();
    for (n, mode) in ["ok", "empty", "fail", "retry", "ok", "empty"]
        .into_iter()
        .enumerate()
    {
        let payload = doc! { "mode": mode, "n": n as i32 };
        ids.push(app.jobs().enqueue("test.mixed", payload).await.unwrap());
    }
    app.nudge();
    let settled = doc! { "_id": { "$in": &ids }, "status": { "$ne": "processing" }, "attempts": 1 };
    let jobs = app.db.collection::<Document>("jobs");
    eventually(Duration::from_secs(10), "the six ends written", || {
        let (jobs, settled) = (jobs.clone(), settled.clone());
        async move { (jobs.count_documents(settled).await.ok()? == 6).then_some(()) }
    })
    .await;
    let after = updates(&app);
    assert_eq!(
        [after[0] - before[0], after[1] - before[1]],
        [1, 1],
        "one update of the attempt records, one of the jobs"
    );
    let (done, failed, pending) = (JobStatus::Completed, JobStatus::Failed, JobStatus::Pending);
    let expected = [
        (done, Outcome::Completed, Some(doc! { "done": 0 }), None),
        (done, Outcome::Completed, Some(doc! {}), None),
        (
            failed,
            Outcome::Failed,
            None,
            Some("no retry can mend this"),
        ),
        (pending, Outcome::Failed, None, Some("a flaky dependency")),
        (done, Outcome::Completed, Some(doc! { "done": 4 }), None),
        (done, Outcome::Completed, Some(doc! {}), None),
    ];
    for (id, (status, outcome, result, error)) in ids.iter().zip(expected) {
        let (job, attempts) = job_and_attempts(&app, *id).await;
        assert_eq!(job.status, status, "{id}");
        assert_eq!(job.result, result, "{id}");
        assert_eq!(job.locked_by, None, "{id}");
        let error_has = |e: &Option<String>| match (e, error) {
            (Some(e), Some(want)) => e.contains(want),
            (e, None) => e.is_none(),
            _ => false,
        };
        assert!(error_has(&job.last_error), "{id}: {:?}", job.last_error);
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, outcome, "{id}");
        assert!(
            error_has(&attempts[0].error),
            "{id}: {:?}",
            attempts[0].error
        );
        assert!(attempts[0].finished_at.is_some());
        if status == pending {
            let wait =
                job.run_at.timestamp_millis() - attempts[0].finished_at.unwrap().timestamp_millis();
            assert!(
                (3_600_000..3_660_000).contains(&wait),
                "retried after the backoff: {wait} ms"
            );
        }
    }
}

#[tokio::test]
async fn a_document_the_store_refuses_fails_only_its_own_job_and_the_rest_of_its_batch_completes() {
    // FerretDB v1 cannot store NUL in a string; MongoDB can. (A result
    // holding one is stored as its JSON text, so the culprit is an error.)
    if std::env::var("MONGODB_URI").is_ok_and(|uri| !uri.contains("127.0.0.1:27017")) {
        eprintln!("skipped: MONGODB_URI is not the local FerretDB");
        return;
    }
    let handlers = JobHandlers::new().with("test.result", |job| async move {
        match job.payload.get_bool("storable").unwrap_or(true) {
            true => Ok(doc! { "m": [1] }),
            false => Err(HandlerError::permanent("a\0b")),
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
    let mut events = app.completions();
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

/// The `update` commands sent so far: on `job_attempts`, on `jobs`.
fn updates(app: &TestApp) -> [u64; 2] {
    let commands = &app.state.mongo_commands;
    [
        commands.sent_on("update", "job_attempts"),
        commands.sent_on("update", "jobs"),
    ]
}

#[tokio::test]
async fn a_flush_of_forty_completed_noop_ends_is_one_update_per_collection() {
    // Forty executors and batches of forty: every end waits in one batch
    // (the delay is long, the lease longer); one statement per job would
    // need two commands of at most 32 statements per collection.
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.executors = 40;
            s.queue.finish_batch = 40;
            s.queue.lease = Duration::from_secs(30);
            s.queue.finish_delay = Duration::from_secs(15);
        },
        JobHandlers::new(),
    )
    .await;
    let before = updates(&app);
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(app.jobs().enqueue("noop", doc! {}).await.unwrap());
    }
    app.nudge();
    let filter = doc! { "_id": { "$in": &ids } };
    app.wait_for_jobs(filter, "completed", 40, Duration::from_secs(30))
        .await;
    let after = updates(&app);
    assert_eq!(
        [after[0] - before[0], after[1] - before[1]],
        [1, 1],
        "one update of the attempt records, one of the jobs"
    );
    for id in ids {
        let (job, attempts) = job_and_attempts(&app, id).await;
        assert_eq!((job.attempts, job.locked_by), (1, None), "{id}");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, Outcome::Completed, "{id}");
        assert!(attempts[0].finished_at.is_some());
    }
}

#[tokio::test]
async fn a_job_settled_cancelled_while_its_end_waits_is_not_overwritten_by_its_batchs_completion() {
    let (handlers, mut returned) = signalling("test.signal");
    // Ends wait 3 s for a fourth that never comes: a window to settle one.
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.finish_batch = 4;
            s.queue.lease = Duration::from_secs(20);
            s.queue.finish_delay = Duration::from_secs(3);
        },
        handlers,
    )
    .await;
    let before = updates(&app);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.jobs().enqueue("test.signal", doc! {}).await.unwrap());
    }
    app.nudge();
    for _ in 0..3 {
        let ran = tokio::time::timeout(Duration::from_secs(10), returned.recv()).await;
        assert!(ran.unwrap().is_some(), "a handler returned");
    }
    // What a canceller writes when it settles a job whose lease it found
    // expired (`queue::store::cancel`): the job `cancelled`, its running
    // attempt `crashed`.
    let cancelled = ids[1];
    let db = &app.db;
    let job = db
        .collection::<Document>("jobs")
        .update_one(
            doc! { "_id": cancelled, "status": "processing" },
            doc! { "$set": { "status": "cancelled", "cancelRequested": true, "lockedBy": null, "lockedUntil": null } },
        )
        .await
        .unwrap();
    let record = db
        .collection::<Document>("job_attempts")
        .update_one(
            doc! { "_id": format!("{cancelled}:1"), "outcome": "running" },
            doc! { "$set": { "outcome": "crashed" } },
        )
        .await
        .unwrap();
    assert_eq!(
        (job.modified_count, record.modified_count),
        (1, 1),
        "settled before the flush"
    );

    let completed = doc! { "_id": { "$in": [ids[0], ids[2]] } };
    app.wait_for_jobs(completed, "completed", 2, Duration::from_secs(20))
        .await;
    let after = updates(&app);
    assert_eq!([after[0] - before[0], after[1] - before[1]], [1, 1]);
    let (job, attempts) = job_and_attempts(&app, cancelled).await;
    assert_eq!(job.status, JobStatus::Cancelled, "not overwritten");
    assert_eq!(job.completed_at, None);
    assert_eq!(attempts[0].outcome, Outcome::Crashed, "its record kept");
    assert_eq!(attempts[0].finished_at, None);
    for id in [ids[0], ids[2]] {
        let (job, attempts) = job_and_attempts(&app, id).await;
        assert_eq!(job.status, JobStatus::Completed);
        assert_eq!(attempts[0].outcome, Outcome::Completed);
    }
}
