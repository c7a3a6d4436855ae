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

/// `X-Content-Type-Options` of a response.
fn nosniff(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get("x-content-type-options")
        .and_then(|v| v.to_str().ok())
}

/// Issue #23, hardening: JSON, problem+json, `/logs` text, metrics and
/// Swagger UI responses carried no `nosniff`.
#[tokio::test]
async fn every_kind_of_response_says_nosniff() {
    let app = spawn_app().await;
    app.get("/health/live").await;
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let logs = format!("/logs?type=requests&date={date}&tail=1");
    let anonymous = [
        ("/", StatusCode::OK),
        ("/health/live", StatusCode::OK),
        ("/no/such/route", StatusCode::NOT_FOUND),
        ("/users/not-an-id", StatusCode::BAD_REQUEST),
        ("/users/profile", StatusCode::UNAUTHORIZED),
        ("/metrics", StatusCode::OK),
        ("/api-json", StatusCode::OK),
        ("/api/", StatusCode::OK),
        ("/api/swagger-ui.css", StatusCode::OK),
        ("/ops/console", StatusCode::OK),
    ];
    for (path, status) in anonymous {
        let response = app.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(nosniff(&response), Some("nosniff"), "{path}");
    }
    for path in [logs.as_str(), "/ops/actors", "/jobs/stats"] {
        let response = app.get_ops(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(nosniff(&response), Some("nosniff"), "{path}");
    }
    // Answered by the body guard before any route: 413.
    let response = app
        .client
        .post(app.url("/users/signup"))
        .header("content-type", "application/json")
        .body(vec![b' '; app.settings.server.body_limit + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(nosniff(&response), Some("nosniff"));
}

/// Issue #23, hardening: Swagger UI had no CSP or frame protection.
#[tokio::test]
async fn swagger_ui_has_a_content_security_policy_and_no_framing() {
    let app = spawn_app().await;
    for path in [
        "/api/",
        "/api/swagger-initializer.js",
        "/api/swagger-ui-bundle.js",
        "/api/swagger-ui.css",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("script-src 'self' 'unsafe"), "{path}: {csp}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }
    // The page's configuration: this origin's document, no outside validator.
    let initializer = app
        .get("/api/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/api-json"), "{initializer}");
    assert!(
        initializer.contains(r#""validatorUrl": "none""#),
        "{initializer}"
    );
}
