//! The `Authenticated` extractor (feature `actix`): who made the request, by bearer token or by
//! session cookie, checked against the session registry every time.
//!
//! Credentials, in this order:
//!
//! 1. `Authorization: Bearer <access token>`, verified by [`Verifier::verify_bearer`]. A
//!    request that presents a Bearer token is decided by it alone: a bad one is refused even if
//!    a valid session cookie comes along (a stale token must not silently turn into cookie
//!    authentication). `Authorization` headers of other schemes (`Basic` from a staging proxy)
//!    are not Keel's and are ignored.
//! 2. Otherwise the session cookie (keel-session's `actix` module; the app must wrap its routes
//!    in [`session_middleware`](keel_session::actix::session_middleware)), whose session id is
//!    checked by [`Verifier::verify_session`]. A cookie-authenticated request with an unsafe
//!    method (anything but GET, HEAD, OPTIONS and TRACE) must also pass the CSRF check first:
//!    - `Sec-Fetch-Site: same-origin` passes (browsers set it; pages cannot);
//!    - else, if an `Origin` header is present, it decides: it must be in
//!      [`CsrfPolicy::allowed_origins`] (`Origin: null` never passes);
//!    - else the `x-csrf-token` header must equal the cookie's CSRF secret (double submit,
//!      compared in constant time).
//!
//! The [`Auth`] service comes from the app data (`web::Data<Auth>`, or a plain `Auth`); a service
//! that only verifies Keel's tokens registers a [`Verifier`] instead (`web::Data<Verifier>` or
//! `Verifier`; an `Auth` wins when both are there). The [`CsrfPolicy`] comes from the app data
//! too (`web::Data<CsrfPolicy>` or `CsrfPolicy`; without one, no origin is allowed and only
//! same-origin requests and the double-submit token pass). Neither `Auth` nor `Verifier` is a
//! wiring bug, answered as [`AuthError::Unavailable`] (fail closed).
//!
//! On success the [`UserId`] and the [`Principal`] are put into the request's extensions (the
//! access log reads the `UserId`; a second extraction in the same request reuses the
//! `Principal` instead of asking the registry again).
//!
//! Failures are [`AuthRejection`]s inside an `actix_web::Error`. Its [`ResponseError`] answer is
//! deliberately bare (status and `www-authenticate`, no body): the edge finds the rejection with
//! `error.as_error::<AuthRejection>()` and renders its own problem+json.
//!
//! ```
//! use actix_web::{App, HttpResponse, web};
//! use keel_auth::actix::{Authenticated, CsrfPolicy};
//!
//! async fn me(who: Authenticated) -> HttpResponse {
//!     HttpResponse::Ok().body(who.user_id.to_string())
//! }
//!
//! fn routes(auth: keel_auth::Auth, cookie: keel_session::actix::SessionCookieMiddleware) {
//!     let _app = App::new()
//!         .app_data(web::Data::new(auth))
//!         .app_data(web::Data::new(CsrfPolicy::new(["https://app.example.com"])))
//!         .wrap(cookie)
//!         .route("/me", web::get().to(me));
//! }
//! ```

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, HeaderMap, ORIGIN, WWW_AUTHENTICATE};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError, web};
use keel_domain::UserId;
use keel_session::actix::{CsrfSecret, read_session_cookie};
use serde::Deserialize;

use crate::service::{Auth, AuthError, Principal};
use crate::verifier::Verifier;

/// The header that carries the double-submit CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The `www-authenticate` challenge of a request without credentials (RFC 6750 §3: no error
/// code when no credentials were sent).
const CHALLENGE: &str = "Bearer";
/// The `www-authenticate` challenge of a request with bad or dead credentials.
const CHALLENGE_INVALID: &str = "Bearer error=\"invalid_token\"";

/// The authenticated caller of a request; extract it in a handler to require authentication.
///
/// Dereferences to the [`Principal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub Principal);

impl Authenticated {
    /// The principal inside.
    pub fn into_inner(self) -> Principal {
        self.0
    }
}

impl Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// Where cookie-authenticated unsafe requests may come from. A plain serde struct.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsrfPolicy {
    /// The origins (`scheme://host[:port]`, as browsers send them in `Origin`) whose pages may
    /// send cookie-authenticated unsafe requests. Compared case-insensitively, a trailing `/`
    /// ignored. `null` and `*` never match anything.
    pub allowed_origins: Vec<String>,
}

impl CsrfPolicy {
    /// A policy allowing these origins.
    pub fn new<I, S>(allowed_origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            allowed_origins: allowed_origins.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether the `Origin` header value `origin` is allowed.
    pub fn allows_origin(&self, origin: &str) -> bool {
        let origin = normalize_origin(origin);
        if origin.is_empty() || origin == "null" || origin == "*" {
            return false;
        }
        self.allowed_origins
            .iter()
            .any(|allowed| normalize_origin(allowed).eq_ignore_ascii_case(origin))
    }
}

fn normalize_origin(origin: &str) -> &str {
    let origin = origin.trim();
    origin.strip_suffix('/').unwrap_or(origin)
}

/// Why a request was not authenticated. HTTP-free in spirit: the edge maps it to its own
/// problem+json (find it with `actix_web::Error::as_error::<AuthRejection>()`); the
/// [`ResponseError`] impl only sets the status and `www-authenticate`.
#[derive(Debug, thiserror::Error)]
pub enum AuthRejection {
    /// The credentials were presented and refused, or the registry could not answer.
    #[error(transparent)]
    Auth(AuthError),
    /// A cookie-authenticated unsafe request failed the CSRF check.
    #[error("CSRF check failed")]
    CsrfFailed,
    /// Neither a Bearer token nor a session cookie was presented.
    #[error("no credentials")]
    Missing,
}

impl AuthRejection {
    /// The HTTP status: 401 for missing or refused credentials, 403 for CSRF, 404 for
    /// [`AuthError::NotFound`], 503 when a dependency cannot answer or hashing is saturated.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing => StatusCode::UNAUTHORIZED,
            Self::CsrfFailed => StatusCode::FORBIDDEN,
            Self::Auth(error) => match error {
                AuthError::InvalidCredentials
                | AuthError::InvalidToken
                | AuthError::TokenExpired
                | AuthError::TokenReused
                | AuthError::Unauthorized => StatusCode::UNAUTHORIZED,
                AuthError::NotFound => StatusCode::NOT_FOUND,
                AuthError::AccountDisabled => StatusCode::FORBIDDEN,
                AuthError::Busy | AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// The `www-authenticate` challenge that goes with a 401 (RFC 6750 §3), `None` otherwise.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::Missing | Self::Auth(AuthError::InvalidCredentials) => Some(CHALLENGE),
            _ if self.status() == StatusCode::UNAUTHORIZED => Some(CHALLENGE_INVALID),
            _ => None,
        }
    }
}

impl From<AuthError> for AuthRejection {
    fn from(error: AuthError) -> Self {
        Self::Auth(error)
    }
}

impl ResponseError for AuthRejection {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if let Some(challenge) = self.www_authenticate() {
            response.insert_header((WWW_AUTHENTICATE, challenge));
        }
        response.finish()
    }
}

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            authenticate_request(&req)
                .await
                .map(Authenticated)
                .map_err(actix_web::Error::from)
        })
    }
}

/// Authenticates `req` as the [`Authenticated`] extractor does (see the
/// [module documentation](self)), for middleware and handlers that want the rejection itself.
pub async fn authenticate_request(req: &HttpRequest) -> Result<Principal, AuthRejection> {
    if let Some(principal) = req.extensions().get::<Principal>() {
        return Ok(principal.clone());
    }
    let verifier = verifier_of(req)?;
    let principal = match bearer_token(req.headers())? {
        Some(token) => verifier.verify_bearer(token).await?,
        None => {
            let Some((session_id, csrf)) = read_session_cookie(req) else {
                return Err(AuthRejection::Missing);
            };
            // Before the registry is asked: a forged cross-site request costs no round trip.
            if !csrf_passes(req, &csrf) {
                return Err(AuthRejection::CsrfFailed);
            }
            verifier.verify_session(session_id).await?
        }
    };
    let mut extensions = req.extensions_mut();
    extensions.insert::<UserId>(principal.user_id);
    extensions.insert(principal.clone());
    Ok(principal)
}

/// The verifier of the app's `Auth`, else the app's own `Verifier`.
fn verifier_of(req: &HttpRequest) -> Result<Verifier, AuthRejection> {
    if let Some(auth) = req.app_data::<web::Data<Auth>>() {
        return Ok(auth.verifier().clone());
    }
    if let Some(auth) = req.app_data::<Auth>() {
        return Ok(auth.verifier().clone());
    }
    if let Some(verifier) = req.app_data::<web::Data<Verifier>>() {
        return Ok(verifier.get_ref().clone());
    }
    if let Some(verifier) = req.app_data::<Verifier>() {
        return Ok(verifier.clone());
    }
    tracing::error!(
        "neither keel_auth::Auth nor keel_auth::Verifier is registered as app data; refusing to \
         authenticate"
    );
    Err(AuthRejection::Auth(AuthError::Unavailable(
        "neither keel_auth::Auth nor keel_auth::Verifier is registered as app data".into(),
    )))
}

/// The Bearer token of the request: `None` without an `Authorization` header or with one of
/// another scheme; refused when the header is a Bearer one without a usable token, or repeated.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthRejection> {
    let invalid = || AuthRejection::Auth(AuthError::InvalidToken);
    let mut values = headers.get_all(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    let value = value.to_str().map_err(|_| invalid())?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    // RFC 9110 §11.1: the scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(invalid());
    }
    Ok(Some(token))
}

/// The CSRF check of a cookie-authenticated request (see the module documentation).
fn csrf_passes(req: &HttpRequest, csrf: &CsrfSecret) -> bool {
    if is_safe(req.method()) {
        return true;
    }
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"same-origin")
    {
        return true;
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let Some(policy) = csrf_policy(req) else {
            return false;
        };
        return origin
            .to_str()
            .is_ok_and(|origin| policy.allows_origin(origin));
    }
    headers
        .get(CSRF_HEADER)
        .and_then(|token| token.to_str().ok())
        .is_some_and(|token| csrf.verify(token))
}

fn csrf_policy(req: &HttpRequest) -> Option<&CsrfPolicy> {
    req.app_data::<web::Data<CsrfPolicy>>()
        .map(|policy| policy.get_ref())
        .or_else(|| req.app_data::<CsrfPolicy>())
}

/// RFC 9110 §9.2.1: the methods that must not change anything.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

#[cfg(test)]
mod tests;
