//! The settings of the account lifecycle: mail delivery, administration and the audit log,
//! and their checks at load.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, redacted};

/// Who administers accounts, besides the accounts granted the role (`server admin grant`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Accounts with these addresses (compared canonically) have the `admin` role; in
    /// production only once the address is verified.
    pub emails: Vec<String>,
}

/// The audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Events older than this many days are purged (daily, recorded as `audit.purged`); 0
    /// keeps every event.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 365,
        }
    }
}

impl AuditConfig {
    /// How long events are kept; `None`: for ever.
    pub fn retention(&self) -> Option<time::Duration> {
        (self.retention_days > 0).then(|| time::Duration::days(i64::from(self.retention_days)))
    }
}

/// Mail delivery: SMTP when `smtp_url` is set, `.eml` files in `dir` otherwise (development).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp://host:port` (`?tls=required` for STARTTLS) or `smtps://user:pass@host:port`; a
    /// secret (it may hold a password). Required in production.
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<SecretString>,
    /// The sender of every mail.
    pub from: String,
    /// Where development mail is written, one `.eml` file per message.
    pub dir: PathBuf,
    /// A folder whose files replace the built-in templates (`verify_email.html`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates: Option<PathBuf>,
    /// The longest one SMTP step may take, in milliseconds.
    pub timeout_ms: u64,
    /// SMTP connections kept open, at most.
    pub pool_size: u32,
    /// How often the outbox is looked at when it was empty, in milliseconds.
    pub poll_interval_ms: u64,
    /// Attempts before a mail is given up on (kept as failed in the outbox).
    pub max_attempts: u32,
    /// The wait before the first retry of a mail, in milliseconds; it doubles with each
    /// further failure, up to an hour.
    pub retry_backoff_ms: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Keel <no-reply@localhost>".to_owned(),
            dir: PathBuf::from(".keel/mail"),
            templates: None,
            timeout_ms: 10_000,
            pool_size: 4,
            poll_interval_ms: 1_000,
            max_attempts: 12,
            retry_backoff_ms: 5_000,
        }
    }
}

impl MailConfig {
    /// The bound of one SMTP step.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }

    /// How the outbox sender paces itself; its lease outlasts a whole batch of SMTP exchanges
    /// (each a handful of steps, every one bounded by the timeout).
    pub fn sender(&self) -> keel_mail::SenderConfig {
        let defaults = keel_mail::SenderConfig::default();
        let batch = u32::try_from(defaults.batch).unwrap_or(u32::MAX);
        keel_mail::SenderConfig {
            poll_interval: std::time::Duration::from_millis(self.poll_interval_ms),
            lease: (self.timeout() * 6 * batch).max(std::time::Duration::from_secs(60)),
            max_attempts: self.max_attempts,
            first_backoff: std::time::Duration::from_millis(self.retry_backoff_ms),
            ..defaults
        }
    }
}

impl Config {
    /// Checks the front end's URL, mail delivery and the administrators' addresses.
    pub(super) fn validate_mail(&self) -> Result<(), ConfigError> {
        let url = self
            .app_url
            .strip_prefix("https://")
            .or_else(|| self.app_url.strip_prefix("http://"));
        if url.is_none_or(|rest| {
            rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' '])
        }) {
            return Err(ConfigError::new(
                "app_url",
                "must be an http(s) URL without a query, such as https://app.example.com",
            ));
        }
        let checked = keel_mail::check_sender(&self.mail.from).and_then(|()| {
            self.mail
                .smtp_url
                .as_ref()
                .map_or(Ok(()), keel_mail::check_smtp_url)
        });
        if let Err(error) = checked {
            return Err(ConfigError::new(error.key(), error.reason()));
        }
        for (key, value) in [
            ("mail.timeout_ms", self.mail.timeout_ms),
            ("mail.pool_size", u64::from(self.mail.pool_size)),
            ("mail.poll_interval_ms", self.mail.poll_interval_ms),
            ("mail.max_attempts", u64::from(self.mail.max_attempts)),
            ("mail.retry_backoff_ms", self.mail.retry_backoff_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        for email in &self.admin.emails {
            if keel_domain::Email::parse_lenient(email).is_err() {
                return Err(ConfigError::new(
                    "admin.emails",
                    format!("`{email}` is not an e-mail address"),
                ));
            }
        }
        if let Err(error) = keel_mail::Templates::load(self.mail.templates.as_deref()) {
            let reason = error.to_string();
            let reason = reason.trim_start_matches("mail.templates: ");
            return Err(ConfigError::new("mail.templates", reason));
        }
        Ok(())
    }
}
