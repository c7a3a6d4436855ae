use std::time::Duration;

use mongodb::bson::doc;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    assert_problem, eventually, retry_after, spawn_app, spawn_app_with, unique_email,
    unreachable_redis, TestApp, PASSWORD,
};

/// An app behind a trusted proxy on 127.0.0.1 (so tests speak for any client
/// address through `X-Forwarded-For`) with the login throttle given here.
async fn app_with_throttle(free_failures: u64, per_account: u64, per_address: u64) -> TestApp {
    spawn_app_with(|s| {
        s.server.trusted_proxies = "127.0.0.1".parse().unwrap();
        let t = &mut s.auth.throttle;
        (t.free_failures, t.per_account, t.per_address) = (free_failures, per_account, per_address);
        t.base_delay = Duration::from_secs(1);
        t.max_delay = Duration::from_secs(60);
    })
    .await
}

/// Finding (a): successes used to count against the address.
#[tokio::test]
async fn successful_logins_never_use_up_the_address_budget() {
    let app = spawn_app_with(|s| s.auth.throttle.per_address = 3).await;
    let (first, second) = (unique_email(), unique_email());
    app.signup(&first).await;
    app.signup(&second).await;
    for _ in 0..10 {
        assert_eq!(app.login(&first, PASSWORD).await.status(), StatusCode::OK);
    }
    assert_eq!(app.login(&second, PASSWORD).await.status(), StatusCode::OK);
}

/// Finding (b): 5 wrong passwords from anywhere used to lock the owner out.
#[tokio::test]
async fn wrong_passwords_from_one_address_never_lock_the_owner_out_and_delays_grow() {
    let app = app_with_throttle(3, 100, 100).await;
    let (attacker, owner) = ("203.0.113.66", "198.51.100.7");
    let email = unique_email();
    app.signup(&email).await;
    // The free allowance, and one failure past it (which starts a wait).
    for _ in 0..4 {
        let response = app.login_from(attacker, &email, "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let mut waits = Vec::new();
    for round in 0..3 {
        // Refused before the password is checked, even the right one.
        let refused = app.login_from(attacker, &email, PASSWORD).await;
        waits.push(retry_after(&refused));
        assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
        // The owner, elsewhere, is not affected.
        let response = app.login_from(owner, &email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "round {round}");
        if round < 2 {
            // Once the wait is over the attacker may guess again, once.
            let guess = eventually(Duration::from_secs(10), "the wait to end", || async {
                let response = app.login_from(attacker, &email, "wrong password").await;
                (response.status() != StatusCode::TOO_MANY_REQUESTS).then_some(response)
            })
            .await;
            assert_eq!(guess.status(), StatusCode::UNAUTHORIZED);
        }
    }
    assert_eq!(
        waits,
        [1, 2, 4],
        "each failure past the allowance doubles the wait"
    );
}

/// Each attempt is counted when it starts, and past the allowance only one
/// of concurrent attempts may go ahead: parallel requests get no more
/// guesses than sequential ones.
#[tokio::test]
async fn concurrent_guesses_get_no_more_than_the_allowance() {
    let app = app_with_throttle(2, 100, 100).await;
    let email = unique_email();
    app.signup(&email).await;
    let responses = futures::future::join_all(
        (0..20).map(|_| app.login_from("203.0.113.77", &email, "wrong password")),
    )
    .await;
    let count = |status| responses.iter().filter(|r| r.status() == status).count();
    // Two free failures and one past them (which starts the wait); the
    // wait (1 s) outlasts the burst.
    assert_eq!(
        (
            count(StatusCode::UNAUTHORIZED),
            count(StatusCode::TOO_MANY_REQUESTS)
        ),
        (3, 17)
    );
}

#[tokio::test]
async fn a_successful_login_clears_the_failures_of_its_account_and_address() {
    let app = app_with_throttle(3, 100, 100).await;
    let email = unique_email();
    app.signup(&email).await;
    for _ in 0..2 {
        for _ in 0..3 {
            let response = app
                .login_from("203.0.113.1", &email, "wrong password")
                .await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        let response = app.login_from("203.0.113.1", &email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// Issue #23, item 1: wrong passwords from many addresses used to lock the
/// owner out for the whole window. Past the account's ceiling only the
/// addresses that failed for it are refused; an address with no failure for
/// it gets one attempt, so the owner's first try from anywhere succeeds and
/// the attacker gets at most one guess per address.
#[tokio::test]
async fn a_distributed_attack_refuses_the_guessing_addresses_not_the_owner() {
    let app = app_with_throttle(10, 4, 100).await;
    let (email, other) = (unique_email(), unique_email());
    app.signup(&email).await;
    app.signup(&other).await;
    let attacker = |i: u32| format!("203.0.113.{i}");
    // The ceiling (4), then one guess from a fifth, fresh address.
    for i in 1..=5 {
        let response = app.login_from(&attacker(i), &email, "wrong").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "address {i}");
    }
    // Every address that failed is refused until the window ends, even with
    // the right password, and even in parallel.
    let window = app.settings.auth.throttle.window.as_secs();
    let again = futures::future::join_all((1..=5).flat_map(|i| {
        let app = &app;
        let email = &email;
        (0..4).map(move |_| async move { app.login_from(&attacker(i), email, PASSWORD).await })
    }))
    .await;
    for response in again {
        let wait = retry_after(&response);
        assert!(wait > 60 && wait <= window, "{wait}");
        assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    }
    // A fresh address gets one guess, however many it sends at once.
    let fresh = attacker(50);
    let burst =
        futures::future::join_all((0..10).map(|_| app.login_from(&fresh, &email, "wrong"))).await;
    let count = |status| burst.iter().filter(|r| r.status() == status).count();
    assert_eq!(
        (
            count(StatusCode::UNAUTHORIZED),
            count(StatusCode::TOO_MANY_REQUESTS)
        ),
        (1, 9)
    );
    // The owner, from an address of their own, logs in at the first try.
    let response = app.login_from("198.51.100.1", &email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Other accounts are not affected.
    let response = app.login_from(&attacker(1), &other, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn failures_across_accounts_from_one_address_are_capped() {
    let app = app_with_throttle(10, 100, 3).await;
    let email = unique_email();
    app.signup(&email).await;
    // Credential stuffing: one guess each on many accounts.
    for _ in 0..3 {
        let response = app
            .login_from("203.0.113.9", &unique_email(), PASSWORD)
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app.login_from("203.0.113.9", &email, PASSWORD).await;
    assert!(retry_after(&response) <= app.settings.auth.throttle.window.as_secs());
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    // Finding (c): behind a trusted proxy each client has its own budget.
    let response = app.login_from("203.0.113.10", &email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// Finding (c), the other half: from an untrusted peer the header is ignored.
#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = spawn_app_with(|s| {
        s.auth.throttle.per_address = 3;
        s.limits.signups.per_address = 2;
    })
    .await;
    assert!(!app
        .settings
        .server
        .trusted_proxies
        .contains([127, 0, 0, 1].into()));
    for i in 0..3 {
        let response = app
            .login_from(&format!("203.0.113.{i}"), &unique_email(), PASSWORD)
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app
        .login_from("203.0.113.200", &unique_email(), PASSWORD)
        .await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    for i in 0..2 {
        let response = app
            .signup_from(&format!("203.0.113.{i}"), &unique_email())
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = app.signup_from("203.0.113.200", &unique_email()).await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
}

/// Finding (d): sign-ups were not limited at all.
#[tokio::test]
async fn signups_from_one_address_past_the_limit_get_429() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = "127.0.0.1".parse().unwrap();
        s.limits.signups.per_address = 3;
    })
    .await;
    for _ in 0..3 {
        let response = app.signup_from("203.0.113.4", &unique_email()).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let email = unique_email();
    let response = app.signup_from("203.0.113.4", &email).await;
    let wait = retry_after(&response);
    assert!(wait > 0 && wait <= app.settings.limits.signups.window.as_secs());
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    // Nothing was created, nor mailed.
    let users = app.db.collection::<mongodb::bson::Document>("users");
    let jobs = app.db.collection::<mongodb::bson::Document>("jobs");
    assert_eq!(
        users.count_documents(doc! {"email": &email}).await.unwrap(),
        0
    );
    assert_eq!(
        jobs.count_documents(doc! {"payload.email": &email})
            .await
            .unwrap(),
        0
    );
    // Another address is not affected.
    let response = app.signup_from("203.0.113.5", &email).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_throttle_fails_open_while_redis_is_down() {
    let app = spawn_app_with(|s| {
        unreachable_redis(s);
        let t = &mut s.auth.throttle;
        (t.free_failures, t.per_account, t.per_address) = (1, 2, 2);
        s.limits.signups.per_address = 4;
    })
    .await;
    // Four sign-ups from one address; the sign-up limit needs no Redis to
    // decide, so the fifth is refused all the same.
    for _ in 0..3 {
        app.signup(&unique_email()).await;
    }
    let email = unique_email();
    app.signup(&email).await;
    let fifth = app.signup_from("203.0.113.1", &unique_email()).await;
    assert_problem(fifth, StatusCode::TOO_MANY_REQUESTS).await;
    for _ in 0..5 {
        assert_eq!(
            app.login(&email, "wrong password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    // Login checks skipped, and the sign-ups' sharing rounds that failed.
    for limit in ["login", "signup"] {
        let line = format!(r#"troupe_rate_limit_unavailable_total{{limit="{limit}"}}"#);
        // (A sharing round waits for its connection attempt to fail: slow
        // on a loaded machine.)
        eventually(Duration::from_secs(30), &line, || async {
            let metrics = app.get("/metrics").await.text().await.ok()?;
            metrics.contains(&line).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn hostile_bodies_answer_4xx_problem_json() {
    let app = spawn_app().await;
    let raw = |body: String| {
        app.client
            .post(app.url("/users/signup"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Duplicate keys: the second "age" must not slip past the check of the first.
    let duplicate = format!(
        r#"{{"name":"A","email":"{}","password":"{PASSWORD}","age":1,"age":200}}"#,
        unique_email()
    );
    let problem = assert_problem(raw(duplicate).await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("duplicate key"),
        "{problem}"
    );
    // Deep nesting.
    let deep = format!(
        r#"{{"name":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_problem(raw(deep).await.unwrap(), StatusCode::BAD_REQUEST).await;
    // Objects and arrays where strings are expected; very long strings; numbers as strings; nulls.
    for body in [
        json!({"name": {"first": "A"}, "email": unique_email(), "password": PASSWORD}),
        json!({"name": ["A"], "email": unique_email(), "password": PASSWORD}),
        json!({"name": "A", "email": format!("{}@example.com", "a".repeat(20_000)), "password": PASSWORD}),
        json!({"name": "A", "email": unique_email(), "password": PASSWORD, "age": "30"}),
        json!({"name": null, "email": null, "password": null}),
        json!({"name": "A\u{202E}B\u{0}", "email": unique_email(), "password": PASSWORD}),
        json!({"name": "A", "email": "ÄDA@EXAMPLE.COM", "password": PASSWORD}),
        json!({"name": "A", "email": unique_email(), "password": PASSWORD, "age": 1e300}),
        json!({"name": "A", "email": unique_email(), "password": PASSWORD, "age": -0.5}),
    ] {
        let response = app.post_json("/users/signup", &body).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    // Invalid UTF-8.
    let bytes = app
        .client
        .post(app.url("/users/signup"))
        .header("content-type", "application/json")
        .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'])
        .send()
        .await
        .unwrap();
    assert_problem(bytes, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn oversized_headers_are_refused_without_a_server_error() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-padding", "a".repeat(512 * 1024))
        .send()
        .await;
    match response {
        // hyper refuses headers past its buffer: 431, or it closes the connection.
        Ok(r) => assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(e) => assert!(
            e.is_request() || e.is_connect() || e.to_string().contains("connection"),
            "{e}"
        ),
    }
    assert_eq!(
        app.get("/health/live").await.status(),
        StatusCode::OK,
        "still serving"
    );
}
