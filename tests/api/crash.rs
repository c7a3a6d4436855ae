//! The real binary, killed with SIGKILL mid-work and started again.

use std::time::Duration;

use futures::future::join_all;
use mongodb::bson::{doc, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};
use troupe_actors::queue::job::Job;

use crate::helpers::{
    all_jobs_completed, eventually, free_port, start_binary, test_settings, PASSWORD,
};

async fn wait_ready(client: &reqwest::Client, base: &str) {
    eventually(
        Duration::from_secs(30),
        "the binary to be ready",
        || async move {
            let response = client
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .ok()?;
            (response.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
}

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
