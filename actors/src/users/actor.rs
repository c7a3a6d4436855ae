//! UserActor: sign-up, login, token refresh with rotation, logout, profiles.
//!
//! # Contract
//! - Owns the `users` and `sessions` collections (and `used_refresh_tokens`).
//!   Callers go through the [`Users`](crate::users::Users) handle, which sends
//!   it a [`UserMsg`] and gets a `Result<_, UserError>` back.
//! - It never blocks its mailbox: each request runs as its own task, and bcrypt
//!   runs on tokio's blocking pool. Sign-up and login throughput therefore
//!   scales with cores instead of being capped by one mailbox.
//! - Sign-up and login write their job (`user.created`, `user.login`) before
//!   answering; the answer never waits for the job to run. Sign-up writes the
//!   job before the user, so a crash cannot leave a user without its job.
//! - Owns `signup_idempotency` too, and prunes its expired records every
//!   `auth.idempotency.prune_interval` (a `send_interval` timer and one prune
//!   task at a time, both stopped with it).
//! - E-mail addresses arrive as [`Email`](crate::users::email::Email)s
//!   (canonical); passwords are NFKC-normalised before hashing and verifying
//!   ([`crate::users::password`]).
//! - A changed profile is invalidated in the cache (through the cache's
//!   [`Invalidator`](crate::cache::Invalidator)) before the change is answered.
//!
//! # Sessions and rotation
//! A login (or sign-up) opens a *session*. The session stores the SHA-256
//! verifier of its one current refresh token. A refresh:
//! 1. verifies the JWT (HS256, refresh key, `typ = refresh`, not expired);
//! 2. records the token's `jti` in `used_refresh_tokens` with a plain insert
//!    on `_id`. A unique-key insert is atomic on MongoDB and on FerretDB alike,
//!    so of two requests presenting the same token exactly one is its first
//!    use. A duplicate means the token was presented before:
//!    - within `auth.refresh_reuse_grace` of its first use (a client's retry,
//!      or two tabs refreshing at once) it is answered like the first use,
//!      with the same pair (the token's successor, see
//!      [`crate::users::tokens`]), as long as the session still holds the
//!      token or that successor;
//!    - otherwise (after the window, or once the session has moved past the
//!      successor or was revoked) it is treated as theft and *all* the
//!      user's sessions are revoked — the first time only. The record is
//!      then marked (`reuseDetectedAt`), and later replays of that token get
//!      401 without revoking again: otherwise whoever holds one old token
//!      could log the user out, again and again, for the token's life;
//! 3. checks (side by side with step 2) that the user still exists: a
//!    deleted account's sessions mint no tokens;
//! 4. sets the session's verifier to the successor's, only if the session
//!    is not revoked and holds the presented token's verifier (or already
//!    the successor's: a retry that overtook the first use).
//!
//! # Idempotent sign-up
//! A sign-up may carry an `Idempotency-Key`; see [`crate::users::idempotency`]
//! for the records and `UserService::signup_with_key` (in
//! [`crate::users::signup`]) for the protocol.
//!
//! # Tasks, failure and shutdown
//! State lives in MongoDB only; a restarted UserActor starts from its
//! arguments. Request tasks are held in a [`RequestTasks`] set that belongs
//! to the actor's place, not to one incarnation: a request in flight when
//! the actor panics finishes in its task (a sign-up half done would leave a
//! welcome job whose user never comes), and the next incarnation keeps
//! reaping the set. A graceful stop lets the requests in flight finish
//! within the shutdown grace, then aborts what is left; so does a kill
//! during that wait. The prune is aborted at stop: the next one catches up.

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use secrecy::SecretString;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tracing::Instrument;

use crate::supervision::stats::{ActorStats, Handling};
use crate::trace::Parent;
use crate::users::email::Email;
use crate::users::id::UserId;
use crate::users::idempotency::IdempotencyKey;
use crate::users::model::{Client, NewUser, OwnerProfile, ProfileChanges, SessionInfo, TokenPair};
use crate::users::password::{self, Password};
use crate::users::password_reset::Recovery;
use crate::users::service::UserService;
use crate::users::tokens::{Claims, RefreshToken};
use crate::users::UserError;

type Reply<T> = RpcReplyPort<Result<T, UserError>>;

/// The actor's name in its messages' spans (`UserActor login`).
const ACTOR: &str = "UserActor";

pub(crate) enum UserMsg {
    Signup {
        new: NewUser,
        /// The request's `Idempotency-Key`, if it sent one.
        key: Option<IdempotencyKey>,
        /// The sender's span: the sign-up's span is its child.
        parent: Parent,
        reply: Reply<TokenPair>,
    },
    Login {
        /// The canonical address; `None` when the input was no valid
        /// address (answered like an unknown account).
        email: Option<Email>,
        /// As typed: normalised (NFKC) by the actor before verifying.
        password: SecretString,
        /// The client: its address for throttling, both for the session.
        client: Client,
        /// The sender's span: the handling's span is its child.
        parent: Parent,
        reply: Reply<TokenPair>,
    },
    Refresh {
        token: RefreshToken,
        /// Recorded on the session.
        client: Client,
        /// The sender's span: the handling's span is its child.
        parent: Parent,
        reply: Reply<TokenPair>,
    },
    /// Change the password of the access token's user, ending its other
    /// sessions ([`crate::users::password_change`]).
    ChangePassword {
        claims: Claims,
        /// As typed: verified like a login's.
        current: SecretString,
        new: Password,
        /// For the login throttle.
        client: IpAddr,
        /// The sender's span: the handling's span is its child.
        parent: Parent,
        reply: Reply<()>,
    },
    /// A request about a mailed token ([`Recovery`]). A forgot-password
    /// request is answered at once, before the address is looked at; its
    /// work runs after the answer in an owned task.
    Recovery {
        request: Recovery,
        parent: Parent,
        reply: Reply<()>,
    },
    /// The live sessions of the access token's user.
    Sessions {
        claims: Claims,
        parent: Parent,
        reply: Reply<Vec<SessionInfo>>,
    },
    /// End one session of the access token's user.
    EndSession {
        claims: Claims,
        session: String,
        parent: Parent,
        reply: Reply<()>,
    },
    /// End every other session of the access token's user; how many.
    EndOtherSessions {
        claims: Claims,
        parent: Parent,
        reply: Reply<u64>,
    },
    /// End the session the access token belongs to.
    Logout {
        claims: Claims,
        /// The sender's span: the handling's span is its child.
        parent: Parent,
        reply: Reply<()>,
    },
    /// Change what the profile shows; answers the new profile (`None`: no
    /// such user). The cached copy is invalidated before the answer.
    UpdateProfile {
        id: UserId,
        changes: ProfileChanges,
        /// The sender's span: the handling's span is its child.
        parent: Parent,
        reply: Reply<Option<OwnerProfile>>,
    },
    /// The whole profile of a user id (`None`: no such user); only its
    /// owner, or [`OwnerProfile::public`] of it, may be shown.
    Profile {
        id: UserId,
        /// The sender's span: the handling's span is its child.
        parent: Parent,
        reply: Reply<Option<OwnerProfile>>,
    },
    /// Internal, on a timer: delete expired idempotency records, mail
    /// tokens and mail-quota slots.
    PruneKeys,
}

/// The UserActor's tasks, held by its place (see "Tasks, failure and
/// shutdown" above). Finished tasks are reaped at every spawn, so the set
/// holds only what runs.
#[derive(Clone, Default)]
pub(crate) struct RequestTasks(Arc<Mutex<JoinSet<()>>>);

impl RequestTasks {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        let mut tasks = self.0.lock().expect("request tasks lock");
        while let Some(done) = tasks.try_join_next() {
            if let Err(err) = done {
                tracing::error!(target: "user", error = %err, "a user request task failed");
            }
        }
        tasks.spawn(task)
    }

    /// Let the running tasks finish within `grace`. What is left is aborted
    /// when the taken set drops: at the end, or if this wait is dropped.
    async fn finish(&self, grace: Duration) {
        let mut tasks = std::mem::take(&mut *self.0.lock().expect("request tasks lock"));
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(target: "user", left = tasks.len(), "user requests still running after the grace; aborted");
        }
    }
}

/// Arguments, cloned on every restart.
#[derive(Clone)]
pub(crate) struct UserArgs {
    pub service: Arc<UserService>,
    pub stats: Arc<ActorStats>,
    /// Shared by every incarnation of this place.
    pub tasks: RequestTasks,
    /// How long a graceful stop waits for the requests in flight.
    pub grace: Duration,
}

pub(crate) struct UserState {
    service: Arc<UserService>,
    stats: Arc<ActorStats>,
    tasks: RequestTasks,
    grace: Duration,
    /// A bcrypt hash of a random string at the configured cost, for logins of
    /// unknown e-mails.
    dummy_hash: Arc<str>,
    /// Sends `PruneKeys` every `auth.idempotency.prune_interval`.
    prune_timer: Option<JoinHandle<()>>,
    /// The prune in progress, if any (one at a time; aborted at stop).
    pruning: Option<AbortHandle>,
}

impl UserState {
    /// Run a request in a task of its own (its reply port and its
    /// `Handling` guard travel with it, so the handling time on
    /// `/ops/actors` covers the request, not its spawn), or start a prune.
    fn dispatch(&mut self, message: UserMsg, handling: Handling) {
        let service = Arc::clone(&self.service);
        match message {
            UserMsg::Signup {
                new,
                key,
                parent,
                reply,
            } => {
                // Only the kind of request: never the address or the key.
                let span = parent.span(ACTOR, "signup");
                self.respond(handling, reply, span, async move {
                    service.signup(new, key).await
                })
            }
            UserMsg::Login {
                email,
                password,
                client,
                parent,
                reply,
            } => {
                let dummy = Arc::clone(&self.dummy_hash);
                let span = parent.span(ACTOR, "login");
                self.respond(handling, reply, span, async move {
                    service.login(email, password, client, &dummy).await
                })
            }
            UserMsg::Refresh {
                token,
                client,
                parent,
                reply,
            } => {
                let span = parent.span(ACTOR, "refresh");
                self.respond(handling, reply, span, async move {
                    service.refresh(token, client).await
                })
            }
            UserMsg::ChangePassword {
                claims,
                current,
                new,
                client,
                parent,
                reply,
            } => {
                let dummy = Arc::clone(&self.dummy_hash);
                let span = parent.span(ACTOR, "change_password");
                self.respond(handling, reply, span, async move {
                    service
                        .change_password(claims, current, new, client, &dummy)
                        .await
                })
            }
            UserMsg::Recovery {
                request,
                parent,
                reply,
            } => {
                let span = parent.span(ACTOR, request.name());
                if !matches!(request, Recovery::Forgot(_)) {
                    let work = async move { service.recover(request).await };
                    return self.respond(handling, reply, span, work);
                }
                // Answered first: nothing about the address shows in the
                // answer or its timing.
                let _ = reply.send(Ok(()));
                let work = async move {
                    let _ = service.recover(request).await;
                };
                self.tasks.spawn(handling.measure(work.instrument(span)));
            }
            UserMsg::Sessions {
                claims,
                parent,
                reply,
            } => {
                let span = parent.span(ACTOR, "sessions");
                self.respond(handling, reply, span, async move {
                    service.sessions_of(&claims).await
                })
            }
            UserMsg::EndSession {
                claims,
                session,
                parent,
                reply,
            } => {
                let span = parent.span(ACTOR, "end_session");
                self.respond(handling, reply, span, async move {
                    service.end_session(&claims, &session).await
                })
            }
            UserMsg::EndOtherSessions {
                claims,
                parent,
                reply,
            } => {
                let span = parent.span(ACTOR, "end_other_sessions");
                self.respond(handling, reply, span, async move {
                    service.end_others(&claims).await
                })
            }
            UserMsg::Logout {
                claims,
                parent,
                reply,
            } => {
                let span = parent.span(ACTOR, "logout");
                self.respond(handling, reply, span, async move {
                    service.logout(claims).await
                })
            }
            UserMsg::UpdateProfile {
                id,
                changes,
                parent,
                reply,
            } => {
                let span = parent.span(ACTOR, "update_profile");
                self.respond(handling, reply, span, async move {
                    service.update_profile(id, changes).await
                })
            }
            UserMsg::Profile { id, parent, reply } => {
                let span = parent.span(ACTOR, "profile");
                self.respond(
                    handling,
                    reply,
                    span,
                    async move { service.profile(id).await },
                )
            }
            UserMsg::PruneKeys => self.prune(handling),
        }
    }

    /// Run `work` inside `span` (the message's) as an owned task and send
    /// its result to `reply`.
    fn respond<T: Send + 'static>(
        &self,
        handling: Handling,
        reply: Reply<T>,
        span: tracing::Span,
        work: impl Future<Output = Result<T, UserError>> + Send + 'static,
    ) {
        let work = work.instrument(span);
        self.tasks.spawn(async move {
            let _ = reply.send(handling.measure(work).await);
        });
    }

    /// Start a prune unless one is running.
    fn prune(&mut self, handling: Handling) {
        if self.pruning.as_ref().is_none_or(AbortHandle::is_finished) {
            let service = Arc::clone(&self.service);
            let prune = handling.measure(async move {
                service.prune_keys().await;
                service.prune_mail_records().await;
            });
            self.pruning = Some(self.tasks.spawn(prune));
        }
    }
}

#[derive(Clone, Copy, Default)]
pub(crate) struct UserActor;

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = UserArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<UserMsg>,
        args: UserArgs,
    ) -> Result<UserState, ActorProcessingErr> {
        let random = Password::new(&uuid::Uuid::new_v4().to_string()).expect("36 ASCII characters");
        let dummy = password::hash(random, args.service.tuning.bcrypt_cost).await?;
        Ok(UserState {
            service: args.service,
            stats: args.stats,
            tasks: args.tasks,
            grace: args.grace,
            dummy_hash: dummy.into(),
            prune_timer: None,
            pruning: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<UserMsg>,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        // In a task of the set (waited for at stop), not here: with MongoDB
        // unreachable at start this must not hold the actor's start up.
        let service = Arc::clone(&state.service);
        state
            .tasks
            .spawn(async move { service.prepare_mail_collections().await });
        let stats = Arc::clone(&state.stats);
        let period = state.service.tuning.idempotency.prune_interval;
        state.prune_timer = Some(myself.send_interval(period, move || {
            stats.sent();
            UserMsg::PruneKeys
        }));
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<UserMsg>,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        // The timer and a running prune belong to this incarnation. (After a
        // panic ractor skips post_stop; then the timer ends at its next send
        // to the dead actor, and a running prune after its one delete.)
        if let Some(timer) = state.prune_timer.take() {
            timer.abort();
        }
        if let Some(prune) = state.pruning.take() {
            prune.abort();
        }
        state.tasks.finish(state.grace).await;
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "user_actor")]
    async fn handle(
        &self,
        myself: ActorRef<UserMsg>,
        message: UserMsg,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        let handling = state.stats.begin(&myself.get_cell()).await;
        state.dispatch(message, handling);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn len(tasks: &RequestTasks) -> usize {
        tasks.0.lock().unwrap().len()
    }

    #[tokio::test(start_paused = true)]
    async fn finished_tasks_are_reaped_so_the_set_holds_only_what_runs() {
        let tasks = RequestTasks::default();
        for _ in 0..100 {
            tasks.spawn(async {});
            tokio::task::yield_now().await;
        }
        assert!(len(&tasks) <= 2, "{} tasks held", len(&tasks));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_lets_requests_finish_within_the_grace() {
        let tasks = RequestTasks::default();
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            flag.store(true, Ordering::SeqCst);
        });
        tasks.finish(Duration::from_secs(5)).await;
        assert!(done.load(Ordering::SeqCst), "the request finished");
    }

    #[tokio::test(start_paused = true)]
    async fn what_outlasts_the_grace_is_aborted() {
        let tasks = RequestTasks::default();
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let slow = tasks.spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            flag.store(true, Ordering::SeqCst);
        });
        let started = tokio::time::Instant::now();
        tasks.finish(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(slow.is_finished(), "aborted");
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!done.load(Ordering::SeqCst), "it never completed");
        assert_eq!(len(&tasks), 0);
    }
}
