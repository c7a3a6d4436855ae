//! [`Candidates`]: the poller's list of jobs worth claiming, and when to
//! list the queue again.
//!
//! Listing is the queue's costliest query (on FerretDB it reads every
//! pending job, due or not: about a second over 10,000 of them), so the
//! poller lists only when it has an idle executor and a line that is empty
//! or older than a tick, never twice at once, and not again after a listing
//! found nothing until a tick or a nudge says something may be due.
//!
//! Candidates are tried in the listing's order, whatever order they arrive
//! in: jobs whose lease expired first, then pending ones by rank (see
//! [`crate::queue::priority`]), then id. A job enqueued here joins the line
//! at its rank, so a high-priority job enqueued while the executors are
//! busy runs before the lower ones listed earlier.
//!
//! A tick makes the line *stale*: others may have taken some of it, and
//! jobs may have become due (or been enqueued elsewhere) that rank ahead of
//! it. The poller lists again at once, and **keeps claiming from the stale
//! line while that listing runs**; when it lands, it replaces the stale
//! line (what was enqueued here since it started stays). So a listing never
//! leaves the executors idle while the line still holds jobs — it used to,
//! once a tick, for as long as the listing took, which bounded a drain of a
//! large backlog on FerretDB — and the stale order rules only for one
//! listing's time. A stale candidate is as safe to claim as a fresh one:
//! every claim is fenced by its attempt record and its listed state
//! ([`crate::queue::store::batch`]); one others took costs a duplicate in a
//! batch's insert. The jobs handed out while a listing runs are left out of
//! what it finds (it read the store before their claims).
//!
//! A change of pauses drops the line at once (it was listed under the old
//! ones).

use std::collections::{BTreeMap, HashSet};

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
    /// Jobs listed as claimable (or enqueued here), not yet tried, in line;
    /// each with the listing generation it joined the line in.
    queue: BTreeMap<Place, (Candidate, u64)>,
    /// Bumped when a listing starts: what joined the line since is newer
    /// than that listing's read, and outlives its landing.
    generation: u64,
    /// A listing is in flight.
    listing: bool,
    /// Ids handed out while the listing in flight runs: it may list them
    /// again, as it read the store before their claims. At most one
    /// listing's worth of claims.
    tried: HashSet<ObjectId>,
    /// The last listing found nothing (or failed): wait for a tick or a nudge.
    exhausted: bool,
    /// A listing ended since the last tick, so the line holds every job
    /// that was claimable then, not only those enqueued here since.
    listed_since_tick: bool,
    /// Something became due while a listing was in flight: that listing
    /// may have read the store before it, so an empty answer must not make
    /// the line exhausted.
    due_meanwhile: bool,
}

impl Candidates {
    /// The next thing to do for one idle executor. After a [`Next::List`],
    /// ask again: a stale line stays claimable while the listing runs.
    pub fn next(&mut self) -> Next {
        let stale = !self.listed_since_tick && !self.exhausted;
        if stale && !self.listing {
            return self.start_listing();
        }
        if let Some((_, (candidate, _))) = self.queue.pop_first() {
            if self.listing {
                self.tried.insert(candidate.id);
            }
            return Next::Claim(candidate);
        }
        if self.listing || self.exhausted {
            return Next::Wait;
        }
        self.start_listing()
    }

    fn start_listing(&mut self) -> Next {
        self.listing = true;
        self.generation += 1;
        self.tried.clear();
        Next::List
    }

    /// A listing finished: `Some(found)`, or `None` if it failed (then the
    /// line stays as it is and the next tick lists again). What it found
    /// replaces the line, but for what was enqueued here since it started
    /// and what was handed out meanwhile.
    pub fn listed(&mut self, found: Option<Vec<Candidate>>) {
        self.listing = false;
        self.listed_since_tick = true;
        let due_meanwhile = std::mem::take(&mut self.due_meanwhile);
        let Some(found) = found else {
            self.exhausted = true;
            return;
        };
        self.exhausted = found.is_empty() && !due_meanwhile;
        let current = self.generation;
        self.queue
            .retain(|_, (_, generation)| *generation == current);
        for candidate in found {
            if !self.tried.contains(&candidate.id) {
                self.queue.insert(place(&candidate), (candidate, current));
            }
        }
        self.tried.clear();
    }

    /// A tick: the line is stale (others may have taken some of it, others
    /// may be due ahead of it) and the queue is worth listing again.
    pub fn tick(&mut self) {
        self.exhausted = false;
        self.listed_since_tick = false;
    }

    /// The pauses changed: the line, listed under the old ones, is dropped.
    pub fn pauses_changed(&mut self) {
        self.queue.clear();
        self.tick();
    }

    /// Something may be due now (a job was put back to pending, another
    /// instance announced jobs): list again — after the listing in flight,
    /// if any, whatever it finds (it may have read the store too early).
    pub fn due_again(&mut self) {
        self.exhausted = false;
        self.due_meanwhile |= self.listing;
    }

    /// This instance enqueued `id`, due now, ranked `rank`: claim it in
    /// its place in line without a listing (so `exhausted` stays). If a
    /// listing lists it too, the second claim loses the attempt reservation
    /// and is dropped.
    pub fn enqueued(&mut self, id: ObjectId, rank: DateTime, kind: &str) {
        if !self.queue.values().any(|(c, _)| c.id == id) {
            let candidate = Candidate::enqueued(id, rank).of(kind);
            let generation = self.generation;
            self.queue
                .insert(place(&candidate), (candidate, generation));
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
    fn something_due_while_a_listing_runs_is_listed_again_after_an_empty_answer() {
        let mut candidates = Candidates::default();
        assert!(matches!(candidates.next(), Next::List));
        candidates.due_again(); // announced while the listing read the store
        candidates.listed(Some(Vec::new()));
        assert!(matches!(candidates.next(), Next::List), "not exhausted");
        candidates.listed(Some(Vec::new()));
        assert!(matches!(candidates.next(), Next::Wait), "now it is");
    }

    #[test]
    fn a_job_enqueued_here_is_claimed_without_listing_and_only_once() {
        let mut candidates = Candidates::default();
        candidates.next();
        candidates.listed(Some(Vec::new()));
        let id = ObjectId::new();
        candidates.enqueued(id, DateTime::now(), "noop");
        candidates.enqueued(id, DateTime::now(), "noop");
        assert_eq!(claims(candidates.next()), id);
        assert!(matches!(candidates.next(), Next::Wait), "still exhausted");
    }

    #[test]
    fn after_a_tick_the_stale_line_is_claimed_from_while_the_relisting_runs() {
        let mut candidates = Candidates::default();
        candidates.next();
        let (a, b) = (ObjectId::new(), ObjectId::new());
        let now = DateTime::now();
        candidates.listed(Some(vec![
            Candidate::enqueued(a, now),
            Candidate::enqueued(b, now),
        ]));
        candidates.tick();
        assert!(
            matches!(candidates.next(), Next::List),
            "list again at once"
        );
        assert_eq!(claims(candidates.next()), a, "meanwhile, the stale line");
        assert_eq!(claims(candidates.next()), b);
        assert!(
            matches!(candidates.next(), Next::Wait),
            "one listing at a time"
        );
    }

    #[test]
    fn a_listing_that_lands_replaces_the_stale_line_but_for_what_was_enqueued_since_or_handed_out()
    {
        let mut candidates = Candidates::default();
        candidates.next();
        let at = |ms: i64| DateTime::from_millis(1_800_000_000_000 + ms);
        let (handed, gone, early, local, waiting) = (
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
        );
        candidates.enqueued(early, at(5), "noop"); // enqueued here before the relisting
        candidates.listed(Some(vec![
            Candidate::enqueued(handed, at(0)),
            Candidate::enqueued(gone, at(40)),
        ]));
        candidates.tick();
        assert!(matches!(candidates.next(), Next::List));
        assert_eq!(claims(candidates.next()), handed, "claimed while it lists");
        candidates.enqueued(local, at(20), "noop"); // enqueued here while it lists
                                                    // The listing read the store before `handed` was claimed, and no
                                                    // longer finds `gone` (taken elsewhere) nor `early` (beyond its
                                                    // limit, say); it finds a job ranked ahead of the local one.
        candidates.listed(Some(vec![
            Candidate::enqueued(handed, at(0)),
            Candidate::enqueued(waiting, at(10)),
        ]));
        assert_eq!(claims(candidates.next()), waiting);
        assert_eq!(
            claims(candidates.next()),
            local,
            "kept: newer than the listing"
        );
        assert!(
            matches!(candidates.next(), Next::List),
            "nothing else is left"
        );
    }

    #[test]
    fn a_change_of_pauses_drops_the_line() {
        let mut candidates = Candidates::default();
        candidates.next();
        candidates.listed(Some(vec![Candidate::enqueued(
            ObjectId::new(),
            DateTime::now(),
        )]));
        candidates.pauses_changed();
        assert!(matches!(candidates.next(), Next::List));
        assert!(
            matches!(candidates.next(), Next::Wait),
            "nothing left meanwhile"
        );
    }

    #[test]
    fn a_failed_relisting_keeps_the_stale_line() {
        let mut candidates = Candidates::default();
        candidates.next();
        let id = ObjectId::new();
        candidates.listed(Some(vec![Candidate::enqueued(id, DateTime::now())]));
        candidates.tick();
        assert!(matches!(candidates.next(), Next::List));
        candidates.listed(None);
        assert_eq!(claims(candidates.next()), id);
        assert!(matches!(candidates.next(), Next::Wait), "until a tick");
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
        candidates.enqueued(early, at(20), "noop");
        let order: Vec<ObjectId> = (0..4).map(|_| claims(candidates.next())).collect();
        assert_eq!(order, [expired, old, early, late]);
    }
}
