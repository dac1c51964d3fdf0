//! In-process rate limiter: GCRA over a bounded map, the default when Redis is not configured
//! and the fallback when it cannot answer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use keel_domain::{BoxFuture, Decision, Quota, RateLimitError, RateLimiter};
use time::OffsetDateTime;

/// How many keys an [`InMemoryRateLimiter::new`] remembers.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Most shards a limiter splits its keys over; enough that threads of a busy server rarely
/// wait on one another's lock.
const MAX_SHARDS: usize = 16;
/// Keys per shard below which a limiter stays unsharded: a small map gains nothing from locks
/// split further, and one shard keeps the capacity bound and the eviction order exact.
const MIN_KEYS_PER_SHARD: usize = 1024;

/// A [`RateLimiter`] kept in process memory, using the generic cell rate algorithm (GCRA).
///
/// Each `(quota name, key)` pair has one number, its theoretical arrival time (TAT). With
/// emission interval `T = window / limit`, a request at `now` is allowed when
/// `max(TAT, now) + T <= now + window`, and then moves the TAT to that sum. This admits a burst
/// of exactly `limit` requests, then one more every `T`; a denied request changes nothing.
/// Arithmetic is exact: times are counted in units of `1 / limit` nanoseconds, in which `T` is
/// a whole number even when the window does not divide by the limit.
///
/// Memory is bounded by `max_keys`. A key whose TAT has passed holds no information (its
/// bucket is full, as if it had never been seen), so when a new key arrives at a full limiter
/// the key with the earliest TAT is dropped: an expired one if there is one, otherwise the one
/// closest to full, whose loss hands its client the fewest extra requests. [`prune`] drops
/// every expired key at once; calling it now and then keeps the map small between bursts.
///
/// Counts are per process: with several instances, each enforces its own. The time is the
/// `now` each call passes in; the limiter never reads a clock.
///
/// [`prune`]: InMemoryRateLimiter::prune
pub struct InMemoryRateLimiter {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_keys: usize,
}

/// One lock's worth of keys.
struct Shard {
    capacity: usize,
    /// Quota name -> key -> bucket. Nested so lookups borrow the caller's `&str` instead of
    /// allocating a composite key on every request.
    buckets: HashMap<&'static str, HashMap<Arc<str>, Bucket>>,
    /// (TAT in whole nanoseconds, rounded up; bucket id) -> where the bucket lives: the
    /// eviction and pruning order. The id breaks ties between equal TATs.
    by_tat: BTreeMap<(i128, u64), (&'static str, Arc<str>)>,
    next_id: u64,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Theoretical arrival time, in units of `1 / scale` ns since the Unix epoch.
    tat: i128,
    /// The quota limit the TAT was counted in. Kept because two quotas could share a name with
    /// different limits (a caller's mistake, or a changed configuration); the TAT is then
    /// converted instead of misread.
    scale: u32,
    id: u64,
}

/// A quota's GCRA parameters, in units of `1 / limit` nanoseconds.
struct Gcra {
    scale: u32,
    /// The emission interval `T`: `window / limit` ns, which is `window` ns in these units.
    interval: i128,
    /// The window itself.
    window: i128,
}

impl Gcra {
    fn new(quota: &Quota) -> Self {
        // `Quota` bounds the window to a year and the limit to a u32, so these products, and
        // times up to year 9999 in these units, stay far below i128::MAX.
        let window_ns = i128::try_from(quota.window().as_nanos()).unwrap_or(i128::MAX);
        let scale = quota.limit().max(1);
        Self {
            scale,
            interval: window_ns,
            window: window_ns * i128::from(scale),
        }
    }

    fn units(&self, ns: i128) -> i128 {
        ns * i128::from(self.scale)
    }

    fn duration(&self, units: i128) -> Duration {
        let ns = ceil_div(units, self.scale).max(0);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// `units / scale`, rounded towards positive infinity.
fn ceil_div(units: i128, scale: u32) -> i128 {
    let scale = i128::from(scale.max(1));
    units.div_euclid(scale) + i128::from(units.rem_euclid(scale) != 0)
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            buckets: HashMap::new(),
            by_tat: BTreeMap::new(),
            next_id: 0,
        }
    }

    fn len(&self) -> usize {
        self.by_tat.len()
    }

    /// Moves the bucket's TAT back by one interval, never before `now`.
    fn refund(&mut self, quota: &Quota, key: &str, now: OffsetDateTime) {
        let gcra = Gcra::new(quota);
        let now = gcra.units(now.unix_timestamp_nanos());
        let Some(old) = self
            .buckets
            .get(quota.name())
            .and_then(|keys| keys.get(key))
            .copied()
        else {
            return;
        };
        // A bucket counted under another limit is left alone: a refund is a courtesy, and
        // converting it would need the same care as `decide`.
        if old.scale != gcra.scale {
            return;
        }
        let refunded = Bucket {
            tat: (old.tat - gcra.interval).max(now),
            ..old
        };
        self.update(quota.name(), key, old, refunded);
    }

    fn decide(&mut self, quota: &Quota, key: &str, now: OffsetDateTime) -> Decision {
        let gcra = Gcra::new(quota);
        let now = gcra.units(now.unix_timestamp_nanos());
        let stored = self
            .buckets
            .get(quota.name())
            .and_then(|keys| keys.get(key))
            .copied();
        let stored_tat = stored.map(|bucket| {
            if bucket.scale == gcra.scale {
                bucket.tat
            } else {
                gcra.units(ceil_div(bucket.tat, bucket.scale))
            }
        });
        // A TAT more than a window ahead only happens when the clock stepped back; capping it
        // keeps a client from being locked out for the size of the step.
        let tat = stored_tat.unwrap_or(now).clamp(now, now + gcra.window);
        let next_tat = tat + gcra.interval;

        if next_tat - now > gcra.window {
            if let Some(old) = stored.filter(|_| stored_tat.is_some_and(|stored| stored > tat)) {
                // Written back even though the request is denied, or the cap would be applied
                // afresh on every call and the client stay locked out until time caught up.
                let capped = Bucket {
                    tat,
                    scale: gcra.scale,
                    id: old.id,
                };
                self.update(quota.name(), key, old, capped);
            }
            return Decision {
                allowed: false,
                limit: quota.limit(),
                remaining: 0,
                reset_after: gcra.duration(tat - now),
                retry_after: Some(gcra.duration(next_tat - now - gcra.window)),
            };
        }

        let bucket = Bucket {
            tat: next_tat,
            scale: gcra.scale,
            id: stored.map_or(self.next_id, |bucket| bucket.id),
        };
        match stored {
            Some(old) => self.update(quota.name(), key, old, bucket),
            None => self.insert(quota.name(), key, bucket),
        }
        let left = (now + gcra.window - next_tat) / gcra.interval;
        let most = i128::from(quota.limit()) - 1;
        Decision {
            allowed: true,
            limit: quota.limit(),
            remaining: u32::try_from(left.clamp(0, most)).unwrap_or(0),
            reset_after: gcra.duration(next_tat - now),
            retry_after: None,
        }
    }

    fn update(&mut self, name: &'static str, key: &str, old: Bucket, new: Bucket) {
        let Some(slot) = self
            .buckets
            .get_mut(name)
            .and_then(|keys| keys.get_mut(key))
        else {
            return;
        };
        *slot = new;
        if let Some(place) = self.by_tat.remove(&(ceil_div(old.tat, old.scale), old.id)) {
            self.by_tat
                .insert((ceil_div(new.tat, new.scale), new.id), place);
        }
    }

    fn insert(&mut self, name: &'static str, key: &str, bucket: Bucket) {
        while self.len() >= self.capacity {
            if !self.evict_first() {
                break;
            }
        }
        self.next_id = self.next_id.wrapping_add(1);
        let key: Arc<str> = Arc::from(key);
        self.by_tat.insert(
            (ceil_div(bucket.tat, bucket.scale), bucket.id),
            (name, Arc::clone(&key)),
        );
        self.buckets.entry(name).or_default().insert(key, bucket);
    }

    /// Drops the bucket with the earliest TAT; false when there is none.
    fn evict_first(&mut self) -> bool {
        let Some((_, (name, key))) = self.by_tat.pop_first() else {
            return false;
        };
        if let Some(keys) = self.buckets.get_mut(name) {
            keys.remove(&*key);
            if keys.is_empty() {
                self.buckets.remove(name);
            }
        }
        true
    }

    fn prune(&mut self, now_ns: i128) -> usize {
        let mut dropped = 0;
        // TAT <= now exactly when its rounded-up nanosecond is <= now, since now is whole.
        while self
            .by_tat
            .first_key_value()
            .is_some_and(|((tat_ns, _), _)| *tat_ns <= now_ns)
        {
            self.evict_first();
            dropped += 1;
        }
        dropped
    }
}

impl InMemoryRateLimiter {
    /// A limiter that remembers up to [`DEFAULT_MAX_KEYS`] keys.
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// A limiter that remembers up to `max_keys` keys (at least 1: a limiter that remembers
    /// nothing would allow everything).
    pub fn with_max_keys(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let count = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        // Spread the remainder too, so the shard capacities add up to exactly `max_keys`.
        let shards = (0..count)
            .map(|i| {
                let extra = usize::from(i < max_keys % count);
                Mutex::new(Shard::new(max_keys / count + extra))
            })
            .collect();
        Self {
            shards,
            hasher: RandomState::new(),
            max_keys,
        }
    }

    /// The most keys this limiter remembers.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// How many `(quota name, key)` pairs are remembered now, expired ones included.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key whose TAT is not after `now` (its bucket is full again, so forgetting
    /// it changes no decision), and returns how many were dropped.
    pub fn prune(&self, now: OffsetDateTime) -> usize {
        let now_ns = now.unix_timestamp_nanos();
        self.shards
            .iter()
            .map(|shard| lock(shard).prune(now_ns))
            .sum()
    }

    fn shard(&self, quota: &Quota, key: &str) -> Option<&Mutex<Shard>> {
        let hash = self.hasher.hash_one((quota.name(), key));
        let count = self.shards.len().max(1);
        let index = usize::try_from(hash % count as u64).unwrap_or(0);
        self.shards.get(index)
    }

    fn refund_now(&self, quota: &Quota, key: &str, now: OffsetDateTime) {
        if let Some(shard) = self.shard(quota, key) {
            lock(shard).refund(quota, key, now);
        }
    }

    fn decide(&self, quota: &Quota, key: &str, now: OffsetDateTime) -> Decision {
        match self.shard(quota, key) {
            Some(shard) => lock(shard).decide(quota, key, now),
            // Unreachable: the index is reduced modulo the shard count. Should that ever
            // change, denying is the answer that cannot let a flood through.
            None => Decision {
                allowed: false,
                limit: quota.limit(),
                remaining: 0,
                reset_after: quota.window(),
                retry_after: Some(quota.window()),
            },
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // The maps are only changed by steps that cannot panic midway (other than by running out
    // of memory, which aborts), so a poisoned lock still guards consistent data.
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for InMemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter for InMemoryRateLimiter {
    // The decision is taken before the future is returned, so no lock is held across an await
    // point and the future is ready at once.
    fn check<'a>(
        &'a self,
        quota: &'a Quota,
        key: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Decision, RateLimitError>> {
        Box::pin(std::future::ready(Ok(self.decide(quota, key, now))))
    }

    fn refund<'a>(
        &'a self,
        quota: &'a Quota,
        key: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<(), RateLimitError>> {
        self.refund_now(quota, key, now);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl fmt::Debug for InMemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are client IPs and emails; the counts are all a log needs.
        f.debug_struct("InMemoryRateLimiter")
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
