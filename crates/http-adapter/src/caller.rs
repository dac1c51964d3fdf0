//! `Caller`: the authenticated principal of a request, with keel-auth's rejections turned into
//! this crate's problems (401 with `www-authenticate`, 403 `csrf_failed`, 503).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use keel_auth::Principal;
use keel_auth::actix::{AuthRejection, authenticate_request};

use crate::error::ApiError;

/// The user and session behind a request: a Bearer access token, or the session cookie with a
/// CSRF check for unsafe methods.
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            authenticate_request(&req)
                .await
                .map(Caller)
                .map_err(ApiError::from)
        })
    }
}

impl From<AuthRejection> for ApiError {
    fn from(rejection: AuthRejection) -> Self {
        match rejection {
            AuthRejection::Auth(error) => error.into(),
            AuthRejection::CsrfFailed => ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "csrf_failed",
                "A cookie-authenticated request must come from an allowed origin or carry the x-csrf-token header.",
            ),
            AuthRejection::Missing => crate::convert::unauthorized(
                "unauthorized",
                "Authentication is required.",
                "Bearer",
            ),
        }
    }
}
