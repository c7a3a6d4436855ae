//! The end of an attempt: lease renewal while it runs, then its outcome
//! (the attempt record first, then the job, each fenced: the record only
//! while it is `running`, the job only while it is `processing` at that
//! attempt, so a stale runner's write changes nothing).
//!
//! Outcomes are written in bulk ([`JobStore::finish_many`], fed by
//! [`crate::queue::finisher`]) through [`super::grouped`]: alike ends (a
//! completion with an empty result at the same attempt number; failures
//! with the same error and retry time) share one statement per
//! collection, the others are a statement each, all in unordered `update`
//! commands, so one refused document fails only its own outcome. (The
//! driver's `bulkWrite` needs MongoDB 8; FerretDB v1 has none: a plain
//! `update` with several statements runs on both.)

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::error::{ErrorKind, WriteError, WriteFailure};

use super::grouped::ById;
use super::JobStore;
use crate::queue::controls::Progress;
use crate::queue::error::QueueError;
use crate::queue::job::{JobStatus, Outcome};
use crate::queue::result::StoredResult;

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
    /// `completed`, with the handler's result (as stored).
    Completed(StoredResult),
    /// `pending` again, due after this delay.
    Retry(Duration),
    /// `pending` again, due after this delay, the attempt not spent
    /// (`maxAttempts` grows by one).
    Snoozed(Duration),
    /// `failed`, for good.
    Failed,
    /// `cancelled`, for good.
    Cancelled,
}

impl Ending {
    /// Attempt `attempt` succeeded with `result`, storable as it is.
    pub fn completed(id: ObjectId, attempt: i32, result: Document) -> Self {
        Self::completed_with(id, attempt, StoredResult::Document(result))
    }

    /// Attempt `attempt` succeeded with `result`, stored so.
    pub fn completed_with(id: ObjectId, attempt: i32, result: StoredResult) -> Self {
        Self {
            id,
            attempt,
            outcome: Outcome::Completed,
            error: None,
            job: JobEnd::Completed(result),
        }
    }

    /// Attempt `attempt`'s handler snoozed the job for `delay`: the
    /// record says so (`snoozed`, with `note` as its error), the job is
    /// pending again then, with one more attempt allowed.
    pub fn snoozed(id: ObjectId, attempt: i32, delay: Duration, note: String) -> Self {
        Self {
            id,
            attempt,
            outcome: Outcome::Snoozed,
            error: Some(note),
            job: JobEnd::Snoozed(delay),
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
            JobEnd::Retry(_) | JobEnd::Snoozed(_) => JobStatus::Pending,
            JobEnd::Failed => JobStatus::Failed,
            JobEnd::Cancelled => JobStatus::Cancelled,
        }
    }

    /// The write of its attempt record, by `instance` (who ran it): only a
    /// record still `running` is closed, so a record the next claimer
    /// already closed (`crashed`: this runner lost its lease) keeps what it
    /// says, and a flush retried after a lost reply changes nothing.
    fn record_write(&self, now: DateTime, instance: &str) -> ById {
        ById {
            id: Bson::String(format!("{}:{}", self.id, self.attempt)),
            fence: doc! { "outcome": Outcome::Running.as_str() },
            update: doc! { "$set": {
                "finishedAt": now, "outcome": self.outcome.as_str(), "error": self.error.as_deref(),
            } },
            narrow: doc! { "instance": instance },
        }
    }

    /// The write of its job, fenced on the attempt (held by `instance`,
    /// who claimed it).
    fn job_write(
        &self,
        (now, instance): (DateTime, &str),
        due: impl Fn(Duration) -> DateTime,
    ) -> ById {
        let mut more = None;
        let set = match &self.job {
            JobEnd::Completed(StoredResult::Document(result)) => doc! {
                "status": "completed", "result": result, "resultJson": Bson::Null,
                "completedAt": now, "lastError": Bson::Null,
            },
            JobEnd::Completed(StoredResult::Json(text)) => doc! {
                "status": "completed", "result": Bson::Null, "resultJson": text,
                "completedAt": now, "lastError": Bson::Null,
            },
            JobEnd::Retry(delay) => doc! {
                "status": "pending", "runAt": due(*delay), "lastError": self.error.as_deref(),
            },
            JobEnd::Snoozed(delay) => {
                // The attempt is spent as a number (its record's id), not
                // against the budget: one more is allowed.
                more = Some(doc! { "maxAttempts": 1 });
                doc! { "status": "pending", "runAt": due(*delay) }
            }
            JobEnd::Failed => doc! {
                "status": "failed", "runAt": now, "lastError": self.error.as_deref(),
            },
            JobEnd::Cancelled => doc! {
                "status": "cancelled", "cancelRequested": true, "cancelledAt": now,
            },
        };
        let mut set = set;
        set.extend(doc! { "updatedAt": now, "lockedBy": Bson::Null, "lockedUntil": Bson::Null });
        let mut update = doc! { "$set": set };
        if let Some(inc) = more {
            update.insert("$inc", inc);
        }
        ById {
            id: Bson::ObjectId(self.id),
            fence: doc! { "attempts": self.attempt, "status": "processing" },
            update,
            narrow: doc! { "lockedBy": instance },
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

    /// Record `progress` on a running attempt (fenced as a renewal: a
    /// stale runner's report changes nothing).
    pub async fn report_progress(
        &self,
        id: ObjectId,
        attempt: i32,
        progress: &Progress,
    ) -> Result<(), QueueError> {
        let progress = doc! {
            "percent": progress.percent, "message": progress.message.as_deref(), "at": progress.at,
        };
        self.jobs
            .update_one(
                doc! { "_id": id, "attempts": attempt, "status": "processing" },
                doc! { "$set": { "progress": progress, "updatedAt": self.clock.now() } },
            )
            .await?;
        Ok(())
    }

    /// Extend the leases of these running attempts (the finisher's, while
    /// a flush is retried): one grouped statement per attempt number.
    pub(crate) async fn renew_many(
        &self,
        attempts: &[(ObjectId, i32)],
        lease: Duration,
    ) -> Result<(), QueueError> {
        let (until, now) = (self.clock.after(lease), self.clock.now());
        let writes: Vec<ById> = attempts
            .iter()
            .map(|(id, attempt)| ById {
                id: Bson::ObjectId(*id),
                fence: doc! { "attempts": attempt, "status": "processing" },
                update: doc! { "$set": { "lockedUntil": until, "updatedAt": now } },
                narrow: doc! { "lockedBy": &self.instance },
            })
            .collect();
        self.update_by_id(self.jobs.name(), &writes).await?;
        Ok(())
    }

    /// Write how each of `endings` ended: every attempt record first, then
    /// every job (once the job reads final, so does its history), alike
    /// ends grouped ([`super::grouped`]). One result per ending, in order:
    /// a write the store refused fails its own ending only (and a refused
    /// record skips its job). `Err`: a command failed as a whole (the store
    /// is down): some of it may be written; writing it all again is safe
    /// (fenced).
    pub async fn finish_many(&self, endings: &[Ending]) -> Result<Vec<Written>, QueueError> {
        let now = self.clock.now();
        let records: Vec<ById> = endings
            .iter()
            .map(|e| e.record_write(now, &self.instance))
            .collect();
        let refused = self.update_by_id(self.attempts.name(), &records).await?;
        let mut written: Vec<Written> = refused.into_iter().map(refusal).collect();
        let due = |delay| self.clock.after(delay);
        let (jobs, which): (Vec<ById>, Vec<usize>) = endings
            .iter()
            .enumerate()
            .filter(|(i, _)| written[*i].is_ok())
            .map(|(i, ending)| (ending.job_write((now, &self.instance), due), i))
            .unzip();
        let refused = self.update_by_id(self.jobs.name(), &jobs).await?;
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
    use super::super::grouped::statements;
    use super::*;

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

    const NOW: DateTime = DateTime::from_millis(1_000);

    fn jobs(endings: &[Ending]) -> Vec<ById> {
        let due = |d: Duration| DateTime::from_millis(1_000 + d.as_millis() as i64);
        endings
            .iter()
            .map(|e| e.job_write((NOW, "me"), due))
            .collect()
    }

    fn records(endings: &[Ending]) -> Vec<ById> {
        endings.iter().map(|e| e.record_write(NOW, "me")).collect()
    }

    #[test]
    fn writes_are_fenced_on_a_running_record_and_a_processing_attempt_held_here() {
        let id = ObjectId::new();
        let ending = Ending::completed(id, 3, doc! { "ok": true });
        let record = ending.record_write(NOW, "me");
        assert_eq!(record.id, Bson::String(format!("{id}:3")));
        assert_eq!(record.fence, doc! { "outcome": "running" });
        assert_eq!(record.narrow, doc! { "instance": "me" });
        let job = ending.job_write((NOW, "me"), |_| NOW);
        assert_eq!(job.id, Bson::ObjectId(id));
        assert_eq!(job.fence, doc! { "attempts": 3, "status": "processing" });
        assert_eq!(job.narrow, doc! { "lockedBy": "me" });
        let set = job.update.get_document("$set").unwrap();
        assert_eq!(set.get_str("status").unwrap(), "completed");
        assert_eq!(set.get("lockedBy"), Some(&Bson::Null));
    }

    #[test]
    fn a_snooze_makes_the_job_pending_then_and_allows_one_more_attempt() {
        let id = ObjectId::new();
        let snoozed = Ending::snoozed(id, 2, Duration::from_secs(30), "snoozed for 30s".into());
        assert_eq!(snoozed.status(), JobStatus::Pending);
        let record = snoozed.record_write(NOW, "me");
        let recorded = record.update.get_document("$set").unwrap();
        assert_eq!(recorded.get_str("outcome").unwrap(), "snoozed");
        assert_eq!(recorded.get_str("error").unwrap(), "snoozed for 30s");
        let job = &jobs(&[snoozed])[0];
        let set = job.update.get_document("$set").unwrap();
        assert_eq!(set.get_str("status").unwrap(), "pending");
        assert_eq!(
            set.get_datetime("runAt").unwrap(),
            &DateTime::from_millis(31_000)
        );
        assert_eq!(
            job.update.get_document("$inc").unwrap(),
            &doc! { "maxAttempts": 1 }
        );
    }

    #[test]
    fn a_result_stored_as_json_text_clears_the_document_and_the_other_way_round() {
        let id = ObjectId::new();
        let text = Ending::completed_with(id, 1, StoredResult::Json("{\"m\":[[1]]}".into()));
        let set = jobs(&[text])[0]
            .update
            .get_document("$set")
            .unwrap()
            .clone();
        assert_eq!(set.get("result"), Some(&Bson::Null));
        assert_eq!(set.get_str("resultJson").unwrap(), "{\"m\":[[1]]}");
        let plain = Ending::completed(id, 1, doc! { "n": 1 });
        let set = jobs(&[plain])[0]
            .update
            .get_document("$set")
            .unwrap()
            .clone();
        assert_eq!(set.get_document("result").unwrap(), &doc! { "n": 1 });
        assert_eq!(set.get("resultJson"), Some(&Bson::Null));
    }

    #[test]
    fn empty_completions_share_one_statement_per_collection_and_attempt_number() {
        let first: Vec<Ending> = (0..5)
            .map(|_| Ending::completed(ObjectId::new(), 1, doc! {}))
            .collect();
        let second = Ending::completed(ObjectId::new(), 2, doc! {});
        let mut endings = first.clone();
        endings.insert(2, second.clone());

        let records = statements(&records(&endings));
        assert_eq!(records.len(), 1, "records of any attempt are alike");
        assert_eq!(records[0].members, [0, 1, 2, 3, 4, 5]);

        let jobs = statements(&jobs(&endings));
        let members: Vec<&[usize]> = jobs.iter().map(|s| s.members.as_slice()).collect();
        assert_eq!(members, [&[0, 1, 3, 4, 5][..], &[2][..]], "by attempt");
        let ids: Vec<Bson> = first.iter().map(|e| Bson::ObjectId(e.id)).collect();
        assert_eq!(
            jobs[0].doc.get_document("q").unwrap(),
            &doc! { "_id": { "$in": ids }, "attempts": 1, "status": "processing", "lockedBy": "me" }
        );
        assert_eq!(jobs[0].doc.get_bool("multi"), Ok(true));
        assert_eq!(
            jobs[1].doc.get_document("q").unwrap(),
            &doc! { "_id": second.id, "attempts": 2, "status": "processing" },
            "alone: its plain statement"
        );
    }

    #[test]
    fn ends_that_differ_per_job_are_a_statement_each_and_alike_failures_share_one() {
        let id = ObjectId::new;
        let retry = Some(Duration::from_secs(60));
        let endings = [
            Ending::completed(id(), 1, doc! { "n": 1 }),
            Ending::completed(id(), 1, doc! { "n": 2 }),
            Ending::failed((id(), 1, 5), Outcome::Failed, "flaky", retry),
            Ending::failed((id(), 1, 5), Outcome::Failed, "flaky", retry),
            Ending::failed((id(), 1, 5), Outcome::Failed, "other", retry),
            Ending::failed((id(), 5, 5), Outcome::Failed, "flaky", retry),
            Ending::cancelled(id(), 1),
        ];
        let jobs = statements(&jobs(&endings));
        let members: Vec<Vec<usize>> = jobs.into_iter().map(|s| s.members).collect();
        assert_eq!(
            members,
            [vec![0], vec![1], vec![2, 3], vec![4], vec![5], vec![6]]
        );
        let records = statements(&records(&endings));
        let members: Vec<Vec<usize>> = records.into_iter().map(|s| s.members).collect();
        assert_eq!(members, [vec![0, 1], vec![2, 3, 5], vec![4], vec![6]]);
    }
}
