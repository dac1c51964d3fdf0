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
mod tests {
    use std::sync::Arc;

    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2025-01-01 00:00 UTC);

    fn quota(name: &'static str, limit: u32, seconds: u64) -> Quota {
        Quota::new(name, limit, Duration::from_secs(seconds)).unwrap()
    }

    fn at(offset: Duration) -> OffsetDateTime {
        T0 + offset
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_refund_gives_back_one_request_and_never_more_than_a_full_budget() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("login-failures", 2, 60);
        assert!(limiter.decide(&q, "ada", T0).allowed);
        assert!(limiter.decide(&q, "ada", T0).allowed);
        assert!(!limiter.decide(&q, "ada", T0).allowed);
        limiter.refund_now(&q, "ada", T0);
        let again = limiter.decide(&q, "ada", T0);
        assert!(again.allowed, "the refunded request is back");
        assert!(!limiter.decide(&q, "ada", T0).allowed);
        // Refunds beyond what was spent do not raise the budget above its limit.
        for _ in 0..5 {
            limiter.refund_now(&q, "ada", T0);
        }
        assert_eq!(limiter.decide(&q, "ada", T0).remaining, 1);
        // Unknown keys are nothing to refund.
        limiter.refund_now(&q, "bob", T0);
        assert_eq!(limiter.decide(&q, "bob", T0).remaining, 1);
    }

    #[test]
    fn a_burst_of_exactly_limit_is_allowed_then_denied_for_one_interval() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("login-ip", 5, 60);
        for _ in 0..5 {
            assert!(limiter.decide(&q, "192.0.2.1", T0).allowed);
        }
        let denied = limiter.decide(&q, "192.0.2.1", T0);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 0);
        assert_eq!(denied.retry_after, Some(secs(12)));
        assert_eq!(denied.retry_after_seconds(), Some(12));
        // Denied requests consume nothing: asking again changes nothing.
        assert_eq!(limiter.decide(&q, "192.0.2.1", T0), denied);
    }

    #[test]
    fn the_burst_is_exact_when_the_window_does_not_divide_by_the_limit() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("odd", 7, 60);
        let allowed = (0..20)
            .filter(|_| limiter.decide(&q, "k", T0).allowed)
            .count();
        assert_eq!(allowed, 7);
        let denied = limiter.decide(&q, "k", T0);
        // T = 60/7 s = 8.571428571428... s, rounded up to the nanosecond.
        assert_eq!(denied.retry_after, Some(Duration::new(8, 571_428_572)));
        assert_eq!(denied.retry_after_seconds(), Some(9));
    }

    #[test]
    fn after_one_interval_exactly_one_more_request_is_allowed() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("login-ip", 5, 60);
        for _ in 0..5 {
            assert!(limiter.decide(&q, "k", T0).allowed);
        }
        let almost = limiter.decide(&q, "k", at(secs(12) - Duration::from_nanos(1)));
        assert!(!almost.allowed);
        assert_eq!(almost.retry_after, Some(Duration::from_nanos(1)));
        assert_eq!(almost.retry_after_seconds(), Some(1));

        let next = limiter.decide(&q, "k", at(secs(12)));
        assert!(next.allowed);
        assert_eq!(next.remaining, 0);
        assert!(!limiter.decide(&q, "k", at(secs(12))).allowed);
        assert!(limiter.decide(&q, "k", at(secs(24))).allowed);
    }

    #[test]
    fn remaining_counts_down_and_refills_with_time() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("api", 5, 60);
        let remaining: Vec<u32> = (0..5)
            .map(|_| limiter.decide(&q, "k", T0).remaining)
            .collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        // 30 s refill 2.5 requests: 2 usable, and this request takes one of them.
        assert_eq!(limiter.decide(&q, "k", at(secs(30))).remaining, 1);
        // Long after, the bucket is full again.
        assert_eq!(limiter.decide(&q, "k", at(secs(3600))).remaining, 4);
    }

    #[test]
    fn reset_after_is_the_time_until_the_bucket_is_full() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("api", 5, 60);
        assert_eq!(limiter.decide(&q, "k", T0).reset_after, secs(12));
        for _ in 0..4 {
            limiter.decide(&q, "k", T0);
        }
        let denied = limiter.decide(&q, "k", T0);
        assert_eq!(denied.reset_after, secs(60));
        let later = limiter.decide(&q, "k", at(secs(30)));
        assert!(later.allowed);
        assert_eq!(later.reset_after, secs(42));
        // 30 s refilled 2.5 requests and this one took one: 1.5 left, 1 usable.
        assert_eq!(later.remaining, 1);
        assert_eq!(later.ratelimit_header(&q), "\"api\";r=1;t=42");
    }

    #[test]
    fn keys_and_quota_names_are_independent() {
        let limiter = InMemoryRateLimiter::new();
        let by_ip = quota("login-ip", 2, 60);
        let by_email = quota("login-email", 2, 60);
        for _ in 0..2 {
            assert!(limiter.decide(&by_ip, "a", T0).allowed);
        }
        assert!(!limiter.decide(&by_ip, "a", T0).allowed);
        assert!(limiter.decide(&by_ip, "b", T0).allowed);
        assert!(limiter.decide(&by_email, "a", T0).allowed);
        assert_eq!(limiter.decide(&by_email, "a", T0).remaining, 0);
        assert_eq!(limiter.len(), 3);
    }

    #[test]
    fn a_client_that_keeps_to_the_rate_is_never_denied() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("steady", 3, 10);
        let interval = Duration::from_nanos(3_333_333_334);
        for i in 0..1000 {
            assert!(limiter.decide(&q, "k", at(interval * i)).allowed, "{i}");
        }
    }

    #[test]
    fn a_clock_step_back_does_not_lock_a_client_out_for_longer_than_a_window() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("api", 5, 60);
        for _ in 0..5 {
            limiter.decide(&q, "k", T0);
        }
        let earlier = T0 - time::Duration::hours(1);
        let denied = limiter.decide(&q, "k", earlier);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Some(secs(12)));
        assert!(limiter.decide(&q, "k", earlier + secs(12)).allowed);
    }

    #[test]
    fn a_quota_name_reused_with_another_limit_converts_the_state() {
        let limiter = InMemoryRateLimiter::new();
        let five = quota("api", 5, 60);
        let seven = quota("api", 7, 60);
        for _ in 0..5 {
            assert!(limiter.decide(&five, "k", T0).allowed);
        }
        // The TAT is a full window ahead, which under any limit means an empty bucket.
        let denied = limiter.decide(&seven, "k", T0);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_seconds(), Some(9));
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn memory_stays_bounded_and_keeps_the_newest_keys() {
        for max_keys in [1, 3, 100, 5_000] {
            let limiter = InMemoryRateLimiter::with_max_keys(max_keys);
            let q = quota("flood", 1, 60);
            for i in 0..max_keys + 500 {
                assert!(limiter.decide(&q, &format!("10.0.{i}"), T0).allowed);
                assert!(limiter.len() <= max_keys);
            }
            assert_eq!(limiter.len(), max_keys);
            // The newest key was not evicted: it is still limited.
            let newest = format!("10.0.{}", max_keys + 499);
            assert!(!limiter.decide(&q, &newest, T0).allowed);
        }
        assert_eq!(InMemoryRateLimiter::with_max_keys(0).max_keys(), 1);
        assert_eq!(InMemoryRateLimiter::new().max_keys(), DEFAULT_MAX_KEYS);
    }

    #[test]
    fn eviction_takes_expired_keys_first_then_the_one_closest_to_full() {
        let limiter = InMemoryRateLimiter::with_max_keys(3);
        let q = quota("api", 2, 60);
        // "busy" spent its whole burst: TAT at +60 s.
        limiter.decide(&q, "busy", T0);
        limiter.decide(&q, "busy", T0);
        // "old" made one request long ago: expired by now.
        limiter.decide(&q, "old", T0 - time::Duration::hours(1));
        // "light" made one request now: TAT at +30 s.
        limiter.decide(&q, "light", T0);
        assert_eq!(limiter.len(), 3);

        limiter.decide(&q, "new1", T0);
        assert_eq!(limiter.len(), 3);
        assert!(!limiter.decide(&q, "busy", T0).allowed, "busy must be kept");
        assert_eq!(limiter.decide(&q, "light", T0).remaining, 0);

        // Nothing is expired now, so the earliest TAT goes: "new1" at +30 s ("light" was just
        // moved to +60 s, beside "busy").
        limiter.decide(&q, "new2", T0);
        assert!(!limiter.decide(&q, "busy", T0).allowed, "busy must be kept");
        assert!(
            !limiter.decide(&q, "light", T0).allowed,
            "light must be kept"
        );
        assert_eq!(limiter.len(), 3);
    }

    #[test]
    fn prune_drops_exactly_the_expired_keys() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("api", 5, 60);
        limiter.decide(&q, "a", T0); // TAT +12 s
        limiter.decide(&q, "b", T0);
        limiter.decide(&q, "b", T0); // TAT +24 s
        limiter.decide(&quota("other", 1, 3600), "a", T0); // TAT +1 h
        assert_eq!(limiter.prune(at(secs(11))), 0);
        assert_eq!(limiter.prune(at(secs(12))), 1);
        assert_eq!(limiter.len(), 2);
        assert_eq!(limiter.prune(at(secs(600))), 1);
        assert_eq!(limiter.len(), 1);
        assert_eq!(limiter.prune(at(secs(3600))), 1);
        assert!(limiter.is_empty());
        // A pruned key starts over with a full bucket.
        assert_eq!(limiter.decide(&q, "b", at(secs(3600))).remaining, 4);
    }

    /// A small deterministic generator (xorshift64*), so the property loop needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound.max(1)
        }
    }

    #[test]
    fn over_any_span_no_more_than_limit_plus_span_over_t_are_allowed() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..400 {
            let limit = match rng.below(4) {
                0 => 1,
                1 => 1 + rng.below(10) as u32,
                2 => 1 + rng.below(1000) as u32,
                _ => u32::MAX - rng.below(3) as u32,
            };
            let window_s = 1 + rng.below(120);
            let window_ns = i128::from(window_s) * 1_000_000_000;
            let q = Quota::new("prop", limit, secs(window_s)).unwrap();
            let limiter = InMemoryRateLimiter::with_max_keys(4);
            let interval_ns = (window_ns / i128::from(limit)).max(1) as u64;

            let mut times = Vec::new();
            let mut allowed = Vec::new();
            let mut now = T0;
            for _ in 0..200 {
                let step = match rng.below(5) {
                    0 => 0,
                    1 => rng.below(interval_ns),
                    2 => interval_ns - 1 + rng.below(3),
                    3 => rng.below(1_000_000),
                    _ => rng.below(2 * window_s * 1_000_000_000),
                };
                now += Duration::from_nanos(step);
                let decision = limiter.decide(&q, "k", now);
                assert_eq!(decision.allowed, decision.retry_after.is_none());
                if let Some(wait) = decision.retry_after {
                    assert!(wait > Duration::ZERO);
                }
                times.push(now.unix_timestamp_nanos());
                allowed.push(u64::from(decision.allowed));
            }

            // Allowed requests among the first i, for every i.
            let mut before = vec![0u64];
            for a in &allowed {
                before.push(before.last().unwrap() + a);
            }
            for i in 0..times.len() {
                for j in i..times.len() {
                    let count = i128::from(before[j + 1] - before[i]);
                    let span = times[j] - times[i];
                    // count <= limit + span / T, with T = window / limit, without division.
                    assert!(
                        count * window_ns <= i128::from(limit) * (window_ns + span),
                        "round {round}: {count} allowed in {span} ns (limit {limit}/{window_s} s)"
                    );
                }
            }
        }
    }

    #[test]
    fn concurrent_callers_share_one_budget() {
        let limiter = InMemoryRateLimiter::new();
        let q = quota("shared", 50, 60);
        let allowed: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..20)
                            .filter(|_| limiter.decide(&q, "k", T0).allowed)
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(allowed, 50);
    }

    #[tokio::test]
    async fn the_limiter_works_behind_the_port() {
        let limiter: Arc<dyn RateLimiter> = Arc::new(InMemoryRateLimiter::new());
        let q = quota("login-ip", 1, 60);
        let first = limiter.check(&q, "192.0.2.1", T0).await.unwrap();
        assert!(first.allowed);
        assert_eq!(first.limit, 1);
        let second = limiter.check(&q, "192.0.2.1", T0).await.unwrap();
        assert!(!second.allowed);
        assert_eq!(second.retry_after_seconds(), Some(60));
        assert_eq!(Decision::policy_header(&q), "\"login-ip\";q=1;w=60");
        assert_eq!(second.ratelimit_header(&q), "\"login-ip\";r=0;t=60");
    }

    #[test]
    fn debug_output_shows_counts_not_keys() {
        let limiter = InMemoryRateLimiter::with_max_keys(10);
        limiter.decide(&quota("api", 1, 1), "ada@example.com", T0);
        let debug = format!("{limiter:?}");
        assert!(debug.contains("keys: 1"));
        assert!(!debug.contains("ada"));
    }
}
