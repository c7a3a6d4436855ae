//! Issue #27, part 1: batch claims. One poll claims up to `queue.claim_batch`
//! due jobs with one insert of their attempt records, then takes them a few
//! at a time — and still one executor per attempt, pauses, cancellations,
//! abandoned reservations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::Database;
use troupe::config::Settings;
use troupe_actors::queue::clock::Clock;
use troupe_actors::queue::handlers::JobHandlers;
use troupe_actors::queue::job::{Candidate, Job, JobStatus};
use troupe_actors::queue::pause::Pauses;
use troupe_actors::queue::store::batch::TAKES_IN_FLIGHT;
use troupe_actors::queue::store::claim::ABANDONED_AFTER;
use troupe_actors::queue::store::JobStore;

use crate::helpers::{observer, remove_stores, test_settings, three_instances};

const LEASE: Duration = Duration::from_secs(30);

/// The commands a client sent, by name, and the most `findAndModify`
/// commands it had in flight at once.
#[derive(Default)]
pub(crate) struct Sent {
    pub(crate) by_name: BTreeMap<String, u64>,
    in_flight: u64,
    most_in_flight: u64,
}

/// A database handle whose client records what it sends (the driver's
/// command monitoring).
pub(crate) async fn monitored(settings: &Settings) -> (Database, Arc<Mutex<Sent>>) {
    use secrecy::ExposeSecret;
    let sent = Arc::new(Mutex::new(Sent::default()));
    let mut options = mongodb::options::ClientOptions::parse(settings.mongodb.uri.expose_secret())
        .await
        .unwrap();
    let record = Arc::clone(&sent);
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        let mut sent = record.lock().unwrap();
        match event {
            CommandEvent::Started(started) => {
                *sent
                    .by_name
                    .entry(started.command_name.clone())
                    .or_default() += 1;
                if started.command_name == "findAndModify" {
                    sent.in_flight += 1;
                    sent.most_in_flight = sent.most_in_flight.max(sent.in_flight);
                }
            }
            CommandEvent::Succeeded(done) if done.command_name == "findAndModify" => {
                sent.in_flight -= 1
            }
            CommandEvent::Failed(done) if done.command_name == "findAndModify" => {
                sent.in_flight -= 1
            }
            _ => {}
        }
    }));
    let client = mongodb::Client::with_options(options).unwrap();
    (client.database(&settings.mongodb.database), sent)
}

/// `n` pending `noop` jobs, due now.
pub(crate) async fn backlog(db: &Database, n: usize) -> Vec<ObjectId> {
    let jobs: Vec<Job> = (0..n)
        .map(|_| Job::new("noop", Document::new(), 5))
        .collect();
    db.collection::<Job>("jobs")
        .insert_many(&jobs)
        .await
        .unwrap();
    jobs.iter().map(|job| job.id).collect()
}

/// The listed candidates, each for an executor of its own.
pub(crate) fn for_executors(listed: Vec<Candidate>) -> Vec<(Candidate, String)> {
    (listed.into_iter().enumerate())
        .map(|(i, candidate)| (candidate, format!("executor-{i}")))
        .collect()
}

pub(crate) async fn records(db: &Database) -> Vec<Document> {
    let attempts = db.collection::<Document>("job_attempts");
    attempts
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_of_n_jobs_is_reserved_with_one_insert_and_taken_at_most_eight_at_a_time() {
    const N: usize = 40;
    let settings = test_settings();
    let (db, sent) = monitored(&settings).await;
    let store = JobStore::new(&db, "claimer", 5);
    backlog(&db, N).await;
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

    assert!(claimed.iter().all(Option::is_some), "every job is ours");
    assert!(claimed
        .iter()
        .flatten()
        .all(|job| job.status == JobStatus::Processing && job.attempts == 1));
    let names: BTreeSet<&str> = sent.by_name.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["findAndModify", "insert"]),
        "{:?}",
        sent.by_name
    );
    assert_eq!(sent.by_name["insert"], 1, "one insert for the whole batch");
    assert_eq!(sent.by_name["findAndModify"], N as u64, "one take per job");
    assert!(
        sent.most_in_flight <= TAKES_IN_FLIGHT as u64,
        "at most {TAKES_IN_FLIGHT} takes at once (⌈N/8⌉ rounds), saw {}",
        sent.most_in_flight
    );
    assert_eq!(records(&db).await.len(), N, "one attempt record per job");
    remove_stores(&settings).await;
}

#[tokio::test]
async fn two_claimers_racing_over_one_backlog_never_hold_an_attempt_twice() {
    const N: usize = 120;
    let settings = test_settings();
    let db = observer(&settings).await;
    let ids = backlog(&db, N).await;
    let (a, b) = (JobStore::new(&db, "a", 5), JobStore::new(&db, "b", 5));
    let none = Pauses::default();
    // Leases that outlast the test however slow the store: no job's lease
    // expires, so each is claimed exactly once.
    let lease = Duration::from_secs(600);
    let mut won: Vec<(ObjectId, String)> = Vec::new();
    loop {
        // Both list the same line, then claim it at the same time.
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
    assert_eq!(won.len(), N, "every job claimed once: {won:?}");
    assert_eq!(distinct, ids.into_iter().collect());
    // Each job's one attempt record names the claimer that took it.
    let holders: BTreeMap<String, String> = records(&db)
        .await
        .iter()
        .map(|r| {
            (
                r.get_str("_id").unwrap().to_owned(),
                r.get_str("instance").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(holders.len(), N);
    for (id, claimer) in &won {
        assert_eq!(holders.get(&format!("{id}:1")), Some(claimer));
    }
    remove_stores(&settings).await;
}

#[tokio::test]
async fn a_paused_type_is_not_claimed_by_a_batch_and_its_reservations_are_given_back() {
    let settings = test_settings();
    let db = observer(&settings).await;
    let store = JobStore::new(&db, "claimer", 5);
    backlog(&db, 5).await;
    // Listed before the pause, claimed after it.
    let listed = store.candidates(10, &Pauses::default()).await.unwrap();
    let paused = Pauses {
        queue: false,
        types: BTreeSet::from(["noop".to_string()]),
    };
    let claimed = store
        .claim_batch(&for_executors(listed), LEASE, &paused)
        .await
        .unwrap();
    assert!(claimed.iter().all(Option::is_none), "nothing taken");
    assert!(records(&db).await.is_empty(), "no reservation left behind");
    let pending = db.collection::<Document>("jobs");
    let untouched = doc! {"status": "pending", "attempts": 0};
    assert_eq!(pending.count_documents(untouched).await.unwrap(), 5);
    remove_stores(&settings).await;
}

#[tokio::test]
async fn a_cancelled_job_inside_a_batch_is_not_taken_and_a_halfway_cancel_is_settled() {
    let settings = test_settings();
    let db = observer(&settings).await;
    let store = JobStore::new(&db, "claimer", 5);
    let ids = backlog(&db, 4).await;
    let listed = store.candidates(10, &Pauses::default()).await.unwrap();
    // Cancelled after the listing: its marker holds attempt 1.
    store.cancel(ids[1]).await.unwrap();
    // A canceller that died after its marker, before settling the job.
    let now = DateTime::now();
    let marker = doc! {
        "_id": format!("{}:1", ids[2]), "jobId": ids[2], "attempt": 1, "instance": "gone",
        "executor": "cancel", "startedAt": now, "finishedAt": now, "outcome": "cancelled",
        "error": "cancelled by an operator before it ran",
    };
    db.collection::<Document>("job_attempts")
        .insert_one(marker)
        .await
        .unwrap();

    let claimed = store
        .claim_batch(&for_executors(listed), LEASE, &Pauses::default())
        .await
        .unwrap();
    let taken: BTreeSet<ObjectId> = claimed.iter().flatten().map(|job| job.id).collect();
    assert_eq!(taken, BTreeSet::from([ids[0], ids[3]]));
    for cancelled in [ids[1], ids[2]] {
        let (job, history) = store.get(cancelled).await.unwrap().unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Cancelled, 0));
        assert_eq!(history.len(), 1, "only the marker");
    }
    remove_stores(&settings).await;
}

#[tokio::test]
async fn a_reservation_abandoned_two_leases_ago_is_replaced_by_the_next_batch() {
    let settings = test_settings();
    let db = observer(&settings).await;
    let ids = backlog(&db, 2).await;
    // The queue's clock from now on: the jobs are due.
    let clock = Clock::manual_from_now();
    let store = JobStore::new(&db, "claimer", 5).with_clock(clock.clone());
    // A claimer reserved attempt 1 of the first job, then died.
    let dead = doc! {
        "_id": format!("{}:1", ids[0]), "jobId": ids[0], "attempt": 1, "instance": "dead",
        "executor": "executor-0", "startedAt": clock.now(), "outcome": "running",
    };
    db.collection::<Document>("job_attempts")
        .insert_one(dead)
        .await
        .unwrap();
    let listed = store.candidates(10, &Pauses::default()).await.unwrap();
    let claimed = store
        .claim_batch(&for_executors(listed.clone()), LEASE, &Pauses::default())
        .await
        .unwrap();
    let taken: Vec<ObjectId> = claimed.iter().flatten().map(|job| job.id).collect();
    assert_eq!(taken, [ids[1]], "a fresh reservation is someone else's");

    // Two leases later (the claimed job's lease is renewed: it runs).
    clock.advance(LEASE * ABANDONED_AFTER + Duration::from_secs(1));
    store.renew(ids[1], 1, LEASE * 3).await.unwrap();
    let listed = store.candidates(10, &Pauses::default()).await.unwrap();
    let claimed = store
        .claim_batch(&for_executors(listed), LEASE, &Pauses::default())
        .await
        .unwrap();
    let taken: Vec<ObjectId> = claimed.iter().flatten().map(|job| job.id).collect();
    assert_eq!(taken, [ids[0]], "an abandoned one is replaced");
    let (_, history) = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].instance, "claimer");
    remove_stores(&settings).await;
}

#[tokio::test]
async fn three_instances_draining_one_backlog_in_batches_run_every_attempt_once() {
    let jobs = drain_on_three(200, |s| {
        s.queue.executors = 24;
        s.queue.claim_batch = 16;
    })
    .await;
    assert_eq!(jobs.len(), 200);
}

/// Three instances (`configure`d, then polling every 50 ms) drain a backlog
/// of `n` noop jobs; every job's attempts are numbered 1..=k with exactly
/// one completed. The jobs as they ended.
pub(crate) async fn drain_on_three(n: usize, configure: fn(&mut Settings)) -> Vec<Document> {
    let apps = three_instances(
        move |s| {
            configure(s);
            s.queue.poll_interval = Duration::from_millis(50);
            // On a busy shared store a batch's last takes come late: a
            // lease that covers them (the profile's is 3 s).
            s.queue.lease = Duration::from_secs(10);
        },
        JobHandlers::new(),
    )
    .await;
    let db = &apps[0].db;
    backlog(db, n).await;
    for app in &apps {
        app.nudge();
    }
    crate::helpers::all_jobs_completed(db, Duration::from_secs(120)).await;
    let jobs: Vec<Document> = (db.collection::<Document>("jobs"))
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut by_job: BTreeMap<ObjectId, Vec<(i32, String)>> = BTreeMap::new();
    for record in records(db).await {
        let job = record.get_object_id("jobId").unwrap();
        let outcome = record.get_str("outcome").unwrap().to_owned();
        let attempt = record.get_i32("attempt").unwrap();
        by_job.entry(job).or_default().push((attempt, outcome));
    }
    for job in &jobs {
        let id = job.get_object_id("_id").unwrap();
        let k = job.get_i32("attempts").unwrap();
        let mut history = by_job.remove(&id).unwrap_or_default();
        history.sort();
        let numbers: Vec<i32> = history.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            numbers,
            (1..=k).collect::<Vec<_>>(),
            "job {id}: {history:?}"
        );
        let completed = history.iter().filter(|(_, o)| o == "completed").count();
        assert_eq!(completed, 1, "job {id}: {history:?}");
    }
    jobs
}
