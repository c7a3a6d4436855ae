//! A message's trip through an actor's mailbox, measured without a lock:
//! when it was sent ([`SendTimes`]), how long it waited and how long its
//! work took ([`Buckets`], Prometheus histograms of atomics), and the
//! messages that never arrived ([`DeadLetters`]).
//!
//! # The send instant
//! ractor delivers an actor's messages in the order they were sent, and
//! [`ActorStats`](super::stats::ActorStats) numbers both ends: the *n*-th
//! message sent is the *n*-th taken. So the send instant travels beside the
//! message, not inside it: sending message *n* stamps slot *n* of a ring of
//! [`RING`] atomics, and taking message *n* reads it back. Every actor's
//! messages are measured this way — requests, timers, an executor's jobs —
//! with no field added to any message type. Two senders racing may swap
//! their stamps (the two sends' instants, microseconds apart); a message
//! whose slot was already stamped again by a later send (more than [`RING`]
//! messages behind it) gets that later send's instant: its wait is then
//! *at least* what is recorded. A slot not stamped yet (its sender still
//! between numbering and stamping) records no wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

/// Send instants kept: a message further behind than this in the mailbox
/// has its wait recorded as a lower bound.
pub const RING: usize = 256;

/// Upper bounds of the histograms' buckets, in seconds (then `+Inf`).
pub const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How many recent dead letters a place keeps.
pub const RECENT_DEAD_LETTERS: usize = 16;

/// A slot's bits: stamped (1), the low [`TAG_BITS`] of the sequence number,
/// then microseconds since the ring was made (48 bits: 8.9 years).
const TAG_BITS: u32 = 15;
const MICROS_BITS: u32 = 48;
const STAMPED: u64 = 1 << 63;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const MICROS_MASK: u64 = (1 << MICROS_BITS) - 1;

/// The send instants of the last [`RING`] messages, by sequence number.
pub struct SendTimes {
    epoch: Instant,
    slots: Box<[AtomicU64]>,
}

impl Default for SendTimes {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            slots: (0..RING).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl SendTimes {
    fn micros(&self) -> u64 {
        let micros = self.epoch.elapsed().as_micros();
        u64::try_from(micros).unwrap_or(u64::MAX) & MICROS_MASK
    }

    fn slot(&self, seq: u64) -> &AtomicU64 {
        &self.slots[(seq % RING as u64) as usize]
    }

    /// Message `seq` is being sent now.
    pub fn stamp(&self, seq: u64) {
        let stamp = STAMPED | ((seq & TAG_MASK) << MICROS_BITS) | self.micros();
        self.slot(seq).store(stamp, Ordering::Release);
    }

    /// How long message `seq`, taken now, waited (see the module docs);
    /// `None` when its slot was not stamped yet.
    pub fn waited(&self, seq: u64) -> Option<Duration> {
        let stamp = self.slot(seq).load(Ordering::Acquire);
        if stamp & STAMPED == 0 {
            return None;
        }
        // How far the stamp's sequence number is ahead of `seq`, modulo the
        // tag: behind (the upper half) means not stamped for `seq` yet.
        let ahead = ((stamp >> MICROS_BITS) & TAG_MASK).wrapping_sub(seq) & TAG_MASK;
        if ahead > TAG_MASK / 2 {
            return None;
        }
        let sent = stamp & MICROS_MASK;
        Some(Duration::from_micros(self.micros().saturating_sub(sent)))
    }
}

/// A Prometheus histogram of durations over [`BOUNDS`]: one atomic per
/// bucket and one for the sum, so recording takes no lock.
#[derive(Default)]
pub struct Buckets {
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Buckets {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BOUNDS.partition_point(|bound| *bound < seconds);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// What it holds now.
    pub fn read(&self) -> Histogram {
        let mut counts = [0; BOUNDS.len() + 1];
        for (count, atomic) in counts.iter_mut().zip(&self.counts) {
            *count = atomic.load(Ordering::Relaxed);
        }
        Histogram {
            counts,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's figures as read: a count per bucket (not cumulative; the
/// last is `+Inf`) and the sum. Histograms of one actor kind are added up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Histogram {
    pub counts: [u64; BOUNDS.len() + 1],
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn add(&mut self, other: &Histogram) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count += more;
        }
        self.sum_seconds += other.sum_seconds;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, count)` per bucket, `+Inf` as `f64::MAX` (what
    /// prometheus-client's encoder takes).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = BOUNDS.iter().copied().chain([f64::MAX]);
        bounds.zip(self.counts).collect()
    }
}

/// Why a message never reached its actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeadReason {
    /// Sent while the actor was not running (between a crash and its
    /// restart, or after its supervisor gave up).
    NotRunning,
    /// Left in the mailbox of an actor that stopped.
    LeftInMailbox,
}

/// One message that never reached its actor: which actor, what kind of
/// message (its type: no payload), why, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub actor: &'static str,
    pub message: &'static str,
    pub reason: DeadReason,
    pub at: DateTime<Utc>,
}

/// A place's dead letters: how many since the service started, and the
/// last [`RECENT_DEAD_LETTERS`]. Touched only when a message is lost.
#[derive(Default)]
pub struct DeadLetters {
    count: AtomicU64,
    recent: Mutex<VecDeque<DeadLetter>>,
}

impl DeadLetters {
    /// `n` messages like `letter` were lost.
    pub fn record(&self, letter: DeadLetter, n: u64) {
        if n == 0 {
            return;
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        let mut recent = self.recent.lock().expect("dead letters lock");
        let keep = usize::try_from(n).unwrap_or(usize::MAX);
        for _ in 0..keep.min(RECENT_DEAD_LETTERS) {
            if recent.len() == RECENT_DEAD_LETTERS {
                recent.pop_front();
            }
            recent.push_back(letter.clone());
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The last few, oldest first.
    pub fn recent(&self) -> Vec<DeadLetter> {
        let recent = self.recent.lock().expect("dead letters lock");
        recent.iter().cloned().collect()
    }
}

/// A message type's short name (`UserMsg` for
/// `troupe_actors::users::actor::UserMsg`): what a dead letter shows.
pub fn message_kind<M>() -> &'static str {
    let name = std::any::type_name::<M>();
    let path = name.split('<').next().unwrap_or(name);
    path.rsplit("::").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_waits_from_its_stamp_to_its_taking() {
        let times = SendTimes::default();
        times.stamp(0);
        tokio::time::advance(ms(5)).await;
        times.stamp(1);
        tokio::time::advance(ms(20)).await;
        assert_eq!(times.waited(0), Some(ms(25)));
        assert_eq!(times.waited(1), Some(ms(20)));
        assert_eq!(times.waited(2), None, "not stamped yet");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_left_from_an_earlier_lap_is_no_wait_and_a_later_lap_a_lower_bound() {
        let times = SendTimes::default();
        times.stamp(3);
        // Message 3 + RING is taken before its sender stamped it.
        assert_eq!(times.waited(3 + RING as u64), None);
        // Message 4 is more than RING behind: its slot holds a later send's.
        tokio::time::advance(ms(10)).await;
        times.stamp(4 + RING as u64);
        tokio::time::advance(ms(7)).await;
        assert_eq!(times.waited(4), Some(ms(7)));
        // The tag wraps: sequence numbers far on still compare.
        let far = (TAG_MASK + 1) * 3 + 9;
        times.stamp(far);
        assert_eq!(times.waited(far), Some(Duration::ZERO));
    }

    #[test]
    fn buckets_count_each_time_once_under_its_bound_and_sum_them() {
        let buckets = Buckets::default();
        buckets.observe(Duration::from_micros(50)); // ≤ 0.1 ms
        buckets.observe(ms(1)); // on a bound: that bucket
        buckets.observe(ms(300)); // ≤ 0.5 s
        buckets.observe(Duration::from_secs(60)); // +Inf
        let h = buckets.read();
        assert_eq!(h.count(), 4);
        assert_eq!(h.counts[0], 1);
        assert_eq!(
            h.counts[BOUNDS.iter().position(|b| *b == 0.001).unwrap()],
            1
        );
        assert_eq!(h.counts[BOUNDS.iter().position(|b| *b == 0.5).unwrap()], 1);
        assert_eq!(h.counts[BOUNDS.len()], 1);
        assert!((h.sum_seconds - 60.30105).abs() < 1e-9, "{}", h.sum_seconds);
        let mut twice = h;
        twice.add(&h);
        assert_eq!(twice.count(), 8);
        let buckets = twice.buckets();
        assert_eq!(buckets.len(), BOUNDS.len() + 1);
        assert_eq!(buckets.last(), Some(&(f64::MAX, 2)));
    }

    #[test]
    fn dead_letters_are_counted_and_the_last_few_kept() {
        let dead = DeadLetters::default();
        let letter = |n: u64| DeadLetter {
            actor: "cache",
            message: "CacheMsg",
            reason: DeadReason::NotRunning,
            at: DateTime::from_timestamp(n as i64, 0).unwrap(),
        };
        dead.record(letter(0), 0);
        assert_eq!((dead.count(), dead.recent().len()), (0, 0));
        for n in 1..=20 {
            dead.record(letter(n), 1);
        }
        let recent = dead.recent();
        assert_eq!(dead.count(), 20);
        assert_eq!(recent.len(), RECENT_DEAD_LETTERS);
        assert_eq!(recent.first(), Some(&letter(5)), "the oldest ones go");
        assert_eq!(recent.last(), Some(&letter(20)));
        // A whole mailbox lost at once: counted in full, kept as the last few.
        dead.record(letter(99), 1_000);
        assert_eq!(dead.count(), 1_020);
        assert!(dead.recent().iter().all(|l| *l == letter(99)));
    }

    #[test]
    fn a_message_kind_is_its_types_short_name() {
        struct UserMsg;
        assert_eq!(message_kind::<UserMsg>(), "UserMsg");
        assert_eq!(message_kind::<Option<String>>(), "Option");
    }
}
