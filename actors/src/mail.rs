//! Outgoing e-mail with lettre: SMTP when `mail.smtp_url` is set, otherwise
//! lettre's file transport into `mail.outbox_dir` (one `.eml` per message).

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

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

    /// The `From:` of every message.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    pub async fn send(&self, message: Message) -> Result<(), String> {
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
