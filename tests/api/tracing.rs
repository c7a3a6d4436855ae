//! Traces: a sign-up followed from the request to its welcome job in a real
//! Jaeger (`scripts/services jaeger up`; `scripts/test` starts it), and the
//! trace ids on the log lines.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    binary_command, eventually, free_port, log_dir, spawn_app, test_settings, unique_email,
    Process, PASSWORD,
};

pub(crate) const JAEGER: &str = "http://127.0.0.1:16686";
/// Jaeger's OTLP/HTTP receiver.
pub(crate) const OTLP: &str = "http://127.0.0.1:4318";

/// A fresh trace id, and a `traceparent` naming it (sampled).
pub(crate) fn caller_trace() -> (String, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let parent = format!("00-{id}-00f067aa0ba902b7-01");
    (id, parent)
}

pub(crate) async fn jaeger_answers(client: &reqwest::Client) -> bool {
    let services = client
        .get(format!("{JAEGER}/api/services"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    services.is_ok_and(|response| response.status().is_success())
}

/// The spans of trace `id` in Jaeger (its one trace), once there are any.
pub(crate) async fn trace(client: &reqwest::Client, id: &str) -> Option<Value> {
    let response = client
        .get(format!("{JAEGER}/api/traces/{id}"))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    body["data"].get(0).cloned()
}

/// Each span's operation name → the span (the last of a name wins; the
/// subscribers' spans are told apart by their `subscriber` tag).
pub(crate) fn by_name(trace: &Value) -> HashMap<String, Value> {
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    spans
        .into_iter()
        .map(|span| {
            (
                span["operationName"].as_str().unwrap_or("").to_owned(),
                span,
            )
        })
        .collect()
}

pub(crate) fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|tag| tag["key"] == key)
        .map(|tag| &tag["value"])
}

pub(crate) fn parent_of(span: &Value) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")?["spanID"]
        .as_str()
}

/// What the sign-up's trace must hold before it is checked.
pub(crate) fn complete(trace: &Value) -> bool {
    let names = by_name(trace);
    let subscribers = trace["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .filter_map(|span| tag(span, "subscriber").and_then(Value::as_str))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    [
        "request",
        "signup",
        "UserActor signup",
        "bcrypt.hash",
        "insert users",
        "job.attempt",
    ]
    .iter()
    .all(|name| names.contains_key(*name))
        && subscribers.contains(&"audit-log")
        && subscribers.contains(&"event-counter")
        && names.contains_key("insert email_deliveries")
}

/// Start `command` (the binary on `port`) and wait until it serves: the
/// process (killed when dropped) and its base URL.
pub(crate) async fn serve(
    mut command: std::process::Command,
    port: u16,
    client: &reqwest::Client,
) -> (Process, String) {
    let process = Process {
        child: command.spawn().expect("start the troupe binary"),
    };
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(60), "the binary to serve", || async {
        let live = client
            .get(format!("{base}/health/live"))
            .send()
            .await
            .ok()?;
        live.status().is_success().then_some(())
    })
    .await;
    (process, base)
}

#[tokio::test]
async fn a_signup_is_one_trace_in_jaeger_from_the_request_to_its_welcome_job() {
    let client = reqwest::Client::new();
    if !jaeger_answers(&client).await {
        eprintln!("SKIPPED: Jaeger does not answer on {JAEGER}; start it with `scripts/services jaeger up`");
        return;
    }
    let settings = test_settings();
    let port = free_port();
    let mut command = binary_command(&settings, port, "30s");
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP)
        .env("OTEL_SERVICE_NAME", "troupe-trace-test");
    let (_process, base) = serve(command, port, &client).await;

    let (trace_id, traceparent) = caller_trace();
    let email = unique_email();
    let response = client
        .post(format!("{base}/users/signup"))
        .header("traceparent", &traceparent)
        .json(&json!({"name": "Traced User", "email": email, "password": PASSWORD, "age": 30}))
        .send()
        .await
        .expect("sign-up");
    assert_eq!(response.status(), StatusCode::CREATED);
    let answered = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        answered.starts_with(&format!("00-{trace_id}-")),
        "{answered}"
    );
    let tokens: Value = response.json().await.unwrap();

    let trace = eventually(
        Duration::from_secs(60),
        "the whole sign-up in Jaeger",
        || {
            let client = client.clone();
            let trace_id = trace_id.clone();
            async move { trace(&client, &trace_id).await.filter(complete) }
        },
    )
    .await;
    let names = by_name(&trace);
    let id = |name: &str| names[name]["spanID"].as_str().unwrap().to_owned();
    // The request is the caller's child; each hop a child of the one before.
    assert_eq!(parent_of(&names["request"]), Some("00f067aa0ba902b7"));
    assert_eq!(parent_of(&names["signup"]), Some(id("request").as_str()));
    assert_eq!(
        parent_of(&names["UserActor signup"]),
        Some(id("signup").as_str())
    );
    assert_eq!(
        parent_of(&names["bcrypt.hash"]),
        Some(id("UserActor signup").as_str())
    );
    assert_eq!(
        parent_of(&names["insert users"]),
        Some(id("UserActor signup").as_str())
    );
    // The job attempt: a child of the span that enqueued it.
    let attempt = &names["job.attempt"];
    assert_eq!(parent_of(attempt), Some(id("UserActor signup").as_str()));
    assert_eq!(tag(attempt, "job.kind"), Some(&json!("user.created")));
    assert_eq!(
        parent_of(&names["insert email_deliveries"]),
        Some(id("job.attempt").as_str())
    );
    assert_eq!(
        tag(&names["insert users"], "db.collection.name"),
        Some(&json!("users"))
    );

    // The resource: service, version, the instance's id.
    let processes = trace["processes"].as_object().expect("processes");
    assert_eq!(processes.len(), 1, "one instance: {processes:?}");
    let process = processes.values().next().unwrap();
    assert_eq!(process["serviceName"], "troupe-trace-test");
    let resource = |key: &str| {
        tag(process, key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(resource("service.version"), env!("CARGO_PKG_VERSION"));
    assert!(!resource("service.instance.id").is_empty(), "{process}");

    // Nothing secret or personal anywhere in the trace.
    let text = trace.to_string();
    for secret in [
        PASSWORD,
        email.as_str(),
        tokens["access_token"].as_str().expect("access token"),
        tokens["refresh_token"].as_str().expect("refresh token"),
    ] {
        assert!(!text.contains(secret), "the trace holds {secret:?}");
    }
}

#[tokio::test]
async fn log_lines_inside_a_request_carry_its_trace_id_with_export_off() {
    let app = spawn_app().await;
    let (trace_id, traceparent) = caller_trace();
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answered = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_owned();
    let span_id = answered.split('-').nth(2).unwrap().to_owned();
    assert!(
        answered.starts_with(&format!("00-{trace_id}-")),
        "{answered}"
    );
    let wanted = format!("trace_id={trace_id} span_id={span_id}");
    eventually(
        Duration::from_secs(10),
        "the request's log line with its ids",
        || {
            let wanted = wanted.clone();
            async move {
                let files = std::fs::read_dir(log_dir()).ok()?;
                files
                    .filter_map(Result::ok)
                    .filter(|file| file.file_name().to_string_lossy().starts_with("requests."))
                    .filter_map(|file| std::fs::read_to_string(file.path()).ok())
                    .any(|text| text.lines().any(|line| line.ends_with(&wanted)))
                    .then_some(())
            }
        },
    )
    .await;
}

/// The `traceresponse` of `response`, split: (trace id, span id, flags).
fn answered(response: &reqwest::Response) -> (String, String, String) {
    let value = response.headers()["traceresponse"].to_str().unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test]
async fn with_export_off_a_request_without_traceparent_starts_a_trace_of_its_own_not_sampled() {
    let app = spawn_app().await;
    let first = app.get("/health/live").await;
    let second = app.get("/health/live").await;
    let (first_trace, first_span, flags) = answered(&first);
    let (second_trace, _, _) = answered(&second);
    assert_eq!(first_trace.len(), 32);
    assert_eq!(first_span.len(), 16);
    assert_ne!(first_trace, "0".repeat(32));
    assert_ne!(first_trace, second_trace, "each request is a trace");
    assert_eq!(flags, "00", "nothing of it is recorded");
}

#[tokio::test]
async fn with_export_off_a_signups_welcome_job_stores_the_callers_trace() {
    let app = spawn_app().await;
    let (trace_id, traceparent) = caller_trace();
    let response = app
        .client
        .post(app.url("/users/signup"))
        .header("traceparent", &traceparent)
        .json(&json!({"name": "Traced User", "email": unique_email(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let (answered_trace, request_span, flags) = answered(&response);
    assert_eq!(
        (answered_trace.as_str(), flags.as_str()),
        (trace_id.as_str(), "01")
    );
    let job = app
        .db
        .collection::<mongodb::bson::Document>("jobs")
        .find_one(mongodb::bson::doc! {"type": "user.created"})
        .await
        .unwrap()
        .expect("the welcome job");
    let stored = job.get_str("trace").expect("the job's trace");
    // Enqueued inside the UserActor's handling of the sign-up: the caller's
    // trace, a span of this process (neither the caller's nor the request's).
    let parts: Vec<&str> = stored.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace_id.as_str(), "01")
    );
    assert_ne!(parts[2], "00f067aa0ba902b7");
    assert_ne!(parts[2], request_span);
}

#[tokio::test]
async fn a_collector_that_never_answers_slows_no_request_and_the_dropped_spans_are_counted() {
    // Accepts connections (the kernel's backlog) and never answers one.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = format!("http://{}", silent.local_addr().unwrap());
    let settings = test_settings();
    let port = free_port();
    let mut command = binary_command(&settings, port, "30s");
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .env("TROUPE__TELEMETRY__EXPORT_QUEUE", "2")
        .env("TROUPE__TELEMETRY__EXPORT_TIMEOUT", "60s");
    let client = reqwest::Client::new();
    let (_process, base) = serve(command, port, &client).await;
    for _ in 0..50 {
        let started = std::time::Instant::now();
        let response = client
            .get(format!("{base}/health/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited for the collector"
        );
    }
    let dropped = eventually(
        Duration::from_secs(30),
        "dropped spans on /metrics",
        || async {
            let text = client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let line = text
                .lines()
                .find(|line| line.starts_with("troupe_trace_spans_dropped_total "))?
                .to_owned();
            let count: u64 = line.rsplit(' ').next()?.parse().ok()?;
            (count > 0).then_some(count)
        },
    )
    .await;
    // At most the queue (2) and one batch (2) of the 50 requests' spans were kept.
    assert!(dropped >= 46, "dropped {dropped}");
}
