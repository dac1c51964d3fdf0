//! Keel's own quota limiter at the edge: named quotas per client IP and per login email, checked
//! before any expensive work, answered with `RateLimit-Policy` / `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers-10) and a 429 problem with `retry-after` when exceeded.
//!
//! The limiter behind it is a port: in memory now, shared through Redis across instances later.
//! When that backend cannot answer, an in-process limiter takes over: never unlimited, never a
//! 500.

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponseBuilder;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use keel_domain::{Decision, Quota, RateLimiter};
use keel_storage::InMemoryRateLimiter;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ApiError;

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One quota's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window, in whole seconds.
    pub window_seconds: u64,
}

/// The quotas of the account endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Login attempts per client IP.
    pub login_ip: QuotaSpec,
    /// Failed logins per account from devices that have not logged in to it before, whatever
    /// the IP: past it, the account is locked against unknown devices (429) while its known
    /// devices keep their own allowance (`login_device`). Attempts are counted on arrival and
    /// successes given back, so only failures spend it, and guesses from elsewhere never lock
    /// the owner's device out.
    pub login_email: QuotaSpec,
    /// Failed logins per account from one device that has logged in to it before (its device
    /// cookie, or `x-keel-device`).
    pub login_device: QuotaSpec,
    /// Registrations per client IP.
    pub register_ip: QuotaSpec,
    /// Token refreshes per client IP.
    pub refresh_ip: QuotaSpec,
    /// Socket.IO connects per client IP, over every instance (each instance also refuses more
    /// than `realtime.connections_per_ip_per_second` new connections per IP by itself).
    pub socket_connect_ip: QuotaSpec,
    /// Requests per client IP to the account lifecycle's routes (verify-email and its resend,
    /// password-reset and its confirmation, password and e-mail change).
    pub account_ip: QuotaSpec,
    /// Mails asked for per address (a reset, a verification resent, an e-mail change's
    /// confirmation), counted whether or not the address has an account, so the answer tells
    /// nothing about it.
    pub mail_address: QuotaSpec,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            login_ip: QuotaSpec {
                limit: 20,
                window_seconds: 60,
            },
            login_email: QuotaSpec {
                limit: 10,
                window_seconds: 300,
            },
            login_device: QuotaSpec {
                limit: 10,
                window_seconds: 300,
            },
            account_ip: QuotaSpec {
                limit: 30,
                window_seconds: 600,
            },
            mail_address: QuotaSpec {
                limit: 5,
                window_seconds: 3600,
            },
            register_ip: QuotaSpec {
                limit: 10,
                window_seconds: 3600,
            },
            refresh_ip: QuotaSpec {
                limit: 60,
                window_seconds: 60,
            },
            socket_connect_ip: QuotaSpec {
                limit: 300,
                window_seconds: 60,
            },
        }
    }
}

/// Why a quota configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("rate_limit.quotas.{name}: {reason}")]
pub struct InvalidQuota {
    name: &'static str,
    reason: keel_domain::QuotaError,
}

impl InvalidQuota {
    /// The configuration key at fault, such as `rate_limit.quotas.login_ip`.
    pub fn key(&self) -> String {
        format!("rate_limit.quotas.{}", self.name.replace('-', "_"))
    }

    /// What is wrong with it.
    pub fn reason(&self) -> String {
        self.reason.to_string()
    }
}

impl QuotaConfig {
    /// Checks every quota as [`Quotas::new`] would build it, so a bad one is refused when the
    /// configuration loads.
    ///
    /// # Errors
    /// The first quota that cannot be used.
    pub fn validate(&self) -> Result<(), InvalidQuota> {
        for (name, spec) in [
            ("login-ip", self.login_ip),
            ("login-email", self.login_email),
            ("login-device", self.login_device),
            ("register-ip", self.register_ip),
            ("refresh-ip", self.refresh_ip),
            ("socket-connect-ip", self.socket_connect_ip),
            ("account-ip", self.account_ip),
            ("mail-address", self.mail_address),
        ] {
            Quota::new(name, spec.limit, Duration::from_secs(spec.window_seconds))
                .map_err(|reason| InvalidQuota { name, reason })?;
        }
        Ok(())
    }
}

/// The named quotas and the limiter that enforces them.
#[derive(Clone)]
pub struct Quotas {
    enabled: bool,
    limiter: Arc<dyn RateLimiter>,
    fallback: Arc<InMemoryRateLimiter>,
    pub(crate) login_ip: Quota,
    pub(crate) login_email: Quota,
    login_device: Quota,
    pub(crate) register_ip: Quota,
    pub(crate) refresh_ip: Quota,
    socket_connect_ip: Quota,
    pub(crate) account_ip: Quota,
    pub(crate) mail_address: Quota,
    lock_notice: Quota,
}

impl Quotas {
    /// Quotas enforced by `limiter` (when `enabled`).
    pub fn new(
        config: &QuotaConfig,
        enabled: bool,
        limiter: Arc<dyn RateLimiter>,
    ) -> Result<Self, InvalidQuota> {
        let quota = |name: &'static str, spec: QuotaSpec| {
            Quota::new(name, spec.limit, Duration::from_secs(spec.window_seconds))
                .map_err(|reason| InvalidQuota { name, reason })
        };
        Ok(Self {
            enabled,
            limiter,
            fallback: Arc::new(InMemoryRateLimiter::new()),
            login_ip: quota("login-ip", config.login_ip)?,
            login_email: quota("login-email", config.login_email)?,
            login_device: quota("login-device", config.login_device)?,
            register_ip: quota("register-ip", config.register_ip)?,
            refresh_ip: quota("refresh-ip", config.refresh_ip)?,
            socket_connect_ip: quota("socket-connect-ip", config.socket_connect_ip)?,
            account_ip: quota("account-ip", config.account_ip)?,
            mail_address: quota("mail-address", config.mail_address)?,
            // Internal, not configurable: one lockout notice per account and hour.
            lock_notice: quota(
                "lock-notice",
                QuotaSpec {
                    limit: 1,
                    window_seconds: 3600,
                },
            )?,
        })
    }

    /// Counts one Socket.IO connect from `client_ip` against the shared quota. `Err` holds the
    /// seconds until the client may try again.
    ///
    /// # Errors
    /// The quota is exhausted.
    pub async fn socket_connect(&self, client_ip: &str) -> Result<(), u64> {
        if !self.enabled {
            return Ok(());
        }
        let decision = self
            .decide(
                &self.socket_connect_ip,
                client_ip,
                OffsetDateTime::now_utc(),
            )
            .await
            .map_err(|_| 1_u64)?;
        if decision.allowed {
            Ok(())
        } else {
            Err(decision.retry_after_seconds().unwrap_or(1))
        }
    }

    /// One decision from the shared limiter, or from the in-process one while the shared one
    /// cannot answer.
    async fn decide(
        &self,
        quota: &Quota,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Decision, keel_domain::RateLimitError> {
        match self.limiter.check(quota, key, now).await {
            Ok(decision) => Ok(decision),
            Err(error) => {
                tracing::warn!(quota = quota.name(), error = %error, "shared rate limiter unavailable; limiting in-process");
                self.fallback.check(quota, key, now).await
            }
        }
    }

    /// Admits one login attempt for `account` (the canonical address) from `ip`, by `device`
    /// when the client presented a known device of that account. The attempt is counted at
    /// once against the IP's quota and against the account's failure budget for this kind of
    /// device (`login-email` for unknown devices, `login-device` for a known one), so that
    /// parallel guesses cannot all pass one check; [`login_succeeded`] gives the failure
    /// budget back, so only failures spend it.
    ///
    /// [`login_succeeded`]: Self::login_succeeded
    pub(crate) async fn admit_login(
        &self,
        ip: &str,
        account: &str,
        device: Option<&str>,
    ) -> Result<LoginBudget, LoginRefused> {
        let (failures, key) = match device {
            Some(device) => (&self.login_device, format!("{device}:{account}")),
            None => (&self.login_email, account.to_owned()),
        };
        match self
            .check_each(&[(&self.login_ip, ip), (failures, &key)])
            .await
        {
            Ok(headers) => Ok(LoginBudget {
                headers,
                failures: *failures,
                key,
            }),
            Err((error, denied)) => Err(LoginRefused {
                error,
                // The account's own budget ran out, for devices it does not know.
                locked: device.is_none() && denied.contains(&1),
            }),
        }
    }

    /// Whether a notice that `account` is locked should go out now: at most one an hour, so
    /// an attacker's guesses cannot flood the owner's inbox.
    pub(crate) async fn first_lock_notice(&self, account: &str) -> bool {
        let now = OffsetDateTime::now_utc();
        matches!(self.decide(&self.lock_notice, account, now).await, Ok(decision) if decision.allowed)
    }

    /// Gives back the failure budget that [`admit_login`](Self::admit_login) counted: the
    /// login succeeded.
    pub(crate) async fn login_succeeded(&self, budget: &LoginBudget) {
        if !self.enabled {
            return;
        }
        let now = OffsetDateTime::now_utc();
        let refunded = match self
            .limiter
            .refund(&budget.failures, &budget.key, now)
            .await
        {
            Ok(()) => Ok(()),
            // Counted in-process while the shared limiter was down, so refunded there too.
            Err(_) => {
                self.fallback
                    .refund(&budget.failures, &budget.key, now)
                    .await
            }
        };
        if let Err(error) = refunded {
            tracing::warn!(quota = budget.failures.name(), error = %error, "a successful login was not refunded");
        }
    }

    /// Checks every `(quota, key)` pair; all must allow. The outcome carries the headers to put
    /// on the response either way.
    pub(crate) async fn check(&self, checks: &[(&Quota, &str)]) -> Result<QuotaHeaders, ApiError> {
        self.check_each(checks).await.map_err(|(error, _)| error)
    }

    /// [`check`](Self::check), saying on refusal which of `checks` (by index) refused.
    async fn check_each(
        &self,
        checks: &[(&Quota, &str)],
    ) -> Result<QuotaHeaders, (ApiError, Vec<usize>)> {
        if !self.enabled {
            return Ok(QuotaHeaders::default());
        }
        let now = OffsetDateTime::now_utc();
        let mut headers = QuotaHeaders::default();
        let mut denied: Option<u64> = None;
        let mut refused = Vec::new();
        for (index, (quota, key)) in checks.iter().enumerate() {
            let decision = self
                .decide(quota, key, now)
                .await
                .map_err(|error| (ApiError::internal(error), Vec::new()))?;
            headers.push(quota, &decision);
            if !decision.allowed {
                let wait = decision.retry_after_seconds().unwrap_or(1);
                denied = Some(denied.map_or(wait, |w| w.max(wait)));
                refused.push(index);
            }
        }
        match denied {
            None => Ok(headers),
            Some(retry_after) => {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too many attempts; try again later.",
                )
                .with_header(RETRY_AFTER, HeaderValue::from(retry_after));
                for (name, value) in headers.pairs() {
                    error = error.with_header(name, value);
                }
                Err((error, refused))
            }
        }
    }
}

/// Why [`Quotas::admit_login`] refused: the 429 to answer, and whether it is the account's
/// lock against unknown devices (which tells its owner, once an hour).
#[derive(Debug)]
pub(crate) struct LoginRefused {
    pub(crate) error: ApiError,
    pub(crate) locked: bool,
}

/// What [`Quotas::admit_login`] admitted: the headers for the answer, and the failure budget
/// that a success gives back.
#[derive(Debug)]
pub(crate) struct LoginBudget {
    pub(crate) headers: QuotaHeaders,
    failures: Quota,
    key: String,
}

/// `RateLimit-Policy` and `RateLimit` for the quotas a request was checked against.
#[derive(Debug, Default)]
pub(crate) struct QuotaHeaders {
    policy: Vec<String>,
    state: Vec<String>,
}

impl QuotaHeaders {
    fn push(&mut self, quota: &Quota, decision: &Decision) {
        self.policy.push(Decision::policy_header(quota));
        self.state.push(decision.ratelimit_header(quota));
    }

    fn pairs(&self) -> Vec<(HeaderName, HeaderValue)> {
        if self.policy.is_empty() {
            return Vec::new();
        }
        // Quota names are restricted to header-safe characters, so these cannot fail.
        [
            (RATELIMIT_POLICY, self.policy.join(", ")),
            (RATELIMIT, self.state.join(", ")),
        ]
        .into_iter()
        .filter_map(|(name, value)| HeaderValue::from_str(&value).ok().map(|v| (name, v)))
        .collect()
    }

    /// Adds the headers to a successful response.
    pub(crate) fn apply(&self, response: &mut HttpResponseBuilder) {
        for pair in self.pairs() {
            response.insert_header(pair);
        }
    }

    /// Passes `result` on, adding the headers to its error: a refused login, a reused refresh
    /// token or a taken address tell the client its budget as a success does.
    pub(crate) fn on_error<T, E: Into<ApiError>>(
        &self,
        result: Result<T, E>,
    ) -> Result<T, ApiError> {
        result.map_err(|error| {
            self.pairs()
                .into_iter()
                .fold(error.into(), |error, (name, value)| {
                    error.with_header(name, value)
                })
        })
    }
}
