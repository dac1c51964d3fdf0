//! `/api/v1/auth`: accounts and sessions.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use keel_auth::{Accounts, Registration};
use keel_domain::User;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// POST /register body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegisterBody {
    email: String,
    password: String,
    display_name: Option<String>,
}

#[derive(Serialize)]
struct UserBody<'a> {
    user: &'a User,
}

/// POST /api/v1/auth/register: 201 with the new user.
pub(crate) async fn register(
    accounts: web::Data<Accounts>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    let RegisterBody {
        email,
        password,
        display_name,
    } = body.into_inner();
    let user = accounts
        .register(Registration {
            email,
            password,
            display_name,
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(UserBody { user: &user }))
}
