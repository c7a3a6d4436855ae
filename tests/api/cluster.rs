//! Redis Cluster: what only makes sense on one. Run by `scripts/test`'s
//! cluster pass (`REDIS_CLUSTER_URLS` set, the local cluster of
//! `scripts/services redis-cluster up`); skipped without it. The other
//! Redis-facing modules run in that pass too and prove the behaviour.

use reqwest::StatusCode;
use secrecy::ExposeSecret;

use std::time::Duration;

use crate::helpers::{eventually, spawn_app, test_settings, unique_email};

/// `KEYS prefix*` over `conn`, sorted.
async fn keys(conn: &mut impl redis::aio::ConnectionLike, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .expect("KEYS");
    keys.sort();
    keys
}

/// With `REDIS_CLUSTER_URLS` set the app writes its keys (throttle windows,
/// per-address limits' shared counts, cached profiles) to the cluster and none to
/// `REDIS_URL`, its readiness pings the cluster, and the keys of one login
/// attempt spread over two slots (the account's and the address's tag).
#[tokio::test]
async fn with_cluster_urls_every_key_lives_in_the_cluster() {
    if test_settings().redis.cluster_urls.is_empty() {
        eprintln!("skipped: REDIS_CLUSTER_URLS is not set");
        return;
    }
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let status = app.login(&email, "not the password").await.status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let id = app.user_id(&tokens.access_token).await;
    for _ in 0..2 {
        assert_eq!(
            app.get(&format!("/users/{id}")).await.status(),
            StatusCode::OK
        );
    }

    let prefix = &app.settings.redis.key_prefix;
    let expected = [
        "throttle:login:account:",
        "throttle:login:address:{127.0.0.1}:failures",
        "limit:{signup:",
        "limit:{profile_lookup:",
        &format!("profile:v3:{id}"),
    ];
    // (The limits' counts arrive with their next sharing round.)
    let in_cluster = eventually(Duration::from_secs(10), "every key", || async {
        let in_cluster = keys(&mut app.redis().await, prefix).await;
        let all = expected
            .iter()
            .all(|part| in_cluster.iter().any(|key| key.contains(part)));
        all.then_some(in_cluster)
    })
    .await;
    assert!(in_cluster
        .iter()
        .any(|key| key.contains("limit:{") && key.ends_with("}:127.0.0.1")));
    let slots: std::collections::HashSet<_> = in_cluster
        .iter()
        .filter(|key| key.contains("throttle:login:"))
        .map(|key| redis::cluster_routing::Slot::for_key(key.as_str()))
        .collect();
    assert_eq!(
        slots.len(),
        2,
        "the account's slot and the address's: {in_cluster:?}"
    );

    let single = redis::Client::open(app.settings.redis.url.expose_secret()).unwrap();
    let mut single = single.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(keys(&mut single, prefix).await, Vec::<String>::new());

    let ready: serde_json::Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["redis"]["status"], "up");
}

/// `RedisStore::dedicated` (for `XREAD BLOCK`) has no response timeout, on
/// one server and on a cluster: a blocking read longer than the store's
/// per-command timeout ends with Redis's own answer (nil), not a timeout.
#[tokio::test]
async fn a_dedicated_connection_blocks_past_the_command_timeout() {
    let settings = test_settings();
    let store = settings.redis.store().expect("redis settings");
    let block = store.timeout() * 3;
    let mut conn = store.dedicated().await.expect("a dedicated connection");
    let started = std::time::Instant::now();
    let read: Option<redis::Value> = redis::cmd("XREAD")
        .arg("BLOCK")
        .arg(block.as_millis() as u64)
        .arg("STREAMS")
        .arg(store.key("{test}:stream"))
        .arg("$")
        .query_async(&mut conn)
        .await
        .expect("XREAD answers after the block");
    assert_eq!(read, None);
    assert!(started.elapsed() >= block, "{:?}", started.elapsed());
}
