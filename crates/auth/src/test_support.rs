//! Test support shared by the unit tests of this crate.

use keel_domain::{BoxFuture, SessionId, UserId};
use keel_session::{RefreshHash, RotateOutcome, Session, SessionError, SessionStore};

/// A session store that cannot answer anything, like Redis when it is down.
pub(crate) struct DownStore;

impl DownStore {
    fn down<T: Send + 'static>() -> BoxFuture<'static, keel_session::Result<T>> {
        Box::pin(std::future::ready(Err(SessionError::Unavailable(
            "connection refused".into(),
        ))))
    }
}

impl SessionStore for DownStore {
    fn create(
        &self,
        _session: Session,
        _refresh_hash: RefreshHash,
    ) -> BoxFuture<'_, keel_session::Result<Session>> {
        Self::down()
    }

    fn authenticate(
        &self,
        _id: SessionId,
        _now: time::OffsetDateTime,
    ) -> BoxFuture<'_, keel_session::Result<Option<Session>>> {
        Self::down()
    }

    fn get(
        &self,
        _id: SessionId,
        _now: time::OffsetDateTime,
    ) -> BoxFuture<'_, keel_session::Result<Option<Session>>> {
        Self::down()
    }

    fn list_for_user(
        &self,
        _user_id: UserId,
        _now: time::OffsetDateTime,
    ) -> BoxFuture<'_, keel_session::Result<Vec<Session>>> {
        Self::down()
    }

    fn revoke(&self, _id: SessionId) -> BoxFuture<'_, keel_session::Result<bool>> {
        Self::down()
    }

    fn revoke_all_for_user(
        &self,
        _user_id: UserId,
    ) -> BoxFuture<'_, keel_session::Result<Vec<SessionId>>> {
        Self::down()
    }

    fn rotate_refresh(
        &self,
        _presented_hash: RefreshHash,
        _new_hash: RefreshHash,
        _now: time::OffsetDateTime,
    ) -> BoxFuture<'_, keel_session::Result<RotateOutcome>> {
        Self::down()
    }
}
