use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use troupe::startup::StartupError;
use troupe::Application;

use crate::helpers::{
    config_dir, eventually, free_port, spawn_app, spawn_app_with, test_settings, unreachable_redis,
};

#[tokio::test]
async fn live_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/health/live").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn ready_is_200_when_mongodb_and_redis_answer() {
    let app = spawn_app().await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["mongodb"]["status"], "up");
    assert_eq!(body["redis"]["status"], "up");
    assert_eq!(body["failing"], serde_json::json!([]));
}

#[tokio::test]
async fn ready_stays_200_listing_redis_as_degraded_when_redis_is_unreachable() {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let app = spawn_app_with(unreachable_redis).await;
    // The events relay finds out on its first attempt, within milliseconds
    // (probes are shared for a second: wait for a fresh one).
    let body: Value = eventually(Duration::from_secs(5), "both degraded", || async {
        let response = app.get("/health/ready").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.ok()?;
        (body["degraded"] == serde_json::json!(["redis", "events-relay"])).then_some(body)
    })
    .await;
    assert_eq!(body["failing"], serde_json::json!([]));
    assert_eq!(body["redis"]["status"], "down");
    assert_eq!(body["mongodb"]["status"], "up");
}

#[tokio::test]
async fn ready_is_503_naming_mongodb_when_mongodb_is_unreachable() {
    let app = spawn_app_with(|s| {
        s.mongodb.uri = "mongodb://127.0.0.1:1/?directConnection=true"
            .to_string()
            .into();
        s.mongodb.timeout = Duration::from_millis(300);
    })
    .await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["mongodb"]));
    assert_eq!(body["mongodb"]["status"], "down");
    assert_eq!(body["redis"]["status"], "up");
    // The process itself is alive, and requests that need MongoDB get a prompt 503.
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    let signup = app
        .post_json(
            "/users/signup",
            &serde_json::json!({"name": "N", "email": "n@example.com", "password": "kq7vx2mw"}),
        )
        .await;
    assert_eq!(signup.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn start_up_fails_clearly_on_a_malformed_mongodb_uri() {
    let mut settings = test_settings();
    settings.mongodb.uri = "postgres://not-mongo".to_string().into();
    let err = Application::build(settings)
        .await
        .err()
        .expect("start-up must fail");
    let message = err.to_string();
    assert!(
        message.contains("MONGODB_URI (mongodb.uri) cannot be used") && message.contains("fix: "),
        "{message}"
    );
    // The driver's words are not a source: no debug dump follows the line.
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(err.exit_code(), 2);
}

/// A port in use fails start-up with the address named, before anything
/// else has started (only the read-only migrations check comes first). Were
/// the listener bound after the actor tree, the MongoDB client's monitors
/// and the actors would be tasks left running on this test's runtime, and
/// the start-up migrations would have created the test's database.
#[tokio::test]
async fn a_port_in_use_fails_start_up_naming_the_address_with_nothing_started() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut settings = test_settings();
    settings.server.port = port;
    let database = settings.mongodb.database.clone();
    let uri = settings.mongodb.uri.expose_secret().to_owned();
    let runtime = tokio::runtime::Handle::current().metrics();
    let tasks_before = runtime.num_alive_tasks();

    let err = Application::build(settings)
        .await
        .err()
        .expect("start-up must fail");

    // (The migrations check's MongoDB client is shut down on the way out;
    // its last driver task may take a moment to end.)
    crate::helpers::eventually(
        Duration::from_secs(5),
        "start-up's tasks to end",
        || async { (runtime.num_alive_tasks() <= tasks_before).then_some(()) },
    )
    .await;
    let StartupError::Bind { addr, source } = &err else {
        panic!("not a bind error: {err:?}");
    };
    assert_eq!(addr, &format!("127.0.0.1:{port}"));
    assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(
        err.to_string(),
        format!("cannot listen on 127.0.0.1:{port}")
    );
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let databases = client.list_database_names().await.unwrap();
    assert!(!databases.contains(&database), "{database} was created");
    drop(taken);
}

/// The binary prints a start-up failure with its cause, and exits non-zero.
#[test]
fn the_binary_reports_a_port_in_use_with_its_cause() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let logs = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("port-in-use-logs");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_troupe"))
        .env("TROUPE_CONFIG_DIR", config_dir())
        .env("TROUPE_ENV", "test")
        .env("TROUPE__SERVER__HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("LOG_DIR", &logs)
        .output()
        .expect("run the binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The error, then its cause (the OS's words for EADDRINUSE).
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "stderr: {stderr}"
    );
    drop(taken);
}

#[tokio::test]
async fn root_reports_name_version_and_uptime() {
    let app = spawn_app().await;
    let body: Value = app.get("/").await.json().await.unwrap();
    assert_eq!(body["name"], "troupe");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptimeSeconds"].is_u64());
}

#[tokio::test]
async fn graceful_shutdown_stops_serving_and_returns() {
    let mut app = spawn_app().await;
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .expect("run() returns within the grace period")
        .expect("clean shutdown");
    let refused = reqwest::get(app.url("/health/live")).await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn a_flood_of_readiness_probes_pings_mongodb_about_once_a_second() {
    let app = spawn_app().await;
    let pings = || app.state.mongo_commands.sent("ping");
    let (before, started) = (pings(), std::time::Instant::now());
    // 50 at once (they share one probe), then 50 one after the other.
    let concurrent = futures::future::join_all((0..50).map(|_| app.get("/health/ready"))).await;
    assert!(concurrent.iter().all(|r| r.status() == StatusCode::OK));
    for _ in 0..50 {
        assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
    }
    // One probe per started second at most (before: one ping per request).
    let allowed = 1 + started.elapsed().as_secs();
    let sent = pings() - before;
    assert!(
        (1..=allowed).contains(&sent),
        "{sent} pings for 100 probes in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn anonymous_readiness_names_the_failing_dependency_but_not_its_error() {
    let port = free_port();
    let app = spawn_app_with(|s| {
        s.mongodb.uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true").into();
        s.mongodb.timeout = Duration::from_millis(300);
    })
    .await;
    for response in [
        app.get("/health/ready").await,
        app.get_bearer("/health/ready", "a-wrong-token").await,
    ] {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["failing"], serde_json::json!(["mongodb"]));
        assert_eq!(body["mongodb"]["status"], "down");
        assert!(body["mongodb"].get("error").is_none(), "{text}");
        // Nothing of the driver's error (which lists hosts and topology).
        assert!(!text.contains(&port.to_string()), "{text}");
        assert!(!text.to_lowercase().contains("topology"), "{text}");
    }
    // The operator sees why.
    let response = app.get_ops("/health/ready").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    let error = body["mongodb"]["error"]
        .as_str()
        .expect("the error for the operator");
    assert!(!error.is_empty());
}
