//! The service's Prometheus registry: what is recorded as it happens, what
//! is read from shared counters at scrape time, and the rendering kept for
//! `ops.metrics_reuse`. Knows the actors' handles, not the HTTP state.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::MatchedPath;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use troupe_actors::fleet::metrics::FleetMetrics;
use troupe_actors::limits::LimitMetrics;
use troupe_actors::queue::metrics::QueueMetrics;
use troupe_actors::store::MongoCommands;
use troupe_actors::system::Handles;

use super::gauges;

/// A request's series: built per request without allocating (a static
/// method label, the route shared with the request, a number); the
/// families copy a label set only when a series is first made.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: Route,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: Route,
}

/// The route a request matched (its template, as axum keeps it: a
/// reference-counted string, so a clone copies no text), or `unmatched`: a
/// closed set.
#[derive(Clone, Debug, Default)]
pub struct Route(pub Option<MatchedPath>);

impl Route {
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        self.as_str().encode(encoder)
    }
}

/// Every metric `/metrics` shows, in one registry (prefix `troupe_`).
pub struct Metrics {
    registry: Registry,
    http: HttpMetrics,
    /// The last rendering and when it was made, served again for `reuse`.
    last: Mutex<Option<(Instant, Bytes)>>,
    reuse: Duration,
}

impl Metrics {
    /// Register every metric: the ones recorded here; the queue's, limits',
    /// fleet's and MongoDB's, which their owners record as things happen;
    /// and the actors' shared figures, read as the registry is encoded
    /// ([`gauges`]). `reuse`: how long one rendering serves later scrapes
    /// (`ops.metrics_reuse`).
    pub fn new(actors: &Handles, mongo_commands: &MongoCommands, reuse: Duration) -> Self {
        // Registration order is the order of the text.
        let mut registry = Registry::with_prefix("troupe");
        let r = &mut registry;
        let http = HttpMetrics::register(r);
        register_recorded(r, &actors.queue_metrics, &actors.limit_metrics);
        register_fleet(r, actors.fleet.metrics());
        r.register(
            "store_commands",
            "Commands sent to MongoDB, by command name and collection (others: `other`; none: `none`)",
            mongo_commands.family(),
        );
        r.register(
            "trace_spans_dropped",
            "Spans dropped because the export queue was full (telemetry.export_queue): a slow or unreachable collector",
            crate::telemetry::dropped_spans(),
        );
        r.register(
            "unreadable_documents",
            "Documents skipped in lists because this service cannot read their shape, by collection",
            troupe_actors::store::unreadable_documents(),
        );
        gauges::register(r, actors);
        Self {
            registry,
            http,
            last: Mutex::new(None),
            reuse,
        }
    }

    /// Record one HTTP request. Every label comes from a closed set, so the
    /// series stay bounded whatever clients send: `method` is a
    /// [`method_label`](super::bounded::method_label), `route` a matched
    /// route template or `unmatched`, `status` one of the statuses we answer.
    /// Allocates nothing once the request's series exist.
    pub fn request(&self, method: &'static str, route: Route, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method,
            route,
            status,
        };
        self.http.requests.get_or_create(&labels).inc();
        let labels = RouteLabels {
            method,
            route: labels.route,
        };
        self.http.duration.get_or_create(&labels).observe(seconds);
    }
}

/// Histograms and counters their owners record as things happen: claims
/// and runs of jobs, limit refusals.
fn register_recorded(r: &mut Registry, queue: &QueueMetrics, limits: &LimitMetrics) {
    let histograms = [
        (
            "job_listing_duration_seconds",
            "Time to list claimable jobs (one per listing)",
            &queue.listing_seconds,
        ),
        (
            "job_claim_duration_seconds",
            "Time to claim one batch of jobs (one insert, then its takes)",
            &queue.claim_seconds,
        ),
        (
            "job_execution_duration_seconds",
            "Time to run one job",
            &queue.execution_seconds,
        ),
    ];
    for (metric, help, histogram) in histograms {
        r.register(metric, help, histogram.clone());
    }
    r.register(
        "rate_limited",
        "Requests refused (429) by a limit: login, signup, profile_lookup",
        limits.refused.clone(),
    );
    r.register(
        "rate_limit_unavailable",
        "Redis failures by limit: login checks skipped (request served), per-address limits' sharing rounds not delivered (decided per instance meanwhile)",
        limits.unavailable.clone(),
    );
}

/// The fleet registry's counters and size, recorded by the FleetActor.
fn register_fleet(r: &mut Registry, fleet: &FleetMetrics) {
    let counters = [
        (
            "fleet_heartbeat_failures",
            "Heartbeats not written to Redis (retried every tick)",
            &fleet.heartbeat_failures,
        ),
        (
            "fleet_failovers",
            "Dead instances this instance took over",
            &fleet.failovers,
        ),
        (
            "fleet_jobs_released",
            "Jobs of dead instances this instance released for reclaim",
            &fleet.jobs_released,
        ),
    ];
    for (metric, help, counter) in counters {
        r.register(metric, help, counter.clone());
    }
    r.register(
        "fleet_instances",
        "Live instances as the last heartbeat read them (what per-address limits divide their budgets by; 0 before the first read)",
        fleet.instances.clone(),
    );
}

/// Requests by route and status, and their latency.
struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    fn register(r: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        };
        let help = "HTTP requests by route and status";
        r.register("http_requests", help, m.requests.clone());
        let help = "HTTP request latency";
        r.register("http_request_duration_seconds", help, m.duration.clone());
        m
    }
}

impl Metrics {
    /// Encode the registry, reading every shared figure as it goes (and
    /// keep the text for the scrapes of the next `ops.metrics_reuse`).
    pub fn render(&self) -> Bytes {
        let m = self;
        let mut body = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut body, &m.registry) {
            tracing::error!(error = %err, "metrics encoding failed");
        }
        let body = Bytes::from(body);
        m.keep(body.clone());
        body
    }

    /// The last rendering, if it is younger than `reuse`. A flood of scrapes
    /// then costs a copy of a reference each, not an encoding of every
    /// series (≈ 16 KB of text) each.
    pub fn reusable(&self) -> Option<Bytes> {
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
}
