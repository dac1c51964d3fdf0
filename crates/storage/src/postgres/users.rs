//! Users on PostgreSQL.

use std::fmt;
use std::time::Duration;

use keel_domain::{
    AuditEvent, Audited, BoxFuture, DisplayName, Email, RepositoryError, User, UserChange, UserId,
    UserQuery, UserRecord, UserRepository, truncate_to_micros,
};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Row as _, postgres::PgDatabaseError};
use time::OffsetDateTime;
use uuid::Uuid;

use super::lifecycle::insert_event;
use super::{DatabaseConfig, bounded, unavailable};

/// A [`UserRepository`] on PostgreSQL: the `users` table of the one migration set (run
/// [`migrate`](super::migrate) first).
///
/// The canonical e-mail (NFC, lowercased) is a unique column, so of any number of concurrent
/// registrations of one address, however it is spelled and on however many instances, exactly
/// one succeeds: the unique index decides. Each call is one statement, bounded by the pool's
/// timeouts and by [`DatabaseConfig::call_timeout`] on the client side.
#[derive(Clone)]
pub struct PgUserRepository {
    pool: PgPool,
    call_timeout: Duration,
}

impl PgUserRepository {
    /// A store on `pool` (see [`pool`](super::pool)); `config` gives its call bound.
    pub fn new(pool: PgPool, config: &DatabaseConfig) -> Self {
        Self {
            pool,
            call_timeout: config.call_timeout(),
        }
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn insert_now(&self, record: UserRecord) -> Result<(), RepositoryError> {
        let user = &record.user;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, email_canonical, display_name, password_hash, \
             email_verified_at, roles, disabled_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(user.id.as_uuid())
        .bind(user.email.as_str())
        .bind(user.email.canonical())
        .bind(user.display_name.as_str())
        .bind(&record.password_hash)
        .bind(user.email_verified_at)
        .bind(&user.roles)
        .bind(record.disabled_at)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(error)) => {
                let constraint = error
                    .try_downcast_ref::<PgDatabaseError>()
                    .and_then(PgDatabaseError::constraint);
                match constraint {
                    Some("users_email_canonical_key") => Err(RepositoryError::EmailTaken),
                    Some("users_pkey") => Err(RepositoryError::IdTaken),
                    _ => Err(unavailable(sqlx::Error::Database(error))),
                }
            }
            Err(other) => Err(unavailable(other)),
        }
    }

    async fn find_one(
        &self,
        query: &'static str,
        key: impl for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    ) -> Result<Option<UserRecord>, RepositoryError> {
        let row = sqlx::query(query)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(decode).transpose()
    }
}

/// A `SELECT` of every column `decode` reads, then `$rest`.
macro_rules! select_users {
    ($rest:literal) => {
        concat!(
            "SELECT id, email, display_name, password_hash, email_verified_at, roles, ",
            "disabled_at, created_at, updated_at FROM users ",
            $rest
        )
    };
}

fn decode(row: &PgRow) -> Result<UserRecord, RepositoryError> {
    let invalid =
        |error: &dyn fmt::Display| unavailable(format!("a stored account is not valid: {error}"));
    let field = |error: sqlx::Error| invalid(&error);
    let email: String = row.try_get("email").map_err(field)?;
    let display_name: String = row.try_get("display_name").map_err(field)?;
    let id: Uuid = row.try_get("id").map_err(field)?;
    Ok(UserRecord {
        user: User {
            id: UserId::from_uuid(id),
            // Leniently: an account imported from an earlier release may predate today's rules.
            email: Email::parse_lenient(&email).map_err(|error| invalid(&error))?,
            display_name: DisplayName::from_stored(&display_name)
                .map_err(|error| invalid(&error))?,
            email_verified_at: row
                .try_get::<Option<OffsetDateTime>, _>("email_verified_at")
                .map_err(field)?,
            roles: row.try_get("roles").map_err(field)?,
            created_at: row.try_get("created_at").map_err(field)?,
            updated_at: row.try_get("updated_at").map_err(field)?,
        },
        password_hash: row.try_get("password_hash").map_err(field)?,
        disabled_at: row.try_get("disabled_at").map_err(field)?,
    })
}

impl UserRepository for PgUserRepository {
    fn insert(&self, record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>> {
        Box::pin(bounded(self.call_timeout, self.insert_now(record)))
    }

    fn find_by_email(
        &self,
        email: &Email,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        let canonical = email.canonical().to_owned();
        Box::pin(bounded(self.call_timeout, async move {
            self.find_one(select_users!("WHERE email_canonical = $1"), canonical)
                .await
        }))
    }

    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(bounded(self.call_timeout, async move {
            self.find_one(select_users!("WHERE id = $1"), *id.as_uuid())
                .await
        }))
    }

    fn replace_password_hash(
        &self,
        id: UserId,
        expected: String,
        new_hash: String,
    ) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(bounded(self.call_timeout, async move {
            let done = sqlx::query(
                "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            )
            .bind(*id.as_uuid())
            .bind(expected)
            .bind(new_hash)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        }))
    }

    fn update(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(bounded(
            self.call_timeout,
            self.update_now(id, change, now, None),
        ))
    }

    fn update_audited(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<Option<UserRecord>>, RepositoryError>> {
        Box::pin(bounded(self.call_timeout, async move {
            // Recorded in the change's own transaction: nothing left for the caller.
            let updated = self.update_now(id, change, now, Some(&event)).await?;
            Ok(Audited::new(updated, None))
        }))
    }

    fn change_email_audited(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<Option<UserRecord>>, RepositoryError>> {
        Box::pin(bounded(self.call_timeout, async move {
            let changed = self.change_email_now(id, email, now, Some(&event)).await?;
            Ok(Audited::new(changed, None))
        }))
    }

    fn delete_audited(
        &self,
        id: UserId,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<bool>, RepositoryError>> {
        Box::pin(bounded(self.call_timeout, async move {
            let deleted = self.delete_now(id, Some(&event)).await?;
            Ok(Audited::new(deleted, None))
        }))
    }

    fn change_email(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(bounded(
            self.call_timeout,
            self.change_email_now(id, email, now, None),
        ))
    }

    fn delete(&self, id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(bounded(self.call_timeout, self.delete_now(id, None)))
    }

    fn list(&self, query: UserQuery) -> BoxFuture<'_, Result<Vec<UserRecord>, RepositoryError>> {
        Box::pin(bounded(self.call_timeout, async move {
            // strpos, not LIKE: the search is text, never a pattern.
            let rows = sqlx::query(select_users!(
                "WHERE ($1::text IS NULL OR strpos(email_canonical, $1) > 0 \
                 OR strpos(lower(display_name), $1) > 0) \
                 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            ))
            .bind(query.search.map(|needle| needle.to_lowercase()))
            .bind(query.before.map(|id| *id.as_uuid()))
            .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter().map(decode).collect()
        }))
    }
}

impl PgUserRepository {
    /// Applies `change` under a row lock, and records `event` in the same transaction.
    async fn update_now(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
        event: Option<&AuditEvent>,
    ) -> Result<Option<UserRecord>, RepositoryError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The row lock makes a concurrent change wait, then read what this one wrote.
        let row = sqlx::query(select_users!("WHERE id = $1 FOR UPDATE"))
            .bind(*id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let Some(mut record) = row.as_ref().map(decode).transpose()? else {
            return Ok(None);
        };
        change.apply(&mut record, now);
        let user = &record.user;
        sqlx::query(
            "UPDATE users SET display_name = $2, email_verified_at = $3, roles = $4, \
             disabled_at = $5, updated_at = $6, password_hash = $7 WHERE id = $1",
        )
        .bind(*id.as_uuid())
        .bind(user.display_name.as_str())
        .bind(user.email_verified_at)
        .bind(&user.roles)
        .bind(record.disabled_at)
        .bind(user.updated_at)
        .bind(&record.password_hash)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if let Some(event) = event {
            insert_event(&mut *tx, event).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(record))
    }

    /// One statement for the change (the unique index on the canonical address decides a race
    /// with a registration or another change), and `event` in the same transaction.
    async fn change_email_now(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
        event: Option<&AuditEvent>,
    ) -> Result<Option<UserRecord>, RepositoryError> {
        let now = truncate_to_micros(now);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(
            "UPDATE users SET email = $2, email_canonical = $3, email_verified_at = $4, \
             updated_at = $4 WHERE id = $1 \
             RETURNING id, email, display_name, password_hash, email_verified_at, roles, \
             disabled_at, created_at, updated_at",
        )
        .bind(*id.as_uuid())
        .bind(email.as_str())
        .bind(email.canonical())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await;
        let record = match row {
            Ok(row) => row.as_ref().map(decode).transpose()?,
            Err(sqlx::Error::Database(error))
                if error
                    .try_downcast_ref::<PgDatabaseError>()
                    .and_then(PgDatabaseError::constraint)
                    == Some("users_email_canonical_key") =>
            {
                return Err(RepositoryError::EmailTaken);
            }
            Err(other) => return Err(unavailable(other)),
        };
        if record.is_some()
            && let Some(event) = event
        {
            insert_event(&mut *tx, event).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(record)
    }

    async fn delete_now(
        &self,
        id: UserId,
        event: Option<&AuditEvent>,
    ) -> Result<bool, RepositoryError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Its one-time tokens go with it (ON DELETE CASCADE); its sessions are the session
        // registry's, revoked before.
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(*id.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let deleted = done.rows_affected() == 1;
        if deleted && let Some(event) = event {
            insert_event(&mut *tx, event).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(deleted)
    }
}

impl fmt::Debug for PgUserRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgUserRepository")
            .field("pool_size", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .finish_non_exhaustive()
    }
}
