//! The mails that carry a single-use token, and the attack notice: their
//! job types, handlers and messages (registered with the other user jobs
//! by [`crate::users::jobs::handlers`]).
//!
//! - `user.password_reset` (written by a forgot-password request) and
//!   `user.verify_email` (a verification resend): payload `userId`,
//!   `email`, `name` and `seed`. The handler makes the token from the seed
//!   ([`MailTokens::token`]: the payload holds nothing usable without the
//!   server secret) and mails it to the address of the payload. The
//!   `Message-ID` is derived from the job id, so a retried job resends the
//!   same message.
//! - `user.attack_notice` (written by the login attempt that put an account
//!   under attack, see [`crate::users::throttle`]): payload `email` only —
//!   written whether or not the address has an account, so the attempt's
//!   answer and timing say nothing about it. The handler finds the account
//!   (none: nothing to do) and takes the account's one slot of the window
//!   ([`crate::users::mail_quota`], the window the job was written in):
//!   however many instances saw the attack begin, the owner gets one
//!   notice per window.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::Message;
use mongodb::bson::{doc, Document};
use mongodb::{Collection, Database};

use crate::mail::Mailer;
use crate::queue::handlers::JobHandlers;
use crate::queue::job::Job;
use crate::users::email::Email;
use crate::users::job_error::{recorded, UserJobError};
use crate::users::mail_quota::{MailKind, MailQuota, Taken};
use crate::users::mail_tokens::{MailTokens, Purpose};

/// The job type of a reset mail.
pub const PASSWORD_RESET: &str = "user.password_reset";
/// The job type of a verification resend.
pub const VERIFY_EMAIL: &str = "user.verify_email";
/// The job type of the notice that an account is under attack.
pub const ATTACK_NOTICE: &str = "user.attack_notice";

/// What the mail handlers need beyond the mailer.
#[derive(Clone)]
pub struct MailJobs {
    pub tokens: MailTokens,
    /// `auth.throttle.window`: one attack notice per account per window.
    pub attack_window: Duration,
    /// `auth.verify_ttl`: the welcome mail's verification token lives this
    /// long from the welcome job's writing.
    pub verify_ttl: Duration,
}

/// `handlers` plus the reset, verification and attack-notice handlers.
pub(crate) fn register(
    handlers: JobHandlers,
    db: &Database,
    mailer: Arc<Mailer>,
    jobs: MailJobs,
) -> JobHandlers {
    let (reset_mailer, verify_mailer) = (Arc::clone(&mailer), Arc::clone(&mailer));
    let (reset_tokens, verify_tokens) = (jobs.tokens.clone(), jobs.tokens);
    let users: Collection<Document> = db.collection("users");
    let quota = MailQuota::new(db);
    let window = jobs.attack_window;
    handlers
        .with(PASSWORD_RESET, move |job| {
            let (mailer, tokens) = (Arc::clone(&reset_mailer), reset_tokens.clone());
            async move { recorded(token_mail(&mailer, &tokens, Purpose::Reset, job).await) }
        })
        .with(VERIFY_EMAIL, move |job| {
            let (mailer, tokens) = (Arc::clone(&verify_mailer), verify_tokens.clone());
            async move { recorded(token_mail(&mailer, &tokens, Purpose::Verify, job).await) }
        })
        .with(ATTACK_NOTICE, move |job| {
            let (mailer, users, quota) = (Arc::clone(&mailer), users.clone(), quota.clone());
            async move { recorded(attack_notice(&mailer, &users, &quota, window, job).await) }
        })
}

/// The recipient of a mail job: the payload's `email`, parsed again so the
/// recipient is built from a checked address, and its `name`.
fn recipient(job: &Job) -> Result<(Email, String), UserJobError> {
    let email = job
        .payload
        .get_str("email")
        .map_err(|_| UserJobError::Payload("email"))?;
    let email = Email::parse(email).map_err(UserJobError::Recipient)?;
    let name = job.payload.get_str("name").unwrap_or("there").to_owned();
    Ok((email, name))
}

async fn token_mail(
    mailer: &Mailer,
    tokens: &MailTokens,
    purpose: Purpose,
    job: Job,
) -> Result<Document, UserJobError> {
    let (email, name) = recipient(&job)?;
    let seed = job
        .payload
        .get_str("seed")
        .map_err(|_| UserJobError::Payload("seed"))?;
    let token = tokens.token(purpose, seed);
    let message_id = format!("<{}@troupe>", job.id);
    let message = token_message(mailer.from(), (&name, &email), purpose, &token, &message_id)
        .map_err(UserJobError::Compose)?;
    mailer.send(message).await?;
    tracing::info!(target: "worker", job = %job.id, purpose = purpose.as_str(), "token mail delivered");
    Ok(doc! { "delivered": true, "messageId": message_id })
}

/// The line a mail's token stands on follows this text.
pub const TOKEN_LINE: &str = "Your token: ";

/// The mail that carries `token` for `purpose` to `name` at `email`.
pub fn token_message(
    from: &Mailbox,
    (name, email): (&str, &Email),
    purpose: Purpose,
    token: &str,
    message_id: &str,
) -> Result<Message, lettre::error::Error> {
    let to = Mailbox::new(Some(name.to_owned()), email.to_address());
    let (subject, what) = match purpose {
        Purpose::Reset => (
            "Reset your Troupe password",
            "someone (we hope you) asked to reset the password of your Troupe account \
             {email}. To choose a new one, send this token with it to \
             POST /users/password/reset; every session of the account will be signed out.\n\n\
             If this was not you, ignore this mail: your password stays as it is.",
        ),
        Purpose::Verify => (
            "Verify your e-mail address for Troupe",
            "please confirm that {email} is your address: send this token to \
             POST /users/email/verify.",
        ),
    };
    let what = what.replace("{email}", email.as_str());
    let body = format!("Hello {name},\n\n{what}\n\n{TOKEN_LINE}{token}\n\n— The Troupe team\n");
    crate::mail::plain_text(from, to, message_id, subject, body)
}

async fn attack_notice(
    mailer: &Mailer,
    users: &Collection<Document>,
    quota: &MailQuota,
    window: Duration,
    job: Job,
) -> Result<Document, UserJobError> {
    let email = job
        .payload
        .get_str("email")
        .map_err(|_| UserJobError::Payload("email"))?;
    let email = Email::parse(email).map_err(UserJobError::Recipient)?;
    let Some(user) = users.find_one(doc! { "email": email.as_str() }).await? else {
        return Ok(doc! { "delivered": false, "account": false });
    };
    let Ok(user_id) = user.get_object_id("_id") else {
        return Ok(doc! { "delivered": false, "account": false });
    };
    let slot = (MailKind::AttackNotice, user_id, job.id);
    if let Taken::Spent { .. } = quota.take(slot, (1, window), job.created_at).await? {
        return Ok(doc! { "delivered": false, "duplicate": true });
    }
    let name = user.get_str("name").unwrap_or("there");
    let message_id = format!("<{}@troupe>", job.id);
    let message = attack_message(mailer.from(), (name, &email), &message_id)
        .map_err(UserJobError::Compose)?;
    mailer.send(message).await?;
    tracing::info!(target: "worker", job = %job.id, "attack notice delivered");
    Ok(doc! { "delivered": true, "messageId": message_id })
}

/// The notice that many wrong passwords were tried for `email`'s account.
pub fn attack_message(
    from: &Mailbox,
    (name, email): (&str, &Email),
    message_id: &str,
) -> Result<Message, lettre::error::Error> {
    let to = Mailbox::new(Some(name.to_owned()), email.to_address());
    let body = format!(
        "Hello {name},\n\nmany wrong passwords were just tried for your Troupe account {email}. \
         Logins from the addresses that tried are being held back; you can still log in.\n\n\
         If your password is weak or used elsewhere, change it now \
         (POST /users/password).\n\n— The Troupe team\n"
    );
    crate::mail::plain_text(
        from,
        to,
        message_id,
        "Someone is trying to log in to your Troupe account",
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Mailbox {
        "Troupe <no-reply@troupe.local>".parse().unwrap()
    }

    #[test]
    fn a_token_mail_goes_to_the_address_with_the_token_on_its_line() {
        let email = Email::parse("ada@example.com").unwrap();
        let token = "A".repeat(43);
        for purpose in [Purpose::Reset, Purpose::Verify] {
            let message =
                token_message(&from(), ("Ada", &email), purpose, &token, "<1@t>").unwrap();
            let to = crate::mail::recipients(&message);
            assert_eq!(to, ["ada@example.com"]);
            let text = String::from_utf8(message.formatted()).unwrap();
            assert!(text.contains(&format!("{TOKEN_LINE}{token}")), "{text}");
        }
    }

    #[test]
    fn the_attack_notice_goes_to_the_owner() {
        let email = Email::parse("ada@example.com").unwrap();
        let message = attack_message(&from(), ("Mallory <evil@x.com>", &email), "<1@t>").unwrap();
        let to = crate::mail::recipients(&message);
        assert_eq!(to, ["ada@example.com"]);
    }
}
