//! Account recovery and proof of address (issue #30, items 2, 3 and 7):
//! resetting a forgotten password by e-mail, verifying the address, and
//! the notice of an account under attack. Tokens are read from the mails
//! in the outbox, as their owner would.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use troupe_actors::queue::clock::Clock;

use crate::helpers::{
    assert_problem, eventually, spawn_app, spawn_app_with, unique_email, TestApp, Tokens, PASSWORD,
};

/// A strong password that is not [`PASSWORD`].
const NEW_PASSWORD: &str = "staple gun orbit lantern";
/// Where a mail's token stands (`troupe_actors::users::mail_jobs::TOKEN_LINE`).
const TOKEN_LINE: &str = "Your token: ";
const RESET_SUBJECT: &str = "Reset your Troupe password";
const WELCOME: &str = "welcome to Troupe";
const ATTACK_SUBJECT: &str = "Someone is trying to log in";
const WAIT: Duration = Duration::from_secs(20);

/// The texts of the outbox's mails to `email` that contain `marker`.
fn mails(app: &TestApp, email: &str, marker: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(&app.settings.mail.outbox_dir) else {
        return Vec::new();
    };
    dir.filter_map(|m| std::fs::read_to_string(m.ok()?.path()).ok())
        .filter(|m| m.contains(email) && m.contains(marker))
        .collect()
}

/// The token of a mail's text.
fn token_of(mail: &str) -> String {
    let at = mail.find(TOKEN_LINE).expect("a token line") + TOKEN_LINE.len();
    mail[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}

/// Wait for the `n`-th mail to `email` containing `marker`; its token.
async fn nth_token(app: &TestApp, email: &str, marker: &str, n: usize) -> String {
    let found = eventually(WAIT, &format!("mail {n} to {email}"), || {
        let mails = mails(app, email, marker);
        async move { (mails.len() >= n).then_some(mails) }
    })
    .await;
    // The outbox is unordered: the newest is the one not seen before.
    let mut tokens: Vec<String> = found.iter().map(|m| token_of(m)).collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), found.len(), "each mail its own token");
    tokens.pop().unwrap()
}

async fn forgot(app: &TestApp, email: &str) -> Response {
    app.post_json("/users/password/forgot", &json!({ "email": email }))
        .await
}

async fn forgot_from(app: &TestApp, client: &str, email: &str) -> Response {
    app.client
        .post(app.url("/users/password/forgot"))
        .header("x-forwarded-for", client)
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap()
}

async fn reset(app: &TestApp, token: &str, password: &str) -> Response {
    app.post_json(
        "/users/password/reset",
        &json!({ "token": token, "password": password }),
    )
    .await
}

async fn verify(app: &TestApp, token: &str) -> Response {
    app.post_json("/users/email/verify", &json!({ "token": token }))
        .await
}

/// The reset token mailed to `email` after one forgot request.
async fn reset_token(app: &TestApp, email: &str) -> String {
    let response = forgot(app, email).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    nth_token(app, email, RESET_SUBJECT, 1).await
}

/// The problem every unusable token gets.
async fn refused_token(response: Response) -> Value {
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        problem["errors"],
        json!([{"field": "token", "message": "invalid, expired or already used token"}]),
        "{problem}"
    );
    problem
}

async fn profile(app: &TestApp, access: &str) -> Value {
    let response = app.get_bearer("/users/profile", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_reset_mail_carries_a_token_that_sets_the_password_and_ends_every_session() {
    let app = spawn_app().await;
    let email = unique_email();
    let first = app.signup(&email).await;
    let second: Tokens = app.login(&email, PASSWORD).await.json().await.unwrap();
    let token = reset_token(&app, &email).await;
    assert_eq!(token.len(), 43, "256 bits, base64url");

    let response = reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    for session in [&first, &second] {
        assert_eq!(
            app.refresh(&session.refresh_token).await.status(),
            StatusCode::UNAUTHORIZED,
            "every session ended"
        );
    }
    let old = app.login(&email, PASSWORD).await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = app.login(&email, NEW_PASSWORD).await;
    assert_eq!(new.status(), StatusCode::OK);
    // Stored as a hash only: the token is nowhere in the database.
    for collection in ["mail_tokens", "mail_token_uses", "jobs"] {
        let docs: Vec<Document> =
            crate::helpers::find_documents(&app.db, collection, doc! {}).await;
        let text = format!("{docs:?}");
        assert!(!text.contains(&token), "{collection} holds the token");
    }
}

#[tokio::test]
async fn a_reset_token_works_once_however_many_race_for_it() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email).await;
    let token = reset_token(&app, &email).await;
    let attempts = (0..5).map(|_| reset(&app, &token, NEW_PASSWORD));
    let answers: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(Response::status)
        .collect();
    let ok = answers.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST));
    // A replay later, and a token that never was, get the same answer.
    let replay = refused_token(reset(&app, &token, "another fine passphrase").await).await;
    let bogus = refused_token(reset(&app, &"A".repeat(43), NEW_PASSWORD).await).await;
    let malformed = refused_token(reset(&app, "not a token", NEW_PASSWORD).await).await;
    assert_eq!(replay, bogus);
    assert_eq!(replay, malformed);
    assert_eq!(
        app.login(&email, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_reset_token_is_refused_like_any_other() {
    let app = spawn_app_with(|s| s.auth.token_clock = Clock::manual_from_now()).await;
    let email = unique_email();
    app.signup(&email).await;
    let token = reset_token(&app, &email).await;
    app.settings
        .auth
        .token_clock
        .advance(app.settings.auth.reset_ttl + Duration::from_secs(1));
    refused_token(reset(&app, &token, NEW_PASSWORD).await).await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_weak_password_is_refused_and_leaves_the_token_usable() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email).await;
    let token = reset_token(&app, &email).await;
    let weak = assert_problem(
        reset(&app, &token, "password123").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(weak["errors"][0]["field"], "password", "{weak}");
    assert_eq!(
        reset(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_token_works_only_for_its_account_and_its_purpose() {
    let app = spawn_app().await;
    let (ada, bob) = (unique_email(), unique_email());
    app.signup(&ada).await;
    app.signup(&bob).await;
    let ada_reset = reset_token(&app, &ada).await;
    let bob_verify = nth_token(&app, &bob, WELCOME, 1).await;
    // Bob's verification token is no reset token, for anyone.
    refused_token(reset(&app, &bob_verify, NEW_PASSWORD).await).await;
    // Nor is a reset token a verification token.
    refused_token(verify(&app, &ada_reset).await).await;
    // Ada's reset token resets Ada's password, and Bob's stays.
    assert_eq!(
        reset(&app, &ada_reset, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.login(&ada, NEW_PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(app.login(&bob, PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(
        app.login(&bob, NEW_PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// What a client sees of an answer: status, headers (but the date and the
/// trace id, which differ per request), body.
async fn seen(response: Response) -> (StatusCode, Vec<(String, String)>, String) {
    let status = response.status();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date" && *name != "traceresponse")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn an_unknown_address_is_answered_exactly_like_a_known_one() {
    let app = spawn_app().await;
    let known = unique_email();
    app.signup(&known).await;
    let unknown = unique_email();
    let for_known = seen(forgot(&app, &known).await).await;
    let for_unknown = seen(forgot(&app, &unknown).await).await;
    assert_eq!(for_known.0, StatusCode::ACCEPTED);
    assert_eq!(for_known, for_unknown);
    nth_token(&app, &known, RESET_SUBJECT, 1).await;
    assert!(mails(&app, &unknown, "").is_empty(), "nothing mailed");
}

#[tokio::test]
async fn forgot_password_is_limited_per_client_address() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = "127.0.0.1".parse().unwrap();
        s.limits.email_tokens.per_address = 2;
    })
    .await;
    for _ in 0..2 {
        let response = forgot_from(&app, "203.0.113.7", &unique_email()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let refused = forgot_from(&app, "203.0.113.7", &unique_email()).await;
    assert!(crate::helpers::retry_after(&refused) > 0);
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    let elsewhere = forgot_from(&app, "203.0.113.8", &unique_email()).await;
    assert_eq!(elsewhere.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_flood_of_requests_for_one_account_mails_it_only_its_quota_and_never_refuses() {
    let mut app = spawn_app_with(|s| s.auth.account_mails.per_window = 2).await;
    let email = unique_email();
    app.signup(&email).await;
    for _ in 0..6 {
        assert_eq!(forgot(&app, &email).await.status(), StatusCode::ACCEPTED);
    }
    nth_token(&app, &email, RESET_SUBJECT, 2).await;
    // A graceful stop waits for the work the answers left running.
    app.stop().await.unwrap();
    let jobs = app.db.collection::<Document>("jobs");
    let queued = jobs
        .count_documents(doc! { "type": "user.password_reset", "payload.email": &email })
        .await
        .unwrap();
    assert_eq!(queued, 2);
}

#[tokio::test]
async fn the_welcome_mail_verifies_the_address_once() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    assert_eq!(
        profile(&app, &tokens.access_token).await["emailVerified"],
        false
    );
    let token = nth_token(&app, &email, WELCOME, 1).await;
    assert_eq!(verify(&app, &token).await.status(), StatusCode::OK);
    assert_eq!(
        profile(&app, &tokens.access_token).await["emailVerified"],
        true
    );
    refused_token(verify(&app, &token).await).await;
    // Verified: nothing more to resend.
    let again = app
        .post_bearer("/users/email/verify/resend", &tokens.access_token)
        .await;
    assert_problem(again, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn a_resent_verification_works_and_resends_are_limited_per_account() {
    let app = spawn_app_with(|s| s.auth.account_mails.per_window = 1).await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let resend = || app.post_bearer("/users/email/verify/resend", &tokens.access_token);
    assert_eq!(resend().await.status(), StatusCode::ACCEPTED);
    let refused = resend().await;
    let wait = crate::helpers::retry_after(&refused);
    assert!(wait > 0 && wait <= app.settings.auth.account_mails.window.as_secs());
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    let token = nth_token(&app, &email, "Verify your e-mail address", 1).await;
    assert_eq!(verify(&app, &token).await.status(), StatusCode::OK);
    assert_eq!(
        profile(&app, &tokens.access_token).await["emailVerified"],
        true
    );
}

#[tokio::test]
async fn with_require_verified_email_an_unverified_login_is_a_403_after_the_password() {
    let app = spawn_app_with(|s| s.auth.require_verified_email = true).await;
    let email = unique_email();
    app.signup(&email).await;
    let wrong = app.login(&email, "not the password at all").await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED).await;
    let unverified = assert_problem(app.login(&email, PASSWORD).await, StatusCode::FORBIDDEN).await;
    assert!(
        unverified["detail"]
            .as_str()
            .unwrap()
            .contains("not verified"),
        "{unverified}"
    );
    let token = nth_token(&app, &email, WELCOME, 1).await;
    assert_eq!(verify(&app, &token).await.status(), StatusCode::OK);
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_account_under_attack_mails_its_owner_once_a_window() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = "127.0.0.1".parse().unwrap();
        s.auth.throttle.per_account = 3;
        s.auth.throttle.free_failures = 100;
    })
    .await;
    let email = unique_email();
    app.signup(&email).await;
    // Failures from ever new addresses, past the account's ceiling.
    for i in 0..6 {
        let client = format!("198.51.100.{i}");
        let response = app
            .login_from(&client, &email, "a wrong guess, again")
            .await;
        assert!(matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
        ));
    }
    eventually(WAIT, "the attack notice", || {
        let found = mails(&app, &email, ATTACK_SUBJECT);
        async move { (!found.is_empty()).then_some(()) }
    })
    .await;
    // Another instance that saw the attack begin writes its own job: the
    // window's one slot is taken, so it mails nothing.
    let again = app
        .jobs()
        .enqueue("user.attack_notice", doc! { "email": &email })
        .await
        .unwrap();
    app.nudge();
    let job = app.wait_for_job(again, "completed", WAIT).await;
    assert_eq!(job["result"]["delivered"], false, "{job}");
    let attack_jobs = app.db.collection::<Document>("jobs");
    app.wait_for_jobs(
        doc! { "type": "user.attack_notice" },
        "completed",
        attack_jobs
            .count_documents(doc! { "type": "user.attack_notice" })
            .await
            .unwrap(),
        WAIT,
    )
    .await;
    assert_eq!(mails(&app, &email, ATTACK_SUBJECT).len(), 1);
}
