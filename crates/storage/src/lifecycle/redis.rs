//! The lifecycle store on Redis.

use std::fmt;
use std::net::IpAddr;

use deadpool_redis::Pool;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use keel_domain::{
    AuditEvent, AuditKind, AuditLog, AuditQuery, BoxFuture, Email, Mail, OneTimeToken,
    OneTimeTokens, Outbox, OutboxMessage, OutboxStats, StoreError, TokenHash, TokenPurpose, UserId,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// How many audit events one round trip of a query or a purge reads.
const AUDIT_BATCH: usize = 200;

/// One-time tokens, the outbox and the audit log on Redis, shared by every instance on it: a
/// token issued through one instance spends through any other, and any instance's sender
/// delivers the outbox.
///
/// # Keys
///
/// Every key shares the hash tag `{acct}` (with the default prefix, `keel:{acct}:…`), so that
/// each atomic step (a token and its mail, a claim) touches one hash slot:
///
/// | key | type | holds |
/// |---|---|---|
/// | `ott:<purpose>:<sha256 hex>` | string, TTL = expiry | a token (JSON) |
/// | `ott-user:<user id>:<purpose>` | set | the keys of the user's tokens of that purpose |
/// | `outbox` / `outbox:attempts` | hashes | queued mail (JSON) / failed attempts, by id |
/// | `outbox:due` / `outbox:created` | sorted sets | ids by due time / by queueing time (ms) |
/// | `outbox:failed` | set | ids given up on (the mail stays in `outbox`) |
/// | `audit` | hash | events (JSON) by id |
/// | `audit:all`, `audit:u:<id>`, `audit:a:<id>` | sorted sets | event ids by time (ms): all, about a user, by an actor |
///
/// Only the hash of a token is stored. Tokens expire by TTL; outbox and audit keys have none
/// (retention purges the audit log), so Redis must persist and must not evict them, as for
/// the accounts it holds.
pub struct RedisLifecycleStore {
    pool: Pool,
    prefix: String,
    claim: Script,
    spend_all: Script,
}

impl RedisLifecycleStore {
    /// A store on `pool` (shared with the app, built with timeouts), keys under `prefix`
    /// (`keel:` by default elsewhere). Does not touch Redis.
    pub fn new(pool: Pool, prefix: impl Into<String>) -> Self {
        Self {
            pool,
            prefix: prefix.into(),
            claim: Script::new(CLAIM),
            spend_all: Script::new(SPEND_ALL),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{{acct}}:{rest}", self.prefix)
    }

    fn token_key(&self, purpose: TokenPurpose, hash: &TokenHash) -> String {
        self.key(&format!("ott:{}:{}", purpose.as_str(), hash.to_hex()))
    }

    fn user_tokens_key(&self, user_id: UserId, purpose: TokenPurpose) -> String {
        self.key(&format!("ott-user:{user_id}:{}", purpose.as_str()))
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, StoreError> {
        self.pool.get().await.map_err(StoreError::unavailable)
    }

    fn queue_mail(&self, pipe: &mut redis::Pipeline, mail: Mail, now: OffsetDateTime) {
        let id = Uuid::now_v7();
        let stored = StoredMail {
            id,
            to: mail.to,
            subject: mail.subject,
            text: mail.text,
            html: mail.html,
            created_at: now,
        };
        let id = id.to_string();
        pipe.hset(self.key("outbox"), &id, json(&stored))
            .ignore()
            .zadd(self.key("outbox:due"), &id, millis(now))
            .ignore()
            .zadd(self.key("outbox:created"), &id, millis(now))
            .ignore();
    }

    async fn run(&self, pipe: &redis::Pipeline) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(StoreError::unavailable)
    }

    /// The events of `index` with scores in `[min, max]`, newest first, `offset` in.
    async fn audit_page(
        &self,
        conn: &mut deadpool_redis::Connection,
        index: &str,
        max: &str,
        min: &str,
        offset: usize,
    ) -> Result<(Vec<AuditEvent>, usize), StoreError> {
        let ids: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(index)
            .arg(max)
            .arg(min)
            .arg("LIMIT")
            .arg(offset)
            .arg(AUDIT_BATCH)
            .query_async(conn)
            .await
            .map_err(StoreError::unavailable)?;
        if ids.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let raws: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.key("audit"))
            .arg(&ids)
            .query_async(conn)
            .await
            .map_err(StoreError::unavailable)?;
        let events = raws
            .iter()
            .flatten()
            .map(|raw| decode_event(raw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((events, ids.len()))
    }

    fn index_of(&self, query: &AuditQuery) -> String {
        match query.user_id {
            Some(id) => self.key(&format!("audit:u:{id}")),
            None => self.key("audit:all"),
        }
    }

    async fn append_now(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let id = event.id.to_string();
        let score = millis(event.at);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_nx(self.key("audit"), &id, json(&StoredEvent::from(event)))
            .ignore()
            .zadd(self.key("audit:all"), &id, score)
            .ignore();
        if let Some(user) = event.user_id {
            pipe.zadd(self.key(&format!("audit:u:{user}")), &id, score)
                .ignore();
        }
        if let Some(actor) = event.actor_id {
            pipe.zadd(self.key(&format!("audit:a:{actor}")), &id, score)
                .ignore();
        }
        self.run(&pipe).await
    }
}

impl OneTimeTokens for RedisLifecycleStore {
    fn issue(&self, token: OneTimeToken, mail: Mail) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.token_key(token.purpose, &token.hash);
            let index = self.user_tokens_key(token.user_id, token.purpose);
            let ttl = (token.expires_at - token.created_at)
                .whole_milliseconds()
                .max(1);
            let ttl = u64::try_from(ttl).unwrap_or(u64::MAX);
            let now = token.created_at;
            let mut pipe = redis::pipe();
            // MULTI/EXEC: the token and its mail, or neither.
            pipe.atomic()
                .pset_ex(&key, json(&StoredToken::from(&token)), ttl)
                .ignore()
                .sadd(&index, &key)
                .ignore()
                .pexpire(&index, i64::try_from(ttl).unwrap_or(i64::MAX))
                .ignore();
            self.queue_mail(&mut pipe, mail, now);
            self.run(&pipe).await
        })
    }

    fn spend(
        &self,
        purpose: TokenPurpose,
        hash: TokenHash,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<OneTimeToken>, StoreError>> {
        Box::pin(async move {
            let key = self.token_key(purpose, &hash);
            let mut conn = self.connection().await?;
            // GETDEL: of concurrent spends, one gets the value.
            let raw: Option<String> = conn.get_del(&key).await.map_err(StoreError::unavailable)?;
            let Some(raw) = raw else { return Ok(None) };
            let token = decode_token(&raw, hash)?;
            // Best effort: a stale index entry only names a key that is gone.
            let _: Result<(), _> = conn
                .srem(self.user_tokens_key(token.user_id, purpose), &key)
                .await;
            Ok((token.purpose == purpose && token.expires_at > now).then_some(token))
        })
    }

    fn spend_all(
        &self,
        user_id: UserId,
        purpose: TokenPurpose,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let index = self.user_tokens_key(user_id, purpose);
            let mut conn = self.connection().await?;
            // One script: a token issued meanwhile is either spent here or indexed after.
            let deleted: u64 = self
                .spend_all
                .key(&index)
                .invoke_async(&mut conn)
                .await
                .map_err(StoreError::unavailable)?;
            Ok(deleted)
        })
    }

    fn forget_user(&self, user_id: UserId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for purpose in [
                TokenPurpose::VerifyEmail,
                TokenPurpose::ResetPassword,
                TokenPurpose::ChangeEmail,
            ] {
                self.spend_all(user_id, purpose).await?;
            }
            Ok(())
        })
    }

    fn purge_expired(&self, _before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.purge_nothing()
    }
}

impl RedisLifecycleStore {
    fn purge_nothing(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        // Tokens carry a TTL: Redis forgets them when they expire.
        Box::pin(std::future::ready(Ok(0)))
    }
}

impl Outbox for RedisLifecycleStore {
    fn enqueue(&self, mail: Mail, now: OffsetDateTime) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            self.queue_mail(&mut pipe, mail, now);
            self.run(&pipe).await
        })
    }

    fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxMessage>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let claimed: Vec<(String, Option<u32>)> = self
                .claim
                .key(self.key("outbox:due"))
                .key(self.key("outbox"))
                .key(self.key("outbox:attempts"))
                .arg(millis(now))
                .arg(millis(now + lease))
                .arg(limit)
                .invoke_async(&mut conn)
                .await
                .map_err(StoreError::unavailable)?;
            claimed
                .into_iter()
                .map(|(raw, attempts)| {
                    let stored: StoredMail = serde_json::from_str(&raw)
                        .map_err(|error| invalid("queued mail", &error))?;
                    Ok(OutboxMessage {
                        id: stored.id,
                        attempts: attempts.unwrap_or(0),
                        created_at: stored.created_at,
                        mail: Mail {
                            to: stored.to,
                            subject: stored.subject,
                            text: stored.text,
                            html: stored.html,
                        },
                    })
                })
                .collect()
        })
    }

    fn delivered(&self, id: Uuid) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let id = id.to_string();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hdel(self.key("outbox"), &id)
                .ignore()
                .hdel(self.key("outbox:attempts"), &id)
                .ignore()
                .zrem(self.key("outbox:due"), &id)
                .ignore()
                .zrem(self.key("outbox:created"), &id)
                .ignore();
            self.run(&pipe).await
        })
    }

    fn retry_at(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        _error: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let id = id.to_string();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hincr(self.key("outbox:attempts"), &id, 1)
                .ignore()
                // XX: only while it is still queued.
                .cmd("ZADD")
                .arg(self.key("outbox:due"))
                .arg("XX")
                .arg(millis(at))
                .arg(&id)
                .ignore();
            self.run(&pipe).await
        })
    }

    fn give_up(&self, id: Uuid, _error: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let id = id.to_string();
            // The body may carry a link that still works: only who and what stay.
            let mut conn = self.connection().await?;
            let raw: Option<String> = conn
                .hget(self.key("outbox"), &id)
                .await
                .map_err(StoreError::unavailable)?;
            drop(conn);
            let mut pipe = redis::pipe();
            if let Some(raw) = raw {
                let mut stored: StoredMail =
                    serde_json::from_str(&raw).map_err(|error| invalid("queued mail", &error))?;
                stored.text.clear();
                stored.html.clear();
                pipe.hset(self.key("outbox"), &id, json(&stored)).ignore();
            }
            pipe.atomic()
                .hincr(self.key("outbox:attempts"), &id, 1)
                .ignore()
                .zrem(self.key("outbox:due"), &id)
                .ignore()
                .zrem(self.key("outbox:created"), &id)
                .ignore()
                .sadd(self.key("outbox:failed"), &id)
                .ignore();
            self.run(&pipe).await
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<OutboxStats, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let (queued, failed, oldest): (u64, u64, Vec<(String, f64)>) = redis::pipe()
                .zcard(self.key("outbox:due"))
                .scard(self.key("outbox:failed"))
                .zrange_withscores(self.key("outbox:created"), 0, 0)
                .query_async(&mut conn)
                .await
                .map_err(StoreError::unavailable)?;
            #[allow(clippy::cast_possible_truncation)]
            let oldest = oldest.first().and_then(|(_, ms)| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms as i64) * 1_000_000).ok()
            });
            Ok(OutboxStats {
                queued,
                failed,
                oldest,
            })
        })
    }
}

impl AuditLog for RedisLifecycleStore {
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.append_now(&event).await })
    }

    fn query(&self, query: AuditQuery) -> BoxFuture<'_, Result<Vec<AuditEvent>, StoreError>> {
        Box::pin(async move {
            let index = self.index_of(&query);
            // Scores are whole milliseconds; the bounds are inclusive and `matches` cuts the
            // rest exactly.
            let max = [query.until, query.after.map(|(at, _)| at)]
                .into_iter()
                .flatten()
                .min()
                .map_or_else(|| "+inf".to_owned(), |at| millis(at).to_string());
            let min = query
                .since
                .map_or_else(|| "-inf".to_owned(), |at| millis(at).to_string());
            let mut conn = self.connection().await?;
            let mut found = Vec::new();
            let mut offset = 0;
            loop {
                let (events, read) = self
                    .audit_page(&mut conn, &index, &max, &min, offset)
                    .await?;
                found.extend(events.into_iter().filter(|event| query.matches(event)));
                offset += read;
                // A batch may end inside one millisecond: keep reading until the page is
                // full and a whole batch has been seen past it.
                if read < AUDIT_BATCH || found.len() >= query.limit + AUDIT_BATCH {
                    break;
                }
            }
            found.sort_by_key(|e| std::cmp::Reverse((e.at, e.id)));
            // Events appended while the batches were read shift the offsets: one may come twice.
            found.dedup_by_key(|e| e.id);
            found.truncate(query.limit);
            Ok(found)
        })
    }

    fn purge(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let all = self.key("audit:all");
            let max = millis(before).to_string();
            let mut purged = 0_u64;
            let mut skipped = 0;
            loop {
                let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(&all)
                    .arg("-inf")
                    .arg(&max)
                    .arg("LIMIT")
                    .arg(skipped)
                    .arg(AUDIT_BATCH)
                    .query_async(&mut conn)
                    .await
                    .map_err(StoreError::unavailable)?;
                if ids.is_empty() {
                    break;
                }
                let raws: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(self.key("audit"))
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await
                    .map_err(StoreError::unavailable)?;
                let mut pipe = redis::pipe();
                pipe.atomic();
                for (id, raw) in ids.iter().zip(&raws) {
                    let event = raw.as_deref().map(decode_event).transpose()?;
                    // The last millisecond holds events on both sides of `before`.
                    if event.as_ref().is_some_and(|event| event.at >= before) {
                        skipped += 1;
                        continue;
                    }
                    pipe.hdel(self.key("audit"), id).ignore();
                    pipe.zrem(&all, id).ignore();
                    if let Some(event) = event {
                        for user in [event.user_id, event.actor_id].into_iter().flatten() {
                            pipe.zrem(self.key(&format!("audit:u:{user}")), id).ignore();
                            pipe.zrem(self.key(&format!("audit:a:{user}")), id).ignore();
                        }
                    }
                    purged += 1;
                }
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(StoreError::unavailable)?;
            }
            let record = AuditEvent::new(AuditKind::AuditPurged, None, OffsetDateTime::now_utc())
                .with("events", purged);
            self.append_now(&record).await?;
            Ok(purged)
        })
    }

    fn scrub(&self, user_id: UserId) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let mut touched = 0_u64;
            for (index, about) in [("u", true), ("a", false)] {
                let ids: Vec<String> = conn
                    .zrange(self.key(&format!("audit:{index}:{user_id}")), 0, -1)
                    .await
                    .map_err(StoreError::unavailable)?;
                for chunk in ids.chunks(AUDIT_BATCH) {
                    let raws: Vec<Option<String>> = redis::cmd("HMGET")
                        .arg(self.key("audit"))
                        .arg(chunk)
                        .query_async(&mut conn)
                        .await
                        .map_err(StoreError::unavailable)?;
                    let mut pipe = redis::pipe();
                    for (id, raw) in chunk.iter().zip(&raws) {
                        let Some(raw) = raw else { continue };
                        let mut event = decode_event(raw)?;
                        if !about && event.user_id == Some(user_id) {
                            continue; // scrubbed as an event about the user already
                        }
                        event.ip = None;
                        event.user_agent = None;
                        if about {
                            event.data.clear();
                        }
                        pipe.hset(self.key("audit"), id, json(&StoredEvent::from(&event)))
                            .ignore();
                        touched += 1;
                    }
                    pipe.query_async::<()>(&mut conn)
                        .await
                        .map_err(StoreError::unavailable)?;
                }
            }
            let record = AuditEvent::new(
                AuditKind::AuditScrubbed,
                Some(user_id),
                OffsetDateTime::now_utc(),
            )
            .with("events", touched);
            self.append_now(&record).await?;
            Ok(touched)
        })
    }
}

impl fmt::Debug for RedisLifecycleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLifecycleStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// KEYS[1]: due set, KEYS[2]: mail hash, KEYS[3]: attempts hash. ARGV[1]: now (ms), ARGV[2]:
/// the end of the lease (ms), ARGV[3]: how many. Returns `[mail JSON, attempts]` pairs and
/// pushes each claimed id's due time to the end of the lease.
const CLAIM: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(out, {body, redis.call('HGET', KEYS[3], id)})
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
";

/// KEYS[1]: a user's index of tokens of one purpose. Deletes every token it names and the
/// index itself; returns how many tokens there were. The token keys are not declared: they are
/// only known from the index, and share its hash tag (`{acct}`), so they are on its slot.
const SPEND_ALL: &str = r"
local keys = redis.call('SMEMBERS', KEYS[1])
local deleted = 0
for _, key in ipairs(keys) do
  deleted = deleted + redis.call('DEL', key)
end
redis.call('DEL', KEYS[1])
return deleted
";

fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

fn json(value: &impl Serialize) -> String {
    // The DTOs below hold only strings, numbers and RFC 3339 times of years 0..=9999.
    serde_json::to_string(value).unwrap_or_default()
}

fn invalid(what: &str, error: &dyn fmt::Display) -> StoreError {
    StoreError::unavailable(format!("a stored {what} is not valid: {error}"))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredMail {
    id: Uuid,
    to: String,
    subject: String,
    text: String,
    html: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    purpose: String,
    user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    new_email: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

impl From<&OneTimeToken> for StoredToken {
    fn from(token: &OneTimeToken) -> Self {
        Self {
            purpose: token.purpose.as_str().to_owned(),
            user_id: token.user_id,
            new_email: token.new_email.as_ref().map(|e| e.as_str().to_owned()),
            created_at: token.created_at,
            expires_at: token.expires_at,
        }
    }
}

fn decode_token(raw: &str, hash: TokenHash) -> Result<OneTimeToken, StoreError> {
    let stored: StoredToken =
        serde_json::from_str(raw).map_err(|error| invalid("one-time token", &error))?;
    Ok(OneTimeToken {
        hash,
        purpose: stored.purpose.parse()?,
        user_id: stored.user_id,
        new_email: stored
            .new_email
            .map(|email| Email::parse_lenient(&email))
            .transpose()
            .map_err(|error| invalid("one-time token", &error))?,
        created_at: stored.created_at,
        expires_at: stored.expires_at,
    })
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEvent {
    id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    user_id: Option<UserId>,
    actor_id: Option<UserId>,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    data: serde_json::Map<String, serde_json::Value>,
}

impl From<&AuditEvent> for StoredEvent {
    fn from(event: &AuditEvent) -> Self {
        Self {
            id: event.id,
            kind: event.kind.as_str().to_owned(),
            user_id: event.user_id,
            actor_id: event.actor_id,
            ip: event.ip,
            user_agent: event.user_agent.clone(),
            at: event.at,
            data: event.data.clone(),
        }
    }
}

fn decode_event(raw: &str) -> Result<AuditEvent, StoreError> {
    let stored: StoredEvent =
        serde_json::from_str(raw).map_err(|error| invalid("audit event", &error))?;
    Ok(AuditEvent {
        id: stored.id,
        kind: stored
            .kind
            .parse()
            .map_err(|error| invalid("audit event", &error))?,
        user_id: stored.user_id,
        actor_id: stored.actor_id,
        ip: stored.ip,
        user_agent: stored.user_agent,
        at: stored.at,
        data: stored.data,
    })
}
