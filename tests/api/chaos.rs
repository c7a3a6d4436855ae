//! The fault-injection suite: every actor killed repeatedly under mixed traffic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    all_jobs_completed, eventually, spawn_app_with, unique_email, TestApp, Tokens, PASSWORD,
};

/// What the traffic saw.
#[derive(Default)]
struct Traffic {
    acknowledged: Mutex<Vec<String>>,
    requests: AtomicU64,
    unavailable: AtomicU64,
    hung: AtomicU64,
    other_errors: Mutex<Vec<String>>,
}

/// One client's loop: sign up, log in, refresh, read profiles (cached).
async fn client(base: String, traffic: Arc<Traffic>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(8))
        .build()
        .unwrap();
    let mut ids: Vec<String> = Vec::new();
    let mut refresh: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let email = unique_email();
        let body = json!({"name": "Chaos", "email": email, "password": PASSWORD});
        let calls: Vec<(&str, reqwest::RequestBuilder)> = vec![
            (
                "signup",
                http.post(format!("{base}/users/signup")).json(&body),
            ),
            (
                "login",
                http.post(format!("{base}/users/login"))
                    .json(&json!({"email": email, "password": PASSWORD})),
            ),
        ];
        for (what, request) in calls {
            traffic.requests.fetch_add(1, Ordering::Relaxed);
            match request.send().await {
                Ok(r) if r.status() == StatusCode::CREATED && what == "signup" => {
                    traffic.acknowledged.lock().unwrap().push(email.clone());
                    let tokens: Tokens = r.json().await.unwrap();
                    refresh = Some(tokens.refresh_token);
                    let profile: Value = http
                        .get(format!("{base}/users/profile"))
                        .bearer_auth(&tokens.access_token)
                        .send()
                        .await
                        .ok()
                        .and_then(|r| r.status().is_success().then_some(r))
                        .map(|r| futures::executor::block_on(r.json()).unwrap_or_default())
                        .unwrap_or_default();
                    if let Some(id) = profile["id"].as_str() {
                        ids.push(id.to_string());
                    }
                }
                Ok(r) if r.status().is_success() => {}
                Ok(r)
                    if r.status() == StatusCode::SERVICE_UNAVAILABLE
                        || r.status() == StatusCode::UNAUTHORIZED =>
                {
                    // 503: an actor was down; 401: login of a sign-up that got a 503.
                    traffic.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => traffic
                    .other_errors
                    .lock()
                    .unwrap()
                    .push(format!("{what}: {}", r.status())),
                Err(e) if e.is_timeout() => {
                    traffic.hung.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => traffic
                    .other_errors
                    .lock()
                    .unwrap()
                    .push(format!("{what}: {e}")),
            }
        }
        if let Some(token) = refresh.take() {
            traffic.requests.fetch_add(1, Ordering::Relaxed);
            match http
                .post(format!("{base}/users/refresh"))
                .bearer_auth(token)
                .send()
                .await
            {
                Ok(r) if r.status() == StatusCode::OK => {
                    refresh = r.json::<Tokens>().await.ok().map(|t| t.refresh_token)
                }
                Ok(_) => {}
                Err(e) if e.is_timeout() => {
                    traffic.hung.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {}
            }
        }
        for id in ids.iter().rev().take(3) {
            traffic.requests.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = http.get(format!("{base}/users/{id}")).send().await {
                if e.is_timeout() {
                    traffic.hung.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn restarts(app: &TestApp, name: &str) -> u64 {
    let node: Value = app
        .get_ops(&format!("/ops/actors/{name}"))
        .await
        .json()
        .await
        .unwrap();
    if node["status"] == "running" {
        node["restarts"].as_u64().unwrap()
    } else {
        u64::MAX // down: not restarted yet
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_survives_repeated_kills_under_mixed_traffic() {
    let app = spawn_app_with(|s| {
        s.actors.restart.max_restarts = 50;
        s.queue.lease = Duration::from_secs(2);
    })
    .await;
    let probe_email = unique_email();
    let probe = app.signup(&probe_email).await;
    let probe_id = app.user_id(&probe.access_token).await;

    let (traffic, stop) = (
        Arc::new(Traffic::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let clients: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(client(
                app.address.clone(),
                Arc::clone(&traffic),
                Arc::clone(&stop),
            ))
        })
        .collect();

    // Executors before the poller: a poller restart starts a fresh pool.
    let victims = [
        "user",
        "cache",
        "event-bus",
        "audit-log",
        "executor-0",
        "queue-poller",
    ];
    for victim in victims {
        for round in 1..=2u64 {
            let response = app
                .client
                .post(app.url(&format!("/ops/actors/{victim}/fault")))
                .bearer_auth(secrecy::ExposeSecret::expose_secret(
                    &app.settings.ops.token,
                ))
                .json(&json!({"kind": "panic"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            eventually(
                Duration::from_secs(15),
                &format!("{victim} restart {round}"),
                || async { (restarts(&app, victim).await == round).then_some(()) },
            )
            .await;
            // Normal answers again within a second of the restart.
            let restarted_at = Instant::now();
            eventually(
                Duration::from_secs(1),
                &format!("normal service after {victim} restart {round}"),
                || async {
                    let login = app.login(&probe_email, PASSWORD).await;
                    let cached = app.get(&format!("/users/{probe_id}")).await;
                    (login.status() == StatusCode::OK && cached.status() == StatusCode::OK)
                        .then_some(())
                },
            )
            .await;
            assert!(restarted_at.elapsed() < Duration::from_secs(1));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // a little traffic after the last restart
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    assert_eq!(
        traffic.hung.load(Ordering::Relaxed),
        0,
        "no request may hang"
    );
    assert!(
        traffic.other_errors.lock().unwrap().is_empty(),
        "{:?}",
        traffic.other_errors.lock().unwrap()
    );
    let acknowledged = traffic.acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 10,
        "traffic flowed: {} sign-ups",
        acknowledged.len()
    );

    // Every acknowledged sign-up exists, with its welcome job; every job completes.
    let users = app.db.collection::<Document>("users");
    let jobs = app.db.collection::<Document>("jobs");
    for email in &acknowledged {
        let user = users
            .find_one(doc! {"email": email})
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{email} lost"));
        let id = user.get_object_id("_id").unwrap();
        assert_eq!(
            jobs.count_documents(doc! {"type": "user.created", "payload.userId": id})
                .await
                .unwrap(),
            1
        );
    }
    all_jobs_completed(&app.db, Duration::from_secs(60)).await;

    // Restart counts match the injections.
    for victim in victims {
        assert_eq!(restarts(&app, victim).await, 2, "{victim}");
    }
    println!(
        "chaos: {} requests, {} answered 503/401 during restarts, {} sign-ups acknowledged",
        traffic.requests.load(Ordering::Relaxed),
        traffic.unavailable.load(Ordering::Relaxed),
        acknowledged.len()
    );
}
