//! [`RelayStatus`]: the relay's health and figures, shared by its two tasks,
//! readiness (`degraded`) and `/metrics`. Survives restarts of the relay.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// The reader's connection: not yet tried (0, the default), reading, or failing.
const UP: u8 = 1;
const DOWN: u8 = 2;

#[derive(Default)]
struct Inner {
    reader: AtomicU8,
    /// The last write (or the ping after it) failed; cleared by a success.
    writer_failing: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    failures: AtomicU64,
    lost: AtomicU64,
    undecodable: AtomicU64,
}

/// Cheap to clone; every clone shares the figures.
#[derive(Clone, Default)]
pub struct RelayStatus(Arc<Inner>);

/// The relay's figures at one moment (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayFigures {
    /// Events of this instance written to the fleet's stream.
    pub sent: u64,
    /// Events of other instances handed to this instance's bus.
    pub received: u64,
    /// Redis round trips that failed (connects, reads, writes, pings).
    pub failures: u64,
    /// Events lost on the way: in a write that failed, or for a bus that
    /// was down. (Events dropped for a full buffer are the bus's figure,
    /// under the subscription `events-relay`.)
    pub lost: u64,
    /// Stream entries that were not an event this instance can read.
    pub undecodable: u64,
}

impl RelayStatus {
    /// Reading and writing both work.
    pub fn connected(&self) -> bool {
        self.0.reader.load(Ordering::Acquire) == UP
            && !self.0.writer_failing.load(Ordering::Acquire)
    }

    /// The relay cannot reach Redis: this instance neither sees the fleet's
    /// events nor shows its own to the fleet (its local events go on).
    /// Not before its first attempt failed.
    pub fn degraded(&self) -> bool {
        self.0.reader.load(Ordering::Acquire) == DOWN
            || self.0.writer_failing.load(Ordering::Acquire)
    }

    pub fn figures(&self) -> RelayFigures {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        RelayFigures {
            sent: load(&self.0.sent),
            received: load(&self.0.received),
            failures: load(&self.0.failures),
            lost: load(&self.0.lost),
            undecodable: load(&self.0.undecodable),
        }
    }

    /// The reader reads; `true` if it did not before (a recovery to log).
    pub(super) fn reader_up(&self) -> bool {
        self.0.reader.swap(UP, Ordering::AcqRel) != UP
    }

    /// A read (or connect) failed; `true` if it worked before.
    pub(super) fn reader_failed(&self) -> bool {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
        self.0.reader.swap(DOWN, Ordering::AcqRel) != DOWN
    }

    /// `n` events written.
    pub(super) fn sent(&self, n: usize) {
        self.0.sent.fetch_add(n as u64, Ordering::Relaxed);
        self.0.writer_failing.store(false, Ordering::Release);
    }

    /// A write of `n` events failed (they are lost); `true` if writes
    /// worked before.
    pub(super) fn write_failed(&self, n: usize) -> bool {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
        self.lost(n);
        !self.0.writer_failing.swap(true, Ordering::AcqRel)
    }

    /// A ping while writes fail failed too.
    pub(super) fn ping_failed(&self) {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Redis answers the writer again.
    pub(super) fn writer_up(&self) {
        self.0.writer_failing.store(false, Ordering::Release);
    }

    pub(super) fn received(&self) {
        self.0.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn lost(&self, n: usize) {
        self.0.lost.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn undecodable(&self) {
        self.0.undecodable.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_only_once_an_attempt_failed_and_until_both_sides_work() {
        let status = RelayStatus::default();
        assert!(!status.degraded() && !status.connected(), "not tried yet");
        assert!(status.reader_failed(), "a change");
        assert!(!status.reader_failed(), "no change");
        assert!(status.degraded());
        assert!(status.reader_up());
        assert!(status.connected() && !status.degraded());
        assert!(status.write_failed(3));
        assert!(status.degraded() && !status.connected());
        status.writer_up();
        assert!(status.connected());
        let figures = status.figures();
        assert_eq!((figures.failures, figures.lost), (3, 3));
    }
}
