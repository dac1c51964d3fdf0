//! Extractor settings that make actix-web's own extractor failures speak the contract: 400 for
//! malformed bodies, 413 over the limit, 415 for a wrong content type, 408 for a body that does
//! not arrive in time, always as problem+json.

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};

use crate::body_timeout;
use crate::error::ApiError;

/// The JSON extractor: `limit` bytes at most, `application/json` (or `+json`) required.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .error_handler(|error, _req: &HttpRequest| json_error(error).into())
}

/// Raw body extractors (`Bytes`, `String`) with the same limit.
pub fn payload_config(limit: usize) -> web::PayloadConfig {
    web::PayloadConfig::default().limit(limit)
}

/// Path parameters that do not parse (a malformed id) are a 404: no such resource exists.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_: PathError, _req: &HttpRequest| ApiError::not_found().into())
}

/// A malformed query string is a 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _req: &HttpRequest| {
        ApiError::invalid_request(format!("The query string is invalid: {error}")).into()
    })
}

fn json_error(error: JsonPayloadError) -> ApiError {
    match error {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => too_large(limit),
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "The request body must be JSON, sent with `content-type: application/json`.",
        ),
        JsonPayloadError::Deserialize(error) => {
            let detail = if error.is_data() {
                // Names the field and the expected type, which is what the client needs to fix.
                format!("The request body does not have the expected shape: {error}")
            } else {
                format!("The request body is not valid JSON: {error}")
            };
            ApiError::invalid_request(detail)
        }
        JsonPayloadError::Payload(error) => payload_error(error),
        other => ApiError::invalid_request("The request body could not be read.").with_cause(other),
    }
}

fn payload_error(error: PayloadError) -> ApiError {
    if body_timeout::is_timeout(&error) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "The request body did not arrive in time.",
        )
        .with_header(
            actix_web::http::header::CONNECTION,
            actix_web::http::header::HeaderValue::from_static("close"),
        );
    }
    match error {
        PayloadError::Overflow => ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE),
        other => ApiError::invalid_request("The request body could not be read.").with_cause(other),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The request body is larger than the limit of {limit} bytes."),
    )
}
