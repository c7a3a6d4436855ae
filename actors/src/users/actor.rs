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
//! - Owns `signup_idempotency` too, and prunes its expired records every
//!   `auth.idempotency.prune_interval` (a timer and one prune task at a
//!   time, both held in its state and stopped with it).
//! - E-mail addresses arrive as [`Email`]s (canonical); passwords are
//!   NFKC-normalised before hashing and verifying ([`crate::users::password`]).
//!
//! # Sessions and rotation
//! A login (or sign-up) opens a *session*. The session stores the SHA-256
//! verifier of its one current refresh token. A refresh:
//! 1. verifies the JWT (HS256, refresh key, `typ = refresh`, not expired);
//! 2. records the token's `jti` in `used_refresh_tokens` with a plain insert
//!    on `_id`. A unique-key insert is atomic on MongoDB and on FerretDB alike,
//!    so of two requests presenting the same token exactly one gets through.
//!    A duplicate means the token was presented before: it is treated as theft
//!    and *all* the user's sessions are revoked — the first time only. The
//!    record is then marked (`reuseDetectedAt`), and later replays of that
//!    token get 401 without revoking again: otherwise whoever holds one old
//!    token could log the user out, again and again, for the token's life;
//! 3. checks (side by side with step 2) that the user still exists: a
//!    deleted account's sessions mint no tokens;
//! 4. replaces the session's verifier with the new refresh token's, only if
//!    the session is not revoked and still holds the presented token's verifier.
//!
//! # Idempotent sign-up
//! A sign-up may carry an `Idempotency-Key`; see [`crate::users::idempotency`] for
//! the records and [`Users::signup_with_key`] for the protocol.
//!
//! # Failure
//! State lives in MongoDB only; a restarted UserActor starts from its
//! arguments. Requests in flight when it dies finish in their own tasks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::{Collection, Database};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::cache::CacheMsg;
use crate::events::{Event, Events};
use crate::queue::producer::JobQueue;
use crate::store::{ensure_indexes, index};
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;
use crate::users::email::Email;
use crate::users::idempotency::{
    self, Assessment, IdempotencyConfig, IdempotencyKey, KeyRecord, KeyStore, Reservation,
};
use crate::users::password::{self, Password};
use crate::users::throttle::Throttle;
use crate::users::tokens::{self, Claims, TokenType, Tokens};

/// A sign-up, already validated and normalised by the caller.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Trimmed.
    pub name: String,
    pub email: Email,
    /// NFKC-normalised, length-checked.
    pub password: Password,
    pub age: Option<u8>,
}

/// The throttle's account key for logins whose e-mail is no valid address:
/// one shared key, so junk input cannot create throttle keys without bound
/// (and it names no account anyway).
const NOT_AN_ADDRESS: &str = "(not an e-mail address)";

/// How often a keyed sign-up that waits for the request holding its key
/// looks for the user.
const KEY_POLL: Duration = Duration::from_millis(50);

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
    /// A replay of a token whose reuse was already detected (and answered
    /// by revoking): refused, nothing more is revoked.
    #[error("this refresh token was already used")]
    TokenSpent,
    /// The idempotency key was used for another sign-up (other fields, or
    /// another password for the account it created).
    #[error("this Idempotency-Key was used with another request body")]
    KeyReused,
    /// The first sign-up with this idempotency key is still running.
    #[error("a sign-up with this Idempotency-Key is still in progress; retry shortly")]
    SignupInProgress,
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
    Signup {
        new: NewUser,
        /// The request's `Idempotency-Key`, if it sent one.
        key: Option<IdempotencyKey>,
        reply: Reply<TokenPair>,
    },
    Login {
        /// The canonical address; `None` when the input was no valid
        /// address (answered like an unknown account).
        email: Option<Email>,
        /// As typed: normalised (NFKC) by the actor before verifying.
        password: SecretString,
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
    Logout { claims: Claims, reply: Reply<()> },
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
    /// Internal, on a timer: delete expired idempotency records.
    PruneKeys,
}

/// What creating a user with a chosen id came to.
enum Created {
    /// This request created it: its first session and its welcome job.
    New(TokenPair, ObjectId),
    /// A user with that id existed already: a request with the same
    /// idempotency key created it first.
    Existing(Box<UserDoc>),
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
    keys: KeyStore,
    idempotency: IdempotencyConfig,
    jobs: JobQueue,
    events: Events,
    throttle: Throttle,
    tokens: Arc<Tokens>,
    bcrypt_cost: u32,
    call_timeout: Duration,
}

impl Users {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: &Database,
        jobs: JobQueue,
        events: Events,
        throttle: Throttle,
        tokens: Arc<Tokens>,
        bcrypt_cost: u32,
        call_timeout: Duration,
        idempotency: IdempotencyConfig,
    ) -> Self {
        Self {
            events,
            throttle,
            users: db.collection("users"),
            sessions: db.collection("sessions"),
            used_tokens: db.collection("used_refresh_tokens"),
            keys: KeyStore::new(db),
            idempotency,
            jobs,
            tokens,
            bcrypt_cost,
            call_timeout,
        }
    }

    /// Unique e-mail; sessions by user; idempotency records by age.
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
        .await?;
        KeyStore::ensure_indexes(db).await
    }

    /// Sign up without an idempotency key: the token pair, and the welcome
    /// job written for the user.
    async fn signup(&self, new: NewUser) -> Result<(TokenPair, Option<ObjectId>), UserError> {
        match self.create_user(&new, ObjectId::new()).await? {
            Created::New(pair, job) => Ok((pair, Some(job))),
            // A fresh ObjectId is nobody's: only a taken e-mail collides.
            Created::Existing(_) => Err(UserError::EmailTaken),
        }
    }

    /// Create user `id` with its welcome job, and open its first session.
    async fn create_user(&self, new: &NewUser, id: ObjectId) -> Result<Created, UserError> {
        let password_hash = password::hash(new.password.clone(), self.bcrypt_cost)
            .await
            .map_err(|e| UserError::Store(e.to_string()))?;
        let now = DateTime::now();
        let user = UserDoc {
            id,
            name: new.name.clone(),
            email: new.email.as_str().to_owned(),
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
                self.jobs.withdraw(job).await?;
                // Our own id taken: a request with the same idempotency key
                // created the user first (its welcome job stands for both).
                return match self.users.find_one(doc! { "_id": id }).await? {
                    Some(existing) => Ok(Created::Existing(Box::new(existing))),
                    None => Err(UserError::EmailTaken),
                };
            }
            other => other?,
        };
        let (pair, _) = self.open_session(&user).await?;
        tracing::debug!(target: "user", user = %user.id, job = %job, "user created");
        self.events.publish(Event::UserCreated {
            user_id: user.id.to_hex(),
        });
        Ok(Created::New(pair, job))
    }

    /// Sign up with an idempotency key: the first request with the key signs
    /// up; a repeat with the same body gets a new session of the account it
    /// created (never 409 for its own account); another body gets
    /// [`UserError::KeyReused`]. See [`crate::users::idempotency`].
    async fn signup_with_key(
        &self,
        new: NewUser,
        key: IdempotencyKey,
    ) -> Result<(TokenPair, Option<ObjectId>), UserError> {
        let fingerprint = idempotency::fingerprint(new.email.as_str(), &new.name, new.age);
        // Answer (409 "in progress") well before the handler stops waiting.
        let wait_until = Instant::now() + self.call_timeout / 2;
        // Each round either answers or removes a record in the way (expired,
        // or deleted under us); three are plenty, and bound the loop.
        for _ in 0..3 {
            let record = KeyRecord::new(&key, fingerprint.clone());
            let existing = match self.keys.reserve(&record).await? {
                Reservation::Held => return self.signup_holding_key(&new, &record).await,
                Reservation::Vanished => continue,
                Reservation::Taken(existing) => existing,
            };
            match existing.assess(&fingerprint, DateTime::now(), self.idempotency.ttl) {
                Assessment::Expired => self.keys.remove(&existing).await?,
                Assessment::OtherBody => return Err(UserError::KeyReused),
                Assessment::SameBody => return self.repeat(&new, &existing, wait_until).await,
            }
        }
        Err(UserError::SignupInProgress)
    }

    /// Run the sign-up `record` holds the key for (as its first request, or
    /// taking over from one that never finished).
    async fn signup_holding_key(
        &self,
        new: &NewUser,
        record: &KeyRecord,
    ) -> Result<(TokenPair, Option<ObjectId>), UserError> {
        match self.create_user(new, record.user_id).await {
            Ok(Created::New(pair, job)) => Ok((pair, Some(job))),
            Ok(Created::Existing(user)) => Ok((self.resume(new, &user).await?, None)),
            Err(UserError::EmailTaken) => {
                // A definite answer, and no user made: forget the key, so a
                // retry runs again and gets the same answer.
                self.keys.remove(record).await?;
                Err(UserError::EmailTaken)
            }
            // Undecided (a store error: the user may exist). The record
            // stays; a retry finds the user, or takes over.
            Err(other) => Err(other),
        }
    }

    /// A repeat of the sign-up `record` belongs to: answered from its user.
    /// While the user does not exist the first request is still running —
    /// wait for it until `wait_until`, then 409 "in progress" — or it died:
    /// once the record is older than the actor-call timeout the first
    /// request has been answered (503) and may never finish, so take over
    /// with the same user id (only one creator can win that id).
    async fn repeat(
        &self,
        new: &NewUser,
        record: &KeyRecord,
        wait_until: Instant,
    ) -> Result<(TokenPair, Option<ObjectId>), UserError> {
        loop {
            if let Some(user) = self.users.find_one(doc! { "_id": record.user_id }).await? {
                return Ok((self.resume(new, &user).await?, None));
            }
            if record.age(DateTime::now()) >= self.call_timeout {
                tracing::info!(target: "user", user = %record.user_id, "taking over an unfinished keyed sign-up");
                return self.signup_holding_key(new, record).await;
            }
            if Instant::now() >= wait_until {
                return Err(UserError::SignupInProgress);
            }
            tokio::time::sleep(KEY_POLL).await;
        }
    }

    /// A new session for `user`, created by an earlier request with the same
    /// key and fields, if `new` has its password too (bcrypt; a mismatch is
    /// another request body).
    async fn resume(&self, new: &NewUser, user: &UserDoc) -> Result<TokenPair, UserError> {
        let matches = password::verify(new.password.to_secret(), user.password_hash.clone())
            .await
            .map_err(|e| UserError::Store(e.to_string()))?;
        if !matches {
            return Err(UserError::KeyReused);
        }
        let (pair, sid) = self.open_session(user).await?;
        tracing::info!(target: "auth", user = %user.id, session = %sid, "repeated keyed sign-up: new session");
        Ok(pair)
    }

    /// Delete expired idempotency records.
    async fn prune_keys(&self) {
        match self.keys.prune(self.idempotency.ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(target: "user", pruned = n, "expired idempotency keys deleted"),
            Err(err) => {
                tracing::warn!(target: "user", error = %err, "pruning idempotency keys failed")
            }
        }
    }

    /// Log in: the token pair, and the analytics job written for the login.
    async fn login(
        &self,
        email: Option<Email>,
        password: SecretString,
        client: IpAddr,
        dummy_hash: &str,
    ) -> Result<(TokenPair, ObjectId), UserError> {
        // Something that is no address names no account: it is answered
        // exactly like an unknown one (one shared throttle key, the dummy
        // hash's timing), so login reveals nothing new.
        let account = email.as_ref().map_or(NOT_AN_ADDRESS, Email::as_str);
        let ticket = match self.throttle.attempt(account, client).await {
            Ok(ticket) => ticket,
            Err(wait) => {
                tracing::warn!(target: "auth", %client, "login throttled");
                return Err(UserError::Throttled(wait));
            }
        };
        let user = match self
            .check_password(email.as_ref(), password, dummy_hash)
            .await
        {
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
        self.events.publish(Event::UserLoggedIn {
            user_id: user.id.to_hex(),
            session_id: sid,
        });
        Ok((pair, job))
    }

    /// The user with `email` if `password` is theirs (`None`: unknown e-mail
    /// or wrong password, indistinguishable).
    async fn check_password(
        &self,
        email: Option<&Email>,
        password: SecretString,
        dummy_hash: &str,
    ) -> Result<Option<UserDoc>, UserError> {
        let user = match email {
            Some(email) => {
                self.users
                    .find_one(doc! { "email": email.as_str() })
                    .await?
            }
            None => None,
        };
        // Verify against a dummy hash when there is no such user, so both
        // failures take the same time and give the same answer.
        let hash = user
            .as_ref()
            .map_or(dummy_hash, |u| u.password_hash.as_str())
            .to_owned();
        let matches = password::verify(password, hash)
            .await
            .map_err(|e| UserError::Store(e.to_string()))?;
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
        // Spend the token and look the user up side by side: the look-up
        // adds a read (on the refresh path, no latency).
        let users = self.users.clone_with_type::<Document>();
        let lookup = async {
            users
                .find_one(doc! { "_id": user_id })
                .projection(doc! { "email": 1 })
                .await
        };
        let (spent, user) = tokio::join!(self.spend(&claims, user_id), lookup);
        spent?;
        let email = user?.and_then(|u| u.get_str("email").ok().map(str::to_owned));
        let Some(email) = email else {
            // The account is gone (deleted by an operator): its sessions
            // must not mint tokens.
            tracing::info!(target: "auth", user = %user_id, session = %claims.sid, "refresh refused: no such user");
            return Err(UserError::InvalidToken);
        };
        let old_verifier = tokens::verifier(&token);
        let issued = self.tokens.issue_pair(&claims.sub, &email, &claims.sid);
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
        self.events.publish(Event::TokensRefreshed {
            user_id: claims.sub.clone(),
            session_id: claims.sid.clone(),
        });
        Ok(TokenPair {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
        })
    }

    /// Record the token `claims` describe as spent (a unique-key insert: of
    /// two requests presenting it, exactly one gets through). A second
    /// presentation is an error: see [`Self::reuse_detected`].
    async fn spend(&self, claims: &Claims, user_id: ObjectId) -> Result<(), UserError> {
        let inserted = self
            .used_tokens
            .insert_one(doc! {
                "_id": &claims.jti,
                "sessionId": &claims.sid,
                "userId": user_id,
                "usedAt": DateTime::now(),
                "expiresAt": DateTime::from_millis(claims.exp * 1000),
            })
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(err) if is_duplicate_key(&err) => Err(self.reuse_detected(claims, user_id).await?),
            Err(err) => Err(err.into()),
        }
    }

    /// A spent refresh token was presented again: theft, or a client that
    /// lost an answer. The first detection revokes every session of the
    /// user and marks the token's record (`reuseDetectedAt`); a replay of a
    /// token already marked is refused and revokes nothing, so sessions
    /// opened after the detection survive whoever still holds the old token.
    ///
    /// Revoke first, mark after: a failed revocation leaves no mark, so the
    /// next replay tries again, and no mark ever stands without its
    /// revocation. The mark is a guarded update (`$exists: false`), so the
    /// first detection's time is kept and only its request reports it.
    /// FerretDB v1 runs an update as a read, then a write by `_id`, not
    /// atomically: two replays racing through here can both see no mark,
    /// and both revoke (and report). That is harmless: revoking is
    /// idempotent and both revoke the same sessions at the same moment; once
    /// a mark has landed, no later replay revokes anything.
    async fn reuse_detected(
        &self,
        claims: &Claims,
        user_id: ObjectId,
    ) -> Result<UserError, UserError> {
        let record = self
            .used_tokens
            .find_one(doc! { "_id": &claims.jti })
            .await?;
        if record.is_some_and(|r| r.contains_key("reuseDetectedAt")) {
            tracing::info!(target: "auth", user = %user_id, session = %claims.sid, "replay of a refresh token already reported; nothing revoked");
            return Ok(UserError::TokenSpent);
        }
        self.revoke_all(user_id).await?;
        let marked = self
            .used_tokens
            .update_one(
                doc! { "_id": &claims.jti, "reuseDetectedAt": { "$exists": false } },
                doc! { "$set": { "reuseDetectedAt": DateTime::now() } },
            )
            .await?;
        if marked.modified_count > 0 {
            self.events.publish(Event::RefreshTokenReuseDetected {
                user_id: user_id.to_hex(),
                session_id: claims.sid.clone(),
            });
        }
        Ok(UserError::TokenReused)
    }

    async fn logout(&self, claims: Claims) -> Result<(), UserError> {
        self.sessions
            .update_one(
                doc! { "_id": &claims.sid },
                doc! { "$set": { "revoked": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        self.events.publish(Event::UserLoggedOut {
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
        self.events.publish(Event::ProfileUpdated {
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
    pub stats: Arc<ActorStats>,
}

pub struct UserState {
    users: Arc<Users>,
    cache: ActorSlot<CacheMsg>,
    stats: Arc<ActorStats>,
    /// A bcrypt hash of a random string at the configured cost, for logins of
    /// unknown e-mails.
    dummy_hash: Arc<str>,
    /// Sends `PruneKeys` every `auth.idempotency.prune_interval`.
    prune_timer: Option<JoinHandle<()>>,
    /// The prune in progress, if any (one at a time; aborted at stop).
    pruning: Option<JoinHandle<()>>,
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
        let random = Password::new(&uuid::Uuid::new_v4().to_string()).expect("36 ASCII characters");
        let dummy = password::hash(random, args.users.bcrypt_cost).await?;
        Ok(UserState {
            users: args.users,
            cache: args.cache,
            stats: args.stats,
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
        let stats = Arc::clone(&state.stats);
        let period = state.users.idempotency.prune_interval;
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
        for task in [state.prune_timer.take(), state.pruning.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        Ok(())
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
        // Sign-up and login wrote a job: have it claimed now, without
        // waiting for a tick or a listing of the queue.
        let queue = users.jobs.clone();
        let enqueued = move |job| queue.claim_soon(job);
        match message {
            UserMsg::Signup { new, key, reply } => respond(reply, async move {
                let (pair, job) = match key {
                    Some(key) => users.signup_with_key(new, key).await?,
                    None => users.signup(new).await?,
                };
                // A repeated keyed sign-up wrote no job.
                if let Some(job) = job {
                    enqueued(job);
                }
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
            UserMsg::PruneKeys => {
                // One prune at a time, off the mailbox, owned by this state.
                if state.pruning.as_ref().is_none_or(JoinHandle::is_finished) {
                    state.pruning = Some(tokio::spawn(async move { users.prune_keys().await }));
                }
            }
        }
        Ok(())
    }
}
