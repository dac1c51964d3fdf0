//! CORS with an allowlist: configured origins may call the API with credentials; a preflight from
//! any other origin is refused and no response ever names a foreign origin.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};

use crate::error::ApiError;

/// Methods a browser may use cross-origin.
const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// Request headers a browser may send cross-origin (beyond the CORS-safelisted ones).
const ALLOWED_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "x-request-id",
    "x-csrf-token",
    "if-none-match",
];
/// Response headers a script may read.
const EXPOSED_HEADERS: &str =
    "x-request-id, retry-after, ratelimit, ratelimit-policy, www-authenticate";
/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The origins allowed to call the API from a browser, compared exactly after normalisation
/// (lowercase scheme and host; `https://app.example` and `https://APP.example` are one origin).
#[derive(Debug, Clone, Default)]
pub struct Cors {
    allowed: Vec<String>,
}

impl Cors {
    /// Allows exactly these origins (`scheme://host[:port]`).
    pub fn new(allowed_origins: &[String]) -> Self {
        Self {
            allowed: allowed_origins
                .iter()
                .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `origin` (an `Origin` header value) is allowed. `null` never is.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.allowed
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }

    /// The answer to a CORS preflight, or `None` when the request is not one.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<HttpResponse> {
        if method != Method::OPTIONS {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        if !self.allows(origin) {
            return Some(actix_web::ResponseError::error_response(&ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "This origin may not call the API.",
            )));
        }
        let mut response = HttpResponse::NoContent();
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
            .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
            .insert_header((header::VARY, "Origin"));
        if let Some(requested) = allowed_request_headers(headers) {
            response.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, requested));
        }
        Some(response.finish())
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        let Some(origin) = origin else { return };
        // The answer differs by Origin whatever it is, so caches must key on it.
        response.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.allows(origin) {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            response.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            response.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
    }
}

/// The requested headers that we allow, in the browser's own spelling; `None` if it asked for
/// none. Unknown headers are left out, which makes the browser fail the request itself.
fn allowed_request_headers(headers: &HeaderMap) -> Option<HeaderValue> {
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)?
        .to_str()
        .ok()?;
    let allowed = requested
        .split(',')
        .map(str::trim)
        .filter(|name| ALLOWED_HEADERS.iter().any(|a| a.eq_ignore_ascii_case(name)))
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&allowed)
        .ok()
        .filter(|_| !allowed.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors::new(&["https://app.example/".to_owned()])
    }

    fn preflight_from(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("Content-Type, X-Evil"),
        );
        headers
    }

    #[test]
    fn an_allowed_origin_gets_a_credentialed_preflight_answer() {
        let response = cors()
            .preflight(&Method::OPTIONS, &preflight_from("https://APP.example"))
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let headers = response.headers();
        assert_eq!(
            headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://APP.example"
        );
        assert_eq!(
            headers
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .unwrap(),
            "true"
        );
        assert_eq!(
            headers.get(header::ACCESS_CONTROL_ALLOW_HEADERS).unwrap(),
            "Content-Type"
        );
    }

    #[test]
    fn a_foreign_origin_gets_no_allow_origin() {
        for origin in [
            "https://evil.example",
            "null",
            "https://app.example.evil.example",
        ] {
            let response = cors()
                .preflight(&Method::OPTIONS, &preflight_from(origin))
                .unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(
                response
                    .headers()
                    .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                    .is_none()
            );
        }
    }

    #[test]
    fn plain_options_is_not_a_preflight() {
        let mut headers = preflight_from("https://app.example");
        headers.remove(header::ACCESS_CONTROL_REQUEST_METHOD);
        assert!(cors().preflight(&Method::OPTIONS, &headers).is_none());
        assert!(
            cors()
                .preflight(&Method::GET, &preflight_from("https://app.example"))
                .is_none()
        );
    }

    #[test]
    fn actual_responses_name_only_allowed_origins() {
        let mut allowed = HeaderMap::new();
        cors().decorate(
            Some(&HeaderValue::from_static("https://app.example")),
            &mut allowed,
        );
        assert_eq!(
            allowed.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://app.example"
        );
        assert_eq!(allowed.get(header::VARY).unwrap(), "Origin");

        let mut foreign = HeaderMap::new();
        cors().decorate(
            Some(&HeaderValue::from_static("https://evil.example")),
            &mut foreign,
        );
        assert!(foreign.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(foreign.get(header::VARY).unwrap(), "Origin");
    }
}
