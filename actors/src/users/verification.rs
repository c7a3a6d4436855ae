//! Proving the e-mail address: a sign-up's welcome mail carries a
//! verification token ([`crate::users::mail_tokens`], its seed in the
//! welcome job, which stores it); `POST /users/email/verify` marks the address
//! verified; `POST /users/email/verify/resend` (the signed-in owner) mails
//! a new one, at most `auth.account_mails.per_window` a window (past it:
//! 429 until the window ends — the owner asks, so the owner is told).
//! With `auth.require_verified_email` a user whose address is not verified
//! cannot log in (403, after the password was found right).

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use secrecy::{ExposeSecret, SecretString};

use crate::users::mail_jobs::VERIFY_EMAIL;
use crate::users::mail_quota::{MailKind, Taken};
use crate::users::mail_tokens::Purpose;
use crate::users::model::UserDoc;
use crate::users::service::UserService;
use crate::users::tokens::Claims;
use crate::users::UserError;

impl UserService {
    /// A new verification token for `user`'s address: its seed, for the
    /// mail job's payload.
    pub(super) async fn issue_verification(&self, user: &UserDoc) -> Result<String, UserError> {
        let mail = &self.tuning.mail;
        Ok(self
            .mail_tokens
            .issue(
                Purpose::Verify,
                (user.id, &user.email),
                mail.verify_ttl,
                mail.clock.now(),
            )
            .await?)
    }

    /// Mark the address `token` was mailed to verified, if the account is
    /// still at it. [`UserError::BadMailToken`] for anything else.
    pub(crate) async fn verify_email(&self, token: SecretString) -> Result<(), UserError> {
        let now = self.tuning.mail.clock.now();
        let found = self
            .mail_tokens
            .find(Purpose::Verify, token.expose_secret(), now)
            .await?
            .ok_or(UserError::BadMailToken)?;
        if !self.mail_tokens.redeem(&found, now).await? {
            return Err(UserError::BadMailToken);
        }
        let verified = self
            .users
            .update_one(
                doc! { "_id": found.user_id, "email": &found.email },
                doc! { "$set": { "emailVerified": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        if verified.matched_count == 0 {
            return Err(UserError::BadMailToken);
        }
        self.mail_tokens
            .forget(Purpose::Verify, found.user_id)
            .await?;
        tracing::info!(target: "auth", user = %found.user_id, "e-mail address verified");
        Ok(())
    }

    /// Mail the access token's user a new verification token, within the
    /// account's quota.
    pub(crate) async fn resend_verification(&self, claims: &Claims) -> Result<(), UserError> {
        let id = claims.owner()?;
        let user = self
            .users
            .find_one(doc! { "_id": id })
            .await?
            .ok_or(UserError::NotFound)?;
        if user.email_verified {
            return Err(UserError::AlreadyVerified);
        }
        let mail = &self.tuning.mail;
        let now = mail.clock.now();
        let quota = (mail.quota.per_window, mail.quota.window);
        let slot = (MailKind::Verify, user.id, ObjectId::new());
        if let Taken::Spent { until } = self.mail_quota.take(slot, quota, now).await? {
            let wait = until.timestamp_millis() - now.timestamp_millis();
            return Err(UserError::Throttled(std::time::Duration::from_millis(
                wait.max(0) as u64,
            )));
        }
        let seed = self.issue_verification(&user).await?;
        let payload = doc! {
            "userId": user.id, "email": &user.email, "name": &user.name, "seed": seed,
        };
        let job = self.jobs.enqueue(VERIFY_EMAIL, payload).await?;
        self.jobs.claim_soon(job, VERIFY_EMAIL);
        Ok(())
    }
}
