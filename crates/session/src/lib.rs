//! Keel's server-side session registry: the single source of truth for sessions.
//!
//! A [`Session`] is a record in a [`SessionStore`]: who it belongs to, its absolute and idle
//! expiry, where it came from, and the state of its refresh token (the SHA-256
//! [`RefreshHash`] of the current token, a generation counter and the previous hash for an
//! optional grace window). Access tokens and the session cookie only carry the session id; every
//! request is checked against the registry, so revoking a session takes effect at once.
//!
//! Two stores implement the port:
//!
//! - [`MemorySessionStore`]: in process memory, the embedded default of a single instance;
//! - [`RedisSessionStore`]: on Redis through a `deadpool_redis::Pool` shared with the rest of
//!   the app (build one with [`redis_pool`], which sets the connect, response and pool-wait
//!   timeouts that bound every call). Redis forgets expired sessions by itself (key TTLs).
//!
//! Both behave the same, which one conformance test suite checks. Time is always the caller's:
//! the methods that depend on it take `now`, so the owner of the [`Clock`](keel_domain::Clock)
//! decides, and tests move time without sleeping.
//!
//! Refresh tokens rotate atomically on every use ([`SessionStore::rotate_refresh`]): presenting
//! a spent token revokes the whole session in the same step ([`RotateOutcome::Reused`]).
//!
//! When the store cannot answer, every method fails with [`SessionError::Unavailable`], and
//! authentication must fail closed on it. This crate knows nothing of HTTP; the `actix` feature
//! (the session cookie) is the only part that will.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_session::SessionError> {
//! use keel_domain::UserId;
//! use keel_session::{
//!     MemorySessionStore, RefreshHash, RotateOutcome, Session, SessionConfig, SessionStore,
//! };
//! use time::OffsetDateTime;
//!
//! let config = SessionConfig::default();
//! let store = MemorySessionStore::new(config.clone());
//! let now = OffsetDateTime::now_utc();
//! let session = Session::new(UserId::generate(), now, &config).with_user_agent("curl/8");
//! let session = store.create(session, RefreshHash::of_token("first token")).await?;
//! assert!(store.authenticate(session.id, now).await?.is_some());
//!
//! let outcome = store
//!     .rotate_refresh(RefreshHash::of_token("first token"), RefreshHash::of_token("second"), now)
//!     .await?;
//! assert!(matches!(outcome, RotateOutcome::Rotated(_)));
//! // The first token is spent now: presenting it again revokes the session.
//! let outcome = store
//!     .rotate_refresh(RefreshHash::of_token("first token"), RefreshHash::of_token("third"), now)
//!     .await?;
//! assert_eq!(outcome, RotateOutcome::Reused(session.id));
//! assert!(store.authenticate(session.id, now).await?.is_none());
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod memory;
mod redis;
mod session;
mod store;

pub use config::SessionConfig;
pub use error::SessionError;
pub use memory::MemorySessionStore;
pub use redis::{RedisPoolConfig, RedisSessionStore, redis_pool};
pub use session::{
    InvalidRefreshHash, MAX_USER_AGENT_CHARS, PreviousRefresh, RefreshHash, RefreshState, Session,
};
pub use store::{BoxFuture, Result, RotateOutcome, SessionStore};

/// The deadpool-redis version this crate is built on, re-exported so callers name the same
/// `Pool` type.
pub use deadpool_redis;
