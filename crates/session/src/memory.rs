//! The in-memory session store: the embedded default of a single instance.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use keel_domain::{SessionId, UserId};
use time::OffsetDateTime;

use crate::config::SessionConfig;
use crate::error::SessionError;
use crate::session::{PreviousRefresh, RefreshHash, Session, add, truncate_to_ms};
use crate::store::{BoxFuture, Result, RotateOutcome, SessionStore};

/// Every this many `create` calls, expired sessions are swept out (amortized O(1) per create).
const SWEEP_EVERY: u64 = 256;

/// A [`SessionStore`] in process memory, for development, tests and single-instance
/// deployments. Sessions are lost when the process ends and are not shared between instances.
///
/// One lock guards all of its maps, so every change is atomic. Like every store it reads no
/// clock: time comes from the `now` arguments (for `create`, from the session's `last_seen_at`).
/// Expired sessions are removed when met and by a periodic sweep during `create`.
#[derive(Debug)]
pub struct MemorySessionStore {
    config: SessionConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionId, Session>,
    by_user: HashMap<UserId, HashSet<SessionId>>,
    /// Every refresh hash (current and spent) of every stored session.
    refresh: HashMap<RefreshHash, SessionId>,
    /// The hashes each session owns, to remove them with it.
    owned: HashMap<SessionId, Vec<RefreshHash>>,
    creates_since_sweep: u64,
}

impl MemorySessionStore {
    /// An empty store. It uses `idle_ttl`, `touch_interval` and `refresh_grace` from `config`.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The number of sessions held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-changed in a way that
        // matters more than losing the store, so a poisoned lock is taken over.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn create_now(&self, session: Session, refresh_hash: RefreshHash) -> Result<Session> {
        let session = session.normalized_for_create(refresh_hash);
        let mut inner = self.lock();
        inner.creates_since_sweep += 1;
        if inner.creates_since_sweep >= SWEEP_EVERY {
            inner.creates_since_sweep = 0;
            inner.sweep(session.last_seen_at);
        }
        if inner.sessions.contains_key(&session.id) {
            return Err(SessionError::Conflict("the session id is taken".into()));
        }
        if inner.refresh.contains_key(&refresh_hash) {
            return Err(SessionError::Conflict(
                "the refresh token hash is taken".into(),
            ));
        }
        inner.refresh.insert(refresh_hash, session.id);
        inner.owned.insert(session.id, vec![refresh_hash]);
        inner
            .by_user
            .entry(session.user_id)
            .or_default()
            .insert(session.id);
        inner.sessions.insert(session.id, session.clone());
        Ok(session)
    }

    fn live_session(&self, id: SessionId, now: OffsetDateTime, touch: bool) -> Option<Session> {
        let mut inner = self.lock();
        let session = inner.sessions.get_mut(&id)?;
        if !session.is_live(now) {
            inner.purge(id);
            return None;
        }
        if touch {
            session.touch_if_due(now, &self.config);
        }
        Some(session.clone())
    }

    fn list_now(&self, user_id: UserId, now: OffsetDateTime) -> Vec<Session> {
        let mut inner = self.lock();
        let ids: Vec<SessionId> = match inner.by_user.get(&user_id) {
            Some(ids) => ids.iter().copied().collect(),
            None => return Vec::new(),
        };
        let mut live = Vec::with_capacity(ids.len());
        for id in ids {
            match inner.sessions.get(&id) {
                Some(session) if session.is_live(now) => live.push(session.clone()),
                _ => {
                    inner.purge(id);
                }
            }
        }
        sort_newest_first(&mut live);
        live
    }

    fn rotate_now(
        &self,
        presented: RefreshHash,
        new: RefreshHash,
        now: OffsetDateTime,
    ) -> Result<RotateOutcome> {
        let now = truncate_to_ms(now);
        let mut inner = self.lock();
        let Some(&id) = inner.refresh.get(&presented) else {
            return Ok(RotateOutcome::Unknown);
        };
        let Some(session) = inner.sessions.get(&id) else {
            inner.refresh.remove(&presented);
            return Ok(RotateOutcome::Unknown);
        };
        if !session.is_live(now) {
            inner.purge(id);
            return Ok(RotateOutcome::Unknown);
        }
        let Some(state) = &session.refresh else {
            return Err(SessionError::Corrupt(
                "a session without refresh state".into(),
            ));
        };
        if state.current == presented {
            if inner.refresh.contains_key(&new) {
                return Err(SessionError::Conflict(
                    "the new refresh token hash is taken".into(),
                ));
            }
            inner.refresh.insert(new, id);
            inner.owned.entry(id).or_default().push(new);
            let Some(session) = inner.sessions.get_mut(&id) else {
                return Ok(RotateOutcome::Unknown);
            };
            if let Some(state) = &mut session.refresh {
                state.previous = Some(PreviousRefresh {
                    hash: presented,
                    rotated_at: now,
                });
                state.current = new;
                state.generation += 1;
            }
            session.touch(now, &self.config);
            return Ok(RotateOutcome::Rotated(session.clone()));
        }
        let in_grace = !self.config.refresh_grace.is_zero()
            && state.previous.as_ref().is_some_and(|previous| {
                previous.hash == presented
                    && now < add(previous.rotated_at, self.config.refresh_grace)
            });
        if in_grace {
            return Ok(RotateOutcome::GraceReplay(session.clone()));
        }
        inner.purge(id);
        Ok(RotateOutcome::Reused(id))
    }
}

impl Inner {
    /// Removes a session and everything that points at it. Returns whether it existed.
    fn purge(&mut self, id: SessionId) -> bool {
        for hash in self.owned.remove(&id).unwrap_or_default() {
            self.refresh.remove(&hash);
        }
        let Some(session) = self.sessions.remove(&id) else {
            return false;
        };
        if let Some(ids) = self.by_user.get_mut(&session.user_id) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_user.remove(&session.user_id);
            }
        }
        true
    }

    fn sweep(&mut self, now: OffsetDateTime) {
        let expired: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|session| !session.is_live(now))
            .map(|session| session.id)
            .collect();
        for id in expired {
            self.purge(id);
        }
    }
}

/// Most recently created first; ties broken by id so the order is stable.
pub(crate) fn sort_newest_first(sessions: &mut [Session]) {
    sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
}

impl SessionStore for MemorySessionStore {
    fn create(
        &self,
        session: Session,
        refresh_hash: RefreshHash,
    ) -> BoxFuture<'_, Result<Session>> {
        Box::pin(async move { self.create_now(session, refresh_hash) })
    }

    fn authenticate(
        &self,
        id: SessionId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<Session>>> {
        Box::pin(async move { Ok(self.live_session(id, now, true)) })
    }

    fn get(&self, id: SessionId, now: OffsetDateTime) -> BoxFuture<'_, Result<Option<Session>>> {
        Box::pin(async move { Ok(self.live_session(id, now, false)) })
    }

    fn list_for_user(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Vec<Session>>> {
        Box::pin(async move { Ok(self.list_now(user_id, now)) })
    }

    fn revoke(&self, id: SessionId) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move { Ok(self.lock().purge(id)) })
    }

    fn revoke_all_for_user(&self, user_id: UserId) -> BoxFuture<'_, Result<Vec<SessionId>>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let ids = inner.by_user.remove(&user_id).unwrap_or_default();
            Ok(ids.into_iter().filter(|id| inner.purge(*id)).collect())
        })
    }

    fn rotate_refresh(
        &self,
        presented_hash: RefreshHash,
        new_hash: RefreshHash,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<RotateOutcome>> {
        Box::pin(async move {
            if presented_hash == new_hash {
                return Err(SessionError::InvalidArgument(
                    "the new refresh token hash equals the presented one".into(),
                ));
            }
            self.rotate_now(presented_hash, new_hash, now)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn create_sweeps_expired_sessions_now_and_then() {
        let config = SessionConfig {
            idle_ttl: Duration::from_secs(3600),
            ..SessionConfig::default()
        };
        let store = MemorySessionStore::new(config.clone());
        let start = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let stale = Session::new(UserId::generate(), start, &config);
        store
            .create(stale, RefreshHash::of_token("stale"))
            .await
            .unwrap();
        let later = start + time::Duration::hours(2);
        for i in 1..SWEEP_EVERY {
            let session = Session::new(UserId::generate(), later, &config);
            store
                .create(session, RefreshHash::of_token(&i.to_string()))
                .await
                .unwrap();
        }
        // The 256th create swept the stale session out, with its refresh hash.
        assert_eq!(store.len(), usize::try_from(SWEEP_EVERY).unwrap() - 1);
        assert!(
            !store
                .lock()
                .refresh
                .contains_key(&RefreshHash::of_token("stale"))
        );
    }
}
