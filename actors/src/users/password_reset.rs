//! Resetting a forgotten password by e-mail.
//!
//! `POST /users/password/forgot` is answered before anything about the
//! address is looked at: the UserActor replies and only then runs
//! [`UserService::forgot_password`] in a task it owns, so the answer's
//! content and timing are the same whether or not the address has an
//! account. That task finds the user, takes a slot of the account's mail
//! quota ([`crate::users::mail_quota`]: a flood of requests for one address
//! sends at most `auth.account_mails.per_window` mails, and never refuses
//! anyone anything), issues a token ([`crate::users::mail_tokens`]) and
//! writes the `user.password_reset` mail job.
//!
//! `POST /users/password/reset` ([`UserService::reset_password`]): the
//! token is found (not yet spent), the new password checked by the rules of
//! a new password (a refused one leaves the token usable), hashed, and only
//! then the token redeemed — one unique-key insert, so of concurrent resets
//! with one token exactly one goes on. The password is set, every session
//! revoked, the account's other reset tokens forgotten, the address counted
//! as verified (the token came through it), and the owner told by the
//! `user.password_changed` notice.

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use secrecy::{ExposeSecret, SecretString};

use crate::store::error_chain;
use crate::users::email::Email;
use crate::users::mail_jobs::PASSWORD_RESET;
use crate::users::mail_quota::{MailKind, Taken};
use crate::users::mail_tokens::Purpose;
use crate::users::notices::{password_changed_payload, PASSWORD_CHANGED};
use crate::users::password::{self, Password};
use crate::users::service::UserService;
use crate::users::tokens::Claims;
use crate::users::UserError;

/// A request about a mailed token.
#[derive(Debug)]
pub enum Recovery {
    /// `POST /users/password/forgot`: mail a reset token to this address's
    /// account, if it has one.
    Forgot(Email),
    /// `POST /users/password/reset`: set `new` with a reset `token`.
    Reset { token: SecretString, new: Password },
    /// `POST /users/email/verify`.
    Verify(SecretString),
    /// `POST /users/email/verify/resend`, by the access token's user.
    Resend(Claims),
}

impl Recovery {
    /// Its name in spans.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Forgot(_) => "forgot_password",
            Self::Reset { .. } => "reset_password",
            Self::Verify(_) => "verify_email",
            Self::Resend(_) => "resend_verification",
        }
    }
}

impl UserService {
    /// Run `request` (a forgot-password request never fails: see
    /// [`Self::forgot_password`]).
    pub(crate) async fn recover(&self, request: Recovery) -> Result<(), UserError> {
        match request {
            Recovery::Forgot(email) => {
                self.forgot_password(email).await;
                Ok(())
            }
            Recovery::Reset { token, new } => self.reset_password(token, new).await,
            Recovery::Verify(token) => self.verify_email(token).await,
            Recovery::Resend(claims) => self.resend_verification(&claims).await,
        }
    }

    /// Mail a reset token to `email`'s account, if it has one and its
    /// quota allows. Runs after the request was answered: failures are
    /// logged, never answered.
    pub(crate) async fn forgot_password(&self, email: Email) {
        match self.send_reset(&email).await {
            Ok(Some(user)) => {
                tracing::info!(target: "auth", %user, "password reset mail queued")
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(target: "auth", error = %error_chain(&err), "password reset mail not queued")
            }
        }
    }

    /// The user a reset mail was queued for (`None`: no account, or its
    /// quota is spent).
    async fn send_reset(&self, email: &Email) -> Result<Option<ObjectId>, UserError> {
        let Some(user) = self
            .users
            .find_one(doc! { "email": email.as_str() })
            .await?
        else {
            return Ok(None);
        };
        let mail = &self.tuning.mail;
        let now = mail.clock.now();
        let quota = (mail.quota.per_window, mail.quota.window);
        let slot = (MailKind::Reset, user.id, ObjectId::new());
        if let Taken::Spent { .. } = self.mail_quota.take(slot, quota, now).await? {
            tracing::info!(target: "auth", user = %user.id, "password reset mail not sent: the account's quota is spent");
            return Ok(None);
        }
        let seed = self
            .mail_tokens
            .issue(Purpose::Reset, (user.id, &user.email), mail.reset_ttl, now)
            .await?;
        let payload = doc! {
            "userId": user.id, "email": &user.email, "name": &user.name, "seed": seed,
        };
        let job = self.jobs.enqueue(PASSWORD_RESET, payload).await?;
        self.jobs.claim_soon(job, PASSWORD_RESET);
        Ok(Some(user.id))
    }

    /// Set the password of the account `token` was mailed for to `new`,
    /// ending every session. [`UserError::BadMailToken`] for any token that
    /// is not a live reset token of an account still at that address.
    pub(crate) async fn reset_password(
        &self,
        token: SecretString,
        new: Password,
    ) -> Result<(), UserError> {
        let now = self.tuning.mail.clock.now();
        let found = self
            .mail_tokens
            .find(Purpose::Reset, token.expose_secret(), now)
            .await?
            .ok_or(UserError::BadMailToken)?;
        let user = self
            .users
            .find_one(doc! { "_id": found.user_id, "email": &found.email })
            .await?
            .ok_or(UserError::BadMailToken)?;
        self.check_new_password(&new, &user.name, &user.email)
            .await?;
        let hash = password::hash(new, self.tuning.bcrypt_cost).await?;
        if !self.mail_tokens.redeem(&found, now).await? {
            return Err(UserError::BadMailToken);
        }
        let set =
            doc! { "passwordHash": hash, "emailVerified": true, "updatedAt": DateTime::now() };
        self.users
            .update_one(
                doc! { "_id": user.id, "email": &user.email },
                doc! { "$set": set },
            )
            .await?;
        self.revoke_all(user.id).await?;
        self.mail_tokens.forget(Purpose::Reset, user.id).await?;
        let job = self
            .jobs
            .enqueue(
                PASSWORD_CHANGED,
                password_changed_payload(user.id, &user.email, &user.name),
            )
            .await?;
        self.jobs.claim_soon(job, PASSWORD_CHANGED);
        tracing::info!(target: "auth", user = %user.id, "password reset; every session ended");
        Ok(())
    }

    /// Delete expired mail tokens, their old use records and the slots of
    /// ended quota windows (with the idempotency records' prune).
    pub(crate) async fn prune_mail_records(&self) {
        let mail = &self.tuning.mail;
        let now = mail.clock.now();
        let keep = mail.reset_ttl.max(mail.verify_ttl);
        let pruned = match self.mail_tokens.prune(now, keep).await {
            Ok(tokens) => self.mail_quota.prune(now).await.map(|slots| tokens + slots),
            Err(err) => Err(err),
        };
        match pruned {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(target: "user", pruned = n, "expired mail tokens and quota slots deleted")
            }
            Err(err) => {
                tracing::warn!(target: "user", error = %error_chain(&err), "pruning mail tokens failed")
            }
        }
    }
}
