//! Issue #28 item 4: flows — jobs that run only after others complete
//! (`dependsOn`), their failure policies, the tree endpoint, and the
//! release of waiting jobs after a crash (the sweep; a real SIGKILL).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use troupe_actors::queue::handlers::{HandlerError, JobHandlers};
use troupe_actors::queue::job::{Job, JobStatus};
use troupe_actors::queue::worker::Polled;

use crate::helpers::{
    assert_problem, eventually, executed, free_port, spawn_manual_app_with_jobs, start,
    start_binary, test_settings, wait_ready, TestApp,
};

/// `flow.step`: completes, unless its payload says `flaky` while `failing`
/// is set (then it fails for good).
fn steps(failing: &Arc<AtomicBool>) -> JobHandlers {
    let failing = Arc::clone(failing);
    JobHandlers::new().with("flow.step", move |job| {
        let fail = failing.load(Ordering::SeqCst) && job.payload.get_bool("flaky").unwrap_or(false);
        async move {
            match fail {
                true => Err(HandlerError::permanent("flaky step failed")),
                false => Ok(Document::new()),
            }
        }
    })
}

async fn manual_app() -> (TestApp, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(true));
    let app = spawn_manual_app_with_jobs(|_| {}, steps(&failing)).await;
    (app, failing)
}

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

/// Enqueue a `flow.step` with `extra` fields; the job (201 expected).
async fn step(app: &TestApp, extra: Value) -> Value {
    let mut body = json!({"type": "flow.step", "payload": {}});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    let response = enqueue(app, &body).await;
    assert_eq!(response.status(), StatusCode::CREATED, "{body}");
    response.json().await.unwrap()
}

fn oid(job: &Value) -> ObjectId {
    ObjectId::parse_str(job["id"].as_str().unwrap()).unwrap()
}

fn id(job: &Value) -> &str {
    job["id"].as_str().unwrap()
}

/// The job's status as the API shows it.
async fn status(app: &TestApp, job: &Value) -> String {
    app.job(oid(job)).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_dependent_waits_while_its_dependency_is_not_done_and_runs_after_it_completes() {
    let (app, _) = manual_app().await;
    let dependency = step(&app, json!({"delay": "60s"})).await;
    let dependent = step(&app, json!({"dependsOn": [id(&dependency)]})).await;
    assert_eq!(dependent["status"], "waiting", "{dependent}");
    assert_eq!(dependent["dependsOn"], json!([id(&dependency)]));
    assert_eq!(dependent["onDependencyFailure"], "fail");
    assert_eq!(app.listed_job_ids("status=waiting").await, [id(&dependent)]);
    let stats: Value = app.get_ops("/jobs/stats").await.json().await.unwrap();
    assert_eq!(stats["waiting"], 1, "{stats}");
    assert_eq!(stats["byType"]["flow.step"]["waiting"], 1, "{stats}");

    // Its dependency is not due: nothing runs, the dependent least of all.
    assert_eq!(app.run_one_job().await, Polled::Empty);
    app.advance_clock(Duration::from_secs(60));
    let ran = app.run_jobs_until_idle().await;
    assert_eq!(
        ran,
        [
            executed(oid(&dependency), JobStatus::Completed),
            executed(oid(&dependent), JobStatus::Completed),
        ]
    );
    let done = app.job(oid(&dependent)).await;
    assert_eq!(done["history"].as_array().unwrap().len(), 1, "{done}");
}

#[tokio::test]
async fn a_job_with_several_dependencies_runs_only_after_the_last_completes() {
    let (app, _) = manual_app().await;
    let first = step(&app, json!({})).await;
    let second = step(&app, json!({"delay": "30s"})).await;
    let third = step(&app, json!({"delay": "60s"})).await;
    let all = [id(&first), id(&second), id(&third)];
    let dependent = step(&app, json!({"dependsOn": all})).await;

    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(oid(&first), JobStatus::Completed)]
    );
    assert_eq!(status(&app, &dependent).await, "waiting");
    app.advance_clock(Duration::from_secs(30));
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(oid(&second), JobStatus::Completed)]
    );
    assert_eq!(status(&app, &dependent).await, "waiting");
    app.advance_clock(Duration::from_secs(30));
    assert_eq!(
        app.run_jobs_until_idle().await,
        [
            executed(oid(&third), JobStatus::Completed),
            executed(oid(&dependent), JobStatus::Completed),
        ]
    );
}

#[tokio::test]
async fn a_job_whose_dependencies_all_completed_already_is_pending_at_once() {
    let (app, _) = manual_app().await;
    let dependency = step(&app, json!({})).await;
    app.run_jobs_until_idle().await;
    let dependent = step(&app, json!({"dependsOn": [id(&dependency)]})).await;
    assert_eq!(dependent["status"], "pending", "{dependent}");
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(oid(&dependent), JobStatus::Completed)]
    );
}

#[tokio::test]
async fn a_failed_dependency_fails_its_dependents_naming_it_or_holds_them_until_a_retry_completes_it(
) {
    let (app, failing) = manual_app().await;
    let dependency = step(&app, json!({"payload": {"flaky": true}})).await;
    let failed = step(&app, json!({"dependsOn": [id(&dependency)]})).await;
    let held = step(
        &app,
        json!({"dependsOn": [id(&dependency)], "onDependencyFailure": "hold"}),
    )
    .await;
    let downstream = step(&app, json!({"dependsOn": [id(&failed)]})).await;

    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(oid(&dependency), JobStatus::Failed)]
    );
    let failed_now = app.job(oid(&failed)).await;
    assert_eq!(failed_now["status"], "failed");
    let error = failed_now["lastError"].as_str().unwrap();
    assert!(
        error.contains(id(&dependency)) && error.ends_with("failed"),
        "{error}"
    );
    assert!(
        failed_now["history"].as_array().unwrap().is_empty(),
        "never ran"
    );
    let downstream_now = app.job(oid(&downstream)).await;
    assert_eq!(downstream_now["status"], "failed", "the failure cascades");
    assert!(downstream_now["lastError"]
        .as_str()
        .unwrap()
        .contains(id(&failed)));
    assert_eq!(status(&app, &held).await, "waiting");

    // The operator mends the cause and retries the dependency: the held
    // dependent runs after it; the failed ones stay failed.
    failing.store(false, Ordering::SeqCst);
    let retried = app
        .post_ops(&format!("/jobs/{}/retry", id(&dependency)))
        .await;
    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(
        app.run_jobs_until_idle().await,
        [
            executed(oid(&dependency), JobStatus::Completed),
            executed(oid(&held), JobStatus::Completed),
        ]
    );
    assert_eq!(status(&app, &failed).await, "failed");
    assert_eq!(status(&app, &downstream).await, "failed");
}

#[tokio::test]
async fn a_cancelled_dependency_fails_or_holds_its_dependents_and_a_held_one_can_be_cancelled() {
    let (app, _) = manual_app().await;
    let dependency = step(&app, json!({"delay": "60s"})).await;
    let failed = step(&app, json!({"dependsOn": [id(&dependency)]})).await;
    let held = step(
        &app,
        json!({"dependsOn": [id(&dependency)], "onDependencyFailure": "hold"}),
    )
    .await;

    let cancel = |job: &Value| format!("/jobs/{}/cancel", id(job));
    assert_eq!(
        app.post_ops(&cancel(&dependency)).await.status(),
        StatusCode::OK
    );
    let failed_now = app.job(oid(&failed)).await;
    assert_eq!(failed_now["status"], "failed");
    let error = failed_now["lastError"].as_str().unwrap();
    assert!(
        error.contains(id(&dependency)) && error.ends_with("was cancelled"),
        "{error}"
    );
    assert_eq!(status(&app, &held).await, "waiting");

    let cancelled = app.post_ops(&cancel(&held)).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(status(&app, &held).await, "cancelled");
    app.advance_clock(Duration::from_secs(60));
    assert!(app.run_jobs_until_idle().await.is_empty(), "none runs");
}

#[tokio::test]
async fn a_retried_dependent_waits_for_its_dependencies_again() {
    let (app, failing) = manual_app().await;
    let dependency = step(&app, json!({"payload": {"flaky": true}})).await;
    let dependent = step(&app, json!({"dependsOn": [id(&dependency)]})).await;
    app.run_jobs_until_idle().await;
    assert_eq!(status(&app, &dependent).await, "failed");

    // Retried before its dependency: it fails again at once, never runs.
    let retried = app
        .post_ops(&format!("/jobs/{}/retry", id(&dependent)))
        .await;
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["status"], "failed", "{retried}");
    failing.store(false, Ordering::SeqCst);
    app.post_ops(&format!("/jobs/{}/retry", id(&dependency)))
        .await;
    let retried = app
        .post_ops(&format!("/jobs/{}/retry", id(&dependent)))
        .await;
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["status"], "waiting", "{retried}");
    assert_eq!(
        app.run_jobs_until_idle().await,
        [
            executed(oid(&dependency), JobStatus::Completed),
            executed(oid(&dependent), JobStatus::Completed),
        ]
    );
}

#[tokio::test]
async fn bad_dependencies_are_a_400_naming_the_field() {
    let (app, _) = manual_app().await;
    let nobody = ObjectId::new().to_hex();
    let many: Vec<String> = (0..101).map(|_| ObjectId::new().to_hex()).collect();
    for (extra, field) in [
        (json!({"dependsOn": [nobody]}), "dependsOn"),
        (json!({"dependsOn": many}), "dependsOn"),
        (json!({"dependsOn": ["not-an-id"]}), "dependsOn"),
        (json!({"dependsOn": [7]}), "dependsOn"),
        (
            json!({"dependsOn": "65f1c0ffee0000000000beef"}),
            "dependsOn",
        ),
        (
            json!({"onDependencyFailure": "never"}),
            "onDependencyFailure",
        ),
    ] {
        let mut body = json!({"type": "flow.step", "payload": {}});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let problem = assert_problem(enqueue(&app, &body).await, StatusCode::BAD_REQUEST).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{extra}: {problem}");
    }
    let body = json!({"type": "flow.step", "payload": {}, "dependsOn": [nobody]});
    let problem = assert_problem(enqueue(&app, &body).await, StatusCode::BAD_REQUEST).await;
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(&nobody), "names the unknown id: {message}");
    let all = app.get_ops("/jobs").await.json::<Value>().await.unwrap();
    assert_eq!(all["jobs"], json!([]), "nothing was written");
}

#[tokio::test]
async fn the_flow_endpoint_shows_dependencies_and_dependents_as_trees() {
    let (app, _) = manual_app().await;
    let root = step(&app, json!({"delay": "60s"})).await;
    let middle = step(&app, json!({"dependsOn": [id(&root)]})).await;
    let last = step(&app, json!({"dependsOn": [id(&root), id(&middle)]})).await;

    let tree: Value = app
        .get_ops(&format!("/jobs/{}/flow", id(&last)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&tree["id"], &tree["status"]),
        (&last["id"], &json!("waiting"))
    );
    assert_eq!(tree["type"], "flow.step");
    assert_eq!(tree["truncated"], false);
    assert_eq!(tree["neededBy"], json!([]));
    let deps = tree["dependsOn"].as_array().unwrap();
    assert_eq!(deps.len(), 2, "{tree}");
    assert_eq!(
        (&deps[0]["id"], &deps[0]["status"]),
        (&root["id"], &json!("pending"))
    );
    assert_eq!(deps[0]["repeated"], false);
    assert_eq!(deps[1]["id"], middle["id"]);
    let below = &deps[1]["children"][0];
    assert_eq!(
        (&below["id"], &below["repeated"]),
        (&root["id"], &json!(true))
    );

    let tree: Value = app
        .get_ops(&format!("/jobs/{}/flow", id(&root)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tree["dependsOn"], json!([]));
    let needed: Vec<&Value> = tree["neededBy"].as_array().unwrap().iter().collect();
    assert_eq!(needed.len(), 2, "{tree}");
    assert_eq!(needed[0]["id"], middle["id"]);
    assert_eq!(needed[0]["children"][0]["id"], last["id"]);
    assert_eq!(
        (&needed[1]["id"], &needed[1]["repeated"]),
        (&last["id"], &json!(true))
    );

    let path = format!("/jobs/{}/flow", ObjectId::new());
    assert_problem(app.get_ops(&path).await, StatusCode::NOT_FOUND).await;
    assert_problem(
        app.get_ops("/jobs/nope/flow").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let anonymous = app.get(&format!("/jobs/{}/flow", id(&root))).await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;

    let doc: Value = app.get("/api-json").await.json().await.unwrap();
    let get = &doc["paths"]["/jobs/{id}/flow"]["get"];
    for status in ["200", "400", "401", "404", "503"] {
        assert!(get["responses"][status].is_object(), "{status}: {get}");
    }
    let schemas = &doc["components"]["schemas"];
    let children = &schemas["FlowNodeView"]["properties"]["children"];
    assert_eq!(
        children["items"]["$ref"],
        "#/components/schemas/FlowNodeView"
    );
    let enqueue = &schemas["EnqueueRequest"]["properties"];
    assert!(enqueue["dependsOn"].is_object() && enqueue["onDependencyFailure"].is_object());
    assert!(schemas["JobStats"]["properties"]["waiting"].is_object());
}

/// A job as a crash leaves it: written directly, `status` with `depends_on`.
fn stored(kind: &str, status: JobStatus, depends_on: &[ObjectId]) -> Job {
    stored_at(kind, status, depends_on, mongodb::bson::DateTime::now())
}

/// [`stored`], created at `now` (a manual clock's).
fn stored_at(
    kind: &str,
    status: JobStatus,
    depends_on: &[ObjectId],
    now: mongodb::bson::DateTime,
) -> Job {
    let mut job = Job::new_at(kind, Document::new(), 3, now);
    job.status = status;
    job.depends_on = depends_on.to_vec();
    job
}

#[tokio::test]
async fn waiting_jobs_whose_dependencies_ended_without_releasing_them_are_settled_by_the_sweep() {
    let (app, _) = manual_app().await;
    // What an instance killed between the end and the release leaves.
    let now = app.settings.queue.clock.now();
    let completed = stored_at("flow.step", JobStatus::Completed, &[], now);
    let failed = stored_at("flow.step", JobStatus::Failed, &[], now);
    let released = stored_at("flow.step", JobStatus::Waiting, &[completed.id], now);
    let doomed = stored_at("flow.step", JobStatus::Waiting, &[failed.id], now);
    let jobs = app.db.collection::<Job>("jobs");
    jobs.insert_many([&completed, &failed, &released, &doomed])
        .await
        .unwrap();

    assert_eq!(
        app.run_one_job().await,
        Polled::Empty,
        "nothing released it"
    );
    let swept = app.state.actors.worker.sweep_flows().await.unwrap();
    assert_eq!((swept.released, swept.failed), (1, 1));
    assert_eq!(
        app.run_jobs_until_idle().await,
        [executed(released.id, JobStatus::Completed)]
    );
    let doomed = app.job(doomed.id).await;
    assert_eq!(doomed["status"], "failed", "{doomed}");
    // A second sweep (another instance's, say) finds nothing to do.
    let again = app.state.actors.worker.sweep_flows().await.unwrap();
    assert_eq!((again.released, again.failed), (0, 0));
}

#[tokio::test]
async fn a_fresh_binary_settles_the_waiting_jobs_a_killed_instance_left() {
    let settings = test_settings();
    let db = crate::helpers::observer(&settings).await;
    let completed = stored("noop", JobStatus::Completed, &[]);
    let cancelled = stored("noop", JobStatus::Cancelled, &[]);
    let released = stored("noop", JobStatus::Waiting, &[completed.id]);
    let doomed = stored("noop", JobStatus::Waiting, &[cancelled.id]);
    db.collection::<Job>("jobs")
        .insert_many([&completed, &cancelled, &released, &doomed])
        .await
        .unwrap();

    let port = free_port();
    let _process = start_binary(&settings, port, "2s");
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://127.0.0.1:{port}")).await;
    let jobs = db.collection::<Document>("jobs");
    eventually(Duration::from_secs(30), "the waiting jobs settled", || {
        let jobs = jobs.clone();
        async move {
            let status = |job: Option<Document>| {
                job.and_then(|j| j.get_str("status").ok().map(str::to_owned))
            };
            let released = status(jobs.find_one(doc! {"_id": released.id}).await.ok()?);
            let doomed = status(jobs.find_one(doc! {"_id": doomed.id}).await.ok()?);
            (released.as_deref() == Some("completed") && doomed.as_deref() == Some("failed"))
                .then_some(())
        }
    })
    .await;
    crate::helpers::remove_stores(&settings).await;
}

#[tokio::test]
async fn sigkill_while_a_dependency_runs_and_its_dependent_runs_once_on_the_survivor() {
    let settings = test_settings();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut doomed = start_binary(&settings, port, "2s");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let post = |body: Value| {
        use secrecy::ExposeSecret;
        let request = client
            .post(format!("{base}/jobs"))
            .bearer_auth(settings.ops.token.expose_secret())
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let dependency =
        post(json!({"type": "sleep", "payload": {"ms": 3000}, "maxAttempts": 5, "timeout": "20s"}))
            .await;
    let dependent =
        post(json!({"type": "noop", "payload": {}, "dependsOn": [id(&dependency)]})).await;
    assert_eq!(dependent["status"], "waiting", "{dependent}");

    let db = crate::helpers::observer(&settings).await;
    let jobs = db.collection::<Document>("jobs");
    let (dependency_id, dependent_id) = (oid(&dependency), oid(&dependent));
    eventually(Duration::from_secs(30), "the dependency to run", || {
        let jobs = jobs.clone();
        async move {
            let job = jobs.find_one(doc! {"_id": dependency_id}).await.ok()??;
            (job.get_str("status").ok()? == "processing").then_some(())
        }
    })
    .await;
    doomed.child.kill().unwrap(); // SIGKILL, mid-dependency
    doomed.child.wait().unwrap();
    let left = jobs
        .find_one(doc! {"_id": dependent_id})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.get_str("status").unwrap(), "waiting");

    let survivor = start(settings.clone(), JobHandlers::new()).await;
    let done = survivor
        .wait_for_job(dependent_id, "completed", Duration::from_secs(60))
        .await;
    let history = done["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "ran exactly once: {done}");
    let survivor_id = survivor.state.actors.instance.to_string();
    assert_eq!(history[0]["instance"], survivor_id.as_str());
    let dependency = survivor.job(dependency_id).await;
    assert_eq!(dependency["status"], "completed");
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(
        at(&history[0]["startedAt"]) >= at(&dependency["completedAt"]),
        "never before its dependency completed: {done} {dependency}"
    );
}

#[tokio::test]
async fn on_three_instances_no_dependent_starts_before_its_dependency_completed_and_each_runs_once()
{
    use crate::helpers::three_instances;
    use tokio::sync::Semaphore;
    const DEPENDENTS: usize = 6;
    let gate = Arc::new(Semaphore::new(0));
    let opened = Arc::clone(&gate);
    let jobs = steps(&Arc::new(AtomicBool::new(false))).with("flow.gate", move |_job| {
        let gate = Arc::clone(&opened);
        async move {
            gate.acquire().await.expect("open").forget();
            Ok(Document::new())
        }
    });
    let apps = three_instances(|s| s.queue.job_timeout = Duration::from_secs(30), jobs).await;
    let dependency = step(&apps[0], json!({"type": "flow.gate", "timeout": "30s"})).await;
    let mut dependents = Vec::new();
    for i in 0..DEPENDENTS {
        let app = &apps[i % 3];
        dependents.push(step(app, json!({"dependsOn": [id(&dependency)]})).await);
    }
    apps[0]
        .wait_for_job(oid(&dependency), "processing", Duration::from_secs(20))
        .await;
    // Every poller ticks (and sweeps) meanwhile; none takes a dependent.
    apps[0]
        .wait_for_jobs(
            doc! {"type": "flow.step"},
            "waiting",
            DEPENDENTS as u64,
            Duration::from_secs(5),
        )
        .await;
    gate.add_permits(1);
    apps[0]
        .wait_for_jobs(
            doc! {"type": "flow.step"},
            "completed",
            DEPENDENTS as u64,
            Duration::from_secs(60),
        )
        .await;
    let done = apps[0].job(oid(&dependency)).await;
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    for dependent in &dependents {
        let job = apps[0].job(oid(dependent)).await;
        let history = job["history"].as_array().unwrap();
        assert_eq!(history.len(), 1, "one attempt: {job}");
        assert!(
            at(&history[0]["startedAt"]) >= at(&done["completedAt"]),
            "{job} {done}"
        );
    }
}
