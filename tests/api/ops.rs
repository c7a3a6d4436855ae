use std::time::Duration;

use mongodb::bson::{doc, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, eventually, spawn_app, spawn_app_with, unique_email, TestApp,
};

async fn node(app: &TestApp, name: &str) -> Value {
    let response = app.get_ops(&format!("/ops/actors/{name}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{name}");
    response.json().await.unwrap()
}

async fn inject(app: &TestApp, name: &str, fault: Value) -> reqwest::Response {
    use secrecy::ExposeSecret;
    app.client
        .post(app.url(&format!("/ops/actors/{name}/fault")))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(&fault)
        .send()
        .await
        .unwrap()
}

/// Wait until `name` has restarted `n` times.
async fn restarted(app: &TestApp, name: &str, n: u64) -> Value {
    eventually(
        Duration::from_secs(10),
        &format!("{name} to restart {n} times"),
        || async move {
            let node = node(app, name).await;
            (node["restarts"] == n && node["status"] == "running").then_some(node)
        },
    )
    .await
}

/// The path of a profile nobody has: a cache miss, so it reaches the CacheActor.
fn unknown_user() -> String {
    format!("/users/{}", mongodb::bson::oid::ObjectId::new())
}

#[tokio::test]
async fn the_tree_shows_every_actor_with_its_figures() {
    let app = spawn_app().await;
    app.signup(&unique_email()).await;
    let response = app.get_ops("/ops/actors").await;
    assert_eq!(response.status(), StatusCode::OK);
    let root: Value = response.json().await.unwrap();
    assert_eq!(root["kind"], "RootSupervisor");
    let names: Vec<&str> = root["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "event-bus",
            "events-relay",
            "audit-log",
            "event-counter",
            "user",
            "cache",
            "queue-poller",
            "queue-scheduler",
            "fleet"
        ]
    );
    for child in root["children"].as_array().unwrap() {
        assert_eq!(child["status"], "running", "{child}");
        assert_eq!(child["supervisor"], "root");
        assert_eq!(child["restarts"], 0);
        assert_eq!(
            child["restartBudgetLeft"],
            app.settings.actors.restart.max_restarts
        );
        assert!(
            child["id"].is_string()
                && child["startedAt"].is_string()
                && child["mailboxBacklog"].is_u64()
        );
    }
    let user = node(&app, "user").await;
    assert_eq!(user["kind"], "UserActor");
    assert!(user["messagesHandled"].as_u64().unwrap() >= 1, "{user}");
    assert!(user["handling"]["p99Ms"].is_number());
    let poller = node(&app, "queue-poller").await;
    assert_eq!(poller["pool"]["size"], app.settings.queue.executors);
    assert_eq!(
        poller["children"].as_array().unwrap().len(),
        app.settings.queue.executors
    );
    assert_eq!(node(&app, "executor-0").await["kind"], "JobExecutor");
    assert_problem(
        app.get_ops("/ops/actors/nobody").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(app.get("/ops/actors").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn an_injected_panic_restarts_the_actor_and_requests_recover() {
    let app = spawn_app().await;
    let response = inject(&app, "user", json!({"kind": "panic"})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // The request that meets the panic gets a prompt 503, not a hang.
    let failed = app
        .post_json(
            "/users/signup",
            &json!({"name": "A", "email": unique_email(), "password": "kq7vx2mw"}),
        )
        .await;
    assert_problem(failed, StatusCode::SERVICE_UNAVAILABLE).await;
    let user = restarted(&app, "user", 1).await;
    assert!(
        user["lastFailure"]["reason"]
            .as_str()
            .unwrap()
            .contains("injected fault: panic"),
        "{user}"
    );
    assert_eq!(
        user["restartBudgetLeft"],
        app.settings.actors.restart.max_restarts - 1
    );
    app.signup(&unique_email()).await; // works again
    let counts = app.state.actors.event_counts.snapshot();
    eventually(
        Duration::from_secs(5),
        "FaultInjected and ActorRestarted events",
        || async {
            let counts = app.state.actors.event_counts.snapshot();
            (counts.get("FaultInjected") == Some(&1) && counts.get("ActorRestarted") == Some(&1))
                .then_some(())
        },
    )
    .await;
    let _ = counts;
}

#[tokio::test]
async fn stop_and_delay_faults() {
    let app = spawn_app().await;
    let tokens = app.signup(&unique_email()).await;
    let id = app.user_id(&tokens.access_token).await;
    let path = format!("/users/{id}");

    assert_eq!(
        inject(&app, "cache", json!({"kind": "delay", "delayMs": 300}))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    let cache = node(&app, "cache").await;
    assert!(
        cache["handling"]["p99Ms"].as_f64().unwrap() >= 300.0,
        "the stall shows in the handling time: {cache}"
    );

    assert_eq!(
        inject(&app, "cache", json!({"kind": "stop"}))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    // Hits do not pass through the actor: a miss delivers the fault.
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    let _ = app.get(&unknown_user()).await;
    let cache = restarted(&app, "cache", 1).await;
    assert!(
        cache["lastFailure"]["reason"]
            .as_str()
            .unwrap()
            .contains("stopped"),
        "{cache}"
    );
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);

    let bad = inject(&app, "cache", json!({"kind": "explode"})).await;
    assert_problem(bad, StatusCode::BAD_REQUEST).await;
    let bad = inject(&app, "cache", json!({"kind": "delay"})).await;
    assert_problem(bad, StatusCode::BAD_REQUEST).await;
    assert_problem(
        inject(&app, "nobody", json!({"kind": "panic"})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn fault_injection_is_404_saying_it_is_off_when_disabled() {
    let app = spawn_app_with(|s| s.ops.fault_injection = false).await;
    let problem = assert_problem(
        inject(&app, "user", json!({"kind": "panic"})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("ops.fault_injection"), "{detail}");
}

#[tokio::test]
async fn exceeding_the_restart_limit_turns_readiness_to_503() {
    let app = spawn_app_with(|s| s.actors.restart.max_restarts = 2).await;
    let tokens = app.signup(&unique_email()).await;
    let id = app.user_id(&tokens.access_token).await;
    let cached = format!("/users/{id}");
    assert_eq!(app.get(&cached).await.status(), StatusCode::OK);
    // Misses go through the CacheActor and deliver the faults.
    for n in 1..=2 {
        inject(&app, "cache", json!({"kind": "panic"})).await;
        let _ = app.get(&unknown_user()).await;
        restarted(&app, "cache", n).await;
    }
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
    inject(&app, "cache", json!({"kind": "panic"})).await;
    let _ = app.get(&unknown_user()).await;
    let ready = eventually(Duration::from_secs(10), "readiness to turn 503", || async {
        // The reason is for operators only.
        let response = app.get_ops("/health/ready").await;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["failing"], json!(["actors"]));
    assert!(body["actors"]["error"]
        .as_str()
        .unwrap()
        .contains("restart limit"));
    // Requests that need the dead actor answer 503 at once; cached profiles
    // are still served from Redis.
    assert_problem(
        app.get(&unknown_user()).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(app.get(&cached).await.status(), StatusCode::OK);
    assert_eq!(node(&app, "cache").await["status"], "down");
}

#[tokio::test]
async fn metrics_expose_requests_cache_jobs_actors_and_events() {
    let app = spawn_app().await;
    let tokens = app.signup(&unique_email()).await;
    let id = app.user_id(&tokens.access_token).await;
    app.get(&format!("/users/{id}")).await;
    app.get(&format!("/users/{id}")).await;
    app.wait_for_jobs(
        doc! {"type": "user.created"},
        "completed",
        1,
        Duration::from_secs(10),
    )
    .await;
    // Job counts come from the poller's snapshot, recounted on the tick
    // after a scrape asks for them.
    eventually(
        Duration::from_secs(5),
        "the completed job on /metrics",
        || async {
            let text = app.get("/metrics").await.text().await.ok()?;
            text.contains(r#"troupe_jobs{name="completed"} 1"#)
                .then_some(())
        },
    )
    .await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for expected in [
        r#"troupe_http_requests_total{method="POST",route="/users/signup",status="201"} 1"#,
        r#"troupe_http_request_duration_seconds_count{method="GET",route="/users/{id}"} 2"#,
        "troupe_cache_hits_total 1",
        "troupe_cache_misses_total 1",
        "troupe_cache_errors_total 0",
        r#"troupe_jobs{name="completed"} 1"#,
        "troupe_queue_depth ",
        "troupe_job_listing_duration_seconds_count",
        "troupe_job_claim_duration_seconds_count",
        "troupe_job_execution_duration_seconds_count 1",
        r#"troupe_actor_restarts{name="user"} 0"#,
        r#"troupe_actor_mailbox_backlog{name="cache"}"#,
        r#"troupe_events_by_kind{name="UserCreated"} 1"#,
        "troupe_events_published_total",
        r#"troupe_events_dropped{name="audit-log"} 0"#,
        "troupe_queue_snapshot_age_seconds ",
        r#"troupe_store_commands_total{command="insert",collection="jobs"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[tokio::test]
async fn logs_endpoint_serves_a_category_day_and_rejects_everything_else() {
    let app = spawn_app().await;
    let marker = format!("/marker-{}", uuid::Uuid::new_v4().simple());
    app.get(&marker).await;
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let text = eventually(Duration::from_secs(5), "the request in the log", || {
        let (app, marker, date) = (&app, marker.clone(), date.clone());
        async move {
            let response = app
                .get_ops(&format!("/logs?type=requests&date={date}"))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            let text = response.text().await.unwrap();
            text.contains(&marker).then_some(text)
        }
    })
    .await;
    assert!(text.lines().count() >= 1);
    let tail = app
        .get_ops(&format!("/logs?type=requests&date={date}&tail=1"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(tail.lines().count(), 1);

    for bad in [
        "/logs?type=secrets&date=2026-11-29",
        "/logs?type=../../etc/passwd&date=2026-11-29",
        "/logs?type=requests&date=2026-02-30",
        "/logs?type=requests&date=../../x",
        "/logs?type=requests&date=2026-11-29&tail=0",
        "/logs?type=requests",
        "/logs?type=requests&date=2026-11-29&path=/etc/passwd",
    ] {
        assert_problem(app.get_ops(bad).await, StatusCode::BAD_REQUEST).await;
    }
    assert_problem(
        app.get_ops("/logs?type=cache&date=1999-01-01").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.get(&format!("/logs?type=requests&date={date}")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let _ = Document::new();
}

#[tokio::test]
async fn logs_tail_is_read_from_the_end_of_large_files_and_bounded() {
    // This app's /logs reads its own directory (the process's log files are
    // shared by every test), with files made for the test.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("logs-tail")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let numbered: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.join("requests.2001-02-03.log"), &numbered).unwrap();
    // One line longer than the 64 KiB read block, and no final newline.
    let long = "y".repeat(200_000);
    let unterminated = format!("short\n{long}");
    std::fs::write(dir.join("worker.2001-02-03.log"), &unterminated).unwrap();
    let app = spawn_app_with(|s| s.log.dir = dir.clone()).await;
    let text = |query: &'static str| {
        let app = &app;
        async move {
            let response = app.get_ops(&format!("/logs?date=2001-02-03&{query}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            response.text().await.unwrap()
        }
    };

    assert_eq!(
        text("type=requests&tail=3").await,
        "line 19997\nline 19998\nline 19999\n"
    );
    let most = text("type=requests&tail=10000").await;
    assert_eq!(most.lines().count(), 10_000);
    assert_eq!(most.lines().next(), Some("line 10000"));
    assert_eq!(text("type=requests").await, numbered);
    assert_eq!(text("type=worker&tail=1").await, long);
    assert_eq!(text("type=worker&tail=5").await, unterminated);

    let problem = assert_problem(
        app.get_ops("/logs?type=requests&date=2001-02-03&tail=10001")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "tail", "{problem}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn query_string_errors_say_so_and_list_each_parameter() {
    let app = spawn_app().await;
    for (path, fields) in [
        ("/jobs?limit=0&status=lost", &["limit", "status"][..]),
        (
            "/logs?type=requests&date=2026-11-29&tail=0&extra=1",
            &["extra", "tail"],
        ),
        ("/ops/events?kinds=NoSuchKind", &["kinds"]),
    ] {
        let problem = assert_problem(app.get_ops(path).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            problem["detail"], "the query string has invalid parameters",
            "{path}"
        );
        let mut listed: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, fields, "{path}");
    }
}
