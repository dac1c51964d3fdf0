//! The `SessionStore` port.

use std::future::Future;
use std::pin::Pin;

use keel_domain::{SessionId, UserId};
use time::OffsetDateTime;

use crate::error::SessionError;
use crate::session::{RefreshHash, Session};

/// A boxed, `Send` future: what the object-safe [`SessionStore`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The result type of this crate.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// What [`SessionStore::rotate_refresh`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented hash was the current one: the new hash is now current, the presented one
    /// is spent, and the session's activity was recorded. Carries the updated session.
    Rotated(Session),
    /// The presented hash was a spent one of a live session: the whole session has been
    /// revoked in the same atomic step (refresh-token reuse, a sign of theft).
    Reused(SessionId),
    /// Only with a grace window (`refresh_grace` > 0): the presented hash is the one replaced
    /// by the last rotation, less than `refresh_grace` ago (racing browser tabs, a retry).
    /// Nothing changed and `new_hash` was *not* installed; the session's current hash is the
    /// one the winning rotation installed. A caller that derives successors from the presented
    /// token (as keel-auth does) can answer the winner's successor again when its hash is that
    /// current one; any other caller must not hand out a refresh token for this outcome.
    GraceReplay(Session),
    /// No live session knows the presented hash.
    Unknown,
}

/// The server-side session registry: the single source of truth for sessions.
///
/// Every method that depends on time takes `now` from the caller (who owns the
/// [`Clock`](keel_domain::Clock)); the stores read no clock of their own, so tests move time
/// without sleeping. Every change that touches more than one record is atomic: one Lua script
/// on Redis, one lock in memory. Errors: [`SessionError::Unavailable`] when the store cannot
/// answer (callers authenticating a request must fail closed on it).
///
/// An expired session that a method comes across is removed on the way.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session with `refresh_hash` as its current refresh token (generation 0).
    /// The record is normalized (whole milliseconds, user agent cut, idle expiry no later than
    /// the absolute one) and returned as stored.
    ///
    /// Fails with [`SessionError::Conflict`] when the id or the hash is already known.
    fn create(&self, session: Session, refresh_hash: RefreshHash)
    -> BoxFuture<'_, Result<Session>>;

    /// The session `id` if it exists and is live at `now`. In the same atomic step (one round
    /// trip on Redis), records activity when `touch_interval` has passed since `last_seen_at`:
    /// moves `last_seen_at` to `now` and the idle expiry to `now + idle_ttl` (capped by the
    /// absolute expiry). Returns the session as stored after that step.
    fn authenticate(
        &self,
        id: SessionId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<Session>>>;

    /// The session `id` if it exists and is live at `now`, without recording activity.
    fn get(&self, id: SessionId, now: OffsetDateTime) -> BoxFuture<'_, Result<Option<Session>>>;

    /// The live sessions of `user_id` at `now`, most recently created first. Reads a per-user
    /// index (never scans the keyspace) and drops expired entries from it.
    fn list_for_user(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Vec<Session>>>;

    /// Removes session `id` with its user-index entry and every refresh-token hash it owns.
    /// Returns whether a session record existed.
    fn revoke(&self, id: SessionId) -> BoxFuture<'_, Result<bool>>;

    /// Removes every session of `user_id` (as [`revoke`](Self::revoke) does) and returns the
    /// ids of the removed sessions.
    fn revoke_all_for_user(&self, user_id: UserId) -> BoxFuture<'_, Result<Vec<SessionId>>>;

    /// Rotates a refresh token atomically; see [`RotateOutcome`]. Of two rotations with the
    /// same token, at most one is ever [`RotateOutcome::Rotated`]. Spent hashes are remembered
    /// for the session's remaining absolute lifetime (until the session is revoked).
    ///
    /// Fails with [`SessionError::InvalidArgument`] when `new_hash == presented_hash`, and
    /// with [`SessionError::Conflict`] when `new_hash` is already known.
    fn rotate_refresh(
        &self,
        presented_hash: RefreshHash,
        new_hash: RefreshHash,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<RotateOutcome>>;
}
