//! The service's Prometheus registry: what is recorded as it happens, what
//! is read from shared counters at scrape time, and the rendering kept for
//! `ops.metrics_reuse`. Knows the actors' handles, not the HTTP state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use troupe_actors::cache::CacheStats;
use troupe_actors::events::relay::RelayStatus;
use troupe_actors::fleet::metrics::FleetMetrics;
use troupe_actors::limits::LimitMetrics;
use troupe_actors::queue::metrics::QueueMetrics;
use troupe_actors::queue::snapshot::QueueSnapshot;
use troupe_actors::store::MongoCommands;
use troupe_actors::system::tree::TreeView;
use troupe_actors::system::Handles;

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

fn name(name: impl Into<String>) -> NameLabel {
    NameLabel { name: name.into() }
}

/// Every metric `/metrics` shows, in one registry (prefix `troupe_`).
pub struct Metrics {
    registry: Registry,
    http: HttpMetrics,
    cache: CacheGauges,
    queue: QueueGauges,
    actors: ActorGauges,
    events: EventGauges,
    /// The last rendering and when it was made, served again for `reuse`.
    last: Mutex<Option<(Instant, Bytes)>>,
    reuse: Duration,
}

impl Metrics {
    /// Register every metric: the ones recorded here, and the queue's,
    /// limits' and MongoDB's, which their owners record as things happen.
    /// `reuse`: how long one rendering serves later scrapes
    /// (`ops.metrics_reuse`).
    pub fn new(
        queue: &QueueMetrics,
        limits: &LimitMetrics,
        fleet: &FleetMetrics,
        mongo_commands: &MongoCommands,
        reuse: Duration,
    ) -> Self {
        // Registration order is the order of the text.
        let mut registry = Registry::with_prefix("troupe");
        let r = &mut registry;
        let http = HttpMetrics::register(r);
        register_recorded(r, queue, limits);
        register_fleet(r, fleet);
        let cache = CacheGauges::register(r);
        let queue = QueueGauges::register(r);
        r.register(
            "mongodb_commands",
            "Commands sent to MongoDB, by command name (others: `other`)",
            mongo_commands.family(),
        );
        r.register(
            "unreadable_documents",
            "Documents skipped in lists because this service cannot read their shape, by collection",
            troupe_actors::store::unreadable_documents(),
        );
        let actors = ActorGauges::register(r);
        let events = EventGauges::register(r);
        Self {
            registry,
            http,
            cache,
            queue,
            actors,
            events,
            last: Mutex::new(None),
            reuse,
        }
    }

    /// Record one HTTP request. Every label comes from a closed set, so the
    /// series stay bounded whatever clients send: `method` is a
    /// [`method_label`](super::bounded::method_label), `route` a matched
    /// route template or `unmatched`, `status` one of the statuses we answer.
    pub fn request(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.http
            .requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.clone(),
                status,
            })
            .inc();
        self.http
            .duration
            .get_or_create(&RouteLabels { method, route })
            .observe(seconds);
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
            "Time to claim one job",
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
        "Limit checks skipped (request served) because Redis failed",
        limits.unavailable.clone(),
    );
}

/// The fleet registry's counters, recorded by the FleetActor.
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

/// The profile cache's counters, copied from [`CacheStats`] at scrape time.
#[derive(Default)]
struct CacheGauges {
    hits: Counter,
    misses: Counter,
    errors: Counter,
    loads: Counter,
    fills_refused: Counter,
    invalidations: Counter,
    local_hits: Counter,
    local_misses: Counter,
    local_invalidations: Counter,
    local_flushes: Counter,
    local_entries: Gauge,
    local_tracking: Gauge,
    degraded: Gauge,
}

impl CacheGauges {
    fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        let counters = [
            ("cache_hits", "Profile cache hits", &m.hits),
            ("cache_misses", "Profile cache misses", &m.misses),
            (
                "cache_errors",
                "Redis commands that failed or timed out",
                &m.errors,
            ),
            ("cache_loads", "Profile loads from MongoDB", &m.loads),
            (
                "cache_fills_refused",
                "Loads not stored: the profile was invalidated while they loaded",
                &m.fills_refused,
            ),
            (
                "cache_invalidations",
                "Profile invalidations (writes) on this instance",
                &m.invalidations,
            ),
            (
                "cache_local_hits",
                "Profile reads answered by the in-process tier",
                &m.local_hits,
            ),
            (
                "cache_local_misses",
                "Profile reads the in-process tier did not hold (while served)",
                &m.local_misses,
            ),
            (
                "cache_local_invalidations",
                "Ids invalidated in the in-process tier by Redis",
                &m.local_invalidations,
            ),
            (
                "cache_local_flushes",
                "Flushes of the in-process tier (tracking lost or re-made, FLUSHALL)",
                &m.local_flushes,
            ),
        ];
        for (metric, help, counter) in counters {
            r.register(metric, help, counter.clone());
        }
        let help = "1 while Redis is unavailable";
        r.register("cache_degraded", help, m.degraded.clone());
        let help = "Entries in the in-process tier";
        r.register("cache_local_entries", help, m.local_entries.clone());
        let help = "1 while the in-process tier is tracked by Redis (and served)";
        r.register("cache_local_tracking", help, m.local_tracking.clone());
        m
    }

    fn record(&self, cache: &CacheStats) {
        for (counter, figure) in [
            (&self.hits, &cache.hits),
            (&self.misses, &cache.misses),
            (&self.errors, &cache.errors),
            (&self.loads, &cache.loads),
            (&self.fills_refused, &cache.fills_refused),
            (&self.invalidations, &cache.invalidations),
            (&self.local_hits, &cache.local_hits),
            (&self.local_misses, &cache.local_misses),
            (&self.local_invalidations, &cache.local_invalidations),
            (&self.local_flushes, &cache.local_flushes),
        ] {
            let n = figure.load(Ordering::Relaxed);
            counter.inner().store(n, Ordering::Relaxed);
        }
        self.degraded.set(i64::from(cache.degraded()));
        let entries = cache.local_size.load(Ordering::Relaxed);
        self.local_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.local_tracking.set(i64::from(cache.tracking()));
    }
}

/// Job counts, from the poller's snapshot.
#[derive(Default)]
struct QueueGauges {
    jobs: Family<NameLabel, Gauge>,
    depth: Gauge,
    snapshot_age: Gauge<f64, AtomicU64>,
}

impl QueueGauges {
    fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        r.register("jobs", "Jobs by status", m.jobs.clone());
        r.register("queue_depth", "Pending jobs", m.depth.clone());
        r.register(
            "queue_snapshot_age_seconds",
            "Age of the job counts shown here (+Inf before the first count)",
            m.snapshot_age.clone(),
        );
        m
    }

    /// Job counts from the poller's snapshot (and a request for fresh ones).
    fn record(&self, snapshot: &QueueSnapshot) {
        let Some(snapshot) = snapshot.read() else {
            self.snapshot_age.set(f64::INFINITY);
            return;
        };
        let counts = snapshot.counts;
        for (status, n) in [
            ("pending", counts.pending),
            ("processing", counts.processing),
            ("completed", counts.completed),
            ("failed", counts.failed),
            ("cancelled", counts.cancelled),
        ] {
            self.jobs.get_or_create(&name(status)).set(n as i64);
        }
        self.depth.set(counts.pending as i64);
        self.snapshot_age.set(snapshot.age().as_secs_f64());
    }
}

/// Every actor's restarts, backlog and messages handled.
#[derive(Default)]
struct ActorGauges {
    restarts: Family<NameLabel, Gauge>,
    backlog: Family<NameLabel, Gauge>,
    handled: Family<NameLabel, Gauge>,
}

impl ActorGauges {
    fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        let families = [
            ("actor_restarts", "Restarts by actor", &m.restarts),
            (
                "actor_mailbox_backlog",
                "Messages waiting, by actor",
                &m.backlog,
            ),
            (
                "actor_messages_handled",
                "Messages handled, by actor",
                &m.handled,
            ),
        ];
        for (metric, help, family) in families {
            r.register(metric, help, family.clone());
        }
        m
    }

    /// From the counters every place shares (no message to the supervisor
    /// or the poller).
    fn record(&self, tree: &TreeView) {
        for (actor, stats) in tree.all_stats() {
            let label = name(actor);
            let set = |family: &Family<NameLabel, Gauge>, n: u64| {
                family.get_or_create(&label).set(n as i64);
            };
            set(&self.restarts, stats.restarts());
            set(&self.backlog, stats.backlog());
            set(&self.handled, stats.handled());
        }
    }
}

/// The `troupe_events_dropped` label of every event stream (`/ops/events`),
/// and the start of each one's subscription name (`sse-<uuid>`).
pub const EVENT_STREAM_LABEL: &str = "sse";

/// A subscription's label: `sse` for any event stream; the actors'
/// subscriptions keep their names, fixed in the code.
fn subscriber_label(subscription: &str) -> &str {
    match subscription.split_once('-') {
        Some((EVENT_STREAM_LABEL, _)) => EVENT_STREAM_LABEL,
        _ => subscription,
    }
}

/// Events published, seen by kind, dropped by subscriber (event streams
/// together), and relayed.
#[derive(Default)]
struct EventGauges {
    published: Counter,
    by_kind: Family<NameLabel, Gauge>,
    dropped: Family<NameLabel, Gauge>,
    relay: RelayGauges,
}

/// The events relay's figures, copied from its status at scrape time.
#[derive(Default)]
struct RelayGauges {
    up: Gauge,
    sent: Counter,
    received: Counter,
    failures: Counter,
    lost: Counter,
    undecodable: Counter,
}

impl RelayGauges {
    fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        let help = "1 while the events relay reads and writes the fleet's stream";
        r.register("events_relay_up", help, m.up.clone());
        let counters = [
            (
                "events_relay_sent",
                "This instance's events written to the fleet's stream",
                &m.sent,
            ),
            (
                "events_relay_received",
                "Other instances' events handed to this instance's bus",
                &m.received,
            ),
            (
                "events_relay_failures",
                "Redis round trips of the events relay that failed",
                &m.failures,
            ),
            (
                "events_relay_lost",
                "Events lost by the relay: in a failed write, or for a bus that was down",
                &m.lost,
            ),
            (
                "events_relay_undecodable",
                "Stream entries the relay could not read as an event",
                &m.undecodable,
            ),
        ];
        for (metric, help, counter) in counters {
            r.register(metric, help, counter.clone());
        }
        m
    }

    fn record(&self, status: &RelayStatus) {
        let f = status.figures();
        self.up.set(i64::from(status.connected()));
        for (counter, n) in [
            (&self.sent, f.sent),
            (&self.received, f.received),
            (&self.failures, f.failures),
            (&self.lost, f.lost),
            (&self.undecodable, f.undecodable),
        ] {
            counter.inner().store(n, Ordering::Relaxed);
        }
    }
}

impl EventGauges {
    fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        let help = "Domain events handed to the bus";
        r.register("events_published", help, m.published.clone());
        let help = "Domain events seen, by kind";
        r.register("events_by_kind", help, m.by_kind.clone());
        let help = "Events dropped for a full subscriber buffer, by live subscriber (every event stream as sse)";
        r.register("events_dropped", help, m.dropped.clone());
        Self {
            relay: RelayGauges::register(r),
            ..m
        }
    }

    fn record(&self, actors: &Handles) {
        let published = actors.events.published();
        self.published.inner().store(published, Ordering::Relaxed);
        for (kind, n) in actors.event_counts.snapshot() {
            self.by_kind.get_or_create(&name(kind)).set(n as i64);
        }
        // One series per label of a closed set: every event stream counts
        // under `sse` (the streams' own names are unique per connection).
        let mut dropped = BTreeMap::from([(EVENT_STREAM_LABEL, 0)]);
        let subscriptions = actors.registry.stats();
        for sub in &subscriptions {
            *dropped.entry(subscriber_label(&sub.name)).or_default() += sub.dropped as i64;
        }
        for (label, n) in dropped {
            self.dropped.get_or_create(&name(label)).set(n);
        }
        self.relay.record(&actors.relay);
    }
}

impl Metrics {
    /// Read every shared figure into the registry and encode it (and keep
    /// the text for the scrapes of the next `ops.metrics_reuse`).
    pub fn render(&self, actors: &Handles) -> Bytes {
        let m = self;
        m.cache.record(&actors.cache_stats);
        m.events.record(actors);
        m.actors.record(actors.introspection());
        m.queue.record(&actors.queue_snapshot);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_stream_has_the_one_sse_label_and_actors_keep_theirs() {
        let stream = format!("{EVENT_STREAM_LABEL}-{}", uuid::Uuid::new_v4().simple());
        assert_eq!(subscriber_label(&stream), "sse");
        assert_eq!(subscriber_label("sse-"), "sse");
        for fixed in [
            "audit-log",
            "event-counter",
            "events-relay",
            "sse",
            "ssex-1",
        ] {
            assert_eq!(subscriber_label(fixed), fixed);
        }
    }
}
