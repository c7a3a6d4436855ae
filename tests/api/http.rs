use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, eventually, log_dir, spawn_app};

#[tokio::test]
async fn openapi_lists_both_bearer_schemes_and_all_tags() {
    let app = spawn_app().await;
    let response = app.get("/api-json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.expect("the OpenAPI document parses");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let schemes = &doc["components"]["securitySchemes"];
    for scheme in ["access-token", "refresh-token"] {
        assert_eq!(schemes[scheme]["type"], "http", "{scheme}");
        assert_eq!(schemes[scheme]["scheme"], "bearer", "{scheme}");
    }
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for tag in ["Auth", "Users", "Jobs", "Logs", "Ops", "App"] {
        assert!(tags.contains(&tag), "tag {tag} missing from {tags:?}");
    }
    assert!(doc["paths"]["/health/ready"]["get"].is_object());
}

#[tokio::test]
async fn swagger_ui_is_served_without_downloads() {
    let app = spawn_app().await;
    let response = app.get("/api/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // The bundle is vendored into the binary.
    let js = app.get("/api/swagger-ui-bundle.js").await;
    assert_eq!(js.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_route_is_404_problem_json() {
    let app = spawn_app().await;
    let body = assert_problem(app.get("/no/such/route").await, StatusCode::NOT_FOUND).await;
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["title"], "Not Found");
}

#[tokio::test]
async fn wrong_method_is_405_problem_json() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn every_request_is_logged_in_the_requests_file() {
    let app = spawn_app().await;
    let marker = format!("/marker-{}", uuid::Uuid::new_v4().simple());
    let _ = app.get(&marker).await;
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let file = log_dir().join(troupe::telemetry::log_file_name("requests", &date));
    let line = eventually(Duration::from_secs(5), "the request's log line", || {
        let file = file.clone();
        let marker = marker.clone();
        async move {
            let text = std::fs::read_to_string(&file).ok()?;
            text.lines()
                .find(|l| l.contains(&marker))
                .map(str::to_owned)
        }
    })
    .await;
    assert!(
        line.contains("method=GET") && line.contains("status=404") && line.contains("duration_ms="),
        "{line}"
    );
}
