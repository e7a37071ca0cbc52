//! Mail: rendered from templates (plain text and HTML, in the member's language), queued
//! as a durable job sealed with the master key (a queued body may hold a secret link),
//! and delivered by the job worker through SMTP or, on the embedded default, as `.eml`
//! files in the outbox. Nothing that must arrive lives only in memory.

pub mod templates;

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::Config;
use crate::keys::{KeyError, MasterKey};

/// A rendered mail, as it waits in the queue (sealed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail.smtp.url: {0}")]
    Config(String),
    #[error("the mail cannot be built: {0}")]
    Build(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("cannot write to the outbox {path}: {source}")]
    Outbox {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a queued mail cannot be read: {0}")]
    Sealed(String),
}

impl Mail {
    /// The sealed form stored in the job queue.
    pub fn seal(&self, master: &MasterKey) -> Result<String, KeyError> {
        let json = serde_json::to_vec(self).expect("a mail serialises");
        master.encrypt(&json).inspect(|_| crate::ops::mail_queued())
    }

    pub fn unseal(sealed: &str, master: &MasterKey) -> Result<Self, MailError> {
        let plain = master
            .decrypt(sealed)
            .map_err(|e| MailError::Sealed(e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|e| MailError::Sealed(e.to_string()))
    }

    /// The message as it leaves (RFC 5322 bytes), from `from`: what the outbox writes and
    /// SMTP sends.
    pub fn formatted(&self, from: &Mailbox) -> Result<Vec<u8>, MailError> {
        Ok(self.message(from)?.formatted())
    }

    fn message(&self, from: &Mailbox) -> Result<Message, MailError> {
        let to: Mailbox = self
            .to
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Build(e.to_string()))?;
        Message::builder()
            .from(from.clone())
            .to(to)
            .subject(&self.subject)
            .multipart(MultiPart::alternative_plain_html(
                self.text.clone(),
                self.html.clone(),
            ))
            .map_err(|e| MailError::Build(e.to_string()))
    }
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// The embedded default: `.eml` files, one per mail, and a log line.
    Outbox { dir: PathBuf, from: Mailbox },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp { .. } => f.write_str("Mailer::Smtp"),
            Self::Outbox { dir, .. } => write!(f, "Mailer::Outbox({})", dir.display()),
        }
    }
}

impl Mailer {
    pub fn from_config(config: &Config) -> Result<Self, MailError> {
        let from: Mailbox =
            config
                .mail
                .from
                .parse()
                .map_err(|e: lettre::address::AddressError| {
                    MailError::Config(format!("mail.from: {e}"))
                })?;
        let smtp = &config.mail.smtp;
        let url = smtp.url.expose();
        if url.is_empty() {
            return Ok(Self::Outbox {
                dir: config.outbox_dir(),
                from,
            });
        }
        let parsed = Url::parse(url).map_err(|e| MailError::Config(e.to_string()))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| MailError::Config("no host".to_owned()))?
            .trim_matches(['[', ']'])
            .to_owned();
        let mut builder = match parsed.scheme() {
            // Implicit TLS (RFC 8314).
            "smtps" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)?
                .port(parsed.port().unwrap_or(465)),
            // Plain text, only for a test server on this machine.
            "smtp" if smtp.allow_insecure => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(parsed.port().unwrap_or(25))
            }
            // STARTTLS, required.
            "smtp" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)?
                .port(parsed.port().unwrap_or(587)),
            other => {
                return Err(MailError::Config(format!(
                    "scheme {other}: use smtp:// (STARTTLS) or smtps://"
                )));
            }
        };
        if !smtp.user.is_empty() {
            builder = builder.credentials(Credentials::new(
                smtp.user.clone(),
                smtp.password.expose().to_owned(),
            ));
        }
        let transport = builder.timeout(Some(StdDuration::from_secs(15))).build();
        Ok(Self::Smtp { transport, from })
    }

    /// Delivers one mail. `id` names the outbox file.
    pub async fn deliver(&self, id: &str, mail: &Mail) -> Result<(), MailError> {
        match self {
            Self::Smtp { transport, from } => {
                transport.send(mail.message(from)?).await?;
                Ok(())
            }
            Self::Outbox { dir, from } => {
                let bytes = mail.formatted(from)?;
                let path = dir.join(format!("{id}.eml"));
                let io = |source| MailError::Outbox {
                    path: path.clone(),
                    source,
                };
                tokio::fs::create_dir_all(dir).await.map_err(io)?;
                // Written whole, then renamed: a reader never sees half a mail.
                let partial = dir.join(format!(".{id}.eml.part"));
                tokio::fs::write(&partial, &bytes).await.map_err(io)?;
                tokio::fs::rename(&partial, &path).await.map_err(io)?;
                tracing::info!(path = %path.display(), "mail written to the outbox");
                Ok(())
            }
        }
    }
}
