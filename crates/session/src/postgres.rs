//! The PostgreSQL session store (feature `postgres`).

use std::net::IpAddr;
use std::time::Duration;

use keel_domain::{SessionId, UserId};
use sqlx::postgres::{PgDatabaseError, PgPool, PgRow};
use sqlx::{Postgres, Row as _, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::SessionConfig;
use crate::error::SessionError;
use crate::memory::sort_newest_first;
use crate::session::{PreviousRefresh, RefreshHash, RefreshState, Session, add, truncate_to_ms};
use crate::store::{BoxFuture, Result, RotateOutcome, SessionStore};

/// The columns [`decode`] reads, for a `SELECT` or a `RETURNING` (a macro, so queries stay
/// `&'static str` literals built with `concat!`).
macro_rules! columns {
    () => {
        "id, user_id, created_at, last_seen_at, expires_at, idle_expires_at, user_agent, ip, \
         refresh_hash, refresh_generation, previous_refresh_hash, previous_rotated_at"
    };
}

/// A [`SessionStore`] on PostgreSQL: sessions survive restarts and deploys of a single
/// instance that runs without Redis, and are shared by instances on one database.
///
/// It needs the `sessions` and `session_refresh_tokens` tables of keel-storage's migration set
/// (`keel_storage::postgres::migrate`), which is the one migration set of the whole database.
///
/// Every operation is one statement, or one transaction where it must read before it decides
/// (rotation): a rotation locks the session's row (`SELECT ... FOR UPDATE`), so of two
/// rotations with one token the second sees what the first did, and at most one is ever
/// [`RotateOutcome::Rotated`]. Authentication is one primary-key read; once per touch interval
/// it is followed by the write that records the activity (a conditional `UPDATE`, so of two
/// requests that both find the touch due, one writes and the other keeps what it read).
///
/// Ended sessions are removed when met and by [`purge_ended`](Self::purge_ended), which the
/// application runs now and then in bounded batches (PostgreSQL has no TTLs).
///
/// Every call is bounded by `call_timeout` on the client side as well as by the pool's own
/// timeouts: a frozen server cannot hang a request. Errors: [`SessionError::Unavailable`] when
/// the database cannot answer, [`SessionError::Conflict`] for a taken id or hash.
#[derive(Clone)]
pub struct PgSessionStore {
    pool: PgPool,
    config: SessionConfig,
    call_timeout: Duration,
}

impl std::fmt::Debug for PgSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSessionStore")
            .field("config", &self.config)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl PgSessionStore {
    /// A store on `pool`, each call bounded by `call_timeout` (a pool wait plus a statement,
    /// as `keel_storage::postgres::DatabaseConfig::call_timeout` computes it). Does not touch
    /// the database.
    pub fn new(pool: PgPool, config: SessionConfig, call_timeout: Duration) -> Self {
        Self {
            pool,
            config,
            call_timeout,
        }
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Removes up to `limit` sessions that ended before `now` (idle or absolute expiry), with
    /// their refresh tokens, and returns how many it removed. Run it until it removes fewer
    /// than `limit`, so no single statement holds many locks.
    pub async fn purge_ended(&self, now: OffsetDateTime, limit: u32) -> Result<u64> {
        self.bounded(async {
            let done = sqlx::query(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                 WHERE LEAST(expires_at, idle_expires_at) <= $1 LIMIT $2)",
            )
            .bind(now)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(database_error)?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn bounded<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SessionError::Unavailable(
                format!(
                    "no answer from PostgreSQL within {} ms",
                    self.call_timeout.as_millis()
                )
                .into(),
            )),
        }
    }

    async fn create_now(&self, session: Session, refresh_hash: RefreshHash) -> Result<Session> {
        let session = session.normalized_for_create(refresh_hash);
        // One statement: the session and its first refresh token are stored together or not.
        let created = sqlx::query(
            "WITH created AS ( \
               INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, \
                 idle_expires_at, user_agent, ip, refresh_hash, refresh_generation) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0) RETURNING id) \
             INSERT INTO session_refresh_tokens (hash, session_id) SELECT $9, id FROM created",
        )
        .bind(session.id.as_uuid())
        .bind(session.user_id.as_uuid())
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .bind(session.expires_at)
        .bind(session.idle_expires_at)
        .bind(session.user_agent.as_deref())
        .bind(session.ip)
        .bind(refresh_hash.as_bytes().as_slice())
        .execute(&self.pool)
        .await;
        match created {
            Ok(_) => Ok(session),
            Err(error) => Err(conflict_or_unavailable(error)),
        }
    }

    async fn live_session(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        touch: bool,
    ) -> Result<Option<Session>> {
        let now = truncate_to_ms(now);
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM sessions WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        let Some(session) = row.as_ref().map(decode).transpose()? else {
            return Ok(None);
        };
        if !session.is_live(now) {
            self.delete(id).await?;
            return Ok(None);
        }
        if !touch || now - session.last_seen_at < self.config.touch_interval {
            // The common case: one primary-key read, no write.
            return Ok(Some(session));
        }
        // Once per touch interval: record the activity, unless another request just did (or
        // the session ended meanwhile); either way the session was live when it was read.
        let touched = sqlx::query(concat!(
            "UPDATE sessions SET last_seen_at = $2, idle_expires_at = LEAST($3, expires_at) ",
            "WHERE id = $1 AND $2 < expires_at AND $2 < idle_expires_at AND last_seen_at <= $4 ",
            "RETURNING ",
            columns!()
        ))
        .bind(id.as_uuid())
        .bind(now)
        .bind(add(now, self.config.idle_ttl))
        .bind(sub(now, self.config.touch_interval))
        .fetch_optional(&self.pool)
        .await
        .map_err(database_error)?;
        match touched {
            Some(row) => decode(&row).map(Some),
            None => Ok(Some(session)),
        }
    }

    async fn delete(&self, id: SessionId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(database_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_now(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Session>> {
        // The ended sessions are dropped and the live ones read in one statement (the SELECT
        // sees the rows as they were before the DELETE, so it filters by liveness itself).
        let rows = sqlx::query(concat!(
            "WITH ended AS (DELETE FROM sessions ",
            "WHERE user_id = $1 AND LEAST(expires_at, idle_expires_at) <= $2) ",
            "SELECT ",
            columns!(),
            " FROM sessions WHERE user_id = $1 AND LEAST(expires_at, idle_expires_at) > $2"
        ))
        .bind(user_id.as_uuid())
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        let mut sessions = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        sort_newest_first(&mut sessions);
        Ok(sessions)
    }

    async fn revoke_all_now(&self, user_id: UserId) -> Result<Vec<SessionId>> {
        let rows = sqlx::query("DELETE FROM sessions WHERE user_id = $1 RETURNING id")
            .bind(user_id.as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(database_error)?;
        rows.iter()
            .map(|row| {
                row.try_get::<Uuid, _>("id")
                    .map(SessionId::from_uuid)
                    .map_err(corrupt)
            })
            .collect()
    }

    async fn rotate_now(
        &self,
        presented: RefreshHash,
        new: RefreshHash,
        now: OffsetDateTime,
    ) -> Result<RotateOutcome> {
        if presented == new {
            return Err(SessionError::InvalidArgument(
                "the new refresh token hash equals the presented one".into(),
            ));
        }
        let now = truncate_to_ms(now);
        let mut tx = self.pool.begin().await.map_err(database_error)?;
        // Locks the session that owns the presented hash: a concurrent rotation with the same
        // token waits here, then reads what this one wrote.
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM sessions ",
            "WHERE id = (SELECT session_id FROM session_refresh_tokens WHERE hash = $1) ",
            "FOR UPDATE"
        ))
        .bind(presented.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?;
        let Some(session) = row.as_ref().map(decode).transpose()? else {
            return Ok(RotateOutcome::Unknown);
        };
        if !session.is_live(now) {
            delete_in(&mut tx, session.id).await?;
            tx.commit().await.map_err(database_error)?;
            return Ok(RotateOutcome::Unknown);
        }
        let Some(state) = &session.refresh else {
            return Err(SessionError::Corrupt(
                "a session without refresh state".into(),
            ));
        };
        if state.current == presented {
            let inserted = sqlx::query(
                "INSERT INTO session_refresh_tokens (hash, session_id) VALUES ($1, $2)",
            )
            .bind(new.as_bytes().as_slice())
            .bind(session.id.as_uuid())
            .execute(&mut *tx)
            .await;
            if let Err(error) = inserted {
                // Rolled back when `tx` drops: nothing changed.
                return Err(conflict_or_unavailable(error));
            }
            let row = sqlx::query(concat!(
                "UPDATE sessions SET previous_refresh_hash = refresh_hash, ",
                "previous_rotated_at = $2, refresh_hash = $3, ",
                "refresh_generation = refresh_generation + 1, ",
                "last_seen_at = $2, idle_expires_at = LEAST($4, expires_at) ",
                "WHERE id = $1 RETURNING ",
                columns!()
            ))
            .bind(session.id.as_uuid())
            .bind(now)
            .bind(new.as_bytes().as_slice())
            .bind(add(now, self.config.idle_ttl))
            .fetch_one(&mut *tx)
            .await
            .map_err(database_error)?;
            let rotated = decode(&row)?;
            tx.commit().await.map_err(database_error)?;
            return Ok(RotateOutcome::Rotated(rotated));
        }
        let in_grace = !self.config.refresh_grace.is_zero()
            && state.previous.as_ref().is_some_and(|previous| {
                previous.hash == presented
                    && now < add(previous.rotated_at, self.config.refresh_grace)
            });
        if in_grace {
            // Nothing changed; the lock ends with the transaction.
            return Ok(RotateOutcome::GraceReplay(session));
        }
        delete_in(&mut tx, session.id).await?;
        tx.commit().await.map_err(database_error)?;
        Ok(RotateOutcome::Reused(session.id))
    }
}

async fn delete_in(tx: &mut Transaction<'_, Postgres>, id: SessionId) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(database_error)?;
    Ok(())
}

impl SessionStore for PgSessionStore {
    fn create(
        &self,
        session: Session,
        refresh_hash: RefreshHash,
    ) -> BoxFuture<'_, Result<Session>> {
        Box::pin(self.bounded(self.create_now(session, refresh_hash)))
    }

    fn authenticate(
        &self,
        id: SessionId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<Session>>> {
        Box::pin(self.bounded(self.live_session(id, now, true)))
    }

    fn get(&self, id: SessionId, now: OffsetDateTime) -> BoxFuture<'_, Result<Option<Session>>> {
        Box::pin(self.bounded(self.live_session(id, now, false)))
    }

    fn list_for_user(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Vec<Session>>> {
        Box::pin(self.bounded(self.list_now(user_id, now)))
    }

    fn revoke(&self, id: SessionId) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.bounded(self.delete(id)))
    }

    fn revoke_all_for_user(&self, user_id: UserId) -> BoxFuture<'_, Result<Vec<SessionId>>> {
        Box::pin(self.bounded(self.revoke_all_now(user_id)))
    }

    fn rotate_refresh(
        &self,
        presented_hash: RefreshHash,
        new_hash: RefreshHash,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<RotateOutcome>> {
        Box::pin(self.bounded(self.rotate_now(presented_hash, new_hash, now)))
    }
}

fn decode(row: &PgRow) -> Result<Session> {
    let hash = |column: &str| -> Result<Option<RefreshHash>> {
        let bytes: Option<Vec<u8>> = row.try_get(column).map_err(corrupt)?;
        bytes
            .map(|bytes| {
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map(RefreshHash::from_bytes)
                    .map_err(|_| SessionError::Corrupt(format!("{column} is not 32 bytes")))
            })
            .transpose()
    };
    let current = hash("refresh_hash")?
        .ok_or_else(|| SessionError::Corrupt("a session without refresh state".into()))?;
    let previous = match (
        hash("previous_refresh_hash")?,
        row.try_get::<Option<OffsetDateTime>, _>("previous_rotated_at")
            .map_err(corrupt)?,
    ) {
        (Some(hash), Some(rotated_at)) => Some(PreviousRefresh { hash, rotated_at }),
        _ => None,
    };
    let generation: i64 = row.try_get("refresh_generation").map_err(corrupt)?;
    Ok(Session {
        id: SessionId::from_uuid(row.try_get("id").map_err(corrupt)?),
        user_id: UserId::from_uuid(row.try_get("user_id").map_err(corrupt)?),
        created_at: row.try_get("created_at").map_err(corrupt)?,
        last_seen_at: row.try_get("last_seen_at").map_err(corrupt)?,
        expires_at: row.try_get("expires_at").map_err(corrupt)?,
        idle_expires_at: row.try_get("idle_expires_at").map_err(corrupt)?,
        user_agent: row.try_get("user_agent").map_err(corrupt)?,
        ip: row.try_get::<Option<IpAddr>, _>("ip").map_err(corrupt)?,
        refresh: Some(RefreshState {
            current,
            generation: u64::try_from(generation)
                .map_err(|_| SessionError::Corrupt("a negative refresh generation".into()))?,
            previous,
        }),
    })
}

/// `at - by`, saturating at the smallest representable time.
fn sub(at: OffsetDateTime, by: Duration) -> OffsetDateTime {
    let by = time::Duration::try_from(by).unwrap_or(time::Duration::MAX);
    at.saturating_sub(by)
}

fn corrupt(error: sqlx::Error) -> SessionError {
    SessionError::Corrupt(format!("a stored session is not valid: {error}"))
}

fn database_error(error: sqlx::Error) -> SessionError {
    SessionError::Unavailable(Box::new(error))
}

/// A unique violation is a conflict (a taken id or hash); anything else, unavailable.
fn conflict_or_unavailable(error: sqlx::Error) -> SessionError {
    if let sqlx::Error::Database(db) = &error {
        let constraint = db
            .try_downcast_ref::<PgDatabaseError>()
            .and_then(PgDatabaseError::constraint);
        match constraint {
            Some("sessions_pkey") => {
                return SessionError::Conflict("the session id is taken".into());
            }
            Some("session_refresh_tokens_pkey") => {
                return SessionError::Conflict("the refresh token hash is taken".into());
            }
            _ => {}
        }
    }
    database_error(error)
}
