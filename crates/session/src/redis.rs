//! The Redis session store, on a `deadpool_redis::Pool` shared with the rest of the app.
//!
//! See [`RedisSessionStore`] for the key layout and the timeouts.

use std::time::Duration;

use deadpool_redis::redis::{self, Script};
use deadpool_redis::{Manager, Pool, PoolError, Runtime};
use keel_domain::{SessionId, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::config::{SessionConfig, seconds};
use crate::error::SessionError;
use crate::memory::sort_newest_first;
use crate::session::{RefreshHash, Session, to_unix_ms};
use crate::store::{BoxFuture, Result, RotateOutcome, SessionStore};

/// How to reach Redis, and the timeouts that bound every call. A plain serde struct with
/// defaults; durations are seconds (integer or float).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisPoolConfig {
    /// The Redis URL, such as `redis://:password@host:6379/0` (`rediss://` needs a TLS feature
    /// of `redis` that Keel does not enable). Secret: it may carry a password.
    pub url: SecretString,
    /// The most connections the pool holds (16).
    pub max_size: usize,
    /// How long opening a TCP connection (and its handshake) may take (1 s).
    #[serde(with = "seconds")]
    pub connect_timeout: Duration,
    /// How long one command may wait for its answer (1 s).
    #[serde(with = "seconds")]
    pub response_timeout: Duration,
    /// How long a caller may wait for a free pool connection (1 s).
    #[serde(with = "seconds")]
    pub wait_timeout: Duration,
}

impl Default for RedisPoolConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("redis://127.0.0.1:6379"),
            max_size: 16,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            wait_timeout: Duration::from_secs(1),
        }
    }
}

/// Builds a deadpool-redis pool (Tokio runtime) whose every wait is bounded: pool wait
/// (`wait_timeout`), connection set-up (`connect_timeout`, also as the pool's create timeout),
/// each command (`response_timeout`, also as the pool's recycle timeout for the health `PING`).
/// Connects lazily: building succeeds while Redis is down.
///
/// A call's worst case is therefore `wait_timeout` + `connect_timeout` + `response_timeout`,
/// plus one `response_timeout` per idle pooled connection that fails its health check (when
/// Redis hangs, every idle connection is tried once before a new one is made); a stopped Redis
/// fails at once.
///
/// Share the one pool with every Redis user of the app (sessions, rate limits, readiness).
///
/// # Errors
///
/// [`SessionError::Config`] when the URL cannot be parsed or the pool cannot be built. The
/// message never contains the URL.
pub fn redis_pool(cfg: &RedisPoolConfig) -> Result<Pool> {
    let connection = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.response_timeout));
    let manager = Manager::new_with_config(cfg.url.expose_secret(), connection)
        .map_err(|err| SessionError::Config(format!("invalid Redis URL ({:?})", err.kind())))?;
    Pool::builder(manager)
        .max_size(cfg.max_size.max(1))
        .wait_timeout(Some(cfg.wait_timeout))
        .create_timeout(Some(cfg.connect_timeout))
        .recycle_timeout(Some(cfg.response_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| SessionError::Config(format!("cannot build the Redis pool: {err}")))
}

/// A [`SessionStore`] on Redis: shared by every instance, survives restarts of the app.
///
/// # Keys
///
/// With the default `key_prefix` `keel:`:
///
/// | key | type | holds | expires |
/// |---|---|---|---|
/// | `keel:session:{id}` | string | the [`Session`] as JSON | at the idle expiry (pushed by activity) |
/// | `keel:session:{id}:refresh` | set | every refresh hash the session ever had | at the absolute expiry |
/// | `keel:refresh:{hash}` | string | the session id owning the hash (current or spent) | at the absolute expiry |
/// | `keel:user:{id}:sessions` | sorted set | the user's session ids, scored by idle expiry (ms) | after its longest session |
///
/// Redis forgets expired sessions by itself through these TTLs. TTLs are relative durations
/// computed from the caller's `now`, so the application's clock and Redis's clock need not
/// agree. Every multi-key change is one Lua script (atomic on the server). The scripts compute
/// key names at run time, so the store needs a standalone Redis (with replicas if wanted), not
/// Redis Cluster.
///
/// # Timeouts
///
/// Every call takes a connection from the pool and makes one script call (two more round trips
/// when Redis has to be sent the script again, after a restart). Nothing here adds a timeout of
/// its own: the caller must build the pool with a wait timeout and connections with connect and
/// response timeouts, or a hung Redis hangs requests. [`redis_pool`] does that.
pub struct RedisSessionStore {
    pool: Pool,
    config: SessionConfig,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("config", &self.config)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

struct Scripts {
    create: Script,
    authenticate: Script,
    list: Script,
    revoke: Script,
    revoke_all: Script,
    rotate: Script,
}

impl RedisSessionStore {
    /// A store on `pool` (build it with [`redis_pool`] or with equivalent timeouts), with keys
    /// under `config.key_prefix`. Does not touch Redis.
    pub fn new(pool: Pool, config: SessionConfig) -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        let scripts = Scripts {
            create: script(CREATE),
            authenticate: script(AUTHENTICATE),
            list: script(LIST),
            revoke: script(REVOKE),
            revoke_all: script(REVOKE_ALL),
            rotate: script(ROTATE),
        };
        Self {
            pool,
            config,
            scripts,
        }
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn create_now(&self, session: Session, refresh_hash: RefreshHash) -> Result<Session> {
        let session = session.normalized_for_create(refresh_hash);
        let json = encode(&session)?;
        let session_ttl = ttl_ms(session.idle_expires_at - session.last_seen_at)?;
        let refresh_ttl = ttl_ms(session.expires_at - session.last_seen_at)?;
        let mut conn = self.connection().await?;
        let code: i64 = self
            .scripts
            .create
            .arg(&self.config.key_prefix)
            .arg(session.id.to_string())
            .arg(session.user_id.to_string())
            .arg(refresh_hash.to_hex())
            .arg(json)
            .arg(session_ttl)
            .arg(refresh_ttl)
            .arg(to_unix_ms(session.idle_expires_at))
            .arg(to_unix_ms(session.last_seen_at))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        match code {
            0 => Ok(session),
            1 => Err(SessionError::Conflict("the session id is taken".into())),
            _ => Err(SessionError::Conflict(
                "the refresh token hash is taken".into(),
            )),
        }
    }

    async fn live_session(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        touch: bool,
    ) -> Result<Option<Session>> {
        let touch_ms = if touch {
            duration_ms(self.config.touch_interval)
        } else {
            -1
        };
        let mut conn = self.connection().await?;
        let raw: Option<String> = self
            .scripts
            .authenticate
            .arg(&self.config.key_prefix)
            .arg(id.to_string())
            .arg(to_unix_ms(now))
            .arg(touch_ms)
            .arg(duration_ms(self.config.idle_ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        raw.as_deref().map(decode).transpose()
    }

    async fn list_now(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Session>> {
        let mut conn = self.connection().await?;
        let raws: Vec<String> = self
            .scripts
            .list
            .arg(&self.config.key_prefix)
            .arg(user_id.to_string())
            .arg(to_unix_ms(now))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let mut sessions = raws
            .iter()
            .map(|raw| decode(raw))
            .collect::<Result<Vec<_>>>()?;
        sort_newest_first(&mut sessions);
        Ok(sessions)
    }

    async fn revoke_now(&self, id: SessionId) -> Result<bool> {
        let mut conn = self.connection().await?;
        let existed: i64 = self
            .scripts
            .revoke
            .arg(&self.config.key_prefix)
            .arg(id.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(existed == 1)
    }

    async fn revoke_all_now(&self, user_id: UserId) -> Result<Vec<SessionId>> {
        let mut conn = self.connection().await?;
        let ids: Vec<String> = self
            .scripts
            .revoke_all
            .arg(&self.config.key_prefix)
            .arg(user_id.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| SessionError::Corrupt("a session id in the user index".into()))
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
        let mut conn = self.connection().await?;
        let (code, payload): (i64, String) = self
            .scripts
            .rotate
            .arg(&self.config.key_prefix)
            .arg(presented.to_hex())
            .arg(new.to_hex())
            .arg(to_unix_ms(now))
            .arg(duration_ms(self.config.refresh_grace))
            .arg(duration_ms(self.config.idle_ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        match code {
            0 => Ok(RotateOutcome::Unknown),
            1 => decode(&payload).map(RotateOutcome::Rotated),
            2 => payload
                .parse()
                .map(RotateOutcome::Reused)
                .map_err(|_| SessionError::Corrupt("a session id in the refresh index".into())),
            3 => decode(&payload).map(RotateOutcome::GraceReplay),
            other => Err(SessionError::Corrupt(format!(
                "unexpected rotation result {other}"
            ))),
        }
    }
}

impl SessionStore for RedisSessionStore {
    fn create(
        &self,
        session: Session,
        refresh_hash: RefreshHash,
    ) -> BoxFuture<'_, Result<Session>> {
        Box::pin(self.create_now(session, refresh_hash))
    }

    fn authenticate(
        &self,
        id: SessionId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<Session>>> {
        Box::pin(self.live_session(id, now, true))
    }

    fn get(&self, id: SessionId, now: OffsetDateTime) -> BoxFuture<'_, Result<Option<Session>>> {
        Box::pin(self.live_session(id, now, false))
    }

    fn list_for_user(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Vec<Session>>> {
        Box::pin(self.list_now(user_id, now))
    }

    fn revoke(&self, id: SessionId) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.revoke_now(id))
    }

    fn revoke_all_for_user(&self, user_id: UserId) -> BoxFuture<'_, Result<Vec<SessionId>>> {
        Box::pin(self.revoke_all_now(user_id))
    }

    fn rotate_refresh(
        &self,
        presented_hash: RefreshHash,
        new_hash: RefreshHash,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<RotateOutcome>> {
        Box::pin(self.rotate_now(presented_hash, new_hash, now))
    }
}

fn encode(session: &Session) -> Result<String> {
    serde_json::to_string(session)
        .map_err(|err| SessionError::Corrupt(format!("cannot encode a session: {err}")))
}

fn decode(raw: &str) -> Result<Session> {
    serde_json::from_str(raw)
        .map_err(|err| SessionError::Corrupt(format!("a stored session is not valid: {err}")))
}

/// A positive TTL in milliseconds; a session that is already over cannot be stored.
fn ttl_ms(ttl: time::Duration) -> Result<i64> {
    let ms = i64::try_from(ttl.whole_milliseconds()).unwrap_or(i64::MAX);
    if ms <= 0 {
        return Err(SessionError::InvalidArgument(
            "the session has already expired".into(),
        ));
    }
    Ok(ms)
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn pool_error(err: PoolError) -> SessionError {
    match err {
        PoolError::Backend(err) => redis_error(err),
        other => SessionError::Unavailable(Box::new(other)),
    }
}

fn redis_error(err: redis::RedisError) -> SessionError {
    match err.code() {
        Some("KEEL_CORRUPT") => {
            return SessionError::Corrupt(err.detail().unwrap_or("corrupt record").to_owned());
        }
        Some("KEEL_CONFLICT") => {
            return SessionError::Conflict("the new refresh token hash is taken".into());
        }
        _ => {}
    }
    match err.kind() {
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
            SessionError::Corrupt(format!("unexpected reply from Redis: {err}"))
        }
        _ => SessionError::Unavailable(Box::new(err)),
    }
}

/// Shared by every script. ARGV[1] is always the key prefix.
const PRELUDE: &str = r#"
local prefix = ARGV[1]
local function skey(sid) return prefix .. 'session:' .. sid end
local function hkey(sid) return prefix .. 'session:' .. sid .. ':refresh' end
local function rkey(hash) return prefix .. 'refresh:' .. hash end
local function ukey(uid) return prefix .. 'user:' .. uid .. ':sessions' end

local function decode(raw)
  local ok, s = pcall(cjson.decode, raw)
  if not ok or type(s) ~= 'table' then
    error({err = 'KEEL_CORRUPT a stored session is not valid JSON'})
  end
  return s
end

local function live(s, now)
  return now < s.expires_at and now < s.idle_expires_at
end

-- Sets a TTL of at least ms on an existing key; never shortens one.
local function extend(key, ms)
  local current = redis.call('PTTL', key)
  if current == -1 or (current >= 0 and current < ms) then
    redis.call('PEXPIRE', key, ms)
  end
end

-- Removes a session and every index entry that points at it; true when the record existed.
local function purge(sid)
  local raw = redis.call('GET', skey(sid))
  for _, hash in ipairs(redis.call('SMEMBERS', hkey(sid))) do
    if redis.call('GET', rkey(hash)) == sid then
      redis.call('DEL', rkey(hash))
    end
  end
  redis.call('DEL', hkey(sid), skey(sid))
  if not raw then
    return false
  end
  local ok, s = pcall(cjson.decode, raw)
  if ok and type(s) == 'table' and type(s.user_id) == 'string' then
    redis.call('ZREM', ukey(s.user_id), sid)
  end
  return true
end

-- Records activity at now: last seen, idle expiry (capped by the absolute one), TTLs, index.
local function touch(sid, s, now, idle_ttl)
  s.last_seen_at = now
  local idle = now + idle_ttl
  if idle > s.expires_at then idle = s.expires_at end
  s.idle_expires_at = idle
  local raw = cjson.encode(s)
  redis.call('SET', skey(sid), raw, 'PX', math.max(idle - now, 1))
  redis.call('ZADD', ukey(s.user_id), idle, sid)
  extend(ukey(s.user_id), math.max(s.expires_at - now, 1))
  return raw
end
"#;

/// ARGV: prefix, sid, uid, hash, json, session ttl ms, refresh ttl ms, index score, now.
/// Returns 0 when stored, 1 when the id is taken, 2 when the hash is taken. Also drops the
/// user's idle-expired index entries, so the index stays small without listing.
const CREATE: &str = r#"
local sid, uid, hash, json = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local session_ttl, refresh_ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('EXISTS', skey(sid)) == 1 then return 1 end
if redis.call('EXISTS', rkey(hash)) == 1 then return 2 end
redis.call('SET', skey(sid), json, 'PX', session_ttl)
redis.call('SET', rkey(hash), sid, 'PX', refresh_ttl)
redis.call('DEL', hkey(sid))
redis.call('SADD', hkey(sid), hash)
redis.call('PEXPIRE', hkey(sid), refresh_ttl)
redis.call('ZREMRANGEBYSCORE', ukey(uid), '-inf', '(' .. ARGV[9])
redis.call('ZADD', ukey(uid), ARGV[8], sid)
extend(ukey(uid), refresh_ttl)
return 0
"#;

/// ARGV: prefix, sid, now, touch interval ms (-1: never touch), idle ttl ms.
/// Returns the session JSON when live, nil otherwise (an expired record is purged).
const AUTHENTICATE: &str = r#"
local sid, now = ARGV[2], tonumber(ARGV[3])
local touch_interval, idle_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local raw = redis.call('GET', skey(sid))
if not raw then return false end
local s = decode(raw)
if not live(s, now) then
  purge(sid)
  return false
end
if touch_interval >= 0 and now - s.last_seen_at >= touch_interval then
  raw = touch(sid, s, now, idle_ttl)
end
return raw
"#;

/// ARGV: prefix, uid, now. Returns the JSON of the user's live sessions; drops the rest.
const LIST: &str = r#"
local key, now = ukey(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  local raw = redis.call('GET', skey(sid))
  if not raw then
    redis.call('ZREM', key, sid)
  else
    local ok, s = pcall(cjson.decode, raw)
    if ok and type(s) == 'table' and not live(s, now) then
      purge(sid)
    else
      table.insert(out, raw)
    end
  end
end
return out
"#;

/// ARGV: prefix, sid. Returns 1 when the session existed.
const REVOKE: &str = r#"
if purge(ARGV[2]) then return 1 end
return 0
"#;

/// ARGV: prefix, uid. Returns the ids of the sessions that existed.
const REVOKE_ALL: &str = r#"
local key = ukey(ARGV[2])
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  if purge(sid) then table.insert(out, sid) end
end
redis.call('DEL', key)
return out
"#;

/// ARGV: prefix, presented hash, new hash, now, grace ms, idle ttl ms.
/// Returns {0, ''} unknown, {1, json} rotated, {2, sid} reused (session purged),
/// {3, json} grace replay.
const ROTATE: &str = r#"
local presented, new, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local grace, idle_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local sid = redis.call('GET', rkey(presented))
if not sid then return {0, ''} end
local raw = redis.call('GET', skey(sid))
if not raw then
  redis.call('DEL', rkey(presented))
  return {0, ''}
end
local s = decode(raw)
if not live(s, now) then
  purge(sid)
  return {0, ''}
end
local r = s.refresh
if type(r) ~= 'table' then
  error({err = 'KEEL_CORRUPT a session without refresh state'})
end
if r.current == presented then
  if redis.call('EXISTS', rkey(new)) == 1 then
    error({err = 'KEEL_CONFLICT the new refresh token hash is taken'})
  end
  r.previous = {hash = presented, rotated_at = now}
  r.current = new
  r.generation = r.generation + 1
  raw = touch(sid, s, now, idle_ttl)
  local rest = math.max(s.expires_at - now, 1)
  redis.call('SET', rkey(new), sid, 'PX', rest)
  redis.call('SADD', hkey(sid), new)
  extend(hkey(sid), rest)
  return {1, raw}
end
local p = r.previous
if grace > 0 and type(p) == 'table' and p.hash == presented and now < p.rotated_at + grace then
  return {3, raw}
end
purge(sid)
return {2, sid}
"#;
