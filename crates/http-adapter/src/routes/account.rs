//! The account lifecycle's routes: e-mail verification, password reset and change, e-mail
//! change, deletion and export, and the development pages that links in mails open.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use keel_auth::{Accounts, ClientInfo, Lifecycle};
use keel_domain::{AuditEvent, Email, User};
use keel_session::actix::clear_session_cookie;
use serde::{Deserialize, Serialize};

use crate::caller::Caller;
use crate::edge::ClientIp;
use crate::error::ApiError;
use crate::quota::Quotas;
use crate::routes::auth::{SessionView, ip_key, no_store};

/// Longest address used as a rate-limit key.
const MAX_EMAIL_KEY_CHARS: usize = 254;

#[derive(Deserialize)]
pub(crate) struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
pub(crate) struct EmailBody {
    email: String,
}

#[derive(Deserialize)]
pub(crate) struct ResetConfirmBody {
    token: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PasswordChangeBody {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmailChangeBody {
    new_email: String,
    password: String,
}

#[derive(Deserialize)]
pub(crate) struct PasswordBody {
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileBody {
    display_name: String,
}

#[derive(Serialize)]
struct UserBody<'a> {
    user: &'a User,
}

#[derive(Serialize)]
struct ExportBody<'a> {
    user: &'a User,
    sessions: Vec<SessionView<'a>>,
    events: &'a [AuditEvent],
}

/// Where the request comes from, for the audit log.
pub(crate) fn client_info(req: &HttpRequest) -> ClientInfo {
    ClientInfo {
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(str::to_owned),
        ip: req.extensions().get::<ClientIp>().map(|ip| ip.0),
    }
}

/// An address as quotas key it: canonical when it parses, else as typed, lowercased.
fn address_key(email: &str) -> String {
    Email::parse_lenient(email)
        .map_or_else(
            |_| email.trim().to_lowercase(),
            |e| e.canonical().to_owned(),
        )
        .chars()
        .take(MAX_EMAIL_KEY_CHARS)
        .collect()
}

/// The key of a signed-in caller's password checks (password and e-mail change, deletion) in
/// the per-account login budget: a stolen access token cannot be used to guess the password
/// from many addresses.
fn password_check_key(caller: &Caller) -> String {
    format!("user:{}", caller.0.user_id)
}

/// POST /auth/verify-email: 200 with the user, its address verified (or changed).
pub(crate) async fn verify_email(
    req: HttpRequest,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    body: web::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let limits = quotas.check(&[(&quotas.account_ip, &ip_key(&req))]).await?;
    let user = limits.on_error(
        lifecycle
            .verify_email(&body.token, &client_info(&req))
            .await,
    )?;
    let mut response = no_store(HttpResponse::Ok());
    limits.apply(&mut response);
    Ok(response.json(UserBody { user: &user }))
}

/// POST /auth/verify-email/resend: 202; a new link unless the address is verified already.
pub(crate) async fn resend_verification(
    req: HttpRequest,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let user = caller.0.user_id.to_string();
    let limits = quotas
        .check(&[
            (&quotas.account_ip, &ip_key(&req)),
            (&quotas.mail_address, &user),
        ])
        .await?;
    limits.on_error(lifecycle.resend_verification(caller.0.user_id).await)?;
    let mut response = HttpResponse::Accepted();
    limits.apply(&mut response);
    Ok(response.finish())
}

/// POST /auth/password-reset: 202 whether or not an account has the address.
pub(crate) async fn request_password_reset(
    req: HttpRequest,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    body: web::Json<EmailBody>,
) -> Result<HttpResponse, ApiError> {
    let limits = quotas
        .check(&[
            (&quotas.account_ip, &ip_key(&req)),
            (&quotas.mail_address, &address_key(&body.email)),
        ])
        .await?;
    limits.on_error(
        lifecycle
            .request_password_reset(&body.email, &client_info(&req))
            .await,
    )?;
    let mut response = HttpResponse::Accepted();
    limits.apply(&mut response);
    Ok(response.finish())
}

/// POST /auth/password-reset/confirm: 204; every session of the user is revoked.
pub(crate) async fn confirm_password_reset(
    req: HttpRequest,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    body: web::Json<ResetConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    let limits = quotas.check(&[(&quotas.account_ip, &ip_key(&req))]).await?;
    let ResetConfirmBody { token, password } = body.into_inner();
    limits.on_error(
        lifecycle
            .confirm_password_reset(&token, password, &client_info(&req))
            .await,
    )?;
    let mut response = HttpResponse::NoContent();
    limits.apply(&mut response);
    Ok(response.finish())
}

/// POST /auth/password: 204; every other session of the user is revoked.
pub(crate) async fn change_password(
    req: HttpRequest,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    caller: Caller,
    body: web::Json<PasswordChangeBody>,
) -> Result<HttpResponse, ApiError> {
    let limits = quotas
        .check(&[
            (&quotas.account_ip, &ip_key(&req)),
            (&quotas.login_email, &password_check_key(&caller)),
        ])
        .await?;
    let PasswordChangeBody {
        current_password,
        new_password,
    } = body.into_inner();
    limits.on_error(
        lifecycle
            .change_password(
                &caller.0,
                &current_password,
                new_password,
                &client_info(&req),
            )
            .await,
    )?;
    let mut response = HttpResponse::NoContent();
    limits.apply(&mut response);
    Ok(response.finish())
}

/// POST /auth/email: 202; a confirmation link goes to the new address.
pub(crate) async fn request_email_change(
    req: HttpRequest,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    caller: Caller,
    body: web::Json<EmailChangeBody>,
) -> Result<HttpResponse, ApiError> {
    let limits = quotas
        .check(&[
            (&quotas.account_ip, &ip_key(&req)),
            (&quotas.login_email, &password_check_key(&caller)),
            (&quotas.mail_address, &address_key(&body.new_email)),
        ])
        .await?;
    limits.on_error(
        lifecycle
            .request_email_change(
                &caller.0,
                &body.new_email,
                &body.password,
                &client_info(&req),
            )
            .await,
    )?;
    let mut response = HttpResponse::Accepted();
    limits.apply(&mut response);
    Ok(response.finish())
}

/// PATCH /users/me: 200 with the user, its display name changed.
pub(crate) async fn update_profile(
    req: HttpRequest,
    accounts: web::Data<Accounts>,
    lifecycle: web::Data<Lifecycle>,
    caller: Caller,
    body: web::Json<ProfileBody>,
) -> Result<HttpResponse, ApiError> {
    let user = lifecycle
        .update_profile(&accounts, &caller.0, &body.display_name, &client_info(&req))
        .await?;
    Ok(no_store(HttpResponse::Ok()).json(UserBody { user: &user }))
}

/// DELETE /users/me: 204; the account and its data are gone, every session revoked.
pub(crate) async fn delete_account(
    req: HttpRequest,
    lifecycle: web::Data<Lifecycle>,
    quotas: web::Data<Quotas>,
    caller: Caller,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let limits = quotas
        .check(&[
            (&quotas.account_ip, &ip_key(&req)),
            (&quotas.login_email, &password_check_key(&caller)),
        ])
        .await?;
    limits.on_error(
        lifecycle
            .delete_account(&caller.0, &body.password, &client_info(&req))
            .await,
    )?;
    clear_session_cookie(&req);
    let mut response = HttpResponse::NoContent();
    limits.apply(&mut response);
    Ok(response.finish())
}

/// GET /users/me/export: the account, its sessions and its audit events.
pub(crate) async fn export(
    lifecycle: web::Data<Lifecycle>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let export = lifecycle.export(&caller.0).await?;
    let current = caller.0.session.id;
    let body = ExportBody {
        user: &export.user,
        sessions: export
            .sessions
            .iter()
            .map(|session| SessionView::new(session, current))
            .collect(),
        events: &export.events,
    };
    Ok(no_store(HttpResponse::Ok())
        .insert_header((
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"keel-export.json\""),
        ))
        .json(body))
}

/// The development pages' policy: their own script (same origin) may run and call the API.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn page(body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// GET /verify-email (development): a page whose button POSTs the link's token. Opening it
/// spends nothing, so a mail scanner that follows the link does no harm.
pub(crate) async fn verify_email_page() -> HttpResponse {
    page(include_str!("pages/verify-email.html"))
}

/// GET /reset-password (development): a page that asks for the new password and POSTs it with
/// the link's token.
pub(crate) async fn reset_password_page() -> HttpResponse {
    page(include_str!("pages/reset-password.html"))
}

/// GET /_keel/pages.js (development): the pages' script.
pub(crate) async fn pages_script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(include_str!("pages/pages.js"))
}
