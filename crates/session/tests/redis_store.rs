//! The conformance suite against `RedisSessionStore` on a private redis-server, plus what only
//! Redis has: key layout and TTLs, and behaviour when Redis fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::{Harness, hash};
use keel_domain::{SessionId, UserId};
use keel_session::deadpool_redis::Pool;
use keel_session::deadpool_redis::redis::AsyncCommands;
use keel_session::{
    RedisPoolConfig, RedisSessionStore, RotateOutcome, Session, SessionConfig, SessionError,
    SessionStore, redis_pool,
};
use keel_testkit::eventually;
use keel_testkit::redis::{RedisServer, unique_prefix};
use time::OffsetDateTime;

fn pool_for(server: &RedisServer, timeout: Duration) -> Pool {
    redis_pool(&RedisPoolConfig {
        url: server.url().into(),
        max_size: 8,
        connect_timeout: timeout,
        response_timeout: timeout,
        wait_timeout: timeout,
    })
    .unwrap()
}

/// A store under a prefix of its own on the binary's one redis-server.
async fn redis_backend(config: SessionConfig) -> Harness {
    let config = SessionConfig {
        key_prefix: unique_prefix(),
        ..config
    };
    let store = Arc::new(RedisSessionStore::new(
        pool_for(RedisServer::shared(), Duration::from_secs(2)),
        config.clone(),
    ));
    Harness::new(store, config, Box::new(()))
}

conformance_suite!(redis_backend);

async fn keys(pool: &Pool, pattern: &str) -> Vec<String> {
    let mut conn = pool.get().await.unwrap();
    let mut keys: Vec<String> = conn.keys(pattern).await.unwrap();
    keys.sort();
    keys
}

async fn pttl(pool: &Pool, key: &str) -> i64 {
    let mut conn = pool.get().await.unwrap();
    conn.pttl(key).await.unwrap()
}

#[tokio::test]
async fn keys_live_under_the_prefix_with_ttls_and_revoke_leaves_none() {
    let pool = pool_for(RedisServer::shared(), Duration::from_secs(2));
    let app = unique_prefix();
    let config = SessionConfig {
        key_prefix: app.clone(),
        ..SessionConfig::default()
    };
    let store = RedisSessionStore::new(pool.clone(), config.clone());
    let now = OffsetDateTime::now_utc();
    let user = UserId::generate();
    let session = store
        .create(Session::new(user, now, &config), hash("t0"))
        .await
        .unwrap();
    let RotateOutcome::Rotated(_) = store
        .rotate_refresh(hash("t0"), hash("t1"), now)
        .await
        .unwrap()
    else {
        panic!("rotation failed")
    };

    let id = session.id;
    let mut expected = vec![
        format!("{app}refresh:{}", hash("t0")),
        format!("{app}refresh:{}", hash("t1")),
        format!("{app}session:{id}"),
        format!("{app}session:{id}:refresh"),
        format!("{app}user:{user}:sessions"),
    ];
    expected.sort();
    let everything = format!("{app}*");
    assert_eq!(keys(&pool, &everything).await, expected);

    let day = 24 * 3600 * 1000;
    let session_ttl = pttl(&pool, &format!("{app}session:{id}")).await;
    assert!(
        session_ttl > 7 * day - 60_000 && session_ttl <= 7 * day,
        "{session_ttl}"
    );
    for key in &expected[..2] {
        let ttl = pttl(&pool, key).await;
        assert!(ttl > 30 * day - 60_000 && ttl <= 30 * day, "{key}: {ttl}");
    }
    let index_ttl = pttl(&pool, &format!("{app}user:{user}:sessions")).await;
    assert!(index_ttl > 7 * day, "{index_ttl}");

    assert!(store.revoke(id).await.unwrap());
    assert_eq!(keys(&pool, &everything).await, Vec::<String>::new());
}

#[tokio::test]
async fn redis_forgets_expired_sessions_by_itself() {
    let pool = pool_for(RedisServer::shared(), Duration::from_secs(2));
    let config = SessionConfig {
        idle_ttl: Duration::from_millis(300),
        absolute_ttl: Duration::from_millis(600),
        key_prefix: unique_prefix(),
        ..SessionConfig::default()
    };
    let everything = format!("{}*", config.key_prefix);
    let store = RedisSessionStore::new(pool.clone(), config.clone());
    let session = Session::new(UserId::generate(), OffsetDateTime::now_utc(), &config);
    store.create(session, hash("t0")).await.unwrap();
    assert!(!keys(&pool, &everything).await.is_empty());

    eventually(
        "Redis expired every key",
        Duration::from_secs(10),
        || async {
            let left = keys(&pool, &everything).await;
            if left.is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await;
}

#[tokio::test]
async fn undecodable_records_are_corrupt_not_unavailable() {
    let pool = pool_for(RedisServer::shared(), Duration::from_secs(2));
    let app = unique_prefix();
    let config = SessionConfig {
        key_prefix: app.clone(),
        ..SessionConfig::default()
    };
    let store = RedisSessionStore::new(pool.clone(), config);
    let id = SessionId::generate();
    {
        let mut conn = pool.get().await.unwrap();
        let _: () = conn
            .set(format!("{app}session:{id}"), "not json")
            .await
            .unwrap();
        let _: () = conn
            .set(format!("{app}refresh:{}", hash("t")), id.to_string())
            .await
            .unwrap();
    }
    let err = store
        .authenticate(id, OffsetDateTime::now_utc())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Corrupt(_)), "{err:?}");
    let err = store
        .rotate_refresh(hash("t"), hash("u"), OffsetDateTime::now_utc())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Corrupt(_)), "{err:?}");
    // A corrupt record can still be revoked.
    assert!(store.revoke(id).await.unwrap());
    assert_eq!(
        store
            .authenticate(id, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        None
    );
}

/// Every call fails with `Unavailable`, each within `bound`.
async fn assert_unavailable_within(store: &RedisSessionStore, bound: Duration) {
    let now = OffsetDateTime::now_utc();
    let user = UserId::generate();
    let config = SessionConfig::default();
    macro_rules! check {
        ($call:expr) => {{
            let started = Instant::now();
            let err = $call.await.map(|_| ()).unwrap_err();
            let elapsed = started.elapsed();
            assert!(err.is_unavailable(), "{}: {err:?}", stringify!($call));
            assert!(elapsed < bound, "{} took {elapsed:?}", stringify!($call));
        }};
    }
    check!(store.authenticate(SessionId::generate(), now));
    check!(store.get(SessionId::generate(), now));
    check!(store.create(Session::new(user, now, &config), hash("x")));
    check!(store.list_for_user(user, now));
    check!(store.revoke(SessionId::generate()));
    check!(store.revoke_all_for_user(user));
    check!(store.rotate_refresh(hash("a"), hash("b"), now));
}

#[tokio::test]
async fn a_stopped_redis_makes_calls_unavailable_and_a_restarted_one_serves_again() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let store = RedisSessionStore::new(pool_for(&server, timeout), SessionConfig::default());
    let config = SessionConfig::default();
    let now = OffsetDateTime::now_utc();
    let before = store
        .create(Session::new(UserId::generate(), now, &config), hash("t0"))
        .await
        .unwrap();

    server.stop();
    assert_unavailable_within(&store, Duration::from_secs(1)).await;

    server.restart();
    // The same pool serves again; the restarted Redis is empty.
    assert_eq!(store.authenticate(before.id, now).await.unwrap(), None);
    let after = store
        .create(Session::new(UserId::generate(), now, &config), hash("t0"))
        .await
        .unwrap();
    assert!(store.authenticate(after.id, now).await.unwrap().is_some());
    assert!(matches!(
        store
            .rotate_refresh(hash("t0"), hash("t1"), now)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
}

#[tokio::test]
async fn a_hung_redis_makes_calls_unavailable_within_the_timeouts() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let store = RedisSessionStore::new(pool_for(&server, timeout), SessionConfig::default());
    let config = SessionConfig::default();
    let now = OffsetDateTime::now_utc();
    let session = store
        .create(Session::new(UserId::generate(), now, &config), hash("t0"))
        .await
        .unwrap();

    server.pause();
    // A call may spend a recycle timeout on the idle connection and a create timeout on a new
    // one (300 ms each), not more.
    assert_unavailable_within(&store, Duration::from_millis(1500)).await;

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.authenticate(session.id, now).await {
            Ok(found) => {
                assert_eq!(found.map(|s| s.id), Some(session.id));
                break;
            }
            Err(err) => {
                assert!(err.is_unavailable(), "{err:?}");
                assert!(
                    Instant::now() < deadline,
                    "still failing after resume: {err:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_unparsable_url_is_a_config_error_that_hides_the_url() {
    let err = redis_pool(&RedisPoolConfig {
        url: "nonsense://:hunter2@host".into(),
        ..RedisPoolConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, SessionError::Config(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn create_trims_idle_expired_entries_from_the_user_index() {
    let pool = pool_for(RedisServer::shared(), Duration::from_secs(2));
    let config = SessionConfig {
        idle_ttl: Duration::from_secs(3600),
        key_prefix: unique_prefix(),
        ..SessionConfig::default()
    };
    let store = RedisSessionStore::new(pool.clone(), config.clone());
    let user = UserId::generate();
    let start = OffsetDateTime::now_utc();
    store
        .create(Session::new(user, start, &config), hash("old"))
        .await
        .unwrap();
    let later = start + time::Duration::hours(2);
    let fresh = store
        .create(Session::new(user, later, &config), hash("new"))
        .await
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    let members: Vec<String> = conn
        .zrange(format!("{}user:{user}:sessions", config.key_prefix), 0, -1)
        .await
        .unwrap();
    assert_eq!(members, vec![fresh.id.to_string()]);
}
