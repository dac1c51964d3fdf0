//! `/api/v1/auth`: accounts, logins and sessions, and the JWKS.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use keel_auth::{Accounts, Auth, Lifecycle, Registration, SignedIn};
use keel_domain::{Email, SessionId, User};
use keel_session::Session;
use keel_session::actix::{clear_session_cookie, write_session_cookie};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::caller::Caller;
use crate::device::DeviceCookies;
use crate::edge::ClientIp;
use crate::error::ApiError;
use crate::quota::Quotas;

/// Longest email used as a rate-limit key; longer input is not an email anyway.
const MAX_EMAIL_KEY_CHARS: usize = 254;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegisterBody {
    email: String,
    password: String,
    display_name: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

#[derive(Serialize)]
struct UserBody<'a> {
    user: &'a User,
}

#[derive(Serialize)]
struct MeBody<'a> {
    user: &'a User,
    session: SessionView<'a>,
}

#[derive(Serialize)]
struct SessionsBody<'a> {
    sessions: Vec<SessionView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokensBody<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_in: u64,
    refresh_token: &'a str,
    user: &'a User,
    session: SessionView<'a>,
    /// The double-submit CSRF token for cookie-authenticated requests (`x-csrf-token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<&'a str>,
}

/// A session as clients see it: no refresh-token state, and whether it is the caller's own.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionView<'a> {
    id: SessionId,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    last_seen_at: OffsetDateTime,
    /// When the session ends if it stays idle: the earlier of its idle and absolute expiry.
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    current: bool,
}

impl<'a> SessionView<'a> {
    pub(crate) fn new(session: &'a Session, current: SessionId) -> Self {
        Self {
            id: session.id,
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            expires_at: session.expires_at.min(session.idle_expires_at),
            user_agent: session.user_agent.as_deref(),
            ip: session.ip.map(|ip| ip.to_string()),
            current: session.id == current,
        }
    }
}

pub(crate) fn no_store(
    mut response: actix_web::HttpResponseBuilder,
) -> actix_web::HttpResponseBuilder {
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response
}

fn client_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.extensions().get::<ClientIp>().map(|ip| ip.0)
}

/// The client's IP as quotas key it.
pub(crate) fn ip_key(req: &HttpRequest) -> String {
    client_ip(req).map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// POST /register: 201 with the new user; a verification mail is queued.
pub(crate) async fn register(
    req: HttpRequest,
    accounts: web::Data<Accounts>,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    let limits = quotas
        .check(&[(&quotas.register_ip, &ip_key(&req))])
        .await?;
    let RegisterBody {
        email,
        password,
        display_name,
    } = body.into_inner();
    let user = limits.on_error(
        accounts
            .register(Registration {
                email,
                password,
                display_name,
            })
            .await,
    )?;
    lifecycle
        .registered(&user, &crate::routes::account::client_info(&req))
        .await;
    let mut response = no_store(HttpResponse::Created());
    limits.apply(&mut response);
    Ok(response.json(UserBody { user: &user }))
}

/// POST /login: 200 with tokens, the session cookie and the device cookie.
///
/// Failed attempts are counted per account, apart for each device that has logged in to the
/// account before (see `device.rs`): guesses from elsewhere lock the account against unknown
/// devices only.
pub(crate) async fn login(
    req: HttpRequest,
    auth: web::Data<Auth>,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    devices: web::Data<DeviceCookies>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let LoginBody { email, password } = body.into_inner();
    // Keyed on the address as accounts are matched (NFC, lowercased), so spellings of one
    // address share one budget and one device binding; input that is no address at all is
    // keyed as typed, trimmed and lowercased.
    let email_key: String = Email::parse_lenient(&email)
        .map_or_else(
            |_| email.trim().to_lowercase(),
            |e| e.canonical().to_owned(),
        )
        .chars()
        .take(MAX_EMAIL_KEY_CHARS)
        .collect();
    let device = devices.known(&req, &email_key);
    let budget = match quotas
        .admit_login(&ip_key(&req), &email_key, device.as_deref())
        .await
    {
        Ok(budget) => budget,
        Err(refused) => {
            if refused.locked && quotas.first_lock_notice(&email_key).await {
                lifecycle.account_locked(&email).await;
            }
            return Err(refused.error);
        }
    };
    let limits = &budget.headers;
    let client = crate::routes::account::client_info(&req);
    let signed_in = limits.on_error(auth.login(&email, &password, client).await)?;
    quotas.login_succeeded(&budget).await;
    let csrf = write_session_cookie(&req, signed_in.session.id).map_err(ApiError::internal)?;
    let mut response = no_store(HttpResponse::Ok());
    limits.apply(&mut response);
    response.cookie(devices.issue(device.as_deref(), &email_key));
    Ok(response.json(tokens_body(&signed_in, Some(csrf.expose_secret()))))
}

/// POST /refresh: 200 with a new token pair; the presented refresh token is spent.
pub(crate) async fn refresh(
    req: HttpRequest,
    auth: web::Data<Auth>,
    quotas: web::Data<Quotas>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let limits = quotas.check(&[(&quotas.refresh_ip, &ip_key(&req))]).await?;
    let signed_in = limits.on_error(auth.refresh(&body.refresh_token).await)?;
    let mut response = no_store(HttpResponse::Ok());
    limits.apply(&mut response);
    Ok(response.json(tokens_body(&signed_in, None)))
}

fn tokens_body<'a>(signed_in: &'a SignedIn, csrf_token: Option<&'a str>) -> TokensBody<'a> {
    let SignedIn {
        user,
        session,
        tokens,
    } = signed_in;
    TokensBody {
        access_token: &tokens.access_token,
        token_type: tokens.token_type,
        expires_in: tokens.expires_in,
        refresh_token: tokens.refresh_token.expose_secret(),
        user,
        session: SessionView::new(session, session.id),
        csrf_token,
    }
}

/// POST /logout: 204; the caller's session is revoked everywhere and the cookie cleared.
pub(crate) async fn logout(
    req: HttpRequest,
    auth: web::Data<Auth>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    auth.logout(&caller.0).await?;
    clear_session_cookie(&req);
    Ok(HttpResponse::NoContent().finish())
}

/// POST /logout-all: 204; every session of the caller's user is revoked.
pub(crate) async fn logout_all(
    req: HttpRequest,
    auth: web::Data<Auth>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    auth.logout_all(caller.0.user_id).await?;
    clear_session_cookie(&req);
    Ok(HttpResponse::NoContent().finish())
}

/// GET /me: the caller's user and session.
pub(crate) async fn me(auth: web::Data<Auth>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let (user, session) = auth.me(&caller.0).await?;
    let session = SessionView::new(&session, caller.0.session.id);
    Ok(no_store(HttpResponse::Ok()).json(MeBody {
        user: &user,
        session,
    }))
}

/// GET /sessions: the caller's user's live sessions.
pub(crate) async fn sessions(
    auth: web::Data<Auth>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let sessions = auth.list_sessions(caller.0.user_id).await?;
    let current = caller.0.session.id;
    let body = SessionsBody {
        sessions: sessions
            .iter()
            .map(|session| SessionView::new(session, current))
            .collect(),
    };
    Ok(no_store(HttpResponse::Ok()).json(body))
}

/// DELETE /sessions/{id}: 204, or 404 when it is not one of the caller's sessions.
pub(crate) async fn revoke_session(
    req: HttpRequest,
    auth: web::Data<Auth>,
    caller: Caller,
    id: web::Path<SessionId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    auth.revoke_session(caller.0.user_id, id).await?;
    if id == caller.0.session.id {
        clear_session_cookie(&req);
    }
    Ok(HttpResponse::NoContent().finish())
}

/// GET /.well-known/jwks.json: the public keys that verify Keel's access tokens.
pub(crate) async fn jwks(auth: web::Data<Auth>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ))
        .json(auth.key_ring().jwks())
}
