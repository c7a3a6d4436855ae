//! The in-process tier of the profile cache: served without a Redis
//! command, invalidated by Redis on every instance, flushed and bypassed
//! while its tracking connection is lost; and the fleet-wide coherence of
//! both tiers (no stale read after an acknowledged update).
//!
//! The tests that need the tier run on a Redis of their own (one node, also
//! in the Redis Cluster pass, where the tier is off); the coherence test runs
//! on the shared Redis or cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use troupe_actors::queue::handlers::JobHandlers;

use crate::cache::{wait_for_redis, OwnRedis};
use crate::helpers::{eventually, spawn_app, spawn_app_with, start, unique_email, TestApp};

async fn signed_up_user(app: &TestApp) -> (String, String) {
    let tokens = app.signup(&unique_email()).await;
    let id = app.user_id(&tokens.access_token).await;
    (id, tokens.access_token)
}

/// An app on the test's own Redis at `port` (one node, so the tier is on).
async fn on_own_redis(port: u16) -> TestApp {
    spawn_app_with(|s| {
        s.redis.url = format!("redis://127.0.0.1:{port}").into();
        s.redis.cluster_urls.clear();
    })
    .await
}

/// Another instance of `first`'s fleet (same database, Redis and prefix).
async fn another(first: &TestApp) -> TestApp {
    let mut app = start(first.settings.clone(), JobHandlers::new()).await;
    app.owns_database = false;
    app
}

async fn tracked(app: &TestApp) {
    eventually(Duration::from_secs(10), "tracking to be on", || async {
        app.state.actors.cache_stats.tracking().then_some(())
    })
    .await;
}

fn local_hits(app: &TestApp) -> u64 {
    app.state.actors.cache_stats.local_hits.get()
}

/// Read `path` until one read is answered by the in-process tier; that read.
async fn served_locally(app: &TestApp, path: &str) -> Value {
    eventually(
        Duration::from_secs(10),
        "a read from the local tier",
        || async {
            let before = local_hits(app);
            let response = app.get(path).await;
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.unwrap();
            (local_hits(app) > before).then_some(body)
        },
    )
    .await
}

/// GETs Redis has run (`INFO commandstats`).
async fn get_calls(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

async fn rename(app: &TestApp, access: &str, name: &str) {
    let response = app
        .client
        .patch(app.url("/users/profile"))
        .bearer_auth(access)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_repeated_read_is_served_by_the_local_tier_without_a_redis_get() {
    let redis = OwnRedis::start();
    wait_for_redis(redis.port).await;
    let app = on_own_redis(redis.port).await;
    tracked(&app).await;
    let (id, _) = signed_up_user(&app).await;
    let path = format!("/users/{id}");
    let first = served_locally(&app, &path).await;
    assert_eq!(first["id"], id.as_str());

    let stats = &app.state.actors.cache_stats;
    let (gets, hits, local) = (
        get_calls(redis.port).await,
        stats.hits.get(),
        local_hits(&app),
    );
    for _ in 0..10 {
        let body: Value = app.get(&path).await.json().await.unwrap();
        assert_eq!(body, first);
    }
    assert_eq!(get_calls(redis.port).await, gets, "a GET reached Redis");
    assert_eq!(local_hits(&app) - local, 10);
    assert_eq!(stats.hits.get() - hits, 10);

    // Both figures reach /metrics and the cache's node on /ops/actors.
    let text = app.get("/metrics").await.text().await.unwrap();
    let line = format!("troupe_cache_local_hits_total {}", local_hits(&app));
    assert!(text.contains(&line), "no {line:?} in\n{text}");
    assert!(text.contains("troupe_cache_local_tracking 1"), "{text}");
    let node: Value = app.get_ops("/ops/actors/cache").await.json().await.unwrap();
    let tier = &node["cache"]["local"];
    assert_eq!(tier["tracking"], true, "{node}");
    assert_eq!(tier["hits"], local_hits(&app), "{node}");
}

#[tokio::test]
async fn an_update_on_one_instance_reaches_the_local_tier_of_another() {
    let redis = OwnRedis::start();
    wait_for_redis(redis.port).await;
    let a = on_own_redis(redis.port).await;
    let b = another(&a).await;
    tracked(&a).await;
    tracked(&b).await;
    let (id, access) = signed_up_user(&a).await;
    let path = format!("/users/{id}");
    let before = served_locally(&b, &path).await;
    assert_ne!(before["name"], "Renamed");
    let stats = &b.state.actors.cache_stats;
    let invalidated = stats.local_invalidations.load(Ordering::Relaxed);

    rename(&a, &access, "Renamed").await;
    // Right after A's acknowledgement, B no longer serves its copy.
    let after: Value = b.get(&path).await.json().await.unwrap();
    assert_eq!(after["name"], "Renamed");
    assert!(stats.local_invalidations.load(Ordering::Relaxed) > invalidated);
    // And it keeps the new profile in its tier.
    assert_eq!(served_locally(&b, &path).await["name"], "Renamed");
}

#[tokio::test]
async fn losing_tracking_flushes_and_bypasses_the_local_tier_until_it_is_back() {
    let mut redis = OwnRedis::start();
    let port = redis.port;
    wait_for_redis(port).await;
    let app = on_own_redis(port).await;
    tracked(&app).await;
    let (id, access) = signed_up_user(&app).await;
    let path = format!("/users/{id}");
    served_locally(&app, &path).await;
    let stats = &app.state.actors.cache_stats;
    let flushes = stats.local_flushes.load(Ordering::Relaxed);

    redis.stop();
    eventually(Duration::from_secs(10), "tracking to be lost", || async {
        (!stats.tracking()).then_some(())
    })
    .await;
    assert!(stats.local_flushes.load(Ordering::Relaxed) > flushes);
    // Redis is down, so the invalidation cannot reach it: the update is
    // seen because the tier was flushed and is bypassed, not served.
    rename(&app, &access, "While down").await;
    let local = local_hits(&app);
    for _ in 0..3 {
        let body: Value = app.get(&path).await.json().await.unwrap();
        assert_eq!(body["name"], "While down");
    }
    assert_eq!(
        local_hits(&app),
        local,
        "served from the tier while untracked"
    );

    let _redis = OwnRedis::start_on(port);
    wait_for_redis(port).await;
    tracked(&app).await;
    assert_eq!(served_locally(&app, &path).await["name"], "While down");
}

/// Read `path` on every instance in a loop until `stop`: loads and fills
/// racing the writes.
fn keep_reading(apps: &[&TestApp], path: &str, stop: &Arc<AtomicBool>) -> JoinSet<()> {
    let mut readers = JoinSet::new();
    for app in apps {
        let (client, url, stop) = (app.client.clone(), app.url(path), Arc::clone(stop));
        readers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.get(&url).send().await;
                // Room for the writer and the checked reads on two cores.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    readers
}

#[tokio::test]
async fn three_instances_serve_no_stale_profile_after_an_acknowledged_update() {
    const ROUNDS: usize = 300;
    let a = spawn_app().await;
    let (b, c) = (another(&a).await, another(&a).await);
    let fleet = [&a, &b, &c];
    let on_cluster = !a.settings.redis.cluster_urls.is_empty();
    if !on_cluster {
        for app in fleet {
            tracked(app).await;
        }
    }
    let (id, access) = signed_up_user(&a).await;
    let path = format!("/users/{id}");
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = keep_reading(&fleet, &path, &stop);

    let mut stale = vec![];
    for round in 0..ROUNDS {
        let name = format!("round {round}");
        rename(&a, &access, &name).await;
        // Twice on each instance: a miss (loaded and filled), then a hit
        // (kept in the local tier for the next round to invalidate).
        for _ in 0..2 {
            let reads = join_all(fleet.iter().map(|app| app.get(&path))).await;
            for (instance, read) in reads.into_iter().enumerate() {
                let body: Value = read.json().await.unwrap();
                if body["name"] != name.as_str() {
                    stale.push((round, instance, body["name"].clone()));
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    while readers.join_next().await.is_some() {}
    for app in fleet {
        let stats = &app.state.actors.cache_stats;
        eprintln!(
            "loads {} fills refused {} local hits {} local invalidations {}",
            stats.loads.load(Ordering::Relaxed),
            stats.fills_refused.load(Ordering::Relaxed),
            local_hits(app),
            stats.local_invalidations.load(Ordering::Relaxed),
        );
    }
    assert!(
        stale.is_empty(),
        "stale reads (round, instance, name): {stale:?}"
    );
    if !on_cluster {
        for app in fleet {
            assert!(local_hits(app) > 0, "the local tier was not exercised");
        }
    }
}

#[tokio::test]
async fn a_restarted_cache_actor_tracks_and_serves_the_tier_again() {
    use secrecy::ExposeSecret;
    let redis = OwnRedis::start();
    wait_for_redis(redis.port).await;
    let app = on_own_redis(redis.port).await;
    tracked(&app).await;
    let (id, _) = signed_up_user(&app).await;
    let path = format!("/users/{id}");
    served_locally(&app, &path).await;

    let armed = app
        .client
        .post(app.url("/ops/actors/cache/fault"))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(&json!({"kind": "panic"}))
        .send()
        .await
        .unwrap();
    assert!(armed.status().is_success(), "{}", armed.status());
    // A miss reaches the actor, which panics on it and is restarted.
    let unknown = mongodb::bson::oid::ObjectId::new();
    app.get(&format!("/users/{unknown}")).await;
    eventually(
        Duration::from_secs(10),
        "the cache actor to restart",
        || async {
            let node: Value = app.get_ops("/ops/actors/cache").await.json().await.ok()?;
            (node["restarts"] == 1 && node["status"] == "running").then_some(())
        },
    )
    .await;
    // The old incarnation's tracking task ended with it; the new one's owns
    // the tier, which is served again.
    tracked(&app).await;
    served_locally(&app, &path).await;
    let stats = &app.state.actors.cache_stats;
    // Waiting for something not to happen: a late end of the old task
    // would have turned the tier off within a few polls.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(stats.tracking(), "the old task turned the tier off");
}
