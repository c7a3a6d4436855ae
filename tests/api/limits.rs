//! Per-address limits decided in-process, their counts shared with the
//! fleet through Redis in the background (issue 26, item 2).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use troupe::config::Settings;
use troupe_actors::queue::handlers::JobHandlers;

use crate::helpers::{
    assert_problem, eventually, retry_after, spawn_app_with, three_instances, TestApp,
};

const HOUR: Duration = Duration::from_secs(3600);

/// 127.0.0.1 (the test client) as a trusted proxy; lookups limited to
/// `per_address` an hour, shared every 50 ms.
fn lookups(per_address: u64) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.server.trusted_proxies = "127.0.0.1".parse().unwrap();
        s.limits.profile_lookups.per_address = per_address;
        s.limits.profile_lookups.window = HOUR;
        s.limits.share_every = Duration::from_millis(50);
    }
}

/// The fleet's count of `client`'s lookups in the current window, in Redis.
async fn fleet_count(app: &TestApp, client: &str) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let window = now.as_secs() / HOUR.as_secs();
    let key = format!(
        "{}limit:{{profile_lookup:{window}}}:{client}",
        app.settings.redis.key_prefix
    );
    let count: Option<u64> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
    count.unwrap_or(0)
}

/// What `app` answers a lookup from `client` (any id: unknown ones count).
async fn lookup(app: &TestApp, client: &str) -> reqwest::Response {
    let path = format!("/users/{}", mongodb::bson::oid::ObjectId::new());
    app.get_from(client, &path).await
}

/// Wait until `app` divides its limits by `n` instances.
async fn sees_instances(app: &TestApp, n: u64) {
    let line = format!("troupe_fleet_instances {n}\n");
    eventually(Duration::from_secs(15), "the fleet's size", || async {
        let metrics = app.get("/metrics").await.text().await.ok()?;
        metrics.contains(&line).then_some(())
    })
    .await;
}

#[tokio::test]
async fn lookups_are_counted_in_redis_in_the_background_and_refused_past_the_limit() {
    let app = spawn_app_with(lookups(5)).await;
    for _ in 0..5 {
        assert_eq!(
            lookup(&app, "203.0.113.7").await.status(),
            StatusCode::NOT_FOUND
        );
    }
    let response = lookup(&app, "203.0.113.7").await;
    let wait = retry_after(&response);
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    // The five let through reach Redis within a sharing period; the refused
    // one is not counted.
    eventually(Duration::from_secs(5), "the fleet's count", || async {
        (fleet_count(&app, "203.0.113.7").await == 5).then_some(())
    })
    .await;
    assert_eq!(
        lookup(&app, "203.0.113.8").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Three instances on one Redis, each dividing a budget of 10 by three:
/// shares of ⌈10/3⌉ = 4 overcommit by 2. Round robin from one address gets
/// the budget and at most the overshoot (the sum of the shares); an
/// instance that learns the fleet's total stops at the budget, not its share.
#[tokio::test]
async fn three_instances_hold_one_address_to_the_fleets_budget() {
    let apps = three_instances(lookups(10), JobHandlers::new()).await;
    for app in &apps {
        sees_instances(app, 3).await;
    }
    let mut let_through = 0;
    for i in 0..30 {
        let response = lookup(&apps[i % 3], "203.0.113.20").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry_after(&response) >= 1);
        } else {
            let_through += 1;
        }
    }
    assert!((10..=12).contains(&let_through), "{let_through}");
    eventually(Duration::from_secs(5), "the fleet's count", || async {
        (fleet_count(&apps[0], "203.0.113.20").await == let_through).then_some(())
    })
    .await;

    // Two instances spend their shares,
    let client = "203.0.113.21";
    let mut spent = 0;
    for app in &apps[..2] {
        for _ in 0..4 {
            assert_eq!(lookup(app, client).await.status(), StatusCode::NOT_FOUND);
            spent += 1;
        }
    }
    assert_eq!(spent, 8);
    eventually(Duration::from_secs(5), "the two shares counted", || async {
        (fleet_count(&apps[0], client).await == 8).then_some(())
    })
    .await;
    // the third lets its first through, learns the fleet's 9 with it, and
    // stops at the budget instead of its share.
    assert_eq!(
        lookup(&apps[2], client).await.status(),
        StatusCode::NOT_FOUND
    );
    eventually(Duration::from_secs(5), "the third's count", || async {
        (fleet_count(&apps[0], client).await == 9).then_some(())
    })
    .await;
    let answers = [
        lookup(&apps[2], client).await.status(),
        lookup(&apps[2], client).await.status(),
        lookup(&apps[2], client).await.status(),
    ];
    assert_eq!(
        answers,
        [
            StatusCode::NOT_FOUND,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}
