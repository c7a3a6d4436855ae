//! [`UserService`]: what the UserActor's request tasks run. Shared and
//! immutable; its work is split by concern over [`super::signup`],
//! [`super::login`], [`super::sessions`] and [`super::profiles`].

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use mongodb::{Collection, Database};

use crate::cache::Invalidator;
use crate::events::Events;
use crate::queue::clock::Clock;
use crate::queue::producer::JobQueue;
use crate::store::{ensure_indexes, index};
use crate::users::idempotency::{IdempotencyConfig, KeyStore, RequestScope};
use crate::users::mail_quota::{MailQuota, MailQuotaConfig};
use crate::users::mail_tokens::MailTokens;
use crate::users::model::{Client, SessionDoc, TokenPair, UserDoc};
use crate::users::password::{HashError, Password};
use crate::users::strength::PasswordPolicy;
use crate::users::throttle::Throttle;
use crate::users::tokens::{self, Tokens};
use crate::users::UserError;

/// What the service leans on: its database and the handles of the other
/// capabilities it talks to.
pub(crate) struct Collaborators {
    pub db: Database,
    /// Where sign-ups and logins write their jobs.
    pub jobs: JobQueue,
    pub events: Events,
    pub throttle: Throttle,
    pub tokens: Arc<Tokens>,
    /// Told about every change a cached profile shows.
    pub cache: Invalidator,
    /// The single-use tokens of reset and verification mails.
    pub mail_tokens: MailTokens,
}

/// The mail tokens' lifetimes, each account's quota of mails, and "now".
pub(crate) struct MailTuning {
    /// `auth.reset_ttl`.
    pub reset_ttl: Duration,
    /// `auth.verify_ttl`.
    pub verify_ttl: Duration,
    /// `auth.account_mails`.
    pub quota: MailQuotaConfig,
    /// `auth.token_clock`.
    pub clock: Clock,
}

/// How the service is tuned.
pub(crate) struct Tuning {
    /// bcrypt work factor.
    pub bcrypt_cost: u32,
    pub idempotency: IdempotencyConfig,
    /// Scopes an idempotency key to its request (keyed by a server secret).
    pub scope: RequestScope,
    /// How long after its first use a refresh token's retry gets the same
    /// answer rather than counting as reuse (zero: never).
    pub refresh_reuse_grace: Duration,
    /// How long a caller waits for the actor: a keyed sign-up answers
    /// well within it, and takes over a sign-up older than it.
    pub call_timeout: Duration,
    /// Whether new passwords are checked for guessability.
    pub passwords: PasswordPolicy,
    /// The most sessions one user holds (`auth.max_sessions`).
    pub max_sessions: u32,
    /// Reset and verification mails.
    pub mail: MailTuning,
    /// `auth.require_verified_email`.
    pub require_verified_email: bool,
}

pub(crate) struct UserService {
    pub(super) users: Collection<UserDoc>,
    pub(super) sessions: Collection<SessionDoc>,
    pub(super) used_tokens: Collection<Document>,
    pub(super) keys: KeyStore,
    pub(super) jobs: JobQueue,
    pub(super) events: Events,
    pub(super) throttle: Throttle,
    pub(super) tokens: Arc<Tokens>,
    pub(super) cache: Invalidator,
    pub(super) mail_tokens: MailTokens,
    pub(super) mail_quota: MailQuota,
    pub(super) tuning: Tuning,
}

impl UserService {
    pub(crate) fn new(with: Collaborators, tuning: Tuning) -> Self {
        let db = &with.db;
        Self {
            users: db.collection("users"),
            sessions: db.collection("sessions"),
            used_tokens: db.collection("used_refresh_tokens"),
            keys: KeyStore::new(db),
            jobs: with.jobs,
            events: with.events,
            throttle: with.throttle,
            tokens: with.tokens,
            cache: with.cache,
            mail_tokens: with.mail_tokens,
            mail_quota: MailQuota::new(db),
            tuning,
        }
    }

    /// Unique e-mail; sessions by user; idempotency records by age.
    pub(crate) async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
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

    /// Make the mail tokens' and the mail quota's collections with their
    /// indexes where missing, before the first request: a burst of
    /// sign-ups would otherwise create `mail_tokens` with concurrent first
    /// inserts, and FerretDB fails all but one such implicit creation. Best
    /// effort (instances starting together race here harmlessly: the
    /// collections exist whoever made them); a failure is logged.
    pub(crate) async fn prepare_mail_collections(&self) {
        let db = self
            .users
            .client()
            .database(self.users.namespace().db.as_str());
        for (collection, indexes) in [
            (
                "mail_tokens",
                vec![
                    index(doc! { "userId": 1 }, false),
                    index(doc! { "expiresAt": 1 }, false),
                ],
            ),
            ("mail_token_uses", vec![index(doc! { "usedAt": 1 }, false)]),
            ("mail_quota", vec![index(doc! { "expiresAt": 1 }, false)]),
        ] {
            if let Err(err) = ensure_indexes(&db.collection(collection), indexes).await {
                // One line, briefly: the driver's Display of an unreachable
                // server is the whole topology, and the others would fail alike.
                let error = crate::store::brief_mongo(&err);
                tracing::warn!(target: "user", collection, %error, "mail collections not prepared; their first inserts make them");
                return;
            }
        }
    }

    /// Refuse a new `password` for the user `name` at `email` that the
    /// password policy finds guessable ([`UserError::WeakPassword`]).
    pub(super) async fn check_new_password(
        &self,
        password: &Password,
        name: &str,
        email: &str,
    ) -> Result<(), UserError> {
        let verdict = self.tuning.passwords.check(password, name, email).await;
        verdict
            .map_err(HashError::Task)?
            .map_err(UserError::WeakPassword)
    }

    /// A new session for `user`, opened by `client`: its token pair and
    /// id. The user's oldest sessions beyond `auth.max_sessions` go.
    pub(super) async fn open_session(
        &self,
        user: &UserDoc,
        client: &Client,
    ) -> Result<(TokenPair, String), UserError> {
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let issued = self
            .tokens
            .issue_pair(&user.id.to_hex(), &user.email, &sid)?;
        let now = DateTime::now();
        self.sessions
            .insert_one(SessionDoc {
                id: sid.clone(),
                user_id: user.id,
                refresh_verifier: tokens::verifier(&issued.refresh_token),
                revoked: false,
                created_at: now,
                updated_at: now,
                expires_at: DateTime::from_millis(issued.refresh_claims.exp * 1000),
                refreshed_at: None,
                client_addr: Some(client.addr.to_string()),
                user_agent: client.user_agent.clone(),
            })
            .await?;
        // The session is open whatever this does: a failure leaves one
        // session too many until the next login, not a failed login.
        if let Err(err) = self.bound_sessions(user.id).await {
            let cause: &dyn std::error::Error = &err;
            tracing::warn!(target: "auth", user = %user.id, error = cause, "sessions beyond the bound not deleted");
        }
        let pair = TokenPair {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
        };
        Ok((pair, sid))
    }
}
