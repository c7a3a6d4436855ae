//! The finisher's batching, deterministically: a fake store and tokio's
//! paused clock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use mongodb::bson::doc;
use mongodb::error::{ErrorKind, WriteError, WriteFailure};

use super::*;

/// What the fake store saw and how it behaves.
#[derive(Default)]
struct Seen {
    /// Each write, the ids it held.
    writes: Vec<Vec<ObjectId>>,
    renewals: Vec<Vec<(ObjectId, i32)>>,
    /// Writes that fail as a whole (store down) before one succeeds.
    down_for: usize,
    /// Endings refused one by one (a per-index write error).
    refused: HashSet<ObjectId>,
    /// An ending whose presence makes a batch of several refused as a whole.
    poison: Option<ObjectId>,
}

#[derive(Clone, Default)]
struct FakeStore(Arc<Mutex<Seen>>);

/// A write error of bad input, as the store answers a refused document.
fn bad_input() -> QueueError {
    let error: WriteError =
        mongodb::bson::from_document(doc! { "code": 2, "errmsg": "bad value" }).unwrap();
    QueueError::Store(ErrorKind::Write(WriteFailure::WriteError(error)).into())
}

impl Sink for FakeStore {
    async fn write(&self, endings: &[Ending]) -> Result<Vec<Written>, QueueError> {
        let mut seen = self.0.lock().unwrap();
        seen.writes.push(endings.iter().map(|e| e.id).collect());
        if seen.down_for > 0 {
            seen.down_for -= 1;
            return Err(QueueError::StoreTimeout(Duration::from_secs(1)));
        }
        if endings.len() > 1 && endings.iter().any(|e| Some(e.id) == seen.poison) {
            return Err(bad_input());
        }
        let written = endings
            .iter()
            .map(|e| match seen.refused.contains(&e.id) {
                true => Err(bad_input()),
                false => Ok(()),
            })
            .collect();
        Ok(written)
    }

    async fn renew(&self, attempts: &[(ObjectId, i32)]) -> Result<(), QueueError> {
        self.0.lock().unwrap().renewals.push(attempts.to_vec());
        Ok(())
    }
}

impl FakeStore {
    fn writes(&self) -> Vec<Vec<ObjectId>> {
        self.0.lock().unwrap().writes.clone()
    }
}

fn ending() -> Ending {
    Ending::completed(ObjectId::new(), 1, doc! {})
}

/// Hand `ending` to `finisher` in a task of its own (as an executor does).
fn finish(finisher: &Finisher, ending: &Ending) -> JoinHandle<Written> {
    let (finisher, ending) = (finisher.clone(), ending.clone());
    tokio::spawn(async move { finisher.finish(ending).await })
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_full_batch_is_written_at_once_without_waiting_for_the_delay() {
    let store = FakeStore::default();
    let task = FinisherTask::start(store.clone(), 3, HOUR);
    let started = Instant::now();
    let endings: Vec<Ending> = (0..3).map(|_| ending()).collect();
    let waiting: Vec<_> = endings
        .iter()
        .map(|e| finish(&task.finisher(), e))
        .collect();
    for answer in waiting {
        assert!(answer.await.unwrap().is_ok());
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "no delay waited");
    let ids: HashSet<ObjectId> = endings.iter().map(|e| e.id).collect();
    let writes = store.writes();
    assert_eq!(writes.len(), 1, "one write: {writes:?}");
    assert_eq!(writes[0].iter().copied().collect::<HashSet<_>>(), ids);
}

#[tokio::test(start_paused = true)]
async fn a_lone_ending_is_written_the_delay_after_it_came_and_not_before() {
    let store = FakeStore::default();
    // (tokio's timers tick in milliseconds.)
    let delay = Duration::from_millis(10);
    let task = FinisherTask::start(store.clone(), 64, delay);
    let started = Instant::now();
    let answer = finish(&task.finisher(), &ending());
    tokio::time::sleep(Duration::from_millis(9)).await;
    assert!(store.writes().is_empty(), "not before the delay");
    assert!(answer.await.unwrap().is_ok());
    assert_eq!(started.elapsed(), delay);
    assert_eq!(store.writes().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn endings_within_the_delay_share_a_write_and_later_ones_get_the_next() {
    let store = FakeStore::default();
    let task = FinisherTask::start(store.clone(), 64, Duration::from_millis(10));
    let (a, b, c) = (ending(), ending(), ending());
    let first = finish(&task.finisher(), &a);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = finish(&task.finisher(), &b);
    assert!(first.await.unwrap().is_ok() && second.await.unwrap().is_ok());
    assert!(finish(&task.finisher(), &c).await.unwrap().is_ok());
    assert_eq!(store.writes(), [vec![a.id, b.id], vec![c.id]]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_ending_fails_alone_and_its_batch_is_written() {
    let store = FakeStore::default();
    let (good, bad) = (ending(), ending());
    store.0.lock().unwrap().refused.insert(bad.id);
    let task = FinisherTask::start(store.clone(), 2, HOUR);
    let (good_answer, bad_answer) = (
        finish(&task.finisher(), &good),
        finish(&task.finisher(), &bad),
    );
    assert!(good_answer.await.unwrap().is_ok());
    let refused = bad_answer.await.unwrap().unwrap_err();
    assert!(matches!(refused, QueueError::Store(_)), "{refused:?}");
    assert_eq!(store.writes().len(), 1, "one write for both");
}

#[tokio::test(start_paused = true)]
async fn a_batch_refused_as_a_whole_is_split_so_only_the_culprit_fails() {
    let store = FakeStore::default();
    let endings: Vec<Ending> = (0..3).map(|_| ending()).collect();
    let poison = endings[1].id;
    {
        let mut seen = store.0.lock().unwrap();
        seen.poison = Some(poison);
        seen.refused.insert(poison);
    }
    let task = FinisherTask::start(store.clone(), 3, HOUR);
    let waiting: Vec<_> = endings
        .iter()
        .map(|e| finish(&task.finisher(), e))
        .collect();
    let mut written = Vec::new();
    for answer in waiting {
        written.push(answer.await.unwrap().is_ok());
    }
    assert_eq!(written, [true, false, true]);
    let writes = store.writes();
    assert_eq!(writes.len(), 4, "the batch, then each alone: {writes:?}");
    assert!(writes[1..].iter().all(|w| w.len() == 1));
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_is_retried_with_backoff_renewing_the_leases_and_answers_only_once_written()
{
    let store = FakeStore::default();
    store.0.lock().unwrap().down_for = 3;
    let task = FinisherTask::start(store.clone(), 64, Duration::ZERO);
    let one = ending();
    let started = Instant::now();
    let answer = finish(&task.finisher(), &one);
    // Down: tried at 0, 50 and 150 ms; not answered meanwhile.
    tokio::time::sleep(Duration::from_millis(349)).await;
    assert!(!answer.is_finished(), "no answer before the write succeeds");
    assert_eq!(store.writes().len(), 3);
    assert!(answer.await.unwrap().is_ok());
    assert_eq!(
        started.elapsed(),
        RETRY_FIRST + RETRY_FIRST * 2 + RETRY_FIRST * 4,
        "waits of 50, 100, 200 ms"
    );
    let seen = store.0.lock().unwrap();
    assert_eq!(seen.writes.len(), 4);
    assert_eq!(
        seen.renewals,
        vec![vec![(one.id, 1)]; 3],
        "renewed before each retry"
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_writes_what_is_held_at_once_and_a_dead_store_is_given_up_at_the_deadline() {
    let store = FakeStore::default();
    let mut task = FinisherTask::start(store.clone(), 64, HOUR);
    let answer = finish(&task.finisher(), &ending());
    tokio::task::yield_now().await;
    let started = Instant::now();
    task.stop(started + Duration::from_secs(5)).await;
    assert_eq!(started.elapsed(), Duration::ZERO, "no delay waited");
    assert!(answer.await.unwrap().is_ok());

    let down = FakeStore::default();
    down.0.lock().unwrap().down_for = usize::MAX;
    let mut task = FinisherTask::start(down.clone(), 64, Duration::ZERO);
    let answer = finish(&task.finisher(), &ending());
    tokio::task::yield_now().await;
    let started = Instant::now();
    task.stop(started + Duration::from_secs(5)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(answer.await.unwrap().is_err(), "never reported written");
}

#[test]
fn only_a_store_out_of_reach_is_retried_an_answered_refusal_is_not() {
    use mongodb::error::CommandError;
    let io = std::io::Error::other("connection reset");
    let down = QueueError::Store(ErrorKind::Io(Arc::new(io)).into());
    let command: CommandError = mongodb::bson::from_document(
        doc! { "code": 1, "codeName": "InternalError", "errmsg": "x" },
    )
    .unwrap();
    let answered = QueueError::Store(ErrorKind::Command(command).into());
    assert!(unreachable(&down));
    assert!(unreachable(&QueueError::StoreTimeout(Duration::from_secs(
        1
    ))));
    assert!(!unreachable(&answered));
    assert!(!unreachable(&bad_input()));
}
