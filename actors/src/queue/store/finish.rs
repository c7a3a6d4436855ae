//! The end of an attempt: lease renewal while it runs, then its outcome
//! (the attempt record first, then the job, each fenced: the record only
//! while it is `running`, the job only while it is `processing` at that
//! attempt, so a stale runner's write changes nothing).
//!
//! Outcomes are written in bulk ([`JobStore::finish_many`], fed by
//! [`crate::queue::finisher`]): one unordered `update` command per
//! collection and [`BULK_STATEMENTS`] outcomes, so one refused document
//! fails only its own outcome. (The driver's `bulkWrite` needs MongoDB 8;
//! FerretDB v1 has none: a plain `update` with several statements runs on
//! both.)

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::error::{ErrorKind, WriteConcernError, WriteError, WriteFailure};

use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::{JobStatus, Outcome};

/// Statements per `update` command, at most. Bounded on purpose: one
/// `update` of 256 statements hung FerretDB v1.24.2 for every client.
pub const BULK_STATEMENTS: usize = 32;

/// How one attempt ended: what its record and its job become.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub id: ObjectId,
    pub attempt: i32,
    /// The attempt record's outcome, and its error.
    pub outcome: Outcome,
    pub error: Option<String>,
    pub job: JobEnd,
}

/// What the job becomes when its attempt ends.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    /// `completed`, with the handler's result.
    Completed(Document),
    /// `pending` again, due after this delay.
    Retry(Duration),
    /// `failed`, for good.
    Failed,
    /// `cancelled`, for good.
    Cancelled,
}

impl Ending {
    /// Attempt `attempt` succeeded with `result`.
    pub fn completed(id: ObjectId, attempt: i32, result: Document) -> Self {
        Self {
            id,
            attempt,
            outcome: Outcome::Completed,
            error: None,
            job: JobEnd::Completed(result),
        }
    }

    /// Attempt `attempt` failed (`outcome`) with `error`: with `retry_in`
    /// and attempts left (of `max_attempts`), the job is retried then;
    /// otherwise it is `failed`.
    pub fn failed(
        (id, attempt, max_attempts): (ObjectId, i32, i32),
        outcome: Outcome,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Self {
        let job = match retry_in {
            Some(delay) if attempt < max_attempts => JobEnd::Retry(delay),
            _ => JobEnd::Failed,
        };
        Self {
            id,
            attempt,
            outcome,
            error: Some(error.to_owned()),
            job,
        }
    }

    /// Attempt `attempt` stopped because an operator cancelled the job.
    pub fn cancelled(id: ObjectId, attempt: i32) -> Self {
        Self {
            id,
            attempt,
            outcome: Outcome::Cancelled,
            error: Some("cancelled by an operator while it ran".into()),
            job: JobEnd::Cancelled,
        }
    }

    /// The job's status once this is written.
    pub fn status(&self) -> JobStatus {
        match self.job {
            JobEnd::Completed(_) => JobStatus::Completed,
            JobEnd::Retry(_) => JobStatus::Pending,
            JobEnd::Failed => JobStatus::Failed,
            JobEnd::Cancelled => JobStatus::Cancelled,
        }
    }

    /// The `update` statement of its attempt record: only a record still
    /// `running` is closed, so a record the next claimer already closed
    /// (`crashed`: this runner lost its lease) keeps what it says, and a
    /// flush retried after a lost reply changes nothing.
    fn record_statement(&self, now: DateTime) -> Document {
        doc! {
            "q": { "_id": format!("{}:{}", self.id, self.attempt), "outcome": Outcome::Running.as_str() },
            "u": { "$set": {
                "finishedAt": now, "outcome": self.outcome.as_str(), "error": self.error.as_deref(),
            } },
        }
    }

    /// The `update` statement of its job, fenced on the attempt.
    fn job_statement(&self, now: DateTime, due: impl Fn(Duration) -> DateTime) -> Document {
        let set = match &self.job {
            JobEnd::Completed(result) => doc! {
                "status": "completed", "result": result, "completedAt": now, "lastError": Bson::Null,
            },
            JobEnd::Retry(delay) => doc! {
                "status": "pending", "runAt": due(*delay), "lastError": self.error.as_deref(),
            },
            JobEnd::Failed => doc! {
                "status": "failed", "runAt": now, "lastError": self.error.as_deref(),
            },
            JobEnd::Cancelled => doc! {
                "status": "cancelled", "cancelRequested": true, "cancelledAt": now,
            },
        };
        let mut set = set;
        set.extend(doc! { "updatedAt": now, "lockedBy": Bson::Null, "lockedUntil": Bson::Null });
        doc! {
            "q": { "_id": self.id, "attempts": self.attempt, "status": "processing" },
            "u": { "$set": set },
        }
    }
}

/// What became of one outcome of a bulk write: written (or fenced out, as
/// a single write would be), or refused by the store for good.
pub type Written = Result<(), QueueError>;

impl JobStore {
    /// Extend the lease of a running attempt.
    pub async fn renew(
        &self,
        id: ObjectId,
        attempt: i32,
        lease: Duration,
    ) -> Result<(), QueueError> {
        self.jobs
            .update_one(
                doc! { "_id": id, "attempts": attempt, "status": "processing" },
                doc! { "$set": { "lockedUntil": self.clock.after(lease), "updatedAt": self.clock.now() } },
            )
            .await?;
        Ok(())
    }

    /// Extend the leases of these running attempts, [`BULK_STATEMENTS`]
    /// per command (the finisher's, while a flush is retried).
    pub(crate) async fn renew_many(
        &self,
        attempts: &[(ObjectId, i32)],
        lease: Duration,
    ) -> Result<(), QueueError> {
        let (until, now) = (self.clock.after(lease), self.clock.now());
        let statements = attempts.iter().map(|(id, attempt)| {
            doc! {
                "q": { "_id": id, "attempts": attempt, "status": "processing" },
                "u": { "$set": { "lockedUntil": until, "updatedAt": now } },
            }
        });
        self.update_each(self.jobs.name(), statements.collect())
            .await?;
        Ok(())
    }

    /// Write how each of `endings` ended: every attempt record first, then
    /// every job (once the job reads final, so does its history), in
    /// unordered `update` commands of at most [`BULK_STATEMENTS`]
    /// statements. One result per ending, in order: a statement the store
    /// refused fails its own ending only (and a refused record skips its
    /// job). `Err`: a command failed as a whole (the store is down): some
    /// of it may be written; writing it all again is safe (fenced).
    pub async fn finish_many(&self, endings: &[Ending]) -> Result<Vec<Written>, QueueError> {
        let now = self.clock.now();
        let records = endings.iter().map(|e| e.record_statement(now)).collect();
        let refused = self.update_each(self.attempts.name(), records).await?;
        let mut written: Vec<Written> = refused.into_iter().map(refusal).collect();
        let due = |delay| self.clock.after(delay);
        let (jobs, which): (Vec<Document>, Vec<usize>) = endings
            .iter()
            .enumerate()
            .filter(|(i, _)| written[*i].is_ok())
            .map(|(i, ending)| (ending.job_statement(now, due), i))
            .unzip();
        let refused = self.update_each(self.jobs.name(), jobs).await?;
        for (i, refused) in which.into_iter().zip(refused) {
            written[i] = refusal(refused);
        }
        Ok(written)
    }

    /// Write one ending (see [`finish_many`](Self::finish_many)).
    pub(crate) async fn finish_one(&self, ending: &Ending) -> Result<(), QueueError> {
        let mut written = self.finish_many(std::slice::from_ref(ending)).await?;
        written.pop().unwrap_or(Ok(()))
    }

    /// Attempt `attempt` succeeded.
    pub async fn complete(
        &self,
        id: ObjectId,
        attempt: i32,
        result: Document,
    ) -> Result<(), QueueError> {
        self.finish_one(&Ending::completed(id, attempt, result))
            .await
    }

    /// Attempt `attempt` failed with `error`. With `retry_in`, and attempts
    /// left, the job is pending again at now + `retry_in`; otherwise `failed`.
    pub async fn fail(
        &self,
        id: ObjectId,
        attempt: i32,
        max_attempts: i32,
        outcome: Outcome,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<JobStatus, QueueError> {
        let ending = Ending::failed((id, attempt, max_attempts), outcome, error, retry_in);
        self.finish_one(&ending).await?;
        Ok(ending.status())
    }

    /// Send `statements` to `collection` as unordered `update` commands of
    /// at most [`BULK_STATEMENTS`] each; the write error of each statement
    /// (`None`: none), in order.
    async fn update_each(
        &self,
        collection: &str,
        statements: Vec<Document>,
    ) -> Result<Vec<Option<WriteError>>, mongodb::error::Error> {
        let db = self.jobs.client().database(&self.jobs.namespace().db);
        let mut refused = Vec::with_capacity(statements.len());
        for chunk in statements.chunks(BULK_STATEMENTS) {
            let command = doc! { "update": collection, "updates": chunk, "ordered": false };
            let reply = db.run_command(command).await?;
            refused.extend(write_errors(&reply, chunk.len())?);
        }
        Ok(refused)
    }
}

/// The write error of each of an `update` reply's `statements` statements
/// (`writeErrors`, by index). A write concern error fails the command.
fn write_errors(
    reply: &Document,
    statements: usize,
) -> Result<Vec<Option<WriteError>>, mongodb::error::Error> {
    if let Ok(concern) = reply.get_document("writeConcernError") {
        let concern: WriteConcernError = mongodb::bson::from_document(concern.clone())?;
        return Err(ErrorKind::Write(WriteFailure::WriteConcernError(concern)).into());
    }
    let mut refused = vec![None; statements];
    let Ok(errors) = reply.get_array("writeErrors") else {
        return Ok(refused);
    };
    for error in errors.iter().filter_map(Bson::as_document) {
        let index = match error.get("index") {
            Some(Bson::Int32(i)) => *i as usize,
            Some(Bson::Int64(i)) => *i as usize,
            Some(Bson::Double(i)) => *i as usize,
            _ => continue,
        };
        if let (Some(slot), Ok(found)) = (
            refused.get_mut(index),
            mongodb::bson::from_document::<WriteError>(error.clone()),
        ) {
            *slot = Some(found);
        }
    }
    Ok(refused)
}

/// A statement's write error as the queue's error.
fn refusal(refused: Option<WriteError>) -> Written {
    match refused {
        None => Ok(()),
        Some(error) => {
            let error =
                mongodb::error::Error::from(ErrorKind::Write(WriteFailure::WriteError(error)));
            Err(error.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_statements_write_error_is_found_by_its_index() {
        let reply = doc! {
            "n": 2, "nModified": 2, "ok": 1.0,
            "writeErrors": [
                { "index": 1, "code": 121, "errmsg": "Document failed validation" },
                { "index": 3_i64, "code": 2, "errmsg": "bad" },
                { "index": 99, "code": 2, "errmsg": "out of range: ignored" },
            ],
        };
        let refused = write_errors(&reply, 4).unwrap();
        let codes: Vec<Option<i32>> = refused.iter().map(|e| e.as_ref().map(|e| e.code)).collect();
        assert_eq!(codes, [None, Some(121), None, Some(2)]);
        let written: Vec<bool> = refused.into_iter().map(|e| refusal(e).is_ok()).collect();
        assert_eq!(written, [true, false, true, false]);
    }

    #[test]
    fn a_reply_without_write_errors_refuses_nothing_and_a_write_concern_error_fails_all() {
        let clean = write_errors(&doc! { "n": 3, "ok": 1.0 }, 3).unwrap();
        assert_eq!(clean, [None, None, None]);
        let concern = doc! { "ok": 1.0, "writeConcernError": { "code": 64, "errmsg": "waiting" } };
        assert!(write_errors(&concern, 3).is_err());
    }

    #[test]
    fn an_ending_knows_the_jobs_next_status() {
        let id = ObjectId::new();
        let error = "boom";
        let retry = Some(Duration::from_secs(1));
        let last = Ending::failed((id, 5, 5), Outcome::Failed, error, retry);
        let earlier = Ending::failed((id, 2, 5), Outcome::TimedOut, error, retry);
        let permanent = Ending::failed((id, 2, 5), Outcome::Failed, error, None);
        assert_eq!(last.status(), JobStatus::Failed);
        assert_eq!(earlier.status(), JobStatus::Pending);
        assert_eq!(permanent.status(), JobStatus::Failed);
        assert_eq!(Ending::cancelled(id, 1).status(), JobStatus::Cancelled);
        assert_eq!(
            Ending::completed(id, 1, doc! {}).status(),
            JobStatus::Completed
        );
    }

    #[test]
    fn statements_are_fenced_on_a_running_record_and_a_processing_attempt() {
        let id = ObjectId::new();
        let now = DateTime::from_millis(1_000);
        let ending = Ending::completed(id, 3, doc! { "ok": true });
        let record = ending.record_statement(now);
        assert_eq!(
            record.get_document("q").unwrap(),
            &doc! { "_id": format!("{id}:3"), "outcome": "running" }
        );
        let job = ending.job_statement(now, |_| now);
        assert_eq!(
            job.get_document("q").unwrap(),
            &doc! { "_id": id, "attempts": 3, "status": "processing" }
        );
        let set = job.get_document("u").unwrap().get_document("$set").unwrap();
        assert_eq!(set.get_str("status").unwrap(), "completed");
        assert_eq!(set.get("lockedBy"), Some(&Bson::Null));
    }
}
