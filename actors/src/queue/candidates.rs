//! [`Candidates`]: the poller's list of jobs worth claiming, and when to
//! list the queue again.
//!
//! Listing is the queue's costliest query (on FerretDB it reads every
//! pending job, due or not), so the poller lists only when it has an idle
//! executor and no candidate left, never twice at once, and not again after
//! a listing found nothing until a tick or a nudge says something may be due.
//!
//! Candidates are tried in the listing's order, whatever order they arrive
//! in: jobs whose lease expired first, then pending ones by rank (see
//! [`crate::queue::priority`]), then id. A job enqueued here joins the line
//! at its rank, so a high-priority job enqueued while the executors are
//! busy runs before the lower ones listed earlier.
//!
//! The local line is the whole line only until the next tick: a tick drops
//! the listed candidates (others may have taken them), so what is left is
//! what was enqueued here since, and claiming from it would let those jobs
//! jump ahead of higher-ranked ones waiting in the store. After a tick the
//! poller lists before it claims again, unless the last listing found
//! nothing — then the local line is all there is, and a job enqueued here is
//! claimed by id without a listing.

use std::collections::BTreeMap;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::DateTime;

use crate::queue::job::{Candidate, JobStatus};

/// A candidate's place in line: expired leases first, then by rank (jobs
/// without one, from before ranks, first), then by id.
type Place = (bool, Option<i64>, ObjectId);

fn place(candidate: &Candidate) -> Place {
    (
        candidate.status != JobStatus::Processing,
        candidate.rank.map(|rank| rank.timestamp_millis()),
        candidate.id,
    )
}

/// What an idle executor should do next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Claim this job.
    Claim(Candidate),
    /// List the queue (the caller starts the listing and reports it with
    /// [`Candidates::listed`]); nothing to claim until then.
    List,
    /// Nothing to claim: wait for a listing in flight, a tick or a nudge.
    Wait,
}

#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// Jobs listed as claimable (or enqueued here), not yet tried, in line.
    queue: BTreeMap<Place, Candidate>,
    /// A listing is in flight.
    listing: bool,
    /// The last listing found nothing (or failed): wait for a tick or a nudge.
    exhausted: bool,
    /// A listing ended since the last tick, so the line holds every job
    /// that was claimable then, not only those enqueued here since.
    listed_since_tick: bool,
}

impl Candidates {
    /// The next thing to do for one idle executor.
    pub fn next(&mut self) -> Next {
        let line_is_whole = self.listed_since_tick || self.exhausted;
        if line_is_whole {
            if let Some((_, candidate)) = self.queue.pop_first() {
                return Next::Claim(candidate);
            }
        }
        if self.listing || (self.exhausted && self.queue.is_empty()) {
            return Next::Wait;
        }
        self.listing = true;
        Next::List
    }

    /// A listing finished: `Some(found)`, or `None` if it failed (then the
    /// next tick lists again).
    pub fn listed(&mut self, found: Option<Vec<Candidate>>) {
        self.listing = false;
        self.listed_since_tick = true;
        match found {
            Some(found) => {
                self.exhausted = found.is_empty();
                self.queue
                    .extend(found.into_iter().map(|found| (place(&found), found)));
            }
            None => self.exhausted = true,
        }
    }

    /// A tick: candidates older than a tick are dropped (others may have
    /// taken them), and the queue is worth listing again.
    pub fn tick(&mut self) {
        self.queue.clear();
        self.exhausted = false;
        self.listed_since_tick = false;
    }

    /// Something may be due now (a job was put back to pending): list again.
    pub fn due_again(&mut self) {
        self.exhausted = false;
    }

    /// This instance enqueued `id`, due now, ranked `rank`: claim it in
    /// its place in line without a listing (so `exhausted` stays). If a
    /// listing lists it too, the second claim loses the attempt reservation
    /// and is dropped.
    pub fn enqueued(&mut self, id: ObjectId, rank: DateTime) {
        if !self.queue.values().any(|c| c.id == id) {
            let candidate = Candidate::enqueued(id, rank);
            self.queue.insert(place(&candidate), candidate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(next: Next) -> ObjectId {
        match next {
            Next::Claim(candidate) => candidate.id,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_list_asks_for_one_listing_at_a_time() {
        let mut candidates = Candidates::default();
        assert!(matches!(candidates.next(), Next::List));
        assert!(
            matches!(candidates.next(), Next::Wait),
            "one listing in flight"
        );
        let (a, b) = (ObjectId::new(), ObjectId::new());
        let now = DateTime::now();
        candidates.listed(Some(vec![
            Candidate::enqueued(a, now),
            Candidate::enqueued(b, now),
        ]));
        assert_eq!(claims(candidates.next()), a, "oldest first");
        assert_eq!(claims(candidates.next()), b);
        assert!(matches!(candidates.next(), Next::List));
    }

    #[test]
    fn after_an_empty_or_failed_listing_it_waits_for_a_tick_or_a_nudge() {
        let mut candidates = Candidates::default();
        candidates.next();
        candidates.listed(Some(Vec::new()));
        assert!(matches!(candidates.next(), Next::Wait));
        candidates.tick();
        assert!(matches!(candidates.next(), Next::List));
        candidates.listed(None);
        assert!(matches!(candidates.next(), Next::Wait));
        candidates.due_again();
        assert!(matches!(candidates.next(), Next::List));
    }

    #[test]
    fn a_job_enqueued_here_is_claimed_without_listing_and_only_once() {
        let mut candidates = Candidates::default();
        candidates.next();
        candidates.listed(Some(Vec::new()));
        let id = ObjectId::new();
        candidates.enqueued(id, DateTime::now());
        candidates.enqueued(id, DateTime::now());
        assert_eq!(claims(candidates.next()), id);
        assert!(matches!(candidates.next(), Next::Wait), "still exhausted");
    }

    #[test]
    fn a_tick_drops_the_candidates_listed_before_it() {
        let mut candidates = Candidates::default();
        candidates.next();
        candidates.listed(Some(vec![Candidate::enqueued(
            ObjectId::new(),
            DateTime::now(),
        )]));
        candidates.tick();
        assert!(matches!(candidates.next(), Next::List));
    }

    #[test]
    fn after_a_tick_a_job_enqueued_here_waits_for_a_listing_that_may_rank_others_first() {
        let mut candidates = Candidates::default();
        candidates.next();
        candidates.listed(Some(vec![Candidate::enqueued(
            ObjectId::new(),
            DateTime::now(),
        )]));
        candidates.tick();
        let at = |ms: i64| DateTime::from_millis(1_800_000_000_000 + ms);
        let (waiting, local) = (ObjectId::new(), ObjectId::new());
        candidates.enqueued(local, at(20));
        assert!(matches!(candidates.next(), Next::List), "list first");
        assert!(
            matches!(candidates.next(), Next::Wait),
            "one listing at a time"
        );
        // The listing finds a job ranked ahead of the local one, and the
        // local one itself (claimed once).
        candidates.listed(Some(vec![
            Candidate::enqueued(waiting, at(10)),
            Candidate::enqueued(local, at(20)),
        ]));
        assert_eq!(claims(candidates.next()), waiting);
        assert_eq!(claims(candidates.next()), local);
    }

    #[test]
    fn candidates_are_tried_in_line_whatever_order_they_arrive_in() {
        let mut candidates = Candidates::default();
        candidates.next();
        let at = |ms: i64| DateTime::from_millis(1_800_000_000_000 + ms);
        let (old, late, early, expired) = (
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
        );
        let mut reclaim = Candidate::enqueued(expired, at(50));
        reclaim.status = JobStatus::Processing;
        let mut unranked = Candidate::enqueued(old, at(0));
        unranked.rank = None;
        candidates.listed(Some(vec![
            reclaim,
            unranked,
            Candidate::enqueued(late, at(30)),
        ]));
        // Enqueued here after the listing, ranked ahead of `late`.
        candidates.enqueued(early, at(20));
        let order: Vec<ObjectId> = (0..4).map(|_| claims(candidates.next())).collect();
        assert_eq!(order, [expired, old, early, late]);
    }
}
