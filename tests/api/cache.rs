use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, assert_public_profile_fields, eventually, free_port, log_dir, spawn_app,
    spawn_app_with, unique_email, TestApp,
};

async fn signed_up_user(app: &TestApp) -> (String, String) {
    let tokens = app.signup(&unique_email()).await;
    let id = app.user_id(&tokens.access_token).await;
    (id, tokens.access_token)
}

fn key(app: &TestApp, id: &str) -> String {
    format!("{}profile:v3:{id}", app.settings.redis.key_prefix)
}

#[tokio::test]
async fn miss_then_set_then_hit_each_logged_with_the_key() {
    let app = spawn_app().await;
    let (id, _) = signed_up_user(&app).await;
    let stats = &app.state.actors.cache_stats;

    let first: Value = app.get(&format!("/users/{id}")).await.json().await.unwrap();
    assert_eq!(first["id"], id.as_str());
    assert_eq!(
        (
            stats.misses.load(Ordering::Relaxed),
            stats.sets.load(Ordering::Relaxed)
        ),
        (1, 1)
    );
    assert_eq!(stats.hits.get(), 0);

    let second: Value = app.get(&format!("/users/{id}")).await.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(stats.hits.get(), 1);
    assert_eq!(
        stats.loads.load(Ordering::Relaxed),
        1,
        "the hit did not touch MongoDB"
    );

    let key = key(&app, &id);
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let file = log_dir().join(troupe::telemetry::log_file_name("cache", &date));
    let lines = eventually(
        Duration::from_secs(5),
        "MISS, SET and HIT in the cache log",
        || {
            let (file, key) = (file.clone(), key.clone());
            async move {
                let text = std::fs::read_to_string(&file).ok()?;
                let lines: Vec<String> = text
                    .lines()
                    .filter(|l| l.contains(&key))
                    .map(str::to_owned)
                    .collect();
                (lines.len() >= 3).then_some(lines)
            }
        },
    )
    .await;
    assert!(lines[0].contains("MISS"), "{lines:?}");
    assert!(
        lines[1].contains("SET") && lines[1].contains("ttl=2m"),
        "{lines:?}"
    );
    assert!(lines[2].contains("HIT"), "{lines:?}");
}

#[tokio::test]
async fn the_cached_profile_has_the_configured_ttl_and_no_secrets() {
    let app = spawn_app().await;
    let (id, _) = signed_up_user(&app).await;
    assert_eq!(
        app.get(&format!("/users/{id}")).await.status(),
        StatusCode::OK
    );
    let mut redis = app.redis().await;
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(key(&app, &id))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl_ms > 110_000 && ttl_ms <= 120_000, "ttl {ttl_ms} ms");
    let value: String = redis::cmd("GET")
        .arg(key(&app, &id))
        .query_async(&mut redis)
        .await
        .unwrap();
    let cached: Value = serde_json::from_str(&value).unwrap();
    assert_public_profile_fields(&cached);
}

#[tokio::test]
async fn malformed_id_is_400_and_unknown_id_is_404_briefly_remembered() {
    let app = spawn_app().await;
    assert_problem(app.get("/users/not-an-id").await, StatusCode::BAD_REQUEST).await;
    let unknown = "65f1c0ffee0000000000beef";
    assert_problem(
        app.get(&format!("/users/{unknown}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let mut redis = app.redis().await;
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(key(&app, unknown))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= app.settings.cache.negative_ttl.as_millis() as i64,
        "{ttl_ms}"
    );
    assert_problem(
        app.get(&format!("/users/{unknown}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.state.actors.cache_stats.loads.load(Ordering::Relaxed),
        1,
        "the second 404 came from the cache"
    );
}

#[tokio::test]
async fn fifty_concurrent_misses_cause_one_database_load() {
    let app = spawn_app().await;
    let (id, _) = signed_up_user(&app).await;
    let path = format!("/users/{id}");
    let responses = join_all((0..50).map(|_| app.get(&path))).await;
    assert!(responses.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(
        app.state.actors.cache_stats.loads.load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_profile_update_invalidates_the_cached_copy() {
    let app = spawn_app().await;
    let (id, access) = signed_up_user(&app).await;
    let path = format!("/users/{id}");
    app.get(&path).await;
    app.get(&path).await; // cached now

    let response = app
        .client
        .patch(app.url("/users/profile"))
        .bearer_auth(&access)
        .json(&json!({"name": "Renamed", "age": 41}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(
        (updated["name"].as_str(), updated["age"].as_u64()),
        (Some("Renamed"), Some(41))
    );

    // Immediately after the acknowledgement, readers see the new profile.
    let after: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(after["name"], "Renamed");
    assert_eq!(
        app.state
            .actors
            .cache_stats
            .invalidations
            .load(Ordering::Relaxed),
        1
    );

    let bad = app
        .client
        .patch(app.url("/users/profile"))
        .bearer_auth(&access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(bad, StatusCode::BAD_REQUEST).await;
}

/// A Redis of the test's own, on a free port, that the test can stop and restart.
pub(crate) struct OwnRedis {
    pub(crate) port: u16,
    child: Child,
}

impl OwnRedis {
    pub(crate) fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services up installs it)");
        Self { port, child }
    }

    pub(crate) fn start() -> Self {
        let port = free_port();
        Self::start_on(port)
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) async fn wait_for_redis(port: u16) {
    eventually(
        Duration::from_secs(10),
        "redis-server to answer",
        || async move {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        },
    )
    .await;
}

#[tokio::test]
async fn redis_outage_serves_from_mongodb_and_recovers_by_itself() {
    let mut redis = OwnRedis::start();
    wait_for_redis(redis.port).await;
    let port = redis.port;
    // A server of the test's own, also in the Redis Cluster pass.
    let app = spawn_app_with(|s| {
        s.redis.url = format!("redis://127.0.0.1:{port}").into();
        s.redis.cluster_urls.clear();
    })
    .await;
    let stats = &app.state.actors.cache_stats;
    let (id, _) = signed_up_user(&app).await;
    let path = format!("/users/{id}");

    // Phase 1: healthy — cached.
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    assert_eq!(stats.hits.get(), 1);
    assert!(!stats.degraded());

    // Phase 2: Redis down — still 200 from MongoDB, degradation visible.
    redis.stop();
    for _ in 0..3 {
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["id"], id.as_str());
    }
    assert!(stats.degraded());
    // Not one error per read: a read may still be a hit of the in-process
    // tier while its lease runs, before the tracking connection's loss is
    // seen (the lease bounds how long).
    assert!(stats.errors.load(Ordering::Relaxed) >= 1);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    // (With "events-relay" too, once the relay noticed.)
    assert_eq!(ready["degraded"][0], "redis", "{ready}");

    // Phase 3: Redis back on the same port — the cache recovers without a restart.
    let _redis = OwnRedis::start_on(port);
    wait_for_redis(port).await;
    eventually(Duration::from_secs(15), "the cache to recover", || {
        let app = &app;
        let path = path.clone();
        async move {
            let ok = app.get(&path).await.status() == StatusCode::OK;
            (ok && !app.state.actors.cache_stats.degraded()).then_some(())
        }
    })
    .await;
    let hits_before = stats.hits.get();
    app.get(&path).await;
    app.get(&path).await;
    assert!(stats.hits.get() > hits_before, "served from Redis again");
    // Readiness probes are shared for a second: wait for a fresh one.
    eventually(
        Duration::from_secs(5),
        "readiness without degradation",
        || async {
            let ready: Value = app.get("/health/ready").await.json().await.ok()?;
            (ready["degraded"] == json!([])).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn three_instances_on_one_redis_see_an_update_at_once() {
    let a = spawn_app().await;
    let mut b = crate::helpers::start(a.settings.clone(), Default::default()).await;
    let mut c = crate::helpers::start(a.settings.clone(), Default::default()).await;
    b.owns_database = false;
    c.owns_database = false;
    let (id, access) = signed_up_user(&a).await;
    let path = format!("/users/{id}");
    for app in [&a, &b, &c] {
        assert_eq!(app.get(&path).await.status(), StatusCode::OK); // cached in the shared Redis
    }
    let response = b
        .client
        .patch(b.url("/users/profile"))
        .bearer_auth(&access)
        .json(&json!({"name": "Everywhere"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for app in [&a, &b, &c] {
        let profile: Value = app.get(&path).await.json().await.unwrap();
        assert_eq!(profile["name"], "Everywhere");
    }
}
