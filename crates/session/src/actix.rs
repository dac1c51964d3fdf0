//! The session cookie (feature `actix`): an encrypted, HttpOnly cookie made by actix-session's
//! [`SessionMiddleware`] over its [`CookieSessionStore`], carrying nothing but the session id and
//! a CSRF secret.
//!
//! The cookie is only a pointer: the registry ([`SessionStore`](crate::SessionStore)) stays the
//! single source of truth, and every request that presents the cookie must be checked against it
//! (keel-auth's `Authenticated` extractor does). actix-session's own stores are not used, because
//! their state would compete with the registry (a logged-out session could come back).
//!
//! - Name: `__Host-keel` with `Secure` when [`SessionCookieConfig::secure`] is on (production,
//!   HTTPS), `keel_session` without `Secure` otherwise (development over plain http). The
//!   `__Host-` prefix makes browsers refuse the cookie unless it is `Secure`, has `Path=/` and no
//!   `Domain`, so no sibling subdomain can plant or shadow it.
//! - Attributes: `HttpOnly; SameSite=Lax; Path=/`, no `Domain`, no `Max-Age` (a browser-session
//!   cookie: the registry decides how long the session lives, and the cookie never outlives a
//!   closed browser by design of its own).
//! - Content: encrypted and authenticated (AES-256-GCM) with a 64-byte [`Key`], so clients can
//!   neither read nor forge it.
//!
//! ```
//! use actix_web::{App, HttpRequest, HttpResponse, web};
//! use keel_domain::SessionId;
//! use keel_session::actix::{
//!     Key, SessionCookieConfig, clear_session_cookie, read_session_cookie, session_middleware,
//!     write_session_cookie,
//! };
//!
//! async fn login(req: HttpRequest) -> HttpResponse {
//!     // After the registry created the session:
//!     match write_session_cookie(&req, SessionId::generate()) {
//!         // Hand the CSRF secret to the client for the `x-csrf-token` header.
//!         Ok(csrf) => HttpResponse::Ok().body(csrf.expose_secret().to_owned()),
//!         Err(_) => HttpResponse::InternalServerError().finish(),
//!     }
//! }
//!
//! async fn logout(req: HttpRequest) -> HttpResponse {
//!     if let Some((session_id, _csrf)) = read_session_cookie(&req) {
//!         // Revoke `session_id` in the registry here.
//!         let _ = session_id;
//!     }
//!     clear_session_cookie(&req);
//!     HttpResponse::NoContent().finish()
//! }
//!
//! # fn main() -> Result<(), keel_session::actix::SessionCookieConfigError> {
//! let config = SessionCookieConfig { secure: true, name: None };
//! assert_eq!(config.cookie_name(), "__Host-keel");
//! // In production the key comes from configuration, the same on every instance.
//! let key = Key::generate();
//! let middleware = session_middleware(&config, key)?;
//! let _app = App::new()
//!     .wrap(middleware)
//!     .route("/login", web::post().to(login))
//!     .route("/logout", web::post().to(logout));
//! # Ok(())
//! # }
//! ```

use std::fmt;

use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::storage::CookieSessionStore;
use actix_session::{SessionExt, SessionInsertError, SessionMiddleware};
use actix_web::cookie::SameSite;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_domain::SessionId;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

/// actix-session, re-exported so callers name the same types.
pub use actix_session;
/// The cookie encryption key (64 bytes), re-exported from actix-web.
pub use actix_web::cookie::Key;

/// The cookie's name in production (with `Secure`).
pub const SECURE_COOKIE_NAME: &str = "__Host-keel";
/// The cookie's name in development over plain http (without `Secure`).
pub const INSECURE_COOKIE_NAME: &str = "keel_session";

/// The bytes of randomness in a CSRF secret.
const CSRF_SECRET_BYTES: usize = 32;
/// The base64url length of a CSRF secret: what a well-formed cookie holds.
const CSRF_SECRET_CHARS: usize = 43;

/// The entries of the cookie's state. Short, since they travel with every request.
const SESSION_ID_ENTRY: &str = "sid";
const CSRF_ENTRY: &str = "csrf";

/// The middleware type [`session_middleware`] builds.
pub type SessionCookieMiddleware = SessionMiddleware<CookieSessionStore>;

/// How the session cookie is set. A plain serde struct; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionCookieConfig {
    /// Whether the cookie is `Secure` (sent over HTTPS only). On by default; turn it off only for
    /// development over plain http, where a `Secure` cookie would never come back.
    pub secure: bool,
    /// A name other than the default (`__Host-keel` when `secure`, `keel_session` otherwise).
    pub name: Option<String>,
}

impl Default for SessionCookieConfig {
    fn default() -> Self {
        Self {
            secure: true,
            name: None,
        }
    }
}

impl SessionCookieConfig {
    /// The cookie's name: the configured one, else `__Host-keel` when `secure` and
    /// `keel_session` otherwise.
    pub fn cookie_name(&self) -> &str {
        match &self.name {
            Some(name) => name,
            None if self.secure => SECURE_COOKIE_NAME,
            None => INSECURE_COOKIE_NAME,
        }
    }

    /// Checks that browsers will accept the cookie: a non-empty RFC 6265 token as name, and
    /// `Secure` for a `__Host-` or `__Secure-` name (browsers drop such cookies otherwise, and
    /// nobody could log in).
    pub fn validate(&self) -> Result<(), SessionCookieConfigError> {
        let name = self.cookie_name();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(SessionCookieConfigError::InvalidName(name.to_owned()));
        }
        let prefixed =
            starts_with_ignore_case(name, "__Host-") || starts_with_ignore_case(name, "__Secure-");
        if prefixed && !self.secure {
            return Err(SessionCookieConfigError::PrefixNeedsSecure(name.to_owned()));
        }
        Ok(())
    }
}

/// A [`SessionCookieConfig`] or key that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionCookieConfigError {
    /// The name is empty or has characters a cookie name cannot have.
    #[error("`{0}` is not a valid cookie name")]
    InvalidName(String),
    /// A `__Host-` or `__Secure-` cookie without `Secure`: browsers would refuse it.
    #[error("the cookie name `{0}` requires `secure = true`")]
    PrefixNeedsSecure(String),
    /// The encryption key is shorter than 64 bytes.
    #[error("the session cookie key needs at least 64 bytes, this one has {0}")]
    KeyTooShort(usize),
}

/// A cookie [`Key`] from at least 64 bytes of secret (the first 64 are used). Unlike
/// `Key::from`, this never panics on a short key.
pub fn cookie_key(secret: &[u8]) -> Result<Key, SessionCookieConfigError> {
    Key::try_from(secret).map_err(|_| SessionCookieConfigError::KeyTooShort(secret.len()))
}

/// The middleware that reads and writes the session cookie, set up as described in the
/// [module documentation](self). Every instance must get the same `key`, or cookies made by one
/// are unreadable by another.
pub fn session_middleware(
    config: &SessionCookieConfig,
    key: Key,
) -> Result<SessionCookieMiddleware, SessionCookieConfigError> {
    config.validate()?;
    Ok(
        SessionMiddleware::builder(CookieSessionStore::default(), key)
            .cookie_name(config.cookie_name().to_owned())
            .cookie_secure(config.secure)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_path("/".to_owned())
            .cookie_domain(None)
            .cookie_content_security(CookieContentSecurity::Private)
            .session_lifecycle(BrowserSession::default())
            .build(),
    )
}

/// The CSRF secret of a cookie session: 32 random bytes, base64url without padding. The client
/// echoes it in the `x-csrf-token` header (double submit); compare with
/// [`verify`](Self::verify), never with `==`.
///
/// `Debug` does not show it.
#[derive(Clone)]
pub struct CsrfSecret(SecretString);

impl CsrfSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut bytes = [0_u8; CSRF_SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The secret's text, to hand to the client that owns the session.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether `presented` is this secret, compared in constant time (the time does not depend
    /// on how many leading characters match).
    pub fn verify(&self, presented: &str) -> bool {
        let expected = self.0.expose_secret().as_bytes();
        !expected.is_empty() && bool::from(expected.ct_eq(presented.as_bytes()))
    }

    /// The secret read back from a cookie, if it has the shape Keel writes.
    fn from_cookie(text: String) -> Option<Self> {
        let well_formed = text.len() == CSRF_SECRET_CHARS
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(SecretString::from(text)))
    }
}

impl fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfSecret([REDACTED])")
    }
}

/// The session cookie could not be written.
#[derive(Debug, thiserror::Error)]
#[error("the session cookie could not be written")]
pub struct SessionCookieError(#[source] SessionInsertError);

/// Sets the session cookie for session `id` on the response to `req`, with a fresh CSRF secret,
/// which is returned so the caller can hand it to the client. Anything the cookie held before is
/// dropped. Call it after the registry created the session (at login).
///
/// `req` is anything actix-session reads a session from (`HttpRequest`, `ServiceRequest`); the
/// request must pass through [`session_middleware`], or nothing is written.
pub fn write_session_cookie<R: SessionExt + ?Sized>(
    req: &R,
    id: SessionId,
) -> Result<CsrfSecret, SessionCookieError> {
    let session = req.get_session();
    let csrf = CsrfSecret::generate();
    session.clear();
    session
        .insert(SESSION_ID_ENTRY, id)
        .map_err(SessionCookieError)?;
    session
        .insert(CSRF_ENTRY, csrf.expose_secret())
        .map_err(SessionCookieError)?;
    // A new cookie value for a new login, whatever the store: never keep a pre-login session
    // (session fixation).
    session.renew();
    Ok(csrf)
}

/// The session id and CSRF secret of the request's session cookie, if it carries a well-formed
/// one. The id still has to be checked against the registry: the cookie proves nothing about
/// whether the session is alive.
pub fn read_session_cookie<R: SessionExt + ?Sized>(req: &R) -> Option<(SessionId, CsrfSecret)> {
    let session = req.get_session();
    let id = session.get::<SessionId>(SESSION_ID_ENTRY).ok()??;
    let csrf = session.get::<String>(CSRF_ENTRY).ok()??;
    Some((id, CsrfSecret::from_cookie(csrf)?))
}

/// Clears the session cookie: the response to `req` expires it in the browser (when the request
/// carried one). Call it at logout, after revoking the session in the registry.
pub fn clear_session_cookie<R: SessionExt + ?Sized>(req: &R) {
    req.get_session().purge();
}

/// RFC 6265 §4.1.1 `cookie-name` is an RFC 2616 token.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// Browsers match the `__Host-` and `__Secure-` prefixes case-insensitively (RFC 6265bis).
fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use actix_web::cookie::{Cookie, CookieJar};
    use actix_web::http::StatusCode;
    use actix_web::http::header::{COOKIE, SET_COOKIE};
    use actix_web::test as atest;
    use actix_web::{App, HttpRequest, HttpResponse, web};

    use super::*;

    const FIXED_ID: &str = "7d7f3c1e-2b9a-4d61-9a1e-5b0c2f3e4d5a";

    fn key() -> Key {
        Key::from(&[7_u8; 64])
    }

    async fn login(req: HttpRequest) -> HttpResponse {
        let id: SessionId = FIXED_ID.parse().unwrap();
        let csrf = write_session_cookie(&req, id).unwrap();
        HttpResponse::Ok().body(csrf.expose_secret().to_owned())
    }

    async fn read(req: HttpRequest) -> HttpResponse {
        match read_session_cookie(&req) {
            Some((id, csrf)) => HttpResponse::Ok().body(format!("{id} {}", csrf.expose_secret())),
            None => HttpResponse::NotFound().finish(),
        }
    }

    async fn logout(req: HttpRequest) -> HttpResponse {
        clear_session_cookie(&req);
        HttpResponse::NoContent().finish()
    }

    macro_rules! app {
        ($config:expr) => {
            atest::init_service(
                App::new()
                    .wrap(session_middleware(&$config, key()).unwrap())
                    .route("/login", web::post().to(login))
                    .route("/read", web::get().to(read))
                    .route("/logout", web::post().to(logout)),
            )
            .await
        };
    }

    fn set_cookies(response: &actix_web::dev::ServiceResponse) -> Vec<Cookie<'static>> {
        response
            .headers()
            .get_all(SET_COOKIE)
            .map(|value| Cookie::parse_encoded(value.to_str().unwrap().to_owned()).unwrap())
            .collect()
    }

    fn set_cookie_text(response: &actix_web::dev::ServiceResponse) -> Vec<String> {
        response
            .headers()
            .get_all(SET_COOKIE)
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    #[actix_web::test]
    async fn the_production_cookie_is_host_prefixed_secure_http_only_and_lax() {
        let app = app!(SessionCookieConfig::default());
        let response =
            atest::call_service(&app, atest::TestRequest::post().uri("/login").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let cookies = set_cookies(&response);
        assert_eq!(cookies.len(), 1);
        let cookie = &cookies[0];
        assert_eq!(cookie.name(), "__Host-keel");
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), None);
        assert_eq!(cookie.max_age(), None);
        assert_eq!(cookie.expires(), None);
        let text = set_cookie_text(&response).remove(0);
        assert!(!text.contains(FIXED_ID), "the cookie is encrypted: {text}");
    }

    #[actix_web::test]
    async fn the_development_cookie_is_keel_session_without_secure() {
        let app = app!(SessionCookieConfig {
            secure: false,
            name: None
        });
        let response =
            atest::call_service(&app, atest::TestRequest::post().uri("/login").to_request()).await;
        let cookie = &set_cookies(&response)[0];
        assert_eq!(cookie.name(), "keel_session");
        assert_ne!(cookie.secure(), Some(true));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert!(!set_cookie_text(&response)[0].contains("Secure"));
    }

    #[actix_web::test]
    async fn the_cookie_carries_the_session_id_and_the_csrf_secret_and_nothing_else() {
        let app = app!(SessionCookieConfig::default());
        let response =
            atest::call_service(&app, atest::TestRequest::post().uri("/login").to_request()).await;
        let cookie = set_cookies(&response).remove(0);
        let csrf = String::from_utf8(atest::read_body(response).await.to_vec()).unwrap();
        assert_eq!(csrf.len(), CSRF_SECRET_CHARS);

        let mut jar = CookieJar::new();
        jar.add_original(cookie.clone());
        let plain = jar.private(&key()).get("__Host-keel").unwrap();
        let state: std::collections::HashMap<String, String> =
            serde_json::from_str(plain.value()).unwrap();
        let entries: BTreeSet<&str> = state.keys().map(String::as_str).collect();
        assert_eq!(entries, BTreeSet::from(["csrf", "sid"]));
        assert_eq!(state["sid"], format!("\"{FIXED_ID}\""));
        assert_eq!(state["csrf"], format!("\"{csrf}\""));

        // And it reads back.
        let request = atest::TestRequest::get()
            .uri("/read")
            .cookie(cookie)
            .to_request();
        let body = atest::call_and_read_body(&app, request).await;
        assert_eq!(body, format!("{FIXED_ID} {csrf}"));
    }

    #[actix_web::test]
    async fn every_login_gets_a_fresh_csrf_secret() {
        let app = app!(SessionCookieConfig::default());
        let a =
            atest::call_and_read_body(&app, atest::TestRequest::post().uri("/login").to_request())
                .await;
        let b =
            atest::call_and_read_body(&app, atest::TestRequest::post().uri("/login").to_request())
                .await;
        assert_ne!(a, b);
    }

    #[actix_web::test]
    async fn clearing_expires_the_cookie() {
        let app = app!(SessionCookieConfig::default());
        let response =
            atest::call_service(&app, atest::TestRequest::post().uri("/login").to_request()).await;
        let cookie = set_cookies(&response).remove(0);

        let request = atest::TestRequest::post()
            .uri("/logout")
            .cookie(cookie)
            .to_request();
        let response = atest::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let removal = set_cookies(&response).remove(0);
        assert_eq!(removal.name(), "__Host-keel");
        assert_eq!(removal.value(), "");
        assert_eq!(
            removal.max_age(),
            Some(actix_web::cookie::time::Duration::ZERO)
        );
        // A `__Host-` removal cookie must itself be Secure with Path=/, or browsers ignore it.
        assert_eq!(removal.secure(), Some(true));
        assert_eq!(removal.path(), Some("/"));

        // What the browser sends after that: an empty cookie, which reads as no session.
        let request = atest::TestRequest::get()
            .uri("/read")
            .cookie(removal)
            .to_request();
        let response = atest::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[actix_web::test]
    async fn no_forged_or_foreign_cookie_reads_as_a_session() {
        let app = app!(SessionCookieConfig::default());
        let response =
            atest::call_service(&app, atest::TestRequest::get().uri("/read").to_request()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        // Plain text where the encrypted state belongs.
        let forged = format!(r#"{{"sid":"\"{FIXED_ID}\"","csrf":"\"x\""}}"#);
        let request = atest::TestRequest::get()
            .uri("/read")
            .insert_header((COOKIE, format!("__Host-keel={forged}")))
            .to_request();
        assert_eq!(
            atest::call_service(&app, request).await.status(),
            StatusCode::NOT_FOUND
        );

        // A cookie encrypted with another key.
        let other = atest::init_service(
            App::new()
                .wrap(session_middleware(&SessionCookieConfig::default(), Key::generate()).unwrap())
                .route("/login", web::post().to(login)),
        )
        .await;
        let response = atest::call_service(
            &other,
            atest::TestRequest::post().uri("/login").to_request(),
        )
        .await;
        let cookie = set_cookies(&response).remove(0);
        let request = atest::TestRequest::get()
            .uri("/read")
            .cookie(cookie)
            .to_request();
        assert_eq!(
            atest::call_service(&app, request).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[actix_web::test]
    async fn a_custom_name_is_used() {
        let app = app!(SessionCookieConfig {
            secure: true,
            name: Some("app_sid".into())
        });
        let response =
            atest::call_service(&app, atest::TestRequest::post().uri("/login").to_request()).await;
        assert_eq!(set_cookies(&response)[0].name(), "app_sid");
    }

    #[test]
    fn configurations_browsers_would_refuse_are_rejected() {
        let insecure_host = SessionCookieConfig {
            secure: false,
            name: Some("__host-keel".into()),
        };
        assert_eq!(
            insecure_host.validate(),
            Err(SessionCookieConfigError::PrefixNeedsSecure(
                "__host-keel".into()
            ))
        );
        for name in ["", "a b", "a;b", "a=b"] {
            let config = SessionCookieConfig {
                secure: true,
                name: Some(name.into()),
            };
            assert!(
                matches!(
                    config.validate(),
                    Err(SessionCookieConfigError::InvalidName(_))
                ),
                "{name:?}"
            );
        }
        assert!(SessionCookieConfig::default().validate().is_ok());
        assert!(
            SessionCookieConfig {
                secure: false,
                name: None
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn keys_shorter_than_64_bytes_are_an_error_not_a_panic() {
        assert!(matches!(
            cookie_key(&[1; 63]),
            Err(SessionCookieConfigError::KeyTooShort(63))
        ));
        assert!(cookie_key(&[1; 64]).is_ok());
    }

    #[test]
    fn csrf_secrets_compare_exactly_and_stay_out_of_debug() {
        let secret = CsrfSecret::generate();
        let text = secret.expose_secret().to_owned();
        assert_eq!(text.len(), CSRF_SECRET_CHARS);
        assert!(secret.verify(&text));
        assert!(!secret.verify(""));
        assert!(!secret.verify(&text[..42]));
        assert!(!secret.verify(&format!("{text}x")));
        assert!(!secret.verify(CsrfSecret::generate().expose_secret()));
        assert_eq!(format!("{secret:?}"), "CsrfSecret([REDACTED])");
        assert!(CsrfSecret::from_cookie("short".into()).is_none());
        assert!(CsrfSecret::from_cookie(text).is_some());
    }

    #[test]
    fn the_config_reads_from_serde_with_secure_on_by_default() {
        let config: SessionCookieConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, SessionCookieConfig::default());
        assert!(config.secure);
        let config: SessionCookieConfig =
            serde_json::from_str(r#"{"secure": false, "name": "sid"}"#).unwrap();
        assert_eq!(config.cookie_name(), "sid");
        assert!(serde_json::from_str::<SessionCookieConfig>(r#"{"secur": false}"#).is_err());
    }
}
