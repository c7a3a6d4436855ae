//! What joins a trace's parts: a job shows the trace it belongs to, the
//! log viewer picks a trace's lines, and in a fleet of three the request on
//! one instance and its job on another are one trace in a real Jaeger.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, binary_command, eventually, free_port, remove_stores, spawn_app, test_settings,
    unique_email, PASSWORD,
};
use crate::tracing::{
    by_name, caller_trace, complete, jaeger_answers, parent_of, serve, tag, trace, JAEGER, OTLP,
};

#[tokio::test]
async fn a_job_shows_its_trace_id_and_the_logs_filter_by_it() {
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
    let list: Value = app
        .get_ops("/jobs?type=user.created")
        .await
        .json()
        .await
        .unwrap();
    let id = list["jobs"][0]["id"].as_str().expect("the welcome job");
    assert_eq!(list["jobs"][0]["traceId"], trace_id.as_str());
    let job: Value = app
        .get_ops(&format!("/jobs/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["traceId"], trace_id.as_str(), "{job}");

    // The request's log lines, among every other test's in the shared file.
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let path = format!("/logs?type=requests&date={date}&traceId={trace_id}");
    let text = eventually(
        Duration::from_secs(10),
        "the sign-up's log line",
        || async {
            let response = app.get_ops(&path).await;
            assert_eq!(response.status(), StatusCode::OK);
            let text = response.text().await.unwrap();
            text.contains("/users/signup").then_some(text)
        },
    )
    .await;
    let wanted = format!("trace_id={trace_id} ");
    assert!(
        text.lines().all(|line| line.contains(&wanted)),
        "only the trace's lines: {text}"
    );
    let other = app.get("/health/live").await;
    assert_eq!(other.status(), StatusCode::OK);
    let tail = app.get_ops(&format!("{path}&tail=10000")).await;
    assert!(tail
        .text()
        .await
        .unwrap()
        .lines()
        .all(|l| l.contains(&wanted)));

    for bad in [
        "4BF92F3577B34DA6A3CE929D0E0E4736",
        "00000000000000000000000000000000",
        "4bf92f3577b34da6",
        "..%2F..%2Fetc%2Fpasswd",
    ] {
        let problem = assert_problem(
            app.get_ops(&format!("/logs?type=requests&date={date}&traceId={bad}"))
                .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "traceId", "{bad}: {problem}");
    }
}

/// The `service.instance.id` of the process that sent `span`.
fn instance_of(trace: &Value, span: &Value) -> String {
    let process = &trace["processes"][span["processID"].as_str().unwrap_or_default()];
    tag(process, "service.instance.id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn in_a_fleet_of_three_a_request_and_its_job_on_another_instance_are_one_trace_in_jaeger() {
    let client = reqwest::Client::new();
    if !jaeger_answers(&client).await {
        eprintln!("SKIPPED: Jaeger does not answer on {JAEGER}; start it with `scripts/services jaeger up`");
        return;
    }
    let settings = test_settings();
    // The first instance serves the request and runs no job: the others do.
    let mut instances = vec![];
    for claims in [false, true, true] {
        let port = free_port();
        let mut command = binary_command(&settings, port, "30s");
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP)
            .env("OTEL_SERVICE_NAME", "troupe-fleet-trace-test")
            .env("TROUPE__QUEUE__POLLER_CLAIMS", claims.to_string());
        instances.push(serve(command, port, &client).await);
    }
    let base = &instances[0].1;
    let (trace_id, traceparent) = caller_trace();
    let response = client
        .post(format!("{base}/users/signup"))
        .header("traceparent", &traceparent)
        .json(&json!({"name": "Fleet User", "email": unique_email(), "password": PASSWORD}))
        .send()
        .await
        .expect("sign-up");
    assert_eq!(response.status(), StatusCode::CREATED);

    let trace = eventually(
        Duration::from_secs(60),
        "the sign-up and its job in Jaeger",
        || {
            let (client, trace_id) = (client.clone(), trace_id.clone());
            async move { trace(&client, &trace_id).await.filter(complete) }
        },
    )
    .await;
    let names = by_name(&trace);
    let (request, handling, attempt) = (
        &names["request"],
        &names["UserActor signup"],
        &names["job.attempt"],
    );
    let requested_on = instance_of(&trace, request);
    let ran_on = instance_of(&trace, attempt);
    assert!(!requested_on.is_empty() && !ran_on.is_empty(), "{trace}");
    assert_ne!(requested_on, ran_on, "the job ran on another instance");
    assert_eq!(instance_of(&trace, handling), requested_on);
    // Joined: the attempt is a child of the span that enqueued its job.
    assert_eq!(parent_of(attempt), handling["spanID"].as_str());
    assert_eq!(parent_of(request), Some("00f067aa0ba902b7"));
    let processes = trace["processes"].as_object().unwrap();
    assert!(processes.len() >= 2, "{processes:?}");

    // The job says the same: its trace, and the instance that ran it.
    use secrecy::ExposeSecret;
    let list: Value = client
        .get(format!("{base}/jobs?type=user.created"))
        .bearer_auth(settings.ops.token.expose_secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = &list["jobs"][0];
    assert_eq!(job["traceId"], trace_id.as_str(), "{list}");
    assert_eq!(job["status"], "completed", "{list}");
    drop(instances);
    remove_stores(&settings).await;
}
