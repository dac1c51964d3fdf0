//! The outbox sender: the background task that delivers queued mail.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_domain::{MailError, Mailer, Outbox, OutboxMessage, StoreError};
use time::OffsetDateTime;

/// How the sender paces itself.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// How often the outbox is looked at when it was empty.
    pub poll_interval: Duration,
    /// How many messages one pass claims.
    pub batch: usize,
    /// How long a claimed message stays hidden from the other instances' senders: longer than
    /// a whole batch can take (each message's SMTP timeouts), or two instances could send one.
    pub lease: Duration,
    /// After this many failed attempts a message is given up on (kept as failed).
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles with each further one, up to
    /// `max_backoff`.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            batch: 5,
            lease: Duration::from_secs(600),
            max_attempts: 12,
            first_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

/// Delivers the outbox through a [`Mailer`], with retries and backoff: a mail server that is
/// down delays mail, never loses it. One runs on every instance; the outbox's leases keep
/// them from sending one message twice.
pub struct OutboxSender {
    outbox: Arc<dyn Outbox>,
    mailer: Arc<dyn Mailer>,
    config: SenderConfig,
}

impl OutboxSender {
    /// A sender of `outbox` through `mailer`.
    pub fn new(outbox: Arc<dyn Outbox>, mailer: Arc<dyn Mailer>, config: SenderConfig) -> Self {
        Self {
            outbox,
            mailer,
            config,
        }
    }

    /// Sends what is due until `stop` completes; a message being sent then is finished first
    /// (the transport's timeouts bound it). An outbox that cannot be read is tried again
    /// after the poll interval.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let handled = match self.send_due(OffsetDateTime::now_utc()).await {
                Ok(handled) => handled,
                Err(error) => {
                    tracing::warn!(%error, "the mail outbox cannot be read; trying again");
                    0
                }
            };
            if handled >= self.config.batch {
                // A full batch: there may be more waiting right away, unless it is time to stop.
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    () = std::future::ready(()) => continue,
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        tracing::debug!("the mail outbox sender stopped");
    }

    /// One pass: claims what is due at `now` and tries each message once. Returns how many it
    /// claimed.
    ///
    /// # Errors
    /// The outbox cannot be read.
    pub async fn send_due(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let lease = time::Duration::try_from(self.config.lease).unwrap_or(time::Duration::HOUR);
        let messages = self.outbox.claim(now, lease, self.config.batch).await?;
        let claimed = messages.len();
        for message in messages {
            self.send_one(message).await;
        }
        Ok(claimed)
    }

    async fn send_one(&self, message: OutboxMessage) {
        let OutboxMessage {
            id, mail, attempts, ..
        } = message;
        let to = mail.to.clone();
        let outcome = match self.mailer.send(mail).await {
            Ok(()) => {
                tracing::info!(outbox_id = %id, "mail delivered");
                self.outbox.delivered(id).await
            }
            Err(MailError::Rejected(reason)) => {
                tracing::error!(outbox_id = %id, %reason, "mail refused for good; given up");
                self.outbox.give_up(id, reason).await
            }
            Err(error) if attempts + 1 >= self.config.max_attempts => {
                tracing::error!(outbox_id = %id, %error, attempts = attempts + 1,
                    "mail not delivered after its last attempt; given up");
                self.outbox.give_up(id, error_chain(&error)).await
            }
            Err(error) => {
                let wait = self.backoff(attempts);
                tracing::warn!(outbox_id = %id, error = %error_chain(&error),
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "mail not delivered; retrying later");
                let at = OffsetDateTime::now_utc()
                    + time::Duration::try_from(wait).unwrap_or(time::Duration::HOUR);
                self.outbox.retry_at(id, at, error_chain(&error)).await
            }
        };
        if let Err(error) = outcome {
            // The lease expires and the message is tried again: at least once, maybe twice.
            tracing::warn!(outbox_id = %id, %error, recipient_domain = domain(&to),
                "could not record a mail's outcome in the outbox");
        }
    }

    /// The wait after failure number `attempts + 1`: doubling from `first_backoff`, capped.
    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2_u32.saturating_pow(attempts.min(20));
        self.config
            .first_backoff
            .saturating_mul(factor)
            .min(self.config.max_backoff)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The domain of an address, which a log may name (the address itself is personal data).
fn domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let sender = OutboxSender::new(
            Arc::new(keel_storage_free::Nothing),
            Arc::new(keel_storage_free::Nothing),
            SenderConfig::default(),
        );
        assert_eq!(sender.backoff(0), Duration::from_secs(5));
        assert_eq!(sender.backoff(1), Duration::from_secs(10));
        assert_eq!(sender.backoff(3), Duration::from_secs(40));
        assert_eq!(sender.backoff(30), Duration::from_secs(3600));
    }

    /// Ports that do nothing: the backoff needs none of them.
    mod keel_storage_free {
        use keel_domain::{
            BoxFuture, Mail, MailError, Mailer, Outbox, OutboxMessage, OutboxStats, StoreError,
        };
        use time::OffsetDateTime;
        use uuid::Uuid;

        pub struct Nothing;

        impl Mailer for Nothing {
            fn send(&self, _mail: Mail) -> BoxFuture<'_, Result<(), MailError>> {
                Box::pin(async { Ok(()) })
            }
        }

        impl Outbox for Nothing {
            fn enqueue(&self, _: Mail, _: OffsetDateTime) -> BoxFuture<'_, Result<(), StoreError>> {
                Box::pin(async { Ok(()) })
            }
            fn claim(
                &self,
                _: OffsetDateTime,
                _: time::Duration,
                _: usize,
            ) -> BoxFuture<'_, Result<Vec<OutboxMessage>, StoreError>> {
                Box::pin(async { Ok(Vec::new()) })
            }
            fn delivered(&self, _: Uuid) -> BoxFuture<'_, Result<(), StoreError>> {
                Box::pin(async { Ok(()) })
            }
            fn retry_at(
                &self,
                _: Uuid,
                _: OffsetDateTime,
                _: String,
            ) -> BoxFuture<'_, Result<(), StoreError>> {
                Box::pin(async { Ok(()) })
            }
            fn give_up(&self, _: Uuid, _: String) -> BoxFuture<'_, Result<(), StoreError>> {
                Box::pin(async { Ok(()) })
            }
            fn stats(&self) -> BoxFuture<'_, Result<OutboxStats, StoreError>> {
                Box::pin(async { Ok(OutboxStats::default()) })
            }
        }
    }
}
