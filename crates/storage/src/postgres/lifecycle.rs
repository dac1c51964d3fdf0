//! The lifecycle store on PostgreSQL.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration as StdDuration;

use keel_domain::{
    AuditEvent, AuditLog, AuditQuery, BoxFuture, Email, Mail, OneTimeToken, OneTimeTokens, Outbox,
    OutboxMessage, OutboxStats, StoreError, TokenHash, TokenPurpose, UserId,
};
use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::DatabaseConfig;

/// One-time tokens (`one_time_tokens`), the mail outbox (`mail_outbox`) and the audit log
/// (`audit_events`) on PostgreSQL, the system of record.
///
/// A token and the mail that carries it are inserted in one transaction. The outbox is
/// claimed with `FOR UPDATE SKIP LOCKED`, so senders on many instances never take one message
/// together. The audit log is append-only (a trigger refuses any other change); retention and
/// the scrub of a deleted account go through the two audited functions of the migration,
/// `audit_purge` and `audit_scrub`.
#[derive(Clone)]
pub struct PgLifecycleStore {
    pool: PgPool,
    call_timeout: StdDuration,
}

impl PgLifecycleStore {
    /// A store on `pool` (see [`pool`](super::pool)); `config` gives its call bound.
    pub fn new(pool: PgPool, config: &DatabaseConfig) -> Self {
        Self {
            pool,
            call_timeout: config.call_timeout(),
        }
    }

    fn bounded<'a, T: Send + 'a>(
        &'a self,
        work: impl Future<Output = Result<T, sqlx::Error>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, StoreError>> {
        // The server's statement timeout cannot fire on a frozen server: bound it here too.
        let bound = self.call_timeout;
        Box::pin(async move {
            match tokio::time::timeout(bound, work).await {
                Ok(outcome) => outcome.map_err(StoreError::unavailable),
                Err(_) => Err(StoreError::unavailable(format!(
                    "no answer from PostgreSQL within {} ms",
                    bound.as_millis()
                ))),
            }
        })
    }
}

const INSERT_MAIL: &str = "INSERT INTO mail_outbox \
     (id, recipient, subject, text_body, html_body, created_at, due_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6)";

fn insert_mail(
    mail: &Mail,
    now: OffsetDateTime,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(INSERT_MAIL)
        .bind(Uuid::now_v7())
        .bind(&mail.to)
        .bind(&mail.subject)
        .bind(&mail.text)
        .bind(&mail.html)
        .bind(now)
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TokenData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    new_email: Option<String>,
}

impl OneTimeTokens for PgLifecycleStore {
    fn issue(&self, token: OneTimeToken, mail: Mail) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bounded(async move {
            let data = TokenData {
                new_email: token.new_email.as_ref().map(|e| e.as_str().to_owned()),
            };
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO one_time_tokens \
                 (token_hash, purpose, user_id, data, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&token.hash.0[..])
            .bind(token.purpose.as_str())
            .bind(token.user_id.as_uuid())
            .bind(Json(&data))
            .bind(token.created_at)
            .bind(token.expires_at)
            .execute(&mut *tx)
            .await?;
            insert_mail(&mail, token.created_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
    }

    fn spend(
        &self,
        purpose: TokenPurpose,
        hash: TokenHash,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<OneTimeToken>, StoreError>> {
        Box::pin(async move {
            let row: Option<PgRow> = self
                .bounded(
                    sqlx::query(
                        "UPDATE one_time_tokens SET used_at = $3 \
                         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL \
                         AND expires_at > $3 \
                         RETURNING user_id, data, created_at, expires_at",
                    )
                    .bind(&hash.0[..])
                    .bind(purpose.as_str())
                    .bind(now)
                    .fetch_optional(&self.pool),
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            let invalid = |error: &dyn fmt::Display| {
                StoreError::unavailable(format!("a stored one-time token is not valid: {error}"))
            };
            let Json(data): Json<TokenData> = row.try_get("data").map_err(|e| invalid(&e))?;
            Ok(Some(OneTimeToken {
                hash,
                purpose,
                user_id: UserId::from_uuid(row.try_get("user_id").map_err(|e| invalid(&e))?),
                new_email: data
                    .new_email
                    .map(|email| Email::parse_lenient(&email))
                    .transpose()
                    .map_err(|e| invalid(&e))?,
                created_at: row.try_get("created_at").map_err(|e| invalid(&e))?,
                expires_at: row.try_get("expires_at").map_err(|e| invalid(&e))?,
            }))
        })
    }

    fn spend_all(
        &self,
        user_id: UserId,
        purpose: TokenPurpose,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.bounded(async move {
            let done = sqlx::query(
                "UPDATE one_time_tokens SET used_at = now() \
                 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
            )
            .bind(user_id.as_uuid())
            .bind(purpose.as_str())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn forget_user(&self, user_id: UserId) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bounded(async move {
            sqlx::query("DELETE FROM one_time_tokens WHERE user_id = $1")
                .bind(user_id.as_uuid())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn purge_expired(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.bounded(async move {
            // The expires_at index makes this a range scan.
            let done = sqlx::query("DELETE FROM one_time_tokens WHERE expires_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
    }
}

impl Outbox for PgLifecycleStore {
    fn enqueue(&self, mail: Mail, now: OffsetDateTime) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bounded(async move {
            insert_mail(&mail, now).execute(&self.pool).await?;
            Ok(())
        })
    }

    fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxMessage>, StoreError>> {
        self.bounded(async move {
            let rows = sqlx::query(
                "UPDATE mail_outbox SET due_at = $2 WHERE id IN ( \
                   SELECT id FROM mail_outbox WHERE failed_at IS NULL AND due_at <= $1 \
                   ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, recipient, subject, text_body, html_body, created_at, attempts",
            )
            .bind(now)
            .bind(now + lease)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            let mut messages = rows
                .iter()
                .map(|row| {
                    Ok(OutboxMessage {
                        id: row.try_get("id")?,
                        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                        created_at: row.try_get("created_at")?,
                        mail: Mail {
                            to: row.try_get("recipient")?,
                            subject: row.try_get("subject")?,
                            text: row.try_get("text_body")?,
                            html: row.try_get("html_body")?,
                        },
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            messages.sort_by_key(|message| (message.created_at, message.id));
            Ok(messages)
        })
    }

    fn delivered(&self, id: Uuid) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bounded(async move {
            sqlx::query("DELETE FROM mail_outbox WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn retry_at(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        error: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bounded(async move {
            sqlx::query(
                "UPDATE mail_outbox SET attempts = attempts + 1, due_at = $2, last_error = $3 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .bind(error)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn give_up(&self, id: Uuid, error: String) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bounded(async move {
            sqlx::query(
                "UPDATE mail_outbox SET attempts = attempts + 1, failed_at = now(), \
                 last_error = $2, text_body = '', html_body = '' WHERE id = $1",
            )
            .bind(id)
            .bind(error)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<OutboxStats, StoreError>> {
        self.bounded(async move {
            let row = sqlx::query(
                "SELECT count(*) FILTER (WHERE failed_at IS NULL) AS queued, \
                 count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed, \
                 min(created_at) FILTER (WHERE failed_at IS NULL) AS oldest FROM mail_outbox",
            )
            .fetch_one(&self.pool)
            .await?;
            Ok(OutboxStats {
                queued: u64::try_from(row.try_get::<i64, _>("queued")?).unwrap_or(0),
                failed: u64::try_from(row.try_get::<i64, _>("failed")?).unwrap_or(0),
                oldest: row.try_get("oldest")?,
            })
        })
    }
}

fn decode_event(row: &PgRow) -> Result<AuditEvent, sqlx::Error> {
    let kind: String = row.try_get("type")?;
    let Json(data): Json<serde_json::Map<String, serde_json::Value>> = row.try_get("data")?;
    Ok(AuditEvent {
        id: row.try_get("id")?,
        kind: kind
            .parse()
            .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        user_id: row
            .try_get::<Option<Uuid>, _>("user_id")?
            .map(UserId::from_uuid),
        actor_id: row
            .try_get::<Option<Uuid>, _>("actor_id")?
            .map(UserId::from_uuid),
        ip: row.try_get::<Option<IpAddr>, _>("ip")?,
        user_agent: row.try_get("user_agent")?,
        at: row.try_get("at")?,
        data,
    })
}

/// Appends `event` on `conn` (the pool, or the transaction of the change it records);
/// appending one id twice keeps one event.
pub(super) async fn insert_event(
    conn: impl sqlx::PgExecutor<'_>,
    event: &AuditEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (id, type, user_id, actor_id, ip, user_agent, at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(event.id)
    .bind(event.kind.as_str())
    .bind(event.user_id.map(|id| *id.as_uuid()))
    .bind(event.actor_id.map(|id| *id.as_uuid()))
    .bind(event.ip)
    .bind(&event.user_agent)
    .bind(event.at)
    .bind(Json(&event.data))
    .execute(conn)
    .await?;
    Ok(())
}

impl AuditLog for PgLifecycleStore {
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bounded(async move { insert_event(&self.pool, &event).await })
    }

    fn query(&self, query: AuditQuery) -> BoxFuture<'_, Result<Vec<AuditEvent>, StoreError>> {
        self.bounded(async move {
            let rows = sqlx::query(
                "SELECT id, type, user_id, actor_id, ip, user_agent, at, data FROM audit_events \
                 WHERE ($1::uuid IS NULL OR user_id = $1) \
                 AND ($2::text IS NULL OR type = $2) \
                 AND ($3::timestamptz IS NULL OR at >= $3) \
                 AND ($4::timestamptz IS NULL OR at < $4) \
                 AND ($5::timestamptz IS NULL OR (at, id) < ($5, $6)) \
                 ORDER BY at DESC, id DESC LIMIT $7",
            )
            .bind(query.user_id.map(|id| *id.as_uuid()))
            .bind(query.kind.map(|kind| kind.as_str()))
            .bind(query.since)
            .bind(query.until)
            .bind(query.after.map(|(at, _)| at))
            .bind(query.after.map(|(_, id)| id))
            .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(decode_event).collect()
        })
    }

    fn purge(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.bounded(async move {
            let purged: i64 = sqlx::query_scalar("SELECT audit_purge($1)")
                .bind(before)
                .fetch_one(&self.pool)
                .await?;
            Ok(u64::try_from(purged).unwrap_or(0))
        })
    }

    fn scrub(&self, user_id: UserId) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.bounded(async move {
            let touched: i64 = sqlx::query_scalar("SELECT audit_scrub($1)")
                .bind(user_id.as_uuid())
                .fetch_one(&self.pool)
                .await?;
            Ok(u64::try_from(touched).unwrap_or(0))
        })
    }
}

impl fmt::Debug for PgLifecycleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLifecycleStore").finish_non_exhaustive()
    }
}
