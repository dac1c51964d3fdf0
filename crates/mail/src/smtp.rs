//! The SMTP adapter.

use std::fmt;
use std::time::Duration;

use keel_domain::{BoxFuture, Mail, MailError, Mailer};
use lettre::message::Mailbox;
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};

use crate::{MailSetupError, mailbox, message};

/// How to reach the SMTP server.
#[derive(Clone)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain; add `?tls=required` for STARTTLS) or `smtps://host:port`
    /// (TLS from the first byte), with `user:password@` when the server wants them.
    pub url: SecretString,
    /// The sender of every message, such as `Keel <no-reply@example.com>`.
    pub from: String,
    /// The longest any one SMTP step (connect, a command, the message) may take.
    pub timeout: Duration,
    /// Connections kept open to the server, at most.
    pub pool_size: u32,
}

/// Sends mail to an SMTP server, over a pool of connections.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer for `config`. Connects lazily: a server that is down fails the sends, never
    /// the start-up.
    ///
    /// # Errors
    /// An unusable URL or sender address.
    pub fn new(config: &SmtpConfig) -> Result<Self, MailSetupError> {
        let transport = builder(config.url.expose_secret())?
            .timeout(Some(config.timeout))
            .pool_config(PoolConfig::new().max_size(config.pool_size.max(1)))
            .build();
        Ok(Self {
            transport,
            from: mailbox(&config.from)?,
        })
    }
}

/// Checks an SMTP URL as [`SmtpMailer::new`] does, without building a transport (which needs a
/// runtime): its shape, and no credentials in clear over the network.
///
/// # Errors
/// [`MailSetupError::SmtpUrl`], saying what is wrong without repeating the URL.
pub fn check_smtp_url(url: &SecretString) -> Result<(), MailSetupError> {
    builder(url.expose_secret()).map(drop)
}

fn builder(url: &str) -> Result<AsyncSmtpTransportBuilder, MailSetupError> {
    refuse_clear_credentials(url)?;
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        // lettre's message may quote the URL, password included: say what is wrong only.
        .map_err(|_| {
            MailSetupError::SmtpUrl(
                "not an smtp:// or smtps:// URL (smtp://host:port, smtps://user:pass@host:port)"
                    .into(),
            )
        })
}

/// Refuses a plain `smtp://` URL that carries credentials to a host other than this machine:
/// the password would cross the network in clear. `smtps://` and `?tls=required` encrypt it.
fn refuse_clear_credentials(url: &str) -> Result<(), MailSetupError> {
    let Some(rest) = url.strip_prefix("smtp://") else {
        return Ok(());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let query = rest.split_once('?').map_or("", |(_, query)| query);
    let Some((_, host)) = authority.rsplit_once('@') else {
        return Ok(());
    };
    let host = host
        .rsplit_once(':')
        .map_or(host, |(host, _)| host)
        .trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || query.split('&').any(|pair| pair == "tls=required") {
        return Ok(());
    }
    Err(MailSetupError::SmtpUrl(
        "credentials over plain smtp:// would cross the network in clear; use smtps:// or \
         smtp://…?tls=required"
            .into(),
    ))
}

impl Mailer for SmtpMailer {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), MailError>> {
        Box::pin(async move {
            let message = message(&self.from, &mail)?;
            match self.transport.send(message).await {
                Ok(_) => Ok(()),
                Err(error) if error.is_permanent() => Err(MailError::Rejected(error.to_string())),
                Err(error) => Err(MailError::unavailable(error)),
            }
        })
    }
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The transport knows the credentials.
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}
