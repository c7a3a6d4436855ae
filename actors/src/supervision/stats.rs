//! [`ActorStats`]: what ractor does not tell us about an actor — its mailbox
//! backlog, the work in flight, messages handled, handling time — and the
//! place's fault switch ([`super::fault`]).
//!
//! # What is counted
//! ractor exposes no mailbox length, so we count three moments of a message:
//! - *sent*: every send through an [`ActorSlot`](crate::supervision::slot::ActorSlot)
//!   (or an explicit [`ActorStats::sent`] for self-sends and timers);
//! - *taken*: [`ActorStats::begin`], first thing in `handle`;
//! - *handled*: when the [`Handling`] guard `begin` returned is dropped —
//!   the work the message caused is done.
//!
//! `mailbox_backlog` = sent − taken; `in_flight` = taken − handled;
//! `messages_handled` counts handled messages. The handling time is from
//! taking the message (before an injected delay) to the guard's drop; the
//! wait from its send to its taking ([`super::mailbox`]: the send instant
//! rides beside the message, numbered like it). Both go to a histogram of
//! atomics (`/metrics`, by actor kind) and to the window the percentiles
//! are read from. Messages that never reached the actor are its dead
//! letters ([`ActorStats::dead_letter`]).
//!
//! # Actors that hand the work to a task
//! An actor whose `handle` spawns the real work (a store call, bcrypt) and
//! returns moves the guard into that task, so the time covers the work,
//! not the spawn:
//! ```ignore
//! let handling = state.stats.begin(&myself.get_cell()).await;
//! state.tasks.spawn(handling.measure(async move { users.login(..).await }));
//! ```
//! A guard dropped without finishing (a handler that panics, a task that is
//! aborted) still counts the message as handled, so the backlog and
//! `in_flight` stay true; its time is recorded too.
//!
//! The stats belong to the actor's *place* in the tree, not its
//! incarnation, so counts survive restarts; a new incarnation starts with
//! an empty mailbox (its backlog is reset).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorCell;
use serde::Serialize;
// tokio's clock, so tests can drive it with `tokio::time::pause`.
use tokio::time::Instant;

use super::fault::{Fault, FaultSwitch};
use super::mailbox::{Buckets, DeadLetter, DeadLetters, Histogram, SendTimes};

/// How many recent messages the percentiles are computed over.
pub const WINDOW: usize = 1024;

/// Counts and recent handling times of one place; see the module docs.
#[derive(Default)]
pub struct ActorStats {
    sent: AtomicU64,
    taken: AtomicU64,
    handled: AtomicU64,
    recent: Mutex<Window>,
    fault: FaultSwitch,
    restarts: AtomicU64,
    send_times: SendTimes,
    wait: Buckets,
    handling: Buckets,
    dead: DeadLetters,
}

/// Time percentiles over the last [`WINDOW`] messages (handling, or wait
/// in the mailbox), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timings {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl ActorStats {
    /// One message was sent to the actor.
    pub fn sent(&self) {
        let seq = self.sent.fetch_add(1, Ordering::Relaxed);
        self.send_times.stamp(seq);
    }

    /// A new incarnation starts with an empty mailbox: what the last one
    /// left untaken is gone. Work it had in flight still ends (its guards
    /// are dropped with its tasks). Returns how many messages were left.
    pub fn restarted(&self) -> u64 {
        let taken = self.taken.load(Ordering::Relaxed);
        self.sent
            .swap(taken, Ordering::Relaxed)
            .saturating_sub(taken)
    }

    /// `n` messages like `letter` never reached the actor.
    pub fn dead_letter(&self, letter: DeadLetter, n: u64) {
        self.dead.record(letter, n);
    }

    /// Dead letters since the service started.
    pub fn dead_letters(&self) -> u64 {
        self.dead.count()
    }

    /// The last few dead letters, oldest first.
    pub fn recent_dead_letters(&self) -> Vec<DeadLetter> {
        self.dead.recent()
    }

    /// Every message's wait in the mailbox since the service started.
    pub fn wait_histogram(&self) -> Histogram {
        self.wait.read()
    }

    /// Every message's handling time since the service started.
    pub fn handling_histogram(&self) -> Histogram {
        self.handling.read()
    }

    /// Count a restart of this place's actor; returns the total.
    pub fn note_restart(&self) -> u64 {
        self.restarts.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Restarts of this place's actor since the service started.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Messages whose work is done, since the service started.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Messages sent and not taken from the mailbox yet.
    pub fn backlog(&self) -> u64 {
        let taken = self.taken.load(Ordering::Relaxed);
        self.sent.load(Ordering::Relaxed).saturating_sub(taken)
    }

    /// Messages taken whose work is not done yet.
    pub fn in_flight(&self) -> u64 {
        let handled = self.handled.load(Ordering::Relaxed);
        self.taken.load(Ordering::Relaxed).saturating_sub(handled)
    }

    /// Percentiles of the recent handling times; `None` before the first.
    pub fn timings(&self) -> Option<Timings> {
        self.recent.lock().expect("stats lock").timings()
    }

    /// Percentiles of the recent waits in the mailbox; `None` before the
    /// first.
    pub fn waits(&self) -> Option<Timings> {
        self.recent.lock().expect("stats lock").waits()
    }

    /// Arm a fault for the next message.
    pub fn inject(&self, fault: Fault) {
        self.fault.arm(fault);
    }

    /// Call first thing in `handle`: takes the message off the backlog,
    /// meets an armed fault, and returns the guard that times the work
    /// until it is dropped (see the module docs).
    pub async fn begin(self: &Arc<Self>, actor: &ActorCell) -> Handling {
        let handling = self.take();
        self.fault.trip(actor).await;
        handling
    }

    /// The message is taken from the mailbox: its time starts now.
    fn take(self: &Arc<Self>) -> Handling {
        let seq = self.taken.fetch_add(1, Ordering::Relaxed);
        let waited = self.send_times.waited(seq);
        if let Some(waited) = waited {
            self.wait.observe(waited);
        }
        Handling {
            stats: Arc::clone(self),
            started: Instant::now(),
            waited,
        }
    }

    fn finished(&self, took: Duration, waited: Option<Duration>) {
        self.handling.observe(took);
        self.recent.lock().expect("stats lock").push(took, waited);
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// One message's work, from taking it to this guard's drop, which counts it
/// as handled and records its time. `Send`: move it into the task that does
/// the work.
#[must_use = "the message counts as handled when this guard is dropped"]
pub struct Handling {
    stats: Arc<ActorStats>,
    started: Instant,
    waited: Option<Duration>,
}

impl Handling {
    /// Run `work` and drop the guard when it is done (or dropped unfinished).
    pub async fn measure<F: Future>(self, work: F) -> F::Output {
        let output = work.await;
        drop(self);
        output
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.stats.finished(self.started.elapsed(), self.waited);
    }
}

/// The last [`WINDOW`] handling times and waits, in microseconds.
#[derive(Default)]
struct Window {
    handling: Times,
    waits: Times,
}

impl Window {
    fn push(&mut self, took: Duration, waited: Option<Duration>) {
        self.handling.push(took);
        if let Some(waited) = waited {
            self.waits.push(waited);
        }
    }

    fn timings(&self) -> Option<Timings> {
        self.handling.timings()
    }

    fn waits(&self) -> Option<Timings> {
        self.waits.timings()
    }
}

/// The last [`WINDOW`] times of one kind, in microseconds.
#[derive(Default)]
struct Times(VecDeque<u32>);

impl Times {
    fn push(&mut self, took: Duration) {
        if self.0.len() == WINDOW {
            self.0.pop_front();
        }
        self.0
            .push_back(took.as_micros().min(u32::MAX as u128) as u32);
    }

    /// Nearest-rank percentiles (rounded index) of the window.
    fn timings(&self) -> Option<Timings> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted: Vec<u32> = self.0.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Some(Timings {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_over_the_last_window_of_times() {
        let mut window = Times::default();
        assert_eq!(window.timings(), None);
        for n in 1..=100 {
            window.push(ms(n));
        }
        let t = window.timings().unwrap();
        assert_eq!((t.p50_ms, t.p99_ms), (51.0, 99.0));
        // A full window of 1 ms pushes the older, slower times out.
        for _ in 0..WINDOW {
            window.push(ms(1));
        }
        assert_eq!(window.0.len(), WINDOW);
        let t = window.timings().unwrap();
        assert_eq!((t.p50_ms, t.p99_ms), (1.0, 1.0));
    }

    #[test]
    fn times_keep_microseconds_and_saturate() {
        let mut window = Times::default();
        window.push(Duration::from_micros(1_500));
        assert_eq!(window.timings().unwrap().p50_ms, 1.5);
        window.push(Duration::from_secs(10_000_000));
        assert_eq!(window.timings().unwrap().p99_ms, u32::MAX as f64 / 1000.0);
    }

    #[test]
    fn backlog_is_sent_minus_taken_and_in_flight_taken_minus_handled() {
        let stats = Arc::new(ActorStats::default());
        for _ in 0..3 {
            stats.sent();
        }
        assert_eq!(
            (stats.backlog(), stats.in_flight(), stats.handled()),
            (3, 0, 0)
        );
        let first = stats.take();
        let second = stats.take();
        assert_eq!(
            (stats.backlog(), stats.in_flight(), stats.handled()),
            (1, 2, 0)
        );
        drop(first);
        assert_eq!(
            (stats.backlog(), stats.in_flight(), stats.handled()),
            (1, 1, 1)
        );
        drop(second);
        assert_eq!(
            (stats.backlog(), stats.in_flight(), stats.handled()),
            (1, 0, 2)
        );
        assert!(stats.timings().is_some());
    }

    #[test]
    fn a_new_incarnation_starts_with_an_empty_mailbox_and_keeps_its_work() {
        let stats = Arc::new(ActorStats::default());
        for _ in 0..5 {
            stats.sent();
        }
        let working = stats.take();
        stats.restarted(); // four messages died with the old mailbox
        assert_eq!((stats.backlog(), stats.in_flight()), (0, 1));
        stats.sent();
        assert_eq!(stats.backlog(), 1);
        drop(working); // the old incarnation's work ends after the restart
        assert_eq!((stats.in_flight(), stats.handled()), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_waits_from_its_send_to_its_taking_and_both_times_reach_the_histograms() {
        let stats = Arc::new(ActorStats::default());
        stats.sent();
        tokio::time::advance(ms(40)).await;
        stats.sent();
        tokio::time::advance(ms(10)).await;
        let first = stats.take(); // waited 50 ms
        tokio::time::advance(ms(30)).await;
        drop(first); // handled in 30 ms
        let second = stats.take(); // waited 10 + 30 ms
        drop(second);
        assert_eq!(stats.waits().unwrap().p99_ms, 50.0);
        let wait = stats.wait_histogram();
        assert_eq!(wait.count(), 2);
        assert!((wait.sum_seconds - 0.090).abs() < 1e-9, "{wait:?}");
        let handling = stats.handling_histogram();
        assert_eq!(handling.count(), 2);
        assert!((handling.sum_seconds - 0.030).abs() < 1e-9, "{handling:?}");
        // A message taken without a send counted (none here) records no wait.
        drop(stats.take());
        assert_eq!(stats.wait_histogram().count(), 2);
        assert_eq!(stats.handling_histogram().count(), 3);
    }

    #[test]
    fn a_restart_says_how_many_messages_its_mailbox_lost() {
        let stats = Arc::new(ActorStats::default());
        assert_eq!(stats.restarted(), 0);
        for _ in 0..4 {
            stats.sent();
        }
        drop(stats.take());
        assert_eq!(stats.restarted(), 3);
        assert_eq!(stats.restarted(), 0, "counted once");
        // Numbering goes on from the taken count: the next send's wait is its own.
        stats.sent();
        drop(stats.take());
        assert_eq!(stats.wait_histogram().count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_moved_into_a_task_times_the_work_not_the_spawn() {
        let stats = Arc::new(ActorStats::default());
        stats.sent();
        let handling = stats.take();
        let work = tokio::spawn(handling.measure(tokio::time::sleep(ms(250))));
        // The message is off the mailbox at once; its work is still running.
        tokio::task::yield_now().await;
        assert_eq!(
            (stats.backlog(), stats.in_flight(), stats.handled()),
            (0, 1, 0)
        );
        assert_eq!(stats.timings(), None);
        work.await.unwrap();
        assert_eq!((stats.in_flight(), stats.handled()), (0, 1));
        let t = stats.timings().unwrap();
        assert!((250.0..260.0).contains(&t.p50_ms), "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_task_still_counts_its_message_as_handled() {
        let stats = Arc::new(ActorStats::default());
        let handling = stats.take();
        let work = tokio::spawn(handling.measure(std::future::pending::<()>()));
        tokio::task::yield_now().await;
        assert_eq!(stats.in_flight(), 1);
        work.abort();
        assert!(work.await.unwrap_err().is_cancelled());
        assert_eq!((stats.in_flight(), stats.handled()), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_injected_delay_counts_in_the_handling_time() {
        let (actor, _) = ractor::Actor::spawn(None, Idle, ()).await.unwrap();
        let stats = Arc::new(ActorStats::default());
        stats.inject(Fault::Delay { delay_ms: 300 });
        drop(stats.begin(&actor.get_cell()).await);
        assert!(stats.timings().unwrap().p50_ms >= 300.0);
        for _ in 0..2 {
            drop(stats.begin(&actor.get_cell()).await);
        }
        assert_eq!(stats.handled(), 3);
        assert!(
            stats.timings().unwrap().p50_ms < 300.0,
            "the fault is met once"
        );
        actor.stop(None);
    }

    /// An actor that does nothing: a cell for `begin`.
    struct Idle;

    impl ractor::Actor for Idle {
        type Msg = ();
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ractor::ActorRef<()>,
            _: (),
        ) -> Result<(), ractor::ActorProcessingErr> {
            Ok(())
        }
    }
}
