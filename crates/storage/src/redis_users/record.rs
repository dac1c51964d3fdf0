//! An account as the Redis user store keeps it: JSON through a private DTO.

use std::fmt;

use keel_domain::{DisplayName, Email, RepositoryError, User, UserId, UserRecord};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};

/// An account as stored in Redis. Private, so `UserRecord` itself never becomes `Serialize`
/// (it must not reach a response or a log with its hash).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredUser {
    id: UserId,
    /// As the user gave it; the canonical form is derived again when read. Read leniently:
    /// an earlier release may have accepted an address that today's rules refuse.
    email: String,
    display_name: String,
    /// RFC 3339 in UTC with nanoseconds, so the instant reads back exactly.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Absent in records of releases before 0.2: the creation time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    updated_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    email_verified_at: Option<OffsetDateTime>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    disabled_at: Option<OffsetDateTime>,
    password_hash: String,
}

pub(crate) fn encode(record: &UserRecord) -> Result<String, RepositoryError> {
    let user = &record.user;
    let utc = |at: OffsetDateTime| at.to_offset(UtcOffset::UTC);
    let stored = StoredUser {
        id: user.id,
        email: user.email.as_str().to_owned(),
        display_name: user.display_name.as_str().to_owned(),
        created_at: utc(user.created_at),
        updated_at: Some(utc(user.updated_at)),
        email_verified_at: user.email_verified_at.map(utc),
        roles: user.roles.clone(),
        disabled_at: record.disabled_at.map(utc),
        password_hash: record.password_hash.clone(),
    };
    // Fails only for a time outside the years 0 to 9999, which RFC 3339 cannot write.
    serde_json::to_string(&stored)
        .map_err(|err| RepositoryError::unavailable(format!("cannot encode the account: {err}")))
}

pub(crate) fn decode(raw: &str) -> Result<UserRecord, RepositoryError> {
    let invalid = |err: &dyn fmt::Display| {
        RepositoryError::unavailable(format!("a stored account is not valid: {err}"))
    };
    let stored: StoredUser = serde_json::from_str(raw).map_err(|err| invalid(&err))?;
    let email = Email::parse_lenient(&stored.email).map_err(|err| invalid(&err))?;
    let display_name =
        DisplayName::from_stored(&stored.display_name).map_err(|err| invalid(&err))?;
    Ok(UserRecord {
        user: User {
            id: stored.id,
            email,
            display_name,
            email_verified_at: stored.email_verified_at,
            roles: stored.roles,
            created_at: stored.created_at,
            updated_at: stored.updated_at.unwrap_or(stored.created_at),
        },
        password_hash: stored.password_hash,
        disabled_at: stored.disabled_at,
    })
}
