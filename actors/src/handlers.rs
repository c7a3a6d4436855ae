//! The job handlers: what each job type does.
//!
//! Every queue delivers at least once (a lease can expire under a slow
//! handler, a process can die after the work but before the acknowledgement),
//! so every handler is idempotent by job id.
//!
//! - `user.created`: a welcome e-mail to an existing user, delivered with lettre: SMTP when
//!   `mail.smtp_url` is set, otherwise lettre's file transport into
//!   `mail.outbox_dir` (one `.eml` per message). Its `Message-ID` is derived
//!   from the job id, and a delivery record keyed by job id is checked first,
//!   so a retried job does not send again.
//! - `user.login`: one `login_events` document per job id (a duplicate insert
//!   means it was recorded already) and `lastLoginAt` on the user, set with
//!   `$max` so replays and out-of-order runs cannot move it backwards.
//! - `noop`: does nothing; for benchmarks and smoke checks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mongodb::bson::{doc, DateTime, Document};
use mongodb::{Collection, Database};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::jobs::Job;
use crate::user::is_duplicate_key;

/// What a handler returns: a result document, or an error to retry on.
pub type HandlerResult = Result<Document, String>;

type HandlerFn = dyn Fn(Job) -> BoxFuture<'static, HandlerResult> + Send + Sync;

/// Job type → handler.
#[derive(Clone, Default)]
pub struct JobHandlers {
    handlers: HashMap<String, Arc<HandlerFn>>,
}

impl JobHandlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `handler` for jobs of type `kind` (replacing any other).
    pub fn with<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = HandlerResult> + Send + 'static,
    {
        self.handlers
            .insert(kind.into(), Arc::new(move |job| Box::pin(handler(job))));
        self
    }

    /// All of `other`'s handlers added to these (`other` wins a clash).
    pub fn merge(mut self, other: JobHandlers) -> Self {
        self.handlers.extend(other.handlers);
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<HandlerFn>> {
        self.handlers.get(kind).cloned()
    }

    /// The service's own handlers: `user.created`, `user.login`, `noop`.
    pub fn standard(db: &Database, mailer: Mailer) -> Self {
        let mailer = Arc::new(mailer);
        let deliveries: Collection<Document> = db.collection("email_deliveries");
        let users_for_welcome: Collection<Document> = db.collection("users");
        let logins: Collection<Document> = db.collection("login_events");
        let users: Collection<Document> = db.collection("users");
        Self::new()
            .with("user.created", move |job| {
                let (mailer, deliveries, users) = (
                    Arc::clone(&mailer),
                    deliveries.clone(),
                    users_for_welcome.clone(),
                );
                async move { welcome_email(&mailer, &deliveries, &users, job).await }
            })
            .with("user.login", move |job| {
                let (logins, users) = (logins.clone(), users.clone());
                async move { record_login(&logins, &users, job).await }
            })
            .with("noop", |_job| async { Ok(Document::new()) })
    }
}

/// `[mail]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct MailConfig {
    /// `From:` of outgoing mail.
    pub from: String,
    /// e.g. `smtps://user:pass@smtp.example.com`; unset → file transport.
    pub smtp_url: Option<SecretString>,
    /// Where the file transport writes `.eml` files.
    pub outbox_dir: PathBuf,
}

/// Delivers e-mail over SMTP or into an outbox directory.
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Result<Self, String> {
        let from: Mailbox = config.from.parse().map_err(|e| format!("mail.from: {e}"))?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| format!("mail.smtp_url: {e}"))?
                    .build(),
            ),
            None => {
                std::fs::create_dir_all(&config.outbox_dir)
                    .map_err(|e| format!("mail.outbox_dir {}: {e}", config.outbox_dir.display()))?;
                Transport::File(AsyncFileTransport::new(&config.outbox_dir))
            }
        };
        Ok(Self { from, transport })
    }

    async fn send(&self, message: Message) -> Result<(), String> {
        match &self.transport {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(drop)
                .map_err(|e| format!("smtp: {e}")),
            Transport::File(file) => file
                .send(message)
                .await
                .map(drop)
                .map_err(|e| format!("outbox: {e}")),
        }
    }
}

/// The `userId` a user job's payload names.
fn user_id(job: &Job) -> Result<mongodb::bson::oid::ObjectId, String> {
    job.payload
        .get_object_id("userId")
        .map_err(|_| "payload lacks userId".to_string())
}

async fn welcome_email(
    mailer: &Mailer,
    deliveries: &Collection<Document>,
    users: &Collection<Document>,
    job: Job,
) -> HandlerResult {
    // Sign-up writes this job just before the user: until the user exists
    // (and if it never does), there is nobody to welcome. Retried with backoff.
    let user_id = user_id(&job)?;
    if users
        .find_one(doc! { "_id": user_id })
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Err(format!("user {user_id} does not exist (yet)"));
    }
    if deliveries
        .find_one(doc! { "_id": job.id })
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(doc! { "delivered": true, "duplicate": true });
    }
    let email = job
        .payload
        .get_str("email")
        .map_err(|_| "payload lacks email".to_string())?;
    let name = job.payload.get_str("name").unwrap_or("there");
    let to: Mailbox = format!("{name} <{email}>")
        .parse()
        .or_else(|_| email.parse())
        .map_err(|e| format!("bad recipient: {e}"))?;
    let message_id = format!("<{}@troupe>", job.id);
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .message_id(Some(message_id.clone()))
        .subject("Welcome to Troupe")
        .header(ContentType::TEXT_PLAIN)
        .body(format!(
            "Hello {name},\n\nwelcome to Troupe! Your account for {email} is ready.\n\n— The Troupe team\n"
        ))
        .map_err(|e| format!("compose: {e}"))?;
    mailer.send(message).await?;
    match deliveries
        .insert_one(
            doc! { "_id": job.id, "messageId": &message_id, "to": email, "at": DateTime::now() },
        )
        .await
    {
        Ok(_) => {}
        Err(err) if is_duplicate_key(&err) => {}
        Err(err) => return Err(err.to_string()),
    }
    tracing::info!(target: "worker", job = %job.id, "welcome e-mail delivered");
    Ok(doc! { "delivered": true, "messageId": message_id })
}

async fn record_login(
    logins: &Collection<Document>,
    users: &Collection<Document>,
    job: Job,
) -> HandlerResult {
    let user_id = user_id(&job)?;
    let at = job
        .payload
        .get_datetime("at")
        .copied()
        .unwrap_or(job.created_at);
    let first = match logins
        .insert_one(doc! { "_id": job.id, "userId": user_id, "at": at })
        .await
    {
        Ok(_) => true,
        Err(err) if is_duplicate_key(&err) => false,
        Err(err) => return Err(err.to_string()),
    };
    users
        .update_one(
            doc! { "_id": user_id },
            doc! { "$max": { "lastLoginAt": at } },
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(doc! { "recorded": true, "duplicate": !first })
}
