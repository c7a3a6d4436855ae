//! Issue #18 (control): cancel, fleet-wide pauses, periodic jobs, and the
//! pruning that runs as one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use troupe::config::Settings;
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::{Candidate, JobStatus};
use troupe_actors::queue::pause::Pauses;
use troupe_actors::queue::schedule::ScheduleConfig;

use crate::helpers::{
    assert_problem, eventually, executed, spawn_app_with_jobs, spawn_manual_app_with_jobs, start,
    three_instances, TestApp,
};

/// `method path` with the ops token and a JSON body.
async fn ops_json(app: &TestApp, method: Method, path: &str, body: Value) -> Response {
    use secrecy::ExposeSecret;
    app.client
        .request(method, app.url(path))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn cancel(app: &TestApp, id: ObjectId) -> Response {
    app.post_ops(&format!("/jobs/{id}/cancel")).await
}

/// A handler that counts its runs of each job.
fn counting(kind: &str, runs: &Arc<Mutex<HashMap<ObjectId, u64>>>) -> JobHandlers {
    let runs = Arc::clone(runs);
    JobHandlers::new().with(kind, move |job| {
        let runs = Arc::clone(&runs);
        async move {
            *runs.lock().unwrap().entry(job.id).or_default() += 1;
            Ok(Document::new())
        }
    })
}

fn runs_of(runs: &Arc<Mutex<HashMap<ObjectId, u64>>>, id: ObjectId) -> u64 {
    runs.lock().unwrap().get(&id).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_pending_job_cancelled_never_runs_and_cannot_be_cancelled_twice() {
    let runs = Arc::default();
    let app = spawn_manual_app_with_jobs(|_| {}, counting("test.count", &runs)).await;
    let store = app.jobs();
    // Held: pending, not due for 30 s (and nothing runs before the test says so).
    let held = store
        .enqueue_held("test.count", Document::new(), Duration::from_secs(30))
        .await
        .unwrap();
    let response = cancel(&app, held).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["cancelRequested"], true);
    assert!(cancelled["cancelledAt"].is_string(), "{cancelled}");

    // Made due now, the way a producer's release would (bypassing its
    // pending-only guard): still no claimer may run it.
    app.db
        .collection::<Document>("jobs")
        .update_one(
            doc! {"_id": held},
            doc! {"$set": {"runAt": app.settings.queue.clock.now()}},
        )
        .await
        .unwrap();
    let control = store.enqueue("test.count", Document::new()).await.unwrap();
    app.advance_clock(Duration::from_secs(60));
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(control, JobStatus::Completed)]
    );
    assert_eq!(runs_of(&runs, held), 0, "the cancelled job never ran");
    assert_eq!(runs_of(&runs, control), 1);

    let after = app.job(held).await;
    assert_eq!(after["status"], "cancelled");
    assert_eq!(after["attempts"], 0);
    let history = after["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "only the marker: {history:?}");
    assert_eq!(history[0]["outcome"], "cancelled");
    assert_eq!(history[0]["executor"], "cancel");

    assert_problem(cancel(&app, held).await, StatusCode::CONFLICT).await;
    assert_problem(cancel(&app, control).await, StatusCode::CONFLICT).await;
    let listed: Value = app
        .get_ops("/jobs?status=cancelled")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [held.to_hex()]);
}

#[tokio::test]
async fn a_cancel_that_died_after_its_marker_is_finished_by_the_next_claimer() {
    // A canceller that crashed right after inserting its marker (the next
    // attempt's record, `cancelled`): the job is still `pending` and due.
    let runs = Arc::default();
    let app = spawn_manual_app_with_jobs(|_| {}, counting("test.count", &runs)).await;
    let store = app.jobs();
    let id = store
        .enqueue_held("test.count", Document::new(), Duration::from_secs(30))
        .await
        .unwrap();
    let now = app.settings.queue.clock.now();
    app.db
        .collection::<Document>("job_attempts")
        .insert_one(doc! {
            "_id": format!("{id}:1"), "jobId": id, "attempt": 1, "instance": "gone",
            "executor": "cancel", "startedAt": now, "finishedAt": now, "outcome": "cancelled",
            "error": "cancelled by an operator before it ran",
        })
        .await
        .unwrap();
    assert!(store.release(id).await.unwrap(), "due now");
    // The claim finds the marker, settles the job and runs nothing.
    assert_eq!(app.run_jobs_until_idle().await, []);
    let settled = app.job(id).await;
    assert_eq!(settled["status"], "cancelled", "{settled}");
    assert_eq!(settled["attempts"], 0, "{settled}");
    assert_eq!(runs_of(&runs, id), 0);
}

/// A handler of `kind` that says when it starts, then waits for its
/// cancellation (`cooperative`) or sleeps through it; `dropped` is set when
/// its future is dropped (or returns).
fn stoppable(
    kind: &str,
    cooperative: bool,
    (started, dropped): (&Arc<AtomicU64>, &Arc<AtomicBool>),
) -> JobHandlers {
    let (started, dropped) = (Arc::clone(started), Arc::clone(dropped));
    JobHandlers::new().with(kind, move |job| {
        let (started, dropped) = (Arc::clone(&started), Arc::clone(&dropped));
        async move {
            struct SetOnDrop(Arc<AtomicBool>);
            impl Drop for SetOnDrop {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let _guard = SetOnDrop(dropped);
            started.fetch_add(1, Ordering::SeqCst);
            if cooperative {
                job.cancelled().await;
                Err("stopped: cancelled".into())
            } else {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Document::new())
            }
        }
    })
}

fn long_jobs(settings: &mut Settings) {
    // Longer than the test: only a cancellation ends these jobs.
    settings.queue.job_timeout = Duration::from_secs(30);
}

#[tokio::test]
async fn a_running_job_that_waits_on_its_cancellation_ends_cancelled_without_retry() {
    let (started, dropped) = (Arc::default(), Arc::default());
    let handlers = stoppable("test.wait", true, (&started, &dropped));
    let app = spawn_app_with_jobs(
        |s| {
            long_jobs(s);
            // The first renewal (a third of it) comes long after the test.
            s.queue.lease = Duration::from_secs(60);
        },
        handlers,
    )
    .await;
    let id = app
        .jobs()
        .enqueue("test.wait", Document::new())
        .await
        .unwrap();
    app.nudge();
    app.wait_for_job(id, "processing", Duration::from_secs(30))
        .await;
    eventually(Duration::from_secs(5), "the handler to start", || async {
        (started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;

    let asked = Instant::now();
    let response = cancel(&app, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let requested: Value = response.json().await.unwrap();
    assert_eq!(requested["cancelRequested"], true, "{requested}");
    // Through the instance that runs it: at once, not at the next renewal
    // (20 s away).
    let ended = app
        .wait_for_job(id, "cancelled", Duration::from_secs(30))
        .await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(ended["attempts"], 1, "no retry: {ended}");
    let history = ended["history"].as_array().unwrap();
    assert_eq!(history[0]["outcome"], "cancelled", "{history:?}");
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(started.load(Ordering::SeqCst), 1, "ran once");
    assert_problem(cancel(&app, id).await, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn a_handler_that_ignores_a_cancel_from_another_instance_is_stopped_within_a_renewal() {
    let (started, dropped) = (Arc::default(), Arc::default());
    let handlers = stoppable("test.ignore", false, (&started, &dropped));
    let a = spawn_app_with_jobs(long_jobs, handlers.clone()).await;
    let mut b = start(a.settings.clone(), handlers).await;
    b.owns_database = false;
    let id = a
        .jobs()
        .enqueue("test.ignore", Document::new())
        .await
        .unwrap();
    a.nudge();
    let running = a
        .wait_for_job(id, "processing", Duration::from_secs(30))
        .await;
    let runner = running["lockedBy"].as_str().unwrap().to_owned();
    // Cancel through the instance that does *not* run it.
    let other = [&a, &b]
        .into_iter()
        .find(|app| *app.state.actors.instance != *runner)
        .unwrap();
    let asked = Instant::now();
    assert_eq!(cancel(other, id).await.status(), StatusCode::OK);

    let ended = a
        .wait_for_job(id, "cancelled", Duration::from_secs(8))
        .await;
    // A renewal every third of the lease, then the grace before the drop.
    let bound = a.settings.queue.lease / 3 + Duration::from_secs(1) + Duration::from_secs(2);
    assert!(asked.elapsed() < bound, "{:?} ≥ {bound:?}", asked.elapsed());
    assert!(
        dropped.load(Ordering::SeqCst),
        "the handler's future was dropped"
    );
    assert_eq!(ended["attempts"], 1, "no retry: {ended}");
    assert_eq!(ended["history"][0]["outcome"], "cancelled", "{ended}");
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

/// Wait until every instance's poller applies pauses for which `applied` holds.
async fn until_applied(apps: &[TestApp], applied: impl Fn(&Pauses) -> bool) {
    for app in apps {
        eventually(
            Duration::from_secs(5),
            "the pause to be applied",
            || async {
                let pauses = app.state.actors.queue.applied_pauses().await.ok()?;
                applied(&pauses).then_some(())
            },
        )
        .await;
    }
}

async fn statuses(app: &TestApp, ids: &[ObjectId]) -> Vec<String> {
    let mut found = Vec::new();
    for id in ids {
        found.push(app.job(*id).await["status"].as_str().unwrap().to_owned());
    }
    found
}

#[tokio::test]
async fn a_type_paused_on_one_instance_is_claimed_by_none_until_resumed_on_another() {
    let runs = Arc::default();
    let release = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&release);
    let handlers =
        counting("test.x", &runs).merge(JobHandlers::new().with("test.slow", move |_job| {
            let gate = Arc::clone(&gate);
            async move {
                while !gate.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Document::new())
            }
        }));
    let apps = three_instances(|_| {}, handlers).await;
    let [a, b, c] = &apps;
    // A job running when the pause comes finishes.
    let slow = b
        .jobs()
        .enqueue("test.slow", Document::new())
        .await
        .unwrap();
    b.nudge();
    a.wait_for_job(slow, "processing", Duration::from_secs(30))
        .await;

    let paused = ops_json(
        a,
        Method::POST,
        "/jobs/pauses",
        json!({"type": "test.slow"}),
    )
    .await;
    assert_eq!(paused.status(), StatusCode::OK);
    let paused = ops_json(a, Method::POST, "/jobs/pauses", json!({"type": "test.x"})).await;
    let body: Value = paused.json().await.unwrap();
    assert_eq!(
        body,
        json!({"queue": false, "types": ["test.slow", "test.x"]})
    );
    until_applied(&apps, |p| p.types.contains("test.x")).await;
    release.store(true, Ordering::SeqCst);
    a.wait_for_job(slow, "completed", Duration::from_secs(30))
        .await;

    let mut xs = Vec::new();
    for app in [b, c, b, c] {
        xs.push(app.jobs().enqueue("test.x", Document::new()).await.unwrap());
        app.nudge();
    }
    // A claim by id (as after an enqueue here) is refused too.
    let pauses = a.state.actors.queue.applied_pauses().await.unwrap();
    let by_id = a
        .jobs()
        .claim(
            &Candidate::enqueued(xs[0], DateTime::now()),
            Duration::from_secs(3),
            "t",
            &pauses,
        )
        .await
        .unwrap();
    assert!(by_id.is_none(), "a paused type is not claimed by id");
    // The pollers ran meanwhile: a job of another type completes.
    let control = c.jobs().enqueue("noop", Document::new()).await.unwrap();
    c.nudge();
    a.wait_for_job(control, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(statuses(a, &xs).await, ["pending"; 4]);
    assert!(xs.iter().all(|id| runs_of(&runs, *id) == 0));
    let listed: Value = c.get_ops("/jobs/pauses").await.json().await.unwrap();
    assert_eq!(listed["types"], json!(["test.slow", "test.x"]));

    let resumed = ops_json(c, Method::DELETE, "/jobs/pauses", json!({"type": "test.x"})).await;
    let body: Value = resumed.json().await.unwrap();
    assert_eq!(body, json!({"queue": false, "types": ["test.slow"]}));
    for id in &xs {
        a.wait_for_job(*id, "completed", Duration::from_secs(30))
            .await;
        assert_eq!(runs_of(&runs, *id), 1);
    }
}

#[tokio::test]
async fn a_whole_queue_pause_holds_every_type_on_every_instance() {
    let apps = three_instances(|_| {}, JobHandlers::new()).await;
    let [a, b, c] = &apps;
    let paused = ops_json(b, Method::POST, "/jobs/pauses", json!({})).await;
    let body: Value = paused.json().await.unwrap();
    assert_eq!(body, json!({"queue": true, "types": []}));
    until_applied(&apps, |p| p.queue).await;
    let id = a.jobs().enqueue("noop", Document::new()).await.unwrap();
    for app in &apps {
        app.nudge();
    }
    // Several ticks of every poller (a tick is two messages: the tick and
    // its pauses read), and still nothing claimed.
    for app in &apps {
        let stats = app.state.actors.queue.poller_stats();
        let from = stats.handled();
        eventually(Duration::from_secs(10), "a few ticks", || async {
            (stats.handled() >= from + 8).then_some(())
        })
        .await;
    }
    assert_eq!(statuses(a, &[id]).await, ["pending"]);

    let resumed = ops_json(c, Method::DELETE, "/jobs/pauses", json!({})).await;
    assert_eq!(resumed.status(), StatusCode::OK);
    a.wait_for_job(id, "completed", Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn pauses_refuse_unknown_types_bad_bodies_and_anonymous_callers() {
    let app = spawn_app_with_jobs(|_| {}, JobHandlers::new()).await;
    for method in [Method::POST, Method::DELETE] {
        let unknown = ops_json(
            &app,
            method.clone(),
            "/jobs/pauses",
            json!({"type": "nope"}),
        )
        .await;
        let problem = assert_problem(unknown, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem["errors"][0]["field"], "type", "{problem}");
        for bad in [
            json!({"type": 5}),
            json!({"type": ""}),
            json!({"kind": "noop"}),
        ] {
            let response = ops_json(&app, method.clone(), "/jobs/pauses", bad).await;
            assert_problem(response, StatusCode::BAD_REQUEST).await;
        }
    }
    let pauses: Value = app.get_ops("/jobs/pauses").await.json().await.unwrap();
    assert_eq!(pauses, json!({"queue": false, "types": []}));

    assert_problem(app.get("/jobs/pauses").await, StatusCode::UNAUTHORIZED).await;
    let anonymous = app
        .client
        .post(app.url("/jobs/pauses"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let anonymous = app
        .client
        .post(app.url("/jobs/65f1c0ffee0000000000beef/cancel"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let missing = cancel(&app, ObjectId::new()).await;
    assert_problem(missing, StatusCode::NOT_FOUND).await;
    let malformed = app.post_ops("/jobs/not-an-id/cancel").await;
    assert_problem(malformed, StatusCode::BAD_REQUEST).await;

    let doc: Value = app.get("/api-json").await.json().await.unwrap();
    let paths = &doc["paths"];
    assert!(paths["/jobs/{id}/cancel"]["post"].is_object());
    for method in ["get", "post", "delete"] {
        assert!(paths["/jobs/pauses"][method].is_object(), "{method}");
    }
}

fn every_second(settings: &mut Settings) {
    let schedule = ScheduleConfig {
        cron: "* * * * * *".into(),
        kind: "test.tick".into(),
        payload: json!({"from": "schedule"}).as_object().unwrap().clone(),
    };
    settings
        .queue
        .schedules
        .insert("every-second".into(), schedule);
}

#[tokio::test]
async fn a_periodic_job_fires_once_per_slot_on_three_instances() {
    const SLOTS: usize = 5;
    let runs = Arc::default();
    let apps = three_instances(every_second, counting("test.tick", &runs)).await;
    let db = &apps[0].db;
    let slots = db.collection::<Document>("queue_slots");
    let every = doc! {"schedule": "every-second"};
    eventually(Duration::from_secs(20), "five slots fired", || async {
        let n = slots.count_documents(every.clone()).await.ok()?;
        (n as usize >= SLOTS).then_some(())
    })
    .await;

    // The jobs first, then the slots: a slot is written before its job, so
    // every job read has its slot among those read after.
    let jobs: Vec<Document> = db
        .collection::<Document>("jobs")
        .find(doc! {"type": "test.tick"})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let fired: Vec<Document> = slots
        .find(every.clone())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let slot_jobs: HashSet<ObjectId> = fired
        .iter()
        .map(|s| s.get_object_id("jobId").unwrap())
        .collect();
    assert_eq!(slot_jobs.len(), fired.len(), "one job id per slot");
    for job in &jobs {
        let id = job.get_object_id("_id").unwrap();
        assert!(slot_jobs.contains(&id), "a job without a slot: {job}");
        assert_eq!(
            job.get_document("payload").unwrap(),
            &doc! {"from": "schedule"}
        );
    }
    for slot in &fired {
        let id = slot.get_str("_id").unwrap();
        let at = id.strip_prefix("every-second@").expect("<name>@<time>");
        let at: chrono::DateTime<chrono::Utc> = at.parse().expect("RFC 3339");
        assert_eq!(at.timestamp_subsec_millis(), 0, "a whole second: {id}");
    }
    // Each slot's job completes, once.
    for id in slot_jobs.iter().take(SLOTS) {
        apps[0]
            .wait_for_jobs(doc! {"_id": id}, "completed", 1, Duration::from_secs(30))
            .await;
        assert_eq!(runs_of(&runs, *id), 1, "{id}");
    }
    let total = db
        .collection::<Document>("jobs")
        .count_documents(doc! {"type": "test.tick"})
        .await
        .unwrap();
    let total_slots = slots.count_documents(every).await.unwrap();
    assert!(total <= total_slots, "{total} jobs for {total_slots} slots");
}

#[tokio::test]
async fn a_slot_whose_job_was_lost_to_a_crash_gets_it_from_another_instance() {
    // An instance took the slot, then died before inserting its job.
    let runs = Arc::default();
    let handlers = counting("test.tick", &runs);
    let app = spawn_app_with_jobs(every_second, handlers).await;
    let slots = app.db.collection::<Document>("queue_slots");
    let job = ObjectId::new();
    let next = chrono::Utc::now() + chrono::Duration::seconds(2);
    let slot = next.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let at = DateTime::parse_rfc3339_str(&slot).unwrap();
    slots
        .insert_one(doc! {
            "_id": format!("every-second@{slot}"), "schedule": "every-second",
            "slot": at, "jobId": job, "createdAt": DateTime::now(),
        })
        .await
        .unwrap();
    app.wait_for_jobs(doc! {"_id": job}, "completed", 1, Duration::from_secs(30))
        .await;
    assert_eq!(runs_of(&runs, job), 1);
}

#[tokio::test]
async fn the_prune_job_deletes_old_slots_and_keeps_recent_ones() {
    let app = spawn_app_with_jobs(
        |s| {
            s.queue.retention = Duration::from_secs(3600);
            s.queue.prune_interval = Duration::from_millis(200);
        },
        JobHandlers::new(),
    )
    .await;
    let slots = app.db.collection::<Document>("queue_slots");
    let old = DateTime::from_millis(DateTime::now().timestamp_millis() - 2 * 3600 * 1000);
    for (id, at) in [("old", old), ("recent", DateTime::now())] {
        slots
            .insert_one(doc! {
                "_id": format!("elsewhere@{id}"), "schedule": "elsewhere", "slot": at,
                "jobId": ObjectId::new(), "createdAt": at,
            })
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(10), "the old slot to be pruned", || {
        let slots = slots.clone();
        async move {
            let left = slots
                .count_documents(doc! {"_id": "elsewhere@old"})
                .await
                .ok()?;
            (left == 0).then_some(())
        }
    })
    .await;
    assert_eq!(
        slots
            .count_documents(doc! {"_id": "elsewhere@recent"})
            .await
            .unwrap(),
        1
    );
    // It ran as a job, `queue.prune`, like any other.
    app.wait_for_jobs(
        doc! {"type": "queue.prune"},
        "completed",
        1,
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn a_schedule_of_an_unregistered_type_fails_start_up_naming_it() {
    let mut settings = crate::helpers::test_settings();
    every_second(&mut settings); // `test.tick` has no handler here
    let err = troupe::startup::Application::build(settings.clone())
        .await
        .err()
        .expect("start-up must fail");
    crate::helpers::remove_stores(&settings).await;
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(err) = cause {
        text.push_str(&format!(": {err}"));
        cause = err.source();
    }
    assert!(text.contains("queue.schedules.every-second.type"), "{text}");
    assert!(text.contains("test.tick"), "{text}");
}

/// Operators' reads and writes go to the store in the request's task, never
/// through the poller's mailbox: with the poller stalled (a 15 s delay
/// fault, past the 5 s call timeout), `/jobs` still answers, and a pause
/// and a cancel are stored.
#[tokio::test]
async fn operators_are_answered_while_the_pollers_mailbox_is_stalled() {
    let app = spawn_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let store = app.jobs();
    // Held: pending and not due for 30 s, so the cancel finds it pending.
    let held = Duration::from_secs(30);
    let id = store.enqueue_held("noop", doc! {}, held).await.unwrap();
    let fault = json!({"kind": "delay", "delayMs": 15_000});
    let armed = ops_json(&app, Method::POST, "/ops/actors/queue-poller/fault", fault).await;
    assert_eq!(armed.status(), StatusCode::ACCEPTED);
    // The poller meets the fault at its next tick; a question to the
    // poller itself then goes unanswered (the call times out).
    let queue = &app.state.actors.queue;
    eventually(Duration::from_secs(8), "the poller stalled", || async {
        queue.pool().await.is_err().then_some(())
    })
    .await;
    let asked = Instant::now();
    for path in [
        "/jobs",
        &format!("/jobs/{id}"),
        "/jobs/stats",
        "/jobs/pauses",
    ] {
        let response = app.get_ops(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    }
    let paused = ops_json(&app, Method::POST, "/jobs/pauses", json!({"type": "noop"})).await;
    assert_eq!(paused.status(), StatusCode::OK);
    let cancelled = cancel(&app, id).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let body: Value = cancelled.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    // All of it while the poller was still stalled.
    assert!(queue.pool().await.is_err(), "the poller answered meanwhile");
    assert!(asked.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_delete_of_the_pauses_without_a_body_resumes_the_whole_queue() {
    use secrecy::ExposeSecret;
    let app = spawn_app_with_jobs(|_| {}, JobHandlers::new()).await;
    let paused = ops_json(&app, Method::POST, "/jobs/pauses", json!({})).await;
    assert_eq!(paused.status(), StatusCode::OK);
    let token = app.settings.ops.token.expose_secret();
    let resumed = app
        .client
        .delete(app.url("/jobs/pauses"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let pauses: Value = resumed.json().await.unwrap();
    assert_eq!(pauses, json!({"queue": false, "types": []}));
    // A body that is there must still be JSON, and a pause must say what.
    let text = app
        .client
        .delete(app.url("/jobs/pauses"))
        .bearer_auth(token)
        .body("type=noop")
        .send()
        .await
        .unwrap();
    assert_problem(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let bare_pause = app
        .client
        .post(app.url("/jobs/pauses"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_problem(bare_pause, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}
