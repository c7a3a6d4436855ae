//! [`UserJobError`]: why a user job's attempt failed, and how the queue
//! takes it ([`recorded`]).

use mongodb::bson::{oid::ObjectId, Document};

use crate::mail::MailError;
use crate::queue::handlers::{HandlerError, HandlerResult};
use crate::users::email::EmailError;

/// Why a user job failed this attempt (the queue retries it with backoff,
/// except a malformed payload: see [`UserJobError::is_permanent`]).
#[derive(Debug, thiserror::Error)]
pub enum UserJobError {
    #[error("payload lacks {0}")]
    Payload(&'static str),
    /// The field is there but not in a form the job reads.
    #[error("payload's {field} must be {expected}")]
    Malformed {
        field: &'static str,
        expected: &'static str,
    },
    /// Sign-up writes the welcome job just before the user.
    #[error("user {0} does not exist (yet)")]
    NoSuchUser(ObjectId),
    #[error("bad recipient")]
    Recipient(#[source] EmailError),
    #[error("the welcome's delivery record vanished")]
    DeliveryRecordVanished,
    #[error("compose")]
    Compose(#[source] lettre::error::Error),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
}

impl UserJobError {
    /// Whether no retry can mend it: the payload lacks a field, holds a
    /// malformed one, or names a malformed recipient.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Payload(_) | Self::Malformed { .. } | Self::Recipient(_)
        )
    }
}

/// A failed attempt as the queue takes it: the error with its causes (the
/// queue records the whole chain as the attempt's error), permanent if no
/// retry can mend it.
pub(crate) fn recorded(result: Result<Document, UserJobError>) -> HandlerResult {
    result.map_err(|err| match err.is_permanent() {
        true => HandlerError::permanent(HandlerError::Other(err.into()).report()),
        false => HandlerError::Other(err.into()),
    })
}
