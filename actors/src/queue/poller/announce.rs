//! The fleet's wake-up: jobs due here that this poller does not start at
//! once are announced to the other instances' pollers, which list the queue
//! without waiting for their tick.
//!
//! - **Announcing.** A job enqueued here, due now, that this poller will not
//!   claim at once (no idle executor, claims off, its type paused here or not
//!   run here) is announced as [`Event::JobsWaiting`] with its type, through
//!   the bus and the events relay (the fleet's stream). Coalesced
//!   ([`Announcer`]): at most one event per [`ANNOUNCE_EVERY`], carrying
//!   every type asked for meanwhile — a bulk enqueue costs a handful of
//!   events, not one per job.
//! - **Listening.** A subscription to the other instances' `JobsWaiting`
//!   ([`listen`], a task the poller owns) makes an idle poller that runs one
//!   of the types list the queue at once. A lost event costs only the wait
//!   for the next tick.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use tokio::task::{AbortHandle, JoinHandle};

use super::{send, PollerMsg, PollerState};
use crate::events::bus::{Filter, Scope};
use crate::events::{Event, EventKind, Registry};
use crate::supervision::stats::ActorStats;

/// At most one announcement per this long (per instance).
pub(super) const ANNOUNCE_EVERY: Duration = Duration::from_millis(5);

/// The poller's subscription to the fleet's announcements.
const SUBSCRIPTION: &str = "queue-poller";

/// Announcements waiting for the poller: more would say nothing new (one
/// listing answers them all), so the rest are dropped.
const BUFFER: usize = 4;

/// What to do about a request to announce.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Announce {
    /// Publish these types now.
    Now(Vec<String>),
    /// Publish when this much time has passed (arm the timer).
    Later(Duration),
    /// An announcement is due already; the type joins it.
    Joined,
}

/// Coalesces announcements: the first goes out at once, those within
/// [`ANNOUNCE_EVERY`] of it go out together when that time is up.
#[derive(Default)]
pub(super) struct Announcer {
    /// Types asked for since the last announcement (bounded by the types
    /// the fleet registers: only those are ever enqueued).
    types: BTreeSet<String>,
    last: Option<Instant>,
    /// The timer of the announcement due; aborted when dropped.
    timer: Option<AbortHandle>,
}

impl Announcer {
    /// Jobs of `kind` wait, at `now`.
    pub(super) fn request(&mut self, kind: &str, now: Instant) -> Announce {
        if !self.types.contains(kind) {
            self.types.insert(kind.to_owned());
        }
        if self.timer.is_some() {
            return Announce::Joined;
        }
        match self.last {
            Some(last) if now.duration_since(last) < ANNOUNCE_EVERY => {
                Announce::Later(ANNOUNCE_EVERY - now.duration_since(last))
            }
            _ => Announce::Now(self.take(now)),
        }
    }

    /// The timer armed for `Later` fired, at `now`: the types to publish.
    pub(super) fn due(&mut self, now: Instant) -> Vec<String> {
        self.timer = None;
        self.take(now)
    }

    fn take(&mut self, now: Instant) -> Vec<String> {
        self.last = Some(now);
        std::mem::take(&mut self.types).into_iter().collect()
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

/// Hand the other instances' announcements to `poller` until the task is
/// aborted (the poller owns it: see [`Listener`]).
pub(super) fn listen(
    registry: &Registry,
    poller: ActorRef<PollerMsg>,
    stats: Arc<ActorStats>,
) -> Listener {
    const KINDS: &[EventKind] = &[EventKind::JobsWaiting];
    let filter = Filter {
        kinds: Some(KINDS),
        scope: Scope::Others,
    };
    let mut announced = registry.subscribe_channel(SUBSCRIPTION, filter, BUFFER);
    Listener(tokio::spawn(async move {
        while let Some(published) = announced.recv().await {
            if let Event::JobsWaiting { job_types } = &published.event {
                let types = job_types.clone();
                send(&poller, &stats, PollerMsg::WaitingElsewhere(types));
            }
        }
    }))
}

/// The listening task; aborted when dropped (also if the poller panics).
pub(super) struct Listener(JoinHandle<()>);

impl Listener {
    /// Stop listening, and wait until the task has ended.
    pub(super) async fn stop(&mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Announcing and hearing announcements.
impl PollerState {
    /// Jobs of `kind` are due and this poller does not start them at once:
    /// tell the fleet (coalesced).
    pub(super) fn announce(&mut self, myself: &ActorRef<PollerMsg>, kind: &str) {
        match self.announcer.request(kind, Instant::now()) {
            Announce::Now(types) => self.publish_waiting(types),
            Announce::Later(after) => {
                let stats = Arc::clone(&self.args.stats);
                let timer = myself.send_after(after, move || {
                    stats.sent();
                    PollerMsg::Announce
                });
                self.announcer.timer = Some(timer.abort_handle());
            }
            Announce::Joined => {}
        }
    }

    /// The coalescing timer fired.
    pub(super) fn on_announce(&mut self) {
        let types = self.announcer.due(Instant::now());
        if !types.is_empty() {
            self.publish_waiting(types);
        }
    }

    fn publish_waiting(&self, job_types: Vec<String>) {
        let events = &self.args.queue.events;
        events.publish(Event::JobsWaiting { job_types });
    }

    /// Another instance announced jobs of `types`: list at once if this
    /// poller runs one of them (and is not paused for it).
    pub(super) fn on_waiting_elsewhere(&mut self, myself: &ActorRef<PollerMsg>, types: &[String]) {
        let local = self.args.queue.types.local();
        let ours = |kind: &String| local.contains(kind) && !self.pauses.types.contains(kind);
        if types.iter().any(ours) {
            self.candidates.due_again();
            self.wake(myself);
        }
    }

    /// Whether a job of `kind`, due now, is one this poller starts at once.
    pub(super) fn starts_at_once(&self, kind: &str) -> bool {
        let config = &self.args.queue.config;
        let idle = (0..self.pool.len()).any(|index| self.pool[index].is_idle());
        config.poller_claims
            && idle
            && !self.pauses.queue
            && !self.pauses.types.contains(kind)
            && self.args.queue.types.local().contains(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_announcement_goes_at_once_and_those_right_after_it_together() {
        let mut announcer = Announcer::default();
        let t0 = Instant::now();
        assert_eq!(
            announcer.request("noop", t0),
            Announce::Now(vec!["noop".into()])
        );
        let soon = t0 + Duration::from_millis(2);
        assert_eq!(
            announcer.request("sleep", soon),
            Announce::Later(Duration::from_millis(3))
        );
        // The poller arms its timer; further requests join the one due.
        announcer.timer = Some(tokio_abort_handle());
        for kind in ["noop", "sleep", "noop"] {
            assert_eq!(announcer.request(kind, soon), Announce::Joined);
        }
        let fired = t0 + ANNOUNCE_EVERY;
        assert_eq!(announcer.due(fired), ["noop", "sleep"]);
        // A request a full period after the last goes at once again.
        let later = fired + ANNOUNCE_EVERY;
        assert_eq!(
            announcer.request("noop", later),
            Announce::Now(vec!["noop".into()])
        );
    }

    #[test]
    fn a_thousand_requests_within_one_period_make_at_most_two_announcements() {
        let mut announcer = Announcer::default();
        let t0 = Instant::now();
        let mut published = 0;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(i);
            match announcer.request("noop", now) {
                Announce::Now(_) => published += 1,
                Announce::Later(_) => announcer.timer = Some(tokio_abort_handle()),
                Announce::Joined => {}
            }
        }
        published += usize::from(!announcer.due(t0 + ANNOUNCE_EVERY).is_empty());
        assert_eq!(published, 2);
    }

    /// An abort handle of a finished task (the tests arm no real timer).
    fn tokio_abort_handle() -> AbortHandle {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async { tokio::spawn(async {}).abort_handle() })
    }
}
