//! [`QueueSnapshot`]: the queue's figures (jobs by status) as `/metrics`
//! shows them, kept in memory so that a scrape never queries the store.
//!
//! # Contract
//! - A reader ([`QueueSnapshot::read`]) only reads memory, and marks the
//!   snapshot *wanted*.
//! - The QueuePollerActor refreshes it on a tick when it is wanted, no
//!   refresh is in flight, and the last attempt is at least
//!   `queue.stats_interval` old ([`Refresher`]); and once when it starts, so
//!   the first scrape has figures. An instance nobody scrapes sends no
//!   counting query after that; a flood of scrapes costs at most one
//!   `aggregate` per `stats_interval` (and per tick), whatever its size.
//! - The refresh runs in a task the poller owns (a [`JoinSet`], aborted if
//!   the poller dies, stopped by [`Refresher::stop`] in its `post_stop`),
//!   never in its mailbox.
//! - A failed refresh keeps the previous figures; their age (exported as
//!   `troupe_queue_snapshot_age_seconds`) says how stale they are.
//!
//! Demand-driven means a scrape sees the figures of the refresh its
//! predecessor asked for: about one scrape interval old (plus a tick). The
//! age gauge makes that visible.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::queue::job::StatusCounts;
use crate::queue::store::JobStore;

/// The last figures, and when they were taken.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub counts: StatusCounts,
    pub taken_at: Instant,
}

impl Snapshot {
    /// How long ago the figures were taken.
    pub fn age(&self) -> Duration {
        self.taken_at.elapsed()
    }
}

/// Shared between the poller (writer) and `/metrics` (reader).
#[derive(Default)]
pub struct QueueSnapshot {
    wanted: AtomicBool,
    latest: Mutex<Option<Snapshot>>,
}

impl QueueSnapshot {
    /// The last figures (`None` before the first successful refresh), and a
    /// request for fresh ones on the poller's next tick.
    pub fn read(&self) -> Option<Snapshot> {
        self.wanted.store(true, Ordering::Relaxed);
        *self.latest.lock().expect("queue snapshot lock")
    }

    fn store(&self, counts: StatusCounts) {
        *self.latest.lock().expect("queue snapshot lock") = Some(Snapshot {
            counts,
            taken_at: Instant::now(),
        });
    }
}

/// Whether a refresh should start now: someone asked for one, none is
/// running, and the last attempt (successful or not) is `interval` old.
fn due(wanted: bool, in_flight: bool, since_last: Option<Duration>, interval: Duration) -> bool {
    wanted && !in_flight && since_last.is_none_or(|elapsed| elapsed >= interval)
}

/// The poller's side: decides when to refresh and owns the refresh task.
pub(crate) struct Refresher {
    snapshot: Arc<QueueSnapshot>,
    store: JobStore,
    interval: Duration,
    /// At most one refresh; dropping the refresher aborts it.
    task: JoinSet<()>,
    last_attempt: Option<Instant>,
}

impl Refresher {
    pub fn new(snapshot: Arc<QueueSnapshot>, store: JobStore, interval: Duration) -> Self {
        Self {
            snapshot,
            store,
            interval,
            task: JoinSet::new(),
            last_attempt: None,
        }
    }

    /// On every tick: refresh if [`due`].
    pub fn tick(&mut self) {
        while self.task.try_join_next().is_some() {}
        let wanted = self.snapshot.wanted.load(Ordering::Relaxed);
        let since_last = self.last_attempt.map(|at| at.elapsed());
        if due(wanted, !self.task.is_empty(), since_last, self.interval) {
            self.refresh();
        }
    }

    /// Abort a refresh in flight and wait until it is gone (shutdown).
    pub async fn stop(&mut self) {
        self.task.shutdown().await;
    }

    /// Start a refresh now (also at start-up, wanted or not).
    pub fn refresh(&mut self) {
        self.snapshot.wanted.store(false, Ordering::Relaxed);
        self.last_attempt = Some(Instant::now());
        let (snapshot, store) = (Arc::clone(&self.snapshot), self.store.clone());
        self.task.spawn(async move {
            match store.counts().await {
                Ok(counts) => snapshot.store(counts),
                Err(err) => {
                    tracing::warn!(target: "worker", error = %crate::queue::error::brief(&err), "counting jobs for the metrics failed; keeping the previous figures")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    #[test]
    fn nothing_is_refreshed_unless_someone_asked() {
        assert!(!due(false, false, None, INTERVAL));
        assert!(!due(
            false,
            false,
            Some(Duration::from_secs(3600)),
            INTERVAL
        ));
    }

    #[test]
    fn a_wanted_snapshot_is_refreshed_at_most_once_per_interval() {
        assert!(due(true, false, None, INTERVAL));
        assert!(!due(true, false, Some(Duration::from_secs(9)), INTERVAL));
        assert!(due(true, false, Some(INTERVAL), INTERVAL));
    }

    #[test]
    fn never_two_refreshes_at_once() {
        assert!(!due(true, true, Some(Duration::from_secs(3600)), INTERVAL));
    }

    #[test]
    fn reading_marks_the_snapshot_wanted_and_returns_the_last_figures() {
        let snapshot = QueueSnapshot::default();
        assert!(snapshot.read().is_none());
        assert!(snapshot.wanted.load(Ordering::Relaxed));
        snapshot.store(StatusCounts {
            pending: 3,
            ..Default::default()
        });
        let read = snapshot.read().expect("figures");
        assert_eq!(read.counts.pending, 3);
        assert!(read.age() < Duration::from_secs(1));
    }
}
