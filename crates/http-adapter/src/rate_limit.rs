//! Rate-limit settings of the HTTP edge.

use serde::{Deserialize, Serialize};

/// All rate limits of the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Every limit on or off; benchmarks may turn them off.
    pub enabled: bool,
    /// The per-IP flood guard in front of the API.
    pub flood_guard: FloodGuardConfig,
    /// Keel's own quotas on the account endpoints.
    pub quotas: crate::quota::QuotaConfig,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flood_guard: FloodGuardConfig::default(),
            quotas: crate::quota::QuotaConfig::default(),
        }
    }
}

/// The coarse per-IP flood guard: generous enough for a busy browser behind one NAT, tight
/// enough that one address cannot monopolise the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodGuardConfig {
    /// Sustained requests per second per client IP.
    pub per_second: u32,
    /// Requests a client IP may make in one burst.
    pub burst: u32,
}

impl Default for FloodGuardConfig {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 100,
        }
    }
}
