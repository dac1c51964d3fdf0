//! The JWT module's errors. They never carry a key, a secret or a token.

use std::fmt;

/// Why an access token was refused. Every reason gets the same 401 at the edge; the detail is
/// for logs and tests only, and must never be shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTokenReason {
    /// Not three base64url parts with a JSON header and payload, or a claim of the wrong type.
    Malformed,
    /// The header names another algorithm than the configured one (including `none`, which
    /// never parses as an algorithm and so ends up as [`Malformed`](Self::Malformed)).
    Algorithm,
    /// The `typ` header is not `at+jwt`: an ID token or some other JWT.
    Type,
    /// The header has a `crit` member; Keel understands no extension, so RFC 7515 §4.1.11 says
    /// refuse.
    CriticalHeader,
    /// No `kid` header, or a `kid` that is not in the key ring.
    UnknownKey,
    /// The signature does not match.
    Signature,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` is not the configured audience.
    Audience,
    /// A required claim is missing.
    MissingClaim(String),
}

impl fmt::Display for InvalidTokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed token"),
            Self::Algorithm => f.write_str("algorithm not accepted"),
            Self::Type => f.write_str("typ is not at+jwt"),
            Self::CriticalHeader => f.write_str("unsupported critical header"),
            Self::UnknownKey => f.write_str("unknown or missing kid"),
            Self::Signature => f.write_str("bad signature"),
            Self::Issuer => f.write_str("wrong issuer"),
            Self::Audience => f.write_str("wrong audience"),
            Self::MissingClaim(claim) => write!(f, "missing claim `{claim}`"),
        }
    }
}

/// What can go wrong while configuring keys, issuing or verifying access tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token was valid but its `exp` (plus leeway) has passed. Only reported for tokens whose
    /// signature checked out, so it reveals nothing about forged tokens.
    #[error("access token expired")]
    Expired,
    /// The token was refused; see the reason.
    #[error("access token invalid: {0}")]
    Invalid(InvalidTokenReason),
    /// The configuration has no key at all.
    #[error("no JWT key configured")]
    NoKeys,
    /// An HS256 secret shorter than 32 bytes.
    #[error("JWT key `{kid}`: an HS256 secret needs at least 32 bytes, this one has {len}")]
    SecretTooShort {
        /// The key's id.
        kid: String,
        /// The secret's length in bytes.
        len: usize,
    },
    /// A key that cannot be used: unreadable PEM, wrong key type for the algorithm, empty or
    /// duplicate `kid`.
    #[error("JWT key `{kid}`: {reason}")]
    InvalidKey {
        /// The key's id (may be empty, when that is the problem).
        kid: String,
        /// What is wrong, without any key material.
        reason: String,
    },
    /// A setting outside what Keel accepts (empty issuer, zero TTL, a leeway that is not small).
    #[error("JWT configuration: {0}")]
    InvalidConfig(String),
    /// Signing failed, or the start-up self-test did not verify its own token.
    #[error("JWT signing failed: {0}")]
    Signing(String),
    /// The ring holds no private key (it was built from a JWKS): it verifies but never signs.
    #[error("this key ring only verifies: it holds no private key")]
    VerifyOnly,
}

impl JwtError {
    pub(crate) fn invalid(reason: InvalidTokenReason) -> Self {
        Self::Invalid(reason)
    }

    pub(crate) fn key(kid: &str, reason: impl Into<String>) -> Self {
        Self::InvalidKey {
            kid: kid.to_owned(),
            reason: reason.into(),
        }
    }
}
