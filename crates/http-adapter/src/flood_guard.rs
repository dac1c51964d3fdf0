//! The coarse per-IP flood guard in front of the API: actix-governor, keyed by the client IP the
//! edge resolved (so it honours trusted proxies), answering 429 problem+json.
//!
//! actix-governor is GPL-3.0-or-later; this module only exists with the default-on `governor`
//! feature (see the README for what that means for the binary).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use actix_governor::governor::NotUntil;
use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::{Governor, GovernorConfig, GovernorConfigBuilder, KeyExtractor};
use actix_web::dev::ServiceRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpResponse, HttpResponseBuilder, ResponseError};

use crate::edge::ClientIp;
use crate::error::ApiError;
use crate::rate_limit::FloodGuardConfig;

/// The flood guard: one shared limiter, cloned into every worker.
#[derive(Clone)]
pub struct FloodGuard {
    config: GovernorConfig<ClientIpKey, NoOpMiddleware<QuantaInstant>>,
}

impl FloodGuard {
    /// A guard allowing `per_second` requests per client IP on average, in bursts of `burst`.
    /// `None` when the numbers cannot make a quota (zero).
    pub fn new(config: &FloodGuardConfig) -> Option<Self> {
        let period = Duration::from_secs(1).checked_div(config.per_second.max(1))?;
        let config = GovernorConfigBuilder::default()
            .period(period)
            .burst_size(config.burst)
            .key_extractor(ClientIpKey)
            .finish()?;
        Some(Self { config })
    }

    /// The middleware to wrap around the guarded scope.
    pub fn middleware(&self) -> Governor<ClientIpKey, NoOpMiddleware<QuantaInstant>> {
        Governor::new(&self.config)
    }

    /// Forgets clients whose quota has fully replenished, so the keyed state does not grow with
    /// every address ever seen. Call it periodically.
    pub fn prune(&self) {
        let limiter = self.config.limiter();
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }

    /// How many client addresses the guard currently remembers.
    pub fn tracked_clients(&self) -> usize {
        self.config.limiter().len()
    }
}

/// Keys requests by the edge's resolved client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIpKey;

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;
    type KeyExtractionError = ApiError;

    fn extract(&self, req: &ServiceRequest) -> Result<Self::Key, Self::KeyExtractionError> {
        // The edge always runs first; without it every request shares one bucket, which fails
        // safe (limits too much) rather than open.
        Ok(req
            .extensions()
            .get::<ClientIp>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ip| ip.0))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _response: HttpResponseBuilder,
    ) -> HttpResponse {
        let wait = negative.wait_time_from(DefaultClock::default().now());
        rate_limited(retry_after_seconds(wait)).error_response()
    }
}

/// Whole seconds to wait, rounded up and never 0 while still limited.
fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

fn rate_limited(retry_after: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests; slow down.",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
    }

    #[test]
    fn a_zero_rate_makes_no_guard() {
        assert!(
            FloodGuard::new(&FloodGuardConfig {
                per_second: 10,
                burst: 0
            })
            .is_none()
        );
        assert!(
            FloodGuard::new(&FloodGuardConfig {
                per_second: 10,
                burst: 20
            })
            .is_some()
        );
    }
}
