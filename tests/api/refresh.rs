//! Refresh-token reuse revokes once, not forever (issue #13, item 7), and a
//! deleted account's sessions mint no tokens.

use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::StatusCode;

use crate::helpers::{assert_problem, spawn_app, unique_email, Tokens, PASSWORD};

#[tokio::test]
async fn replays_of_a_reported_token_do_not_revoke_later_sessions() {
    let app = spawn_app().await;
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
