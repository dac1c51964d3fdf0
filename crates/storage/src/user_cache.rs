//! A Redis snapshot of each user in front of the system of record.
//!
//! See [`CachedUserRepository`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::Pool;
use deadpool_redis::redis::{self, Script};
use keel_domain::{
    AuditEvent, Audited, BoxFuture, Email, RepositoryError, UserChange, UserId, UserQuery,
    UserRecord, UserRepository,
};
use time::OffsetDateTime;

use crate::redis_users::{decode, encode};

/// A [`UserRepository`] that answers `find_by_id` from a snapshot in Redis, so that reading the
/// signed-in user (`GET /me`, a refresh) costs a Redis round trip instead of a database one on
/// every request; everything else goes to the store behind it (PostgreSQL), which stays the
/// one truth.
///
/// # Keys
///
/// | key | holds | expires |
/// |---|---|---|
/// | `{prefix}{u:<id>}:user` | the account as the Redis user store writes it | after `ttl` (60 s) |
/// | `{prefix}{u:<id>}:user-gen` | a counter, raised by every change of the account | after a day |
///
/// Both keys of a user share the hash tag `{u:<id>}`, so the scripts that touch them together
/// are valid on a Redis Cluster.
///
/// # Consistency
///
/// A miss reads the counter with the snapshot (one `MGET`), then the account from the store,
/// then writes the snapshot only if the counter has not moved meanwhile (one script). A writer
/// changes the store first and then calls [`invalidate`](Self::invalidate), which raises the
/// counter and deletes the snapshot in one script, so a reader that raced a writer cannot put
/// the old account back. If Redis cannot answer, reads go to the store directly (the cache is
/// an optimisation, never a reason to fail), and a snapshot that an invalidation could not
/// reach lives at most `ttl`.
pub struct CachedUserRepository {
    store: Arc<dyn UserRepository>,
    pool: Pool,
    prefix: String,
    ttl: Duration,
    fill: Script,
    invalidate: Script,
}

impl CachedUserRepository {
    /// How long a snapshot lives unless invalidated sooner.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

    /// Snapshots of `store`'s accounts on `pool` (shared with the app), under `prefix`.
    pub fn new(store: Arc<dyn UserRepository>, pool: Pool, prefix: impl Into<String>) -> Self {
        Self {
            store,
            pool,
            prefix: prefix.into(),
            ttl: Self::DEFAULT_TTL,
            fill: Script::new(FILL),
            invalidate: Script::new(INVALIDATE),
        }
    }

    /// Snapshots live `ttl` instead (at least a millisecond).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(1));
        self
    }

    fn snapshot_key(&self, id: UserId) -> String {
        format!("{}{{u:{id}}}:user", self.prefix)
    }

    fn generation_key(&self, id: UserId) -> String {
        format!("{}{{u:{id}}}:user-gen", self.prefix)
    }

    /// Forgets the snapshot of `id`, in a way that a concurrent read cannot undo. Call it after
    /// every change of the account in the store.
    ///
    /// # Errors
    ///
    /// [`RepositoryError::Unavailable`] when Redis cannot answer: the snapshot may then live
    /// until its TTL runs out.
    pub async fn invalidate(&self, id: UserId) -> Result<(), RepositoryError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(RepositoryError::unavailable)?;
        let () = self
            .invalidate
            .key(self.snapshot_key(id))
            .key(self.generation_key(id))
            .invoke_async(&mut conn)
            .await
            .map_err(RepositoryError::unavailable)?;
        Ok(())
    }

    async fn find_by_id_now(&self, id: UserId) -> Result<Option<UserRecord>, RepositoryError> {
        let snapshot_key = self.snapshot_key(id);
        let generation_key = self.generation_key(id);
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::debug!(%error, "user cache unavailable; reading the store");
                return self.store.find_by_id(id).await;
            }
        };
        let cached: Result<(Option<String>, Option<String>), _> = redis::cmd("MGET")
            .arg(&snapshot_key)
            .arg(&generation_key)
            .query_async(&mut conn)
            .await;
        let generation = match cached {
            Ok((Some(raw), _)) => match decode(&raw) {
                Ok(record) if record.user.id == id => return Ok(Some(record)),
                // Not what it should be: read the store, and let the fill replace it.
                _ => None,
            },
            Ok((None, generation)) => generation,
            Err(error) => {
                tracing::debug!(%error, "user cache unavailable; reading the store");
                return self.store.find_by_id(id).await;
            }
        };
        let record = self.store.find_by_id(id).await?;
        if let Some(record) = &record {
            let filled: Result<(), _> = self
                .fill
                .key(&snapshot_key)
                .key(&generation_key)
                .arg(generation.unwrap_or_default())
                .arg(encode(record)?)
                .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
                .invoke_async(&mut conn)
                .await;
            if let Err(error) = filled {
                tracing::debug!(%error, "could not fill the user cache");
            }
        }
        Ok(record)
    }
}

impl UserRepository for CachedUserRepository {
    fn insert(&self, record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>> {
        // A new account has no snapshot to invalidate (misses are never cached).
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
                // The store changed; a snapshot that outlived the change would hand out the
                // old hash. Not fatal when Redis is gone: snapshots expire by themselves.
                if let Err(error) = self.invalidate(id).await {
                    tracing::warn!(%error, user_id = %id, "could not invalidate a user snapshot");
                }
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
            if updated.is_some()
                && let Err(error) = self.invalidate(id).await
            {
                tracing::warn!(%error, user_id = %id, "could not invalidate a user snapshot");
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
            if let Err(error) = self.invalidate(id).await {
                tracing::warn!(%error, user_id = %id, "could not invalidate a user snapshot");
            }
            changed
        })
    }

    fn delete(&self, id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(async move {
            let deleted = self.store.delete(id).await;
            if let Err(error) = self.invalidate(id).await {
                tracing::warn!(%error, user_id = %id, "could not invalidate a user snapshot");
            }
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
            if let Err(error) = self.invalidate(id).await {
                tracing::warn!(%error, user_id = %id, "could not invalidate a user snapshot");
            }
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
            if let Err(error) = self.invalidate(id).await {
                tracing::warn!(%error, user_id = %id, "could not invalidate a user snapshot");
            }
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
            if let Err(error) = self.invalidate(id).await {
                tracing::warn!(%error, user_id = %id, "could not invalidate a user snapshot");
            }
            deleted
        })
    }
}

impl fmt::Debug for CachedUserRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedUserRepository")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// KEYS[1]: snapshot, KEYS[2]: generation. ARGV[1]: the generation the reader saw ('' for
/// none), ARGV[2]: the account JSON, ARGV[3]: the TTL in ms. Writes the snapshot only when the
/// generation has not moved since the reader looked.
const FILL: &str = r"
local seen = redis.call('GET', KEYS[2]) or ''
if seen == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
";

/// KEYS[1]: snapshot, KEYS[2]: generation. Raises the generation (kept a day: longer than any
/// read that could race it) and deletes the snapshot.
const INVALIDATE: &str = r"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('DEL', KEYS[1])
";
