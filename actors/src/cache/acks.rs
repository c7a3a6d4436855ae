//! [`Acks`]: a writer's invalidations waiting for the instances that hold a
//! lease to acknowledge them.
//!
//! A write opens a [`Round`] (a sequence number) *before* it publishes, since
//! an acknowledgement may come back before the publish's own reply; the
//! subscription task records each acknowledgement by that number; the write
//! then waits until every instance the fan-out named has acknowledged, or
//! the bound (one lease and a margin) has passed, whichever comes first.
//! Acknowledgements for a round no longer open (it timed out, or a stray
//! one) are ignored; each round is removed when its writer stops waiting,
//! so the table holds only the writes in flight.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// The rounds open now, by sequence number.
#[derive(Default)]
pub(super) struct Acks {
    next: AtomicU64,
    open: Mutex<HashMap<u64, watch::Sender<HashSet<Arc<str>>>>>,
}

/// How a round ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Every instance named acknowledged.
    All,
    /// These did not within the bound (their leases have run out since).
    Missing(Vec<Arc<str>>),
}

/// One write's wait for its acknowledgements; closed when dropped.
pub(super) struct Round<'a> {
    acks: &'a Acks,
    pub(super) seq: u64,
    acked: watch::Receiver<HashSet<Arc<str>>>,
}

impl Acks {
    /// Open a round: its sequence number goes into the invalidation.
    pub(super) fn open(&self) -> Round<'_> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, acked) = watch::channel(HashSet::new());
        self.table().insert(seq, tx);
        Round {
            acks: self,
            seq,
            acked,
        }
    }

    /// `from` (a subscriber's token) acknowledged round `seq`.
    pub(super) fn acked(&self, seq: u64, from: &str) {
        if let Some(round) = self.table().get(&seq) {
            round.send_modify(|acked| {
                acked.insert(from.into());
            });
        }
    }

    /// Rounds open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().len()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, watch::Sender<HashSet<Arc<str>>>>> {
        // Only inserts and removes run under the lock: a poisoned table is
        // still consistent.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Round<'_> {
    /// Wait until every one of `expected` acknowledged, at most `bound`.
    pub(super) async fn wait(mut self, expected: &[Arc<str>], bound: Duration) -> Outcome {
        let all = |acked: &HashSet<Arc<str>>| expected.iter().all(|e| acked.contains(e));
        let waited = tokio::time::timeout(bound, self.acked.wait_for(all))
            .await
            .is_ok_and(|seen| seen.is_ok());
        if waited {
            return Outcome::All;
        }
        let acked = self.acked.borrow();
        let missing = expected.iter().filter(|e| !acked.contains(*e)).cloned();
        Outcome::Missing(missing.collect())
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        self.acks.table().remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const BOUND: Duration = Duration::from_millis(2250);

    fn tokens(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|&n| n.into()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_every_instance_acknowledged_ends_at_once() {
        let acks = Acks::default();
        let round = acks.open();
        // One acknowledgement before the publish's reply, one after.
        acks.acked(round.seq, "a");
        let seq = round.seq;
        let start = Instant::now();
        let expected = tokens(&["a", "b"]);
        let wait = round.wait(&expected, BOUND);
        let ((), outcome) = tokio::join!(async { acks.acked(seq, "b") }, wait);
        assert_eq!(outcome, Outcome::All);
        assert_eq!(start.elapsed(), Duration::ZERO, "waited on the clock");
        assert_eq!(acks.len(), 0, "the round is closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_acknowledgement_ends_the_round_at_the_bound() {
        let acks = Acks::default();
        let round = acks.open();
        acks.acked(round.seq, "a");
        acks.acked(round.seq + 1, "b"); // another round's: ignored
        let start = Instant::now();
        let outcome = round.wait(&tokens(&["a", "b"]), BOUND).await;
        assert_eq!(outcome, Outcome::Missing(tokens(&["b"])));
        assert_eq!(start.elapsed(), BOUND);
        assert_eq!(acks.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_to_wait_for_and_late_acknowledgements_are_dropped() {
        let acks = Acks::default();
        let round = acks.open();
        let seq = round.seq;
        assert_eq!(round.wait(&[], BOUND).await, Outcome::All);
        acks.acked(seq, "late"); // the round is gone: nothing kept
        assert_eq!(acks.len(), 0);
        assert_ne!(acks.open().seq, seq, "a sequence number is used once");
    }
}
