//! UserActor: sign-up, login, token refresh with rotation, logout, profiles.
//!
//! # Contract
//! - Owns the `users` and `sessions` collections (and `used_refresh_tokens`).
//!   Handlers send it a [`UserMsg`] and get a `Result<_, UserError>` back.
//! - It never blocks its mailbox: each request runs as its own task, and bcrypt
//!   runs on tokio's blocking pool. Sign-up and login throughput therefore
//!   scales with cores instead of being capped by one mailbox.
//! - Sign-up and login write their job (`user.created`, `user.login`) before
//!   answering; the answer never waits for the job to run. Sign-up writes the
//!   job before the user, so a crash cannot leave a user without its job.
//!
//! # Sessions and rotation
//! A login (or sign-up) opens a *session*. The session stores the SHA-256
//! verifier of its one current refresh token. A refresh:
//! 1. verifies the JWT (HS256, refresh key, `typ = refresh`, not expired);
//! 2. records the token's `jti` in `used_refresh_tokens` with a plain insert
//!    on `_id`. A unique-key insert is atomic on MongoDB and on FerretDB alike,
//!    so of two requests presenting the same token exactly one gets through.
//!    A duplicate means the token was presented before: it is treated as theft
//!    and *all* the user's sessions are revoked;
//! 3. replaces the session's verifier with the new refresh token's, only if
//!    the session is not revoked and still holds the presented token's verifier.
//!
//! # Failure
//! State lives in MongoDB only; a restarted UserActor starts from its
//! arguments. Requests in flight when it dies finish in their own tasks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::{Collection, Database};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::cache::CacheMsg;
use crate::events::{EventKind, Events};
use crate::jobs::JobStore;
use crate::poller::PollerMsg;
use crate::slot::ActorSlot;
use crate::stats::ActorStats;
use crate::store::{ensure_indexes, index};
use crate::throttle::Throttle;
use crate::tokens::{self, Claims, TokenType, Tokens};

/// A sign-up, already validated and normalised by the caller.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    /// Trimmed and lower-cased.
    pub email: String,
    pub password: secrecy::SecretString,
    pub age: Option<u8>,
}

/// What every successful sign-up, login or refresh answers.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"access_token": "eyJhbGciOiJIUzI1NiJ9...", "refresh_token": "eyJhbGciOiJIUzI1NiJ9..."}))]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenPair([REDACTED])")
    }
}

/// The profile anyone may see, without authentication (`GET /users/{id}`):
/// never the e-mail address or the age, let alone a hash or a verifier.
/// Ids are guessable (a timestamp and a counter), so whatever this shows,
/// anyone can collect for every user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({"id": "65f1c0ffee0000000000beef", "name": "Ada Lovelace", "createdAt": "2026-11-29T06:30:00Z"}))]
pub struct PublicProfile {
    pub id: String,
    pub name: String,
    #[serde(rename = "createdAt")]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The profile its owner sees (`GET`/`PATCH /users/profile`): the public
/// profile with the e-mail address and the age.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({"id": "65f1c0ffee0000000000beef", "name": "Ada Lovelace", "email": "ada@example.com", "age": 36, "createdAt": "2026-11-29T06:30:00Z"}))]
pub struct OwnerProfile {
    pub id: String,
    pub name: String,
    pub email: String,
    pub age: Option<u8>,
    #[serde(rename = "createdAt")]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl OwnerProfile {
    /// What anyone else may see of it.
    pub fn public(&self) -> PublicProfile {
        PublicProfile {
            id: self.id.clone(),
            name: self.name.clone(),
            created_at: self.created_at,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("a user with this e-mail address already exists")]
    EmailTaken,
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("this refresh token was already used; all sessions of the user were revoked")]
    TokenReused,
    #[error("the session has ended; log in again")]
    SessionRevoked,
    #[error("no such user")]
    NotFound,
    /// Too many attempts or requests from this client; retry after this long.
    #[error("too many attempts")]
    Throttled(Duration),
    /// The store failed; the text is for logs only.
    #[error("store error: {0}")]
    Store(String),
}

impl From<mongodb::error::Error> for UserError {
    fn from(err: mongodb::error::Error) -> Self {
        Self::Store(err.to_string())
    }
}

type Reply<T> = RpcReplyPort<Result<T, UserError>>;

pub enum UserMsg {
    Signup(NewUser, Reply<TokenPair>),
    Login {
        email: String,
        password: secrecy::SecretString,
        /// The client's address, for throttling.
        client: IpAddr,
        reply: Reply<TokenPair>,
    },
    /// `claims` are the verified claims of `token` (verified by the caller).
    Refresh {
        token: String,
        claims: Claims,
        reply: Reply<TokenPair>,
    },
    /// End the session the access token belongs to.
    Logout {
        claims: Claims,
        reply: Reply<()>,
    },
    /// Change what the profile shows; answers the new profile (`None`: no
    /// such user). The cached copy is invalidated before the answer.
    UpdateProfile {
        id: ObjectId,
        changes: ProfileChanges,
        reply: Reply<Option<OwnerProfile>>,
    },
    /// The whole profile of a user id (`None`: no such user); only its
    /// owner, or [`OwnerProfile::public`] of it, may be shown.
    Profile {
        id: ObjectId,
        reply: Reply<Option<OwnerProfile>>,
    },
}

/// Fields a user may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    pub name: Option<String>,
    pub age: Option<u8>,
}

/// Stored user document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserDoc {
    #[serde(rename = "_id")]
    id: ObjectId,
    name: String,
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<i32>,
    password_hash: String,
    created_at: DateTime,
    updated_at: DateTime,
}

impl UserDoc {
    fn profile(&self) -> OwnerProfile {
        OwnerProfile {
            id: self.id.to_hex(),
            name: self.name.clone(),
            email: self.email.clone(),
            age: self.age.and_then(|a| u8::try_from(a).ok()),
            created_at: chrono::DateTime::from_timestamp_millis(self.created_at.timestamp_millis())
                .unwrap_or_default(),
        }
    }
}

/// Stored session: one login, one current refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionDoc {
    #[serde(rename = "_id")]
    id: String,
    user_id: ObjectId,
    refresh_verifier: String,
    revoked: bool,
    created_at: DateTime,
    updated_at: DateTime,
    expires_at: DateTime,
}

/// Everything the UserActor's tasks need. Shared, immutable.
pub struct Users {
    users: Collection<UserDoc>,
    sessions: Collection<SessionDoc>,
    used_tokens: Collection<Document>,
    jobs: JobStore,
    events: Events,
    throttle: Throttle,
    tokens: Arc<Tokens>,
    bcrypt_cost: u32,
    call_timeout: Duration,
}

impl Users {
    pub fn new(
        db: &Database,
        jobs: JobStore,
        events: Events,
        throttle: Throttle,
        tokens: Arc<Tokens>,
        bcrypt_cost: u32,
        call_timeout: Duration,
    ) -> Self {
        Self {
            events,
            throttle,
            users: db.collection("users"),
            sessions: db.collection("sessions"),
            used_tokens: db.collection("used_refresh_tokens"),
            jobs,
            tokens,
            bcrypt_cost,
            call_timeout,
        }
    }

    /// Unique e-mail; sessions by user.
    pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
        ensure_indexes(
            &db.collection("users"),
            vec![index(doc! { "email": 1 }, true)],
        )
        .await?;
        ensure_indexes(
            &db.collection("sessions"),
            vec![index(doc! { "userId": 1 }, false)],
        )
        .await
    }

    /// Sign up: the token pair, and the welcome job written for the user.
    async fn signup(&self, new: NewUser) -> Result<(TokenPair, ObjectId), UserError> {
        let password_hash = hash_password(new.password, self.bcrypt_cost).await?;
        let now = DateTime::now();
        let user = UserDoc {
            id: ObjectId::new(),
            name: new.name,
            email: new.email,
            age: new.age.map(i32::from),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        // The job is written *before* the user, so no crash can leave a user
        // without its welcome job. A job whose user never appears (a crash in
        // between, or a taken e-mail) finds no user and fails after its
        // retries, sending nothing.
        let payload = doc! { "userId": user.id, "email": &user.email, "name": &user.name };
        let job = self.jobs.enqueue("user.created", payload).await?;
        match self.users.insert_one(&user).await {
            Err(err) if is_duplicate_key(&err) => {
                self.jobs.delete(job).await?;
                return Err(UserError::EmailTaken);
            }
            other => other?,
        };
        let (pair, _) = self.open_session(&user).await?;
        tracing::debug!(target: "user", user = %user.id, job = %job, "user created");
        self.events.publish(EventKind::UserCreated {
            user_id: user.id.to_hex(),
        });
        Ok((pair, job))
    }

    /// Log in: the token pair, and the analytics job written for the login.
    async fn login(
        &self,
        email: String,
        password: secrecy::SecretString,
        client: IpAddr,
        dummy_hash: &str,
    ) -> Result<(TokenPair, ObjectId), UserError> {
        let ticket = match self.throttle.attempt(&email, client).await {
            Ok(ticket) => ticket,
            Err(wait) => {
                tracing::warn!(target: "auth", %client, "login throttled");
                return Err(UserError::Throttled(wait));
            }
        };
        let user = match self.check_password(&email, password, dummy_hash).await {
            Ok(Some(user)) => {
                ticket.succeeded().await;
                user
            }
            Ok(None) => {
                ticket.failed();
                tracing::info!(target: "auth", %client, "login failed: invalid credentials");
                return Err(UserError::InvalidCredentials);
            }
            Err(err) => {
                ticket.cancel().await;
                return Err(err);
            }
        };
        let (pair, sid) = self.open_session(&user).await?;
        let job = self
            .jobs
            .enqueue(
                "user.login",
                doc! { "userId": user.id, "at": DateTime::now() },
            )
            .await?;
        self.events.publish(EventKind::UserLoggedIn {
            user_id: user.id.to_hex(),
            session_id: sid,
        });
        Ok((pair, job))
    }

    /// The user with `email` if `password` is theirs (`None`: unknown e-mail
    /// or wrong password, indistinguishable).
    async fn check_password(
        &self,
        email: &str,
        password: secrecy::SecretString,
        dummy_hash: &str,
    ) -> Result<Option<UserDoc>, UserError> {
        let user = self.users.find_one(doc! { "email": email }).await?;
        // Verify against a dummy hash when there is no such user, so both
        // failures take the same time and give the same answer.
        let hash = user
            .as_ref()
            .map_or(dummy_hash, |u| u.password_hash.as_str())
            .to_owned();
        let matches = verify_password(password, hash).await?;
        Ok(user.filter(|_| matches))
    }

    /// A new session for `user`: its token pair and id.
    async fn open_session(&self, user: &UserDoc) -> Result<(TokenPair, String), UserError> {
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let issued = self.tokens.issue_pair(&user.id.to_hex(), &user.email, &sid);
        let session_id = sid.clone();
        let now = DateTime::now();
        self.sessions
            .insert_one(SessionDoc {
                id: sid,
                user_id: user.id,
                refresh_verifier: tokens::verifier(&issued.refresh_token),
                revoked: false,
                created_at: now,
                updated_at: now,
                expires_at: DateTime::from_millis(issued.refresh_claims.exp * 1000),
            })
            .await?;
        let pair = TokenPair {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
        };
        Ok((pair, session_id))
    }

    async fn refresh(&self, token: String, claims: Claims) -> Result<TokenPair, UserError> {
        if claims.typ != TokenType::Refresh {
            return Err(UserError::InvalidToken);
        }
        let user_id = ObjectId::parse_str(&claims.sub).map_err(|_| UserError::InvalidToken)?;
        let used = self
            .used_tokens
            .insert_one(doc! {
                "_id": &claims.jti,
                "sessionId": &claims.sid,
                "userId": user_id,
                "usedAt": DateTime::now(),
                "expiresAt": DateTime::from_millis(claims.exp * 1000),
            })
            .await;
        match used {
            Err(err) if is_duplicate_key(&err) => {
                self.revoke_all(user_id).await?;
                self.events.publish(EventKind::RefreshTokenReuseDetected {
                    user_id: user_id.to_hex(),
                    session_id: claims.sid.clone(),
                });
                return Err(UserError::TokenReused);
            }
            other => other?,
        };
        let old_verifier = tokens::verifier(&token);
        let issued = self
            .tokens
            .issue_pair(&claims.sub, &claims.email, &claims.sid);
        let rotated = self
            .sessions
            .update_one(
                doc! { "_id": &claims.sid, "revoked": false, "refreshVerifier": &old_verifier },
                doc! { "$set": {
                    "refreshVerifier": tokens::verifier(&issued.refresh_token),
                    "updatedAt": DateTime::now(),
                    "expiresAt": DateTime::from_millis(issued.refresh_claims.exp * 1000),
                } },
            )
            .await?;
        if rotated.matched_count == 0 {
            // Revoked (logout, earlier theft) or not the session's current token.
            tracing::info!(target: "auth", user = %user_id, session = %claims.sid, "refresh refused: session ended");
            return Err(UserError::SessionRevoked);
        }
        self.events.publish(EventKind::TokensRefreshed {
            user_id: claims.sub.clone(),
            session_id: claims.sid.clone(),
        });
        Ok(TokenPair {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
        })
    }

    async fn logout(&self, claims: Claims) -> Result<(), UserError> {
        self.sessions
            .update_one(
                doc! { "_id": &claims.sid },
                doc! { "$set": { "revoked": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        self.events.publish(EventKind::UserLoggedOut {
            user_id: claims.sub,
            session_id: claims.sid,
        });
        Ok(())
    }

    async fn revoke_all(&self, user_id: ObjectId) -> Result<(), UserError> {
        self.sessions
            .update_many(
                doc! { "userId": user_id, "revoked": false },
                doc! { "$set": { "revoked": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        Ok(())
    }

    async fn update_profile(
        &self,
        id: ObjectId,
        changes: ProfileChanges,
        cache: &ActorSlot<CacheMsg>,
    ) -> Result<Option<OwnerProfile>, UserError> {
        let mut set = doc! { "updatedAt": DateTime::now() };
        if let Some(name) = changes.name {
            set.insert("name", name);
        }
        if let Some(age) = changes.age {
            set.insert("age", i32::from(age));
        }
        let updated = self
            .users
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .await?;
        if updated.matched_count == 0 {
            return Ok(None);
        }
        // The write is acknowledged by MongoDB; drop the cached copy before
        // acknowledging it to the client, so no reader sees the old profile.
        // If the cache is unreachable the old copy expires within its TTL.
        if let Err(err) = cache
            .call(
                |reply| CacheMsg::Invalidate { id, reply },
                self.call_timeout,
            )
            .await
        {
            tracing::warn!(target: "cache", user = %id, error = %err, "invalidation failed; the cached profile expires with its TTL");
        }
        self.events.publish(EventKind::ProfileUpdated {
            user_id: id.to_hex(),
        });
        self.profile(id).await
    }

    async fn profile(&self, id: ObjectId) -> Result<Option<OwnerProfile>, UserError> {
        Ok(self
            .users
            .find_one(doc! { "_id": id })
            .await?
            .map(|u| u.profile()))
    }
}

async fn hash_password(password: secrecy::SecretString, cost: u32) -> Result<String, UserError> {
    use secrecy::ExposeSecret;
    tokio::task::spawn_blocking(move || bcrypt::hash(password.expose_secret(), cost))
        .await
        .map_err(|e| UserError::Store(format!("hashing task: {e}")))?
        .map_err(|e| UserError::Store(format!("bcrypt: {e}")))
}

async fn verify_password(password: secrecy::SecretString, hash: String) -> Result<bool, UserError> {
    use secrecy::ExposeSecret;
    tokio::task::spawn_blocking(move || {
        bcrypt::verify(password.expose_secret(), &hash).unwrap_or(false)
    })
    .await
    .map_err(|e| UserError::Store(format!("hashing task: {e}")))
}

/// Whether a write failed on a unique index (E11000).
pub fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|e| e.code == 11000)),
        _ => false,
    }
}

/// Run `work` as a task of its own and send its result to `reply`.
fn respond<T: Send + 'static>(
    reply: Reply<T>,
    work: impl std::future::Future<Output = Result<T, UserError>> + Send + 'static,
) {
    tokio::spawn(async move {
        let _ = reply.send(work.await);
    });
}

/// Arguments: the shared service. Cloned on every restart.
#[derive(Clone)]
pub struct UserArgs {
    pub users: Arc<Users>,
    /// Told about every change a cached profile shows.
    pub cache: ActorSlot<CacheMsg>,
    /// Told of every job enqueued, so it starts without waiting for a tick.
    pub poller: ActorSlot<PollerMsg>,
    pub stats: Arc<ActorStats>,
}

pub struct UserState {
    users: Arc<Users>,
    cache: ActorSlot<CacheMsg>,
    poller: ActorSlot<PollerMsg>,
    stats: Arc<ActorStats>,
    /// A bcrypt hash of a random string at the configured cost, for logins of
    /// unknown e-mails.
    dummy_hash: Arc<str>,
}

#[derive(Clone, Copy, Default)]
pub struct UserActor;

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = UserArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<UserMsg>,
        args: UserArgs,
    ) -> Result<UserState, ActorProcessingErr> {
        let random = uuid::Uuid::new_v4().to_string();
        let dummy = hash_password(random.into(), args.users.bcrypt_cost).await?;
        Ok(UserState {
            users: args.users,
            cache: args.cache,
            poller: args.poller,
            stats: args.stats,
            dummy_hash: dummy.into(),
        })
    }

    #[tracing::instrument(skip_all, name = "user_actor")]
    async fn handle(
        &self,
        myself: ActorRef<UserMsg>,
        message: UserMsg,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = state.stats.begin(&myself.get_cell()).await;
        // Each request runs in its own task so that slow work (bcrypt, I/O)
        // never holds up the mailbox. The reply port travels with the task.
        let users = Arc::clone(&state.users);
        let dummy = Arc::clone(&state.dummy_hash);
        let poller = state.poller.clone();
        // Sign-up and login wrote a job: hand it to the poller so it starts
        // now, without waiting for a tick or listing the queue.
        let enqueued = move |job| {
            let _ = poller.cast(PollerMsg::Enqueued(job));
        };
        match message {
            UserMsg::Signup(new, reply) => respond(reply, async move {
                let (pair, job) = users.signup(new).await?;
                enqueued(job);
                Ok(pair)
            }),
            UserMsg::Login {
                email,
                password,
                client,
                reply,
            } => respond(reply, async move {
                let (pair, job) = users.login(email, password, client, &dummy).await?;
                enqueued(job);
                Ok(pair)
            }),
            UserMsg::Refresh {
                token,
                claims,
                reply,
            } => respond(reply, async move { users.refresh(token, claims).await }),
            UserMsg::Logout { claims, reply } => {
                respond(reply, async move { users.logout(claims).await })
            }
            UserMsg::UpdateProfile { id, changes, reply } => {
                let cache = state.cache.clone();
                respond(reply, async move {
                    users.update_profile(id, changes, &cache).await
                })
            }
            UserMsg::Profile { id, reply } => {
                respond(reply, async move { users.profile(id).await })
            }
        }
        Ok(())
    }
}
