//! Outgoing e-mail with lettre: SMTP when `mail.smtp_url` is set, otherwise
//! lettre's file transport into `mail.outbox_dir` (one `.eml` per message).

use std::path::PathBuf;

use lettre::address::AddressError;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::{file, smtp};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::validate::{ConfigErrors, Validate};

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

/// Why the mailer could not be built or a message not delivered. The
/// variants name the setting at fault; the cause is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail.from is not a mailbox")]
    From(#[source] AddressError),
    /// Never echoes the URL: it may hold a password.
    #[error("mail.smtp_url is not a usable SMTP URL")]
    SmtpUrl(#[source] smtp::Error),
    #[error("mail.outbox_dir {} cannot be created", .path.display())]
    Outbox {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("smtp delivery failed")]
    Smtp(#[source] smtp::Error),
    #[error("writing to the outbox failed")]
    File(#[source] file::Error),
}

/// A plain-text message from `from` to `to`. The `Message-ID` is the
/// caller's (derived from a job id, a retried job resends the same
/// message, which a mail client shows once).
pub fn plain_text(
    from: &Mailbox,
    to: Mailbox,
    message_id: &str,
    subject: &str,
    body: String,
) -> Result<Message, lettre::error::Error> {
    Message::builder()
        .from(from.clone())
        .to(to)
        .message_id(Some(message_id.to_owned()))
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
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
    pub fn new(config: &MailConfig) -> Result<Self, MailError> {
        let from: Mailbox = config.from.parse().map_err(MailError::From)?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(MailError::SmtpUrl)?
                    .build(),
            ),
            None => {
                std::fs::create_dir_all(&config.outbox_dir).map_err(|source| {
                    MailError::Outbox {
                        path: config.outbox_dir.clone(),
                        source,
                    }
                })?;
                Transport::File(AsyncFileTransport::new(&config.outbox_dir))
            }
        };
        Ok(Self { from, transport })
    }

    /// The `From:` of every message.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(MailError::Smtp),
            Transport::File(file) => file.send(message).await.map(drop).map_err(MailError::File),
        }
    }
}

/// The sender is a mailbox and the SMTP URL (if any) usable: checked
/// without connecting. The URL is never echoed (it may hold a password).
impl Validate for MailConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(
            self.from.parse::<Mailbox>().is_ok(),
            "from",
            "is not a mailbox (Name <address>)",
        );
        let usable = |url: &SecretString| {
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret()).is_ok()
        };
        errors.ensure(
            self.smtp_url.as_ref().is_none_or(usable),
            "smtp_url",
            "is not a usable SMTP URL",
        );
    }
}

/// The envelope's recipients of `message`, as text (for tests).
#[cfg(test)]
pub(crate) fn recipients(message: &Message) -> Vec<String> {
    (message.envelope().to().iter())
        .map(|address| address.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    fn config(from: &str, smtp_url: Option<&str>) -> MailConfig {
        MailConfig {
            from: from.into(),
            smtp_url: smtp_url.map(SecretString::from),
            outbox_dir: std::env::temp_dir().join("troupe-mail-unit"),
        }
    }

    #[test]
    fn a_bad_from_is_named_with_its_cause() {
        let err = Mailer::new(&config("not a mailbox", None))
            .err()
            .expect("refused");
        assert!(matches!(err, MailError::From(_)), "{err:?}");
        assert!(err.to_string().contains("mail.from"));
        assert!(err.source().is_some(), "the parser's reason is kept");
    }

    #[test]
    fn a_bad_smtp_url_never_echoes_the_url() {
        let err = Mailer::new(&config("a@b.co", Some("ftp://user:hunter2@x")))
            .err()
            .expect("refused");
        assert!(matches!(err, MailError::SmtpUrl(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn every_bad_mail_field_is_named_and_the_url_never_echoed() {
        let err = config("not a mailbox", Some("ftp://user:hunter2@x"))
            .validate()
            .unwrap_err();
        assert_eq!(err.keys(), ["from", "smtp_url"]);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(config("Troupe <a@b.co>", Some("smtp://localhost:25"))
            .validate()
            .is_ok());
        assert!(config("a@b.co", None).validate().is_ok());
    }
}
