//! Identifiers of the things Keel knows about.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID (one read back from a store, say).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A user's id: a UUIDv7, so ids sort by creation time and index well.
    UserId
);

uuid_id!(
    /// A session's id: a random UUIDv4 (122 random bits). It travels in the session cookie, so
    /// it must be unguessable; a time-ordered v7 would leak when the session was created.
    SessionId
);

impl UserId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl SessionId {
    /// A fresh, random id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let user = UserId::generate();
        assert_eq!(user.to_string().parse::<UserId>().unwrap(), user);
        let session = SessionId::generate();
        assert_eq!(session.to_string().parse::<SessionId>().unwrap(), session);
    }

    #[test]
    fn session_ids_are_random_and_user_ids_are_time_ordered() {
        assert_eq!(SessionId::generate().as_uuid().get_version_num(), 4);
        assert_eq!(UserId::generate().as_uuid().get_version_num(), 7);
        assert_ne!(SessionId::generate(), SessionId::generate());
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id: UserId = "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a\""
        );
    }

    #[test]
    fn garbage_is_not_an_id() {
        assert!("not-a-uuid".parse::<SessionId>().is_err());
    }
}
