//! `GET /metrics`: Prometheus (OpenMetrics text) metrics, with prometheus-client.
//!
//! Request counts and latencies, claim and execution times are recorded as
//! they happen; everything the actors already count (cache hits, mailbox
//! backlogs, restarts, events, job counts) is read at scrape time, so there is
//! one source of truth per figure. The registry belongs to the application
//! (no global recorder), so several instances in one process stay apart.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use troupe_actors::executor::QueueMetrics;
use troupe_actors::limits::LimitMetrics;
use troupe_actors::poller::PollerMsg;
use troupe_actors::supervisor::SupervisorMsg;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    actor_restarts: Family<NameLabel, Gauge>,
    actor_backlog: Family<NameLabel, Gauge>,
    actor_handled: Family<NameLabel, Gauge>,
    events_published: Counter,
    events_by_kind: Family<NameLabel, Gauge>,
    events_dropped: Family<NameLabel, Gauge>,
}

impl Metrics {
    pub fn new(queue: &QueueMetrics, limits: &LimitMetrics) -> Self {
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
            actor_restarts: Family::default(),
            actor_backlog: Family::default(),
            actor_handled: Family::default(),
            events_published: Counter::default(),
            events_by_kind: Family::default(),
            events_dropped: Family::default(),
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

/// Prometheus metrics (OpenMetrics text format).
#[utoipa::path(get, path = "/metrics", tag = "Ops", responses(
    (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
))]
#[tracing::instrument(skip_all)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
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
    let timeout = state.call_timeout();
    if let Ok(children) = ractor::call_t!(
        state.supervisor,
        SupervisorMsg::Children,
        timeout.as_millis() as u64
    ) {
        for child in children {
            m.actor_restarts
                .get_or_create(&name(child.name))
                .set(child.restarts as i64);
            m.actor_backlog
                .get_or_create(&name(child.name))
                .set(child.mailbox_backlog as i64);
            m.actor_handled
                .get_or_create(&name(child.name))
                .set(child.messages_handled as i64);
        }
    }
    if let Ok(pool) = actors
        .poller
        .call(|reply| PollerMsg::Pool { reply }, timeout)
        .await
    {
        for e in pool.executors {
            let label = name(format!("executor-{}", e.index));
            m.actor_restarts
                .get_or_create(&label)
                .set(e.restarts as i64);
            m.actor_backlog
                .get_or_create(&label)
                .set(e.mailbox_backlog as i64);
            m.actor_handled
                .get_or_create(&label)
                .set(e.messages_handled as i64);
        }
    }
    if let Ok(Ok(stats)) = actors
        .poller
        .call(|reply| PollerMsg::Stats { reply }, timeout)
        .await
    {
        for (status, n) in [
            ("pending", stats.pending),
            ("processing", stats.processing),
            ("completed", stats.completed),
            ("failed", stats.failed),
        ] {
            m.jobs.get_or_create(&name(status)).set(n as i64);
        }
        m.queue_depth.set(stats.pending as i64);
    }
    let mut body = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut body, &m.registry) {
        tracing::error!(error = %err, "metrics encoding failed");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
