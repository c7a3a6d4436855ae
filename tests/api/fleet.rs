//! The fleet: several instances on one database and one Redis prefix list
//! each other (`/ops/cluster`), answer each other's actor trees, leave at
//! once when they shut down, and take over a SIGKILLed instance's jobs
//! within the heartbeat TTL instead of the lease.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use reqwest::StatusCode;
use serde_json::{json, Value};
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::Job;

use crate::helpers::{
    assert_problem, eventually, free_port, spawn_app, start, start_binary, test_settings, TestApp,
};

/// `n` more instances of `first`'s fleet: its database and Redis prefix.
/// (`first` removes the stores when dropped; declare it first, so it drops last.)
async fn more_instances(first: &TestApp, n: usize) -> Vec<TestApp> {
    let mut apps = Vec::with_capacity(n);
    for _ in 0..n {
        let mut app = start(first.settings.clone(), JobHandlers::new()).await;
        app.owns_database = false;
        apps.push(app);
    }
    apps
}

async fn cluster(app: &TestApp) -> Value {
    let response = app.get_ops("/ops/cluster").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn ids(cluster: &Value) -> HashSet<String> {
    cluster["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Wait until `app` lists exactly `expected`.
async fn lists(app: &TestApp, expected: &HashSet<String>) -> Value {
    eventually(
        Duration::from_secs(10),
        "the fleet to be listed",
        || async {
            let listed = cluster(app).await;
            (ids(&listed) == *expected).then_some(listed)
        },
    )
    .await
}

#[tokio::test]
async fn every_instance_lists_the_whole_fleet_with_itself_as_self() {
    let a = spawn_app().await;
    let others = more_instances(&a, 2).await;
    let apps: Vec<&TestApp> = std::iter::once(&a).chain(&others).collect();
    let expected: HashSet<String> = apps
        .iter()
        .map(|app| app.state.actors.instance.to_string())
        .collect();
    assert_eq!(expected.len(), 3, "three distinct instance ids");

    for app in &apps {
        let listed = lists(app, &expected).await;
        assert_eq!(listed["self"], app.state.actors.instance.as_ref());
        for instance in listed["instances"].as_array().unwrap() {
            assert_eq!(instance["version"], env!("CARGO_PKG_VERSION"));
            assert!(!instance["host"].as_str().unwrap().is_empty());
            for at in ["startedAt", "lastSeen"] {
                let text = instance[at].as_str().unwrap();
                chrono::DateTime::parse_from_rfc3339(text)
                    .unwrap_or_else(|e| panic!("{at} {text:?} is RFC 3339: {e}"));
            }
            let ttl = app.settings.fleet.heartbeat_ttl.as_millis() as u64;
            assert!(instance["ageMs"].as_u64().unwrap() <= ttl, "{instance}");
            assert_eq!(instance["pool"]["size"], app.settings.queue.executors);
            assert!(instance["jobs"].is_array());
        }
    }
    // Ready once its indexes exist: every instance, eventually.
    eventually(Duration::from_secs(10), "every instance ready", || async {
        let listed = cluster(&a).await;
        let instances = listed["instances"].as_array().unwrap().clone();
        instances.iter().all(|i| i["ready"] == true).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_cluster_routes_need_the_ops_token() {
    let app = spawn_app().await;
    for path in ["/ops/cluster", "/ops/cluster/anyone/actors"] {
        assert_problem(app.get(path).await, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn the_cluster_routes_are_documented() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api-json").await.json().await.unwrap();
    for path in ["/ops/cluster", "/ops/cluster/{instance}/actors"] {
        let get = &doc["paths"][path]["get"];
        assert_eq!(get["tags"], json!(["Ops"]), "{path}");
        assert!(get["responses"]["401"].is_object(), "{path}");
    }
    let schemas = &doc["components"]["schemas"];
    let instance = &schemas["InstanceView"]["properties"];
    for field in [
        "id",
        "host",
        "version",
        "startedAt",
        "lastSeen",
        "ageMs",
        "ready",
        "pool",
        "jobs",
    ] {
        assert!(instance[field].is_object(), "InstanceView.{field}");
    }
    assert!(schemas["ClusterView"]["properties"]["self"].is_object());
    let tree = &schemas["InstanceActors"]["properties"]["tree"];
    assert_eq!(tree["$ref"], "#/components/schemas/ActorNode", "{tree}");
}

#[tokio::test]
async fn an_instance_that_shuts_down_gracefully_leaves_the_fleet_at_once() {
    let a = spawn_app().await;
    let mut others = more_instances(&a, 2).await;
    let mut leaving = others.pop().unwrap();
    let gone = leaving.state.actors.instance.to_string();
    let all: HashSet<String> = [&a, &others[0], &leaving]
        .iter()
        .map(|app| app.state.actors.instance.to_string())
        .collect();
    lists(&a, &all).await;
    lists(&others[0], &all).await;

    // Its heartbeat would lapse by itself one TTL after its last beat (at
    // the earliest TTL - interval after shutdown begins); leaving must be
    // much faster than that.
    let fleet = &a.settings.fleet;
    let bound = (fleet.heartbeat_ttl - fleet.heartbeat_interval) / 2;
    let started = Instant::now();
    let left = async {
        eventually(Duration::from_secs(10), "the instance to leave", || async {
            (!ids(&cluster(&a).await).contains(&gone)).then(|| started.elapsed())
        })
        .await
    };
    let (stopped, took) = tokio::join!(leaving.stop(), left);
    stopped.unwrap();
    eprintln!("graceful shutdown → gone from /ops/cluster in {took:?} (bound {bound:?})");
    assert!(took < bound, "left after {took:?}; the bound is {bound:?}");
    assert!(!ids(&cluster(&others[0]).await).contains(&gone));

    // Nothing of it is left in Redis: no heartbeat, no member to take over.
    let mut redis = a.redis().await;
    let prefix = &a.settings.redis.key_prefix;
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{prefix}{{fleet}}:instances"))
        .arg(&gone)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(score, None, "its member of the instance set is gone");
    let keys: i64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}{{fleet}}:instance:{gone}"))
        .arg(format!("{prefix}{{fleet}}:tree:{gone}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys, 0, "its heartbeat and tree are gone");
}

fn child_names(tree: &Value) -> Vec<&str> {
    tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_instance_answers_another_instances_actor_tree() {
    let a = spawn_app().await;
    let b = more_instances(&a, 1).await.remove(0);
    let a_id = a.state.actors.instance.to_string();
    let own: Value = a.get_ops("/ops/actors").await.json().await.unwrap();

    let path = format!("/ops/cluster/{a_id}/actors");
    let answer: Value = eventually(Duration::from_secs(10), "A's published tree", || async {
        let response = b.get_ops(&path).await;
        (response.status() == StatusCode::OK).then_some(())?;
        response.json().await.ok()
    })
    .await;
    assert_eq!(answer["instance"], a_id.as_str());
    let tree = &answer["tree"];
    assert_eq!(tree["kind"], "RootSupervisor");
    assert_eq!(tree["id"], own["id"], "A's root supervisor, not B's");
    let b_own: Value = b.get_ops("/ops/actors").await.json().await.unwrap();
    assert_ne!(tree["id"], b_own["id"]);
    // The places A itself shows, in its order.
    assert_eq!(child_names(tree), child_names(&own));
    assert!(child_names(tree).contains(&"fleet"));
    let poller = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "queue-poller")
        .unwrap();
    assert_eq!(poller["pool"]["size"], a.settings.queue.executors);
    assert_eq!(
        poller["children"].as_array().unwrap().len(),
        a.settings.queue.executors
    );
    let interval = a.settings.fleet.heartbeat_interval.as_millis() as u64;
    let age = answer["snapshotAgeMs"].as_u64().unwrap();
    assert!(age <= interval * 5, "a recent snapshot: {age} ms");

    // Its own tree an instance answers live.
    let live: Value = a.get_ops(&path).await.json().await.unwrap();
    assert_eq!(live["snapshotAgeMs"], 0);
    assert_eq!(live["tree"]["id"], own["id"]);
}

#[tokio::test]
async fn an_unknown_instance_is_a_404_problem() {
    let app = spawn_app().await;
    let long = "x".repeat(300);
    for id in ["nobody-1-abcdef", long.as_str(), "%7Bfleet%7D"] {
        let response = app.get_ops(&format!("/ops/cluster/{id}/actors")).await;
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn a_restarted_fleet_actor_goes_on_heartbeating() {
    let app = spawn_app().await;
    let me: HashSet<String> = [app.state.actors.instance.to_string()].into();
    lists(&app, &me).await;
    let response = app
        .client
        .post(app.url("/ops/actors/fleet/fault"))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(
            &app.settings.ops.token,
        ))
        .json(&json!({"kind": "stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    eventually(
        Duration::from_secs(10),
        "the fleet actor restarted",
        || async {
            let node: Value = app.get_ops("/ops/actors/fleet").await.json().await.ok()?;
            (node["restarts"] == 1 && node["status"] == "running").then_some(())
        },
    )
    .await;
    let restarted = chrono::Utc::now();
    eventually(
        Duration::from_secs(10),
        "a heartbeat after the restart",
        || async {
            let listed = lists(&app, &me).await;
            let seen = listed["instances"][0]["lastSeen"].as_str()?.to_owned();
            let seen = chrono::DateTime::parse_from_rfc3339(&seen).ok()?;
            (seen > restarted).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn without_redis_the_registry_fails_open_counts_its_failures_and_shutdown_does_not_wait() {
    let mut app = crate::helpers::spawn_app_with(crate::helpers::unreachable_redis).await;
    let ready = app.get("/health/ready").await;
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "the registry is best-effort"
    );
    assert_problem(
        app.get_ops("/ops/cluster").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let other = format!("/ops/cluster/{}/actors", "someone-else-1-abcdef");
    assert_problem(app.get_ops(&other).await, StatusCode::SERVICE_UNAVAILABLE).await;
    // Its own tree needs no Redis.
    let own = format!("/ops/cluster/{}/actors", app.state.actors.instance);
    assert_eq!(app.get_ops(&own).await.status(), StatusCode::OK);
    // Every tick tries again; each failure is counted.
    eventually(
        Duration::from_secs(10),
        "heartbeat failures counted",
        || async {
            let text = app.get("/metrics").await.text().await.ok()?;
            let failures: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("troupe_fleet_heartbeat_failures_total "))?
                .parse()
                .ok()?;
            (failures >= 3.0).then_some(())
        },
    )
    .await;
    let fleet = app.state.actors.fleet.clone();
    assert_eq!(fleet.metrics().failovers.get(), 0);
    let started = Instant::now();
    app.stop().await.unwrap();
    let grace = app.settings.server.shutdown_grace;
    assert!(
        started.elapsed() < grace,
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// Leases of the killed binary: a job it holds comes back sooner only
/// through failover.
const VICTIM_LEASE: &str = "30s";

#[tokio::test]
async fn a_sigkilled_instances_jobs_complete_elsewhere_within_the_heartbeat_ttl() {
    use secrecy::ExposeSecret;
    let mut settings = test_settings();
    settings.queue.lease = Duration::from_secs(30);
    let (port, token) = (free_port(), settings.ops.token.expose_secret().to_owned());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut victim = start_binary(&settings, port, VICTIM_LEASE);
    let victim_id: String = eventually(Duration::from_secs(30), "the binary in the fleet", || {
        let request = client
            .get(format!("{base}/ops/cluster"))
            .bearer_auth(&token);
        async move {
            let listed: Value = request.send().await.ok()?.json().await.ok()?;
            let me = listed["self"].as_str()?.to_owned();
            ids(&listed).contains(&me).then_some(me)
        }
    })
    .await;

    // Every executor stalls on its next job (60 s), so the jobs it claims
    // stay `processing` under its 30 s leases until it dies.
    let executors = settings.queue.executors;
    for index in 0..executors {
        let response = client
            .post(format!("{base}/ops/actors/executor-{index}/fault"))
            .bearer_auth(&token)
            .json(&json!({"kind": "delay", "delayMs": 60_000}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let db = crate::helpers::observer(&settings).await;
    let jobs = db.collection::<Document>("jobs");
    let held: Vec<Job> = (0..executors)
        .map(|_| Job::new("noop", Document::new(), 5))
        .collect();
    db.collection::<Job>("jobs")
        .insert_many(&held)
        .await
        .unwrap();
    let processing = doc! {"status": "processing", "lockedBy": &victim_id};
    eventually(Duration::from_secs(10), "the victim to hold every job", || {
        let (jobs, filter) = (jobs.clone(), processing.clone());
        async move { (jobs.count_documents(filter).await.ok()? == executors as u64).then_some(()) }
    })
    .await;

    // The survivor joins the fleet while the victim holds them: it cannot
    // claim them (their leases run for 30 s).
    let survivor = start(settings.clone(), JobHandlers::new()).await;
    let both: HashSet<String> = [
        victim_id.clone(),
        survivor.state.actors.instance.to_string(),
    ]
    .into_iter()
    .collect();
    let listed = lists(&survivor, &both).await;
    let silent = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == victim_id.as_str())
        .map(|i| i["ageMs"].clone());

    victim.child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    victim.child.wait().unwrap();
    // When the first job is running elsewhere, and when all are done.
    let survivor_id = survivor.state.actors.instance.to_string();
    let moved = std::sync::OnceLock::new();
    let done = eventually(Duration::from_secs(25), "every job completed", || {
        let (jobs, survivor_id, moved) = (jobs.clone(), survivor_id.clone(), &moved);
        async move {
            let elsewhere = doc! {"lockedBy": &survivor_id};
            if moved.get().is_none() && jobs.count_documents(elsewhere).await.ok()? > 0 {
                let _ = moved.set(killed.elapsed());
            }
            let left = jobs
                .count_documents(doc! {"status": {"$ne": "completed"}})
                .await
                .ok()?;
            (left == 0).then(|| killed.elapsed())
        }
    })
    .await;
    let fleet = &settings.fleet;
    // Generous for a loaded machine; still far below the 30 s lease.
    let bound = fleet.heartbeat_ttl + fleet.heartbeat_interval + Duration::from_secs(4);
    eprintln!(
        "failover: SIGKILL (its last heartbeat {silent:?} ms before) → first job running elsewhere \
         after {:?}, all {executors} completed after {done:?} (bound {bound:?}, lease 30s)",
        moved.get()
    );
    assert!(done < bound, "took {done:?}; bound {bound:?}");

    // Each job completed exactly once, by the survivor; the victim's attempt
    // is recorded as crashed.
    for job in &held {
        let attempts: Vec<Document> = db
            .collection::<Document>("job_attempts")
            .find(doc! {"jobId": job.id})
            .sort(doc! {"attempt": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let summary: Vec<(&str, &str)> = attempts
            .iter()
            .map(|a| {
                (
                    a.get_str("instance").unwrap(),
                    a.get_str("outcome").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (victim_id.as_str(), "crashed"),
                (survivor_id.as_str(), "completed")
            ],
            "job {}",
            job.id
        );
    }
    let metrics = survivor.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("troupe_fleet_failovers_total 1\n"),
        "{metrics}"
    );
    let released = format!("troupe_fleet_jobs_released_total {executors}\n");
    assert!(metrics.contains(&released), "{metrics}");
    assert!(!ids(&cluster(&survivor).await).contains(&victim_id));
}
