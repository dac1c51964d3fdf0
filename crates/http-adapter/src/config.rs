//! The settings of the HTTP edge, as a plain serde struct (only apps/server knows figment).

use serde::{Deserialize, Serialize};

use crate::client_ip::IpNetwork;
use crate::security_headers::HstsConfig;

/// The settings of the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The largest request body accepted, in bytes (default 1 MiB).
    pub body_limit_bytes: usize,
    /// How long a client may take to send the request body, in seconds.
    pub body_read_timeout_seconds: u64,
    /// `x-forwarded-for` is believed only from these proxies (CIDR or single addresses).
    pub trusted_proxies: Vec<IpNetwork>,
    /// `Strict-Transport-Security`.
    pub hsts: HstsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            body_read_timeout_seconds: 15,
            trusted_proxies: Vec::new(),
            hsts: HstsConfig::default(),
        }
    }
}

/// Which browser origins may call the API (CORS), pass the CSRF origin check and open sockets
/// with the session cookie.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins, like `https://app.example`.
    pub allowed_origins: Vec<String>,
}
