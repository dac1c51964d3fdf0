//! The one place where the errors of the crates below become HTTP problems.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use keel_auth::AccountError;
use keel_domain::ValidationErrors;

use crate::error::{ApiError, FieldError};

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
            AccountError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "The server is busy; try again shortly.",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            AccountError::Unavailable(cause) => ApiError::dependency_unavailable(cause),
        }
    }
}
