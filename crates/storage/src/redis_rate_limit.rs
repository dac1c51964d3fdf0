//! Rate limiter on Redis: one GCRA bucket per `(quota, key)`, shared by every Keel instance.
//!
//! See [`RedisRateLimiter`] for the key layout, the clock and the failure behaviour.

use std::fmt;
use std::time::Duration;

use deadpool_redis::Pool;
use deadpool_redis::redis::Script;
use keel_domain::{BoxFuture, Decision, Quota, RateLimitError, RateLimiter};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Longest caller key that goes into a Redis key as it is; longer ones are hashed, so every
/// key name stays bounded whatever a client sends.
const MAX_PLAIN_KEY_LEN: usize = 64;

/// A [`RateLimiter`] on Redis, using the same generic cell rate algorithm (GCRA) as
/// [`InMemoryRateLimiter`](crate::InMemoryRateLimiter), so every instance on one Redis
/// enforces one shared budget per `(quota name, key)`.
///
/// # Decisions
///
/// Exactly those of the in-memory limiter: a burst of `limit` requests, then one more every
/// `window / limit`; a denied request consumes nothing and reports a `retry_after` above zero;
/// a theoretical arrival time (TAT) more than a window ahead (the clock stepped back) is capped
/// at one window. Durations are whole microseconds (rounded up), the resolution of Redis's
/// clock. Each decision is one atomic Lua script call (`EVALSHA`, and the script is sent again
/// when Redis answers `NOSCRIPT`, after a restart), so concurrent callers on any number of
/// instances never overspend a bucket.
///
/// # Clock
///
/// The script reads the Redis server's clock (`TIME`), and the `now` passed to
/// [`RateLimiter::check`] is **ignored**: instances whose clocks disagree would otherwise refill
/// one shared bucket at different times, and a single instance with a clock running ahead
/// could refill every bucket for everyone. One clock, the one next to the data, avoids both.
///
/// # Keys
///
/// One string per bucket, `<prefix>ratelimit:<quota name>:<key>` (prefix `keel:` unless
/// [`with_key_prefix`](Self::with_key_prefix) says otherwise; see
/// [`redis_key`](Self::redis_key)). A caller key of 1 to 64 characters of `A-Z a-z 0-9 . _ -`
/// (an IPv4 address, a UUID) is kept as it is, for operators reading Redis; any other (an
/// email, an IPv6 address, anything long or odd) becomes `#` and its SHA-256 in hex, which
/// bounds the name and keeps personal data such as emails out of key names. Neither form can
/// contain `:`, so quota names with colons cannot collide with one another.
///
/// Each key expires (`PX`) when its bucket is full again, so Redis forgets idle clients by
/// itself and memory follows the number of recently active keys. The key is passed to the
/// script in `KEYS`, so the limiter also works on Redis Cluster.
///
/// # Failures
///
/// Any error (Redis down, a pool, connect or response timeout, an unexpected reply) is
/// [`RateLimitError::Unavailable`], for the caller to fall back to in-process limits. Nothing
/// here adds a timeout of its own: build the pool with wait, connect and response timeouts
/// (as `keel_session::redis_pool` does), or a hung Redis hangs the caller.
pub struct RedisRateLimiter {
    pool: Pool,
    prefix: String,
    script: Script,
    refund: Script,
}

impl RedisRateLimiter {
    /// The key prefix unless [`with_key_prefix`](Self::with_key_prefix) sets another, the same
    /// as the session store's default.
    pub const DEFAULT_KEY_PREFIX: &'static str = "keel:";

    /// A limiter on `pool` (shared with the rest of the app, built with timeouts), with keys
    /// under [`DEFAULT_KEY_PREFIX`](Self::DEFAULT_KEY_PREFIX). Does not touch Redis.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            script: Script::new(GCRA),
            refund: Script::new(REFUND),
        }
    }

    /// Puts the keys under `prefix` instead, for instance to keep apps that share one Redis
    /// apart. Every instance that should share limits must use the same prefix.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key prefix in use.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The pool the limiter uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The Redis key of the bucket of `key` under `quota`, such as
    /// `keel:ratelimit:login-ip:192.0.2.1` or `keel:ratelimit:login-email:#5f3c…` (64 hex
    /// digits). Useful to operators and tests; the limiter manages the key itself.
    pub fn redis_key(&self, quota: &Quota, key: &str) -> String {
        format!(
            "{}ratelimit:{}:{}",
            self.prefix,
            quota.name(),
            key_part(key)
        )
    }

    async fn decide(&self, quota: &Quota, key: &str) -> Result<Decision, RateLimitError> {
        let gcra = Gcra::new(quota);
        // Plain u64s for Redis: the window is at most 3.2e13 µs and the limit a u32.
        let window_us = u64::try_from(gcra.window_us).unwrap_or(u64::MAX);
        let limit = u64::from(quota.limit().max(1));
        let mut conn = self.pool.get().await.map_err(RateLimitError::unavailable)?;
        let reply: (i64, i64, i64, i64) = self
            .script
            .key(self.redis_key(quota, key))
            .arg(window_us)
            .arg(limit)
            .arg(window_us / limit)
            .arg(window_us % limit)
            .invoke_async(&mut conn)
            .await
            .map_err(RateLimitError::unavailable)?;
        gcra.decision(reply)
    }

    async fn refund_now(&self, quota: &Quota, key: &str) -> Result<(), RateLimitError> {
        let gcra = Gcra::new(quota);
        let window_us = u64::try_from(gcra.window_us).unwrap_or(u64::MAX);
        let limit = u64::from(quota.limit().max(1));
        let mut conn = self.pool.get().await.map_err(RateLimitError::unavailable)?;
        let _: i64 = self
            .refund
            .key(self.redis_key(quota, key))
            .arg(limit)
            .arg(window_us / limit)
            .arg(window_us % limit)
            .invoke_async(&mut conn)
            .await
            .map_err(RateLimitError::unavailable)?;
        Ok(())
    }
}

/// The caller's key as it appears in the Redis key: itself when short and plain, else `#` and
/// its SHA-256 in hex (`#` is not in the plain alphabet, so the two forms never meet).
fn key_part(key: &str) -> String {
    let plain = (1..=MAX_PLAIN_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        return key.to_owned();
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut part = String::with_capacity(1 + 2 * digest.len());
    part.push('#');
    for byte in digest {
        part.push(char::from(HEX[usize::from(byte >> 4)]));
        part.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    part
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A quota's GCRA parameters, in units of `1 / limit` microseconds: the emission interval
/// `window / limit` is then a whole number (`window` in µs), so the arithmetic is exact, as in
/// the in-memory limiter (which counts in `1 / limit` ns).
struct Gcra {
    limit: i128,
    /// The window in µs, which is also the emission interval in these units.
    window_us: i128,
}

impl Gcra {
    fn new(quota: &Quota) -> Self {
        // `Quota` bounds the window to a year (3.2e13 µs) and the limit to a u32, so products
        // with times up to year 9999 stay far below i128::MAX.
        let window_us = i128::try_from(quota.window().as_micros()).unwrap_or(i128::MAX);
        Self {
            limit: i128::from(quota.limit().max(1)),
            window_us,
        }
    }

    /// Reads the script's reply `{allowed, now, tat_us, tat_rem}` (the TAT being
    /// `tat_us + tat_rem / limit` µs: after the request when allowed, unchanged when denied)
    /// into a [`Decision`], with the in-memory limiter's formulas.
    fn decision(&self, reply: (i64, i64, i64, i64)) -> Result<Decision, RateLimitError> {
        let (allowed, now_us, tat_us, tat_rem) = reply;
        let tat_rem = i128::from(tat_rem);
        if !(0..self.limit).contains(&tat_rem) || !matches!(allowed, 0 | 1) {
            return Err(RateLimitError::unavailable(
                "unexpected reply from the Redis rate-limit script",
            ));
        }
        let limit = u32::try_from(self.limit).unwrap_or(u32::MAX);
        let interval = self.window_us;
        let window = self.window_us * self.limit;
        let now = i128::from(now_us) * self.limit;
        let tat = i128::from(tat_us) * self.limit + tat_rem;
        if allowed == 1 {
            let left = (now + window - tat).div_euclid(interval);
            Ok(Decision {
                allowed: true,
                limit,
                remaining: u32::try_from(left.clamp(0, self.limit - 1)).unwrap_or(0),
                reset_after: self.duration(tat - now),
                retry_after: None,
            })
        } else {
            let wait = self.duration(tat + interval - now - window);
            Ok(Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_after: self.duration(tat - now),
                // Positive by the script's test; the floor only guards a bad reply, since a
                // zero wait would tell the client to retry at once.
                retry_after: Some(wait.max(Duration::from_micros(1))),
            })
        }
    }

    /// `units` as a duration, rounded up to the microsecond; negative counts as zero.
    fn duration(&self, units: i128) -> Duration {
        let us = units.div_euclid(self.limit) + i128::from(units.rem_euclid(self.limit) != 0);
        Duration::from_micros(u64::try_from(us.max(0)).unwrap_or(u64::MAX))
    }
}

impl RateLimiter for RedisRateLimiter {
    /// Decides on the Redis server's clock: `now` is ignored (see [`RedisRateLimiter`]).
    fn check<'a>(
        &'a self,
        quota: &'a Quota,
        key: &'a str,
        _now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Decision, RateLimitError>> {
        Box::pin(self.decide(quota, key))
    }

    /// On the Redis server's clock, as [`check`](Self::check).
    fn refund<'a>(
        &'a self,
        quota: &'a Quota,
        key: &'a str,
        _now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<(), RateLimitError>> {
        Box::pin(self.refund_now(quota, key))
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("key_prefix", &self.prefix)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// GCRA on one key. KEYS[1]: the bucket. ARGV: window in µs, limit, and the emission interval
/// `window / limit` µs as quotient and remainder.
///
/// Lua numbers are doubles, exact only up to 2^53, so times are never scaled by the limit here
/// (that could reach 1e25). A TAT is kept as whole µs (about 1.7e15 today) plus a remainder in
/// `[0, limit)` counting `1 / limit` µs, and the interval is added digit by digit with a carry:
/// every number stays an exact integer. The stored value is `"<µs> <remainder> <limit>"`; the
/// limit is kept so that a quota name reused with another limit converts the TAT (rounded up
/// to the µs) instead of misreading the remainder, as the in-memory limiter does.
///
/// Returns `{allowed, now, tat_us, tat_rem}`; Rust turns that into a `Decision` with exact
/// 128-bit arithmetic, which Lua cannot do.
const GCRA: &str = r#"
-- Redis before 5 refuses writes after TIME unless effects are replicated; later versions do
-- that anyway, and the call is a no-op there.
if redis.replicate_commands then redis.replicate_commands() end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local q = tonumber(ARGV[3])
local r = tonumber(ARGV[4])

local us, rem, stored = now, 0, false
local raw = redis.call('GET', KEYS[1])
if raw then
  local a, b, s = string.match(raw, '^(%d+) (%d+) (%d+)$')
  -- A value this script did not write is treated as absent and overwritten below: the bucket
  -- heals itself instead of failing every request of that key.
  if a then
    us, rem, stored = tonumber(a), tonumber(b), true
    if tonumber(s) ~= limit then
      if rem > 0 then us = us + 1 end
      rem = 0
    end
  end
end

local capped = false
if us < now then
  -- The bucket is full: the TAT cannot lie in the past. (us < now exactly when the TAT is,
  -- since the remainder is under one µs.)
  us, rem = now, 0
elseif us - now > window or (us - now == window and rem > 0) then
  -- More than a window ahead: the clock stepped back (a failover to another server). Capped,
  -- so a client is never locked out for longer than a window.
  us, rem, capped = now + window, 0, stored
end

local nus, nrem = us + q, rem + r
if nrem >= limit then
  nus, nrem = nus + 1, nrem - limit
end

local function ttl_ms(tus, trem)
  local d = tus - now
  if trem > 0 then d = d + 1 end
  return string.format('%.0f', math.max(1, math.floor((d + 999) / 1000)))
end

local function store(tus, trem)
  local value = string.format('%.0f %.0f %.0f', tus, trem, limit)
  redis.call('SET', KEYS[1], value, 'PX', ttl_ms(tus, trem))
end

if nus - now < window or (nus - now == window and nrem == 0) then
  store(nus, nrem)
  return {1, now, nus, nrem}
end
-- Denied: nothing is consumed. A capped TAT is still written, or the cap would be applied
-- afresh on every call and the client stay locked out until the clock caught up.
if capped then store(us, rem) end
return {0, now, us, rem}
"#;

/// Gives one request back. KEYS[1]: the bucket. ARGV: limit, and the emission interval as
/// quotient and remainder (as for [`GCRA`]). The TAT moves back one interval with a borrow,
/// exactly; a TAT that would fall before now means a full bucket, so the key goes. A bucket
/// counted under another limit, or a value this script cannot read, is left alone.
const REFUND: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local q = tonumber(ARGV[2])
local r = tonumber(ARGV[3])
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local a, b, s = string.match(raw, '^(%d+) (%d+) (%d+)$')
if not a or tonumber(s) ~= limit then return 0 end
local us, rem = tonumber(a) - q, tonumber(b) - r
if rem < 0 then us, rem = us - 1, rem + limit end
if us < now then
  redis.call('DEL', KEYS[1])
  return 1
end
local d = us - now
if rem > 0 then d = d + 1 end
local ttl = string.format('%.0f', math.max(1, math.floor((d + 999) / 1000)))
redis.call('SET', KEYS[1], string.format('%.0f %.0f %.0f', us, rem, limit), 'PX', ttl)
return 1
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(limit: u32, seconds: u64) -> Quota {
        Quota::new("q", limit, Duration::from_secs(seconds)).unwrap()
    }

    #[test]
    fn plain_keys_stay_readable_and_others_are_hashed_and_bounded() {
        assert_eq!(key_part("192.0.2.1"), "192.0.2.1");
        let uuid = "0190f1c2-7d3e-7a4b-8c5d-6e7f8a9b0c1d";
        assert_eq!(key_part(uuid), uuid);
        let longest = "k".repeat(MAX_PLAIN_KEY_LEN);
        assert_eq!(key_part(&longest), longest);
        let long = "k".repeat(MAX_PLAIN_KEY_LEN + 1);
        for odd in [
            "",
            "ada@example.com",
            "2001:db8::1",
            "a b",
            "é",
            "#x",
            "x\r\n",
            long.as_str(),
        ] {
            let part = key_part(odd);
            assert!(part.starts_with('#'), "{odd:?}");
            assert_eq!(part.len(), 65, "{odd:?}");
            assert!(part[1..].bytes().all(|b| HEX.contains(&b)), "{odd:?}");
        }
        // SHA-256 of the empty string, a known vector.
        assert_eq!(
            key_part(""),
            "#e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(key_part("a@b"), key_part("a@c"));
    }

    #[test]
    fn replies_become_the_in_memory_limiters_decisions() {
        // 5 per 60 s: interval 12 s. First request at now = 1000 µs: TAT = now + 12 s.
        let gcra = Gcra::new(&quota(5, 60));
        let now = 1_000;
        let first = gcra.decision((1, now, now + 12_000_000, 0)).unwrap();
        assert_eq!(
            first,
            Decision {
                allowed: true,
                limit: 5,
                remaining: 4,
                reset_after: Duration::from_secs(12),
                retry_after: None,
            }
        );
        let denied = gcra.decision((0, now, now + 60_000_000, 0)).unwrap();
        assert_eq!(denied.remaining, 0);
        assert_eq!(denied.reset_after, Duration::from_secs(60));
        assert_eq!(denied.retry_after, Some(Duration::from_secs(12)));

        // 3 per 1 s: interval 333_333 + 1/3 µs; a TAT of 1/3 µs past a whole µs rounds up.
        let gcra = Gcra::new(&quota(3, 1));
        let one = gcra.decision((1, 0, 333_333, 1)).unwrap();
        assert_eq!(one.remaining, 2);
        assert_eq!(one.reset_after, Duration::from_micros(333_334));
        let full = gcra.decision((0, 0, 1_000_000, 0)).unwrap();
        assert_eq!(full.retry_after, Some(Duration::from_micros(333_334)));
    }

    #[test]
    fn malformed_replies_are_unavailable() {
        let gcra = Gcra::new(&quota(5, 60));
        for reply in [(2, 0, 0, 0), (1, 0, 0, 5), (0, 0, 0, -1)] {
            assert!(matches!(
                gcra.decision(reply),
                Err(RateLimitError::Unavailable(_))
            ));
        }
    }
}
