//! One canonical e-mail address per account (issue #13, item 4),
//! Unicode-normalised passwords (item 10), and names that cannot hide
//! themselves (issue #23, item 8).

use std::time::Duration;

use mongodb::bson::{doc, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp, PASSWORD};

async fn signup_as(app: &TestApp, name: &str, email: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/users/signup",
        &json!({"name": name, "email": email, "password": password}),
    )
    .await
}

async fn user_count(app: &TestApp) -> u64 {
    app.db
        .collection::<Document>("users")
        .count_documents(doc! {})
        .await
        .unwrap()
}

/// The text of every message in the app's outbox.
fn outbox(app: &TestApp) -> Vec<String> {
    match std::fs::read_dir(&app.settings.mail.outbox_dir) {
        Ok(entries) => entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The value of header `name` in `message`, unfolded.
fn header(message: &str, name: &str) -> String {
    let prefix = format!("{name}: ");
    let mut lines = message.split("\r\n");
    let mut value = lines
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} header in {message}"))
        .to_owned();
    for line in lines.take_while(|l| l.starts_with([' ', '\t'])) {
        value.push_str(line);
    }
    value
}

/// Wait for the one welcome message, once its job has completed.
async fn the_welcome(app: &TestApp) -> String {
    app.wait_for_jobs(
        doc! {"type": "user.created"},
        "completed",
        1,
        Duration::from_secs(20),
    )
    .await;
    let mut messages = outbox(app);
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages.remove(0)
}

#[tokio::test]
async fn display_name_ip_literal_and_quoted_forms_are_refused() {
    let app = crate::helpers::spawn_app().await;
    // The attack: each of these was a further account for one mailbox, or
    // an account whose welcome mail the mailer refused five times.
    for email in [
        "x <victim@ex.com>",
        "y <victim@ex.com>",
        "\"Victim\" <victim@ex.com>",
        "victim@ex.com (work)",
        "a@[127.0.0.1]",
        "\"victim\"@ex.com",
        "\"a b\"@ex.com",
        "victim@ex.com.",
    ] {
        let response = signup_as(&app, "Mallory", email, PASSWORD).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["email"], "{email}: {problem}");
    }
    assert_eq!(user_count(&app).await, 0);
    // The bare address is the one account for the mailbox.
    let response = signup_as(&app, "Victim", "victim@ex.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn an_address_differing_only_in_case_is_taken() {
    let app = crate::helpers::spawn_app().await;
    let response = signup_as(&app, "Victim", "victim@ex.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for email in ["Victim@Ex.com", " VICTIM@EX.COM "] {
        let response = signup_as(&app, "Mallory", email, PASSWORD).await;
        assert_problem(response, StatusCode::CONFLICT).await;
    }
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn an_unusual_but_valid_address_gets_its_welcome_at_that_exact_mailbox() {
    let app = crate::helpers::spawn_app().await;
    let response = signup_as(&app, "Pat", " O'Brien+Tag@Mail.Example.co.uk", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let tokens: crate::helpers::Tokens = response.json().await.unwrap();
    let profile: Value = app
        .get_bearer("/users/profile", &tokens.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["email"], "o'brien+tag@mail.example.co.uk");

    let message = the_welcome(&app).await;
    assert_eq!(
        header(&message, "To"),
        "Pat <o'brien+tag@mail.example.co.uk>"
    );
    let delivery = app
        .db
        .collection::<Document>("email_deliveries")
        .find_one(doc! {})
        .await
        .unwrap()
        .expect("a delivery record");
    assert_eq!(
        delivery.get_str("to").unwrap(),
        "o'brien+tag@mail.example.co.uk"
    );
}

#[tokio::test]
async fn a_name_holding_an_address_adds_no_recipient() {
    let app = crate::helpers::spawn_app().await;
    let name = "Mallory <evil@x.com>, other@y.com";
    let response = signup_as(&app, name, "victim@ex.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let message = the_welcome(&app).await;
    let to = header(&message, "To");
    // The name is encoded as a whole; the one address is the account's.
    assert!(to.ends_with(" <victim@ex.com>"), "{to}");
    assert_eq!(to.matches('@').count(), 1, "{to}");
    assert!(!to.contains("evil") && !to.contains("other@"), "{to}");
    for absent in ["\r\nCc:", "\r\nBcc:"] {
        assert!(!message.contains(absent), "{message}");
    }
}

/// The fields a 400 problem names, each once.
fn problem_fields(problem: &Value) -> Vec<&str> {
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.dedup();
    fields
}

/// Names made only of invisible characters, or that reorder the text around
/// them, were accepted (and mailed to addresses nobody had verified).
#[tokio::test]
async fn invisible_and_direction_overriding_names_are_refused_at_signup_and_on_patch() {
    let app = crate::helpers::spawn_app().await;
    let hostile = ["\u{200b}", "a\u{202e}b", "\u{2066}\u{2069}", "Ada\u{200d}"];
    for name in hostile {
        let response = signup_as(&app, name, "victim@ex.com", PASSWORD).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem_fields(&problem), ["name"], "{name:?}: {problem}");
    }
    assert_eq!(user_count(&app).await, 0);
    let response = signup_as(&app, "Ada", "victim@ex.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let tokens: crate::helpers::Tokens = response.json().await.unwrap();
    let patch = |body: Value| {
        app.client
            .patch(app.url("/users/profile"))
            .bearer_auth(&tokens.access_token)
            .json(&body)
            .send()
    };
    for name in hostile {
        let response = patch(json!({"name": name})).await.unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem_fields(&problem), ["name"], "{name:?}: {problem}");
    }
    let stored = app
        .db
        .collection::<Document>("users")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("name").unwrap(), "Ada");
    let response = patch(json!({"name": "Ada King"})).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_login_with_no_valid_address_is_answered_like_an_unknown_account() {
    let app = crate::helpers::spawn_app().await;
    signup_as(&app, "Victim", "victim@ex.com", PASSWORD).await;
    let unknown = app.login("nobody@ex.com", PASSWORD).await;
    let unknown = assert_problem(unknown, StatusCode::UNAUTHORIZED).await;
    for email in ["x <victim@ex.com>", "a@[127.0.0.1]", "not an address"] {
        let response = app.login(email, PASSWORD).await;
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(problem, unknown, "{email}");
    }
    // The canonical form logs in from any case.
    assert_eq!(
        app.login(" Victim@EX.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_signed_up_in_nfc_logs_in_with_its_nfd_spelling() {
    let app = crate::helpers::spawn_app().await;
    let nfc = "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e";
    let nfd = "cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e";
    assert_ne!(nfc, nfd);
    let response = signup_as(&app, "Ada", "ada@example.com", nfc).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        app.login("ada@example.com", nfd).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("ada@example.com", nfc).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("ada@example.com", "cafe creme brulee")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
