//! A deadline for reading the request body. actix-web bounds the time to receive the request
//! head but not the body, so a client could hold a worker's connection open by trickling a body
//! one byte at a time. Past the deadline the body stream fails with `TimedOut`, which the
//! extractors turn into 408.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// Wraps `payload` so that reading it fails once `timeout` has passed, measured from now.
pub fn with_deadline(payload: Payload, timeout: Duration) -> Payload {
    Payload::Stream {
        payload: Box::pin(DeadlinePayload {
            inner: payload,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            expired: false,
        }),
    }
}

/// Whether the request announces a body at all; bodiless requests need no deadline.
pub fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|length| length.trim() != "0")
}

struct DeadlinePayload {
    inner: Payload,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let error = io::Error::new(io::ErrorKind::TimedOut, "request body read timed out");
            return Poll::Ready(Some(Err(PayloadError::Io(error))));
        }
        Poll::Pending
    }
}

/// Whether a payload error is this module's deadline.
pub fn is_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(io) if io.kind() == io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_finishes_fails_at_the_deadline() {
        let (_sender, payload) = actix_http::h1::Payload::create(false);
        let mut payload = with_deadline(Payload::from(payload), Duration::from_secs(5));
        let started = Instant::now();
        let error = payload.next().await.unwrap().unwrap_err();
        assert!(is_timeout(&error));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(payload.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_untouched() {
        let (mut sender, payload) = actix_http::h1::Payload::create(false);
        sender.feed_data(Bytes::from_static(b"hello"));
        sender.feed_eof();
        let mut payload = with_deadline(Payload::from(payload), Duration::from_secs(5));
        assert_eq!(
            payload.next().await.unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(payload.next().await.is_none());
    }

    #[test]
    fn only_requests_that_announce_a_body_get_a_deadline() {
        let mut headers = HeaderMap::new();
        assert!(!has_body(&headers));
        headers.insert(
            header::CONTENT_LENGTH,
            header::HeaderValue::from_static("0"),
        );
        assert!(!has_body(&headers));
        headers.insert(
            header::CONTENT_LENGTH,
            header::HeaderValue::from_static("12"),
        );
        assert!(has_body(&headers));
    }
}
