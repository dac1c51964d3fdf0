//! Readiness checks that the app registers for the dependencies it wires in.

use deadpool_redis::Pool;
use keel_http_adapter::{CheckFailure, CheckFuture, ReadinessCheck};
use keel_realtime::SubscriptionState;
use keel_session::deadpool_redis;
use tokio::sync::watch;

/// Redis answers PING through the shared pool (so a pool that cannot hand out a connection
/// counts as down, which is what requests would see).
pub struct RedisCheck {
    pool: Pool,
}

impl RedisCheck {
    /// A check over the app's shared pool.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl ReadinessCheck for RedisCheck {
    fn name(&self) -> &'static str {
        "redis"
    }

    // Redis errors do not echo the URL, so their text (logged) holds no password.
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let mut connection = self.pool.get().await.map_err(|error| {
                let reason = match &error {
                    deadpool_redis::PoolError::Timeout(_) => "timeout",
                    deadpool_redis::PoolError::Backend(error) => redis_reason(error),
                    _ => "unreachable",
                };
                CheckFailure::new(reason, error.to_string())
            })?;
            let answer: String = deadpool_redis::redis::cmd("PING")
                .query_async(&mut connection)
                .await
                .map_err(|error| CheckFailure::new(redis_reason(&error), error.to_string()))?;
            if answer == "PONG" {
                Ok(())
            } else {
                Err(CheckFailure::new(
                    "unexpected_answer",
                    format!("PING answered `{answer}`"),
                ))
            }
        })
    }
}

/// The realtime adapter holds its Redis subscription: without it, broadcasts, emits and
/// revocations from other instances would not reach this instance's sockets.
///
/// Waits for the subscription (bounded by the readiness timeout) instead of failing at once, so
/// an instance asked right after start-up answers "ready" as soon as it has subscribed.
pub struct SubscriptionCheck {
    subscription: watch::Receiver<SubscriptionState>,
}

impl SubscriptionCheck {
    /// A check over the adapter's subscription state.
    pub fn new(subscription: watch::Receiver<SubscriptionState>) -> Self {
        Self { subscription }
    }
}

impl ReadinessCheck for SubscriptionCheck {
    fn name(&self) -> &'static str {
        "realtime"
    }

    fn check(&self) -> CheckFuture<'_> {
        let mut subscription = self.subscription.clone();
        Box::pin(async move {
            subscription
                .wait_for(|state| state.subscribed)
                .await
                .map(drop)
                .map_err(|_| {
                    CheckFailure::new("not_subscribed", "the realtime adapter has stopped")
                })
        })
    }
}

/// The readiness reason of a Redis error.
fn redis_reason(error: &deadpool_redis::redis::RedisError) -> &'static str {
    use deadpool_redis::redis::ErrorKind;
    if error.is_timeout() {
        "timeout"
    } else if matches!(error.kind(), ErrorKind::AuthenticationFailed)
        || error.code() == Some("NOAUTH")
        || error.code() == Some("WRONGPASS")
    {
        "auth_failed"
    } else {
        "unreachable"
    }
}
