use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::JobStatus;
use troupe_actors::queue::worker::Polled;

use crate::helpers::{
    assert_problem, completed, eventually, executed, spawn_app, spawn_app_with,
    spawn_app_with_jobs, spawn_manual_app_with_jobs, start, unique_email, TestApp, PASSWORD,
};

#[tokio::test]
async fn fifty_signups_answer_at_once_and_fifty_welcome_emails_land_in_the_outbox() {
    let app = spawn_app().await;
    let emails: Vec<String> = (0..50).map(|_| unique_email()).collect();
    let bodies: Vec<Value> = emails
        .iter()
        .map(|email| json!({"name": "Welcome Me", "email": email, "password": PASSWORD}))
        .collect();
    let responses = join_all(
        bodies
            .iter()
            .map(|body| app.post_json("/users/signup", body)),
    )
    .await;
    assert!(responses.iter().all(|r| r.status() == StatusCode::CREATED));

    app.wait_for_jobs(
        doc! {"type": "user.created"},
        "completed",
        50,
        Duration::from_secs(30),
    )
    .await;
    let outbox = app.settings.mail.outbox_dir.clone();
    let files: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(files.len(), 50);
    for email in &emails {
        assert_eq!(
            files.iter().filter(|f| f.contains(email.as_str())).count(),
            1,
            "{email}"
        );
    }
    assert!(files
        .iter()
        .all(|f| f.contains("Subject: Welcome to Troupe") && f.contains("@troupe>")));
}

/// How many times the poller has listed claimable jobs (from `/metrics`).
async fn listings(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("troupe_job_listing_duration_seconds_count "))
        .expect("listing count in /metrics")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn jobs_enqueued_here_are_claimed_by_id_without_listing_the_queue() {
    // The next tick is an hour away: only the start-up listing happens.
    let app = spawn_app_with(|s| s.queue.poll_interval = Duration::from_secs(3600)).await;
    let before = eventually(Duration::from_secs(10), "the start-up listing", || async {
        Some(listings(&app).await).filter(|&n| n > 0)
    })
    .await;

    let email = unique_email();
    app.signup(&email).await;
    for _ in 0..4 {
        app.signup(&unique_email()).await;
    }
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    app.wait_for_jobs(
        doc! {"type": "user.created"},
        "completed",
        5,
        Duration::from_secs(20),
    )
    .await;
    app.wait_for_jobs(
        doc! {"type": "user.login"},
        "completed",
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(listings(&app).await, before, "no listing per enqueued job");
}

#[tokio::test]
async fn jobs_are_claimed_oldest_first() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let handlers = JobHandlers::new().with("test.record", move |job| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(job.payload.get_i32("n").unwrap());
            Ok(Document::new())
        }
    });
    let app = spawn_manual_app_with_jobs(|_| {}, handlers).await;
    let jobs = app.jobs();
    for n in 0..20 {
        jobs.enqueue("test.record", doc! {"n": n}).await.unwrap();
        // Enqueued a millisecond apart, as the queue's clock sees it.
        app.advance_clock(Duration::from_millis(1));
    }
    let ran = app.run_jobs_until_idle().await;
    assert_eq!(ran.len(), 20);
    assert!(ran.iter().all(completed), "{ran:?}");
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_then_failed() {
    let handlers = JobHandlers::new().with("test.fail", |_job| async { Err("boom".into()) });
    let app = spawn_manual_app_with_jobs(
        |s| {
            s.queue.max_attempts = 3;
            s.queue.backoff_base = Duration::from_millis(200);
        },
        handlers,
    )
    .await;
    let id = app
        .jobs()
        .enqueue("test.fail", Document::new())
        .await
        .unwrap();
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Pending));
    // Exponential backoff: due 200 ms after the first failure, 400 ms after
    // the second; not a millisecond before.
    for backoff in [200, 400] {
        app.advance_clock(Duration::from_millis(backoff - 1));
        assert_eq!(
            app.run_one_job().await,
            Polled::Empty,
            "before {backoff} ms"
        );
        app.advance_clock(Duration::from_millis(1));
        let next = if backoff == 200 {
            JobStatus::Pending
        } else {
            JobStatus::Failed
        };
        assert_eq!(app.run_one_job().await, executed(id, next));
    }
    // Failed for good: never due again.
    app.advance_clock(Duration::from_secs(3600));
    assert!(app.run_jobs_until_idle().await.is_empty());
    let job = app.job(id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["lastError"], "boom");
    let history = job["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert!(history
        .iter()
        .all(|a| a["outcome"] == "failed" && a["error"] == "boom"));
    let at =
        |a: &Value, k: &str| chrono::DateTime::parse_from_rfc3339(a[k].as_str().unwrap()).unwrap();
    for (i, ms) in [(0, 200), (1, 400)] {
        let gap = at(&history[i + 1], "startedAt") - at(&history[i], "finishedAt");
        assert_eq!(gap.num_milliseconds(), ms, "gap {i}");
    }
}

#[tokio::test]
async fn a_custom_job_type_is_retried_then_completes_without_sleeping() {
    let handlers = JobHandlers::new().with("report.build", |job| async move {
        // Fails its first attempt, as a flaky dependency would.
        if job.attempts == 1 {
            return Err("the warehouse is busy".into());
        }
        Ok(doc! { "report": "ready" })
    });
    let app =
        spawn_manual_app_with_jobs(|s| s.queue.backoff_base = Duration::from_secs(1), handlers)
            .await;
    let id = app.jobs().enqueue("report.build", doc! {}).await.unwrap();
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Pending));
    assert!(
        app.run_jobs_until_idle().await.is_empty(),
        "the retry waits for its backoff"
    );
    app.advance_clock(Duration::from_secs(1));
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(id, JobStatus::Completed)]
    );
}

#[tokio::test]
async fn a_job_that_runs_too_long_times_out() {
    let handlers = JobHandlers::new().with("test.sleep", |_job| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Document::new())
    });
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.max_attempts = 1;
            s.queue.job_timeout = Duration::from_millis(300);
        },
        handlers,
    )
    .await;
    let id = app
        .jobs()
        .enqueue("test.sleep", Document::new())
        .await
        .unwrap();
    app.nudge();
    let job = app
        .wait_for_job(id, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(job["lastError"], "timed out after 300ms");
    assert_eq!(job["history"][0]["outcome"], "timed_out");
}

#[tokio::test]
async fn a_job_whose_lease_expired_is_claimed_again() {
    let app = spawn_manual_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let id = ObjectId::new();
    let now = app.settings.queue.clock.now().timestamp_millis();
    let (past, lease_end) = (
        DateTime::from_millis(now - 60_000),
        DateTime::from_millis(now + 1_000),
    );
    app.db
        .collection::<Document>("jobs")
        .insert_one(doc! {
            "_id": id, "type": "noop", "payload": {}, "status": "processing", "attempts": 1, "maxAttempts": 5,
            "runAt": past, "lockedBy": "a-dead-instance", "lockedUntil": lease_end, "lastError": null, "result": null,
            "createdAt": past, "updatedAt": past, "completedAt": null,
        })
        .await
        .unwrap();
    // Its lease runs a second more: nobody takes it.
    assert_eq!(app.run_one_job().await, Polled::Empty);
    app.advance_clock(Duration::from_millis(1_001));
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Completed));
    let job = app.job(id).await;
    assert_eq!(job["attempts"], 2);
    assert_eq!(
        job["history"].as_array().unwrap().len(),
        1,
        "only attempt 2 ran here"
    );
    assert_eq!(job["history"][0]["attempt"], 2);
}

#[tokio::test]
async fn a_long_job_renews_its_lease_and_runs_once() {
    let runs = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&runs);
    let handlers = JobHandlers::new().with("test.long", move |_job| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok(Document::new())
        }
    });
    // The job runs for 2.5 leases; without renewal an idle executor would claim it again.
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.lease = Duration::from_millis(600);
            s.queue.job_timeout = Duration::from_secs(5);
        },
        handlers,
    )
    .await;
    let id = app
        .jobs()
        .enqueue("test.long", Document::new())
        .await
        .unwrap();
    app.nudge();
    let job = app
        .wait_for_job(id, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(job["attempts"], 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panicking_executor_has_its_job_retried_at_once_and_is_replaced() {
    let handlers = JobHandlers::new().with("test.panic-once", |job| async move {
        if job.attempts == 1 {
            panic!("handler bug");
        }
        Ok(doc! {"ok": true})
    });
    // A 60 s lease: a retry within seconds can only come from the release.
    let app = spawn_app_with_jobs(|s| s.queue.lease = Duration::from_secs(60), handlers).await;
    let started = std::time::Instant::now();
    let id = app
        .jobs()
        .enqueue("test.panic-once", Document::new())
        .await
        .unwrap();
    app.nudge();
    let job = app
        .wait_for_job(id, "completed", Duration::from_secs(20))
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["history"][0]["outcome"], "crashed");
    assert_eq!(job["history"][1]["outcome"], "completed");

    let pool = app.state.actors.queue.pool().await.unwrap();
    assert_eq!(pool.size, app.settings.queue.executors);
    assert!(pool.executors.iter().all(|e| e.actor.running));
    assert_eq!(
        pool.executors.iter().map(|e| e.actor.restarts).sum::<u64>(),
        1
    );
}

#[tokio::test]
async fn three_instances_share_one_queue_without_running_an_attempt_twice() {
    let effects_db = Arc::new(Mutex::new(HashSet::<(ObjectId, i32)>::new()));
    let doubled = Arc::new(AtomicU64::new(0));
    let handlers = |db: mongodb::Database| {
        let (runs, doubled) = (Arc::clone(&effects_db), Arc::clone(&doubled));
        JobHandlers::new().with("test.effect", move |job| {
            let (runs, doubled, effects) = (
                Arc::clone(&runs),
                Arc::clone(&doubled),
                db.collection::<Document>("effects"),
            );
            async move {
                if !runs.lock().unwrap().insert((job.id, job.attempts)) {
                    doubled.fetch_add(1, Ordering::SeqCst);
                }
                // The side effect, idempotent by job id.
                match effects.insert_one(doc! {"_id": job.id}).await {
                    Ok(_) => {}
                    Err(e) if troupe_actors::store::is_duplicate_key(&e) => {}
                    Err(e) => return Err(e.to_string().into()),
                }
                Ok(Document::new())
            }
        })
    };
    let first = spawn_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let db = first.db.clone();
    drop(first); // (drops its database: recreated by the instances below)
    let mut settings = crate::helpers::test_settings();
    settings.mongodb.database = db.name().to_string();
    let a = start(settings.clone(), handlers(db.clone())).await;
    let mut b = start(settings.clone(), handlers(db.clone())).await;
    let mut c = start(settings.clone(), handlers(db.clone())).await;
    b.owns_database = false;
    c.owns_database = false;

    let jobs = a.jobs();
    let ids: Vec<ObjectId> =
        join_all((0..1000).map(|_| jobs.enqueue("test.effect", Document::new())))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    for app in [&a, &b, &c] {
        app.nudge();
    }
    a.wait_for_jobs(
        doc! {"type": "test.effect"},
        "completed",
        1000,
        // A bound, not an expectation: about 30 s on an idle 2-core machine.
        Duration::from_secs(300),
    )
    .await;

    assert_eq!(doubled.load(Ordering::SeqCst), 0, "an attempt ran twice");
    let effects = db
        .collection::<Document>("effects")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(effects, 1000, "every side effect exactly once");
    let completed_attempts = db
        .collection::<Document>("job_attempts")
        .count_documents(doc! {"outcome": "completed"})
        .await
        .unwrap();
    assert_eq!(completed_attempts, 1000);
    let by: HashSet<String> = db
        .collection::<Document>("job_attempts")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.get_str("instance").unwrap().to_string())
        .collect();
    assert!(by.len() >= 2, "the instances shared the work: {by:?}");
    assert_eq!(ids.len(), 1000);
}

#[tokio::test]
async fn graceful_shutdown_finishes_running_jobs_and_leaves_the_rest_pending() {
    let handlers = JobHandlers::new().with("test.slow", |_job| async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        Ok(Document::new())
    });
    let mut app = spawn_app_with_jobs(|s| s.queue.executors = 1, handlers).await;
    let jobs = app.jobs();
    let first = jobs.enqueue("test.slow", Document::new()).await.unwrap();
    app.nudge();
    app.wait_for_jobs(
        doc! {"_id": first},
        "processing",
        1,
        Duration::from_secs(10),
    )
    .await;
    let rest = [
        jobs.enqueue("test.slow", Document::new()).await.unwrap(),
        jobs.enqueue("test.slow", Document::new()).await.unwrap(),
    ];
    app.stop().await.unwrap();
    let collection = app.db.collection::<Document>("jobs");
    let status = |id: ObjectId| {
        let collection = collection.clone();
        async move {
            collection
                .find_one(doc! {"_id": id})
                .await
                .unwrap()
                .unwrap()
                .get_str("status")
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(status(first).await, "completed");
    for id in rest {
        assert_eq!(status(id).await, "pending");
    }
}

#[tokio::test]
async fn shutdown_releases_a_job_that_outlives_the_grace_period_before_it_returns() {
    let handlers = JobHandlers::new().with("test.stuck", |_job| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(Document::new())
    });
    let mut app = spawn_app_with_jobs(
        |s| {
            s.queue.executors = 1;
            s.queue.job_timeout = Duration::from_secs(120);
            s.server.shutdown_grace = Duration::from_secs(2);
        },
        handlers,
    )
    .await;
    let id = app
        .jobs()
        .enqueue("test.stuck", Document::new())
        .await
        .unwrap();
    app.nudge();
    app.wait_for_jobs(doc! {"_id": id}, "processing", 1, Duration::from_secs(10))
        .await;
    app.stop().await.unwrap();
    // Read once, right after the stop: the release is part of the shutdown,
    // not a write that lands after it.
    let job = app
        .db
        .collection::<Document>("jobs")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.get_str("status").unwrap(), "pending", "{job}");
    let attempt = app
        .db
        .collection::<Document>("job_attempts")
        .find_one(doc! {"_id": format!("{id}:1")})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempt.get_str("outcome").unwrap(), "crashed", "{attempt}");
    assert_eq!(
        attempt.get_str("error").unwrap(),
        "the instance shut down before the job finished"
    );
}

#[tokio::test]
async fn completed_jobs_past_retention_are_pruned() {
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.retention = Duration::from_secs(3600);
            s.queue.prune_interval = Duration::from_millis(200);
        },
        JobHandlers::new(),
    )
    .await;
    let jobs = app.db.collection::<Document>("jobs");
    let old = DateTime::from_millis(DateTime::now().timestamp_millis() - 2 * 3600 * 1000);
    let (stale, fresh) = (ObjectId::new(), ObjectId::new());
    for (id, at) in [(stale, old), (fresh, DateTime::now())] {
        jobs.insert_one(doc! {
            "_id": id, "type": "noop", "payload": {}, "status": "completed", "attempts": 1, "maxAttempts": 5,
            "runAt": at, "lockedBy": null, "lockedUntil": null, "lastError": null, "result": {},
            "createdAt": at, "updatedAt": at, "completedAt": at,
        })
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(10), "the old job to be pruned", || {
        let jobs = jobs.clone();
        async move { (jobs.count_documents(doc! {"_id": stale}).await.ok()? == 0).then_some(()) }
    })
    .await;
    assert_eq!(jobs.count_documents(doc! {"_id": fresh}).await.unwrap(), 1);
}

#[tokio::test]
async fn the_jobs_api_requires_the_ops_token() {
    let app = spawn_app().await;
    for path in ["/jobs", "/jobs/stats", "/jobs/65f1c0ffee0000000000beef"] {
        assert_problem(app.get(path).await, StatusCode::UNAUTHORIZED).await;
        assert_problem(
            app.get_bearer(path, "wrong-token").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let pair = app.signup(&unique_email()).await;
    assert_problem(
        app.get_bearer("/jobs", &pair.access_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.post_bearer("/jobs/65f1c0ffee0000000000beef/retry", "x")
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn list_filters_paginates_and_rejects_bad_parameters() {
    let handlers = JobHandlers::new().with("test.fail", |_job| async { Err("nope".into()) });
    let app = spawn_manual_app_with_jobs(|s| s.queue.max_attempts = 1, handlers).await;
    let jobs = app.jobs();
    let mut noops = Vec::new();
    for _ in 0..5 {
        noops.push(jobs.enqueue("noop", Document::new()).await.unwrap());
    }
    let failing = jobs.enqueue("test.fail", Document::new()).await.unwrap();
    let ran = app.run_jobs_until_idle().await;
    let mut expected: Vec<Polled> = noops
        .iter()
        .map(|id| executed(*id, JobStatus::Completed))
        .collect();
    expected.push(executed(failing, JobStatus::Failed));
    assert_eq!(ran, expected);

    let page: Value = app
        .get_ops("/jobs?type=noop&limit=2")
        .await
        .json()
        .await
        .unwrap();
    let mut seen: Vec<String> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    let mut cursor = page["nextCursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page: Value = app
            .get_ops(&format!("/jobs?type=noop&limit=2&cursor={c}"))
            .await
            .json()
            .await
            .unwrap();
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string()),
        );
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    let mut expected: Vec<String> = noops.iter().map(|id| id.to_hex()).collect();
    expected.reverse(); // newest first
    assert_eq!(seen, expected);

    let failed: Value = app
        .get_ops("/jobs?status=failed")
        .await
        .json()
        .await
        .unwrap();
    let failed = failed["jobs"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], failing.to_hex());

    let problem = assert_problem(
        app.get_ops("/jobs?status=done&limit=0&cursor=zzz&colour=red")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["colour", "cursor", "limit", "status"]);
    assert_problem(
        app.get_ops("/jobs?limit=5&limit=6").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn an_attempt_whose_runner_vanished_is_marked_crashed_when_its_job_is_reclaimed() {
    use troupe_actors::queue::job::{Attempt, Job, JobStatus, Outcome};
    let app = spawn_app().await;
    let expired = DateTime::from_millis(DateTime::now().timestamp_millis() - 1_000);
    // Two jobs as a SIGKILLed instance leaves them: `processing` under an
    // expired lease. The first one's attempt record still says `running`;
    // the second one's runner wrote its outcome but died before the job's.
    let mut ids = Vec::new();
    for outcome in [Outcome::Running, Outcome::Completed] {
        let mut job = Job::new("noop", Document::new(), 5);
        job.status = JobStatus::Processing;
        job.attempts = 1;
        job.locked_by = Some("a-dead-instance".into());
        job.locked_until = Some(expired);
        app.db
            .collection::<Job>("jobs")
            .insert_one(&job)
            .await
            .unwrap();
        let attempt = Attempt {
            id: format!("{}:1", job.id),
            job_id: job.id,
            attempt: 1,
            instance: "a-dead-instance".into(),
            executor: "executor-0".into(),
            started_at: expired,
            finished_at: (outcome != Outcome::Running).then_some(expired),
            outcome,
            error: None,
        };
        app.db
            .collection::<Attempt>("job_attempts")
            .insert_one(&attempt)
            .await
            .unwrap();
        ids.push(job.id);
    }
    app.nudge();

    let reclaimed = app
        .wait_for_job(ids[0], "completed", Duration::from_secs(20))
        .await;
    let history = reclaimed["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{reclaimed}");
    let reclaimer = history[1]["instance"].as_str().unwrap();
    assert_ne!(reclaimer, "a-dead-instance");
    assert_eq!(history[0]["outcome"], "crashed", "{reclaimed}");
    assert_eq!(
        history[0]["error"],
        format!("lease expired; reclaimed by {reclaimer}")
    );
    let finished = history[0]["finishedAt"].as_str().expect("finishedAt");
    assert!(chrono::DateTime::parse_from_rfc3339(finished).is_ok());
    assert_eq!(history[1]["outcome"], "completed");

    // An outcome its runner did write is kept.
    let other = app
        .wait_for_job(ids[1], "completed", Duration::from_secs(20))
        .await;
    assert_eq!(other["history"][0]["outcome"], "completed", "{other}");
}

#[tokio::test]
async fn job_payloads_show_ids_as_hex_strings_and_dates_as_rfc3339() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let user_id = app.user_id(&tokens.access_token).await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);

    let payload_of = |kind: &'static str| {
        let app = &app;
        async move {
            let list: Value = app
                .get_ops(&format!("/jobs?type={kind}"))
                .await
                .json()
                .await
                .unwrap();
            let id = list["jobs"][0]["id"].as_str().unwrap().to_string();
            let job: Value = app
                .get_ops(&format!("/jobs/{id}"))
                .await
                .json()
                .await
                .unwrap();
            job["payload"].clone()
        }
    };
    let welcome = payload_of("user.created").await;
    assert_eq!(welcome["userId"], user_id.as_str(), "{welcome}");
    assert_eq!(user_id.len(), 24);
    let login = payload_of("user.login").await;
    assert_eq!(login["userId"], user_id.as_str(), "{login}");
    let at = login["at"].as_str().expect("a date string");
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
}

#[tokio::test]
async fn stats_count_cancelled_jobs_and_measure_lateness_from_when_a_job_became_due() {
    let app = spawn_manual_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let store = app.jobs();
    let later = Duration::from_secs(60);
    store
        .enqueue_held("noop", Document::new(), later)
        .await
        .unwrap();
    let stats: Value = app.get_ops("/jobs/stats").await.json().await.unwrap();
    assert!(
        stats["oldestPendingAgeSeconds"].is_null(),
        "a job scheduled for later is not late: {stats}"
    );

    app.advance_clock(Duration::from_secs(90));
    let cancelled = store.enqueue("noop", Document::new()).await.unwrap();
    let response = app.post_ops(&format!("/jobs/{cancelled}/cancel")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stats: Value = app.get_ops("/jobs/stats").await.json().await.unwrap();
    // Created 90 s ago, due 30 s ago: 30 s late.
    assert_eq!(stats["oldestPendingAgeSeconds"], 30.0, "{stats}");
    assert_eq!(stats["cancelled"], 1, "{stats}");
    assert_eq!(stats["byType"]["noop"]["cancelled"], 1, "{stats}");
    assert_eq!(stats["pending"], 1, "{stats}");
}
