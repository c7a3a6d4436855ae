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
    /// A concurrency limit that cannot be set as asked (nothing was stored).
    #[error("{0}")]
    BadLimit(#[from] crate::queue::limit::LimitError),
    /// MongoDB failed or could not be reached.
    #[error("the job store failed")]
    Store(#[from] mongodb::error::Error),
    /// The job store did not answer within the call timeout.
    #[error("the job store did not answer within {0:?}")]
    StoreTimeout(std::time::Duration),
    /// The poller, which answers about its own state (the pauses it
    /// applies, its executor pool), is down or did not answer in time.
    #[error("the queue poller did not answer")]
    Unavailable(#[from] CallError),
}

/// Whether the store refused a write for good: the server answered with an
/// error about what was written (a write error other than a duplicate key;
/// a command error with a code of bad input and no retryable label) rather
/// than failing to take it. The same write gets the same answer, so the
/// caller's input is at fault (400), not the store (503).
pub fn is_permanent_refusal(err: &mongodb::error::Error) -> bool {
    refusal_code(err).is_some()
}

/// The code of a permanent refusal ([`is_permanent_refusal`]; 0 if the
/// driver refused the document before sending it); `None` for any other
/// error.
pub fn refusal_code(err: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    /// BadValue, FailedToParse, TypeMismatch, Overflow, DollarPrefixedFieldName,
    /// InvalidPath, InvalidLength, BSONObjectTooLarge, and the codes of
    /// invalid documents MongoDB and FerretDB answer an insert with.
    const BAD_INPUT: &[i32] = &[2, 9, 14, 15, 52, 56, 57, 10334, 17419, 17420];
    if err.contains_label("RetryableWriteError") || err.contains_label("TransientTransactionError")
    {
        return None;
    }
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => {
            (write.code != 11000).then_some(write.code)
        }
        ErrorKind::Command(command) => BAD_INPUT.contains(&command.code).then_some(command.code),
        ErrorKind::BsonSerialization(_) => Some(0),
        _ => None,
    }
}

/// What may be logged of a store error: its kind and code. Never its
/// message, which a server can fill with the document it refused (a job's
/// payload, say).
pub fn redacted(err: &mongodb::error::Error) -> String {
    use mongodb::error::{ErrorKind, WriteFailure};
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => {
            format!("write error {}", write.code)
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => {
            format!(
                "write concern error {} ({})",
                concern.code, concern.code_name
            )
        }
        ErrorKind::Command(command) => {
            format!("command error {} ({})", command.code, command.code_name)
        }
        ErrorKind::Io(io) => format!("I/O error: {}", io.kind()),
        ErrorKind::ServerSelection { .. } => "no server available".into(),
        ErrorKind::ConnectionPoolCleared { .. } => "connection pool cleared".into(),
        ErrorKind::Authentication { .. } => "authentication failed".into(),
        ErrorKind::BsonSerialization(_) | ErrorKind::BsonDeserialization(_) => {
            "BSON (de)serialization failed".into()
        }
        _ => "store error".into(),
    }
}

/// A queue error in a few words, for logs: a store error briefly (the
/// driver's Display of an unreachable server is the whole topology).
pub fn brief(err: &QueueError) -> String {
    match err {
        QueueError::Store(err) => crate::store::brief_mongo(err),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::error::{CommandError, Error, ErrorKind, WriteError, WriteFailure};

    use super::*;

    fn command(code: i32, message: &str) -> Error {
        let json = serde_json::json!({"code": code, "codeName": "X", "errmsg": message});
        let command: CommandError = serde_json::from_value(json).unwrap();
        Error::from(ErrorKind::Command(command))
    }

    fn write(code: i32, message: &str) -> Error {
        let json = serde_json::json!({"code": code, "errmsg": message});
        let write: WriteError = serde_json::from_value(json).unwrap();
        Error::from(ErrorKind::Write(WriteFailure::WriteError(write)))
    }

    #[test]
    fn bad_input_is_a_permanent_refusal_and_an_outage_is_not() {
        assert!(is_permanent_refusal(&command(2, "invalid value")));
        assert_eq!(refusal_code(&write(121, "validation failed")), Some(121));
        assert!(is_permanent_refusal(&write(121, "validation failed")));
        assert!(!is_permanent_refusal(&write(11000, "duplicate key")));
        assert!(!is_permanent_refusal(&command(91, "shutting down")));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!is_permanent_refusal(&Error::from(ErrorKind::Io(
            io.into()
        ))));
    }

    #[test]
    fn a_logged_store_error_never_holds_the_servers_message() {
        let secret = r#"{ "payload": { "card": "4111" } }"#;
        for err in [command(2, secret), write(121, secret)] {
            let logged = redacted(&err);
            assert!(!logged.contains("4111"), "{logged}");
        }
        assert_eq!(redacted(&command(2, secret)), "command error 2 (X)");
    }
}
