use std::time::Duration;

use futures::future::join_all;
use jsonwebtoken::{encode, EncodingKey, Header};
use mongodb::bson::{doc, Document};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use troupe_actors::users::keys::SigningAlg;

use crate::helpers::{
    assert_owner_profile_fields, assert_problem, eventually, log_dir, spawn_app, spawn_app_with,
    unique_email, TestApp, Tokens, PASSWORD,
};

/// Asserts no bcrypt hash or stored refresh-token verifier appears in `body`.
fn assert_no_secrets(body: &str, tokens: &[&Tokens]) {
    for marker in [
        "$2b$",
        "$2a$",
        "$2y$",
        "passwordHash",
        "password_hash",
        "refreshVerifier",
    ] {
        assert!(!body.contains(marker), "response leaks {marker}: {body}");
    }
    for t in tokens {
        let verifier = troupe_actors::users::tokens::verifier(&t.refresh_token);
        assert!(
            !body.contains(&verifier),
            "response leaks a refresh-token verifier: {body}"
        );
    }
}

#[tokio::test]
async fn signup_login_profile_refresh_logout_then_refresh_fails() {
    let app = spawn_app().await;
    let email = unique_email();
    let signed_up = app.signup(&email).await;

    let response = app.login(&email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let logged_in: Tokens = response.json().await.unwrap();

    let response = app
        .get_bearer("/users/profile", &logged_in.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert_no_secrets(&text, &[&signed_up, &logged_in]);
    let profile: Value = serde_json::from_str(&text).unwrap();
    assert_owner_profile_fields(&profile);
    assert_eq!(profile["email"], email);
    assert_eq!(profile["name"], "Test User");
    assert_eq!(profile["age"], 30);

    let response = app.refresh(&logged_in.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert_no_secrets(&text, &[&signed_up, &logged_in]);
    let refreshed: Tokens = serde_json::from_str(&text).unwrap();
    assert_ne!(refreshed.refresh_token, logged_in.refresh_token);
    assert_ne!(refreshed.access_token, logged_in.access_token);
    // The new access token works.
    assert_eq!(
        app.get_bearer("/users/profile", &refreshed.access_token)
            .await
            .status(),
        StatusCode::OK
    );

    let response = app
        .post_bearer("/users/logout", &refreshed.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    assert_problem(
        app.refresh(&refreshed.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Other sessions (the sign-up's) are not affected by a logout.
    assert_eq!(
        app.refresh(&signed_up.refresh_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_replayed_refresh_token_revokes_the_session() {
    // No grace window: a repeat is reuse at once.
    let app = spawn_app_with(|s| s.auth.refresh_reuse_grace = Duration::ZERO).await;
    let first = app.signup(&unique_email()).await;
    let second: Tokens = app
        .refresh(&first.refresh_token)
        .await
        .json()
        .await
        .unwrap();

    // The spent token is refused...
    let body = assert_problem(
        app.refresh(&first.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    // ...and the theft revoked the newest token too.
    assert_problem(
        app.refresh(&second.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_let_at_most_one_through() {
    // No grace window: a repeat is reuse at once.
    let app = spawn_app_with(|s| s.auth.refresh_reuse_grace = Duration::ZERO).await;
    let pair = app.signup(&unique_email()).await;
    let statuses: Vec<StatusCode> = join_all((0..10).map(|_| app.refresh(&pair.refresh_token)))
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(ok <= 1, "{statuses:?}");
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        10 - ok
    );
}

fn claims(app: &TestApp, typ: &str, exp_offset: i64, nbf_offset: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    let _ = app;
    json!({
        "sub": "65f1c0ffee0000000000beef", "email": "x@example.com", "sid": "s", "jti": "j",
        "typ": typ, "iat": now, "nbf": now + nbf_offset, "exp": now + exp_offset,
    })
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_tokens_are_rejected() {
    // HS256 access tokens, which the test can forge with the shared secret
    // (EdDSA/ES256 ones: tests/api/jwks.rs).
    let app = spawn_app_with(|s| s.auth.signing = SigningAlg::HS256).await;
    let pair = app.signup(&unique_email()).await;
    let access_secret = app.settings.auth.access_secret.expose_secret().to_string();
    let refresh_secret = app.settings.auth.refresh_secret.expose_secret().to_string();

    // Sanity: a well-formed token signed by the test itself is accepted
    // by the signature check (and then refused only because the user does not exist).
    let forged_valid = sign(&claims(&app, "access", 60, 0), &access_secret);
    assert_problem(
        app.get_bearer("/users/profile", &forged_valid).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let mut tampered = pair.access_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    let header_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let payload = pair.access_token.split('.').nth(1).unwrap();
    let alg_none = format!("{header_none}.{payload}.");

    let mut hs512 = Header::new(jsonwebtoken::Algorithm::HS512);
    hs512.typ = Some("JWT".into());
    let alg_switched = encode(
        &hs512,
        &claims(&app, "access", 60, 0),
        &EncodingKey::from_secret(access_secret.as_bytes()),
    )
    .unwrap();

    let access_cases = [
        ("tampered", tampered),
        ("alg none", alg_none),
        ("algorithm switched", alg_switched),
        (
            "wrong secret",
            sign(&claims(&app, "access", 60, 0), "not-the-secret"),
        ),
        (
            "expired",
            sign(&claims(&app, "access", -10, -20), &access_secret),
        ),
        (
            "not yet valid",
            sign(&claims(&app, "access", 600, 300), &access_secret),
        ),
        ("refresh token as access", pair.refresh_token.clone()),
        (
            "refresh typ under access key",
            sign(&claims(&app, "refresh", 60, 0), &access_secret),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (case, token) in access_cases {
        let response = app.get_bearer("/users/profile", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let refresh_cases = [
        ("access token as refresh", pair.access_token.clone()),
        (
            "access typ under refresh key",
            sign(&claims(&app, "access", 60, 0), &refresh_secret),
        ),
        (
            "expired refresh",
            sign(&claims(&app, "refresh", -10, -20), &refresh_secret),
        ),
    ];
    for (case, token) in refresh_cases {
        assert_eq!(
            app.refresh(&token).await.status(),
            StatusCode::UNAUTHORIZED,
            "{case}"
        );
    }
    let no_header = app
        .client
        .get(app.url("/users/profile"))
        .send()
        .await
        .unwrap();
    assert_problem(no_header, StatusCode::UNAUTHORIZED).await;
    let basic = app
        .client
        .get(app.url("/users/profile"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_problem(basic, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn twenty_concurrent_signups_with_one_email_create_one_user() {
    let app = spawn_app().await;
    let email = unique_email();
    let body = json!({"name": "Racer", "email": email, "password": PASSWORD});
    let responses = join_all((0..20).map(|_| app.post_json("/users/signup", &body))).await;
    let created = responses
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    let conflicts = responses
        .iter()
        .filter(|r| r.status() == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 19));
    let users = app
        .db
        .collection::<Document>("users")
        .count_documents(doc! {"email": &email})
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn emails_are_normalised_before_the_uniqueness_check() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email).await;
    let shouted = format!("  {}  ", email.to_uppercase());
    let response = app
        .post_json(
            "/users/signup",
            &json!({"name": "Again", "email": shouted, "password": PASSWORD}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    // Login accepts the same normalisation.
    assert_eq!(
        app.login(&email.to_uppercase(), PASSWORD).await.status(),
        StatusCode::OK
    );
}

async fn field_errors(app: &TestApp, body: Value) -> Vec<(String, String)> {
    let response = app.post_json("/users/signup", &body).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    problem["errors"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_validation_rule_answers_400_listing_each_bad_field() {
    let app = spawn_app().await;
    let fields =
        |errors: &[(String, String)]| errors.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>();

    // Missing fields: each listed.
    let errors = field_errors(&app, json!({})).await;
    assert_eq!(fields(&errors), ["name", "email", "password"]);
    // Wrong types, unknown fields, several at once.
    let errors = field_errors(
        &app,
        json!({"name": 5, "email": ["a"], "password": true, "age": "30", "role": "admin"}),
    )
    .await;
    assert_eq!(
        fields(&errors),
        ["name", "email", "password", "age", "role"]
    );
    assert!(errors[4].1.contains("not a known field"));

    let ok = |overrides: Value| {
        let mut body = json!({"name": "Ada", "email": unique_email(), "password": PASSWORD});
        for (k, v) in overrides.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (json!({"email": "not-an-email"}), "email"),
        (json!({"email": "a@localhost"}), "email"),
        (json!({"email": "аda@example.com"}), "email"), // Cyrillic 'а'
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "nul\u{0}byte"}), "name"),
        (json!({"password": "short"}), "password"),
        (json!({"password": "é".repeat(40)}), "password"), // 40 chars, 80 bytes
        (json!({"age": -1}), "age"),
        (json!({"age": 151}), "age"),
        (json!({"age": 30.5}), "age"),
    ];
    for (override_, field) in cases {
        let errors = field_errors(&app, ok(override_.clone())).await;
        assert_eq!(fields(&errors), [field], "{override_}");
    }
    // The boundaries are accepted.
    for override_ in [
        json!({"name": "x".repeat(100)}),
        json!({"age": 0}),
        json!({"age": 150}),
        json!({"password": "kq7vx2mw"}), // 8 characters, no pattern
        json!({"age": null}),
    ] {
        let response = app.post_json("/users/signup", &ok(override_.clone())).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{override_}");
    }
}

#[tokio::test]
async fn malformed_bodies_are_4xx_problem_json() {
    let app = spawn_app().await;
    let send = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/users/signup"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        send("{\"name\": ", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        send("[1, 2]", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        send("null", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        send("{}", "text/plain").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    let huge = json!({"name": "x".repeat(app.settings.server.body_limit), "email": "a@b.co", "password": PASSWORD});
    let too_large = app.post_json("/users/signup", &huge).await;
    // Its body unread, the connection is closed: the client must not reuse
    // it (it did, now and then, and the next request below failed).
    assert_eq!(too_large.headers()["connection"], "close");
    assert_problem(too_large, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Login validates too (on the same client).
    let response = app.post_json("/users/login", &json!({"email": 1})).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email).await;
    let wrong_password = app.login(&email, "not the password").await;
    let unknown_email = app.login(&unique_email(), PASSWORD).await;
    assert_eq!(wrong_password.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_email.status(), StatusCode::UNAUTHORIZED);
    let a: Value = wrong_password.json().await.unwrap();
    let b: Value = unknown_email.json().await.unwrap();
    assert_eq!(a, b);
}

#[tokio::test]
async fn signup_and_login_enqueue_their_jobs_and_store_only_verifiers() {
    let app = spawn_app().await;
    let email = unique_email();
    let pair = app.signup(&email).await;
    let login: Tokens = app.login(&email, PASSWORD).await.json().await.unwrap();

    let user = app
        .db
        .collection::<Document>("users")
        .find_one(doc! {"email": &email})
        .await
        .unwrap()
        .unwrap();
    let hash = user.get_str("passwordHash").unwrap();
    assert!(
        hash.starts_with(&format!("$2b${:02}$", app.settings.auth.bcrypt_cost)),
        "{hash}"
    );
    let id = user.get_object_id("_id").unwrap();

    let jobs = app.db.collection::<Document>("jobs");
    let created = jobs
        .find_one(doc! {"type": "user.created", "payload.userId": id})
        .await
        .unwrap()
        .expect("user.created job");
    // Written before the answer; the poller may already have run it.
    assert!(["pending", "processing", "completed"].contains(&created.get_str("status").unwrap()));
    assert!(created.get_datetime("runAt").is_ok() && created.get_datetime("createdAt").is_ok());
    let logins = jobs
        .count_documents(doc! {"type": "user.login", "payload.userId": id})
        .await
        .unwrap();
    assert_eq!(logins, 1);

    // Sessions keep a SHA-256 verifier of the whole refresh token, never the token.
    let sessions: Vec<Document> = {
        use futures::TryStreamExt;
        app.db
            .collection::<Document>("sessions")
            .find(doc! {"userId": id})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(sessions.len(), 2);
    let verifiers: Vec<&str> = sessions
        .iter()
        .map(|s| s.get_str("refreshVerifier").unwrap())
        .collect();
    for t in [&pair, &login] {
        assert!(
            verifiers.contains(&troupe_actors::users::tokens::verifier(&t.refresh_token).as_str())
        );
        let stored = format!("{sessions:?}");
        assert!(!stored.contains(&t.refresh_token));
    }
}

#[tokio::test]
async fn auth_events_are_logged_without_tokens() {
    // No grace window: a repeat is reuse at once.
    let app = spawn_app_with(|s| s.auth.refresh_reuse_grace = Duration::ZERO).await;
    let email = unique_email();
    let pair = app.signup(&email).await;
    let refreshed: Tokens = app.refresh(&pair.refresh_token).await.json().await.unwrap();
    let _ = app.refresh(&pair.refresh_token).await; // reuse
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let file = log_dir().join(troupe::telemetry::log_file_name("auth", &date));
    let user = app
        .db
        .collection::<Document>("users")
        .find_one(doc! {"email": &email})
        .await
        .unwrap()
        .unwrap();
    let id = user.get_object_id("_id").unwrap().to_hex();
    let text = eventually(
        Duration::from_secs(5),
        "the reuse line in the auth log",
        || {
            let (file, id) = (file.clone(), id.clone());
            async move {
                let text = std::fs::read_to_string(&file).ok()?;
                text.contains(&format!("refresh-token reuse detected for user {id}"))
                    .then_some(text)
            }
        },
    )
    .await;
    for token in [
        &pair.access_token,
        &pair.refresh_token,
        &refreshed.refresh_token,
        &refreshed.access_token,
    ] {
        assert!(
            !text.contains(token.as_str()),
            "a token reached the auth log"
        );
    }
}
