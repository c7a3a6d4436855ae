//! `[queue]` in the configuration, and the retry backoff it defines.

use std::time::Duration;

use serde::Deserialize;

use crate::queue::clock::Clock;
use crate::queue::limit::Limits;
use crate::queue::schedule::{Schedule, ScheduleError, Schedules};
use crate::store::error_chain;
use crate::validate::{ConfigErrors, Validate};

/// `[queue]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueConfig {
    /// How often the poller looks for due jobs (it also wakes on enqueue).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Executors in the pool: jobs run at once by this instance.
    pub executors: usize,
    /// How long a claim holds a job; renewed while the job runs.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Longest run of one attempt.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Attempts before a job is `failed`.
    pub max_attempts: i32,
    /// Retry delay after attempt n: `backoff_base * 2^(n-1)`, at most `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Completed jobs (and all attempt records) older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the `queue.prune` job runs (once per period across the
    /// fleet: slots at multiples of it since the Unix epoch).
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// Periodic jobs: `[queue.schedules.<name>]` (see [`crate::queue::schedule`]).
    #[serde(default)]
    pub schedules: Schedules,
    /// Fleet-wide concurrency limits by job type: `[queue.limits."<type>"]`
    /// (see [`crate::queue::limit`]); a limit an operator stores replaces
    /// its type's.
    #[serde(default)]
    pub limits: Limits,
    /// The queue figures on `/metrics` are recounted at most this often, on
    /// the poller's tick after a scrape asked for them (see
    /// [`crate::queue::snapshot`]).
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// How long a job enqueued *held* (written ahead of its precondition,
    /// e.g. the welcome job before its user) stays unclaimable by every
    /// instance unless its producer releases it first. A producer that
    /// crashed in between leaves it held this long; then it runs (and fails
    /// if its precondition never came), as any job would.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// Largest payload an enqueue accepts, in bytes as stored (BSON).
    pub max_payload: usize,
    /// A waiting job's effective priority rises by one per this much time
    /// waited since it became due ([`crate::queue::priority`]): a job of
    /// priority `p` is passed over by newer jobs for at most
    /// `(100 - p) × priority_aging`.
    #[serde(with = "humantime_serde")]
    pub priority_aging: Duration,
    /// Finished attempts are written in bulk ([`crate::queue::finisher`]):
    /// a batch is flushed once it holds this many outcomes…
    pub finish_batch: usize,
    /// …or this long after its first outcome, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub finish_delay: Duration,
    /// A running handler's progress reports are written to its job (and
    /// published) at most once per this long; the latest report wins
    /// ([`crate::queue::controls`]).
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// How often each instance's poller sweeps the waiting jobs of flows
    /// (a page of them), releasing or failing those whose dependencies
    /// ended without releasing them ([`crate::queue::flow`]).
    #[serde(with = "humantime_serde")]
    pub flow_sweep: Duration,
    /// Most jobs one poll claims at once (and lists): a batch is bounded by
    /// this and by the executors free then ([`crate::queue::store::batch`]).
    pub claim_batch: usize,
    /// A batch with at least this many reserved jobs is taken as one lot —
    /// one `updateMany` and one read ([`crate::queue::store::lot`]) — and a
    /// smaller one a job at a time; 0: always a job at a time.
    pub lot_min: usize,
    /// Whether the poller claims jobs (`true` in every deployment). A test
    /// turns it off to run each job itself, through
    /// [`crate::queue::worker::Worker`], with nothing claimed behind its back.
    #[serde(default = "claims")]
    pub poller_claims: bool,
    /// The queue's "now" ([`crate::queue::clock`]): the system clock, unless
    /// a test sets a manual one. Not a setting of the configuration files.
    #[serde(skip)]
    pub clock: Clock,
}

/// The largest `queue.claim_batch`: one claim's attempt records go to the
/// store in one `insert` command, and a larger one would only hold more
/// executors' worth of listed jobs that may be stale by the time they are run.
pub const MAX_CLAIM_BATCH: usize = 1000;

/// `queue.poller_claims` when unset: the poller claims.
fn claims() -> bool {
    true
}

impl QueueConfig {
    /// The delay before the attempt after attempt `n` (1-based):
    /// `backoff_base * 2^(n-1)`, at most `backoff_max`. An attempt number
    /// below 1 counts as 1; the doubling stops at 2^29, so no overflow.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exp = attempt.clamp(1, 30) as u32 - 1;
        self.backoff_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.backoff_max)
    }
}

/// The lease is renewed every third of it, so it needs some length; a zero
/// period would panic the timer that drives it. An enqueue is held to a
/// payload size (a BSON document holds at least 5 bytes; the job document
/// must stay well under MongoDB's 16 MiB) and a priority aging (positive;
/// at most a day, so ranks stay sane). Each `[queue.schedules.<name>]`
/// parses; whether its `type` has a handler is checked when the actor
/// system starts (it knows the handlers).
impl Validate for QueueConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(self.executors >= 1, "executors", "must be at least 1");
        errors.ensure(self.max_attempts >= 1, "max_attempts", "must be at least 1");
        errors.ensure(
            self.lease >= Duration::from_millis(300),
            "lease",
            "must be at least 300ms",
        );
        errors.ensure(
            !self.poll_interval.is_zero(),
            "poll_interval",
            "must be positive",
        );
        errors.ensure(
            !self.job_timeout.is_zero(),
            "job_timeout",
            "must be positive",
        );
        errors.ensure(
            self.backoff_max >= self.backoff_base,
            "backoff_max",
            "must be at least queue.backoff_base",
        );
        errors.ensure(
            !self.prune_interval.is_zero(),
            "prune_interval",
            "must be positive",
        );
        errors.ensure(
            (5..=8 * 1024 * 1024).contains(&self.max_payload),
            "max_payload",
            "must be from 5 bytes to 8 MiB",
        );
        errors.ensure(
            (Duration::from_millis(1)..=Duration::from_secs(86_400)).contains(&self.priority_aging),
            "priority_aging",
            "must be from 1ms to 1d",
        );
        errors.ensure(
            (1..=4096).contains(&self.finish_batch),
            "finish_batch",
            "must be from 1 to 4096",
        );
        // An outcome waits at most this long for its flush, with its
        // lease no longer renewed by its executor (last renewed up to a
        // third of the lease before): it must be written well before the
        // lease ends, or another instance runs the job again.
        errors.ensure(
            self.finish_delay <= self.lease / 2,
            "finish_delay",
            "must be at most half of queue.lease",
        );
        errors.ensure(
            (Duration::from_millis(10)..=Duration::from_secs(60)).contains(&self.progress_interval),
            "progress_interval",
            "must be from 10ms to 1m",
        );
        errors.ensure(
            (Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.flow_sweep),
            "flow_sweep",
            "must be from 10ms to 1h",
        );
        errors.ensure(
            (1..=MAX_CLAIM_BATCH).contains(&self.claim_batch),
            "claim_batch",
            "must be from 1 to 1000",
        );
        errors.ensure(
            self.lot_min <= MAX_CLAIM_BATCH,
            "lot_min",
            "must be from 0 to 1000",
        );
        for (kind, limit) in &self.limits {
            if let Err(err) = limit.validate() {
                errors.refuse("limits", format!("queue.limits.{kind:?}: {err}"));
            }
        }
        for (name, config) in &self.schedules {
            if let Err(err) = Schedule::parse(name, config) {
                let field = match err {
                    ScheduleError::Cron(_) => ".cron",
                    ScheduleError::Payload(_) => ".payload",
                    ScheduleError::Name => "",
                };
                let problem = format!("queue.schedules.{name}{field}: {}", error_chain(&err));
                errors.refuse("schedules", problem);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_ms: u64, max_ms: u64) -> QueueConfig {
        QueueConfig {
            poll_interval: Duration::from_secs(1),
            executors: 1,
            lease: Duration::from_secs(30),
            job_timeout: Duration::from_secs(10),
            max_attempts: 5,
            backoff_base: Duration::from_millis(base_ms),
            backoff_max: Duration::from_millis(max_ms),
            retention: Duration::from_secs(3600),
            prune_interval: Duration::from_secs(60),
            schedules: Default::default(),
            limits: Default::default(),
            stats_interval: Duration::from_secs(10),
            hold: Duration::from_secs(30),
            max_payload: 65536,
            priority_aging: Duration::from_secs(10),
            finish_batch: 256,
            finish_delay: Duration::from_millis(2),
            progress_interval: Duration::from_millis(500),
            flow_sweep: Duration::from_secs(2),
            claim_batch: 256,
            lot_min: 32,
            poller_claims: true,
            clock: Clock::system(),
        }
    }

    #[test]
    fn the_delay_doubles_with_each_attempt() {
        let queue = config(200, 60_000);
        let delays: Vec<u128> = (1..=5).map(|n| queue.backoff(n).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200]);
    }

    #[test]
    fn the_delay_stops_growing_at_the_maximum() {
        let queue = config(1000, 5000);
        assert_eq!(queue.backoff(3), Duration::from_millis(4000));
        assert_eq!(queue.backoff(4), Duration::from_millis(5000));
        assert_eq!(queue.backoff(50), Duration::from_millis(5000));
    }

    #[test]
    fn huge_or_nonsense_attempt_numbers_neither_overflow_nor_shrink() {
        let queue = config(1000, u64::MAX / 2);
        assert_eq!(queue.backoff(0), Duration::from_secs(1));
        assert_eq!(queue.backoff(-7), Duration::from_secs(1));
        assert_eq!(queue.backoff(i32::MAX), queue.backoff(30));
        assert!(queue.backoff(i32::MAX) >= queue.backoff(29));
    }

    #[test]
    fn queue_values_are_each_reported_under_their_own_key() {
        use crate::validate::refused_after;
        let ms = Duration::from_millis(1);
        let valid = || config(200, 60_000);
        assert!(refused_after(valid(), |_| {}).is_empty());
        assert_eq!(refused_after(valid(), |q| q.executors = 0), ["executors"]);
        assert_eq!(
            refused_after(valid(), |q| q.max_attempts = 0),
            ["max_attempts"]
        );
        assert!(refused_after(valid(), |q| q.max_attempts = 1).is_empty());
        assert_eq!(refused_after(valid(), |q| q.lease = 299 * ms), ["lease"]);
        assert!(refused_after(valid(), |q| q.lease = 300 * ms).is_empty());
        assert_eq!(
            refused_after(valid(), |q| q.poll_interval = Duration::ZERO),
            ["poll_interval"]
        );
        assert_eq!(
            refused_after(valid(), |q| q.job_timeout = Duration::ZERO),
            ["job_timeout"]
        );
        assert_eq!(
            refused_after(valid(), |q| q.backoff_max = q.backoff_base - ms),
            ["backoff_max"]
        );
        assert!(refused_after(valid(), |q| q.backoff_max = q.backoff_base).is_empty());
        assert_eq!(
            refused_after(valid(), |q| q.prune_interval = Duration::ZERO),
            ["prune_interval"]
        );
        for (payload, keys) in [
            (4, 1),
            (5, 0),
            (8 * 1024 * 1024, 0),
            (8 * 1024 * 1024 + 1, 1),
        ] {
            let refused = refused_after(valid(), |q| q.max_payload = payload);
            assert_eq!(refused.len(), keys, "{payload}: {refused:?}");
        }
        for (batch, keys) in [(0, 1), (1, 0), (4096, 0), (4097, 1)] {
            let refused = refused_after(valid(), |q| q.finish_batch = batch);
            assert_eq!(refused.len(), keys, "{batch}: {refused:?}");
        }
        assert!(refused_after(valid(), |q| q.finish_delay = 15 * 1000 * ms).is_empty());
        assert_eq!(
            refused_after(valid(), |q| q.finish_delay = 15_001 * ms),
            ["finish_delay"]
        );
        for (batch, keys) in [(0, 1), (1, 0), (1000, 0), (1001, 1)] {
            let refused = refused_after(valid(), |q| q.claim_batch = batch);
            assert_eq!(refused.len(), keys, "claim_batch {batch}: {refused:?}");
        }
        for (lot, keys) in [(0, 0), (1000, 0), (1001, 1)] {
            let refused = refused_after(valid(), |q| q.lot_min = lot);
            assert_eq!(refused.len(), keys, "lot_min {lot}: {refused:?}");
        }
        for (aging, keys) in [(0, 1), (1, 0), (86_400_000, 0), (86_401_000, 1)] {
            let refused = refused_after(valid(), |q| q.priority_aging = aging * ms);
            assert_eq!(refused.len(), keys, "{aging}ms: {refused:?}");
        }
    }

    #[test]
    fn every_broken_rule_is_reported_not_just_the_first() {
        use crate::validate::refused_after;
        let keys = refused_after(config(200, 60_000), |q| {
            q.executors = 0;
            q.poll_interval = Duration::ZERO;
            q.max_payload = 0;
        });
        assert_eq!(keys, ["executors", "poll_interval", "max_payload"]);
    }

    #[test]
    fn a_schedule_with_a_bad_name_or_cron_pattern_is_refused_naming_it() {
        use crate::queue::schedule::ScheduleConfig;
        use crate::validate::Validate;
        let schedule = |cron: &str| ScheduleConfig {
            cron: cron.into(),
            kind: "noop".into(),
            payload: Default::default(),
        };
        let with = |name: &str, cron: &str| {
            let mut queue = config(200, 60_000);
            queue.schedules.insert(name.into(), schedule(cron));
            queue.validate()
        };
        assert!(with("nightly", "0 30 3 * * *").is_ok());
        let err = with("nightly", "30 3 * *").unwrap_err();
        assert_eq!(err.keys(), ["schedules"]);
        assert!(
            err.to_string().contains("queue.schedules.nightly.cron"),
            "{err}"
        );
        let err = with("bad.name", "* * * * *").unwrap_err();
        assert_eq!(err.keys(), ["schedules"]);
        assert!(
            err.to_string().contains("queue.schedules.bad.name:"),
            "{err}"
        );
    }
}
