//! The actors' figures by actor kind (`UserActor`, `CacheActor`,
//! `JobExecutor`, …: a closed set, fixed in the code): mailbox depth, wait
//! in the mailbox and handling time (histograms), dead letters. Read at
//! encode time from every place's shared [`ActorStats`] and added up by
//! kind (the pool's executors are one kind); nothing is kept here.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use troupe_actors::supervision::mailbox::Histogram;
use troupe_actors::supervision::stats::ActorStats;
use troupe_actors::system::tree::TreeView;

/// A series named by an actor kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// One kind's figures, added up over its places.
#[derive(Default)]
struct Kind {
    depth: u64,
    dead_letters: u64,
    wait: Histogram,
    handling: Histogram,
}

impl Kind {
    fn add(&mut self, stats: &ActorStats) {
        self.depth += stats.backlog();
        self.dead_letters += stats.dead_letters();
        self.wait.add(&stats.wait_histogram());
        self.handling.add(&stats.handling_histogram());
    }
}

/// A histogram read at encode time.
struct Read(Histogram);

impl EncodeMetric for Read {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let h = &self.0;
        encoder.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count(), &h.buckets(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every kind's figures, read from the tree's places now.
fn kinds(tree: &TreeView) -> BTreeMap<&'static str, Kind> {
    let mut kinds: BTreeMap<&'static str, Kind> = BTreeMap::new();
    for (kind, stats) in tree.stats_by_kind() {
        kinds.entry(kind).or_default().add(stats);
    }
    kinds
}

/// Encode one family with a series per kind.
fn family<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    (name, help, metric_type): (&str, &str, MetricType),
    kinds: &BTreeMap<&'static str, Kind>,
    read: impl Fn(&Kind) -> M,
) -> fmt::Result {
    let mut encoder = e.encode_descriptor(name, help, None, metric_type)?;
    for (kind, figures) in kinds {
        let label = KindLabel { kind };
        read(figures).encode(encoder.encode_family(&label)?)?;
    }
    Ok(())
}

/// `troupe_actor_mailbox_depth`, `…_mailbox_wait_seconds`,
/// `…_handling_seconds` and `…_dead_letters_total`, by `kind`.
pub fn encode(tree: &TreeView, e: &mut DescriptorEncoder) -> fmt::Result {
    let kinds = kinds(tree);
    let depth = (
        "actor_mailbox_depth",
        "Messages sent and not yet taken from the mailbox, by actor kind",
        MetricType::Gauge,
    );
    family(e, depth, &kinds, |k| {
        ConstGauge::new(i64::try_from(k.depth).unwrap_or(i64::MAX))
    })?;
    let wait = (
        "actor_mailbox_wait_seconds",
        "Time from a message's send to its taking from the mailbox, by actor kind",
        MetricType::Histogram,
    );
    family(e, wait, &kinds, |k| Read(k.wait))?;
    let handling = (
        "actor_handling_seconds",
        "Time from taking a message to the end of the work it caused, by actor kind",
        MetricType::Histogram,
    );
    family(e, handling, &kinds, |k| Read(k.handling))?;
    let dead = (
        "actor_dead_letters",
        "Messages that never reached their actor (sent while it was down, or left in the mailbox of one that stopped), by actor kind",
        MetricType::Counter,
    );
    family(e, dead, &kinds, |k| ConstCounter::new(k.dead_letters))
}
