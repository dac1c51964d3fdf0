//! Why an authentication use case failed, and how the errors of the ports become one.

use std::error::Error as StdError;

use keel_domain::RepositoryError;
use keel_session::SessionError;

use crate::jwt::JwtError;
use crate::password::PasswordError;

/// Why an authentication use case failed. HTTP-free: the edge maps each variant to a status
/// (401 for the credential and token variants, 404, 503).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Login refused: unknown email, malformed email or wrong password. Deliberately one
    /// variant, so the response never tells which.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A token that is not valid: bad signature or claims, an unknown or spent-in-grace refresh
    /// token, a token whose user no longer exists.
    #[error("invalid token")]
    InvalidToken,
    /// A well-signed access token past its `exp`.
    #[error("token expired")]
    TokenExpired,
    /// A spent refresh token was presented again: its whole session has been revoked.
    #[error("refresh token reused; the session has been revoked")]
    TokenReused,
    /// The password was right, but the account is disabled. Only answered after the password
    /// verified, so it tells nothing to someone who does not know it.
    #[error("the account is disabled")]
    AccountDisabled,
    /// The credentials point at a session that is revoked or expired (or a user who is gone).
    #[error("unauthorized")]
    Unauthorized,
    /// The session asked for is not one of the caller's (or does not exist; the two are
    /// deliberately the same).
    #[error("not found")]
    NotFound,
    /// Password hashing is saturated; the client may retry shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// A store (or the signer) cannot answer. Authentication fails closed on it: the edge
    /// answers 503, never 401 and never allows the request.
    #[error("a dependency of authentication is unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
}

impl AuthError {
    fn unavailable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }
}

impl From<SessionError> for AuthError {
    fn from(error: SessionError) -> Self {
        // Every session-store error is one the client cannot fix: an outage, undecodable data,
        // or a conflict that only a bug or a 2^-256 coincidence can cause. All fail closed.
        Self::unavailable(error)
    }
}

impl From<RepositoryError> for AuthError {
    fn from(error: RepositoryError) -> Self {
        Self::unavailable(error)
    }
}

impl From<PasswordError> for AuthError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => Self::Busy,
            other => Self::unavailable(other),
        }
    }
}

impl From<JwtError> for AuthError {
    fn from(error: JwtError) -> Self {
        match error {
            JwtError::Expired => Self::TokenExpired,
            JwtError::Invalid(_) => Self::InvalidToken,
            // Issuing failed: a broken key, which the start-up self-test should have caught.
            other => Self::unavailable(other),
        }
    }
}
