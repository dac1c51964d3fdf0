//! The claims of a Keel access token and the result of issuing one.

use std::fmt;

use keel_domain::{SessionId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The verified claims of an access token (RFC 9068 profile, plus Keel's `sid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the configured issuer.
    pub iss: String,
    /// Audience: the configured audience.
    pub aud: String,
    /// Subject: the user.
    pub sub: UserId,
    /// The server-side session this token belongs to; its revocation ends the token too.
    pub sid: SessionId,
    /// A random token id (128 bits, base64url).
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
}

impl AccessClaims {
    /// `exp` as a date-time.
    pub fn expires_at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.exp).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// `iat` as a date-time.
    pub fn issued_at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.iat).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// The claims as they come out of a token, before Keel decides what is missing: decoding
/// straight into [`AccessClaims`] would turn a missing claim into an opaque JSON error.
#[derive(Deserialize)]
pub(crate) struct RawClaims {
    pub(crate) iss: Option<String>,
    pub(crate) aud: Option<String>,
    pub(crate) sub: Option<UserId>,
    pub(crate) sid: Option<SessionId>,
    pub(crate) jti: Option<String>,
    pub(crate) iat: Option<i64>,
    pub(crate) exp: Option<i64>,
}

/// A freshly signed access token.
///
/// `Debug` hides the token: it is a bearer credential.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWS, for `Authorization: Bearer`.
    pub token: String,
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`.
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[REDACTED]")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}
