//! `CachedUserRepository` over a store on a private redis-server: it passes the conformance
//! suite, answers repeated reads from Redis, never serves an account older than the last
//! invalidation, and keeps reading the store when Redis is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conformance::{Changing, Harness, record};
use deadpool_redis::redis;
use deadpool_redis::{Manager, Pool, Runtime};
use keel_domain::{DisplayName, RepositoryError, UserId, UserRepository};
use keel_storage::{CachedUserRepository, InMemoryUserRepository};
use keel_testkit::redis::{RedisServer, unique_prefix};

fn pool_for(server: &RedisServer) -> Pool {
    let timeout = Duration::from_millis(500);
    let connection = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let manager = Manager::new_with_config(server.url(), connection).unwrap();
    Pool::builder(manager)
        .max_size(4)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap()
}

async fn cached_memory() -> Harness {
    let prefix = unique_prefix();
    let store: Arc<dyn UserRepository> = Arc::new(InMemoryUserRepository::new());
    let pool = pool_for(RedisServer::shared());
    Harness {
        repo: Arc::new(CachedUserRepository::new(
            Arc::clone(&store),
            pool.clone(),
            &prefix,
        )),
        other: Arc::new(CachedUserRepository::new(store, pool, &prefix)),
        guard: Box::new(()),
    }
}

user_repository_suite!(cached_memory);

#[tokio::test]
async fn repeated_reads_come_from_redis_until_the_account_changes() {
    let store = Arc::new(Changing::default());
    let cache = CachedUserRepository::new(
        Arc::clone(&store) as Arc<dyn UserRepository>,
        pool_for(RedisServer::shared()),
        unique_prefix(),
    );
    let mut ada = record("ada@example.com");
    cache.insert(ada.clone()).await.unwrap();

    for _ in 0..5 {
        assert_eq!(
            cache.find_by_id(ada.user.id).await.unwrap(),
            Some(ada.clone())
        );
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 1, "one miss, then hits");

    // The account changes in the store, then the writer invalidates: the next read sees it.
    ada.user.display_name = DisplayName::parse("Countess").unwrap();
    store.put(ada.clone());
    cache.invalidate(ada.user.id).await.unwrap();
    assert_eq!(
        cache.find_by_id(ada.user.id).await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(store.reads.load(Ordering::SeqCst), 2);

    // Unknown accounts are not cached: each miss asks the store.
    let nobody = UserId::generate();
    assert_eq!(cache.find_by_id(nobody).await.unwrap(), None);
    assert_eq!(cache.find_by_id(nobody).await.unwrap(), None);
    assert_eq!(store.reads.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_reader_that_raced_an_invalidation_cannot_put_the_old_account_back() {
    let store = Arc::new(Changing::default());
    let cache = Arc::new(CachedUserRepository::new(
        Arc::clone(&store) as Arc<dyn UserRepository>,
        pool_for(RedisServer::shared()),
        unique_prefix(),
    ));
    let invalidating = Arc::clone(&cache);
    conformance::a_racing_fill_cannot_restore_an_old_account(cache, &store, |id| async move {
        invalidating.invalidate(id).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn without_redis_reads_go_to_the_store() {
    let mut server = RedisServer::start();
    let store = Arc::new(Changing::default());
    let cache = CachedUserRepository::new(
        Arc::clone(&store) as Arc<dyn UserRepository>,
        pool_for(&server),
        unique_prefix(),
    );
    let ada = record("ada@example.com");
    store.put(ada.clone());
    server.stop();
    assert_eq!(cache.find_by_id(ada.user.id).await.unwrap(), Some(ada));
    assert!(matches!(
        cache.invalidate(UserId::generate()).await,
        Err(RepositoryError::Unavailable(_))
    ));
}
