//! Unit tests of `rate_limit`.

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
