//! `/api/v1/admin`: accounts and the audit log, for the `admin` role. Every handler asks the
//! authorization policy (keel-auth's `authorize`, through [`Admin`]) before anything else.

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_auth::{Action, Admin, AdminUserView, authorize};
use keel_domain::{AuditEvent, AuditKind, AuditQuery, User, UserId, UserQuery};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::auth::{SessionView, no_store};

/// The page size when none is asked for, and the largest one served.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
/// The longest search accepted.
const MAX_SEARCH_CHARS: usize = 254;

#[derive(Deserialize)]
pub(crate) struct UsersParams {
    query: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditParams {
    user_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// An account in an administrator's view: the contract's `User`, and whether it is disabled.
#[derive(Serialize)]
struct AdminUser<'a> {
    #[serde(flatten)]
    user: &'a User,
    disabled: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsersPage<'a> {
    users: Vec<AdminUser<'a>>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct UserDetail<'a> {
    user: AdminUser<'a>,
    sessions: Vec<SessionView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditPage<'a> {
    events: &'a [AuditEvent],
    next_cursor: Option<String>,
}

fn limit(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::invalid_request("`limit` must be at least 1.")),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

fn bad_cursor() -> ApiError {
    ApiError::invalid_request("`cursor` is not one this API handed out.")
}

fn user_cursor(id: UserId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_uuid().as_bytes())
}

fn parse_user_cursor(cursor: &str) -> Result<UserId, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    let uuid = Uuid::from_slice(&bytes).map_err(|_| bad_cursor())?;
    Ok(UserId::from_uuid(uuid))
}

fn audit_cursor(event: &AuditEvent) -> String {
    let mut bytes = event.at.unix_timestamp_nanos().to_be_bytes().to_vec();
    bytes.extend_from_slice(event.id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn parse_audit_cursor(cursor: &str) -> Result<(OffsetDateTime, Uuid), ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    let (nanos, id) = bytes.split_at_checked(16).ok_or_else(bad_cursor)?;
    let nanos = i128::from_be_bytes(nanos.try_into().map_err(|_| bad_cursor())?);
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad_cursor())?;
    Ok((at, Uuid::from_slice(id).map_err(|_| bad_cursor())?))
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|value| {
            OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
                ApiError::invalid_request(format!("`{name}` must be an RFC 3339 time."))
            })
        })
        .transpose()
}

fn admin_user(view: &AdminUserView) -> AdminUser<'_> {
    AdminUser {
        user: &view.user,
        disabled: view.disabled,
    }
}

/// GET /admin/users: a page of accounts, newest first, searched by e-mail or display name.
pub(crate) async fn list_users(
    admin: web::Data<Admin>,
    caller: Caller,
    params: web::Query<UsersParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin.actor(&caller.0).await?;
    // The policy first: a caller without the role learns nothing, not even about its input.
    authorize(&actor, Action::ListUsers)?;
    let limit = limit(params.limit)?;
    let search = params
        .query
        .as_deref()
        .map(str::trim)
        .filter(|query| !query.is_empty())
        .map(|query| query.chars().take(MAX_SEARCH_CHARS).collect());
    let before = params
        .cursor
        .as_deref()
        .map(parse_user_cursor)
        .transpose()?;
    let views = admin
        .list_users(
            &actor,
            UserQuery {
                search,
                before,
                // One more than asked tells whether another page follows.
                limit: limit + 1,
            },
        )
        .await?;
    let more = views.len() > limit;
    let page = &views[..views.len().min(limit)];
    let next_cursor = more
        .then(|| page.last().map(|view| user_cursor(view.user.id)))
        .flatten();
    Ok(no_store(HttpResponse::Ok()).json(UsersPage {
        users: page.iter().map(admin_user).collect(),
        next_cursor,
    }))
}

/// GET /admin/users/{id}: the account and its live sessions.
pub(crate) async fn get_user(
    admin: web::Data<Admin>,
    caller: Caller,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin.actor(&caller.0).await?;
    let view = admin.get_user(&actor, id.into_inner()).await?;
    let current = caller.0.session.id;
    Ok(no_store(HttpResponse::Ok()).json(UserDetail {
        user: admin_user(&view),
        sessions: view
            .sessions
            .iter()
            .map(|session| SessionView::new(session, current))
            .collect(),
    }))
}

/// POST /admin/users/{id}/disable: 204; every session of the account is revoked.
pub(crate) async fn disable_user(
    admin: web::Data<Admin>,
    caller: Caller,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin.actor(&caller.0).await?;
    admin.disable(&actor, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// POST /admin/users/{id}/enable: 204.
pub(crate) async fn enable_user(
    admin: web::Data<Admin>,
    caller: Caller,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin.actor(&caller.0).await?;
    admin.enable(&actor, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// DELETE /admin/users/{id}/sessions: 204; every session of the account is revoked.
pub(crate) async fn revoke_sessions(
    admin: web::Data<Admin>,
    caller: Caller,
    id: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin.actor(&caller.0).await?;
    admin.revoke_sessions(&actor, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// GET /admin/audit: a page of the audit log, newest first.
pub(crate) async fn audit(
    admin: web::Data<Admin>,
    caller: Caller,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin.actor(&caller.0).await?;
    authorize(&actor, Action::ReadAudit)?;
    let limit = limit(params.limit)?;
    let user_id = params
        .user_id
        .as_deref()
        .map(|id| {
            id.parse::<UserId>()
                .map_err(|_| ApiError::invalid_request("`userId` is not a user id."))
        })
        .transpose()?;
    let kind = params
        .kind
        .as_deref()
        .map(|kind| {
            kind.parse::<AuditKind>().map_err(|_| {
                ApiError::invalid_request(format!("`type` {kind:?} is not an audit event type."))
            })
        })
        .transpose()?;
    let query = AuditQuery {
        user_id,
        kind,
        since: time_param("since", params.since.as_deref())?,
        until: time_param("until", params.until.as_deref())?,
        after: params
            .cursor
            .as_deref()
            .map(parse_audit_cursor)
            .transpose()?,
        limit: limit + 1,
    };
    let events = admin.audit(&actor, query).await?;
    let more = events.len() > limit;
    let page = &events[..events.len().min(limit)];
    let next_cursor = more.then(|| page.last().map(audit_cursor)).flatten();
    Ok(no_store(HttpResponse::Ok()).json(AuditPage {
        events: page,
        next_cursor,
    }))
}
