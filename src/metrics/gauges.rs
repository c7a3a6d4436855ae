//! The gauges `/metrics` reads at scrape time from the actors' shared
//! figures: the cache's, the queue's snapshot, the actor tree's, the events'
//! and the relay's. One source of truth per figure; nothing here counts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use troupe_actors::cache::CacheStats;
use troupe_actors::events::relay::RelayStatus;
use troupe_actors::queue::snapshot::QueueSnapshot;
use troupe_actors::system::tree::TreeView;
use troupe_actors::system::Handles;

use prometheus_client::encoding::EncodeLabelSet;

/// A series named by an actor, a subscriber or an event kind (closed sets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

fn name(name: impl Into<String>) -> NameLabel {
    NameLabel { name: name.into() }
}

/// The profile cache's counters, copied from [`CacheStats`] at scrape time.
#[derive(Default)]
pub struct CacheGauges {
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
    pub fn register(r: &mut Registry) -> Self {
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

    pub fn record(&self, cache: &CacheStats) {
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
pub struct QueueGauges {
    jobs: Family<NameLabel, Gauge>,
    depth: Gauge,
    snapshot_age: Gauge<f64, AtomicU64>,
}

impl QueueGauges {
    pub fn register(r: &mut Registry) -> Self {
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
    pub fn record(&self, snapshot: &QueueSnapshot) {
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
pub struct ActorGauges {
    restarts: Family<NameLabel, Gauge>,
    backlog: Family<NameLabel, Gauge>,
    handled: Family<NameLabel, Gauge>,
}

impl ActorGauges {
    pub fn register(r: &mut Registry) -> Self {
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
    pub fn record(&self, tree: &TreeView) {
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
pub struct EventGauges {
    published: Counter,
    by_kind: Family<NameLabel, Gauge>,
    dropped: Family<NameLabel, Gauge>,
    relay: RelayGauges,
}

/// The events relay's figures, copied from its status at scrape time.
#[derive(Default)]
pub struct RelayGauges {
    up: Gauge,
    sent: Counter,
    received: Counter,
    failures: Counter,
    lost: Counter,
    undecodable: Counter,
}

impl RelayGauges {
    pub fn register(r: &mut Registry) -> Self {
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

    pub fn record(&self, status: &RelayStatus) {
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
    pub fn register(r: &mut Registry) -> Self {
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

    pub fn record(&self, actors: &Handles) {
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
