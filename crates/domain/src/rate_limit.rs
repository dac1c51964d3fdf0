//! Rate limiting: quotas, the decisions a limiter takes, the `RateLimiter` port, and the
//! `RateLimit-Policy` / `RateLimit` header values of draft-ietf-httpapi-ratelimit-headers-10.
//!
//! The domain fixes what a quota means and what a decision reports; how requests are counted
//! (in process memory, or in Redis across instances) is up to the adapters behind the port.

use std::time::Duration;

use time::OffsetDateTime;

use crate::repository::BoxFuture;

/// A rate limit: at most `limit` requests per `window` for each key (client IP, user, email...).
///
/// Valid by construction ([`Quota::new`]). The name identifies the policy in the rate-limit
/// headers and separates the counters of different quotas that share a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    name: &'static str,
    limit: u32,
    window: Duration,
}

/// Why a [`Quota`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// The name is empty, too long, or has a character outside `A-Z a-z 0-9 - _ . :`.
    #[error(
        "a quota name has 1 to {max} characters of A-Z, a-z, 0-9, '-', '_', '.' and ':'",
        max = Quota::MAX_NAME_LEN
    )]
    InvalidName,
    /// The limit is 0: such a quota would refuse everything, which is a switch, not a limit.
    #[error("a quota allows at least 1 request per window")]
    ZeroLimit,
    /// The window is shorter than one second.
    #[error("a quota window is at least 1 second")]
    WindowTooShort,
    /// The window has a fraction of a second.
    #[error("a quota window is a whole number of seconds")]
    WindowNotWholeSeconds,
    /// The window is longer than [`Quota::MAX_WINDOW`].
    #[error("a quota window is at most 366 days")]
    WindowTooLong,
}

impl Quota {
    /// The longest name accepted, in characters.
    pub const MAX_NAME_LEN: usize = 64;
    /// The longest window accepted: a year, leap day included. Bounding it keeps every
    /// limiter's arithmetic far from overflow and the header integers small.
    pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 60 * 60);

    /// A quota of `limit` requests per `window`, named `name` (e.g. `"login-ip"`).
    ///
    /// The name is restricted to `A-Z a-z 0-9 - _ . :` so it can go into a header string and a
    /// Redis key without escaping. The window is whole seconds (at least 1, at most
    /// [`Quota::MAX_WINDOW`]) because the `w` parameter of `RateLimit-Policy` has no
    /// sub-second precision, and an advertised window must be the enforced one.
    ///
    /// A `const fn`, so fixed quotas can be checked at compile time:
    ///
    /// ```
    /// use std::time::Duration;
    /// use keel_domain::Quota;
    ///
    /// const LOGIN_IP: Quota = match Quota::new("login-ip", 5, Duration::from_secs(60)) {
    ///     Ok(quota) => quota,
    ///     Err(_) => panic!("invalid quota"),
    /// };
    /// assert_eq!(LOGIN_IP.limit(), 5);
    /// ```
    pub const fn new(name: &'static str, limit: u32, window: Duration) -> Result<Self, QuotaError> {
        if !is_valid_name(name) {
            return Err(QuotaError::InvalidName);
        }
        if limit == 0 {
            return Err(QuotaError::ZeroLimit);
        }
        if window.as_secs() == 0 {
            return Err(QuotaError::WindowTooShort);
        }
        if window.subsec_nanos() != 0 {
            return Err(QuotaError::WindowNotWholeSeconds);
        }
        if window.as_secs() > Self::MAX_WINDOW.as_secs() {
            return Err(QuotaError::WindowTooLong);
        }
        Ok(Self {
            name,
            limit,
            window,
        })
    }

    /// The policy name, as it appears in the headers.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Requests allowed per window (at least 1).
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The window, a whole number of seconds (at least 1).
    pub const fn window(&self) -> Duration {
        self.window
    }
}

const fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > Quota::MAX_NAME_LEN {
        return false;
    }
    // A `while` loop because iterators are not available in a `const fn`.
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b':') {
            return false;
        }
        i += 1;
    }
    true
}

/// What a limiter decided about one request, and the state of its bucket afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed. A denied request consumes nothing.
    pub allowed: bool,
    /// The quota's limit (requests per window).
    pub limit: u32,
    /// Requests that would still be allowed right now, after this one.
    pub remaining: u32,
    /// Time until the bucket is full again (`remaining` back at `limit`); zero when it is.
    pub reset_after: Duration,
    /// When denied: time until the next request would be allowed, always more than zero.
    /// `None` when allowed.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// The `RateLimit-Policy` list member for `quota`, e.g. `"login-ip";q=5;w=60`.
    ///
    /// Several quotas that apply to one response are joined with `", "` into one field value.
    pub fn policy_header(quota: &Quota) -> String {
        format!(
            "\"{}\";q={};w={}",
            quota.name(),
            quota.limit(),
            quota.window().as_secs()
        )
    }

    /// The `RateLimit` list member for this decision under `quota`, e.g. `"login-ip";r=0;t=12`.
    ///
    /// `t` is whole seconds, rounded up. When allowed it is the time until the bucket is full
    /// again ([`Decision::reset_after`]). When denied it is the time until the next request
    /// is allowed, equal to [`Decision::retry_after_seconds`]: the draft defines `t` as the time
    /// until more quota is available, and says `Retry-After` should not point earlier than `t`,
    /// which a full-reset `t` beside a shorter `Retry-After` would break.
    pub fn ratelimit_header(&self, quota: &Quota) -> String {
        let t = match self.retry_after_seconds() {
            Some(seconds) => seconds,
            None => ceil_seconds(self.reset_after),
        };
        format!("\"{}\";r={};t={}", quota.name(), self.remaining, t)
    }

    /// The `Retry-After` value in whole seconds, rounded up, when denied; `None` when allowed.
    ///
    /// Never 0 while denied: a client told "retry after 0" would retry at once and be denied
    /// again, so a backend that reports no (or a zero) wait still yields 1.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        if self.allowed {
            return None;
        }
        let wait = self.retry_after.unwrap_or(self.reset_after);
        Some(ceil_seconds(wait).max(1))
    }
}

fn ceil_seconds(duration: Duration) -> u64 {
    let whole = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

/// Why a limiter could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The backend cannot answer now (down, timed out). Callers fall back to in-process limits
    /// rather than allowing everything or refusing everything.
    #[error("the rate-limit store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RateLimitError {
    /// A [`RateLimitError::Unavailable`] caused by `source`.
    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }
}

/// Counts requests against quotas.
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request by `key` (a client IP, a user id, an email...) against `quota` at
    /// time `now`, and says whether it may proceed.
    ///
    /// Counters are kept per `(quota.name(), key)`, so different quotas never share a budget.
    /// `now` is passed in rather than read so that every instance (and every test) decides
    /// from the same notion of time.
    fn check<'a>(
        &'a self,
        quota: &'a Quota,
        key: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Decision, RateLimitError>>;

    /// Gives back one request that [`check`](Self::check) counted for `key` under `quota`, as
    /// if it had not been made (never more budget than a full one).
    ///
    /// For budgets that only failures should spend (failed logins): every attempt is counted
    /// when it is admitted, so that parallel attempts cannot all pass one check, and a
    /// success is refunded once it is known.
    fn refund<'a>(
        &'a self,
        quota: &'a Quota,
        key: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<(), RateLimitError>>;
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    fn quota(name: &'static str, limit: u32, seconds: u64) -> Quota {
        Quota::new(name, limit, Duration::from_secs(seconds)).unwrap()
    }

    fn denied(retry_after: Duration, reset_after: Duration) -> Decision {
        Decision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_after,
            retry_after: Some(retry_after),
        }
    }

    #[test]
    fn a_valid_quota_keeps_its_values() {
        let q = quota("login-ip", 5, 60);
        assert_eq!(q.name(), "login-ip");
        assert_eq!(q.limit(), 5);
        assert_eq!(q.window(), Duration::from_secs(60));
        assert!(Quota::new("a.b_c:D-9", 1, Quota::MAX_WINDOW).is_ok());
    }

    #[test]
    fn invalid_quotas_are_refused_with_the_reason() {
        let minute = Duration::from_secs(60);
        assert_eq!(Quota::new("x", 0, minute), Err(QuotaError::ZeroLimit));
        assert_eq!(
            Quota::new("x", 1, Duration::from_millis(999)),
            Err(QuotaError::WindowTooShort)
        );
        assert_eq!(
            Quota::new("x", 1, Duration::ZERO),
            Err(QuotaError::WindowTooShort)
        );
        assert_eq!(
            Quota::new("x", 1, Duration::from_millis(1500)),
            Err(QuotaError::WindowNotWholeSeconds)
        );
        assert_eq!(
            Quota::new("x", 1, Quota::MAX_WINDOW + Duration::from_secs(1)),
            Err(QuotaError::WindowTooLong)
        );
        for name in ["", "has space", "quo\"te", "back\\slash", "é", "a,b", "a;b"] {
            assert_eq!(
                Quota::new(name, 1, minute),
                Err(QuotaError::InvalidName),
                "{name:?}"
            );
        }
        let long: &'static str = "n".repeat(Quota::MAX_NAME_LEN + 1).leak();
        assert_eq!(Quota::new(long, 1, minute), Err(QuotaError::InvalidName));
        let longest: &'static str = "n".repeat(Quota::MAX_NAME_LEN).leak();
        assert!(Quota::new(longest, 1, minute).is_ok());
    }

    #[test]
    fn the_policy_header_names_quota_and_window() {
        assert_eq!(
            Decision::policy_header(&quota("login-ip", 5, 60)),
            "\"login-ip\";q=5;w=60"
        );
        assert_eq!(
            Decision::policy_header(&quota("daily", 1000, 86_400)),
            "\"daily\";q=1000;w=86400"
        );
    }

    #[test]
    fn an_allowed_decision_reports_remaining_and_the_time_to_full_reset() {
        let q = quota("api-user", 100, 60);
        let decision = Decision {
            allowed: true,
            limit: 100,
            remaining: 42,
            reset_after: Duration::from_millis(34_200),
            retry_after: None,
        };
        assert_eq!(decision.ratelimit_header(&q), "\"api-user\";r=42;t=35");
        assert_eq!(decision.retry_after_seconds(), None);

        let full = Decision {
            remaining: 100,
            reset_after: Duration::ZERO,
            ..decision
        };
        assert_eq!(full.ratelimit_header(&q), "\"api-user\";r=100;t=0");
    }

    #[test]
    fn a_denied_decision_reports_the_wait_until_the_next_request() {
        let q = quota("login-ip", 5, 60);
        let decision = denied(Duration::from_millis(11_001), Duration::from_secs(59));
        assert_eq!(decision.retry_after_seconds(), Some(12));
        // `t` matches Retry-After, so Retry-After never points earlier than `t`.
        assert_eq!(decision.ratelimit_header(&q), "\"login-ip\";r=0;t=12");
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero_while_denied() {
        let reset = Duration::from_secs(60);
        let cases = [
            (Duration::from_secs(12), 12),
            (Duration::new(12, 1), 13),
            (Duration::from_millis(12_999), 13),
            (Duration::from_nanos(1), 1),
            (Duration::ZERO, 1),
        ];
        for (wait, seconds) in cases {
            assert_eq!(
                denied(wait, reset).retry_after_seconds(),
                Some(seconds),
                "{wait:?}"
            );
        }
        let without_wait = Decision {
            retry_after: None,
            ..denied(Duration::ZERO, Duration::from_millis(2_500))
        };
        assert_eq!(without_wait.retry_after_seconds(), Some(3));
        let nothing_at_all = Decision {
            reset_after: Duration::ZERO,
            ..without_wait
        };
        assert_eq!(nothing_at_all.retry_after_seconds(), Some(1));
    }

    /// A limiter that is always down: enough to prove the trait is object-safe and usable.
    struct Down;

    impl RateLimiter for Down {
        fn check<'a>(
            &'a self,
            _quota: &'a Quota,
            _key: &'a str,
            _now: OffsetDateTime,
        ) -> BoxFuture<'a, Result<Decision, RateLimitError>> {
            Box::pin(std::future::ready(Err(RateLimitError::unavailable(
                "connection refused",
            ))))
        }

        fn refund<'a>(
            &'a self,
            _quota: &'a Quota,
            _key: &'a str,
            _now: OffsetDateTime,
        ) -> BoxFuture<'a, Result<(), RateLimitError>> {
            Box::pin(std::future::ready(Err(RateLimitError::unavailable(
                "connection refused",
            ))))
        }
    }

    #[test]
    fn the_limiter_is_object_safe() {
        let limiter: Arc<dyn RateLimiter> = Arc::new(Down);
        let q = quota("login-ip", 5, 60);
        // Building the future is enough; the type checks are the point.
        let _future = limiter.check(&q, "192.0.2.1", OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn unavailable_keeps_its_cause_but_does_not_print_it() {
        let error = RateLimitError::unavailable("connection refused");
        assert_eq!(error.to_string(), "the rate-limit store is unavailable");
        assert_eq!(error.source().unwrap().to_string(), "connection refused");
    }

    proptest! {
        #[test]
        fn retry_after_seconds_is_the_wait_rounded_up(nanos in 0u64..=400 * 86_400 * 1_000_000_000) {
            let wait = Duration::from_nanos(nanos);
            let seconds = denied(wait, Duration::ZERO).retry_after_seconds().unwrap();
            prop_assert!(seconds >= 1);
            prop_assert!(Duration::from_secs(seconds) >= wait);
            prop_assert!(Duration::from_secs(seconds) < wait + Duration::from_secs(1));
        }

        #[test]
        fn the_ratelimit_header_is_well_formed(
            remaining in 0u32..=1000,
            reset_ms in 0u64..=86_400_000,
            allowed: bool,
        ) {
            let q = quota("p", 1000, 86_400);
            let decision = Decision {
                allowed,
                limit: 1000,
                remaining,
                reset_after: Duration::from_millis(reset_ms),
                retry_after: (!allowed).then(|| Duration::from_millis(reset_ms.max(1))),
            };
            let header = decision.ratelimit_header(&q);
            let t = header.rsplit("t=").next().unwrap().parse::<u64>().unwrap();
            let prefix = format!("\"p\";r={remaining};t=");
            prop_assert!(header.starts_with(&prefix));
            match decision.retry_after_seconds() {
                Some(retry) => prop_assert_eq!(retry, t),
                None => prop_assert_eq!(t, reset_ms.div_ceil(1000)),
            }
        }
    }
}
