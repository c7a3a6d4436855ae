//! Public profiles are public, e-mail addresses are not (issue 13, item 3):
//! `GET /users/{id}` needs no authentication and ids are guessable, so it
//! shows `{id, name, createdAt}` only, and lookups are limited per address.

use std::collections::BTreeSet;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_owner_profile_fields, assert_problem, assert_public_profile_fields, eventually,
    retry_after, spawn_app, spawn_app_with, unique_email, unreachable_redis, TestApp,
};

/// The per-process counter in an ObjectId's last 3 bytes.
fn counter(id: ObjectId) -> u32 {
    let b = id.bytes();
    u32::from_be_bytes([0, b[9], b[10], b[11]])
}

/// The seconds in an ObjectId's first 4 bytes.
fn seconds(id: ObjectId) -> u32 {
    u32::from_be_bytes(id.bytes()[..4].try_into().unwrap())
}

/// `id` with its timestamp moved back `back` seconds and its counter down
/// `down`: how an attacker walks ObjectIds.
fn walk_back(id: ObjectId, back: u32, down: u32) -> ObjectId {
    let mut bytes = id.bytes();
    bytes[..4].copy_from_slice(&seconds(id).wrapping_sub(back).to_be_bytes());
    let moved = counter(id).wrapping_sub(down) & 0x00ff_ffff;
    bytes[9..].copy_from_slice(&moved.to_be_bytes()[1..]);
    ObjectId::from_bytes(bytes)
}

/// Sign up `n` users; their e-mail addresses and ids, oldest first.
async fn sign_up(app: &TestApp, n: usize) -> Vec<(String, ObjectId)> {
    let mut users = Vec::new();
    for _ in 0..n {
        let email = unique_email();
        let tokens = app.signup(&email).await;
        let id = ObjectId::parse_str(app.user_id(&tokens.access_token).await).unwrap();
        users.push((email, id));
    }
    users
}

#[tokio::test]
async fn walking_guessable_ids_harvests_no_email_or_age() {
    let app = spawn_app().await;
    let users = sign_up(&app, 5).await;
    let newest = users.last().unwrap().1;
    let oldest = users[0].1;
    // The attack: from one's own id walk the counter down (and the
    // timestamp back as far as the signups took), reading every profile
    // that answers, then reading each again (from the cache now).
    let span = counter(newest).wrapping_sub(counter(oldest)) & 0x00ff_ffff;
    assert!(span < 5_000, "counter span {span}");
    let mut found = BTreeSet::new();
    for back in 0..=seconds(newest) - seconds(oldest) {
        for down in 0..=span {
            let path = format!("/users/{}", walk_back(newest, back, down));
            if app.get(&path).await.status() != StatusCode::OK {
                continue;
            }
            for _ in 0..2 {
                let text = app.get(&path).await.text().await.unwrap();
                for (email, _) in &users {
                    assert!(!text.contains(email.as_str()), "e-mail leaked: {text}");
                }
                assert!(!text.contains('@'), "{text}");
                let profile: Value = serde_json::from_str(&text).unwrap();
                assert_public_profile_fields(&profile);
                found.insert(profile["id"].as_str().unwrap().to_owned());
            }
        }
    }
    // The walk reached every user: it was the attack, and it got names only.
    let ids: BTreeSet<String> = users.iter().map(|(_, id)| id.to_hex()).collect();
    assert!(ids.is_subset(&found), "walked {found:?}, users {ids:?}");
}

#[tokio::test]
async fn the_owner_sees_email_and_age_on_get_and_patch_profile() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let own: Value = app
        .get_bearer("/users/profile", &tokens.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_owner_profile_fields(&own);
    assert_eq!(
        (own["email"].as_str(), own["age"].as_u64()),
        (Some(email.as_str()), Some(30))
    );

    let patched = app
        .client
        .patch(app.url("/users/profile"))
        .bearer_auth(&tokens.access_token)
        .json(&json!({"age": 31}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let patched: Value = patched.json().await.unwrap();
    assert_owner_profile_fields(&patched);
    assert_eq!(
        (patched["email"].as_str(), patched["age"].as_u64()),
        (Some(email.as_str()), Some(31))
    );

    // The same user, seen by anyone.
    let public: Value = app
        .get(&format!("/users/{}", own["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_public_profile_fields(&public);
    assert_eq!(
        (&public["id"], &public["name"], &public["createdAt"]),
        (&own["id"], &own["name"], &own["createdAt"])
    );
}

#[tokio::test]
async fn a_profile_cached_with_its_email_before_the_upgrade_is_never_served() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let id = app.user_id(&tokens.access_token).await;
    // What the previous version cached, under its key.
    let old = json!({"id": id, "name": "Test User", "email": email, "age": 30, "createdAt": "2026-01-01T00:00:00Z"});
    let mut redis = app.redis().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{}user:{id}", app.settings.redis.key_prefix))
        .arg(old.to_string())
        .arg("EX")
        .arg(120)
        .query_async(&mut redis)
        .await
        .unwrap();
    for _ in 0..2 {
        let text = app.get(&format!("/users/{id}")).await.text().await.unwrap();
        assert!(!text.contains(&email), "old cached value served: {text}");
        assert_public_profile_fields(&serde_json::from_str(&text).unwrap());
    }
}

/// 127.0.0.1 (the test client) as a trusted proxy, lookups limited to 3 a minute.
async fn app_with_lookup_limit() -> TestApp {
    spawn_app_with(|s| {
        s.server.trusted_proxies = "127.0.0.1".parse().unwrap();
        s.limits.profile_lookups.per_address = 3;
        s.limits.profile_lookups.window = Duration::from_secs(60);
    })
    .await
}

#[tokio::test]
async fn public_lookups_past_the_limit_get_429_with_retry_after() {
    let app = app_with_lookup_limit().await;
    let (_, id) = sign_up(&app, 1).await.remove(0);
    let path = format!("/users/{id}");
    let unknown = format!("/users/{}", ObjectId::new());
    // Hits, misses and unknown ids all count.
    assert_eq!(
        app.get_from("203.0.113.5", &path).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_from("203.0.113.5", &path).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_from("203.0.113.5", &unknown).await.status(),
        StatusCode::NOT_FOUND
    );
    for refused in [&path, &unknown] {
        let response = app.get_from("203.0.113.5", refused).await;
        let wait = retry_after(&response);
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
        assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    }
    // Another address has its own budget.
    assert_eq!(
        app.get_from("203.0.113.6", &path).await.status(),
        StatusCode::OK
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"troupe_rate_limited_total{limit="profile_lookup"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_64() {
    let app = app_with_lookup_limit().await;
    let path = format!("/users/{}", sign_up(&app, 1).await[0].1);
    // Three addresses of one /64 share its budget...
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"] {
        assert_eq!(app.get_from(host, &path).await.status(), StatusCode::OK);
    }
    assert_eq!(
        app.get_from("2001:db8:1:2::4", &path).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...the next /64 has its own.
    assert_eq!(
        app.get_from("2001:db8:1:3::1", &path).await.status(),
        StatusCode::OK
    );
}

/// Redis down: lookups are served, and the limit is still decided in each
/// instance (per-instance limits only: the fleet's counts cannot be shared).
#[tokio::test]
async fn public_lookups_are_served_and_still_limited_while_redis_is_down() {
    let app = spawn_app_with(|s| {
        unreachable_redis(s);
        s.limits.profile_lookups.per_address = 4;
    })
    .await;
    let (_, id) = sign_up(&app, 1).await.remove(0);
    for _ in 0..4 {
        let response = app.get(&format!("/users/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_public_profile_fields(&response.json().await.unwrap());
    }
    let response = app.get(&format!("/users/{id}")).await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    // The sharing rounds that failed are counted.
    let line = r#"troupe_rate_limit_unavailable_total{limit="profile_lookup"} "#;
    eventually(
        Duration::from_secs(10),
        "a failed round counted",
        || async {
            let metrics = app.get("/metrics").await.text().await.ok()?;
            metrics.contains(line).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_two_profiles_and_the_429s() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api-json").await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    let properties = |name: &str| {
        let mut keys: Vec<String> = schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(properties("PublicProfile"), ["createdAt", "id", "name"]);
    assert_eq!(
        properties("OwnerProfile"),
        ["age", "createdAt", "email", "emailVerified", "id", "name"]
    );
    let ok_schema = |path: &str, method: &str| {
        doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(ok_schema("/users/{id}", "get").ends_with("/PublicProfile"));
    assert!(ok_schema("/users/profile", "get").ends_with("/OwnerProfile"));
    assert!(ok_schema("/users/profile", "patch").ends_with("/OwnerProfile"));
    for (path, method) in [
        ("/users/{id}", "get"),
        ("/users/signup", "post"),
        ("/users/login", "post"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"]["429"].is_object(),
            "429 on {method} {path}"
        );
    }
}
