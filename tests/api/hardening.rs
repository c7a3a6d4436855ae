use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, unique_email, PASSWORD};

#[tokio::test]
async fn repeated_failed_logins_for_one_account_are_throttled() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email).await;
    let limit = app.settings.auth.throttle.per_account;
    for _ in 0..limit {
        assert_eq!(
            app.login(&email, "wrong password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password waits now.
    let response = app.login(&email, PASSWORD).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= app.settings.auth.throttle.window.as_secs());
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    // Other accounts are not affected.
    let other = unique_email();
    app.signup(&other).await;
    assert_eq!(app.login(&other, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_successful_login_resets_the_account_count() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email).await;
    let limit = app.settings.auth.throttle.per_account;
    for _ in 0..limit - 1 {
        app.login(&email, "wrong password").await;
    }
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    for _ in 0..limit - 1 {
        app.login(&email, "wrong password").await;
    }
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn login_attempts_per_client_address_are_throttled() {
    let app = spawn_app_with(|s| s.auth.throttle.per_address = 3).await;
    for _ in 0..3 {
        assert_eq!(
            app.login(&unique_email(), PASSWORD).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let response = app.login(&unique_email(), PASSWORD).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn the_throttle_fails_open_while_redis_is_down() {
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".to_string().into()).await;
    let email = unique_email();
    app.signup(&email).await;
    for _ in 0..app.settings.auth.throttle.per_account + 2 {
        assert_eq!(
            app.login(&email, "wrong password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
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
