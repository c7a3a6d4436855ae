//! Account security (issue #30, items 1, 4 and 5): the rules of a new
//! password, changing the password, and the user's sessions.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, eventually, spawn_app, spawn_app_with, unique_email, TestApp, Tokens, PASSWORD,
};

/// A strong password that is not [`PASSWORD`].
const NEW_PASSWORD: &str = "staple gun orbit lantern";

async fn signup_with(app: &TestApp, name: &str, email: &str, password: &str) -> Response {
    app.post_json(
        "/users/signup",
        &json!({"name": name, "email": email, "password": password}),
    )
    .await
}

/// The one field error of a 400, as (field, message).
async fn field_error(response: Response) -> (String, String) {
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{problem}");
    let text = |key: &str| errors[0][key].as_str().unwrap().to_owned();
    (text("field"), text("message"))
}

async fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> Response {
    app.client
        .post(app.url("/users/password"))
        .bearer_auth(access)
        .json(&json!({"currentPassword": current, "newPassword": new}))
        .send()
        .await
        .unwrap()
}

async fn login_tokens(app: &TestApp, email: &str, password: &str) -> Tokens {
    let response = app.login(email, password).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let response = app.get_bearer("/users/sessions", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn delete(app: &TestApp, path: &str, access: &str) -> Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

/// The id of the session marked current in `list`.
fn current_id(list: &[Value]) -> String {
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{list:?}");
    current[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_common_password_is_refused_with_the_reason_in_its_field() {
    let app = spawn_app().await;
    for common in ["password123", "qwertyuiop", "iloveyou1"] {
        let response = signup_with(&app, "Test User", &unique_email(), common).await;
        let (field, message) = field_error(response).await;
        assert_eq!(field, "password");
        assert!(message.contains("common password"), "{common}: {message}");
    }
}

#[tokio::test]
async fn a_password_containing_the_name_or_the_email_is_refused() {
    let app = spawn_app().await;
    let response = signup_with(&app, "Grace Hopper", &unique_email(), "grace-and-orbit-9").await;
    assert_eq!(
        field_error(response).await,
        ("password".into(), "must not contain your name".into())
    );
    let response = signup_with(
        &app,
        "Test User",
        "lovelace1815@example.com",
        "my-Lovelace1815-horse",
    )
    .await;
    assert_eq!(
        field_error(response).await,
        (
            "password".into(),
            "must not contain your e-mail address".into()
        )
    );
}

#[tokio::test]
async fn the_rules_are_switched_off_by_reject_common_passwords_but_not_the_lengths() {
    let app = spawn_app_with(|s| s.auth.reject_common_passwords = false).await;
    let response = signup_with(&app, "Test User", &unique_email(), "password123").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // bcrypt reads 72 bytes: 73 are refused, whatever the switch says.
    let response = signup_with(&app, "Test User", &unique_email(), &"ab".repeat(37)).await;
    let (field, message) = field_error(response).await;
    assert_eq!(field, "password");
    assert!(message.contains("72 bytes"), "{message}");
}

#[tokio::test]
async fn a_password_change_keeps_this_session_and_ends_every_other() {
    let app = spawn_app().await;
    let email = unique_email();
    let this = app.signup(&email).await;
    let other = login_tokens(&app, &email, PASSWORD).await;

    let response = change_password(&app, &this.access_token, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(
        app.refresh(&this.refresh_token).await.status(),
        StatusCode::OK,
        "this session stays signed in"
    );
    assert_eq!(
        app.refresh(&other.refresh_token).await.status(),
        StatusCode::UNAUTHORIZED,
        "the other session ended at once"
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    login_tokens(&app, &email, NEW_PASSWORD).await;
}

#[tokio::test]
async fn a_password_change_mails_a_notice_through_the_queue() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let response = change_password(&app, &tokens.access_token, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user_id = ObjectId::parse_str(app.user_id(&tokens.access_token).await).unwrap();
    let job = app
        .db
        .collection::<Document>("jobs")
        .find_one(doc! {"type": "user.password_changed", "payload.userId": user_id})
        .await
        .unwrap()
        .expect("the notice job");
    assert_eq!(
        job.get_document("payload").unwrap().get_str("email"),
        Ok(email.as_str())
    );
    let outbox = app.settings.mail.outbox_dir.clone();
    eventually(Duration::from_secs(20), "the notice is delivered", || {
        let outbox = outbox.clone();
        let email = email.clone();
        async move {
            let messages = std::fs::read_dir(&outbox).ok()?;
            messages
                .filter_map(|m| std::fs::read_to_string(m.ok()?.path()).ok())
                .find(|m| m.contains("password was changed") && m.contains(&email))
        }
    })
    .await;
}

#[tokio::test]
async fn a_wrong_current_password_answers_and_counts_like_a_failed_login() {
    let app = spawn_app_with(|s| {
        s.auth.throttle.free_failures = 1;
        s.auth.throttle.base_delay = Duration::from_secs(60);
    })
    .await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let failed_login = assert_problem(
        app.login(&email, "not the password at all").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let wrong = change_password(&app, &tokens.access_token, "not it either", NEW_PASSWORD).await;
    let failed_change = assert_problem(wrong, StatusCode::UNAUTHORIZED).await;
    assert_eq!(failed_change["detail"], failed_login["detail"]);
    // Two failures for (account, address): the login throttle now refuses
    // this address the account, through the login form and this route.
    let throttled = change_password(&app, &tokens.access_token, PASSWORD, NEW_PASSWORD).await;
    assert_problem(throttled, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_weak_new_password_is_refused_under_its_field_and_nothing_changes() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let response = change_password(&app, &tokens.access_token, PASSWORD, "password123").await;
    let (field, message) = field_error(response).await;
    assert_eq!(field, "newPassword");
    assert!(message.contains("common"), "{message}");
    let response = change_password(&app, &tokens.access_token, PASSWORD, "short").await;
    assert_eq!(field_error(response).await.0, "newPassword");
    login_tokens(&app, &email, PASSWORD).await;
}

#[tokio::test]
async fn the_session_list_shows_each_session_and_no_token_material() {
    let app = spawn_app().await;
    let email = unique_email();
    let first = app.signup(&email).await;
    let second: Tokens = app
        .client
        .post(app.url("/users/login"))
        .header("user-agent", format!("agent/2 {}", "x".repeat(1000)))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = sessions(&app, &first.access_token).await;
    assert_eq!(list.len(), 2, "{list:?}");
    // Newest first; the asker's is marked.
    assert_eq!(list[1]["current"], true);
    assert_eq!(list[0]["current"], false);
    let agent = list[0]["userAgent"].as_str().unwrap();
    assert!(
        agent.starts_with("agent/2 ") && agent.chars().count() == 200,
        "{agent}"
    );
    for session in &list {
        let mut fields: Vec<&str> = session
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "clientAddress",
                "createdAt",
                "current",
                "id",
                "lastRefreshedAt",
                "userAgent"
            ]
        );
        assert_eq!(session["clientAddress"], "127.0.0.1");
        assert!(session["lastRefreshedAt"].is_null());
    }
    let text = serde_json::to_string(&list).unwrap();
    for secret in [
        &first.refresh_token,
        &second.refresh_token,
        &second.access_token,
    ] {
        assert!(!text.contains(secret.as_str()));
    }
    // A refresh is recorded; the other user-agent is kept.
    let refreshed: Tokens = app
        .refresh(&second.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    let list = sessions(&app, &refreshed.access_token).await;
    assert_eq!(list[0]["current"], true);
    assert!(list[0]["lastRefreshedAt"].is_string(), "{list:?}");
}

#[tokio::test]
async fn ending_a_session_fails_its_refresh_token_at_once() {
    let app = spawn_app().await;
    let email = unique_email();
    let mine = app.signup(&email).await;
    let other = login_tokens(&app, &email, PASSWORD).await;
    let other_id = current_id(&sessions(&app, &other.access_token).await);

    let response = delete(
        &app,
        &format!("/users/sessions/{other_id}"),
        &mine.access_token,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.refresh(&other.refresh_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Its access token is not checked against the store: it works until it
    // expires, within auth.access_ttl (docs/security.md, "Sessions").
    let profile = app.get_bearer("/users/profile", &other.access_token).await;
    assert_eq!(profile.status(), StatusCode::OK);
    let list = sessions(&app, &mine.access_token).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);
    // Ended already: the same answer as unknown.
    let again = delete(
        &app,
        &format!("/users/sessions/{other_id}"),
        &mine.access_token,
    )
    .await;
    assert_problem(again, StatusCode::NOT_FOUND).await;
    assert_eq!(
        app.refresh(&mine.refresh_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn another_users_session_is_answered_like_an_unknown_one_and_survives() {
    let app = spawn_app().await;
    let mallory = app.signup(&unique_email()).await;
    let victim = app.signup(&unique_email()).await;
    let victims = current_id(&sessions(&app, &victim.access_token).await);

    let theirs = delete(
        &app,
        &format!("/users/sessions/{victims}"),
        &mallory.access_token,
    )
    .await;
    let theirs = assert_problem(theirs, StatusCode::NOT_FOUND).await;
    let unknown = format!("/users/sessions/{}", "0".repeat(32));
    let unknown = assert_problem(
        delete(&app, &unknown, &mallory.access_token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(theirs, unknown);
    let junk = delete(&app, "/users/sessions/%FF%00not-hex", &mallory.access_token).await;
    assert_eq!(assert_problem(junk, StatusCode::NOT_FOUND).await, unknown);
    assert_eq!(
        app.refresh(&victim.refresh_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn ending_every_other_session_keeps_only_this_one() {
    let app = spawn_app().await;
    let email = unique_email();
    let mine = app.signup(&email).await;
    let others = [
        login_tokens(&app, &email, PASSWORD).await,
        login_tokens(&app, &email, PASSWORD).await,
    ];
    let response = delete(&app, "/users/sessions", &mine.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"ended": 2}));
    for other in &others {
        assert_eq!(
            app.refresh(&other.refresh_token).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(sessions(&app, &mine.access_token).await.len(), 1);
    assert_eq!(
        app.refresh(&mine.refresh_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_user_holds_at_most_max_sessions_the_oldest_go_first() {
    let app = spawn_app_with(|s| s.auth.max_sessions = 2).await;
    let email = unique_email();
    let oldest = app.signup(&email).await;
    let user_id = ObjectId::parse_str(app.user_id(&oldest.access_token).await).unwrap();
    let mut newest = Vec::new();
    for _ in 0..4 {
        newest.push(login_tokens(&app, &email, PASSWORD).await);
    }
    let stored = app
        .db
        .collection::<Document>("sessions")
        .count_documents(doc! {"userId": user_id})
        .await
        .unwrap();
    assert_eq!(stored, 2, "the documents are bounded, not only the list");
    assert_eq!(
        app.refresh(&oldest.refresh_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&newest[3].refresh_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_new_route_needs_an_access_token() {
    let app = spawn_app().await;
    let tokens = app.signup(&unique_email()).await;
    let refresh = &tokens.refresh_token;
    let checks = [
        app.client.post(app.url("/users/password")).json(&json!({})),
        app.client.get(app.url("/users/sessions")),
        app.client.delete(app.url("/users/sessions")),
        app.client
            .delete(app.url(&format!("/users/sessions/{}", "0".repeat(32)))),
    ];
    for request in checks {
        let anonymous = request.try_clone().unwrap().send().await.unwrap();
        assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
        let wrong_type = request.bearer_auth(refresh).send().await.unwrap();
        assert_problem(wrong_type, StatusCode::UNAUTHORIZED).await;
    }
}
