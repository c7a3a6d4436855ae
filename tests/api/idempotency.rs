//! Idempotent sign-up with the `Idempotency-Key` header (issue #13, item 9),
//! a key scoped to its request body (issue #23).

use std::time::Duration;

use futures::future::join_all;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use troupe_actors::users::email::Email;
use troupe_actors::users::idempotency::{IdempotencyKey, RequestScope, COLLECTION};
use troupe_actors::users::password::Password;
use troupe_actors::users::{Client, NewUser};

use crate::helpers::{
    assert_problem, eventually, spawn_app, spawn_app_with, unique_email, TestApp, Tokens, PASSWORD,
};

fn body(email: &str) -> Value {
    json!({"name": "Ida", "email": email, "password": PASSWORD, "age": 30})
}

async fn signup_with_key(app: &TestApp, key: &str, body: &Value) -> Response {
    signup_with_key_from(app, "127.0.0.1", key, body).await
}

/// A keyed sign-up from `client` (`X-Forwarded-For`; believed only if
/// 127.0.0.1 is a trusted proxy).
async fn signup_with_key_from(app: &TestApp, client: &str, key: &str, body: &Value) -> Response {
    app.client
        .post(app.url("/users/signup"))
        .header("idempotency-key", key)
        .header("x-forwarded-for", client)
        .json(body)
        .send()
        .await
        .expect("request")
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn count(app: &TestApp, collection: &str, filter: Document) -> u64 {
    app.db
        .collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

/// The user id a 201's access token belongs to.
async fn account_of(app: &TestApp, response: Response) -> String {
    assert_eq!(response.status(), StatusCode::CREATED);
    let tokens: Tokens = response.json().await.unwrap();
    app.user_id(&tokens.access_token).await
}

fn outbox_len(app: &TestApp) -> usize {
    std::fs::read_dir(&app.settings.mail.outbox_dir).map_or(0, |d| d.count())
}

/// Wait until every `user.created` job has finished (completed or failed).
async fn welcome_jobs_done(app: &TestApp) {
    let jobs = app.db.collection::<Document>("jobs");
    eventually(Duration::from_secs(20), "welcome jobs to finish", || {
        let jobs = jobs.clone();
        async move {
            let open = doc! {"type": "user.created", "status": {"$nin": ["completed", "failed"]}};
            (jobs.count_documents(open).await.ok()? == 0).then_some(())
        }
    })
    .await;
}

/// Send `request` again while it answers 503 (as a client retries), up to
/// a deadline; the first other answer.
async fn answered<F, Fut>(mut request: F) -> Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    eventually(Duration::from_secs(20), "an answer other than 503", || {
        let pending = request();
        async move {
            let response = pending.await;
            (response.status() != StatusCode::SERVICE_UNAVAILABLE).then_some(response)
        }
    })
    .await
}

#[tokio::test]
async fn a_retry_after_a_timed_out_signup_gets_the_account_it_created() {
    // The handler stops waiting after 500 ms; the UserActor's mailbox stalls
    // for 1.5 s first, then signs the user up anyway: the client saw 503.
    let app = spawn_app_with(|s| {
        s.actors.call_timeout = Duration::from_millis(500);
        s.cache.lease = Duration::from_millis(200); // a write's wait fits in a call
    })
    .await;
    let email = unique_email();
    let (key, body) = (new_key(), body(&email));
    use secrecy::ExposeSecret;
    let fault = app
        .client
        .post(app.url("/ops/actors/user/fault"))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(&json!({"kind": "delay", "delayMs": 1500}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), StatusCode::ACCEPTED);

    let first = signup_with_key(&app, &key, &body).await;
    assert_problem(first, StatusCode::SERVICE_UNAVAILABLE).await;
    let users = app.db.collection::<Document>("users");
    let created = eventually(Duration::from_secs(10), "the sign-up to land", || {
        let (users, email) = (users.clone(), email.clone());
        async move { users.find_one(doc! {"email": &email}).await.ok()? }
    })
    .await;

    // (Retries that time out again on a loaded machine are retried, as a
    // client would.) Without the key, the retry is refused for the client's
    // own account...
    let unkeyed = answered(|| app.post_json("/users/signup", &body)).await;
    assert_problem(unkeyed, StatusCode::CONFLICT).await;
    // ...with it, the retry gets that account, signed in.
    let retry = answered(|| signup_with_key(&app, &key, &body)).await;
    let id = account_of(&app, retry).await;
    assert_eq!(id, created.get_object_id("_id").unwrap().to_hex());
    assert_eq!(count(&app, "users", doc! {"email": &email}).await, 1);

    welcome_jobs_done(&app).await;
    assert_eq!(count(&app, "jobs", doc! {"type": "user.created"}).await, 1);
    assert_eq!(outbox_len(&app), 1, "one welcome e-mail");
}

/// Issue #23: keys were global, so whoever used a key first with another
/// body made the real sign-up with it fail (422). A key is scoped to its
/// body: another body is another request, and neither blocks the other.
#[tokio::test]
async fn a_key_used_first_with_another_body_does_not_block_the_real_signup() {
    let app = spawn_app_with(|s| s.server.trusted_proxies = "127.0.0.1".parse().unwrap()).await;
    let key = new_key();
    let (victim, squatter) = (unique_email(), unique_email());
    // The squatter saw (or guessed) the key and uses it first.
    let theirs = account_of(
        &app,
        signup_with_key_from(&app, "203.0.113.6", &key, &body(&squatter)).await,
    )
    .await;
    // The real sign-up with that key goes through, for its own account.
    let mine = account_of(
        &app,
        signup_with_key_from(&app, "198.51.100.2", &key, &body(&victim)).await,
    )
    .await;
    assert_ne!(mine, theirs);
    // A retry from another address, with the same body (differently
    // spelled: case, spaces), replays the victim's sign-up.
    let mut respelled = body(&victim);
    respelled["email"] = json!(format!("  {}  ", victim.to_uppercase()));
    for again in [body(&victim), respelled] {
        let response = signup_with_key_from(&app, "192.0.2.33", &key, &again).await;
        assert_eq!(account_of(&app, response).await, mine);
    }
    assert_eq!(count(&app, "users", doc! {}).await, 2);
}

#[tokio::test]
async fn the_same_key_with_another_name_age_or_password_is_another_signup() {
    let app = spawn_app().await;
    let email = unique_email();
    let (key, original) = (new_key(), body(&email));
    let id = account_of(&app, signup_with_key(&app, &key, &original).await).await;
    let mut other_name = original.clone();
    other_name["name"] = json!("Somebody Else");
    let mut other_age = original.clone();
    other_age["age"] = json!(31);
    let mut other_password = original.clone();
    other_password["password"] = json!("another password");
    // Another request for a taken address: 409, as without a key; never a
    // session of the account (the password is part of the scope).
    for other in [other_name, other_age, other_password] {
        let response = signup_with_key(&app, &key, &other).await;
        assert_problem(response, StatusCode::CONFLICT).await;
    }
    assert_eq!(
        account_of(&app, signup_with_key(&app, &key, &original).await).await,
        id
    );
    assert_eq!(count(&app, "users", doc! {}).await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_user_and_no_email_taken() {
    let app = spawn_app().await;
    let email = unique_email();
    let (key, body) = (new_key(), body(&email));
    let responses = join_all((0..10).map(|_| signup_with_key(&app, &key, &body))).await;
    let mut ids = Vec::new();
    for response in responses {
        match response.status() {
            StatusCode::CREATED => ids.push(account_of(&app, response).await),
            // A timeout (on a loaded machine) is a retryable answer too.
            StatusCode::SERVICE_UNAVAILABLE => {}
            status => {
                // Only "still in progress" may come back, never "taken".
                let problem = assert_problem(response, status).await;
                assert_eq!(status, StatusCode::CONFLICT, "{problem}");
                assert!(
                    problem["detail"].as_str().unwrap().contains("in progress"),
                    "{problem}"
                );
            }
        }
    }
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(count(&app, "users", doc! {"email": &email}).await, 1);
    assert_eq!(count(&app, "jobs", doc! {"type": "user.created"}).await, 1);
}

#[tokio::test]
async fn a_malformed_key_is_400() {
    let app = spawn_app().await;
    let too_long = "k".repeat(256);
    let bad: [&[u8]; 4] = [b"", b"has space", too_long.as_bytes(), b"caf\xe9"];
    for key in bad {
        let response = app
            .client
            .post(app.url("/users/signup"))
            .header("idempotency-key", HeaderValue::from_bytes(key).unwrap())
            .json(&body(&unique_email()))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{problem}"
        );
    }
    let mut two = HeaderMap::new();
    two.append("idempotency-key", HeaderValue::from_static("a"));
    two.append("idempotency-key", HeaderValue::from_static("b"));
    let response = app
        .client
        .post(app.url("/users/signup"))
        .headers(two)
        .json(&body(&unique_email()))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(count(&app, "users", doc! {}).await, 0);
    // The longest key is fine.
    let longest = "k".repeat(255);
    account_of(
        &app,
        signup_with_key(&app, &longest, &body(&unique_email())).await,
    )
    .await;
}

#[tokio::test]
async fn a_failed_signup_forgets_its_key_so_a_retry_gets_the_same_answer() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email).await; // somebody else's account
    let key = new_key();
    let mut mine = body(&email);
    mine["name"] = json!("Not The Owner");
    for _ in 0..2 {
        let response = signup_with_key(&app, &key, &mine).await;
        assert_problem(response, StatusCode::CONFLICT).await;
    }
    assert_eq!(count(&app, COLLECTION, doc! {}).await, 0);
}

/// The id of the record a request with `key` and `body` makes.
fn record_id(app: &TestApp, key: &str, body: &Value) -> String {
    let new = NewUser {
        name: body["name"].as_str().unwrap().into(),
        email: Email::parse(body["email"].as_str().unwrap()).unwrap(),
        password: Password::new(body["password"].as_str().unwrap()).unwrap(),
        age: body["age"].as_u64().map(|a| a as u8),
        client: Client::new([127, 0, 0, 1].into(), None),
    };
    let key = IdempotencyKey::parse(key.as_bytes()).unwrap();
    RequestScope::new(&app.settings.auth.refresh_secret).record_id(&key, &new)
}

/// Store the record a request with `key` and `body` would have made,
/// created `age` ago, for user `user_id`.
async fn plant_record(app: &TestApp, key: &str, body: &Value, user_id: ObjectId, age: Duration) {
    let created =
        DateTime::from_millis(DateTime::now().timestamp_millis() - age.as_millis() as i64);
    app.db
        .collection::<Document>(COLLECTION)
        .insert_one(
            doc! {"_id": record_id(app, key, body), "userId": user_id, "createdAt": created},
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_signup_whose_first_request_died_is_taken_over_and_welcomed_once() {
    let app = spawn_app().await;
    let email = unique_email();
    let (key, body) = (new_key(), body(&email));
    // The first request reserved the key, then died before creating the
    // user, longer ago than the call timeout.
    let id = ObjectId::new();
    let old = app.settings.actors.call_timeout + Duration::from_secs(1);
    plant_record(&app, &key, &body, id, old).await;

    let response = signup_with_key(&app, &key, &body).await;
    assert_eq!(account_of(&app, response).await, id.to_hex());
    assert_eq!(count(&app, "users", doc! {}).await, 1);

    // The dead request had written its welcome job too (before the user, as
    // every sign-up does): two jobs for one user, one welcome.
    app.jobs()
        .enqueue(
            "user.created",
            doc! {"userId": id, "email": &email, "name": "Ida"},
        )
        .await
        .unwrap();
    app.nudge();
    app.wait_for_jobs(
        doc! {"type": "user.created"},
        "completed",
        2,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(outbox_len(&app), 1, "one welcome e-mail for the user");
    let skipped = count(
        &app,
        "jobs",
        doc! {"type": "user.created", "result.duplicate": true},
    )
    .await;
    assert_eq!(skipped, 1);
}

#[tokio::test]
async fn a_signup_still_running_answers_409_in_progress() {
    let app = spawn_app_with(|s| {
        s.actors.call_timeout = Duration::from_secs(1);
        s.cache.lease = Duration::from_millis(500); // a write's wait fits in a call
    })
    .await;
    let email = unique_email();
    let (key, body) = (new_key(), body(&email));
    plant_record(&app, &key, &body, ObjectId::new(), Duration::ZERO).await;
    let response = signup_with_key(&app, &key, &body).await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("in progress"),
        "{problem}"
    );
    assert_eq!(count(&app, "users", doc! {}).await, 0);
}

#[tokio::test]
async fn an_expired_key_is_forgotten_when_met() {
    let app = spawn_app().await;
    let ttl = app.settings.auth.idempotency.ttl;
    let email = unique_email();
    let (key, body) = (new_key(), body(&email));
    account_of(&app, signup_with_key(&app, &key, &body).await).await;
    // Age the record past its lifetime: the key no longer names the sign-up,
    // so the same request is a new sign-up of a taken address.
    let expired =
        DateTime::from_millis(DateTime::now().timestamp_millis() - ttl.as_millis() as i64 - 1000);
    app.db
        .collection::<Document>(COLLECTION)
        .update_many(doc! {}, doc! {"$set": {"createdAt": expired}})
        .await
        .unwrap();
    let response = signup_with_key(&app, &key, &body).await;
    assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(count(&app, COLLECTION, doc! {}).await, 0);
}

#[tokio::test]
async fn expired_keys_are_pruned_periodically() {
    let app = spawn_app_with(|s| {
        s.auth.idempotency.prune_interval = Duration::from_millis(200);
    })
    .await;
    let ttl = app.settings.auth.idempotency.ttl;
    let body = body(&unique_email());
    plant_record(
        &app,
        "old-key",
        &body,
        ObjectId::new(),
        ttl + Duration::from_secs(1),
    )
    .await;
    plant_record(&app, "live-key", &body, ObjectId::new(), Duration::ZERO).await;
    eventually(Duration::from_secs(10), "the prune", || async {
        (count(&app, COLLECTION, doc! {}).await == 1).then_some(())
    })
    .await;
    let live = record_id(&app, "live-key", &body);
    assert_eq!(count(&app, COLLECTION, doc! {"_id": live}).await, 1);
}

#[tokio::test]
async fn the_openapi_document_describes_the_header_and_its_answers() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api-json").await.json().await.unwrap();
    let signup = &doc["paths"]["/users/signup"]["post"];
    let header = signup["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("the Idempotency-Key parameter");
    assert_eq!(header["in"], "header");
    assert_eq!(header["required"], false);
    for status in ["201", "400", "409", "503"] {
        assert!(signup["responses"][status].is_object(), "{status}");
    }
    // A key used with another body is another sign-up, never refused.
    assert!(signup["responses"]["422"].is_null(), "{signup}");
}
