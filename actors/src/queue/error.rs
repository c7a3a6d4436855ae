//! [`QueueError`]: why a query on the queue produced no answer.

use crate::supervision::slot::CallError;

/// Why a query on the queue (through [`crate::queue::QueueHandle`] or
/// [`crate::queue::store::JobStore`]) produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// No job has that id.
    #[error("no such job")]
    NotFound,
    /// Only a `failed` job can be retried; this one is in the named state
    /// (or another retry of it is under way).
    #[error("only a failed job can be retried; this one is {0}")]
    NotFailed(&'static str),
    /// The job was refused as asked (nothing was written).
    #[error("the job was refused")]
    Refused(#[from] crate::queue::spec::SpecError),
    /// A unique key's previous job is being written or released right now
    /// (or its producer died moments ago): retry shortly.
    #[error("the unique key's previous job is being written or released; retry shortly")]
    UniqueKeyBusy,
    /// The job's unique key is held by this other live job.
    #[error("another job ({0}) holds this job's unique key")]
    UniqueKeyHeld(crate::queue::job::JobId),
    /// Only a pending or running job can be cancelled; this one is in the
    /// named state.
    #[error("the job is {0} already")]
    Finished(&'static str),
    /// A claim of the job kept racing the cancel; try again.
    #[error("the job is being claimed; try again")]
    Busy,
    /// The job is stored in a shape this service cannot read (the NestJS
    /// service's, before `troupe migrate`).
    #[error("job {0} is stored in a shape this service cannot read; {remedy}", remedy = crate::store::REMEDY)]
    Unreadable(crate::queue::job::JobId),
    /// MongoDB failed or could not be reached.
    #[error("the job store failed")]
    Store(#[from] mongodb::error::Error),
    /// The poller, which answers the queue's queries, is down or did not
    /// answer in time.
    #[error("the queue poller did not answer")]
    Unavailable(#[from] CallError),
}

/// `err`'s message and every cause's, joined by `": "`: for logs and the
/// errors the queue records.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
}
