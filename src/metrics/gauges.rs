//! The figures `/metrics` reads at encode time from the actors' shared
//! stats: the cache's, the queue's snapshot, the actor tree's, the events'
//! and the relay's. Nothing here counts or keeps a copy: each family is a
//! [`Collector`] that reads its stats type while the registry is encoded,
//! through one table per type (name, help, reader), so a new figure is one
//! row.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use troupe_actors::cache::CacheStats;
use troupe_actors::events::relay::RelayStatus;
use troupe_actors::queue::snapshot::Snapshot;
use troupe_actors::supervision::stats::ActorStats;
use troupe_actors::system::tree::TreeView;
use troupe_actors::system::Handles;

/// A series named by an actor, a subscriber, an event kind or a job status
/// (closed sets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

/// How a figure is read from its stats `S`, and which metric type shows it.
enum Read<S> {
    Counter(fn(&S) -> u64),
    Gauge(fn(&S) -> i64),
    Seconds(fn(&S) -> f64),
}

/// One metric read from stats `S`: its name (after `troupe_`), help, reader.
type Figure<S> = (&'static str, &'static str, Read<S>);

/// One family of gauges by `name` label, read from stats `S`: its name,
/// help, and the series it has now.
type Named<S> = (&'static str, &'static str, fn(&S) -> Vec<(String, i64)>);

/// One family with a series per actor: its name, help, and the figure.
type PerActor = (&'static str, &'static str, fn(&ActorStats) -> u64);

fn load(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The profile cache's counters and flags ([`CacheStats`]).
const CACHE: &[Figure<CacheStats>] = &[
    (
        "cache_hits",
        "Profile cache hits",
        Read::Counter(|s| s.hits.get()),
    ),
    (
        "cache_misses",
        "Profile cache misses",
        Read::Counter(|s| load(&s.misses)),
    ),
    (
        "cache_errors",
        "Redis commands that failed or timed out",
        Read::Counter(|s| load(&s.errors)),
    ),
    (
        "cache_loads",
        "Profile loads from MongoDB",
        Read::Counter(|s| load(&s.loads)),
    ),
    (
        "cache_fills_refused",
        "Loads not stored: the profile was invalidated while they loaded",
        Read::Counter(|s| load(&s.fills_refused)),
    ),
    (
        "cache_invalidations",
        "Profile invalidations (writes) on this instance",
        Read::Counter(|s| load(&s.invalidations)),
    ),
    (
        "cache_local_hits",
        "Profile reads answered by the in-process tier",
        Read::Counter(|s| s.local_hits.get()),
    ),
    (
        "cache_local_misses",
        "Profile reads the in-process tier did not hold (while served)",
        Read::Counter(|s| s.local_misses.get()),
    ),
    (
        "cache_local_invalidations",
        "Ids invalidated in the in-process tier by a write",
        Read::Counter(|s| load(&s.local_invalidations)),
    ),
    (
        "cache_local_flushes",
        "Flushes of the in-process tier (its subscription lost or re-made)",
        Read::Counter(|s| load(&s.local_flushes)),
    ),
    (
        "cache_fanouts",
        "Invalidations this instance published to the fleet",
        Read::Counter(|s| load(&s.fanouts)),
    ),
    (
        "cache_acks_awaited",
        "Acknowledgements of invalidations this instance's writes waited for",
        Read::Counter(|s| load(&s.acks_awaited)),
    ),
    (
        "cache_lease_waits",
        "Writes that waited out a lease for an instance that did not acknowledge",
        Read::Counter(|s| load(&s.lease_waits)),
    ),
    (
        "cache_lease_losses",
        "Leases of the in-process tier lost (subscription dropped, renewal late)",
        Read::Counter(|s| load(&s.lease_losses)),
    ),
    (
        "cache_degraded",
        "1 while Redis is unavailable",
        Read::Gauge(|s| s.degraded().into()),
    ),
    (
        "cache_local_entries",
        "Entries in the in-process tier",
        Read::Gauge(|s| saturating(load(&s.local_size))),
    ),
    (
        "cache_local_tracking",
        "1 while the in-process tier holds a lease (and is served)",
        Read::Gauge(|s| s.tracking().into()),
    ),
];

/// The job counts of the poller's last snapshot (`None` before the first).
const QUEUE: &[Figure<Option<Snapshot>>] = &[
    (
        "queue_depth",
        "Pending jobs",
        Read::Gauge(|s| s.as_ref().map_or(0, |s| saturating(s.counts.pending))),
    ),
    (
        "queue_snapshot_age_seconds",
        "Age of the job counts shown here (+Inf before the first count)",
        Read::Seconds(|s| s.as_ref().map_or(f64::INFINITY, |s| s.age().as_secs_f64())),
    ),
];

/// `troupe_jobs` by status; no series before the first snapshot.
const JOBS: Named<Option<Snapshot>> = ("jobs", "Jobs by status", |s| {
    let Some(s) = s else { return vec![] };
    let c = s.counts;
    [
        ("waiting", c.waiting),
        ("pending", c.pending),
        ("processing", c.processing),
        ("completed", c.completed),
        ("failed", c.failed),
        ("cancelled", c.cancelled),
    ]
    .map(|(status, n)| (status.to_owned(), saturating(n)))
    .into()
});

/// Every actor's figures ([`ActorStats`]), a series per actor.
const ACTORS: &[PerActor] = &[
    ("actor_restarts", "Restarts by actor", ActorStats::restarts),
    (
        "actor_mailbox_backlog",
        "Messages waiting, by actor",
        ActorStats::backlog,
    ),
    (
        "actor_messages_handled",
        "Messages handled, by actor",
        ActorStats::handled,
    ),
];

/// The bus's figures: published, seen by kind, dropped by subscriber.
const EVENTS: &[Figure<Handles>] = &[(
    "events_published",
    "Domain events handed to the bus",
    Read::Counter(|h| h.events.published()),
)];

const EVENT_FAMILIES: &[Named<Handles>] = &[
    ("events_by_kind", "Domain events seen, by kind", |h| {
        let kinds = h.event_counts.snapshot().into_iter();
        kinds.map(|(kind, n)| (kind.to_owned(), saturating(n))).collect()
    }),
    (
        "events_dropped",
        "Events dropped for a full subscriber buffer, by live subscriber (every event stream as sse)",
        dropped_by_subscriber,
    ),
];

/// The events relay's figures ([`RelayStatus`]).
const RELAY: &[Figure<RelayStatus>] = &[
    (
        "events_relay_up",
        "1 while the events relay reads and writes the fleet's stream",
        Read::Gauge(|s| s.connected().into()),
    ),
    (
        "events_relay_sent",
        "This instance's events written to the fleet's stream",
        Read::Counter(|s| s.figures().sent),
    ),
    (
        "events_relay_received",
        "Other instances' events handed to this instance's bus",
        Read::Counter(|s| s.figures().received),
    ),
    (
        "events_relay_failures",
        "Redis round trips of the events relay that failed",
        Read::Counter(|s| s.figures().failures),
    ),
    (
        "events_relay_lost",
        "Events lost by the relay: in a failed write, or for a bus that was down",
        Read::Counter(|s| s.figures().lost),
    ),
    (
        "events_relay_undecodable",
        "Stream entries the relay could not read as an event",
        Read::Counter(|s| s.figures().undecodable),
    ),
];

/// Register the collectors of every shared figure, in the order of the
/// text: cache, queue, actors (by name, then by kind), events (and relay).
pub fn register(r: &mut Registry, actors: &Handles) {
    r.register_collector(Box::new(cache(actors.cache_stats.clone())));
    r.register_collector(Box::new(Figures {
        of: "queue",
        stats: actors.queue_snapshot.clone(),
        encode: |snapshot, e| {
            let snapshot = snapshot.read();
            encode_named(e, &JOBS, &snapshot)?;
            encode_figures(e, QUEUE, &snapshot)
        },
    }));
    r.register_collector(Box::new(Figures {
        of: "actors",
        stats: actors.introspection().clone(),
        encode: encode_actors,
    }));
    r.register_collector(Box::new(Figures {
        of: "actor kinds",
        stats: actors.introspection().clone(),
        encode: super::actor_kinds::encode,
    }));
    r.register_collector(Box::new(Figures {
        of: "events",
        stats: actors.clone(),
        encode: |actors, e| {
            encode_figures(e, EVENTS, actors)?;
            for family in EVENT_FAMILIES {
                encode_named(e, family, actors)?;
            }
            encode_figures(e, RELAY, &actors.relay)
        },
    }));
}

/// [`CACHE`], read from `stats`.
fn cache(stats: Arc<CacheStats>) -> Figures<Arc<CacheStats>> {
    Figures {
        of: "cache",
        stats,
        encode: |stats, e| encode_figures(e, CACHE, stats),
    }
}

/// Stats `S`, shown by `encode` each time the registry is encoded.
struct Figures<S> {
    /// For Debug.
    of: &'static str,
    stats: S,
    encode: fn(&S, &mut DescriptorEncoder) -> fmt::Result,
}

impl<S: Send + Sync + 'static> Collector for Figures<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        (self.encode)(&self.stats, &mut encoder)
    }
}

impl<S> fmt::Debug for Figures<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Figures").field("of", &self.of).finish()
    }
}

/// Each figure of `table`, read from `stats` now.
fn encode_figures<S>(e: &mut DescriptorEncoder, table: &[Figure<S>], stats: &S) -> fmt::Result {
    for (name, help, read) in table {
        match read {
            Read::Counter(read) => encode_one(e, name, help, ConstCounter::new(read(stats)))?,
            Read::Gauge(read) => encode_one(e, name, help, ConstGauge::new(read(stats)))?,
            Read::Seconds(read) => encode_one(e, name, help, ConstGauge::new(read(stats)))?,
        }
    }
    Ok(())
}

fn encode_one(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> fmt::Result {
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A family of gauges by `name` label, left out while it has no series
/// (as an empty family is).
fn encode_named<S>(e: &mut DescriptorEncoder, family: &Named<S>, stats: &S) -> fmt::Result {
    let (metric, help, read) = family;
    let series = read(stats);
    if series.is_empty() {
        return Ok(());
    }
    let mut encoder = e.encode_descriptor(metric, help, None, MetricType::Gauge)?;
    for (name, n) in series {
        let label = NameLabel { name };
        ConstGauge::new(n).encode(encoder.encode_family(&label)?)?;
    }
    Ok(())
}

/// [`ACTORS`], a series per actor of the tree (read from the counters every
/// place shares: no message to the supervisor or the poller).
fn encode_actors(tree: &TreeView, e: &mut DescriptorEncoder) -> fmt::Result {
    for (metric, help, read) in ACTORS {
        let mut encoder = e.encode_descriptor(metric, help, None, MetricType::Gauge)?;
        for (actor, stats) in tree.all_stats() {
            let label = NameLabel {
                name: actor.to_owned(),
            };
            ConstGauge::new(saturating(read(stats))).encode(encoder.encode_family(&label)?)?;
        }
    }
    Ok(())
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

/// Events dropped by live subscriber: one series per label of a closed
/// set, every event stream under `sse` (the streams' own names are unique
/// per connection), which is there with 0 before any stream.
fn dropped_by_subscriber(actors: &Handles) -> Vec<(String, i64)> {
    let mut dropped = BTreeMap::from([(EVENT_STREAM_LABEL, 0u64)]);
    let subscriptions = actors.registry.stats();
    for sub in &subscriptions {
        *dropped.entry(subscriber_label(&sub.name)).or_default() += sub.dropped;
    }
    let series = dropped.into_iter();
    series
        .map(|(label, n)| (label.to_owned(), saturating(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn the_cache_figures_are_read_from_the_stats_each_time_the_registry_is_encoded() {
        let stats = Arc::new(CacheStats::default());
        let mut registry = Registry::with_prefix("troupe");
        registry.register_collector(Box::new(cache(stats.clone())));
        assert!(text(&registry).contains("\ntroupe_cache_hits_total 0\n"));
        stats.hits.add(3);
        stats.local_size.store(7, Ordering::Relaxed);
        let shown = text(&registry);
        assert!(shown.contains("\ntroupe_cache_hits_total 3\n"), "{shown}");
        assert!(
            shown.contains("\ntroupe_cache_local_entries 7\n"),
            "{shown}"
        );
        assert!(
            shown.contains(
                "# HELP troupe_cache_hits Profile cache hits\n# TYPE troupe_cache_hits counter\n"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("# TYPE troupe_cache_degraded gauge\n"),
            "{shown}"
        );
        // Every row of the table once.
        assert_eq!(shown.matches("# TYPE troupe_cache_").count(), CACHE.len());
    }

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
