//! Refresh-token reuse revokes once, not forever (issue #13, item 7), a
//! benign retry within the grace window revokes nothing (issue #23), and a
//! deleted account's sessions mint no tokens.

use std::time::Duration;

use futures::future::join_all;
use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::StatusCode;

use crate::helpers::{
    assert_problem, eventually, spawn_app, spawn_app_with, unique_email, TestApp, Tokens, PASSWORD,
};

/// An app whose refresh tokens have this grace window.
async fn app_with_grace(grace: Duration) -> TestApp {
    spawn_app_with(|s| s.auth.refresh_reuse_grace = grace).await
}

async fn live_sessions(app: &TestApp, access_token: &str) -> u64 {
    let user_id = ObjectId::parse_str(app.user_id(access_token).await).unwrap();
    app.db
        .collection::<Document>("sessions")
        .count_documents(doc! {"userId": user_id, "revoked": false})
        .await
        .unwrap()
}

/// Issue #23: two tabs (or a client retrying a refresh whose answer it lost)
/// presenting one refresh token at once used to revoke every session of the
/// user. Within the grace window both get the same new pair, and nothing is
/// revoked.
#[tokio::test]
async fn concurrent_refreshes_of_one_token_get_one_pair_and_revoke_nothing() {
    let app = spawn_app().await;
    assert!(
        !app.settings.auth.refresh_reuse_grace.is_zero(),
        "on by default"
    );
    let email = unique_email();
    let pair = app.signup(&email).await;
    let other: Tokens = app.login(&email, PASSWORD).await.json().await.unwrap();
    let responses = join_all((0..4).map(|_| app.refresh(&pair.refresh_token))).await;
    let mut pairs = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
        pairs.push(response.json::<Tokens>().await.unwrap());
    }
    for p in &pairs {
        assert_eq!(p.refresh_token, pairs[0].refresh_token);
        assert_eq!(p.access_token, pairs[0].access_token);
    }
    assert_ne!(pairs[0].refresh_token, pair.refresh_token);
    // Nothing was revoked: the session keeps working with the new pair, and
    // the user's other session too.
    assert_eq!(live_sessions(&app, &other.access_token).await, 2);
    let next = app.refresh(&pairs[0].refresh_token).await;
    assert_eq!(next.status(), StatusCode::OK);
    let response = app.refresh(&other.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// The window is for retries, not a second life: once the new token was
/// used, a replay of the old one is reuse, within the window or not.
#[tokio::test]
async fn a_replay_after_the_successor_was_used_revokes_every_session() {
    let app = app_with_grace(Duration::from_secs(60)).await;
    let email = unique_email();
    let pair = app.signup(&email).await;
    let other: Tokens = app.login(&email, PASSWORD).await.json().await.unwrap();
    let rotated: Tokens = app.refresh(&pair.refresh_token).await.json().await.unwrap();
    let newest = app.refresh(&rotated.refresh_token).await;
    assert_eq!(newest.status(), StatusCode::OK);
    let body = assert_problem(
        app.refresh(&pair.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    assert_eq!(live_sessions(&app, &other.access_token).await, 0);
}

#[tokio::test]
async fn a_replay_after_the_grace_window_revokes_every_session() {
    let app = app_with_grace(Duration::from_millis(500)).await;
    let email = unique_email();
    let pair = app.signup(&email).await;
    let other: Tokens = app.login(&email, PASSWORD).await.json().await.unwrap();
    let rotated: Tokens = app.refresh(&pair.refresh_token).await.json().await.unwrap();
    // Replays within the window get the same pair; the first one after it
    // is refused as reuse.
    let body = eventually(Duration::from_secs(10), "the window to end", || async {
        let response = app.refresh(&pair.refresh_token).await;
        if response.status() == StatusCode::OK {
            let again: Tokens = response.json().await.unwrap();
            assert_eq!(again.refresh_token, rotated.refresh_token);
            return None;
        }
        Some(assert_problem(response, StatusCode::UNAUTHORIZED).await)
    })
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    assert_eq!(live_sessions(&app, &other.access_token).await, 0);
    for token in [&rotated.refresh_token, &other.refresh_token] {
        assert_problem(app.refresh(token).await, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn replays_of_a_reported_token_do_not_revoke_later_sessions() {
    let app = app_with_grace(Duration::ZERO).await;
    let email = unique_email();
    let old = app.signup(&email).await;
    let rotated: Tokens = app.refresh(&old.refresh_token).await.json().await.unwrap();

    // First replay: theft detected, every session revoked (as before).
    let body = assert_problem(
        app.refresh(&old.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    assert_problem(
        app.refresh(&rotated.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // The owner logs in again. Whoever still holds the old token replays it:
    // refused, and the new session lives on.
    let fresh: Tokens = app.login(&email, PASSWORD).await.json().await.unwrap();
    for _ in 0..3 {
        let body = assert_problem(
            app.refresh(&old.refresh_token).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert!(
            !body["detail"].as_str().unwrap().contains("revoked"),
            "{body}"
        );
    }
    let response = app.refresh(&fresh.refresh_token).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the new session survives"
    );

    // The first detection is recorded on the spent token's record.
    let user_id = ObjectId::parse_str(app.user_id(&fresh.access_token).await).unwrap();
    let marked = app
        .db
        .collection::<Document>("used_refresh_tokens")
        .count_documents(doc! {"userId": user_id, "reuseDetectedAt": {"$exists": true}})
        .await
        .unwrap();
    assert_eq!(marked, 1);
}

#[tokio::test]
async fn a_refresh_for_a_deleted_user_is_refused() {
    let app = spawn_app().await;
    let pair = app.signup(&unique_email()).await;
    let id = ObjectId::parse_str(app.user_id(&pair.access_token).await).unwrap();
    let deleted = app
        .db
        .collection::<Document>("users")
        .delete_one(doc! {"_id": id})
        .await
        .unwrap();
    assert_eq!(deleted.deleted_count, 1);
    // The session is still there: only the account is gone.
    let sessions = app
        .db
        .collection::<Document>("sessions")
        .count_documents(doc! {"userId": id, "revoked": false})
        .await
        .unwrap();
    assert_eq!(sessions, 1);
    assert_problem(
        app.refresh(&pair.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
