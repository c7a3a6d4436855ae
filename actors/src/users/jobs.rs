//! The users' job types, registered with the queue by the actor system.
//!
//! - `user.created`: a welcome e-mail to an existing user, with the
//!   address's verification token when the payload has its `verifySeed`
//!   (jobs written before verification existed have none): the job stores
//!   the token's hash (live `auth.verify_ttl` from the job's writing; a
//!   retry finds it stored) before it mails. Its `Message-ID`
//!   is derived from the job id. A delivery record keyed by *user* id is
//!   claimed before sending, so neither a retried job nor a second job for
//!   the same user (a taken-over idempotent sign-up) sends again.
//! - `user.login`: one `login_events` document per job id (a duplicate insert
//!   means it was recorded already) and `lastLoginAt` on the user, set with
//!   `$max` so replays and out-of-order runs cannot move it backwards.
//!
//! Both read `userId` as an ObjectId or as its 24 hex digits (the form
//! `GET /jobs` shows it in, and the NestJS service's jobs store), and
//! `user.login`'s `at` as a date or an RFC 3339 string. A payload that
//! lacks a field or holds a malformed one fails the job at once
//! ([`HandlerError::Permanent`]): no retry can mend it.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::Message;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::{Collection, Database};

use crate::mail::Mailer;
use crate::queue::handlers::JobHandlers;
use crate::queue::job::Job;
use crate::store::is_duplicate_key;
use crate::users::config::AuthConfig;
use crate::users::email::Email;
use crate::users::job_error::recorded;
pub use crate::users::job_error::UserJobError;
use crate::users::mail_jobs::{self, MailJobs, TOKEN_LINE};
use crate::users::mail_tokens::{MailTokens, Purpose};
use crate::users::notices;

/// `user.created`, `user.login`, `user.password_changed` and the mails of
/// [`mail_jobs`].
pub fn handlers(db: &Database, mailer: Mailer, auth: &AuthConfig) -> JobHandlers {
    let mail = MailJobs {
        tokens: MailTokens::new(db, &auth.refresh_secret),
        attack_window: auth.throttle.window,
        verify_ttl: auth.verify_ttl,
    };
    let mailer = Arc::new(mailer);
    let notice_mailer = Arc::clone(&mailer);
    let token_mailer = Arc::clone(&mailer);
    let tokens = (mail.tokens.clone(), mail.verify_ttl);
    let deliveries: Collection<Document> = db.collection("email_deliveries");
    let users_for_welcome: Collection<Document> = db.collection("users");
    let logins: Collection<Document> = db.collection("login_events");
    let users: Collection<Document> = db.collection("users");
    let handlers = JobHandlers::new()
        .with("user.created", move |job| {
            let (mailer, deliveries, users, (tokens, ttl)) = (
                Arc::clone(&mailer),
                deliveries.clone(),
                users_for_welcome.clone(),
                tokens.clone(),
            );
            async move {
                let stores = (&deliveries, &users, (&tokens, ttl));
                recorded(welcome_email(&mailer, stores, job).await)
            }
        })
        .with("user.login", move |job| {
            let (logins, users) = (logins.clone(), users.clone());
            async move { recorded(record_login(&logins, &users, job).await) }
        })
        .with(notices::PASSWORD_CHANGED, move |job| {
            let mailer = Arc::clone(&notice_mailer);
            async move { recorded(password_changed_email(&mailer, job).await) }
        });
    mail_jobs::register(handlers, db, token_mailer, mail)
}

/// The `userId` a user job's payload names: an ObjectId, or its 24 hex
/// digits (as the API shows it).
fn user_id(payload: &Document) -> Result<ObjectId, UserJobError> {
    const MALFORMED: UserJobError = UserJobError::Malformed {
        field: "userId",
        expected: "an ObjectId or its 24 hex digits",
    };
    match payload.get("userId") {
        None | Some(Bson::Null) => Err(UserJobError::Payload("userId")),
        Some(Bson::ObjectId(id)) => Ok(*id),
        Some(Bson::String(hex)) => ObjectId::parse_str(hex).map_err(|_| MALFORMED),
        Some(_) => Err(MALFORMED),
    }
}

/// When a login happened: the payload's `at` (a date, or an RFC 3339
/// string as the API shows dates), else when the job was written.
fn login_at(job: &Job) -> Result<DateTime, UserJobError> {
    match job.payload.get("at") {
        None | Some(Bson::Null) => Ok(job.created_at),
        Some(Bson::DateTime(at)) => Ok(*at),
        Some(Bson::String(text)) => {
            DateTime::parse_rfc3339_str(text).map_err(|_| UserJobError::Malformed {
                field: "at",
                expected: "a date or an RFC 3339 date-time",
            })
        }
        Some(_) => Err(UserJobError::Malformed {
            field: "at",
            expected: "a date or an RFC 3339 date-time",
        }),
    }
}

async fn welcome_email(
    mailer: &Mailer,
    (deliveries, users, (tokens, ttl)): (
        &Collection<Document>,
        &Collection<Document>,
        (&MailTokens, Duration),
    ),
    job: Job,
) -> Result<Document, UserJobError> {
    // Sign-up writes this job just before the user: until the user exists
    // (and if it never does), there is nobody to welcome. Retried with backoff.
    let user_id = user_id(&job.payload)?;
    if users.find_one(doc! { "_id": user_id }).await?.is_none() {
        return Err(UserJobError::NoSuchUser(user_id));
    }
    let email = job
        .payload
        .get_str("email")
        .map_err(|_| UserJobError::Payload("email"))?;
    // Sign-up stored it canonical; parsed again so the recipient is built
    // from a checked address, never from text.
    let email = Email::parse(email).map_err(UserJobError::Recipient)?;
    let name = job.payload.get_str("name").unwrap_or("there");
    if let Some(done) = claim_welcome(deliveries, user_id, &job, &email).await? {
        return Ok(done);
    }
    let message_id = format!("<{}@troupe>", job.id);
    let verify = match job.payload.get_str("verifySeed") {
        Ok(seed) => {
            let owner = (user_id, email.as_str());
            match tokens
                .store(Purpose::Verify, seed, owner, (ttl, job.created_at))
                .await
            {
                Ok(()) => {}
                Err(err) if is_duplicate_key(&err) => {}
                Err(err) => return Err(err.into()),
            }
            Some(tokens.token(Purpose::Verify, seed))
        }
        Err(_) => None,
    };
    let message = welcome_message(mailer.from(), name, &email, &message_id, verify.as_deref())
        .map_err(UserJobError::Compose)?;
    mailer.send(message).await?;
    deliveries
        .update_one(
            doc! { "_id": user_id, "jobId": job.id },
            doc! { "$set": { "messageId": &message_id, "deliveredAt": DateTime::now() } },
        )
        .await?;
    tracing::info!(target: "worker", job = %job.id, "welcome e-mail delivered");
    Ok(doc! { "delivered": true, "messageId": message_id })
}

/// One welcome per *user*, whichever job sends it: a keyed sign-up taken
/// over from a request that died after writing its job leaves two jobs for
/// one user. The delivery record is keyed by user id and claimed before
/// sending (a unique-key insert, atomic on MongoDB and FerretDB alike):
/// a job that finds another job's claim sends nothing; the claiming job's
/// own retries send until the record says delivered (at least once, as
/// every job). `Some(result)` when this job must not send.
async fn claim_welcome(
    deliveries: &Collection<Document>,
    user_id: ObjectId,
    job: &Job,
    email: &Email,
) -> Result<Option<Document>, UserJobError> {
    let claim = doc! {
        "_id": user_id, "jobId": job.id, "to": email.as_str(), "claimedAt": DateTime::now(),
    };
    match deliveries.insert_one(claim).await {
        Ok(_) => return Ok(None),
        Err(err) if is_duplicate_key(&err) => {}
        Err(err) => return Err(err.into()),
    }
    let record = deliveries
        .find_one(doc! { "_id": user_id })
        .await?
        .ok_or(UserJobError::DeliveryRecordVanished)?;
    let claimed_by = record.get_object_id("jobId").ok();
    if claimed_by != Some(job.id) {
        let by = claimed_by.map(|id| id.to_hex()).unwrap_or_default();
        return Ok(Some(
            doc! { "delivered": false, "duplicate": true, "welcomedBy": by },
        ));
    }
    if record.contains_key("deliveredAt") {
        return Ok(Some(doc! { "delivered": true, "duplicate": true }));
    }
    // Our own earlier attempt claimed it and did not finish: send (again).
    Ok(None)
}

/// The welcome message to `name` at `email`. The recipient is built from
/// the parsed address and the name as separate parts (lettre quotes or
/// encodes the name), never by formatting `"{name} <{email}>"` and parsing
/// it back: a name holding `<`, `>` or `,` cannot change or add a recipient.
/// With `verify`, the address's verification token follows.
pub fn welcome_message(
    from: &Mailbox,
    name: &str,
    email: &Email,
    message_id: &str,
    verify: Option<&str>,
) -> Result<Message, lettre::error::Error> {
    let to = Mailbox::new(Some(name.to_owned()), email.to_address());
    let verify = verify.map_or_else(String::new, |token| {
        format!(
            "Please confirm that this is your address: send this token to \
             POST /users/email/verify.\n\n{TOKEN_LINE}{token}\n\n"
        )
    });
    let body = format!(
        "Hello {name},\n\nwelcome to Troupe! Your account for {email} is ready.\n\n{verify}— The Troupe team\n"
    );
    crate::mail::plain_text(from, to, message_id, "Welcome to Troupe", body)
}

/// Run a `user.password_changed` job: tell the owner their password was
/// changed, and whom to turn to if it was not them.
async fn password_changed_email(mailer: &Mailer, job: Job) -> Result<Document, UserJobError> {
    let email = job
        .payload
        .get_str("email")
        .map_err(|_| UserJobError::Payload("email"))?;
    // Parsed again so the recipient is built from a checked address.
    let email = Email::parse(email).map_err(UserJobError::Recipient)?;
    let name = job.payload.get_str("name").unwrap_or("there");
    let message_id = format!("<{}@troupe>", job.id);
    let message = notices::password_changed_message(mailer.from(), name, &email, &message_id)
        .map_err(UserJobError::Compose)?;
    mailer.send(message).await?;
    tracing::info!(target: "worker", job = %job.id, "password-change notice delivered");
    Ok(doc! { "delivered": true, "messageId": message_id })
}

async fn record_login(
    logins: &Collection<Document>,
    users: &Collection<Document>,
    job: Job,
) -> Result<Document, UserJobError> {
    let user_id = user_id(&job.payload)?;
    let at = login_at(&job)?;
    let first = match logins
        .insert_one(doc! { "_id": job.id, "userId": user_id, "at": at })
        .await
    {
        Ok(_) => true,
        Err(err) if is_duplicate_key(&err) => false,
        Err(err) => return Err(err.into()),
    };
    users
        .update_one(
            doc! { "_id": user_id },
            doc! { "$max": { "lastLoginAt": at } },
        )
        .await?;
    Ok(doc! { "recorded": true, "duplicate": !first })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use lettre::message::Mailboxes;

    use super::*;
    use crate::users::email::EmailError;

    fn to_header(message: &Message) -> String {
        let text = String::from_utf8(message.formatted()).unwrap();
        // The header, unfolded.
        let start = text.find("\r\nTo: ").expect("a To header") + 6;
        let mut value = String::new();
        for (i, line) in text[start..].split("\r\n").enumerate() {
            if i > 0 && !line.starts_with([' ', '\t']) {
                break;
            }
            value.push_str(line);
        }
        value
    }

    #[test]
    fn a_name_cannot_add_or_change_a_recipient() {
        let from: Mailbox = "Troupe <no-reply@troupe.local>".parse().unwrap();
        let victim = Email::parse("victim@ex.com").unwrap();
        for name in [
            "Mallory <evil@x.com>",
            "a, evil@x.com",
            "x\" <evil@x.com>, \"y",
            "<evil@x.com>",
            "Zoë <evil@x.com>",
            "=?utf-8?b?PGV2aWxAeC5jb20+?=",
        ] {
            let message = welcome_message(&from, name, &victim, "<1@troupe>", None).unwrap();
            let to = crate::mail::recipients(&message);
            assert_eq!(to, ["victim@ex.com"], "{name}");
            let header = to_header(&message);
            let parsed = Mailboxes::from_str(&header).unwrap_or_else(|e| panic!("{header}: {e}"));
            let addresses: Vec<String> = parsed.iter().map(|m| m.email.to_string()).collect();
            assert_eq!(addresses, ["victim@ex.com"], "{name}: {header}");
        }
    }

    #[test]
    fn a_failed_attempt_is_recorded_with_its_causes() {
        let failed = recorded(Err(UserJobError::Recipient(EmailError::NotAscii)));
        assert_eq!(
            failed.unwrap_err().report(),
            "bad recipient: must contain only ASCII characters"
        );
        let missing = recorded(Err(UserJobError::Payload("userId"))).unwrap_err();
        assert_eq!(missing.report(), "payload lacks userId");
    }

    #[test]
    fn a_malformed_payload_fails_for_good_and_anything_else_is_retried() {
        let missing = recorded(Err(UserJobError::Payload("userId"))).unwrap_err();
        assert!(missing.is_permanent());
        let recipient = recorded(Err(UserJobError::Recipient(EmailError::NotAscii)));
        assert!(recipient.unwrap_err().is_permanent());
        let absent = recorded(Err(UserJobError::NoSuchUser(ObjectId::new())));
        assert!(!absent.unwrap_err().is_permanent(), "the user may come");
    }

    #[test]
    fn the_user_id_is_an_object_id_or_its_hex_and_nothing_else() {
        let id = ObjectId::parse_str("65f1c0ffee0000000000beef").unwrap();
        assert_eq!(user_id(&doc! { "userId": id }).unwrap(), id);
        let hex = doc! { "userId": "65f1c0ffee0000000000beef" };
        assert_eq!(user_id(&hex).unwrap(), id, "the form the API shows");
        for (payload, report) in [
            (doc! {}, "payload lacks userId"),
            (doc! { "userId": Bson::Null }, "payload lacks userId"),
            (
                doc! { "userId": "nope" },
                "payload's userId must be an ObjectId or its 24 hex digits",
            ),
            (
                doc! { "userId": 7 },
                "payload's userId must be an ObjectId or its 24 hex digits",
            ),
        ] {
            let err = user_id(&payload).unwrap_err();
            assert!(err.is_permanent(), "{payload}");
            assert_eq!(err.to_string(), report, "{payload}");
        }
    }

    #[test]
    fn a_login_time_is_a_date_an_rfc3339_string_or_when_the_job_was_written() {
        let mut job = Job::new("user.login", doc! {}, 1);
        assert_eq!(login_at(&job).unwrap(), job.created_at);
        let at = DateTime::from_millis(1_764_400_000_123);
        job.payload = doc! { "at": at };
        assert_eq!(login_at(&job).unwrap(), at);
        job.payload = doc! { "at": "2025-11-29T07:06:40.123Z" };
        assert_eq!(login_at(&job).unwrap(), at, "the form the API shows");
        job.payload = doc! { "at": "yesterday" };
        assert!(login_at(&job).unwrap_err().is_permanent());
    }

    #[test]
    fn an_unusual_address_is_the_exact_recipient() {
        let from: Mailbox = "Troupe <no-reply@troupe.local>".parse().unwrap();
        let email = Email::parse("o'brien+tag@mail.example.co.uk").unwrap();
        let message =
            welcome_message(&from, "Pat O'Brien", &email, "<1@troupe>", Some("tok")).unwrap();
        let to = crate::mail::recipients(&message);
        assert_eq!(to, ["o'brien+tag@mail.example.co.uk"]);
    }
}
