//! Tests of the extractor through a real actix-web service: the session cookie middleware, an
//! `Auth` over the memory stores, and handlers that require authentication.

use std::sync::Arc;

use actix_web::cookie::Cookie;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderValue, SET_COOKIE};
use actix_web::test as atest;
use actix_web::{App, HttpResponse};
use keel_domain::{ManualClock, SessionId};
use keel_session::actix::{Key, SessionCookieConfig, session_middleware, write_session_cookie};
use keel_session::{MemorySessionStore, SessionConfig, SessionStore};
use keel_storage::InMemoryUserRepository;
use time::macros::datetime;

use super::*;
use crate::accounts::{Accounts, Registration};
use crate::jwt::{JwtAlgorithm, JwtConfig, KeyRing};
use crate::password::{PasswordHasher, PasswordHashingConfig};
use crate::refresh::RefreshSecret;
use crate::service::ClientInfo;
use crate::test_support::DownStore;

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery";
const ALLOWED: &str = "https://app.example";

async fn auth_over(store: Arc<dyn SessionStore>) -> Auth {
    let users = Arc::new(InMemoryUserRepository::new());
    let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
    let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
    let keys = KeyRing::generate_ephemeral(&JwtConfig {
        algorithm: JwtAlgorithm::HS256,
        ..JwtConfig::default()
    })
    .unwrap();
    Accounts::new(users.clone(), hasher.clone(), clock.clone())
        .register(Registration {
            email: EMAIL.into(),
            password: PASSWORD.into(),
            display_name: None,
        })
        .await
        .unwrap();
    Auth::new(
        users,
        hasher,
        store,
        keys,
        clock,
        SessionConfig::default(),
        RefreshSecret::random(),
    )
}

async fn memory_auth() -> Auth {
    auth_over(Arc::new(MemorySessionStore::new(SessionConfig::default()))).await
}

/// Logs in and sets the cookie; answers `<access token> <csrf secret>`.
async fn login(req: HttpRequest, auth: web::Data<Auth>) -> HttpResponse {
    let signed_in = auth
        .login(EMAIL, PASSWORD, ClientInfo::default())
        .await
        .unwrap();
    let csrf = write_session_cookie(&req, signed_in.session.id).unwrap();
    HttpResponse::Ok().body(format!(
        "{} {}",
        signed_in.tokens.access_token,
        csrf.expose_secret()
    ))
}

/// Answers the caller's user id, after checking the extensions got it too.
async fn whoami(req: HttpRequest, who: Authenticated) -> HttpResponse {
    assert_eq!(req.extensions().get::<UserId>(), Some(&who.user_id));
    // A second extraction answers from the extensions.
    let again = authenticate_request(&req).await.unwrap();
    assert_eq!(again, who.0);
    HttpResponse::Ok().body(who.user_id.to_string())
}

async fn logout(who: Authenticated, auth: web::Data<Auth>) -> HttpResponse {
    auth.logout(&who).await.unwrap();
    HttpResponse::NoContent().finish()
}

macro_rules! app {
    ($auth:expr) => {
        atest::init_service(
            App::new()
                .app_data(web::Data::new($auth))
                .app_data(web::Data::new(CsrfPolicy::new([ALLOWED])))
                .wrap(
                    session_middleware(&SessionCookieConfig::default(), Key::from(&[3; 64]))
                        .unwrap(),
                )
                .route("/login", web::post().to(login))
                .route("/logout", web::post().to(logout))
                .route("/me", web::get().to(whoami))
                .route("/me", web::post().to(whoami))
                .route("/me", web::delete().to(whoami)),
        )
        .await
    };
}

struct LoggedIn {
    access_token: String,
    csrf: String,
    cookie: Cookie<'static>,
}

/// Logs in through `/login`: the access token, the CSRF secret and the session cookie.
macro_rules! log_in {
    ($app:expr) => {{
        let response =
            atest::call_service($app, atest::TestRequest::post().uri("/login").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = response
            .headers()
            .get(SET_COOKIE)
            .map(|value| Cookie::parse_encoded(value.to_str().unwrap().to_owned()).unwrap())
            .unwrap();
        let body = String::from_utf8(atest::read_body(response).await.to_vec()).unwrap();
        let (access_token, csrf) = body.split_once(' ').unwrap();
        LoggedIn {
            access_token: access_token.to_owned(),
            csrf: csrf.to_owned(),
            cookie,
        }
    }};
}

fn rejection(response: &ServiceResponse) -> &AuthRejection {
    response
        .response()
        .error()
        .and_then(|error| error.as_error::<AuthRejection>())
        .unwrap()
}

fn challenge(response: &ServiceResponse) -> Option<&HeaderValue> {
    response.headers().get(WWW_AUTHENTICATE)
}

#[actix_web::test]
async fn a_bearer_token_authenticates_without_csrf_checks() {
    let app = app!(memory_auth().await);
    let session = log_in!(&app);
    for request in [atest::TestRequest::get(), atest::TestRequest::post()] {
        let request = request
            .uri("/me")
            .insert_header((AUTHORIZATION, format!("Bearer {}", session.access_token)))
            .to_request();
        let response = atest::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // The scheme is case-insensitive.
    let request = atest::TestRequest::get()
        .uri("/me")
        .insert_header((AUTHORIZATION, format!("bearer {}", session.access_token)))
        .to_request();
    assert_eq!(
        atest::call_service(&app, request).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn a_bad_bearer_token_never_falls_back_to_a_valid_cookie() {
    let app = app!(memory_auth().await);
    let session = log_in!(&app);
    for authorization in ["Bearer garbage", "Bearer ", "Bearer"] {
        let request = atest::TestRequest::get()
            .uri("/me")
            .cookie(session.cookie.clone())
            .insert_header((AUTHORIZATION, authorization))
            .to_request();
        let response = atest::call_service(&app, request).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization}"
        );
        assert!(
            matches!(
                rejection(&response),
                AuthRejection::Auth(AuthError::InvalidToken)
            ),
            "{authorization}"
        );
        assert_eq!(
            challenge(&response).unwrap(),
            "Bearer error=\"invalid_token\""
        );
    }
}

#[actix_web::test]
async fn another_authorization_scheme_leaves_the_cookie_in_charge() {
    let app = app!(memory_auth().await);
    let session = log_in!(&app);
    let request = atest::TestRequest::get()
        .uri("/me")
        .cookie(session.cookie.clone())
        .insert_header((AUTHORIZATION, "Basic c3RhZ2luZzpzZWNyZXQ="))
        .to_request();
    assert_eq!(
        atest::call_service(&app, request).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn a_cookie_authenticates_a_safe_request_without_csrf_proof() {
    let app = app!(memory_auth().await);
    let session = log_in!(&app);
    let request = atest::TestRequest::get()
        .uri("/me")
        .cookie(session.cookie.clone())
        .to_request();
    let response = atest::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[actix_web::test]
async fn cookie_authenticated_unsafe_requests_need_csrf_proof() {
    let app = app!(memory_auth().await);
    let session = log_in!(&app);
    let refused: [(&str, &[(&str, &str)]); 7] = [
        ("nothing", &[]),
        ("a foreign origin", &[("origin", "https://evil.example")]),
        ("origin null", &[("origin", "null")]),
        (
            "origin null with the right token",
            &[("origin", "null"), (CSRF_HEADER, session.csrf.as_str())],
        ),
        (
            "a wrong token",
            &[(CSRF_HEADER, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
        ),
        (
            "cross-site fetch metadata",
            &[("sec-fetch-site", "cross-site")],
        ),
        (
            "same-site fetch metadata",
            &[("sec-fetch-site", "same-site")],
        ),
    ];
    for (case, headers) in refused {
        for method in [atest::TestRequest::post(), atest::TestRequest::delete()] {
            let mut request = method.uri("/me").cookie(session.cookie.clone());
            for &(name, value) in headers {
                request = request.insert_header((name, value));
            }
            let response = atest::call_service(&app, request.to_request()).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{case}");
            assert!(
                matches!(rejection(&response), AuthRejection::CsrfFailed),
                "{case}"
            );
            assert!(challenge(&response).is_none(), "{case}");
        }
    }
}

#[actix_web::test]
async fn an_allowed_origin_same_origin_fetch_or_the_right_token_passes_csrf() {
    let app = app!(memory_auth().await);
    let session = log_in!(&app);
    let passing: [(&str, &[(&str, &str)]); 5] = [
        ("an allowed origin", &[("origin", ALLOWED)]),
        (
            "an allowed origin in another case",
            &[("origin", "https://APP.example")],
        ),
        (
            "same-origin fetch metadata",
            &[("sec-fetch-site", "same-origin")],
        ),
        ("the right token", &[(CSRF_HEADER, session.csrf.as_str())]),
        (
            "the right token with cross-site fetch metadata",
            &[
                ("sec-fetch-site", "cross-site"),
                (CSRF_HEADER, session.csrf.as_str()),
            ],
        ),
    ];
    for (case, headers) in passing {
        let mut request = atest::TestRequest::post()
            .uri("/me")
            .cookie(session.cookie.clone());
        for &(name, value) in headers {
            request = request.insert_header((name, value));
        }
        let response = atest::call_service(&app, request.to_request()).await;
        assert_eq!(response.status(), StatusCode::OK, "{case}");
    }
}

#[actix_web::test]
async fn no_credentials_is_missing_with_a_bare_bearer_challenge() {
    let app = app!(memory_auth().await);
    let response =
        atest::call_service(&app, atest::TestRequest::get().uri("/me").to_request()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(matches!(rejection(&response), AuthRejection::Missing));
    assert_eq!(challenge(&response).unwrap(), "Bearer");
    // No body format of its own: the edge renders problem+json.
    assert!(atest::read_body(response).await.is_empty());
}

#[actix_web::test]
async fn after_logout_neither_the_token_nor_the_cookie_works() {
    let app = app!(memory_auth().await);
    let session = log_in!(&app);
    let request = atest::TestRequest::post()
        .uri("/logout")
        .insert_header((AUTHORIZATION, format!("Bearer {}", session.access_token)))
        .to_request();
    assert_eq!(
        atest::call_service(&app, request).await.status(),
        StatusCode::NO_CONTENT
    );

    let by_token = atest::TestRequest::get()
        .uri("/me")
        .insert_header((AUTHORIZATION, format!("Bearer {}", session.access_token)))
        .to_request();
    let by_cookie = atest::TestRequest::get()
        .uri("/me")
        .cookie(session.cookie.clone())
        .to_request();
    for request in [by_token, by_cookie] {
        let response = atest::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(matches!(
            rejection(&response),
            AuthRejection::Auth(AuthError::Unauthorized)
        ));
        assert_eq!(
            challenge(&response).unwrap(),
            "Bearer error=\"invalid_token\""
        );
    }
}

#[actix_web::test]
async fn a_registry_that_cannot_answer_is_503_never_401() {
    let auth = auth_over(Arc::new(DownStore)).await;
    let token = auth
        .key_ring()
        .issue_access(
            UserId::generate(),
            SessionId::generate(),
            datetime!(2030-01-01 00:00 UTC),
        )
        .unwrap()
        .token;
    let app = app!(auth);
    let request = atest::TestRequest::get()
        .uri("/me")
        .insert_header((AUTHORIZATION, format!("Bearer {token}")))
        .to_request();
    let response = atest::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(matches!(
        rejection(&response),
        AuthRejection::Auth(AuthError::Unavailable(_))
    ));
    assert!(challenge(&response).is_none());
}

#[actix_web::test]
async fn without_auth_in_the_app_data_requests_are_refused_as_unavailable() {
    let app = atest::init_service(App::new().route("/me", web::get().to(whoami))).await;
    let request = atest::TestRequest::get()
        .uri("/me")
        .insert_header((AUTHORIZATION, "Bearer x"))
        .to_request();
    let response = atest::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn origins_compare_case_insensitively_and_null_or_wildcards_never_match() {
    let policy = CsrfPolicy::new(["https://App.example/", "*", "null"]);
    assert!(policy.allows_origin("https://app.example"));
    assert!(!policy.allows_origin("https://app.example.evil"));
    assert!(!policy.allows_origin("http://app.example"));
    assert!(!policy.allows_origin("null"));
    assert!(!policy.allows_origin("*"));
    assert!(!policy.allows_origin(""));
    assert!(!CsrfPolicy::default().allows_origin("https://app.example"));
}

#[test]
fn rejections_map_to_their_statuses() {
    let cases = [
        (
            AuthRejection::Missing,
            StatusCode::UNAUTHORIZED,
            Some("Bearer"),
        ),
        (AuthRejection::CsrfFailed, StatusCode::FORBIDDEN, None),
        (
            AuthRejection::Auth(AuthError::TokenExpired),
            StatusCode::UNAUTHORIZED,
            Some(CHALLENGE_INVALID),
        ),
        (
            AuthRejection::Auth(AuthError::TokenReused),
            StatusCode::UNAUTHORIZED,
            Some(CHALLENGE_INVALID),
        ),
        (
            AuthRejection::Auth(AuthError::NotFound),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            AuthRejection::Auth(AuthError::Busy),
            StatusCode::SERVICE_UNAVAILABLE,
            None,
        ),
    ];
    for (rejection, status, challenge) in cases {
        assert_eq!(rejection.status(), status, "{rejection:?}");
        assert_eq!(rejection.www_authenticate(), challenge, "{rejection:?}");
        assert_eq!(rejection.error_response().status(), status);
    }
}

#[actix_web::test]
async fn a_verifier_alone_in_the_app_data_authenticates_bearer_tokens() {
    // Another service: only a `Verifier` (no `Auth`, no session cookie middleware), sharing the
    // issuer's session registry.
    let auth = memory_auth().await;
    let signed_in = auth
        .login(EMAIL, PASSWORD, ClientInfo::default())
        .await
        .unwrap();
    let app = atest::init_service(
        App::new()
            .app_data(web::Data::new(auth.verifier().clone()))
            .route("/me", web::get().to(whoami)),
    )
    .await;
    let me = |token: Option<&str>| {
        let mut request = atest::TestRequest::get().uri("/me");
        if let Some(token) = token {
            request = request.insert_header((AUTHORIZATION, format!("Bearer {token}")));
        }
        request.to_request()
    };
    let token = signed_in.tokens.access_token.as_str();

    let response = atest::call_service(&app, me(Some(token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = atest::read_body(response).await;
    assert_eq!(body, signed_in.user.id.to_string());

    let response = atest::call_service(&app, me(None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(matches!(rejection(&response), AuthRejection::Missing));

    let principal = auth.authenticate_bearer(token).await.unwrap();
    auth.logout(&principal).await.unwrap();
    let response = atest::call_service(&app, me(Some(token))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(matches!(
        rejection(&response),
        AuthRejection::Auth(AuthError::Unauthorized)
    ));

    let down = Verifier::new(
        auth.key_ring().clone(),
        Arc::new(DownStore),
        Arc::new(keel_domain::SystemClock),
    );
    let app = atest::init_service(
        App::new()
            .app_data(down)
            .route("/me", web::get().to(whoami)),
    )
    .await;
    let response = atest::call_service(&app, me(Some(token))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}
