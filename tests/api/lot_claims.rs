//! Issue #27, the lot take: a batch's reserved jobs taken with one
//! `updateMany` per shape and read back with one `find`
//! (`troupe_actors::queue::store::lot`) — and still one executor per
//! attempt, pauses, moved-on jobs, expired leases.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use troupe_actors::queue::job::{Job, JobStatus};
use troupe_actors::queue::pause::Pauses;
use troupe_actors::queue::store::JobStore;

use crate::batch_claims::{backlog, drain_on_three, for_executors, monitored, records, Sent};
use crate::helpers::{observer, remove_stores, test_settings};

const LEASE: Duration = Duration::from_secs(30);

/// A store that takes every batch as a lot.
fn lot_store(db: &mongodb::Database, instance: &str) -> JobStore {
    JobStore::new(db, instance, 5).with_lot_min(1)
}

#[tokio::test]
async fn a_lot_of_n_jobs_is_reserved_with_one_insert_taken_with_one_update_and_read_with_one_find()
{
    const N: usize = 40;
    let settings = test_settings();
    let (db, sent) = monitored(&settings).await;
    let store = lot_store(&db, "claimer");
    let ids = backlog(&db, N).await;
    let listed = store
        .candidates(N as i64, &Pauses::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), N);

    *sent.lock().unwrap() = Sent::default();
    let claimed = store
        .claim_batch(&for_executors(listed), LEASE, &Pauses::default())
        .await
        .unwrap();
    let sent = std::mem::take(&mut *sent.lock().unwrap());

    let taken: BTreeSet<ObjectId> = claimed.iter().flatten().map(|job| job.id).collect();
    assert_eq!(taken, ids.iter().copied().collect(), "every job is ours");
    for job in claimed.iter().flatten() {
        assert_eq!((job.status, job.attempts), (JobStatus::Processing, 1));
        assert_eq!(job.locked_by.as_deref(), Some("claimer"));
        assert!(job
            .locked_until
            .is_some_and(|until| until > DateTime::now()));
    }
    let expected = BTreeMap::from([
        ("find".to_string(), 1),
        ("insert".to_string(), 1),
        ("update".to_string(), 1),
    ]);
    assert_eq!(sent.by_name, expected, "one of each for the whole batch");
    // One lot: every job carries the same id.
    let jobs = db.collection::<Document>("jobs");
    let lots: Vec<ObjectId> = (jobs.distinct("lot", doc! {}).await.unwrap())
        .into_iter()
        .map(|lot| lot.as_object_id().unwrap())
        .collect();
    assert_eq!(lots.len(), 1, "{lots:?}");
    assert_eq!(records(&db).await.len(), N, "one attempt record per job");
    remove_stores(&settings).await;
}

#[tokio::test]
async fn two_lot_claimers_racing_over_one_backlog_never_hold_an_attempt_twice() {
    const N: usize = 120;
    let settings = test_settings();
    let db = observer(&settings).await;
    let ids = backlog(&db, N).await;
    let (a, b) = (lot_store(&db, "a"), lot_store(&db, "b"));
    let none = Pauses::default();
    // Leases that outlast the test however slow the store.
    let lease = Duration::from_secs(600);
    let mut won: Vec<(ObjectId, String)> = Vec::new();
    loop {
        // Both list the same line, then take it at the same time.
        let (listed_a, listed_b) = tokio::join!(a.candidates(32, &none), b.candidates(32, &none));
        let (listed_a, listed_b) = (listed_a.unwrap(), listed_b.unwrap());
        if listed_a.is_empty() && listed_b.is_empty() {
            break;
        }
        let (batch_a, batch_b) = (for_executors(listed_a), for_executors(listed_b));
        let (got_a, got_b) = tokio::join!(
            a.claim_batch(&batch_a, lease, &none),
            b.claim_batch(&batch_b, lease, &none)
        );
        for (claimer, got) in [("a", got_a.unwrap()), ("b", got_b.unwrap())] {
            won.extend(
                got.into_iter()
                    .flatten()
                    .map(|job| (job.id, claimer.to_string())),
            );
        }
    }
    let distinct: BTreeSet<ObjectId> = won.iter().map(|(id, _)| *id).collect();
    assert_eq!(won.len(), N, "every job taken once: {won:?}");
    assert_eq!(distinct, ids.into_iter().collect());
    let holders: BTreeMap<String, String> = (records(&db).await.iter())
        .map(|r| {
            let id = r.get_str("_id").unwrap().to_owned();
            (id, r.get_str("instance").unwrap().to_owned())
        })
        .collect();
    assert_eq!(holders.len(), N);
    for (id, claimer) in &won {
        assert_eq!(holders.get(&format!("{id}:1")), Some(claimer), "{id}");
    }
    remove_stores(&settings).await;
}

#[tokio::test]
async fn a_lot_leaves_paused_and_moved_on_jobs_alone_and_gives_their_reservations_back() {
    let settings = test_settings();
    let db = observer(&settings).await;
    let store = lot_store(&db, "claimer");
    let noop = backlog(&db, 4).await;
    let reports: Vec<Job> = (0..2)
        .map(|_| Job::new("report", Document::new(), 5))
        .collect();
    let jobs = db.collection::<Document>("jobs");
    (db.collection::<Job>("jobs").insert_many(&reports))
        .await
        .unwrap();
    let listed = store.candidates(10, &Pauses::default()).await.unwrap();
    assert_eq!(listed.len(), 6);
    // After the listing: `report` is paused, one `noop` job was cancelled
    // (without a marker, as by hand) and one taken for its first attempt.
    let paused = Pauses {
        queue: false,
        types: BTreeSet::from(["report".to_string()]),
    };
    let set = |fields: Document| doc! { "$set": fields };
    (jobs.update_one(doc! { "_id": noop[0] }, set(doc! { "status": "cancelled" })))
        .await
        .unwrap();
    (jobs.update_one(doc! { "_id": noop[1] }, set(doc! { "attempts": 1 })))
        .await
        .unwrap();

    let claimed = store
        .claim_batch(&for_executors(listed), LEASE, &paused)
        .await
        .unwrap();
    let taken: BTreeSet<ObjectId> = claimed.iter().flatten().map(|job| job.id).collect();
    assert_eq!(taken, BTreeSet::from([noop[2], noop[3]]));
    let kept: BTreeSet<String> = (records(&db).await.iter())
        .map(|r| r.get_str("_id").unwrap().to_owned())
        .collect();
    let expected = [noop[2], noop[3]].map(|id| format!("{id}:1"));
    assert_eq!(kept, expected.into(), "every other reservation given back");
    for report in &reports {
        let untouched = doc! { "_id": report.id, "status": "pending", "attempts": 0 };
        assert_eq!(jobs.count_documents(untouched).await.unwrap(), 1);
    }
    let cancelled = doc! { "_id": noop[0], "status": "cancelled", "attempts": 0 };
    assert_eq!(jobs.count_documents(cancelled).await.unwrap(), 1);
    remove_stores(&settings).await;
}

#[tokio::test]
async fn a_lot_of_expired_leases_takes_the_next_attempt_and_records_the_dead_one_crashed() {
    let settings = test_settings();
    let db = observer(&settings).await;
    let store = lot_store(&db, "claimer");
    let ids = backlog(&db, 3).await;
    // A dead instance held attempt 1 of each; its leases ran out.
    let expired = DateTime::from_millis(DateTime::now().timestamp_millis() - 60_000);
    let held = doc! { "$set": { "status": "processing", "attempts": 1, "lockedBy": "dead", "lockedUntil": expired } };
    let jobs = db.collection::<Document>("jobs");
    jobs.update_many(doc! {}, held).await.unwrap();
    let running: Vec<Document> = (ids.iter())
        .map(|id| {
            doc! {
                "_id": format!("{id}:1"), "jobId": id, "attempt": 1, "instance": "dead",
                "executor": "executor-0", "startedAt": expired, "outcome": "running",
            }
        })
        .collect();
    (db.collection::<Document>("job_attempts")
        .insert_many(running))
    .await
    .unwrap();

    let listed = store.candidates(10, &Pauses::default()).await.unwrap();
    assert_eq!(listed.len(), 3);
    let claimed = store
        .claim_batch(&for_executors(listed), LEASE, &Pauses::default())
        .await
        .unwrap();
    let taken: BTreeSet<ObjectId> = claimed.iter().flatten().map(|job| job.id).collect();
    assert_eq!(taken, ids.iter().copied().collect());
    for job in claimed.iter().flatten() {
        assert_eq!((job.status, job.attempts), (JobStatus::Processing, 2));
        assert_eq!(job.locked_by.as_deref(), Some("claimer"));
        let (_, history) = store.get(job.id).await.unwrap().unwrap();
        let outcomes: Vec<(i32, &str)> = (history.iter())
            .map(|a| (a.attempt, a.outcome.as_str()))
            .collect();
        assert_eq!(outcomes, [(1, "crashed"), (2, "running")], "{}", job.id);
    }
    remove_stores(&settings).await;
}

#[tokio::test]
async fn three_instances_draining_one_backlog_in_lots_run_every_attempt_once() {
    const N: usize = 200;
    let jobs = drain_on_three(N, |s| {
        s.queue.executors = 24;
        s.queue.claim_batch = 16;
        s.queue.lot_min = 2;
    })
    .await;
    assert_eq!(jobs.len(), N);
    let lots: BTreeSet<ObjectId> = jobs.iter().flat_map(|j| j.get_object_id("lot")).collect();
    assert!(
        lots.len() < N,
        "jobs were taken in lots: {} for {N} jobs",
        lots.len()
    );
}
