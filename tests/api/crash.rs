//! The real binary, killed with SIGKILL mid-work and started again.

use std::time::Duration;

use futures::future::join_all;
use mongodb::bson::{doc, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};
use troupe_actors::queue::job::Job;

use crate::helpers::{
    all_jobs_completed, eventually, free_port, start_binary, test_settings, wait_ready, PASSWORD,
};

/// Jobs waiting when the process dies: enough that some are mid-flight at the
/// kill, few enough that FerretDB (every read a scan) drains them quickly.
const BACKLOG: usize = 600;

#[tokio::test]
async fn after_sigkill_and_restart_every_acknowledged_signup_and_job_completes() {
    let settings = test_settings();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let db = {
        use secrecy::ExposeSecret;
        mongodb::Client::with_uri_str(settings.mongodb.uri.expose_secret())
            .await
            .unwrap()
            .database(&settings.mongodb.database)
    };
    let jobs = db.collection::<Job>("jobs");
    let all_jobs = db.collection::<Document>("jobs");

    // A backlog, so jobs are mid-flight when the process dies.
    let backlog: Vec<Job> = (0..BACKLOG)
        .map(|_| Job::new("noop", Document::new(), 5))
        .collect();
    jobs.insert_many(&backlog).await.unwrap();

    let mut process = start_binary(&settings, port, "2s");
    wait_ready(&client, &base).await;
    let signups: Vec<String> = (0..20)
        .map(|i| format!("crash-{i}-{}@example.com", &settings.mongodb.database))
        .collect();
    let bodies: Vec<Value> = signups
        .iter()
        .map(|e| json!({"name": "Crash", "email": e, "password": PASSWORD}))
        .collect();
    let responses = join_all(
        bodies
            .iter()
            .map(|b| client.post(format!("{base}/users/signup")).json(b).send()),
    )
    .await;
    let acknowledged: Vec<&String> = signups
        .iter()
        .zip(&responses)
        .filter(|(_, r)| r.as_ref().is_ok_and(|r| r.status() == StatusCode::CREATED))
        .map(|(e, _)| e)
        .collect();
    assert_eq!(acknowledged.len(), 20);

    // Kill it while the backlog drains.
    eventually(Duration::from_secs(60), "some jobs to complete", || {
        let all_jobs = all_jobs.clone();
        async move {
            (all_jobs
                .count_documents(doc! {"status": "completed"})
                .await
                .ok()?
                >= 50)
                .then_some(())
        }
    })
    .await;
    process.child.kill().unwrap(); // SIGKILL
    process.child.wait().unwrap();
    let left = all_jobs
        .count_documents(doc! {"status": {"$ne": "completed"}})
        .await
        .unwrap();
    assert!(left > 0, "the kill came before the backlog drained");

    let _restarted = start_binary(&settings, port, "2s");
    wait_ready(&client, &base).await;
    all_jobs_completed(&db, Duration::from_secs(300)).await;

    assert_eq!(
        all_jobs.count_documents(doc! {}).await.unwrap(),
        BACKLOG as u64 + 20
    );
    let users = db.collection::<Document>("users");
    let outbox: Vec<String> = std::fs::read_dir(&settings.mail.outbox_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for email in acknowledged {
        let user = users
            .find_one(doc! {"email": email})
            .await
            .unwrap()
            .expect("the acknowledged user exists");
        let id = user.get_object_id("_id").unwrap();
        let job = all_jobs
            .find_one(doc! {"type": "user.created", "payload.userId": id})
            .await
            .unwrap();
        assert_eq!(
            job.expect("its welcome job").get_str("status").unwrap(),
            "completed"
        );
        assert!(
            outbox.iter().any(|m| m.contains(email.as_str())),
            "welcome e-mail for {email}"
        );
    }

    crate::helpers::remove_stores(&settings).await;
    let _ = std::fs::remove_dir_all(&settings.mail.outbox_dir);
}

/// Jobs of the batch the killed instance claims.
const BATCH: usize = 12;

#[tokio::test]
async fn sigkill_between_claiming_a_batch_and_finishing_it_hands_every_job_to_another_instance() {
    use crate::helpers::{binary_command, start, Process};
    use troupe_actors::queue::handlers::JobHandlers;

    let settings = test_settings();
    let db = crate::helpers::observer(&settings).await;
    let all_jobs = db.collection::<Document>("jobs");
    // Jobs that run for 20 s on the instance that claims them first.
    let batch: Vec<Job> = (0..BATCH)
        .map(|_| Job::new("sleep", mongodb::bson::doc! {"ms": 20_000}, 5))
        .collect();
    db.collection::<Job>("jobs")
        .insert_many(&batch)
        .await
        .unwrap();

    // The doomed instance: executors for the whole batch, a lease (30 s)
    // longer than the test waits, so only the fleet's take-over hands the
    // jobs on (within the heartbeat's TTL, 1 s in the test profile).
    let port = free_port();
    let mut command = binary_command(&settings, port, "30s");
    command
        .env("TROUPE__QUEUE__EXECUTORS", "16")
        .env("TROUPE__QUEUE__CLAIM_BATCH", "16")
        .env("TROUPE__QUEUE__JOB_TIMEOUT", "60s");
    let mut doomed = Process {
        child: command.spawn().expect("start the troupe binary"),
    };
    eventually(Duration::from_secs(30), "the batch to be claimed", || {
        let all_jobs = all_jobs.clone();
        async move {
            let claimed = doomed_claimed(&all_jobs).await?;
            (claimed == BATCH as u64).then_some(())
        }
    })
    .await;
    doomed.child.kill().unwrap(); // SIGKILL: no release, no attempt ended
    doomed.child.wait().unwrap();
    let running = db.collection::<Document>("job_attempts");
    let running = running
        .count_documents(mongodb::bson::doc! {"attempt": 1, "outcome": "running"})
        .await
        .unwrap();
    assert_eq!(running, BATCH as u64, "killed mid-batch");

    // The survivor runs `sleep` as a no-op, so its attempts finish at once.
    let quick = JobHandlers::new().with("sleep", |_job| async { Ok(Document::new()) });
    let survivor = start(settings.clone(), quick).await;
    let failover = Duration::from_secs(15);
    survivor
        .wait_for_jobs(mongodb::bson::doc! {}, "completed", BATCH as u64, failover)
        .await;
    let survivor_id = survivor.state.actors.instance.to_string();
    for job in &batch {
        let (stored, history) = survivor.jobs().get(job.id).await.unwrap().unwrap();
        assert_eq!(stored.attempts, 2, "job {}", job.id);
        let outcomes: Vec<(i32, &str)> = history
            .iter()
            .map(|attempt| (attempt.attempt, attempt.outcome.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            [(1, "crashed"), (2, "completed")],
            "job {}",
            job.id
        );
        assert_ne!(
            history[0].instance, survivor_id,
            "attempt 1 ran on the killed one"
        );
        assert_eq!(history[1].instance, survivor_id);
    }
}

/// Jobs `processing` under their first attempt.
async fn doomed_claimed(jobs: &mongodb::Collection<Document>) -> Option<u64> {
    let filter = mongodb::bson::doc! {"status": "processing", "attempts": 1};
    jobs.count_documents(filter).await.ok()
}
