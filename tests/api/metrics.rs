//! `/metrics` costs O(1): a scrape reads memory only — no query to MongoDB,
//! no message to an actor — and can be closed with its own bearer token.

use std::time::Duration;

use mongodb::bson::{doc, DateTime};
use reqwest::StatusCode;
use troupe_actors::queue::job::Job;

use crate::helpers::{assert_problem, eventually, spawn_app, spawn_app_with, TestApp};

/// The value of the sample `name` (a full series name, labels included).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// The reading commands the queue figures used to cost per scrape (less
/// the signing keys' reload, every 30 s on its own).
fn reads(app: &TestApp) -> [u64; 3] {
    let commands = &app.state.mongo_commands;
    ["aggregate", "find", "count"]
        .map(|command| commands.sent(command) - commands.sent_on(command, "signing_keys"))
}

#[tokio::test]
async fn a_hundred_scrapes_send_no_query_to_mongodb_and_no_message_to_the_poller() {
    // The next tick is an hour away: after the start-up listing and count,
    // nothing in the service reads the queue by itself. (Nor asks the poller
    // for its pool: the fleet's heartbeat does, so it is an hour away too.)
    let app = spawn_app_with(|s| {
        s.queue.poll_interval = Duration::from_secs(3600);
        s.fleet.heartbeat_interval = Duration::from_secs(3600);
        s.fleet.heartbeat_ttl = Duration::from_secs(7200);
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the start-up listing and count",
        || async {
            let text = scrape(&app).await;
            let listed = sample(&text, "troupe_job_listing_duration_seconds_count") > Some(0.0);
            let counted =
                sample(&text, "troupe_queue_snapshot_age_seconds").is_some_and(f64::is_finite);
            (listed && counted).then_some(())
        },
    )
    .await;
    let poller = app.state.actors.queue.poller_stats();
    let (reads_before, handled_before) = (reads(&app), poller.handled());

    for _ in 0..100 {
        scrape(&app).await;
    }

    // Before: each scrape sent the poller `Pool` and `Stats`, and `Stats` ran
    // an aggregate, a find and a count.
    assert_eq!(
        reads(&app),
        reads_before,
        "no aggregate/find/count per scrape"
    );
    assert_eq!(poller.handled(), handled_before, "no message to the poller");
    assert_eq!(poller.backlog(), 0);
    let text = scrape(&app).await;
    assert!(
        sample(
            &text,
            r#"troupe_store_commands_total{command="aggregate",collection="jobs"}"#
        ) >= Some(1.0),
        "the command counter is exported:\n{text}"
    );
}

#[tokio::test]
async fn queue_gauges_follow_the_queue_within_a_tick_or_two() {
    let app = spawn_app().await;
    // Seven jobs due tomorrow: pending, and nobody claims them.
    let tomorrow = DateTime::from_millis(DateTime::now().timestamp_millis() + 86_400_000);
    let jobs = app.db.collection::<Job>("jobs");
    for n in 0..7 {
        let mut job = Job::new("noop", doc! { "n": n }, 5);
        job.run_at = tomorrow;
        jobs.insert_one(&job).await.unwrap();
    }
    // Ticks are 250 ms and the figures may be recounted every 250 ms.
    let text = eventually(
        Duration::from_secs(3),
        "the pending gauge to show 7",
        || async {
            let text = scrape(&app).await;
            (sample(&text, r#"troupe_jobs{name="pending"}"#) == Some(7.0)).then_some(text)
        },
    )
    .await;
    assert_eq!(sample(&text, "troupe_queue_depth"), Some(7.0));
    let age = sample(&text, "troupe_queue_snapshot_age_seconds").unwrap();
    assert!((0.0..3.0).contains(&age), "snapshot age {age}");
}

#[tokio::test]
async fn actor_figures_on_metrics_follow_restarts_without_asking_the_supervisor() {
    let app = spawn_app().await;
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, r#"troupe_actor_restarts{name="cache"}"#),
        Some(0.0)
    );
    let response = app
        .client
        .post(app.url("/ops/actors/cache/fault"))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(
            &app.settings.ops.token,
        ))
        .json(&serde_json::json!({"kind": "panic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // The armed fault fires on the cache actor's next message: a miss.
    let _ = app
        .get(&format!("/users/{}", mongodb::bson::oid::ObjectId::new()))
        .await;
    eventually(
        Duration::from_secs(10),
        "the restart on /metrics",
        || async {
            let text = scrape(&app).await;
            (sample(&text, r#"troupe_actor_restarts{name="cache"}"#) == Some(1.0)).then_some(())
        },
    )
    .await;
    let text = scrape(&app).await;
    for series in [
        r#"troupe_actor_restarts{name="executor-0"}"#,
        r#"troupe_actor_messages_handled{name="queue-poller"}"#,
        r#"troupe_actor_mailbox_backlog{name="event-bus"}"#,
    ] {
        assert!(sample(&text, series).is_some(), "missing {series}:\n{text}");
    }
}

#[tokio::test]
async fn with_a_metrics_token_a_scrape_needs_it() {
    let token = "a-metrics-token-for-this-test";
    let app = spawn_app_with(|s| s.ops.metrics_token = Some(token.to_string().into())).await;
    assert_problem(app.get("/metrics").await, StatusCode::UNAUTHORIZED).await;
    assert_problem(
        app.get_bearer("/metrics", "not-the-token").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // The ops token is another credential: it does not open /metrics.
    assert_problem(app.get_ops("/metrics").await, StatusCode::UNAUTHORIZED).await;
    let response = app.get_bearer("/metrics", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("troupe_http_requests_total"));
}

#[tokio::test]
async fn without_a_metrics_token_metrics_stay_public() {
    let app = spawn_app().await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::OK);
}

/// The series counting requests to `/health/live` that answered 200.
const LIVE_REQUESTS: &str =
    "troupe_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"}";

#[tokio::test]
async fn a_rendering_serves_the_scrapes_of_the_next_reuse_period() {
    let reused = spawn_app_with(|s| s.ops.metrics_reuse = Duration::from_secs(3600)).await;
    let fresh = spawn_app().await; // the test profile renders every scrape
    for app in [&reused, &fresh] {
        app.get("/health/live").await;
    }
    let first = [scrape(&reused).await, scrape(&fresh).await];
    for app in [&reused, &fresh] {
        for _ in 0..3 {
            app.get("/health/live").await;
        }
    }
    let second = [scrape(&reused).await, scrape(&fresh).await];
    // Within the reuse period a scrape gets the same text, requests since
    // or not; rendered each time, the three requests show.
    assert_eq!(first[0], second[0]);
    assert_eq!(sample(&first[1], LIVE_REQUESTS), Some(1.0), "{}", first[1]);
    assert_eq!(sample(&second[1], LIVE_REQUESTS), Some(4.0));
}
