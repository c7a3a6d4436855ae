//! [`Users`]: how the rest of the service (the HTTP layer) reaches the
//! users capability — typed async methods, one error type.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mongodb::bson::oid::ObjectId;
use ractor::RpcReplyPort;
use secrecy::SecretString;

use crate::cache::{CacheClient, LoadError, ProfileJson, ProfileSource};
use crate::limits::AddressLimit;
use crate::supervision::slot::ActorSlot;
use crate::trace::Parent;
use crate::users::actor::UserMsg;
use crate::users::email::Email;
use crate::users::id::UserId;
use crate::users::idempotency::IdempotencyKey;
use crate::users::model::{Client, NewUser, OwnerProfile, ProfileChanges, SessionInfo, TokenPair};
use crate::users::password::Password;
use crate::users::password_reset::Recovery;
use crate::users::tokens::{Claims, RefreshToken, TokenType, Tokens};
use crate::users::UserError;

/// Requests to the UserActor, each bounded by the call timeout. An actor
/// that is down or too slow is a [`UserError::Unavailable`].
#[derive(Clone)]
pub(crate) struct UserCalls {
    actor: ActorSlot<UserMsg>,
    timeout: Duration,
}

impl UserCalls {
    pub(crate) fn new(actor: ActorSlot<UserMsg>, timeout: Duration) -> Self {
        Self { actor, timeout }
    }

    async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<T, UserError>>) -> UserMsg,
    ) -> Result<T, UserError> {
        self.actor.call(build, self.timeout).await?
    }

    async fn profile(&self, id: UserId) -> Result<Option<OwnerProfile>, UserError> {
        self.call(|reply| UserMsg::Profile {
            id,
            parent: Parent::current(),
            reply,
        })
        .await
    }
}

/// The cache loads misses through the UserActor: only the public part of a
/// profile is handed over, so only that is ever cached.
impl ProfileSource for UserCalls {
    fn public_profile(
        &self,
        id: ObjectId,
    ) -> BoxFuture<'static, Result<Option<ProfileJson>, LoadError>> {
        let calls = self.clone();
        Box::pin(async move {
            let owner = calls.profile(id.into()).await.map_err(LoadError::new)?;
            Ok(owner.map(|owner| {
                let json = serde_json::to_string(&owner.public()).expect("a profile serialises");
                ProfileJson(json.into())
            }))
        })
    }
}

/// The users capability as the HTTP layer sees it. Cheap to clone.
#[derive(Clone)]
pub struct Users {
    calls: UserCalls,
    tokens: Arc<Tokens>,
    /// Public profiles: hits straight from Redis, misses through the cache.
    profiles: CacheClient,
    /// `limits.profile_lookups`.
    lookups: AddressLimit,
}

impl Users {
    pub(crate) fn new(
        calls: UserCalls,
        tokens: Arc<Tokens>,
        profiles: CacheClient,
        lookups: AddressLimit,
    ) -> Self {
        Self {
            calls,
            tokens,
            profiles,
            lookups,
        }
    }

    /// The token issuer the handle verifies with (shared with the service).
    pub(crate) fn tokens(&self) -> Arc<Tokens> {
        Arc::clone(&self.tokens)
    }

    /// Create an account (idempotently with `key`) and open its first session.
    pub async fn signup(
        &self,
        new: NewUser,
        key: Option<IdempotencyKey>,
    ) -> Result<TokenPair, UserError> {
        self.calls
            .call(|reply| UserMsg::Signup {
                new,
                key,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// Open a session for `email` (as typed) and `password`. An `email` that
    /// is no valid address is answered like an unknown account.
    pub async fn login(
        &self,
        email: &str,
        password: SecretString,
        client: Client,
    ) -> Result<TokenPair, UserError> {
        let email = Email::parse(email).ok();
        self.calls
            .call(|reply| UserMsg::Login {
                email,
                password,
                client,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// A new pair for a verified refresh token (see [`Self::verify_refresh`]),
    /// presented by `client`.
    pub async fn refresh(
        &self,
        token: RefreshToken,
        client: Client,
    ) -> Result<TokenPair, UserError> {
        self.calls
            .call(|reply| UserMsg::Refresh {
                token,
                client,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// Change the password of the verified access token's user from
    /// `current` (as typed) to `new`; every other session ends. A wrong
    /// `current` answers and counts (for `client`) like a failed login.
    pub async fn change_password(
        &self,
        claims: Claims,
        current: SecretString,
        new: Password,
        client: IpAddr,
    ) -> Result<(), UserError> {
        self.calls
            .call(|reply| UserMsg::ChangePassword {
                claims,
                current,
                new,
                client,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// A request about a mailed token: [`Recovery::Forgot`] is answered
    /// before the address is looked at (the same answer, in the same time,
    /// whether or not it has an account); the others as they end
    /// ([`UserError::BadMailToken`] for any token not live).
    pub async fn recover(&self, request: Recovery) -> Result<(), UserError> {
        self.calls
            .call(|reply| UserMsg::Recovery {
                request,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// The live sessions of the verified access token's user, newest first.
    pub async fn sessions(&self, claims: Claims) -> Result<Vec<SessionInfo>, UserError> {
        self.calls
            .call(|reply| UserMsg::Sessions {
                claims,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// End the session `session` of the verified access token's user
    /// ([`UserError::NoSuchSession`] if it has no such live session).
    pub async fn end_session(&self, claims: Claims, session: String) -> Result<(), UserError> {
        self.calls
            .call(|reply| UserMsg::EndSession {
                claims,
                session,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// End every session of the verified access token's user but its own;
    /// how many ended.
    pub async fn end_other_sessions(&self, claims: Claims) -> Result<u64, UserError> {
        self.calls
            .call(|reply| UserMsg::EndOtherSessions {
                claims,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// End the session of a verified access token.
    pub async fn logout(&self, claims: Claims) -> Result<(), UserError> {
        self.calls
            .call(|reply| UserMsg::Logout {
                claims,
                parent: Parent::current(),
                reply,
            })
            .await
    }

    /// The whole profile of `id`: only for its owner.
    pub async fn profile(&self, id: UserId) -> Result<OwnerProfile, UserError> {
        self.calls.profile(id).await?.ok_or(UserError::NotFound)
    }

    /// Change `id`'s profile; the new one. The cached public profile is
    /// dropped before this answers.
    pub async fn update_profile(
        &self,
        id: UserId,
        changes: ProfileChanges,
    ) -> Result<OwnerProfile, UserError> {
        self.calls
            .call(|reply| UserMsg::UpdateProfile {
                id,
                changes,
                parent: Parent::current(),
                reply,
            })
            .await?
            .ok_or(UserError::NotFound)
    }

    /// Anyone's public profile as JSON, through the cache, limited by
    /// `limits.profile_lookups` for `client` (decided here, no round trip):
    /// a refused lookup loads nothing.
    pub async fn public_profile(
        &self,
        id: UserId,
        client: IpAddr,
    ) -> Result<ProfileJson, UserError> {
        if let Some(wait) = self.lookups.check(client) {
            return Err(UserError::Throttled(wait));
        }
        self.profiles
            .get(id.object_id())
            .await?
            .ok_or(UserError::NotFound)
    }

    /// The claims of a valid access token ([`UserError::InvalidToken`] otherwise).
    pub fn verify_access(&self, token: &str) -> Result<Claims, UserError> {
        self.tokens
            .verify(token, TokenType::Access)
            .map_err(|_| UserError::InvalidToken)
    }

    /// The access tokens' JWKS, as last loaded (no I/O).
    pub fn jwks(&self) -> Arc<str> {
        self.tokens.jwks()
    }

    /// A valid refresh token, ready for [`Self::refresh`].
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshToken, UserError> {
        self.tokens
            .verify_refresh(token)
            .map_err(|_| UserError::InvalidToken)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use ractor::{Actor, ActorProcessingErr, ActorRef};

    use super::*;
    use crate::supervision::slot::CallError;

    /// The size of the future `make` would return (never called: no
    /// `T` is needed).
    fn future_size<'a, T: 'a, F: std::future::Future>(_make: impl FnOnce(&'a T) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_profile_lookup_s_future_stays_small() {
        // The HTTP handler's future holds this one, and is allocated and
        // copied on every request: the cache's miss path is boxed.
        let id = UserId::from(ObjectId::new());
        let size = future_size(|users: &Users| users.public_profile(id, [127, 0, 0, 1].into()));
        assert!(size <= 192, "a profile lookup's future is {size} bytes");
    }

    /// Answers every profile request with Ada's whole profile.
    struct Ada;

    impl Actor for Ada {
        type Msg = UserMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<UserMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<UserMsg>,
            message: UserMsg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            if let UserMsg::Profile { id, reply, .. } = message {
                let _ = reply.send(Ok(Some(OwnerProfile {
                    id,
                    name: "Ada".into(),
                    email: "ada@example.com".into(),
                    age: Some(36),
                    created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                    email_verified: false,
                })));
            }
            Ok(())
        }
    }

    fn calls(slot: &ActorSlot<UserMsg>) -> UserCalls {
        UserCalls::new(slot.clone(), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn the_cache_is_handed_only_the_public_profile() {
        let slot = ActorSlot::new("user");
        let (actor, handle) = Actor::spawn(None, Ada, ()).await.unwrap();
        slot.set(actor.clone());
        let id = ObjectId::parse_str("65f1c0ffee0000000000beef").unwrap();
        let json = calls(&slot).public_profile(id).await.unwrap().unwrap();
        assert_eq!(
            &*json.0,
            r#"{"id":"65f1c0ffee0000000000beef","name":"Ada","createdAt":"2023-11-14T22:13:20Z"}"#
        );
        actor.stop(None);
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn an_actor_that_is_down_is_an_unavailable_error_all_the_way_to_the_cache() {
        let slot = ActorSlot::new("user");
        let id = ObjectId::new();
        let err = calls(&slot).profile(id.into()).await.unwrap_err();
        assert!(
            matches!(err, UserError::Unavailable(CallError::Unavailable("user"))),
            "{err:?}"
        );
        let load = calls(&slot).public_profile(id).await.unwrap_err();
        let cause = load.source().and_then(|e| e.downcast_ref::<UserError>());
        assert!(matches!(cause, Some(UserError::Unavailable(_))), "{load:?}");
    }
}
