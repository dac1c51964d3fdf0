//! `CachedUserRepository` over a store on a private redis-server: it passes the conformance
//! suite, answers repeated reads from Redis, never serves an account older than the last
//! invalidation, and keeps reading the store when Redis is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conformance::{Harness, record};
use deadpool_redis::redis;
use deadpool_redis::{Manager, Pool, Runtime};
use keel_domain::{
    BoxFuture, DisplayName, Email, RepositoryError, UserId, UserRecord, UserRepository,
};
use keel_storage::{CachedUserRepository, InMemoryUserRepository};
use keel_testkit::redis::{RedisServer, unique_prefix};
use tokio::sync::Notify;

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

/// A store whose accounts a test can change behind the cache, counting its reads by id, and
/// able to hold the next read after it has read (to interleave a writer).
#[derive(Default)]
struct Changing {
    records: Mutex<HashMap<UserId, UserRecord>>,
    reads: AtomicUsize,
    gate: Mutex<Option<Arc<Gate>>>,
}

#[derive(Default)]
struct Gate {
    reached: Notify,
    release: Notify,
}

impl Changing {
    fn put(&self, record: UserRecord) {
        self.records.lock().unwrap().insert(record.user.id, record);
    }

    /// The next read takes its value, then waits for `release`.
    fn hold_reads(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.gate.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }
}

impl UserRepository for Changing {
    fn insert(&self, record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>> {
        self.put(record);
        Box::pin(async { Ok(()) })
    }

    fn find_by_email(
        &self,
        _email: &Email,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(async { Ok(None) })
    }

    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let found = self.records.lock().unwrap().get(&id).cloned();
        let gate = self.gate.lock().unwrap().take();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.reached.notify_one();
                gate.release.notified().await;
            }
            Ok(found)
        })
    }
}

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
    let mut ada = record("ada@example.com");
    store.put(ada.clone());

    // A reader misses, reads the old account from the store, and is held there...
    let gate = store.hold_reads();
    let reader = {
        let cache = Arc::clone(&cache);
        let id = ada.user.id;
        tokio::spawn(async move { cache.find_by_id(id).await })
    };
    gate.reached.notified().await;
    // ...while a writer changes the account and invalidates.
    let old = ada.clone();
    ada.user.display_name = DisplayName::parse("Countess").unwrap();
    store.put(ada.clone());
    cache.invalidate(ada.user.id).await.unwrap();
    gate.release.notify_one();
    // The reader answers what it read, but its snapshot must not land.
    assert_eq!(reader.await.unwrap().unwrap(), Some(old));
    assert_eq!(cache.find_by_id(ada.user.id).await.unwrap(), Some(ada));
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
