use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    assert_problem, eventually, log_dir, spawn_app, spawn_app_with, unique_email, TestApp,
};

/// Open the live event stream (optionally narrowed to `kinds`).
async fn stream(app: &TestApp, kinds: &str) -> reqwest::Response {
    let response = app.get_ops(&format!("/ops/events?kinds={kinds}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

/// Read SSE events until one of `kind` satisfies `matches`; return its data.
pub(crate) async fn next_event(
    response: &mut reqwest::Response,
    kind: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let event = frame
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
            if let (true, Some(data)) = (event == kind, data) {
                let value: Value = serde_json::from_str(data).unwrap();
                if matches(&value) {
                    return value;
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event in time"))
            .unwrap()
            .expect("stream open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn signup_appears_on_the_live_stream_and_in_the_user_log() {
    let app = spawn_app().await;
    let mut events = stream(&app, "UserCreated,JobCompleted").await;
    let tokens = app.signup(&unique_email()).await;
    let id = app.user_id(&tokens.access_token).await;

    let created = next_event(&mut events, "UserCreated", |e| e["userId"] == id.as_str()).await;
    assert!(created["seq"].is_u64() && created["at"].is_string());
    assert_eq!(created["instance"], *app.state.actors.instance);
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "ids only: {created}");
    // The welcome job's completion is an event too.
    next_event(&mut events, "JobCompleted", |e| {
        e["jobType"] == "user.created"
    })
    .await;

    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let file = log_dir().join(troupe::telemetry::log_file_name("user", &date));
    eventually(
        Duration::from_secs(5),
        "the audit line in the user log",
        || {
            let (file, id) = (file.clone(), id.clone());
            async move {
                let text = std::fs::read_to_string(&file).ok()?;
                text.contains(&format!("welcome e-mail queued for user {id}"))
                    .then_some(())
            }
        },
    )
    .await;
    let counts = app.state.actors.event_counts.snapshot();
    assert!(
        counts.get("UserCreated").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
}

#[tokio::test]
async fn refresh_token_reuse_is_published() {
    // No grace window: a repeat is reuse at once.
    let app = spawn_app_with(|s| s.auth.refresh_reuse_grace = Duration::ZERO).await;
    let mut events = stream(&app, "RefreshTokenReuseDetected,TokensRefreshed").await;
    let tokens = app.signup(&unique_email()).await;
    let id = app.user_id(&tokens.access_token).await;
    assert_eq!(
        app.refresh(&tokens.refresh_token).await.status(),
        StatusCode::OK
    );
    next_event(&mut events, "TokensRefreshed", |e| {
        e["userId"] == id.as_str()
    })
    .await;
    assert_eq!(
        app.refresh(&tokens.refresh_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let reuse = next_event(&mut events, "RefreshTokenReuseDetected", |e| {
        e["userId"] == id.as_str()
    })
    .await;
    assert!(reuse["sessionId"].is_string());
}

#[tokio::test]
async fn the_stream_needs_the_ops_token_and_known_kinds() {
    let app = spawn_app().await;
    assert_problem(app.get("/ops/events").await, StatusCode::UNAUTHORIZED).await;
    let problem = assert_problem(
        app.get_ops("/ops/events?kinds=UserCreated,Nope").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("Nope"));
    // A stream whose client goes away is unsubscribed.
    let before = app.state.actors.registry.stats().len();
    let response = stream(&app, "UserCreated").await;
    assert_eq!(app.state.actors.registry.stats().len(), before + 1);
    drop(response);
    let mut bytes = app.get_ops("/ops/events").await.bytes_stream();
    let _ = tokio::time::timeout(Duration::from_millis(50), bytes.next()).await;
    app.signup(&unique_email()).await; // a publish notices the closed channel
    eventually(
        Duration::from_secs(5),
        "the dropped stream to be unsubscribed",
        || async {
            (app.state
                .actors
                .registry
                .stats()
                .iter()
                .filter(|s| s.name.starts_with("sse-"))
                .count()
                == 1)
                .then_some(())
        },
    )
    .await;
}
