//! `RedisRateLimiter` against a private redis-server: the GCRA decisions, sharing between
//! instances, the key layout and TTLs, and behaviour when Redis stops, restarts or hangs.

// Helpers outside `#[test]` functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Manager, Pool, Runtime};
use keel_domain::{Decision, Quota, RateLimitError, RateLimiter};
use keel_storage::{InMemoryRateLimiter, RedisRateLimiter};
use keel_testkit::redis::RedisServer;
use time::OffsetDateTime;

/// A pool built like `keel_session::redis_pool`: every wait bounded by `timeout`.
fn pool_for(server: &RedisServer, timeout: Duration) -> Pool {
    let connection = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let manager = Manager::new_with_config(server.url(), connection).unwrap();
    Pool::builder(manager)
        .max_size(8)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap()
}

fn quota(name: &'static str, limit: u32, seconds: u64) -> Quota {
    Quota::new(name, limit, Duration::from_secs(seconds)).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

async fn check(limiter: &RedisRateLimiter, quota: &Quota, key: &str) -> Decision {
    limiter.check(quota, key, now()).await.unwrap()
}

async fn keys(pool: &Pool) -> Vec<String> {
    let mut conn = pool.get().await.unwrap();
    let mut keys: Vec<String> = conn.keys("*").await.unwrap();
    keys.sort();
    keys
}

async fn pttl(pool: &Pool, key: &str) -> i64 {
    let mut conn = pool.get().await.unwrap();
    conn.pttl(key).await.unwrap()
}

/// Redis's clock in µs, as the script reads it.
async fn redis_time_us(pool: &Pool) -> i64 {
    let mut conn = pool.get().await.unwrap();
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    secs * 1_000_000 + micros
}

/// `a` and `b` differ by at most `tolerance`.
fn close(a: Duration, b: Duration, tolerance: Duration) -> bool {
    a.abs_diff(b) <= tolerance
}

#[tokio::test]
async fn a_burst_of_exactly_limit_is_allowed_then_denied_with_retry_after() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::new(pool_for(&server, Duration::from_secs(2)));
    let q = quota("login-ip", 5, 60);
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let decision = check(&limiter, &q, "192.0.2.1").await;
        assert!(decision.allowed);
        assert_eq!(decision.limit, 5);
        assert_eq!(decision.retry_after, None);
        remaining.push(decision.remaining);
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0]);

    let denied = check(&limiter, &q, "192.0.2.1").await;
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    let slack = Duration::from_secs(1);
    let retry = denied.retry_after.unwrap();
    assert!(retry > Duration::ZERO);
    assert!(close(retry, Duration::from_secs(12), slack), "{retry:?}");
    assert!(close(denied.reset_after, Duration::from_secs(60), slack));
    assert_eq!(denied.retry_after_seconds(), Some(12));
    assert_eq!(denied.ratelimit_header(&q), "\"login-ip\";r=0;t=12");
    // A denied request consumed nothing: the next one is denied for the same reason.
    assert!(!check(&limiter, &q, "192.0.2.1").await.allowed);

    // Other keys and other quotas have budgets of their own.
    assert_eq!(check(&limiter, &q, "192.0.2.2").await.remaining, 4);
    let by_email = quota("login-email", 5, 60);
    assert_eq!(check(&limiter, &by_email, "192.0.2.1").await.remaining, 4);
}

#[tokio::test]
async fn a_refund_gives_back_one_request_and_never_more_than_a_full_budget() {
    let server = RedisServer::start();
    let pool = pool_for(&server, Duration::from_secs(2));
    let limiter = RedisRateLimiter::new(pool.clone());
    let q = quota("login-failures", 3, 60);
    for _ in 0..3 {
        assert!(check(&limiter, &q, "ada").await.allowed);
    }
    assert!(!check(&limiter, &q, "ada").await.allowed);
    limiter.refund(&q, "ada", now()).await.unwrap();
    assert!(
        check(&limiter, &q, "ada").await.allowed,
        "the refunded request is back"
    );
    assert!(!check(&limiter, &q, "ada").await.allowed);
    // Refunding everything and more leaves a full bucket: the key is gone.
    for _ in 0..6 {
        limiter.refund(&q, "ada", now()).await.unwrap();
    }
    assert!(keys(&pool).await.is_empty(), "{:?}", keys(&pool).await);
    assert_eq!(check(&limiter, &q, "ada").await.remaining, 2);
    // Unknown keys are nothing to refund.
    limiter.refund(&q, "bob", now()).await.unwrap();
    assert!(!keys(&pool).await.iter().any(|k| k.ends_with(":bob")));
}

#[tokio::test]
async fn a_denied_client_is_allowed_again_after_retry_after() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::new(pool_for(&server, Duration::from_secs(2)));
    let q = quota("steady", 2, 1);
    assert!(check(&limiter, &q, "k").await.allowed);
    assert!(check(&limiter, &q, "k").await.allowed);
    let denied = check(&limiter, &q, "k").await;
    assert!(!denied.allowed);
    let wait = denied.retry_after.unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    // Exactly the advertised wait is enough; the 2 ms only absorb the wall clock (which Redis
    // reads) running a hair slower than the monotonic one (which the sleep uses).
    tokio::time::sleep(wait + Duration::from_millis(2)).await;
    let again = check(&limiter, &q, "k").await;
    assert!(again.allowed, "{again:?}");
    assert_eq!(again.remaining, 0);
}

#[tokio::test]
async fn two_instances_with_skewed_clocks_share_one_budget() {
    let server = RedisServer::start();
    let a = RedisRateLimiter::new(pool_for(&server, Duration::from_secs(2)));
    let b = RedisRateLimiter::new(pool_for(&server, Duration::from_secs(2)));
    let q = quota("login-email", 4, 60);
    let email = "ada@example.com";
    // B's clock is an hour ahead: it must neither refill the bucket nor lock A out, because
    // decisions use Redis's clock, not the callers'.
    let skewed = now() + time::Duration::hours(1);
    let mut allowed = Vec::new();
    for i in 0..6 {
        let decision = if i % 2 == 0 {
            a.check(&q, email, now()).await.unwrap()
        } else {
            b.check(&q, email, skewed).await.unwrap()
        };
        allowed.push((decision.allowed, decision.remaining));
    }
    assert_eq!(
        allowed,
        [
            (true, 3),
            (true, 2),
            (true, 1),
            (true, 0),
            (false, 0),
            (false, 0)
        ]
    );

    // Concurrent callers on both instances never overspend a bucket.
    let a = Arc::new(a);
    let b = Arc::new(b);
    let q = quota("socket-connect", 30, 60);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let limiter = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.spawn(async move { limiter.check(&q, "198.51.100.7", now()).await.unwrap() });
    }
    let mut granted = 0;
    while let Some(decision) = tasks.join_next().await {
        granted += usize::from(decision.unwrap().allowed);
    }
    assert_eq!(granted, 30);
}

#[tokio::test]
async fn keys_have_the_documented_layout_and_expire_when_the_bucket_is_full() {
    let server = RedisServer::start();
    let pool = pool_for(&server, Duration::from_secs(2));
    let limiter = RedisRateLimiter::new(pool.clone());
    assert_eq!(limiter.key_prefix(), "keel:");
    let ip = quota("login-ip", 5, 60);
    let email = quota("login-email", 5, 60);
    check(&limiter, &ip, "192.0.2.1").await;
    check(&limiter, &email, "ada@example.com").await;
    let hashed = limiter.redis_key(&email, "ada@example.com");
    assert!(
        hashed.starts_with("keel:ratelimit:login-email:#"),
        "{hashed}"
    );
    assert_eq!(hashed.len(), "keel:ratelimit:login-email:#".len() + 64);
    let mut expected = vec!["keel:ratelimit:login-ip:192.0.2.1".to_owned(), hashed];
    expected.sort();
    assert_eq!(keys(&pool).await, expected);
    assert_eq!(expected[1], limiter.redis_key(&ip, "192.0.2.1"));

    // The TTL is the time until the bucket is full: one interval after one request...
    let key = limiter.redis_key(&ip, "192.0.2.1");
    let ttl = pttl(&pool, &key).await;
    assert!(ttl > 11_000 && ttl <= 12_000, "{ttl}");
    // ...the whole window after the burst, and a denied request leaves it alone.
    for _ in 0..4 {
        check(&limiter, &ip, "192.0.2.1").await;
    }
    let ttl = pttl(&pool, &key).await;
    assert!(ttl > 59_000 && ttl <= 60_000, "{ttl}");
    assert!(!check(&limiter, &ip, "192.0.2.1").await.allowed);
    assert!(pttl(&pool, &key).await <= ttl);

    // Redis forgets a bucket by itself once it is full again.
    let short = quota("short", 2, 1);
    check(&limiter, &short, "k").await;
    let key = limiter.redis_key(&short, "k");
    let ttl = pttl(&pool, &key).await;
    assert!(ttl > 0 && ttl <= 500, "{ttl}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pttl(&pool, &key).await != -2 {
        assert!(Instant::now() < deadline, "{key} never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Another prefix is another set of buckets.
    let other = RedisRateLimiter::new(pool.clone()).with_key_prefix("app1:");
    assert_eq!(check(&other, &ip, "192.0.2.1").await.remaining, 4);
    assert!(
        keys(&pool)
            .await
            .contains(&"app1:ratelimit:login-ip:192.0.2.1".to_owned())
    );
}

#[tokio::test]
async fn decides_like_the_in_memory_limiter() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::new(pool_for(&server, Duration::from_secs(2)));
    let memory = InMemoryRateLimiter::new();
    let t0 = now();
    let started = Instant::now();
    // The same name with another limit, last, exercises the conversion of a stored TAT.
    let sequence = [
        (quota("api", 5, 60), 7),
        (quota("odd", 7, 10), 9),
        (quota("one", 1, 1), 2),
        (quota("big", u32::MAX, 86_400), 3),
        (quota("api", 7, 60), 2),
    ];
    for (q, requests) in sequence {
        for i in 0..requests {
            let at = t0 + started.elapsed();
            let expected = memory.check(&q, "k", at).await.unwrap();
            let got = limiter.check(&q, "k", at).await.unwrap();
            let context = format!("{} request {i}: {got:?} vs {expected:?}", q.name());
            assert_eq!(got.allowed, expected.allowed, "{context}");
            assert_eq!(got.limit, expected.limit, "{context}");
            assert_eq!(got.remaining, expected.remaining, "{context}");
            // The two clocks differ by the time the test has run, at most.
            let tolerance = started.elapsed() + Duration::from_micros(1);
            assert!(
                close(got.reset_after, expected.reset_after, tolerance),
                "{context}"
            );
            assert_eq!(got.retry_after.is_some(), expected.retry_after.is_some());
            if let (Some(got), Some(expected)) = (got.retry_after, expected.retry_after) {
                assert!(close(got, expected, tolerance), "{context}");
                assert!(got > Duration::ZERO);
            }
            assert_eq!(
                got.retry_after_seconds(),
                expected.retry_after_seconds(),
                "{context}"
            );
        }
    }
}

#[tokio::test]
async fn a_tat_far_ahead_is_capped_and_a_foreign_value_is_overwritten() {
    let server = RedisServer::start();
    let pool = pool_for(&server, Duration::from_secs(2));
    let limiter = RedisRateLimiter::new(pool.clone());
    let q = quota("api", 5, 60);
    let key = limiter.redis_key(&q, "k");

    // As after a failover to a server whose clock is an hour behind.
    let hour_ahead = redis_time_us(&pool).await + 3_600_000_000;
    let mut conn = pool.get().await.unwrap();
    let _: () = conn.set(&key, format!("{hour_ahead} 0 5")).await.unwrap();
    let denied = check(&limiter, &q, "k").await;
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_seconds(), Some(12));
    assert!(denied.reset_after <= Duration::from_secs(60));
    let ttl = pttl(&pool, &key).await;
    assert!(ttl > 59_000 && ttl <= 60_000, "the cap is stored: {ttl}");

    let _: () = conn.set(&key, "not a bucket").await.unwrap();
    let healed = check(&limiter, &q, "k").await;
    assert!(healed.allowed);
    assert_eq!(healed.remaining, 4);
    let value: String = conn.get(&key).await.unwrap();
    assert!(value.ends_with(" 0 5"), "{value}");
}

/// `check` fails with `Unavailable` within `bound`.
async fn assert_unavailable_within(limiter: &RedisRateLimiter, quota: &Quota, bound: Duration) {
    let started = Instant::now();
    let err = limiter.check(quota, "k", now()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, RateLimitError::Unavailable(_)), "{err:?}");
    assert!(elapsed < bound, "took {elapsed:?}");
}

/// Retries `check` until it answers, for at most a few seconds.
async fn answer_within(limiter: &RedisRateLimiter, quota: &Quota, bound: Duration) -> Decision {
    let deadline = Instant::now() + bound;
    loop {
        match limiter.check(quota, "k", now()).await {
            Ok(decision) => return decision,
            Err(err) => assert!(Instant::now() < deadline, "still failing: {err:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stopped_redis_is_unavailable_in_time_and_a_restarted_one_serves_again() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let limiter = RedisRateLimiter::new(pool_for(&server, timeout));
    let q = quota("login-ip", 3, 60);
    assert_eq!(check(&limiter, &q, "k").await.remaining, 2);

    server.stop();
    // Wait, connect and response timeouts, plus scheduling slack.
    let bound = 3 * timeout + Duration::from_millis(500);
    for _ in 0..3 {
        assert_unavailable_within(&limiter, &q, bound).await;
    }

    // The same pool recovers by itself; the new Redis is empty and has no script cached, so
    // this also goes through the NOSCRIPT reload.
    server.restart();
    let decision = answer_within(&limiter, &q, Duration::from_secs(5)).await;
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 2, "a restarted Redis starts empty");
    assert_eq!(check(&limiter, &q, "k").await.remaining, 1);
}

#[tokio::test]
async fn a_frozen_redis_is_unavailable_in_time_and_serves_again_when_resumed() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let limiter = RedisRateLimiter::new(pool_for(&server, timeout));
    let q = quota("login-ip", 10, 60);
    assert!(check(&limiter, &q, "k").await.allowed);

    server.pause();
    // The one pooled connection fails its health check (one response timeout), then a new
    // one connects to the frozen server and its handshake or command times out.
    let bound = 4 * timeout + Duration::from_millis(500);
    for _ in 0..3 {
        assert_unavailable_within(&limiter, &q, bound).await;
    }
    server.resume();
    let decision = answer_within(&limiter, &q, Duration::from_secs(5)).await;
    assert!(decision.allowed);
    // The bucket survived the freeze. Calls that timed out may still have been counted when
    // the server woke up and read them from its socket (at most one per attempt): a timeout
    // errs towards counting, never towards a free request.
    assert!((5..=8).contains(&decision.remaining), "{decision:?}");
}
