//! The `Mailer` port: how the core hands a message to whatever delivers mail.

use std::fmt;

use secrecy::SecretString;

use crate::display_name::DisplayName;
use crate::email::Email;
use crate::repository::BoxFuture;

/// One message, rendered: who gets it, its subject and its plain-text and HTML parts.
///
/// The sender (`From`) is the transport's, configured once. `Debug` leaves the parts out: they
/// carry one-time links.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient's address, as the account has it.
    pub to: String,
    /// The subject line, one line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a message was not handed over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The message can never be delivered as it is (a recipient or content the server refuses
    /// for good, an SMTP 5xx). Retrying does not help.
    #[error("the mail was refused for good: {0}")]
    Rejected(String),
    /// The transport cannot take it now (the server is down, a timeout, a 4xx). Retrying later
    /// may help.
    #[error("the mail transport is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl MailError {
    /// A [`MailError::Unavailable`] caused by `source`.
    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }
}

/// Delivers mail: over SMTP in production, into files in development (keel-mail).
pub trait Mailer: Send + Sync + 'static {
    /// Hands `mail` to the transport. `Ok` means the transport took it (the SMTP server
    /// answered 250 to the message), not that it reached the inbox.
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), MailError>>;
}

/// A mail the account lifecycle sends, before it is rendered: what it says, not how.
///
/// The tokens are secrets: `Debug` leaves them out.
#[derive(Clone)]
#[non_exhaustive]
pub enum Notice {
    /// After registration (or a resend): the link that verifies the address.
    VerifyEmail {
        /// The one-time token the link carries.
        token: SecretString,
    },
    /// After a reset request: the link that sets a new password.
    ResetPassword {
        /// The one-time token the link carries.
        token: SecretString,
    },
    /// To the new address of an e-mail change: the link that confirms it.
    ConfirmNewEmail {
        /// The one-time token the link carries.
        token: SecretString,
        /// The address the account moves to.
        new_email: Email,
    },
    /// To the account's address: its password changed (or was reset).
    PasswordChanged,
    /// To the old address: the account's address changed.
    EmailChanged {
        /// The address the account moved to.
        new_email: Email,
    },
    /// To the account's address: failed logins locked it against unknown devices.
    AccountLocked,
}

impl fmt::Debug for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::VerifyEmail { .. } => "VerifyEmail",
            Self::ResetPassword { .. } => "ResetPassword",
            Self::ConfirmNewEmail { .. } => "ConfirmNewEmail",
            Self::PasswordChanged => "PasswordChanged",
            Self::EmailChanged { .. } => "EmailChanged",
            Self::AccountLocked => "AccountLocked",
        })
    }
}

/// Renders notices into mail: the product's templates and the links to its front end
/// (keel-mail's `Letters`).
pub trait Composer: Send + Sync + 'static {
    /// The mail that tells `display_name` at `to` about `notice`.
    ///
    /// # Errors
    /// [`MailError::Rejected`] when the templates cannot render it (checked when they load,
    /// so a bug).
    fn compose(
        &self,
        to: &Email,
        display_name: &DisplayName,
        notice: &Notice,
    ) -> Result<Mail, MailError>;
}
