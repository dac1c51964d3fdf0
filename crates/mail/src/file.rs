//! The development transport: one `.eml` file per message.

use std::path::{Path, PathBuf};

use keel_domain::{BoxFuture, Mail, MailError, Mailer};
use lettre::message::Mailbox;

use crate::{MailSetupError, mailbox, message};

/// Writes each message, as sent over SMTP, to `<dir>/<unix ms>-<uuid>.eml`. The file is
/// written under a temporary name and renamed, so a reader never sees half a message. The log
/// names the file; the link inside stays out of the log.
#[derive(Debug, Clone)]
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    /// A transport into `dir`, created if missing.
    ///
    /// # Errors
    /// The folder cannot be created, or the sender address is not one.
    pub fn new(dir: impl AsRef<Path>, from: &str) -> Result<Self, MailSetupError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(MailSetupError::Dir)?;
        Ok(Self {
            dir,
            from: mailbox(from)?,
        })
    }

    /// The folder the messages go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Mailer for FileMailer {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), MailError>> {
        Box::pin(async move {
            let bytes = message(&self.from, &mail)?.formatted();
            let name = format!(
                "{}-{}",
                time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
                uuid::Uuid::new_v4()
            );
            let partial = self.dir.join(format!(".{name}.partial"));
            let path = self.dir.join(format!("{name}.eml"));
            tokio::fs::write(&partial, bytes)
                .await
                .map_err(MailError::unavailable)?;
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(MailError::unavailable)?;
            tracing::info!(path = %path.display(), subject = %mail.subject, "mail written to a file");
            Ok(())
        })
    }
}
