//! `ApiError`: the one error type of the HTTP edge, rendered as RFC 9457 problem details.
//!
//! Every crate below the edge has its own HTTP-free error enum; this module is the one place
//! where they become a status, a stable `code` and a message meant for the client. The cause
//! chain stays on the server: it is logged once, here, when the response is rendered, and never
//! reaches the body.

use std::borrow::Cow;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::request_id;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the problem types are documented; `type` is this plus `#<code>`.
const PROBLEM_TYPE_BASE: &str = "/docs/api/problems#";

/// One field that failed validation, as listed in a 422 problem's `errors`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    /// The request field, in the request's own (camelCase) spelling.
    pub field: Cow<'static, str>,
    /// A stable snake_case code, such as `too_short`.
    pub code: Cow<'static, str>,
    /// A sentence for a human.
    pub message: String,
}

/// An error on its way to the client: status, stable code, external message, and the internal
/// cause that is logged but never sent.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Cow<'static, str>,
    errors: Vec<FieldError>,
    headers: Vec<(HeaderName, HeaderValue)>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// A problem with this status, code and client-facing detail.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
            cause: None,
        }
    }

    /// 400 `invalid_request`: the request could not be read (malformed JSON, wrong types).
    pub fn invalid_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// 422 `validation_failed` with the fields that failed.
    pub fn validation_failed(errors: Vec<FieldError>) -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "One or more fields are invalid.",
        );
        error.errors = errors;
        error
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is nothing at this address.",
        )
    }

    /// 405 `method_not_allowed`, with the `allow` header listing what the resource accepts.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This resource does not accept that method.",
        )
        .with_header(header::ALLOW, HeaderValue::from_static(allow))
    }

    /// 503 `dependency_unavailable`: a store the request needs cannot answer right now.
    pub fn dependency_unavailable(
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_unavailable",
            "A service this request depends on is unavailable; try again shortly.",
        )
        .with_cause(cause)
    }

    /// 500 `internal_error`. The cause is logged; the client learns nothing about it.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The server failed to handle this request.",
        )
        .with_cause(cause)
    }

    /// The generic problem for a status that no Keel code produced (an error response made by
    /// actix or by a middleware), so that every error body has the same shape.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, detail) = match status {
            StatusCode::BAD_REQUEST => ("invalid_request", "The request could not be read."),
            StatusCode::UNAUTHORIZED => ("unauthorized", "Authentication is required."),
            StatusCode::FORBIDDEN => ("forbidden", "This request is not allowed."),
            StatusCode::NOT_FOUND => ("not_found", "There is nothing at this address."),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "This resource does not accept that method.",
            ),
            StatusCode::REQUEST_TIMEOUT => (
                "request_timeout",
                "The request body did not arrive in time.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "The request body is larger than allowed.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "The request body has an unsupported content type.",
            ),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "Too many requests; slow down."),
            StatusCode::SERVICE_UNAVAILABLE => (
                "service_unavailable",
                "The service is unavailable; try again shortly.",
            ),
            status if status.is_server_error() => (
                "internal_error",
                "The server failed to handle this request.",
            ),
            _ => ("invalid_request", "The request could not be handled."),
        };
        Self::new(status, code, detail)
    }

    /// Adds a response header (`retry-after`, `allow`, `www-authenticate`, ...).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Attaches the internal cause, for the log only.
    pub fn with_cause(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// The stable machine code, such as `not_found`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Renders the problem. The cause chain, when there is one, rides on the response (an
    /// [`ErrorCause`] extension) to the request's one access line, so the two are never
    /// separate lines to be joined by hand.
    fn render(&self) -> HttpResponse {
        let body = ProblemBody {
            type_: ProblemType(self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id: request_id::current(),
            errors: &self.errors,
        };
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        response.extensions_mut().insert(ErrorCause {
            code: self.code,
            cause: self
                .cause
                .as_ref()
                .map(|cause| CauseChain(cause.as_ref()).to_string()),
        });
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        match serde_json::to_vec(&body) {
            Ok(bytes) => response.body(bytes),
            // The body is made of strings and numbers; serialising it cannot fail, but if it
            // ever did the client still gets the right status.
            Err(_) => response.finish(),
        }
    }
}

/// What an error response tells the access log: its `code`, and the internal cause chain,
/// which is logged there and never sent.
#[derive(Debug, Clone)]
pub(crate) struct ErrorCause {
    pub(crate) code: &'static str,
    pub(crate) cause: Option<String>,
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("detail", &self.detail)
            .field("cause", &self.cause.as_deref().map(CauseChain))
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.render()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_: ProblemType,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<request_id::RequestId>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

struct ProblemType(&'static str);

impl Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{PROBLEM_TYPE_BASE}{}", self.0))
    }
}

/// Displays an error and all its sources, `outer: inner: innermost`.
struct CauseChain<'a>(&'a (dyn std::error::Error + Send + Sync));

impl fmt::Display for CauseChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for CauseChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.error_response();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (
            status,
            content_type,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[actix_web::test]
    async fn a_problem_has_the_rfc_9457_shape_and_a_stable_code() {
        let (status, content_type, body) = body_of(ApiError::not_found()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type.as_deref(), Some(PROBLEM_JSON));
        assert_eq!(body["status"], 404);
        assert_eq!(body["code"], "not_found");
        assert_eq!(body["title"], "Not Found");
        assert_eq!(body["type"], "/docs/api/problems#not_found");
        assert!(body.get("errors").is_none());
    }

    #[actix_web::test]
    async fn the_internal_cause_never_reaches_the_client() {
        let cause = std::io::Error::other("connection refused by 10.0.0.7:6379 password=hunter2");
        let (status, _, body) = body_of(ApiError::internal(cause)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let text = body.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("10.0.0.7"), "{text}");
    }

    #[actix_web::test]
    async fn validation_problems_list_every_field() {
        let error = ApiError::validation_failed(vec![FieldError {
            field: "password".into(),
            code: "too_short".into(),
            message: "at least 8 characters".into(),
        }]);
        let (status, _, body) = body_of(error).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["errors"][0]["field"], "password");
        assert_eq!(body["errors"][0]["code"], "too_short");
    }

    #[actix_web::test]
    async fn method_not_allowed_says_what_is_allowed() {
        let response = ApiError::method_not_allowed("GET").error_response();
        assert_eq!(response.headers().get(header::ALLOW).unwrap(), "GET");
    }
}
