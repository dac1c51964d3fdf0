//! Keel's mail delivery, behind keel-domain's [`Mailer`](keel_domain::Mailer) port.
//!
//! - [`SmtpMailer`]: SMTP on lettre, pooled, with a timeout on every step; `smtp://`,
//!   `smtp://…?tls=required` (STARTTLS) or `smtps://`, credentials in the URL (a secret).
//! - [`FileMailer`]: the development transport; each message becomes an `.eml` file in a
//!   folder, which any mail client opens. The log names the file, never what it holds (the
//!   messages carry one-time links).
//! - [`Templates`]: the subject, plain-text and HTML parts of each [`MailKind`], built in and
//!   replaceable file by file from a folder. Every value is escaped in the HTML part; a
//!   template that names a value its kind does not have is refused when it is loaded.
//! - [`Letters`]: keel-domain's `Composer` on the templates, with links to the product's front
//!   end (`app_url`).
//! - [`OutboxSender`]: the background task that delivers the mail outbox through a transport,
//!   with retries and exponential backoff; a message refused for good is kept as failed.
//!
//! ```no_run
//! use keel_domain::Mailer as _;
//! use keel_mail::{FileMailer, MailKind, Templates};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let templates = Templates::load(None)?;
//! let mail = templates.render(
//!     MailKind::VerifyEmail,
//!     "ada@example.com",
//!     &[("link", "https://app.example/verify-email?token=abc"), ("display_name", "Ada")],
//! )?;
//! FileMailer::new(".keel/mail", "Keel <no-reply@localhost>")?.send(mail).await?;
//! # Ok(())
//! # }
//! ```

mod file;
mod letters;
mod sender;
mod smtp;
mod templates;

pub use file::FileMailer;
pub use letters::Letters;
pub use sender::{OutboxSender, SenderConfig};
pub use smtp::{SmtpConfig, SmtpMailer, check_smtp_url};
pub use templates::{MailKind, RenderError, Templates, TemplatesError};

/// Why a transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    /// The SMTP URL cannot be used. The URL is not repeated: it may hold a password.
    #[error("mail.smtp_url: {0}")]
    SmtpUrl(String),
    /// The sender address cannot be used.
    #[error("mail.from: {0}")]
    From(String),
    /// The mail folder cannot be created.
    #[error("mail.dir: {0}")]
    Dir(#[source] std::io::Error),
}

impl MailSetupError {
    /// What is wrong, without the key.
    pub fn reason(&self) -> String {
        match self {
            Self::SmtpUrl(reason) | Self::From(reason) => reason.clone(),
            Self::Dir(error) => error.to_string(),
        }
    }

    /// The configuration key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Self::SmtpUrl(_) => "mail.smtp_url",
            Self::From(_) => "mail.from",
            Self::Dir(_) => "mail.dir",
        }
    }
}

/// The lettre message of `mail` from `from`: both parts, as `multipart/alternative`.
fn message(
    from: &lettre::message::Mailbox,
    mail: &keel_domain::Mail,
) -> Result<lettre::Message, keel_domain::MailError> {
    use lettre::message::{MultiPart, SinglePart, header::ContentType};
    let to = mail
        .to
        .parse()
        .map_err(|error: lettre::address::AddressError| {
            keel_domain::MailError::Rejected(format!("the recipient address: {error}"))
        })?;
    lettre::Message::builder()
        .from(from.clone())
        .to(to)
        // One line whatever the template did: a header cannot carry a line break.
        .subject(mail.subject.replace(['\r', '\n'], " "))
        .message_id(None)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(mail.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html.clone()),
                ),
        )
        .map_err(|error| keel_domain::MailError::Rejected(error.to_string()))
}

/// Checks that `from` can be the sender of every mail (`Name <address>` or an address), so a
/// configuration can be refused when it loads, naming `mail.from`.
///
/// # Errors
/// [`MailSetupError::From`] when it cannot.
pub fn check_sender(from: &str) -> Result<(), MailSetupError> {
    mailbox(from).map(drop)
}

/// The sender mailbox, parsed once at start-up.
fn mailbox(from: &str) -> Result<lettre::message::Mailbox, MailSetupError> {
    from.parse()
        .map_err(|error: lettre::address::AddressError| MailSetupError::From(error.to_string()))
}
