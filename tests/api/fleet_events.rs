//! Issue #15, item 3: fleet-wide events. Instances that share a database
//! and a Redis key prefix are one fleet: an event published on one reaches
//! every instance's bus (through a Redis Stream), tagged with its instance.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use troupe::config::Settings;
use troupe_actors::queue::handlers::JobHandlers;

use crate::cache::{wait_for_redis, OwnRedis};
use crate::events::next_event;
use crate::helpers::{assert_problem, eventually, spawn_app_with, start, unique_email, TestApp};

/// Instances of one fleet; the first owns the database and the keys, and is
/// stopped last (so the others never write to a dropped database).
struct Fleet(Vec<TestApp>);

impl Drop for Fleet {
    fn drop(&mut self) {
        while let Some(app) = self.0.pop() {
            drop(app);
        }
    }
}

/// `n` instances on one database and one Redis key prefix, each reading the
/// fleet's stream (so an event published from now on reaches all of them).
async fn fleet(n: usize, customize: impl FnOnce(&mut Settings)) -> Fleet {
    let first = spawn_app_with(customize).await;
    let settings = first.settings.clone();
    let mut apps = vec![first];
    for _ in 1..n {
        let mut app = start(settings.clone(), JobHandlers::new()).await;
        app.owns_database = false;
        apps.push(app);
    }
    for app in &apps {
        relay_connected(app).await;
    }
    Fleet(apps)
}

async fn relay_connected(app: &TestApp) {
    eventually(
        Duration::from_secs(10),
        "the events relay to connect",
        || async { app.state.actors.relay.connected().then_some(()) },
    )
    .await;
}

fn instance(app: &TestApp) -> String {
    app.state.actors.instance.to_string()
}

/// Open `/ops/events` with `query`.
async fn stream(app: &TestApp, query: &str) -> reqwest::Response {
    let response = app.get_ops(&format!("/ops/events?{query}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response
}

/// Sign up on `app`; the new user's id.
async fn new_user(app: &TestApp) -> String {
    let tokens = app.signup(&unique_email()).await;
    app.user_id(&tokens.access_token).await
}

/// The next `UserCreated` on `events`, whoever it is for.
async fn next_created(events: &mut reqwest::Response) -> Value {
    next_event(events, "UserCreated", |_| true).await
}

#[tokio::test]
async fn a_signup_on_one_instance_shows_up_on_anothers_stream_tagged_with_its_instance() {
    let fleet = fleet(3, |_| {}).await;
    let [a, b, c] = [&fleet.0[0], &fleet.0[1], &fleet.0[2]];
    let mut on_b = stream(b, "kinds=UserCreated").await;
    let mut on_c = stream(c, "kinds=UserCreated").await;
    // Read while signing up, so each event's arrival time is its own.
    let arrival = |events| async move {
        let created = next_created(events).await;
        (created, chrono::Utc::now())
    };
    let (id, on_b, on_c) = tokio::join!(new_user(a), arrival(&mut on_b), arrival(&mut on_c));
    for (name, (created, arrived)) in [("B", on_b), ("C", on_c)] {
        assert_eq!(created["userId"], id.as_str(), "{created}");
        assert_eq!(created["instance"], instance(a), "{created}");
        let at: chrono::DateTime<chrono::Utc> = created["at"].as_str().unwrap().parse().unwrap();
        let latency = (arrived - at).num_microseconds().unwrap_or_default() as f64 / 1000.0;
        eprintln!("published on A, on {name}'s stream after {latency:.1} ms");
    }
    // Each instance logs and counts only its own events: B's audit log and
    // counter had nothing (the bus hands an event to every subscription at
    // once, so A's would be there by now); A's had it.
    let delivered = |app: &TestApp, name: &str| {
        let stats = app.state.actors.registry.stats();
        stats
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .delivered
    };
    assert_eq!(delivered(b, "audit-log"), 0);
    assert_eq!(delivered(c, "audit-log"), 0);
    assert!(delivered(a, "audit-log") >= 1);
    let b_counts = b.state.actors.event_counts.snapshot();
    assert_eq!(b_counts.get("UserCreated"), None, "{b_counts:?}");
    let figures = b.state.actors.relay.figures();
    assert!(
        figures.received >= 1 && figures.failures == 0,
        "{figures:?}"
    );
}

#[tokio::test]
async fn instance_and_scope_narrow_the_stream_to_one_instance() {
    let fleet = fleet(2, |_| {}).await;
    let [a, b] = [&fleet.0[0], &fleet.0[1]];
    let mut fleet_on_b = stream(b, "kinds=UserCreated").await;
    let only_b = format!("kinds=UserCreated&instance={}", instance(b));
    let mut b_by_id = stream(b, &only_b).await;
    let mut b_local = stream(b, "kinds=UserCreated&scope=local").await;
    let only_a = format!("kinds=UserCreated&instance={}", instance(a));
    let mut a_by_id_on_b = stream(b, &only_a).await;

    let from_a = new_user(a).await;
    // A's event has reached B's bus ...
    next_event(&mut fleet_on_b, "UserCreated", |e| {
        e["userId"] == from_a.as_str()
    })
    .await;
    // ... before B's own: so a narrowed stream that admitted A's event
    // would show it first.
    let from_b = new_user(b).await;
    for events in [&mut b_by_id, &mut b_local] {
        let first = next_created(events).await;
        assert_eq!(
            first["userId"],
            from_b.as_str(),
            "A's event slipped in: {first}"
        );
        assert_eq!(first["instance"], instance(b));
    }
    let first = next_created(&mut a_by_id_on_b).await;
    assert_eq!(first["userId"], from_a.as_str());
    // (B's own event arrived after A's on the fleet stream, once.)
    let next = next_created(&mut fleet_on_b).await;
    assert_eq!(next["userId"], from_b.as_str());
}

#[tokio::test]
async fn a_malformed_instance_or_scope_is_refused_with_the_parameter_named() {
    let fleet = fleet(1, |_| {}).await;
    let app = &fleet.0[0];
    let long = "x".repeat(129);
    for query in [
        "instance=".to_string(),
        format!("instance={long}"),
        "instance=a%20b".to_string(),
        "scope=galaxy".to_string(),
    ] {
        let problem = assert_problem(
            app.get_ops(&format!("/ops/events?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        let field = problem["errors"][0]["field"].as_str().unwrap();
        assert!(query.starts_with(field), "{query}: {problem}");
    }
    let both = format!("instance={}&scope=local", instance(app));
    let problem = assert_problem(
        app.get_ops(&format!("/ops/events?{both}")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "scope", "{problem}");
    // The longest id accepted.
    stream(app, &format!("instance={}", "x".repeat(128))).await;
}

#[tokio::test]
async fn without_redis_local_events_go_on_and_readiness_names_the_relay() {
    // Nothing listens on port 1: every attempt of the relay fails at once.
    let app = spawn_app_with(crate::helpers::unreachable_redis).await;
    let mut events = stream(&app, "kinds=UserCreated").await;
    let sent = Instant::now();
    let id = new_user(&app).await;
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the sign-up waited"
    );
    let created = next_event(&mut events, "UserCreated", |e| e["userId"] == id.as_str()).await;
    assert_eq!(created["instance"], instance(&app));
    eventually(
        Duration::from_secs(5),
        "readiness to name the relay",
        || async {
            let response = app.get("/health/ready").await;
            (response.status() == StatusCode::OK).then_some(())?;
            let body: Value = response.json().await.ok()?;
            let degraded = body["degraded"].as_array()?;
            degraded.contains(&"events-relay".into()).then_some(())
        },
    )
    .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("troupe_events_relay_up 0"), "{metrics}");
    let failures = app.state.actors.relay.figures().failures;
    assert!(failures >= 1, "failures counted: {failures}");
}

#[tokio::test]
async fn the_relay_reconnects_by_itself_when_redis_comes_back() {
    let mut redis = OwnRedis::start();
    let port = redis.port;
    wait_for_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    // A single server of its own, also in the Redis Cluster pass.
    let fleet = fleet(2, |s| {
        s.redis.url = url.into();
        s.redis.cluster_urls.clear();
    })
    .await;
    let [a, b] = [&fleet.0[0], &fleet.0[1]];

    redis.stop();
    let mut on_b = stream(b, "kinds=UserCreated").await;
    // Answered: publishing never waits on Redis. (Its event reaches B or
    // not, depending on whether Redis is back before the write gives up.)
    new_user(a).await;
    eventually(Duration::from_secs(10), "both relays to notice", || async {
        (a.state.actors.relay.degraded() && b.state.actors.relay.degraded()).then_some(())
    })
    .await;

    let _redis = OwnRedis::start_on(port);
    wait_for_redis(port).await;
    for app in [a, b] {
        relay_connected(app).await;
    }
    let id = new_user(a).await;
    let created = next_event(&mut on_b, "UserCreated", |e| e["userId"] == id.as_str()).await;
    assert_eq!(created["instance"], instance(a));
    let ready: Value = b.get("/health/ready").await.json().await.unwrap();
    assert!(
        !ready["degraded"]
            .as_array()
            .unwrap()
            .contains(&"events-relay".into()),
        "{ready}"
    );
}
