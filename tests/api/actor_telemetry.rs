//! Actor telemetry: mailbox depth, wait and dead letters, in `/ops/actors`
//! and on `/metrics`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, eventually, spawn_app, spawn_app_with, TestApp};

async fn node(app: &TestApp, name: &str) -> Value {
    let response = app.get_ops(&format!("/ops/actors/{name}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{name}");
    response.json().await.unwrap()
}

async fn inject(app: &TestApp, name: &str, fault: Value) {
    use secrecy::ExposeSecret;
    let response = app
        .client
        .post(app.url(&format!("/ops/actors/{name}/fault")))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// A profile nobody has: a cache miss, so it reaches the CacheActor.
fn unknown_user() -> String {
    format!("/users/{}", mongodb::bson::oid::ObjectId::new())
}

/// The value of the series `series` (name and labels) on `/metrics`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

#[tokio::test]
async fn a_stalled_actor_shows_its_mailbox_depth_and_the_wait_in_ops_and_metrics() {
    let app = spawn_app().await;
    inject(&app, "cache", json!({"kind": "delay", "delayMs": 1500})).await;
    // Three misses: the first meets the stall, the other two wait behind it.
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url(&unknown_user()));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    let stalled = eventually(Duration::from_secs(5), "a backlog at the cache", || async {
        let cache = node(&app, "cache").await;
        (cache["mailboxBacklog"].as_u64() >= Some(1)).then_some(cache)
    })
    .await;
    assert_eq!(stalled["inFlight"], 1, "{stalled}");
    let depth = eventually(Duration::from_secs(5), "the depth on /metrics", || async {
        let depth = metric(
            &metrics(&app).await,
            r#"troupe_actor_mailbox_depth{kind="CacheActor"}"#,
        )?;
        (depth >= 1.0).then_some(depth)
    })
    .await;
    assert!(depth <= 2.0, "{depth}");
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::NOT_FOUND);
    }

    let cache = node(&app, "cache").await;
    assert_eq!(cache["mailboxBacklog"], 0, "{cache}");
    let wait_p99 = cache["wait"]["p99Ms"].as_f64().unwrap();
    assert!(
        (1000.0..10_000.0).contains(&wait_p99),
        "the messages behind the stall waited for it: {cache}"
    );
    assert!(cache["wait"]["p50Ms"].as_f64().unwrap() <= wait_p99);
    let text = metrics(&app).await;
    let wait = |suffix: &str| {
        let series = format!(r#"troupe_actor_mailbox_wait_seconds_{suffix}{{kind="CacheActor"}}"#);
        metric(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(wait("count") >= 3.0, "{text}");
    assert!(wait("sum") >= 2.0, "two messages waited ≥ 1 s each: {text}");
    let fast = r#"troupe_actor_mailbox_wait_seconds_bucket{le="0.5",kind="CacheActor"}"#;
    let fast = metric(&text, fast).unwrap_or_else(|| panic!("no {fast} in\n{text}"));
    assert!(
        fast <= wait("count") - 2.0,
        "the two waits are above 0.5 s: {text}"
    );
    let handled = r#"troupe_actor_handling_seconds_sum{kind="CacheActor"}"#;
    assert!(metric(&text, handled).unwrap() >= 1.5, "{text}");
    // The executors are one kind, whatever the pool's size.
    assert_eq!(
        text.matches(r#"troupe_actor_mailbox_depth{kind="JobExecutor"}"#)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_message_to_a_stopped_actor_is_a_dead_letter() {
    let app = spawn_app_with(|s| s.actors.restart.max_restarts = 1).await;
    assert_eq!(node(&app, "cache").await["deadLetters"], 0);
    let dead = r#"troupe_actor_dead_letters_total{kind="CacheActor"}"#;
    assert_eq!(metric(&metrics(&app).await, dead), Some(0.0));
    // Two panics spend the restart budget (one): the cache stays down.
    inject(&app, "cache", json!({"kind": "panic"})).await;
    let _ = app.get(&unknown_user()).await;
    eventually(Duration::from_secs(10), "the cache to restart", || async {
        let cache = node(&app, "cache").await;
        (cache["restarts"] == 1 && cache["status"] == "running").then_some(())
    })
    .await;
    inject(&app, "cache", json!({"kind": "panic"})).await;
    let _ = app.get(&unknown_user()).await;
    eventually(Duration::from_secs(10), "the cache to be down", || async {
        (node(&app, "cache").await["status"] == "down").then_some(())
    })
    .await;
    // The message that met the panic was delivered; this one has no actor.
    assert_problem(
        app.get(&unknown_user()).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;

    let cache = node(&app, "cache").await;
    assert_eq!(cache["deadLetters"], 1, "{cache}");
    let letter = &cache["recentDeadLetters"][0];
    assert_eq!(letter["actor"], "cache");
    assert_eq!(letter["message"], "CacheMsg");
    assert_eq!(letter["reason"], "notRunning");
    assert!(letter["at"].as_str().unwrap().ends_with('Z'), "{letter}");
    assert_eq!(letter.as_object().unwrap().len(), 4, "no payload: {letter}");
    eventually(
        Duration::from_secs(5),
        "the dead letter on /metrics",
        || async { (metric(&metrics(&app).await, dead) == Some(1.0)).then_some(()) },
    )
    .await;
    // Other actors lost nothing.
    assert_eq!(node(&app, "user").await["deadLetters"], 0);
}
