//! `spawn_app()`: a ready Troupe on port 0 against the real MongoDB and Redis,
//! with its own database and Redis key prefix, removed again on drop.
//!
//! Each app runs on a runtime of its own, in a thread of its own, as a
//! process would: the test talks to it over HTTP and reads the stores with a
//! client of its own. Dropping a `TestApp` shuts the app down gracefully and
//! waits for `Application::run` to return; from then on nothing of the app
//! writes to the stores, so its database is dropped once and stays gone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use mongodb::Database;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use troupe::config::Settings;
use troupe::Application;
use troupe_actors::queue::clock::Clock;
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::JobStatus;
use troupe_actors::queue::worker::Polled;

/// Where the test binary's log files go (one global subscriber per process).
pub fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("logs")
}

fn init_telemetry() {
    static GUARD: OnceLock<troupe::telemetry::TelemetryGuard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let export = troupe::telemetry::no_export();
        troupe::telemetry::init(
            "info,troupe=debug,troupe_actors=debug",
            &log_dir(),
            false,
            &export,
        )
        .expect("telemetry")
    });
}

/// The environment a test app is configured from: the test profile plus the
/// service addresses `scripts/test` exported (`REDIS_CLUSTER_URLS` set: the
/// apps use that Redis Cluster instead of `REDIS_URL`).
pub fn test_env() -> HashMap<String, String> {
    let mut env = HashMap::from([("TROUPE_ENV".to_string(), "test".to_string())]);
    for var in ["MONGODB_URI", "REDIS_URL", "REDIS_CLUSTER_URLS"] {
        if let Ok(value) = std::env::var(var) {
            env.insert(var.into(), value);
        }
    }
    env
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Test settings with a fresh database and key prefix.
pub fn test_settings() -> Settings {
    let mut settings = Settings::load_from(&config_dir(), &test_env()).expect("test settings");
    let id = uuid::Uuid::new_v4().simple().to_string();
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.mongodb.database = format!("troupe_test_{}", &id[..16]);
    settings.redis.key_prefix = format!("troupe-test:{}:", &id[..16]);
    settings.log.dir = log_dir();
    settings.mail.outbox_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("outbox")
        .join(&settings.mongodb.database);
    settings
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub db: Database,
    /// The running application's shared state (actor slots, counters).
    pub state: troupe::state::AppState,
    /// Whether dropping this app removes its database and keys (false for
    /// extra instances sharing another app's database).
    pub owns_database: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// What `Application::run` returned, once it has.
    stopped: Option<tokio::sync::oneshot::Receiver<std::io::Result<()>>>,
    /// The app's thread (its runtime ends with it).
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery";

/// A token pair as the API answers it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

/// A unique e-mail address for one test.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the settings adjusted first.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_jobs(customize, JobHandlers::new()).await
}

/// Like [`spawn_app_with`], with extra job handlers.
pub async fn spawn_app_with_jobs(
    customize: impl FnOnce(&mut Settings),
    jobs: JobHandlers,
) -> TestApp {
    let mut settings = test_settings();
    customize(&mut settings);
    start(settings, jobs).await
}

/// An app whose poller claims nothing and whose queue runs on a manual
/// clock: the test runs its jobs with [`TestApp::run_jobs_until_idle`] and
/// moves time with [`TestApp::advance_clock`]; nothing waits.
pub async fn spawn_manual_app_with_jobs(
    customize: impl FnOnce(&mut Settings),
    jobs: JobHandlers,
) -> TestApp {
    spawn_app_with_jobs(
        |s| {
            s.queue.poller_claims = false;
            s.queue.clock = Clock::manual_from_now();
            customize(s);
        },
        jobs,
    )
    .await
}

/// What the worker answers for an attempt of job `id` that left it `status`.
pub fn executed(id: mongodb::bson::oid::ObjectId, status: JobStatus) -> Polled {
    Polled::Executed {
        id: id.into(),
        status: Some(status),
    }
}

/// Whether the worker ran an attempt that completed its job.
pub fn completed(polled: &Polled) -> bool {
    matches!(
        polled,
        Polled::Executed {
            status: Some(JobStatus::Completed),
            ..
        }
    )
}

/// Three instances on one database and one Redis prefix (the first owns
/// them), each with `jobs`.
pub async fn three_instances(
    customize: impl FnOnce(&mut Settings),
    jobs: JobHandlers,
) -> [TestApp; 3] {
    let a = spawn_app_with_jobs(customize, jobs.clone()).await;
    let mut b = start(a.settings.clone(), jobs.clone()).await;
    let mut c = start(a.settings.clone(), jobs).await;
    b.owns_database = false;
    c.owns_database = false;
    [a, b, c]
}

/// Start an app with exactly these settings (e.g. another instance on the
/// same database), on a runtime and a thread of its own.
pub async fn start(settings: Settings, jobs: JobHandlers) -> TestApp {
    init_telemetry();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let app_settings = settings.clone();
    let thread = std::thread::Builder::new()
        .name("troupe-test-app".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the app's runtime");
            runtime.block_on(async move {
                let app = Application::build_with_jobs(app_settings, jobs)
                    .await
                    .expect("app builds");
                let _ = ready_tx.send((app.port(), app.state().clone()));
                let stopped = app.run(async {
                    let _ = shutdown_rx.await;
                });
                let _ = stopped_tx.send(stopped.await);
            });
        })
        .expect("the app's thread");
    let (port, state) = ready_rx
        .await
        .expect("the app started (see its panic above)");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        db: observer(&settings).await,
        settings,
        state,
        owns_database: true,
        shutdown: Some(shutdown_tx),
        stopped: Some(stopped_rx),
        thread: Some(thread),
    }
}

/// The test's own connection to the app's database (it outlives the app).
pub async fn observer(settings: &Settings) -> Database {
    use secrecy::ExposeSecret;
    let mut options = mongodb::options::ClientOptions::parse(settings.mongodb.uri.expose_secret())
        .await
        .expect("MongoDB URI");
    options.server_selection_timeout = Some(settings.mongodb.timeout);
    mongodb::Client::with_options(options)
        .expect("MongoDB client")
        .database(&settings.mongodb.database)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Sign up a user with `email`; panics unless 201. Returns the token pair.
    pub async fn signup(&self, email: &str) -> Tokens {
        let response = self
            .post_json(
                "/users/signup",
                &serde_json::json!({"name": "Test User", "email": email, "password": PASSWORD, "age": 30}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "signup of {email}");
        response.json().await.expect("token pair")
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/users/login",
            &serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    /// Log in as a client at `client`, forwarded by a proxy on 127.0.0.1
    /// (`X-Forwarded-For`; believed only if 127.0.0.1 is a trusted proxy).
    pub async fn login_from(&self, client: &str, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/users/login"))
            .header("x-forwarded-for", client)
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .expect("request")
    }

    /// Sign up `email` as a client at `client` (see [`Self::login_from`]).
    pub async fn signup_from(&self, client: &str, email: &str) -> Response {
        self.client
            .post(self.url("/users/signup"))
            .header("x-forwarded-for", client)
            .json(&serde_json::json!({"name": "Test User", "email": email, "password": PASSWORD, "age": 30}))
            .send()
            .await
            .expect("request")
    }

    /// `GET path` as a client at `client` (see [`Self::login_from`]).
    pub async fn get_from(&self, client: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("x-forwarded-for", client)
            .send()
            .await
            .expect("request")
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_bearer("/users/refresh", refresh_token).await
    }

    /// A direct connection to the app's Redis (server or cluster), for
    /// inspecting keys.
    pub async fn redis(&self) -> impl redis::aio::ConnectionLike + Send {
        redis_of(&self.settings).await.expect("redis connection")
    }

    /// The id of the user `access_token` belongs to, via `/users/profile`.
    pub async fn user_id(&self, access_token: &str) -> String {
        let profile: Value = self
            .get_bearer("/users/profile", access_token)
            .await
            .json()
            .await
            .unwrap();
        profile["id"].as_str().unwrap().to_string()
    }

    /// `GET` with the ops token.
    pub async fn get_ops(&self, path: &str) -> Response {
        use secrecy::ExposeSecret;
        self.get_bearer(path, self.settings.ops.token.expose_secret())
            .await
    }

    /// `POST` with the ops token.
    /// The ids `GET /jobs?{query}` lists (one page).
    pub async fn listed_job_ids(&self, query: &str) -> Vec<String> {
        let page: Value = self
            .get_ops(&format!("/jobs?{query}"))
            .await
            .json()
            .await
            .unwrap();
        page["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("a page of jobs: {page}"))
            .iter()
            .filter_map(|job| job["id"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn post_ops(&self, path: &str) -> Response {
        use secrecy::ExposeSecret;
        self.post_bearer(path, self.settings.ops.token.expose_secret())
            .await
    }

    /// The app's job store (to enqueue or inspect jobs directly).
    pub fn jobs(&self) -> troupe_actors::queue::store::JobStore {
        troupe_actors::queue::store::JobStore::new(
            &self.db,
            "test",
            self.settings.queue.max_attempts,
        )
        .with_clock(self.settings.queue.clock.clone())
    }

    /// Run the app's due jobs, one at a time, until none is due (at most
    /// 1000): what each run came to. For apps from [`spawn_manual_app_with_jobs`].
    pub async fn run_jobs_until_idle(&self) -> Vec<Polled> {
        self.state
            .actors
            .worker
            .run_until_idle(1000)
            .await
            .expect("the queue's store answers")
    }

    /// Claim and run one due job, if any.
    pub async fn run_one_job(&self) -> Polled {
        self.state
            .actors
            .worker
            .try_execute_job()
            .await
            .expect("the queue's store answers")
    }

    /// Move the queue's manual clock forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.settings.queue.clock.advance(by);
    }

    /// The `JobCompleted` events this instance publishes from now on (16 kept).
    pub fn completions(
        &self,
    ) -> tokio::sync::mpsc::Receiver<std::sync::Arc<troupe_actors::events::Published>> {
        use troupe_actors::events::{EventKind, Filter};
        self.state.actors.registry.subscribe_channel(
            "test",
            Filter::local().kinds(&[EventKind::JobCompleted]),
            16,
        )
    }

    /// Wake the app's poller (as its own enqueues do).
    pub fn nudge(&self) {
        self.state.actors.queue.nudge();
    }

    /// `GET /jobs/{id}`: the job with its history (200 expected).
    pub async fn job(&self, id: mongodb::bson::oid::ObjectId) -> Value {
        let response = self.get_ops(&format!("/jobs/{id}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Wait until job `id` has `status` (within `deadline`); then the job.
    pub async fn wait_for_job(
        &self,
        id: mongodb::bson::oid::ObjectId,
        status: &str,
        deadline: Duration,
    ) -> Value {
        self.wait_for_jobs(mongodb::bson::doc! {"_id": id}, status, 1, deadline)
            .await;
        self.job(id).await
    }

    /// Wait until `n` jobs matching `filter` have `status`.
    pub async fn wait_for_jobs(
        &self,
        filter: mongodb::bson::Document,
        status: &str,
        n: u64,
        deadline: Duration,
    ) {
        let jobs = self.db.collection::<mongodb::bson::Document>("jobs");
        let mut filter = filter;
        filter.insert("status", status);
        let what = format!("{n} jobs {status} matching {filter}");
        eventually(deadline, &what, || {
            let (jobs, filter) = (jobs.clone(), filter.clone());
            async move { (jobs.count_documents(filter).await.ok()? >= n).then_some(()) }
        })
        .await;
    }

    /// Stop serving (graceful shutdown) and wait for `run` to return.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.stopped.take() {
            Some(stopped) => stopped.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    /// Shut the app down, then remove this test's database and Redis keys.
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // The app runs on its own thread and runtime, so waiting here does
        // not starve it. Once its thread has ended, `run` has returned and
        // the runtime is gone: nothing of the app writes to the stores any
        // more, and the database, dropped once, stays gone.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if !self.owns_database {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.settings.mail.outbox_dir);
        let settings = self.settings.clone();
        // The test's own clients belong to its runtime, which is busy here:
        // clean up from a thread and runtime of their own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(remove_stores(&settings));
        })
        .join();
    }
}

/// A connection of the test's own to the Redis `settings` name: the server
/// at `redis.url`, or the cluster of `redis.cluster_urls`.
async fn redis_of(
    settings: &Settings,
) -> Result<impl redis::aio::ConnectionLike + Send, troupe_actors::store::StoreError> {
    settings.redis.store()?.dedicated().await
}

/// Point `settings` at a Redis that does not answer (a port nothing listens
/// on), as a server or, when the tests run against a cluster, as its seed.
pub fn unreachable_redis(settings: &mut Settings) {
    let nowhere = "redis://127.0.0.1:1".to_string();
    settings.redis.url = nowhere.clone().into();
    if !settings.redis.cluster_urls.is_empty() {
        settings.redis.cluster_urls = vec![nowhere.into()];
    }
}

/// Drop the test's database and delete its Redis keys. On a cluster, the
/// client sends `KEYS` to every master and merges the answers, and splits
/// the `DEL` by slot.
pub async fn remove_stores(settings: &Settings) {
    let _ = observer(settings).await.drop().await;
    if let Ok(mut conn) = redis_of(settings).await {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", settings.redis.key_prefix))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
}

/// Assert the response is problem+json with `status`, and return the body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["type"].is_string() && body["detail"].is_string());
    body
}

/// The field names of a JSON object, sorted.
pub fn field_names(object: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = object
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Assert `profile` has exactly the public profile's fields: no e-mail, no
/// age, no hash, no verifier.
pub fn assert_public_profile_fields(profile: &Value) {
    assert_eq!(field_names(profile), ["createdAt", "id", "name"]);
}

/// Assert `profile` has exactly the owner's view's fields (no hash, no verifier).
pub fn assert_owner_profile_fields(profile: &Value) {
    assert_eq!(
        field_names(profile),
        ["age", "createdAt", "email", "emailVerified", "id", "name"]
    );
}

/// The `Retry-After` of a response, in seconds.
pub fn retry_after(response: &Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every document of `collection` matching `filter`, as stored.
pub async fn find_documents(
    db: &Database,
    collection: &str,
    filter: mongodb::bson::Document,
) -> Vec<mongodb::bson::Document> {
    use futures::TryStreamExt;
    db.collection::<mongodb::bson::Document>(collection)
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Wait until no job in `db` is anything but `completed`.
pub async fn all_jobs_completed(db: &Database, deadline: Duration) {
    let jobs = db.collection::<mongodb::bson::Document>("jobs");
    eventually(deadline, "every job to complete", || {
        let jobs = jobs.clone();
        async move {
            let left = jobs
                .count_documents(mongodb::bson::doc! {"status": {"$ne": "completed"}})
                .await
                .ok()?;
            (left == 0).then_some(())
        }
    })
    .await;
}

/// Poll `check` until it returns `Some`, or panic after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The real `troupe` binary, killed (and waited for) when dropped.
pub struct Process {
    pub child: std::process::Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Until the binary at `base` answers ready (at most 30 s).
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    eventually(
        Duration::from_secs(30),
        "the binary to be ready",
        || async move {
            let response = client
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .ok()?;
            (response.status() == reqwest::StatusCode::OK).then_some(())
        },
    )
    .await;
}

/// Start the real binary on `port` with `settings`' stores, prefix, log
/// and outbox directories, and job leases of `lease` (a humantime string).
pub fn start_binary(settings: &Settings, port: u16, lease: &str) -> Process {
    let child = binary_command(settings, port, lease)
        .spawn()
        .expect("start the troupe binary");
    Process { child }
}

/// [`start_binary`]'s command, for a test that adds settings of its own.
pub fn binary_command(settings: &Settings, port: u16, lease: &str) -> std::process::Command {
    use secrecy::ExposeSecret;
    use std::process::{Command, Stdio};
    let mut command = Command::new(env!("CARGO_BIN_EXE_troupe"));
    command
        .env("TROUPE_CONFIG_DIR", config_dir())
        .env("TROUPE_ENV", "test")
        .env("PORT", port.to_string())
        .env("MONGODB_URI", settings.mongodb.uri.expose_secret())
        .env("MONGODB_DB", &settings.mongodb.database)
        .env("REDIS_URL", settings.redis.url.expose_secret())
        .env("REDIS_KEY_PREFIX", &settings.redis.key_prefix)
        .env("LOG_DIR", &settings.log.dir)
        .env("TROUPE__MAIL__OUTBOX_DIR", &settings.mail.outbox_dir)
        .env("TROUPE__QUEUE__LEASE", lease)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
