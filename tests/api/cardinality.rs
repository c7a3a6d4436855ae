//! Issue #13 item 1: clients choose methods and paths; neither may grow the
//! metrics or the log lines without bound.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};

use crate::helpers::{eventually, log_dir, spawn_app, TestApp};

/// A method no standard lists: 16 random upper-case hex characters.
fn random_method() -> Method {
    let token = uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase();
    Method::from_bytes(token.as_bytes()).unwrap()
}

fn random_path() -> String {
    format!("/{}", uuid::Uuid::new_v4().simple())
}

async fn metrics_size(app: &TestApp) -> usize {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap().len()
}

/// One request of each shape the attack sends: an unknown method on an
/// unknown path (404) and on a known route (405), a GET of an unknown path.
async fn one_of_each(app: &TestApp) {
    for (method, path, status) in [
        (random_method(), random_path(), StatusCode::NOT_FOUND),
        (
            random_method(),
            "/health/live".to_string(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, random_path(), StatusCode::NOT_FOUND),
    ] {
        let response = app
            .client
            .request(method, app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
}

#[tokio::test]
async fn thousands_of_random_methods_and_paths_add_no_metric_series() {
    let app = spawn_app().await;
    // Every series the attack can touch exists once it has been seen once.
    one_of_each(&app).await;
    metrics_size(&app).await;
    let before = metrics_size(&app).await;

    futures::stream::iter(0..1_000)
        .for_each_concurrent(16, |_| one_of_each(&app))
        .await;

    let after = metrics_size(&app).await;
    // Counters gain digits and histogram sums change length; new series
    // (one per method: a counter and a 16-bucket histogram, ≈ 2 KB) would
    // add megabytes.
    assert!(
        after <= before + 2_048,
        "/metrics grew from {before} to {after} bytes"
    );
}

#[tokio::test]
async fn a_huge_method_and_path_write_bounded_log_lines() {
    /// Longer than any bounded requests line (span and event fields, with
    /// the path cut to 256 bytes), far shorter than the attack's 120 KB.
    const LONGEST_LINE: usize = 1_024;
    let app = spawn_app().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let method = Method::from_bytes("X".repeat(60_000).as_bytes()).unwrap();
    let path = format!("/{marker}/{}", "a".repeat(60_000));
    let response = app
        .client
        .request(method, app.url(&path))
        .send()
        .await
        .unwrap();
    // hyper accepts a 60 KB method (a token of any length) and path.
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Log lines are written in order by a background thread: once this one
    // is in the file, so is the attack's.
    let done = format!("/done-{marker}");
    app.get(&done).await;

    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let file = log_dir().join(troupe::telemetry::log_file_name("requests", &date));
    let text = eventually(
        Duration::from_secs(10),
        "the marker request's log line",
        || {
            let (file, done) = (file.clone(), done.clone());
            async move {
                let text = std::fs::read_to_string(&file).ok()?;
                text.contains(&done).then_some(text)
            }
        },
    )
    .await;
    let ours: Vec<&str> = text.lines().filter(|l| l.contains(&marker)).collect();
    let attack: Vec<&&str> = ours.iter().filter(|l| !l.contains(&done)).collect();
    assert!(!attack.is_empty(), "the attack request was logged");
    for line in &attack {
        assert!(
            line.len() <= LONGEST_LINE,
            "a {} byte line: {}…",
            line.len(),
            &line[..300]
        );
        assert!(line.contains("method=other"), "{line}");
        assert!(line.contains("truncated, 60034 bytes"), "{line}");
    }
}
