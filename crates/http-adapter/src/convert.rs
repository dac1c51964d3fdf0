//! The one place where the errors of the crates below become HTTP problems.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use keel_auth::{AccountError, AuthError};
use keel_domain::ValidationErrors;

use crate::error::{ApiError, FieldError};

/// The challenge of a 401 for a token that was presented and refused (RFC 6750 §3).
const INVALID_TOKEN_CHALLENGE: &str = "Bearer error=\"invalid_token\"";

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        ApiError::validation_failed(
            errors
                .into_iter()
                .map(|error| FieldError {
                    field: error.field.into(),
                    code: error.code.into(),
                    message: error.message,
                })
                .collect(),
        )
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Invalid(errors) => errors.into(),
            AccountError::EmailTaken => ApiError::new(
                StatusCode::CONFLICT,
                "email_taken",
                "An account with this email exists already.",
            ),
            AccountError::Busy => busy(),
            AccountError::Gone => unauthorized(
                "unauthorized",
                "The session has ended; log in again.",
                INVALID_TOKEN_CHALLENGE,
            ),
            // A one-time token is no credential of the request: 400, not 401, so a client
            // does not take it for an expired session.
            AccountError::InvalidToken => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_token",
                "The link is not valid: unknown, used or expired. Ask for a new one.",
            ),
            AccountError::InvalidCredentials => {
                unauthorized("invalid_credentials", "The password is wrong.", "Bearer")
            }
            AccountError::Forbidden => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "This needs a role the caller does not have.",
            ),
            AccountError::NotFound => ApiError::not_found(),
            AccountError::Unavailable(cause) => ApiError::dependency_unavailable(cause),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::InvalidCredentials => unauthorized(
                "invalid_credentials",
                "The email or the password is wrong.",
                "Bearer",
            ),
            AuthError::InvalidToken => unauthorized(
                "invalid_token",
                "The token is not valid.",
                INVALID_TOKEN_CHALLENGE,
            ),
            AuthError::TokenExpired => unauthorized(
                "token_expired",
                "The access token has expired; refresh it.",
                INVALID_TOKEN_CHALLENGE,
            ),
            AuthError::TokenReused => unauthorized(
                "token_reused",
                "This refresh token was already used; the session has been revoked. Log in again.",
                INVALID_TOKEN_CHALLENGE,
            ),
            AuthError::Unauthorized => unauthorized(
                "unauthorized",
                "The session has ended; log in again.",
                INVALID_TOKEN_CHALLENGE,
            ),
            AuthError::NotFound => ApiError::not_found(),
            AuthError::AccountDisabled => ApiError::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "This account is disabled.",
            ),
            AuthError::Busy => busy(),
            AuthError::Unavailable(cause) => ApiError::dependency_unavailable(cause),
        }
    }
}

/// A 401 with its `www-authenticate` challenge.
pub(crate) fn unauthorized(
    code: &'static str,
    detail: &'static str,
    challenge: &'static str,
) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, detail).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    )
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "The server is busy; try again shortly.",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}
