//! Request authentication alone: an access token checked against a [`KeyRing`], then its
//! session against the registry. What another service needs to accept Keel's access tokens,
//! with Keel's instant revocation, without a user store or a password hasher.
//!
//! [`Auth`](crate::Auth) authenticates requests through a [`Verifier`] too, so both answer
//! alike: the same checks, the same [`AuthError`]s.
//!
//! A service that does not hold Keel's private key builds its ring from Keel's published keys
//! ([`KeyRing::from_jwks`] over `GET /.well-known/jwks.json`) and its registry on the Redis that
//! Keel uses ([`RedisSessionStore`](keel_session::RedisSessionStore) with Keel's `key_prefix`).

use std::fmt;
use std::sync::Arc;

use keel_domain::{Clock, SessionId};
use keel_session::SessionStore;

use crate::jwt::KeyRing;
use crate::service::{AuthError, Principal};

/// Verifies access tokens and checks their sessions: the request-authentication half of
/// [`Auth`](crate::Auth), built from a key ring, a session registry and a clock only.
///
/// Every verification asks the registry (one round trip: [`SessionStore::authenticate`]),
/// also for a token answered from the ring's verification cache, so a logout on Keel ends the
/// session's access tokens everywhere at once. When the registry cannot answer, verification
/// fails closed: [`AuthError::Unavailable`], never [`AuthError::Unauthorized`] and never a
/// principal.
///
/// Cheap to clone: clones share the ring (and its cache), the store and the clock.
#[derive(Clone)]
pub struct Verifier {
    keys: KeyRing,
    sessions: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier over these parts. `sessions` must be the registry the tokens' issuer writes
    /// to (for Redis: the same server and `key_prefix`, and best the same `idle_ttl` and
    /// `touch_interval`, since checking a session records its activity).
    pub fn new(keys: KeyRing, sessions: Arc<dyn SessionStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys,
            sessions,
            clock,
        }
    }

    /// The key ring tokens are verified with.
    pub fn key_ring(&self) -> &KeyRing {
        &self.keys
    }

    /// Authenticates `Authorization: Bearer <token>`: verifies the JWT (through the key ring's
    /// cache), then asks the registry, in one round trip, for the live session it names, which
    /// must belong to the token's subject.
    ///
    /// # Errors
    ///
    /// - [`AuthError::InvalidToken`]: a token that does not verify (signature, `kid`, `typ`,
    ///   `iss`, `aud`, a missing claim), or whose subject does not own its session;
    /// - [`AuthError::TokenExpired`]: a well-signed token past its `exp` (plus leeway);
    /// - [`AuthError::Unauthorized`]: the session is revoked, expired or unknown;
    /// - [`AuthError::Unavailable`]: the registry cannot answer (fail closed).
    pub async fn verify_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        let now = self.clock.now();
        let claims = self.keys.verify_access_cached(token, now)?;
        let Some(session) = self.sessions.authenticate(claims.sid, now).await? else {
            return Err(AuthError::Unauthorized);
        };
        if session.user_id != claims.sub {
            // A validly signed token whose session belongs to someone else: never Keel's own
            // doing (a leaked key, or a bug). Refuse it as a bad token.
            tracing::warn!(
                session_id = %session.id,
                "access token subject does not own its session"
            );
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal {
            user_id: session.user_id,
            session,
        })
    }

    /// Authenticates a session id (read from the session cookie): the session must be live in
    /// the registry. [`AuthError::Unauthorized`] when it is not, [`AuthError::Unavailable`]
    /// when the registry cannot answer.
    pub async fn verify_session(&self, session_id: SessionId) -> Result<Principal, AuthError> {
        let now = self.clock.now();
        let Some(session) = self.sessions.authenticate(session_id, now).await? else {
            return Err(AuthError::Unauthorized);
        };
        Ok(Principal {
            user_id: session.user_id,
            session,
        })
    }
}

#[cfg(test)]
mod tests;
