//! The API profile of helmet: headers that tell browsers to treat every response as inert data.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// `Strict-Transport-Security` settings. Off by default: it must only be sent by a deployment
/// that serves HTTPS, or browsers will refuse to reach a plain-HTTP development server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HstsConfig {
    /// Send the header at all.
    pub enabled: bool,
    /// `max-age`, in seconds (default two years, the preload list's minimum is one).
    pub max_age_seconds: u64,
    /// Add `includeSubDomains`.
    pub include_subdomains: bool,
}

impl Default for HstsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_age_seconds: 63_072_000,
            include_subdomains: true,
        }
    }
}

/// The precomputed header set, built once from configuration.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl SecurityHeaders {
    /// The fixed set, plus HSTS when enabled.
    pub fn new(hsts: &HstsConfig) -> Self {
        let mut headers = vec![
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                header::X_DNS_PREFETCH_CONTROL,
                HeaderValue::from_static("off"),
            ),
        ];
        if hsts.enabled {
            let mut value = format!("max-age={}", hsts.max_age_seconds);
            if hsts.include_subdomains {
                value.push_str("; includeSubDomains");
            }
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.push((header::STRICT_TRANSPORT_SECURITY, value));
            }
        }
        Self { headers }
    }

    /// Sets every header on a response, replacing any value a handler chose, except a
    /// `content-security-policy` of the handler's own: the development pages need one that
    /// lets their script run, and a handler that sets one has thought about it.
    pub fn apply(&self, target: &mut HeaderMap) {
        for (name, value) in &self.headers {
            if name == header::CONTENT_SECURITY_POLICY && target.contains_key(name) {
                continue;
            }
            target.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helmet_api_profile_is_applied() {
        let mut headers = HeaderMap::new();
        SecurityHeaders::new(&HstsConfig::default()).apply(&mut headers);
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(headers.get("x-frame-options").unwrap(), "DENY");
        assert_eq!(
            headers.get("cross-origin-opener-policy").unwrap(),
            "same-origin"
        );
        assert!(headers.get("strict-transport-security").is_none());
    }

    #[test]
    fn hsts_is_sent_only_when_enabled() {
        let mut headers = HeaderMap::new();
        let hsts = HstsConfig {
            enabled: true,
            max_age_seconds: 600,
            include_subdomains: false,
        };
        SecurityHeaders::new(&hsts).apply(&mut headers);
        assert_eq!(
            headers.get("strict-transport-security").unwrap(),
            "max-age=600"
        );
    }
}
