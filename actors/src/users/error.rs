//! [`UserError`]: every way a request to the users capability can fail,
//! the actor being unavailable included, so callers map one type.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheError, LoadError};
use crate::queue::QueueError;
use crate::store::StoreError;
use crate::supervision::slot::CallError;
use crate::users::password::HashError;
use crate::users::strength::Guessable;

/// Clone (causes behind `Arc`): the cache answers one load to many waiters.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UserError {
    #[error("a user with this e-mail address already exists")]
    EmailTaken,
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    /// A new password (sign-up, change) is too easy to guess; the reason
    /// is safe to show as the password field's error.
    #[error("the password is too easy to guess")]
    WeakPassword(Guessable),
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("this refresh token was already used; all sessions of the user were revoked")]
    TokenReused,
    /// A replay of a token whose reuse was already detected (and answered
    /// by revoking): refused, nothing more is revoked.
    #[error("this refresh token was already used")]
    TokenSpent,
    /// The first sign-up with this idempotency key is still running.
    #[error("a sign-up with this Idempotency-Key is still in progress; retry shortly")]
    SignupInProgress,
    #[error("the session has ended; log in again")]
    SessionRevoked,
    /// A reset or verification token that is malformed, unknown, used,
    /// expired or another account's: one answer for all.
    #[error("invalid, expired or already used token")]
    BadMailToken,
    /// `auth.require_verified_email` and the address is not verified yet.
    #[error("the e-mail address of this account is not verified yet; follow the link in the verification e-mail (POST /users/email/verify)")]
    EmailNotVerified,
    /// A verification resend for an address that is verified already.
    #[error("the e-mail address is already verified")]
    AlreadyVerified,
    /// The system's random source failed (no token could be made).
    #[error("the system's random source failed")]
    NoRandom,
    #[error("no such user")]
    NotFound,
    /// No session of the caller's with this id is live (unknown, ended,
    /// or another user's: indistinguishable).
    #[error("no such session")]
    NoSuchSession,
    /// Too many attempts or requests from this client; retry after this long.
    #[error("too many attempts")]
    Throttled(Duration),
    /// A user document is stored in a shape this service cannot read (the
    /// NestJS service's, written behind its back): no retry helps.
    #[error("this user is stored in a shape this service cannot read; {remedy}", remedy = crate::store::REMEDY)]
    Unreadable,
    /// MongoDB failed (almost always: unreachable); worth a retry.
    #[error("the user store failed")]
    Store(#[source] Arc<StoreError>),
    /// The job queue could not take or update one of the user's jobs (the
    /// welcome, the login record): its store failed; worth a retry.
    #[error("the job queue failed")]
    Jobs(#[from] QueueError),
    /// bcrypt could not run.
    #[error("password hashing failed")]
    Hashing(#[source] Arc<HashError>),
    /// The profile cache could not load a profile (the store or the
    /// UserActor failed behind it).
    #[error("the profile could not be loaded")]
    ProfileLoad(#[source] LoadError),
    /// No access-token signing key is loaded yet (the key store has not
    /// answered since start; see `users::keys`); worth a retry.
    #[error("no access-token signing key is loaded yet")]
    NoSigningKey,
    /// An actor (the UserActor, or the cache's) is not running or did not
    /// answer in time.
    #[error("an actor did not answer")]
    Unavailable(#[source] CallError),
}

impl From<mongodb::error::Error> for UserError {
    fn from(err: mongodb::error::Error) -> Self {
        if let mongodb::error::ErrorKind::BsonDeserialization(why) = err.kind.as_ref() {
            crate::store::count_unreadable("users", why);
            return Self::Unreadable;
        }
        Self::store(err)
    }
}

impl UserError {
    /// A failed MongoDB call, as it is: [`UserError::Store`]. For the
    /// collections beside `users` (idempotency records), whose unreadable
    /// documents are not users.
    pub(crate) fn store(err: mongodb::error::Error) -> Self {
        Self::Store(Arc::new(StoreError::Mongo(err)))
    }
}

impl UserError {
    /// Whether this is (or, behind the profile cache, was caused by)
    /// [`UserError::Unreadable`].
    pub fn is_unreadable(&self) -> bool {
        match self {
            Self::Unreadable => true,
            Self::ProfileLoad(load) => std::error::Error::source(load)
                .and_then(|cause| cause.downcast_ref::<UserError>())
                .is_some_and(UserError::is_unreadable),
            _ => false,
        }
    }
}

impl From<crate::users::mail_tokens::IssueError> for UserError {
    fn from(err: crate::users::mail_tokens::IssueError) -> Self {
        match err {
            crate::users::mail_tokens::IssueError::Random => Self::NoRandom,
            crate::users::mail_tokens::IssueError::Store(err) => Self::store(err),
        }
    }
}

impl From<HashError> for UserError {
    fn from(err: HashError) -> Self {
        Self::Hashing(Arc::new(err))
    }
}

impl From<CallError> for UserError {
    fn from(err: CallError) -> Self {
        Self::Unavailable(err)
    }
}

impl From<CacheError> for UserError {
    fn from(err: CacheError) -> Self {
        match err {
            CacheError::Unavailable(err) => Self::Unavailable(err),
            CacheError::Load(err) => Self::ProfileLoad(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn a_cache_error_keeps_its_meaning() {
        let down = CallError::Timeout("cache");
        assert!(matches!(
            UserError::from(CacheError::Unavailable(down.clone())),
            UserError::Unavailable(e) if e == down
        ));
    }

    #[test]
    fn a_failed_load_keeps_its_whole_cause_chain() {
        let behind = UserError::Unavailable(CallError::Unavailable("user"));
        let err = UserError::from(CacheError::Load(LoadError::new(behind)));
        let mut chain = vec![err.to_string()];
        let mut cause = err.source();
        while let Some(next) = cause {
            chain.push(next.to_string());
            cause = next.source();
        }
        assert_eq!(
            chain,
            [
                "the profile could not be loaded",
                "the profile source failed",
                "an actor did not answer",
                "the user actor is unavailable",
            ]
        );
    }
}
