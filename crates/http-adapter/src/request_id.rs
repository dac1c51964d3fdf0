//! Request ids: every response carries `x-request-id`, echoed from the request when it is a sane
//! value and generated otherwise, and every log line and problem body of the request names it.

use std::fmt;
use std::future::Future;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use uuid::Uuid;

/// The header that carries the id, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id accepted from a client; a longer one is replaced, not truncated.
const MAX_LEN: usize = 128;

/// The id of one request: visible ASCII, at most 128 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    /// The client's id when it is 1 to 128 visible ASCII characters, else a fresh UUID.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(X_REQUEST_ID)
            .filter(|value| is_sane(value.as_bytes()))
            .map(|value| Self(value.clone()))
            .unwrap_or_else(Self::generate)
    }

    /// A fresh id.
    pub fn generate() -> Self {
        let mut buffer = Uuid::encode_buffer();
        // A v4 UUID from the thread's userspace generator: `Uuid::new_v4` asks the kernel for
        // every id, a system call on every request.
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let text = uuid.hyphenated().encode_lower(&mut buffer);
        Self(HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored, so this cannot fail.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// Runs `future` with this id as the current one, so that problem bodies rendered anywhere
    /// inside it carry the id.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

fn is_sane(bytes: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

impl Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        headers
    }

    #[test]
    fn a_sane_client_id_is_echoed() {
        assert_eq!(
            RequestId::from_headers(&with(b"abc-123_XYZ")).as_str(),
            "abc-123_XYZ"
        );
        let longest = "a".repeat(128);
        assert_eq!(
            RequestId::from_headers(&with(longest.as_bytes())).as_str(),
            longest
        );
    }

    #[test]
    fn an_insane_client_id_is_replaced() {
        for bad in [
            &b"has space"[..],
            b"tab\there",
            "é".as_bytes(),
            &[b'a'; 129],
            b"",
        ] {
            let id = RequestId::from_headers(&with(bad));
            assert_ne!(id.header_value().as_bytes(), bad);
            assert_eq!(id.as_str().len(), 36, "a fresh UUID replaces {bad:?}");
        }
    }

    #[test]
    fn a_missing_id_is_generated_fresh_each_time() {
        let a = RequestId::from_headers(&HeaderMap::new());
        let b = RequestId::from_headers(&HeaderMap::new());
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn the_current_id_is_visible_inside_its_scope_only() {
        assert!(current().is_none());
        let id = RequestId::generate();
        let seen = id.clone().scope(async { current() }).await;
        assert_eq!(seen, Some(id));
        assert!(current().is_none());
    }
}
