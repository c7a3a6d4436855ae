//! `GET /metrics`: Prometheus (OpenMetrics text) metrics, with prometheus-client.
//!
//! Request counts and latencies, claim and execution times, MongoDB commands
//! are recorded as they happen; everything the actors already count (cache
//! hits, mailbox backlogs, restarts, events) is read at scrape time from
//! shared counters, so there is one source of truth per figure. The registry
//! belongs to the application (no global recorder), so several instances in
//! one process stay apart.
//!
//! A scrape only reads memory: it sends no message to any actor and no query
//! to a store. The job counts come from the poller's snapshot
//! ([`troupe_actors::queue::snapshot`]), whose age is exported with them.
//! With `ops.metrics_token` set, a scrape needs that bearer token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use troupe_actors::limits::LimitMetrics;
use troupe_actors::queue::metrics::QueueMetrics;
use troupe_actors::store::MongoCommands;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::MetricsScraper;
use super::error::Problem;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_errors: Counter,
    cache_loads: Counter,
    cache_degraded: Gauge,
    jobs: Family<NameLabel, Gauge>,
    queue_depth: Gauge,
    queue_snapshot_age: Gauge<f64, AtomicU64>,
    actor_restarts: Family<NameLabel, Gauge>,
    actor_backlog: Family<NameLabel, Gauge>,
    actor_handled: Family<NameLabel, Gauge>,
    events_published: Counter,
    events_by_kind: Family<NameLabel, Gauge>,
    events_dropped: Family<NameLabel, Gauge>,
    /// The last rendering and when it was made, served again for `reuse`.
    last: Mutex<Option<(Instant, Bytes)>>,
    reuse: Duration,
}

impl Metrics {
    /// `reuse`: how long one rendering serves later scrapes (`ops.metrics_reuse`).
    pub fn new(
        queue: &QueueMetrics,
        limits: &LimitMetrics,
        mongo_commands: &MongoCommands,
        reuse: Duration,
    ) -> Self {
        let mut registry = Registry::with_prefix("troupe");
        let m = Self {
            registry: Registry::default(), // replaced below, once everything is registered
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_errors: Counter::default(),
            cache_loads: Counter::default(),
            cache_degraded: Gauge::default(),
            jobs: Family::default(),
            queue_depth: Gauge::default(),
            queue_snapshot_age: Gauge::default(),
            actor_restarts: Family::default(),
            actor_backlog: Family::default(),
            actor_handled: Family::default(),
            events_published: Counter::default(),
            events_by_kind: Family::default(),
            events_dropped: Family::default(),
            last: Mutex::new(None),
            reuse,
        };
        let r = &mut registry;
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            m.http_duration.clone(),
        );
        r.register(
            "job_listing_duration_seconds",
            "Time to list claimable jobs (one per listing)",
            queue.listing_seconds.clone(),
        );
        r.register(
            "job_claim_duration_seconds",
            "Time to claim one job",
            queue.claim_seconds.clone(),
        );
        r.register(
            "job_execution_duration_seconds",
            "Time to run one job",
            queue.execution_seconds.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused (429) by a limit: login, signup, profile_lookup",
            limits.refused.clone(),
        );
        r.register(
            "rate_limit_unavailable",
            "Limit checks skipped (request served) because Redis failed",
            limits.unavailable.clone(),
        );
        r.register("cache_hits", "Profile cache hits", m.cache_hits.clone());
        r.register(
            "cache_misses",
            "Profile cache misses",
            m.cache_misses.clone(),
        );
        r.register(
            "cache_errors",
            "Redis commands that failed or timed out",
            m.cache_errors.clone(),
        );
        r.register(
            "cache_loads",
            "Profile loads from MongoDB",
            m.cache_loads.clone(),
        );
        r.register(
            "cache_degraded",
            "1 while Redis is unavailable",
            m.cache_degraded.clone(),
        );
        r.register("jobs", "Jobs by status", m.jobs.clone());
        r.register("queue_depth", "Pending jobs", m.queue_depth.clone());
        r.register(
            "queue_snapshot_age_seconds",
            "Age of the job counts shown here (+Inf before the first count)",
            m.queue_snapshot_age.clone(),
        );
        r.register(
            "mongodb_commands",
            "Commands sent to MongoDB, by command name (others: `other`)",
            mongo_commands.family(),
        );
        r.register(
            "actor_restarts",
            "Restarts by actor",
            m.actor_restarts.clone(),
        );
        r.register(
            "actor_mailbox_backlog",
            "Messages waiting, by actor",
            m.actor_backlog.clone(),
        );
        r.register(
            "actor_messages_handled",
            "Messages handled, by actor",
            m.actor_handled.clone(),
        );
        r.register(
            "events_published",
            "Domain events handed to the bus",
            m.events_published.clone(),
        );
        r.register(
            "events_by_kind",
            "Domain events seen, by kind",
            m.events_by_kind.clone(),
        );
        r.register(
            "events_dropped",
            "Events dropped for a full subscriber buffer",
            m.events_dropped.clone(),
        );
        Self { registry, ..m }
    }

    /// Record one HTTP request. Every label comes from a closed set, so the
    /// series stay bounded whatever clients send: `method` is a
    /// [`method_label`](super::bounded::method_label), `route` a matched
    /// route template or `unmatched`, `status` one of the statuses we answer.
    pub fn request(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.http_requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.clone(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { method, route })
            .observe(seconds);
    }
}

fn name(name: impl Into<String>) -> NameLabel {
    NameLabel { name: name.into() }
}

/// Prometheus metrics (OpenMetrics text format). Public unless
/// `ops.metrics_token` is set; then `Authorization: Bearer <metrics token>`.
#[utoipa::path(get, path = "/metrics", tag = "Ops", security((), ("metrics-token" = [])), responses(
    (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
    (status = 401, description = "`ops.metrics_token` is set and the request lacks it", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn metrics(State(state): State<AppState>, _scraper: MetricsScraper) -> impl IntoResponse {
    let body = match state.metrics.reusable() {
        Some(body) => body,
        None => render(&state),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Read every shared figure into the registry and encode it (and keep the
/// text for the scrapes of the next `ops.metrics_reuse`).
fn render(state: &AppState) -> Bytes {
    let m = &state.metrics;
    let actors = &state.actors;
    let cache = &actors.cache_stats;
    m.cache_hits
        .inner()
        .store(cache.hits.load(Ordering::Relaxed), Ordering::Relaxed);
    m.cache_misses
        .inner()
        .store(cache.misses.load(Ordering::Relaxed), Ordering::Relaxed);
    m.cache_errors
        .inner()
        .store(cache.errors.load(Ordering::Relaxed), Ordering::Relaxed);
    m.cache_loads
        .inner()
        .store(cache.loads.load(Ordering::Relaxed), Ordering::Relaxed);
    m.cache_degraded.set(i64::from(cache.degraded()));
    m.events_published
        .inner()
        .store(actors.events.published(), Ordering::Relaxed);
    for (kind, n) in actors.event_counts.snapshot() {
        m.events_by_kind.get_or_create(&name(kind)).set(n as i64);
    }
    for sub in actors.registry.stats() {
        m.events_dropped
            .get_or_create(&name(sub.name))
            .set(sub.dropped as i64);
    }
    m.record_actors(actors);
    m.record_queue(actors);
    let mut body = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut body, &m.registry) {
        tracing::error!(error = %err, "metrics encoding failed");
    }
    let body = Bytes::from(body);
    m.keep(body.clone());
    body
}

impl Metrics {
    /// The last rendering, if it is younger than `reuse`. A flood of scrapes
    /// then costs a copy of a reference each, not an encoding of every
    /// series (≈ 16 KB of text) each.
    fn reusable(&self) -> Option<Bytes> {
        let last = self.last.lock().expect("metrics lock");
        match &*last {
            Some((at, body)) if at.elapsed() < self.reuse => Some(body.clone()),
            _ => None,
        }
    }

    fn keep(&self, body: Bytes) {
        if !self.reuse.is_zero() {
            *self.last.lock().expect("metrics lock") = Some((Instant::now(), body));
        }
    }

    /// Restarts, backlogs and messages handled of every actor, from the
    /// counters they share (no message to the supervisor or the poller).
    fn record_actors(&self, actors: &troupe_actors::system::Handles) {
        for (actor, stats) in actors.all_stats() {
            let label = name(actor);
            self.actor_restarts
                .get_or_create(&label)
                .set(stats.restarts() as i64);
            self.actor_backlog
                .get_or_create(&label)
                .set(stats.backlog() as i64);
            self.actor_handled
                .get_or_create(&label)
                .set(stats.handled() as i64);
        }
    }

    /// Job counts from the poller's snapshot (and a request for fresh ones).
    fn record_queue(&self, actors: &troupe_actors::system::Handles) {
        let Some(snapshot) = actors.queue_snapshot.read() else {
            self.queue_snapshot_age.set(f64::INFINITY);
            return;
        };
        let counts = snapshot.counts;
        for (status, n) in [
            ("pending", counts.pending),
            ("processing", counts.processing),
            ("completed", counts.completed),
            ("failed", counts.failed),
        ] {
            self.jobs.get_or_create(&name(status)).set(n as i64);
        }
        self.queue_depth.set(counts.pending as i64);
        self.queue_snapshot_age.set(snapshot.age().as_secs_f64());
    }
}
