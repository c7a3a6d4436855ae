//! Sign-up: creating a user with its welcome job and first session, and
//! the idempotent sign-up protocol (see [`crate::users::idempotency`]).

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use tokio::time::Instant;

use crate::events::Event;
use crate::store::{error_chain, is_duplicate_key};
use crate::users::idempotency::{IdempotencyKey, KeyRecord, Reservation};
use crate::users::mail_tokens::new_seed;
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

/// The job type of the welcome job every sign-up writes.
const WELCOME: &str = "user.created";

/// The user `new` describes, with id `id`, created at `now`.
fn user_doc(new: &NewUser, id: ObjectId, password_hash: String, now: DateTime) -> UserDoc {
    UserDoc {
        id,
        name: new.name.clone(),
        email: new.email.as_str().to_owned(),
        age: new.age.map(i32::from),
        password_hash,
        created_at: now,
        updated_at: now,
        email_verified: false,
    }
}

/// The welcome job's payload: whom to greet, and the seed of the
/// address's verification token (no secret: see
/// [`crate::users::mail_tokens`]).
fn welcome_payload(user: &UserDoc, verify_seed: String) -> Document {
    doc! { "userId": user.id, "email": &user.email, "name": &user.name, "verifySeed": verify_seed }
}

/// What a repeated keyed sign-up does next (see [`UserService::repeat`]).
#[derive(Debug)]
enum Step {
    /// The first request created the user: a new session of it.
    Resume(Box<UserDoc>),
    /// The first request died (its record outlived the call timeout).
    TakeOver,
    /// The first request is still running, and we waited long enough.
    InProgress,
    /// The first request is still running: look again shortly.
    Wait,
}

/// Decide a repeat's next step from the user found (if any), the key
/// record's age, the actor-call timeout and whether our wait is over.
fn next_step(user: Option<UserDoc>, age: Duration, call_timeout: Duration, waited: bool) -> Step {
    match user {
        Some(user) => Step::Resume(Box::new(user)),
        None if age >= call_timeout => Step::TakeOver,
        None if waited => Step::InProgress,
        None => Step::Wait,
    }
}

impl UserService {
    /// Sign up (idempotently with `key`); once the welcome job and the user
    /// are written, have the job claimed now rather than at the next tick.
    pub(crate) async fn signup(
        &self,
        new: NewUser,
        key: Option<IdempotencyKey>,
    ) -> Result<TokenPair, UserError> {
        // Before any record or hash: a refused password is a bad request,
        // the same whatever the key.
        self.check_new_password(&new.password, &new.name, new.email.as_str())
            .await?;
        let (pair, job) = match key {
            Some(key) => self.signup_with_key(new, key).await?,
            None => self.signup_unkeyed(new).await?,
        };
        // A repeated keyed sign-up wrote no job.
        if let Some(job) = job {
            self.jobs.claim_soon(job, WELCOME);
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
        let user = user_doc(new, id, password_hash, DateTime::now());
        // The job is written *before* the user, so no crash can leave a user
        // without its welcome job; it is written held, so no instance claims
        // it before the user exists (it would find none and retry). A job
        // whose user never appears (a crash in between) runs once its hold
        // ends, finds no user and fails after its retries, sending nothing;
        // one whose e-mail was taken is withdrawn.
        // The job carries the verification token's seed; the job stores
        // the token's hash when it runs (no extra write before the answer).
        let job = self
            .jobs
            .enqueue_held(WELCOME, welcome_payload(&user, new_seed()?))
            .await?;
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
        let (pair, _) = self.open_session(&user, &new.client).await?;
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
            Ok(Created::Existing(user)) => Ok((self.resume(&user, new).await?, None)),
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
            let user = self.users.find_one(doc! { "_id": record.user_id }).await?;
            let age = record.age(DateTime::now());
            let waited_enough = Instant::now() >= wait_until;
            match next_step(user, age, self.tuning.call_timeout, waited_enough) {
                Step::Resume(user) => return Ok((self.resume(&user, new).await?, None)),
                Step::TakeOver => {
                    tracing::info!(target: "user", user = %record.user_id, "taking over an unfinished keyed sign-up");
                    return self.signup_holding_key(new, record).await;
                }
                Step::InProgress => return Err(UserError::SignupInProgress),
                Step::Wait => tokio::time::sleep(KEY_POLL).await,
            }
        }
    }

    /// A new session for `user`, created by an earlier request with the same
    /// key and body. No password check: the record's id covers the password
    /// (see [`crate::users::idempotency::RequestScope::record_id`]), so only
    /// a request with it finds the record.
    async fn resume(&self, user: &UserDoc, new: &NewUser) -> Result<TokenPair, UserError> {
        let (pair, sid) = self.open_session(user, &new.client).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::email::Email;
    use crate::users::password::Password;

    fn new_user(age: Option<u8>) -> NewUser {
        NewUser {
            name: "Ada".into(),
            email: Email::parse("ada@example.com").unwrap(),
            password: Password::new("correct horse battery").unwrap(),
            age,
            client: crate::users::model::Client::new([127, 0, 0, 1].into(), None),
        }
    }

    #[test]
    fn a_new_user_is_created_and_updated_at_once_with_its_fields() {
        let (id, now) = (ObjectId::new(), DateTime::from_millis(1_700_000_000_000));
        let user = user_doc(&new_user(Some(36)), id, "$2b$hash".into(), now);
        assert_eq!(user.id, id);
        assert_eq!(
            (user.name.as_str(), user.email.as_str()),
            ("Ada", "ada@example.com")
        );
        assert_eq!(user.age, Some(36));
        assert_eq!(user.password_hash, "$2b$hash");
        assert_eq!((user.created_at, user.updated_at), (now, now));
        assert_eq!(user_doc(&new_user(None), id, String::new(), now).age, None);
    }

    #[test]
    fn the_welcome_payload_names_the_user_and_carries_no_secret() {
        let user = user_doc(
            &new_user(Some(36)),
            ObjectId::new(),
            "$2b$hash".into(),
            DateTime::now(),
        );
        let payload = welcome_payload(&user, "00ff".into());
        assert_eq!(payload.get_object_id("userId").unwrap(), user.id);
        assert_eq!(payload.get_str("email").unwrap(), "ada@example.com");
        assert_eq!(payload.get_str("name").unwrap(), "Ada");
        let keys: Vec<&str> = payload.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["userId", "email", "name", "verifySeed"],
            "no hash, no age, a token's seed only"
        );
    }

    #[test]
    fn a_repeat_resumes_the_user_its_first_request_created() {
        let user = user_doc(
            &new_user(None),
            ObjectId::new(),
            String::new(),
            DateTime::now(),
        );
        let id = user.id;
        // Found: resumed, however old the record and however long we waited.
        match next_step(
            Some(user),
            Duration::from_secs(600),
            Duration::from_secs(5),
            true,
        ) {
            Step::Resume(found) => assert_eq!(found.id, id),
            other => panic!("expected Resume, got {other:?}"),
        }
    }

    #[test]
    fn a_repeat_takes_over_once_the_record_outlives_the_call_timeout() {
        let timeout = Duration::from_secs(5);
        assert!(matches!(
            next_step(None, timeout, timeout, false),
            Step::TakeOver
        ));
        assert!(matches!(
            next_step(None, timeout - Duration::from_millis(1), timeout, false),
            Step::Wait
        ));
    }

    #[test]
    fn a_repeat_answers_in_progress_once_its_wait_is_over() {
        let timeout = Duration::from_secs(5);
        assert!(matches!(
            next_step(None, Duration::from_secs(1), timeout, true),
            Step::InProgress
        ));
        assert!(matches!(
            next_step(None, Duration::from_secs(1), timeout, false),
            Step::Wait
        ));
    }
}
