//! `/ops/console`: the page and its assets are anonymous static content with
//! a strict CSP; the console's config is ops-token guarded. (The page's
//! behaviour in a browser: tests/console.)

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's security headers on a response.
fn assert_locked_down(response: &reqwest::Response, what: &str) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-security-policy"), CSP, "{what}: CSP");
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
}

fn content_type(response: &reqwest::Response) -> String {
    response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_page_is_served_without_a_token_with_a_strict_csp_and_no_inline_script() {
    let app = spawn_app().await;
    let response = app.get("/ops/console").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_locked_down(&response, "page");
    assert_eq!(content_type(&response), "text/html; charset=utf-8");
    let page = response.text().await.unwrap();
    assert!(page.contains("<label for=\"ops-token\">Ops token</label>"));
    // Every <script> loads a file; none carries code of its own.
    for tag in page.split("<script").skip(1) {
        let (attributes, rest) = tag.split_once('>').unwrap();
        assert!(
            attributes.contains("src=\"/ops/console/assets/"),
            "inline script: {tag}"
        );
        assert!(rest.starts_with("</script>"), "a script with a body: {tag}");
    }
    assert!(!page.contains("<style") && !page.contains(" style="));
}

#[tokio::test]
async fn assets_are_served_with_their_types_and_the_csp() {
    let app = spawn_app().await;
    for (path, expected) in [
        (
            "/ops/console/assets/main.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/ops/console/assets/sse.js",
            "text/javascript; charset=utf-8",
        ),
        ("/ops/console/assets/console.css", "text/css; charset=utf-8"),
        ("/ops/console/assets/favicon.svg", "image/svg+xml"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_locked_down(&response, path);
        assert_eq!(content_type(&response), expected, "{path}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");
    }
}

#[tokio::test]
async fn an_unknown_asset_is_a_404_under_the_assets_route_label() {
    let app = spawn_app().await;
    for path in [
        "/ops/console/assets/nope.js",
        "/ops/console/assets/index.html",
        "/ops/console/assets/..%2F..%2FCargo.toml",
        "/ops/console/assets/%FF",
    ] {
        let response = app.get(path).await;
        assert_locked_down(&response, path);
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
    // One series for every asset name, however many are tried.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let series = |route: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("troupe_http_requests_total{") && l.contains(route))
            .count()
    };
    assert_eq!(
        series("route=\"/ops/console/assets/{file}\""),
        1,
        "{metrics}"
    );
    assert_eq!(series("nope.js"), 0);
}

#[tokio::test]
async fn the_console_config_needs_the_ops_token() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/ops/console/config").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.get_bearer("/ops/console/config", "not-the-token").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let response = app.get_ops("/ops/console/config").await;
    assert_eq!(response.status(), StatusCode::OK);
    let config: Value = response.json().await.unwrap();
    // The test profile has fault injection on.
    assert_eq!(config["faultInjection"], true);
    assert_eq!(config["instance"], app.state.actors.fleet.instance());
    let kinds = config["eventKinds"].as_array().unwrap();
    assert!(kinds.iter().any(|k| k == "UserCreated"), "{kinds:?}");
}

#[tokio::test]
async fn the_console_config_says_when_fault_injection_is_off() {
    let app = crate::helpers::spawn_app_with(|s| s.ops.fault_injection = false).await;
    let config: Value = app
        .get_ops("/ops/console/config")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["faultInjection"], false);
}
