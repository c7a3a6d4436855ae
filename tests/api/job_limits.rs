//! Fleet-wide concurrency limits per job type (`/jobs/limits`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::{Method, Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use troupe_actors::queue::handlers::JobHandlers;

use crate::helpers::{
    assert_problem, eventually, executed, spawn_app_with_jobs, spawn_manual_app_with_jobs,
    three_instances, TestApp,
};

/// `method path` with the ops token (and a JSON body, if any).
async fn ops(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Response {
    let token = app.settings.ops.token.expose_secret();
    let request = app.client.request(method, app.url(path)).bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.expect("the request")
}

/// Have each of `apps` apply the one stored limit now rather than at its
/// next listing (within a second): `GET /jobs/limits` reads the stored
/// limits, and the instance answering applies what it read.
async fn applied_everywhere(apps: &[&TestApp]) {
    for app in apps {
        eventually(Duration::from_secs(10), "the limit everywhere", || async {
            let limits: Value = ops(app, Method::GET, "/jobs/limits", None)
                .await
                .json()
                .await
                .ok()?;
            (limits["limits"].as_array()?.len() == 1).then_some(())
        })
        .await;
    }
}

/// What a handler of a limited type sees: how many run now, the most ever.
#[derive(Default)]
struct Running {
    now: AtomicUsize,
    most: AtomicUsize,
    /// Per partition value: (now, most).
    by_tenant: Mutex<std::collections::HashMap<String, (usize, usize)>>,
}

impl Running {
    fn enter(&self, tenant: Option<&str>) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        if let Some(tenant) = tenant {
            let mut map = self.by_tenant.lock().unwrap();
            let entry = map.entry(tenant.to_owned()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(entry.0);
        }
    }

    fn leave(&self, tenant: Option<&str>) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        if let Some(tenant) = tenant {
            self.by_tenant.lock().unwrap().get_mut(tenant).unwrap().0 -= 1;
        }
    }
}

/// `test.limited` (takes `work`, counted in `running`) and `test.free`.
fn handlers(running: &Arc<Running>, work: Duration) -> JobHandlers {
    let running = Arc::clone(running);
    JobHandlers::new()
        .with("test.limited", move |job| {
            let running = Arc::clone(&running);
            async move {
                let tenant = job.payload.get_str("tenant").ok().map(str::to_owned);
                running.enter(tenant.as_deref());
                tokio::time::sleep(work).await; // the job's work
                running.leave(tenant.as_deref());
                Ok(Document::new())
            }
        })
        .with("test.free", |_job| async { Ok(Document::new()) })
}

#[tokio::test]
async fn limits_are_set_listed_and_removed_by_operators_only() {
    let running = Arc::new(Running::default());
    let app = spawn_app_with_jobs(|_| {}, handlers(&running, Duration::ZERO)).await;
    let body = json!({"concurrency": 2, "partitionBy": "tenant"});

    let anonymous = app
        .client
        .put(app.url("/jobs/limits/test.limited"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;

    let field_errors = |problem: &Value| -> Vec<String> {
        (problem["errors"].as_array().unwrap().iter())
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let bad = json!({"concurrency": 0, "partitionBy": "a.b", "rate": 1, "burst": 2});
    let refused = ops(&app, Method::PUT, "/jobs/limits/test.limited", Some(bad)).await;
    let problem = assert_problem(refused, StatusCode::BAD_REQUEST).await;
    let want = ["concurrency", "rate", "partitionBy", "burst"];
    assert_eq!(field_errors(&problem), want, "{problem}");
    let bad_rate = json!({"rate": {"limit": 0, "period": "1ms", "x": 1}});
    let refused = ops(
        &app,
        Method::PUT,
        "/jobs/limits/test.limited",
        Some(bad_rate),
    )
    .await;
    let problem = assert_problem(refused, StatusCode::BAD_REQUEST).await;
    let want = ["rate.limit", "rate.period", "rate.x"];
    assert_eq!(field_errors(&problem), want, "{problem}");
    let empty = ops(
        &app,
        Method::PUT,
        "/jobs/limits/test.limited",
        Some(json!({})),
    )
    .await;
    let problem = assert_problem(empty, StatusCode::BAD_REQUEST).await;
    assert_eq!(field_errors(&problem), ["concurrency"], "{problem}");

    let unknown = ops(
        &app,
        Method::PUT,
        "/jobs/limits/no.such",
        Some(body.clone()),
    )
    .await;
    let problem = assert_problem(unknown, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"][0]["field"], "type", "{problem}");

    let set = ops(&app, Method::PUT, "/jobs/limits/test.limited", Some(body)).await;
    assert_eq!(set.status(), StatusCode::OK);
    let want = json!({"limits": [
        {"type": "test.limited", "concurrency": 2, "partitionBy": "tenant", "source": "stored"}
    ]});
    assert_eq!(set.json::<Value>().await.unwrap(), want);
    let listed = ops(&app, Method::GET, "/jobs/limits", None).await;
    assert_eq!(listed.json::<Value>().await.unwrap(), want);

    let removed = ops(&app, Method::DELETE, "/jobs/limits/test.limited", None).await;
    assert_eq!(
        removed.json::<Value>().await.unwrap(),
        json!({"limits": []})
    );
    let again = ops(&app, Method::DELETE, "/jobs/limits/test.limited", None).await;
    assert_problem(again, StatusCode::NOT_FOUND).await;
}

/// Wait until `n` jobs of `kind` are completed (one store read per poll).
async fn completed(app: &TestApp, kind: &str) -> u64 {
    let jobs = app.db.collection::<Document>("jobs");
    let filter = doc! { "type": kind, "status": "completed" };
    jobs.count_documents(filter).await.unwrap()
}

#[tokio::test]
async fn three_instances_never_run_more_than_the_limit_while_free_jobs_flow() {
    const LIMIT: usize = 2;
    const LIMITED: u64 = 200;
    const FREE: u64 = 100;
    let running = Arc::new(Running::default());
    let [a, b, c] = three_instances(|_| {}, handlers(&running, Duration::from_millis(25))).await;
    let limit = json!({ "concurrency": LIMIT });
    let set = ops(&a, Method::PUT, "/jobs/limits/test.limited", Some(limit)).await;
    assert_eq!(set.status(), StatusCode::OK);

    applied_everywhere(&[&b, &c]).await;
    let jobs = a.jobs();
    let limited = (0..LIMITED).map(|_| jobs.enqueue("test.limited", Document::new()));
    join_all(limited).await.into_iter().for_each(|r| {
        r.unwrap();
    });
    let free = (0..FREE).map(|_| jobs.enqueue("test.free", Document::new()));
    join_all(free).await.into_iter().for_each(|r| {
        r.unwrap();
    });

    // Sample the running count every 20 ms until the limited jobs are done;
    // note how many limited jobs were done when the free ones all were.
    let mut limited_when_free_done = None;
    let mut samples = 0;
    for app in [&a, &b, &c] {
        app.nudge();
    }
    tokio::time::timeout(Duration::from_secs(240), async {
        loop {
            assert!(
                running.now.load(Ordering::SeqCst) <= LIMIT,
                "more than the limit running"
            );
            samples += 1;
            if limited_when_free_done.is_none() && completed(&a, "test.free").await == FREE {
                limited_when_free_done = Some(completed(&a, "test.limited").await);
            }
            if completed(&a, "test.limited").await == LIMITED {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // the sampling period
        }
    })
    .await
    .expect("every limited job to complete within 240 s");

    assert!(samples > 10, "sampled while they ran ({samples})");
    assert_eq!(
        running.most.load(Ordering::SeqCst),
        LIMIT,
        "the limit was reached, never passed"
    );
    let done = limited_when_free_done.expect("the free jobs completed");
    assert!(
        done < LIMITED,
        "the free jobs did not wait for the limited ones ({done} done)"
    );
    let tokens = a.db.collection::<Document>("queue_tokens");
    eventually(
        Duration::from_secs(10),
        "every token given back",
        || async { (tokens.count_documents(doc! {}).await.ok()? == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_partitioned_limit_holds_for_each_value_apart() {
    let running = Arc::new(Running::default());
    let app = spawn_app_with_jobs(
        |s| s.queue.executors = 6,
        handlers(&running, Duration::from_millis(25)),
    )
    .await;
    let limit = json!({ "concurrency": 1, "partitionBy": "tenant" });
    let set = ops(&app, Method::PUT, "/jobs/limits/test.limited", Some(limit)).await;
    assert_eq!(set.status(), StatusCode::OK);
    let jobs = app.jobs();
    let enqueues = (0..30).map(|i| {
        let tenant = ["a", "b", "c"][i % 3];
        jobs.enqueue("test.limited", doc! { "tenant": tenant })
    });
    join_all(enqueues).await.into_iter().for_each(|r| {
        r.unwrap();
    });
    app.nudge();
    app.wait_for_jobs(
        doc! {"type": "test.limited"},
        "completed",
        30,
        Duration::from_secs(120),
    )
    .await;

    let by_tenant = running.by_tenant.lock().unwrap().clone();
    for tenant in ["a", "b", "c"] {
        assert_eq!(by_tenant[tenant].1, 1, "tenant {tenant}: one at a time");
    }
    let most = running.most.load(Ordering::SeqCst);
    assert!(
        most > 1,
        "tenants ran side by side (at most {most} at once)"
    );
}

#[tokio::test]
async fn a_dead_instances_token_frees_only_once_its_lease_ran_out() {
    use troupe_actors::queue::job::JobStatus;
    use troupe_actors::queue::worker::Polled;

    let running = Arc::new(Running::default());
    let app = spawn_manual_app_with_jobs(|_| {}, handlers(&running, Duration::ZERO)).await;
    let limit = json!({ "concurrency": 1 });
    let set = ops(&app, Method::PUT, "/jobs/limits/test.limited", Some(limit)).await;
    assert_eq!(set.status(), StatusCode::OK);
    // An instance that died while running a limited job left its token,
    // leased for 10 more seconds.
    let clock = app.settings.queue.clock.clone();
    let tokens = app.db.collection::<Document>("queue_tokens");
    let dead = doc! {
        "_id": "test.limited#0", "group": "test.limited", "type": "test.limited",
        "job": mongodb::bson::oid::ObjectId::new(), "attempt": 1, "instance": "dead",
        "lockedUntil": clock.after(Duration::from_secs(10)),
    };
    tokens.insert_one(dead).await.unwrap();
    let id = app.jobs().enqueue("test.limited", doc! {}).await.unwrap();

    assert_eq!(
        app.run_one_job().await,
        Polled::Empty,
        "held back while the lease runs"
    );
    app.advance_clock(Duration::from_secs(11));
    assert_eq!(app.run_one_job().await, executed(id, JobStatus::Completed));
    assert_eq!(running.most.load(Ordering::SeqCst), 1);
    let left = tokens.count_documents(doc! {}).await.unwrap();
    assert_eq!(
        left, 0,
        "the dead token was replaced, and the new one given back"
    );
}

/// Handlers of `test.rated`, which do nothing.
fn rated() -> JobHandlers {
    JobHandlers::new().with("test.rated", |_job| async { Ok(Document::new()) })
}

/// A rate token as seen in `queue_tokens`: who took it (job, attempt,
/// instance) and until when it is held.
type Taken = (ObjectId, i32, String, i64);

/// Every rate token in `queue_tokens` now, added to `seen`. A won rate token
/// stays in the collection for its whole period (it expires rather than being
/// given back, and only a later take replaces it), so reading every 20 ms sees
/// each one.
async fn note_rate_tokens(app: &TestApp, seen: &mut BTreeSet<Taken>) {
    let tokens = app.db.collection::<Document>("queue_tokens");
    let Ok(cursor) = tokens.find(doc! { "rate": true }).await else {
        return;
    };
    let Ok(found) = cursor.try_collect::<Vec<_>>().await else {
        return;
    };
    for token in found {
        let taken = (|| {
            let until = token.get_datetime("lockedUntil").ok()?.timestamp_millis();
            let job = token.get_object_id("job").ok()?;
            let instance = token.get_str("instance").ok()?.to_owned();
            Some((job, token.get_i32("attempt").ok()?, instance, until))
        })();
        seen.extend(taken);
    }
}

/// The rate tests' period. A won token stays in `queue_tokens` for this
/// long, so the watch below sees it unless one of its reads stalls for the
/// whole period: under a full test suite on a busy store, reads have
/// stalled for over a second (a 1 s period lost a token that way).
const RATE_PERIOD: Duration = Duration::from_secs(3);

/// Set a rate of `limit` per [`RATE_PERIOD`] on `test.rated` through `apps[0]`, wait
/// until every app applies it, enqueue `jobs` and wait for them, watching the
/// rate tokens meanwhile; when each started job's rate token was taken (in
/// the store's milliseconds), in order.
async fn rated_run(apps: &[&TestApp], (limit, jobs): (usize, usize)) -> Vec<i64> {
    let period = humantime::format_duration(RATE_PERIOD).to_string();
    let body = json!({ "rate": { "limit": limit, "period": period } });
    let set = ops(apps[0], Method::PUT, "/jobs/limits/test.rated", Some(body)).await;
    let shown: Value = set.json().await.unwrap();
    assert_eq!(
        shown["limits"][0]["rate"],
        json!({"limit": limit, "period": period})
    );
    applied_everywhere(&apps[1..]).await;
    // The watch starts before the first enqueue: the instances take tokens
    // as the jobs arrive, and a slow enqueue must not outlast the first
    // tokens' period (a token taken again replaces the one before it).
    let mut seen = BTreeSet::new();
    let run = async {
        let queue = apps[0].jobs();
        join_all((0..jobs).map(|_| queue.enqueue("test.rated", Document::new())))
            .await
            .into_iter()
            .for_each(|r| {
                r.unwrap();
            });
        for app in apps {
            app.nudge();
        }
        let filter = doc! {"type": "test.rated"};
        (apps[0].wait_for_jobs(filter, "completed", jobs as u64, Duration::from_secs(90))).await;
    };
    let watch = async {
        loop {
            note_rate_tokens(apps[0], &mut seen).await;
            tokio::time::sleep(Duration::from_millis(20)).await; // the sampling period
        }
    };
    tokio::select! {
        () = run => {}
        () = watch => unreachable!("the watch never ends"),
    }
    note_rate_tokens(apps[0], &mut seen).await;
    started_takes(apps[0], &seen, jobs).await
}

/// The take times of the rate tokens in `seen` that an attempt started with:
/// a token taken for an attempt another instance won was given back, and
/// counts for nothing. Asserts each of the `jobs` attempts had one.
async fn started_takes(app: &TestApp, seen: &BTreeSet<Taken>, jobs: usize) -> Vec<i64> {
    let attempts: Vec<Document> = (app.db.collection::<Document>("job_attempts"))
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        attempts.len(),
        jobs,
        "each ran once (none failed for the limit)"
    );
    let period = RATE_PERIOD.as_millis() as i64;
    let mut takes: Vec<i64> = attempts
        .iter()
        .map(|attempt| {
            let (job, number) = (attempt.get_object_id("jobId"), attempt.get_i32("attempt"));
            let instance = attempt.get_str("instance").unwrap();
            // The last one it took: any earlier take went back unused.
            let until = (seen.iter())
                .filter(|(j, a, i, _)| Ok(*j) == job && Ok(*a) == number && i == instance)
                .map(|taken| taken.3)
                .max();
            until.unwrap_or_else(|| panic!("no rate token seen for {attempt}")) - period
        })
        .collect();
    takes.sort_unstable();
    takes
}

/// No `limit + 1` takes within one period: takes `limit` apart are at least
/// a period apart, exactly (a token is free again only once its period has
/// run out, on the same clock that stamped it).
fn assert_rate(takes: &[i64], limit: usize, period: Duration) {
    let period = period.as_millis() as i64;
    for (i, later) in takes.iter().enumerate().skip(limit) {
        let apart = later - takes[i - limit];
        assert!(
            apart >= period,
            "take {i} came {apart} ms after take {}",
            i - limit
        );
    }
}

#[tokio::test]
async fn a_rate_limit_lets_jobs_wait_and_start_no_faster_than_it_says() {
    let app = spawn_app_with_jobs(|_| {}, rated()).await;
    let takes = rated_run(&[&app], (3, 10)).await;
    assert_rate(&takes, 3, RATE_PERIOD);
}

#[tokio::test]
async fn three_instances_together_start_no_faster_than_the_rate() {
    let [a, b, c] = three_instances(|_| {}, rated()).await;
    let takes = rated_run(&[&a, &b, &c], (4, 13)).await;
    assert_rate(&takes, 4, RATE_PERIOD);
}
