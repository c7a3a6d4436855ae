//! Priorities: which due job runs first, and the bound on how long a low
//! priority can be passed over.
//!
//! A job's priority is a small integer ([`PRIORITIES`], default 0; higher
//! runs first). Each job gets a *rank* when it is enqueued: the time it is
//! due (not before the enqueue) moved earlier by `priority × queue.priority_aging`
//! ([`rank`]). Due jobs are claimed in rank order (then by id), so:
//!
//! - among jobs due at the same time, higher priority first;
//! - within one priority, FIFO by due time, then id;
//! - *aging*: a job's effective priority ([`effective_priority`]) rises by one
//!   for every `priority_aging` it has waited since it became due. A job of
//!   priority `p` due at `t` ranks ahead of every job that becomes due after
//!   `t + (MAX - p) × priority_aging`, whatever that job's priority: it is
//!   passed over by newer jobs for at most `(MAX - p) × priority_aging`
//!   (200 × aging for the lowest priority; 33 min 20 s with the default 10 s).
//!
//! The rank is one stored field (`rank`), so the listing sorts by it on the
//! server (FerretDB and MongoDB alike) with no extra query. It is fixed for
//! the job's life: a retry after backoff keeps its place in line (as it did
//! when the queue was FIFO by `createdAt`), and a change of
//! `queue.priority_aging` applies to jobs enqueued after it.

use std::ops::RangeInclusive;
use std::time::Duration;

use mongodb::bson::DateTime;

/// Accepted priorities: higher runs first.
pub const PRIORITIES: RangeInclusive<i32> = -100..=100;

/// The rank of a job of `priority`, due at `due`, enqueued at `enqueued`:
/// `max(due, enqueued) - priority × aging`. Due jobs are claimed in
/// ascending rank. (A `due` in the past counts as the enqueue time, so no
/// one jumps the line by back-dating a job.)
pub fn rank(due: DateTime, enqueued: DateTime, priority: i32, aging: Duration) -> DateTime {
    let from = due.timestamp_millis().max(enqueued.timestamp_millis());
    let lead = i64::from(priority).saturating_mul(aging.as_millis().min(i64::MAX as u128) as i64);
    DateTime::from_millis(from.saturating_sub(lead))
}

/// The effective priority at `now` of the job ranked `rank`: its priority
/// plus the number of `aging` periods it has waited since it became due
/// (fractional, negative while it is not due). Claiming in ascending rank is
/// claiming in descending effective priority at any instant.
pub fn effective_priority(rank: DateTime, now: DateTime, aging: Duration) -> f64 {
    let since = now.timestamp_millis() - rank.timestamp_millis();
    since as f64 / aging.as_millis().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGING: Duration = Duration::from_secs(10);
    const MAX: i32 = *PRIORITIES.end();

    fn at(secs: i64) -> DateTime {
        DateTime::from_millis(1_800_000_000_000 + secs * 1000)
    }

    /// Rank of a job of `priority` due (and enqueued) at `secs`.
    fn job(secs: i64, priority: i32) -> DateTime {
        rank(at(secs), at(secs), priority, AGING)
    }

    #[test]
    fn higher_priority_ranks_first_among_jobs_due_together() {
        let mut jobs = [(0, job(0, 0)), (10, job(0, 10)), (-5, job(0, -5))];
        jobs.sort_by_key(|(_, rank)| *rank);
        assert_eq!(jobs.map(|(p, _)| p), [10, 0, -5]);
    }

    #[test]
    fn within_a_priority_the_earlier_due_job_ranks_first() {
        assert!(job(0, 7) < job(1, 7));
        assert!(job(0, -100) < job(1, -100));
    }

    #[test]
    fn effective_priority_rises_by_one_per_aging_period_waited() {
        let due = job(0, 3);
        let e = |secs| effective_priority(due, at(secs), AGING);
        assert_eq!(e(0), 3.0);
        assert_eq!(e(10), 4.0);
        assert_eq!(e(95), 12.5);
    }

    #[test]
    fn a_job_is_passed_over_for_at_most_max_minus_p_aging_periods() {
        for p in [*PRIORITIES.start(), -5, 0, 42, MAX] {
            let bound = i64::from(MAX - p) * AGING.as_secs() as i64;
            let old = job(0, p);
            // Any job due after the bound ranks behind it, even at MAX priority.
            assert!(old < job(bound + 1, MAX), "p = {p}");
            // The bound is tight: a MAX job due just before it still overtakes.
            if p < MAX {
                assert!(job(bound - 1, MAX) < old, "p = {p}");
            }
        }
    }

    #[test]
    fn a_due_time_in_the_past_counts_from_the_enqueue() {
        assert_eq!(rank(at(-3600), at(0), 0, AGING), at(0));
        assert_eq!(rank(at(60), at(0), 1, AGING), at(50));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let far = DateTime::from_millis(i64::MIN + 5);
        assert_eq!(
            rank(far, far, MAX, Duration::MAX).timestamp_millis(),
            i64::MIN
        );
    }
}
