//! The finisher: writes the poller's finished attempts in bulk.
//!
//! # Contract
//! - An executor whose attempt ended hands its [`Ending`] to
//!   [`Finisher::finish`] and waits for the answer: the ending is *written*
//!   (durable, or fenced out as a single write would be) or refused. Only
//!   then does the executor publish the job's event, release its unique
//!   key and tell the poller it is idle: no one sees a job done before its
//!   end is durable, and the executor's slot is not reused before that
//!   either (a slot freed earlier would show the job gone from the pool
//!   while the store still says `processing`).
//! - The finisher (one task, owned by the poller: [`FinisherTask`]) holds
//!   the endings it receives and writes them together
//!   ([`crate::queue::store::JobStore::finish_many`]: alike endings, e.g.
//!   every completion with an empty result, as one statement per
//!   collection; the others a statement each; one unordered `update` per
//!   collection and 32 statements) once it holds `queue.finish_batch` of
//!   them or `queue.finish_delay` after the first, whichever comes first.
//! - One refused document fails only its own ending (its executor logs it;
//!   the job settles when its lease expires, as after a failed single
//!   write); a refused statement of several endings is written again one
//!   by one, so only its culprit stays refused. An ending whose job moved
//!   on meanwhile (cancelled, reclaimed after its lease) is fenced out, as
//!   its single write would be: nothing is written and it counts as
//!   written. A batch the store refuses as a whole (it answered with an
//!   error: FerretDB fails a whole unordered `update` for one string it
//!   cannot store) is split and each ending written once on its own.
//!
//! # Failure
//! A flush that fails for want of a store (down, failing over) is retried
//! with backoff (from [`RETRY_FIRST`] to [`RETRY_MAX`]), the batch's leases
//! renewed before each retry (by this task, between its own writes: on
//! FerretDB, which writes whole documents, a renewal overlapping the
//! completion could undo it), until it is written: the executors wait, so
//! nothing is reported done meanwhile. A process that dies with endings
//! unwritten leaves their jobs `processing`: their leases expire, the next
//! claimer marks those attempts `crashed` and runs the jobs again.
//!
//! # Shutdown
//! [`FinisherTask::stop`] (the poller's `post_stop`, once its executors
//! stopped): flushes at once what it holds and what is queued, retrying as
//! above until the deadline, then aborts. Dropped without `stop` (the
//! poller died), the task is aborted.

use std::future::Future;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::queue::error::QueueError;
use crate::queue::store::finish::{Ending, Written};
use crate::queue::store::JobStore;
use crate::store::error_chain;
use crate::supervision::slot::CallError;

/// The first wait before a failed flush is tried again (doubling).
pub const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between two tries of a failed flush.
pub const RETRY_MAX: Duration = Duration::from_secs(2);

/// Where endings are written: the store, or a test's fake.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Write `endings`; one result each, or `Err` if nothing can be said.
    fn write(
        &self,
        endings: &[Ending],
    ) -> impl Future<Output = Result<Vec<Written>, QueueError>> + Send;
    /// Extend the leases of these attempts (while their write is retried).
    fn renew(
        &self,
        attempts: &[(ObjectId, i32)],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The job store, renewing leases by `lease`.
pub(crate) struct StoreSink {
    pub store: JobStore,
    pub lease: Duration,
}

impl Sink for StoreSink {
    async fn write(&self, endings: &[Ending]) -> Result<Vec<Written>, QueueError> {
        self.store.finish_many(endings).await
    }

    async fn renew(&self, attempts: &[(ObjectId, i32)]) -> Result<(), QueueError> {
        self.store.renew_many(attempts, self.lease).await
    }
}

/// One ending and who waits for its answer.
pub(crate) struct Request {
    ending: Ending,
    answer: oneshot::Sender<Written>,
}

/// How endings are written: through the poller's finisher, in bulk, or
/// at once, one by one (the test [`crate::queue::worker::Worker`]).
#[derive(Clone)]
pub(crate) enum Finisher {
    Batched(mpsc::Sender<Request>),
    Direct(JobStore),
}

impl Finisher {
    /// Write `ending` and wait until it is written (see the module doc).
    pub async fn finish(&self, ending: Ending) -> Written {
        let sender = match self {
            Self::Direct(store) => return store.finish_one(&ending).await,
            Self::Batched(sender) => sender,
        };
        let gone = || QueueError::Unavailable(CallError::Unavailable("finisher"));
        let (answer, answered) = oneshot::channel();
        let request = Request { ending, answer };
        sender.send(request).await.map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

/// The finisher's task, owned by the poller (see the module doc).
pub(crate) struct FinisherTask {
    sender: mpsc::Sender<Request>,
    closing: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl FinisherTask {
    /// Start writing into `sink` in batches of `size` or after `delay`.
    pub fn start(sink: impl Sink, size: usize, delay: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(size.max(1));
        let closing = CancellationToken::new();
        let batches = Batches {
            receiver,
            size: size.max(1),
            delay,
            closing: closing.clone(),
        };
        let task = tokio::spawn(batches.run(sink));
        Self {
            sender,
            closing,
            task: Some(task),
        }
    }

    /// The handle the executors write through.
    pub fn finisher(&self) -> Finisher {
        Finisher::Batched(self.sender.clone())
    }

    /// Write what is held and queued now, then stop; by `deadline`, abort.
    pub async fn stop(&mut self, deadline: Instant) {
        self.closing.cancel();
        let Some(mut task) = self.task.take() else {
            return;
        };
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            tracing::warn!(target: "worker", "the finisher could not write every ending before the deadline; those jobs run again after their leases");
            task.abort();
        }
    }
}

impl Drop for FinisherTask {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The task's state: what it receives, when it flushes.
struct Batches {
    receiver: mpsc::Receiver<Request>,
    size: usize,
    delay: Duration,
    closing: CancellationToken,
}

impl Batches {
    async fn run(mut self, sink: impl Sink) {
        while let Some(batch) = self.next_batch().await {
            flush(&sink, batch).await;
        }
    }

    /// The next batch: from its first ending, until it holds `size` or
    /// `delay` passed; once closing, what is queued, at once. `None`:
    /// closed and nothing left.
    async fn next_batch(&mut self) -> Option<Vec<Request>> {
        let first = tokio::select! {
            biased;
            first = self.receiver.recv() => first,
            () = self.closing.cancelled() => {
                self.receiver.close();
                self.receiver.recv().await
            }
        }?;
        let mut batch = vec![first];
        let deadline = Instant::now() + self.delay;
        while batch.len() < self.size {
            let next = tokio::select! {
                biased;
                next = self.receiver.recv() => next.map_or(Next::Full, Next::One),
                () = tokio::time::sleep_until(deadline), if !self.closing.is_cancelled() => Next::Full,
                () = self.closing.cancelled(), if !self.receiver.is_closed() => Next::Closing,
            };
            match next {
                Next::One(request) => batch.push(request),
                Next::Full => break,
                // Take what is queued, without waiting for more.
                Next::Closing => self.receiver.close(),
            }
        }
        Some(batch)
    }
}

/// What happened while a batch was filling.
enum Next {
    One(Request),
    /// Flush now: the delay passed, or nothing more can come.
    Full,
    Closing,
}

/// Write `batch` until it is written (see the module doc), and answer each.
async fn flush(sink: &impl Sink, batch: Vec<Request>) {
    let (endings, answers): (Vec<Ending>, Vec<_>) =
        batch.into_iter().map(|r| (r.ending, r.answer)).unzip();
    let attempts: Vec<(ObjectId, i32)> = endings.iter().map(|e| (e.id, e.attempt)).collect();
    let mut wait = RETRY_FIRST;
    let written = loop {
        match sink.write(&endings).await {
            Ok(written) => break written,
            Err(err) if !unreachable(&err) => break one_by_one(sink, &endings, err).await,
            Err(err) => {
                tracing::warn!(target: "worker", endings = endings.len(), error = %error_chain(&err), retry_in_ms = wait.as_millis() as u64,
                    "could not write finished jobs; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
                if let Err(err) = sink.renew(&attempts).await {
                    tracing::debug!(target: "worker", error = %error_chain(&err), "could not renew the leases of unwritten endings");
                }
            }
        }
    };
    for (answer, written) in answers.into_iter().zip(written) {
        let _ = answer.send(written);
    }
}

/// Whether `err` says the store could not be reached (down, failing
/// over, too slow): the same write may succeed later. Otherwise the store
/// answered and refused the command (a command error, e.g. FerretDB's
/// `InternalError` for a string it cannot store, which fails its whole
/// `update` even when unordered), or the driver refused to send it: the
/// same write would be refused again.
fn unreachable(err: &QueueError) -> bool {
    use mongodb::error::ErrorKind;
    let QueueError::Store(err) = err else {
        return matches!(err, QueueError::StoreTimeout(_));
    };
    if err.contains_label("RetryableWriteError") {
        return true;
    }
    !matches!(
        err.kind.as_ref(),
        ErrorKind::Command(_)
            | ErrorKind::Write(_)
            | ErrorKind::BsonSerialization(_)
            | ErrorKind::BsonDeserialization(_)
            | ErrorKind::InvalidArgument { .. }
            | ErrorKind::InvalidResponse { .. }
    )
}

/// Write each of `endings` on its own, once (a batch refused as a whole:
/// only the culprit stays refused, as its single write would be); a
/// single ending gets `refused` itself.
async fn one_by_one(sink: &impl Sink, endings: &[Ending], refused: QueueError) -> Vec<Written> {
    if endings.len() == 1 {
        return vec![Err(refused)];
    }
    tracing::warn!(target: "worker", endings = endings.len(), error = %error_chain(&refused),
        "the store refused a batch of finished jobs; writing each on its own");
    let mut written = Vec::with_capacity(endings.len());
    for ending in endings {
        let one = sink.write(std::slice::from_ref(ending)).await;
        written.push(one.and_then(|mut w| w.pop().unwrap_or(Ok(()))));
    }
    written
}

#[cfg(test)]
#[path = "finisher_tests.rs"]
mod tests;
