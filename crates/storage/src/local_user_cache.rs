//! A short-lived copy of each user in process memory, for an instance that is the only one on
//! its store.
//!
//! See [`LocalUserCache`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keel_domain::{
    AuditEvent, Audited, BoxFuture, Email, RepositoryError, UserChange, UserId, UserQuery,
    UserRecord, UserRepository,
};
use time::OffsetDateTime;

/// A [`UserRepository`] that answers `find_by_id` from a copy in this process's memory for a
/// few seconds, so that reading the signed-in user (`GET /me`, a refresh) does not cost a
/// database round trip on every request; everything else goes to the store behind it.
///
/// It is meant for the one topology where no shared cache exists: a single instance on
/// PostgreSQL without Redis (with Redis, [`CachedUserRepository`](crate::CachedUserRepository)
/// keeps the snapshot where every instance sees its invalidation). Every change that goes
/// through this instance calls [`invalidate`](Self::invalidate), so this instance never serves
/// an account older than its last change. A change made elsewhere (another process writing the
/// database, an instance that should not be there) is seen after at most `ttl` (5 s).
///
/// A reader that raced an invalidation cannot put the old account back: a fill only lands if
/// no invalidation happened since the reader's miss. Memory is bounded by `capacity` entries
/// (100,000): when full, expired entries go first, and a miss that still finds no room is
/// served without being kept.
pub struct LocalUserCache {
    store: Arc<dyn UserRepository>,
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<UserId, (Instant, UserRecord)>>,
    /// Raised by every invalidation; a fill that saw an older value is dropped.
    invalidations: AtomicU64,
}

impl LocalUserCache {
    /// How long a copy is served unless invalidated sooner.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
    /// How many users are kept at most.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// Copies of `store`'s accounts with the default TTL and capacity.
    pub fn new(store: Arc<dyn UserRepository>) -> Self {
        Self {
            store,
            ttl: Self::DEFAULT_TTL,
            capacity: Self::DEFAULT_CAPACITY,
            entries: Mutex::new(HashMap::new()),
            invalidations: AtomicU64::new(0),
        }
    }

    /// Copies live `ttl` instead.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// At most `capacity` users are kept (at least one).
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Forgets the copy of `id`; call it after every change of the account in the store.
    pub fn invalidate(&self, id: UserId) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.lock().remove(&id);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<UserId, (Instant, UserRecord)>> {
        // Entries are whole values: a panic elsewhere cannot leave one half-written.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn find_by_id_now(&self, id: UserId) -> Result<Option<UserRecord>, RepositoryError> {
        let now = Instant::now();
        if let Some((stored, record)) = self.lock().get(&id)
            && now.duration_since(*stored) < self.ttl
        {
            return Ok(Some(record.clone()));
        }
        let seen = self.invalidations.load(Ordering::SeqCst);
        let record = self.store.find_by_id(id).await?;
        if let Some(record) = &record {
            let mut entries = self.lock();
            // Checked under the lock that `invalidate` also takes after raising the counter, so
            // an invalidation either shows here or removes this entry after it lands.
            if self.invalidations.load(Ordering::SeqCst) == seen {
                if entries.len() >= self.capacity {
                    let ttl = self.ttl;
                    entries.retain(|_, (stored, _)| now.duration_since(*stored) < ttl);
                }
                if entries.len() < self.capacity || entries.contains_key(&id) {
                    entries.insert(id, (now, record.clone()));
                }
            }
        }
        Ok(record)
    }
}

impl UserRepository for LocalUserCache {
    fn insert(&self, record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>> {
        // A new account has no copy to invalidate (misses are never kept).
        self.store.insert(record)
    }

    fn find_by_email(
        &self,
        email: &Email,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        self.store.find_by_email(email)
    }

    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(self.find_by_id_now(id))
    }

    fn replace_password_hash(
        &self,
        id: UserId,
        expected: String,
        new_hash: String,
    ) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(async move {
            let replaced = self
                .store
                .replace_password_hash(id, expected, new_hash)
                .await?;
            if replaced {
                self.invalidate(id);
            }
            Ok(replaced)
        })
    }

    fn update(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(async move {
            let updated = self.store.update(id, change, now).await?;
            if updated.is_some() {
                self.invalidate(id);
            }
            Ok(updated)
        })
    }

    fn change_email(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(async move {
            let changed = self.store.change_email(id, email, now).await;
            // Also on an error: the store may have changed before the answer was lost.
            self.invalidate(id);
            changed
        })
    }

    fn delete(&self, id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(async move {
            let deleted = self.store.delete(id).await;
            self.invalidate(id);
            deleted
        })
    }

    fn list(&self, query: UserQuery) -> BoxFuture<'_, Result<Vec<UserRecord>, RepositoryError>> {
        // Administration reads the store itself: a list must not be a page of stale copies.
        self.store.list(query)
    }

    fn update_audited(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<Option<UserRecord>>, RepositoryError>> {
        Box::pin(async move {
            let updated = self.store.update_audited(id, change, now, event).await;
            self.invalidate(id);
            updated
        })
    }

    fn change_email_audited(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<Option<UserRecord>>, RepositoryError>> {
        Box::pin(async move {
            let changed = self.store.change_email_audited(id, email, now, event).await;
            self.invalidate(id);
            changed
        })
    }

    fn delete_audited(
        &self,
        id: UserId,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<bool>, RepositoryError>> {
        Box::pin(async move {
            let deleted = self.store.delete_audited(id, event).await;
            self.invalidate(id);
            deleted
        })
    }
}

impl fmt::Debug for LocalUserCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalUserCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("entries", &self.lock().len())
            .finish_non_exhaustive()
    }
}
