//! Users, as clients see them and as stores keep them.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use crate::display_name::DisplayName;
use crate::email::Email;
use crate::ids::UserId;

/// A user account, in the shape of the contract's `User` object: `{"id", "email",
/// "displayName", "emailVerified", "roles", "createdAt", "updatedAt"}`, times as RFC 3339 UTC
/// strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The address the user registered with, as they typed it (in NFC).
    pub email: Email,
    /// The name the user is shown by.
    pub display_name: DisplayName,
    /// When the address was proven to be the user's (a verification link was followed), if it
    /// has been. Clients see only whether it has, as `emailVerified`.
    #[serde(rename = "emailVerified", serialize_with = "is_some")]
    pub email_verified_at: Option<OffsetDateTime>,
    /// What the user may do beyond their own account, such as `admin`; empty for most users.
    pub roles: Vec<String>,
    /// When the account was created.
    #[serde(serialize_with = "rfc3339_utc")]
    pub created_at: OffsetDateTime,
    /// When the account last changed (its creation, until it changes).
    #[serde(serialize_with = "rfc3339_utc")]
    pub updated_at: OffsetDateTime,
}

impl User {
    /// A new, unverified account without roles, created (and so last changed) at `now`, cut to
    /// whole microseconds ([`truncate_to_micros`]).
    pub fn new(id: UserId, email: Email, display_name: DisplayName, now: OffsetDateTime) -> Self {
        let now = truncate_to_micros(now);
        Self {
            id,
            email,
            display_name,
            email_verified_at: None,
            roles: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether the user's address has been verified.
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }
}

fn is_some<S: serde::Serializer>(
    value: &Option<OffsetDateTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(value.is_some())
}

/// What a user store keeps about a user: the user, their password hash, and whether an
/// administrator has disabled the account.
///
/// Deliberately not `Serialize`, and its `Debug` output leaves the hash out, so the hash cannot
/// leak into a response or a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user.
    pub user: User,
    /// The password hash as a PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// When the account was disabled, if it is: a disabled account cannot sign in.
    pub disabled_at: Option<OffsetDateTime>,
}

impl UserRecord {
    /// The record of a new, enabled account.
    pub fn new(user: User, password_hash: String) -> Self {
        Self {
            user,
            password_hash,
            disabled_at: None,
        }
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("user", &self.user)
            .field("password_hash", &"[REDACTED]")
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

/// RFC 3339 in UTC whatever offset the value carries, because the contract promises UTC strings.
pub(crate) fn rfc3339_utc<S: serde::Serializer>(
    value: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    time::serde::rfc3339::serialize(&value.to_offset(time::UtcOffset::UTC), serializer)
}

/// `at` without its sub-microsecond part: the precision every user store keeps (PostgreSQL's
/// `timestamptz` has microseconds), so a record reads back exactly as it was written.
pub fn truncate_to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let micros = at.microsecond();
    at.replace_microsecond(micros).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn user() -> User {
        User::new(
            "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a".parse().unwrap(),
            Email::parse("Ada@Example.com").unwrap(),
            DisplayName::parse("Ada").unwrap(),
            datetime!(2025-01-02 03:04:05 +02:00),
        )
    }

    #[test]
    fn a_user_serializes_in_the_contract_shape_with_a_utc_timestamp() {
        assert_eq!(
            serde_json::to_value(user()).unwrap(),
            serde_json::json!({
                "id": "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a",
                "email": "Ada@Example.com",
                "displayName": "Ada",
                "emailVerified": false,
                "roles": [],
                "createdAt": "2025-01-02T01:04:05Z",
                "updatedAt": "2025-01-02T01:04:05Z",
            })
        );
    }

    #[test]
    fn new_users_keep_whole_microseconds() {
        let at = datetime!(2025-01-02 03:04:05.123456789 UTC);
        let user = User::new(
            UserId::generate(),
            Email::parse("a@b").unwrap(),
            DisplayName::parse("a").unwrap(),
            at,
        );
        assert_eq!(user.created_at, datetime!(2025-01-02 03:04:05.123456 UTC));
        assert_eq!(user.updated_at, user.created_at);
    }

    #[test]
    fn a_verified_admin_shows_as_one() {
        let mut user = user();
        user.email_verified_at = Some(datetime!(2025-01-03 00:00 UTC));
        user.roles.push("admin".to_owned());
        let json = serde_json::to_value(&user).unwrap();
        assert_eq!(json["emailVerified"], true);
        assert_eq!(json["roles"], serde_json::json!(["admin"]));
        assert!(user.email_verified());
    }

    #[test]
    fn a_record_never_shows_its_hash() {
        let record = UserRecord::new(
            user(),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        );
        let debug = format!("{record:?}");
        assert!(!debug.contains("argon2id"), "{debug}");
        assert!(debug.contains("[REDACTED]"));
        assert!(debug.contains("Ada@Example.com"));
    }
}
