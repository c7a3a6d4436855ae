//! Sign-up: creating a user with its welcome job and first session, and
//! the idempotent sign-up protocol (see [`crate::users::idempotency`]).

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use tokio::time::Instant;

use crate::events::Event;
use crate::store::{error_chain, is_duplicate_key};
use crate::users::idempotency::{IdempotencyKey, KeyRecord, Reservation};
use crate::users::model::{NewUser, TokenPair, UserDoc};
use crate::users::password;
use crate::users::service::UserService;
use crate::users::UserError;

/// How often a keyed sign-up that waits for the request holding its key
/// looks for the user.
const KEY_POLL: Duration = Duration::from_millis(50);

/// What creating a user with a chosen id came to.
enum Created {
    /// This request created it: its first session and its welcome job.
    New(TokenPair, ObjectId),
    /// A user with that id existed already: a request with the same
    /// idempotency key created it first.
    Existing(Box<UserDoc>),
}

/// A sign-up's answer, and the welcome job it wrote (none for a repeat).
type SignedUp = (TokenPair, Option<ObjectId>);

impl UserService {
    /// Sign up (idempotently with `key`); once the welcome job and the user
    /// are written, have the job claimed now rather than at the next tick.
    pub(crate) async fn signup(
        &self,
        new: NewUser,
        key: Option<IdempotencyKey>,
    ) -> Result<TokenPair, UserError> {
        let (pair, job) = match key {
            Some(key) => self.signup_with_key(new, key).await?,
            None => self.signup_unkeyed(new).await?,
        };
        // A repeated keyed sign-up wrote no job.
        if let Some(job) = job {
            self.jobs.claim_soon(job);
        }
        Ok(pair)
    }

    /// Sign up without an idempotency key.
    async fn signup_unkeyed(&self, new: NewUser) -> Result<SignedUp, UserError> {
        match self.create_user(&new, ObjectId::new()).await? {
            Created::New(pair, job) => Ok((pair, Some(job))),
            // A fresh ObjectId is nobody's: only a taken e-mail collides.
            Created::Existing(_) => Err(UserError::EmailTaken),
        }
    }

    /// Create user `id` with its welcome job, and open its first session.
    async fn create_user(&self, new: &NewUser, id: ObjectId) -> Result<Created, UserError> {
        let password_hash = password::hash(new.password.clone(), self.tuning.bcrypt_cost).await?;
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
        // without its welcome job; it is written held, so no instance claims
        // it before the user exists (it would find none and retry). A job
        // whose user never appears (a crash in between) runs once its hold
        // ends, finds no user and fails after its retries, sending nothing;
        // one whose e-mail was taken is withdrawn.
        let payload = doc! { "userId": user.id, "email": &user.email, "name": &user.name };
        let job = self.jobs.enqueue_held("user.created", payload).await?;
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
        self.release_welcome(job).await;
        let (pair, _) = self.open_session(&user).await?;
        tracing::debug!(target: "user", user = %user.id, job = %job, "user created");
        self.events.publish(Event::UserCreated {
            user_id: user.id.to_hex(),
        });
        Ok(Created::New(pair, job))
    }

    /// The user exists: make its welcome job due now. If that write fails
    /// the sign-up still stands; the job runs when its hold ends.
    async fn release_welcome(&self, job: ObjectId) {
        if let Err(err) = self.jobs.release(job).await {
            tracing::warn!(target: "user", job = %job, error = %error_chain(&err), "welcome job not released; it runs when its hold ends");
        }
    }

    /// Sign up with an idempotency key: the first request with the key and
    /// this body signs up; a repeat gets a new session of the account it
    /// created (never 409 for its own account). The key is scoped to the
    /// body: with another body it is another request. See
    /// [`crate::users::idempotency`].
    async fn signup_with_key(
        &self,
        new: NewUser,
        key: IdempotencyKey,
    ) -> Result<SignedUp, UserError> {
        let id = self.tuning.scope.record_id(&key, &new);
        // Answer (409 "in progress") well before the handler stops waiting.
        let wait_until = Instant::now() + self.tuning.call_timeout / 2;
        // Each round either answers or removes a record in the way (expired,
        // or deleted under us); three are plenty, and bound the loop.
        for _ in 0..3 {
            let record = KeyRecord::new(id.clone());
            let existing = match self.keys.reserve(&record).await? {
                Reservation::Held => return self.signup_holding_key(&new, &record).await,
                Reservation::Vanished => continue,
                Reservation::Taken(existing) => existing,
            };
            if existing.expired(DateTime::now(), self.tuning.idempotency.ttl) {
                self.keys.remove(&existing).await?;
            } else {
                return self.repeat(&new, &existing, wait_until).await;
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
    ) -> Result<SignedUp, UserError> {
        match self.create_user(new, record.user_id).await {
            Ok(Created::New(pair, job)) => Ok((pair, Some(job))),
            Ok(Created::Existing(user)) => Ok((self.resume(&user).await?, None)),
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
    ) -> Result<SignedUp, UserError> {
        loop {
            if let Some(user) = self.users.find_one(doc! { "_id": record.user_id }).await? {
                return Ok((self.resume(&user).await?, None));
            }
            if record.age(DateTime::now()) >= self.tuning.call_timeout {
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
    /// key and body. No password check: the record's id covers the password
    /// (see [`crate::users::idempotency::RequestScope::record_id`]), so only
    /// a request with it finds the record.
    async fn resume(&self, user: &UserDoc) -> Result<TokenPair, UserError> {
        let (pair, sid) = self.open_session(user).await?;
        tracing::info!(target: "auth", user = %user.id, session = %sid, "repeated keyed sign-up: new session");
        Ok(pair)
    }

    /// Delete expired idempotency records.
    pub(crate) async fn prune_keys(&self) {
        match self.keys.prune(self.tuning.idempotency.ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(target: "user", pruned = n, "expired idempotency keys deleted"),
            Err(err) => {
                tracing::warn!(target: "user", error = %error_chain(&err), "pruning idempotency keys failed")
            }
        }
    }
}
