//! Users, as clients see them and as stores keep them.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::display_name::DisplayName;
use crate::email::Email;
use crate::ids::UserId;

/// A user account, in the shape of the contract's `User` object:
/// `{"id", "email", "displayName", "createdAt"}` with `createdAt` an RFC 3339 UTC string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The address the user registered with, as they typed it.
    pub email: Email,
    /// The name the user is shown by.
    pub display_name: DisplayName,
    /// When the account was created.
    #[serde(with = "rfc3339_utc")]
    pub created_at: OffsetDateTime,
}

/// What a user store keeps about a user: the user and their password hash.
///
/// Deliberately not `Serialize`, and its `Debug` output leaves the hash out, so the hash cannot
/// leak into a response or a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user.
    pub user: User,
    /// The password hash as a PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("user", &self.user)
            .field("password_hash", &"[REDACTED]")
            .finish()
    }
}

/// RFC 3339 in UTC whatever offset the value carries, because the contract promises UTC strings.
mod rfc3339_utc {
    use serde::{Deserializer, Serializer};
    use time::{OffsetDateTime, UtcOffset};

    pub(super) fn serialize<S: Serializer>(
        value: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(&value.to_offset(UtcOffset::UTC), serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        time::serde::rfc3339::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn user() -> User {
        User {
            id: "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a".parse().unwrap(),
            email: Email::parse("Ada@Example.com").unwrap(),
            display_name: DisplayName::parse("Ada").unwrap(),
            created_at: datetime!(2025-01-02 03:04:05 +02:00),
        }
    }

    #[test]
    fn a_user_serializes_in_the_contract_shape_with_a_utc_timestamp() {
        assert_eq!(
            serde_json::to_value(user()).unwrap(),
            serde_json::json!({
                "id": "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a",
                "email": "Ada@Example.com",
                "displayName": "Ada",
                "createdAt": "2025-01-02T01:04:05Z",
            })
        );
    }

    #[test]
    fn a_user_round_trips_through_json() {
        let user = user();
        let json = serde_json::to_string(&user).unwrap();
        assert_eq!(serde_json::from_str::<User>(&json).unwrap(), user);
    }

    #[test]
    fn a_record_never_shows_its_hash() {
        let record = UserRecord {
            user: user(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        };
        let debug = format!("{record:?}");
        assert!(!debug.contains("argon2id"), "{debug}");
        assert!(debug.contains("[REDACTED]"));
        assert!(debug.contains("Ada@Example.com"));
    }
}
