//! `LocalUserCache`: it passes the conformance suite, answers repeated reads from memory, never
//! serves an account older than the last invalidation, and stays within its capacity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conformance::{Changing, Harness, record};
use keel_domain::{DisplayName, UserId, UserRepository};
use keel_storage::{InMemoryUserRepository, LocalUserCache};

async fn cached_memory() -> Harness {
    let store: Arc<dyn UserRepository> = Arc::new(InMemoryUserRepository::new());
    Harness::single(Arc::new(LocalUserCache::new(store)), Box::new(()))
}

user_repository_suite!(cached_memory);

fn cache_over(store: &Arc<Changing>) -> LocalUserCache {
    LocalUserCache::new(Arc::clone(store) as Arc<dyn UserRepository>)
}

#[tokio::test]
async fn repeated_reads_come_from_memory_until_the_account_changes_or_the_copy_ages() {
    let store = Arc::new(Changing::default());
    let cache = cache_over(&store).with_ttl(Duration::from_millis(200));
    let mut ada = record("ada@example.com");
    store.put(ada.clone());

    for _ in 0..5 {
        assert_eq!(
            cache.find_by_id(ada.user.id).await.unwrap(),
            Some(ada.clone())
        );
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 1, "one miss, then hits");

    ada.user.display_name = DisplayName::parse("Countess").unwrap();
    store.put(ada.clone());
    cache.invalidate(ada.user.id);
    assert_eq!(
        cache.find_by_id(ada.user.id).await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(store.reads.load(Ordering::SeqCst), 2);

    // A change that did not go through this cache shows once the copy is older than its TTL.
    ada.user.display_name = DisplayName::parse("Ada").unwrap();
    store.put(ada.clone());
    keel_testkit::eventually("the copy expires", Duration::from_secs(5), || async {
        let seen = cache.find_by_id(ada.user.id).await.unwrap().unwrap();
        if seen == ada {
            Ok(())
        } else {
            Err(seen.user.display_name)
        }
    })
    .await;

    // Unknown accounts are not kept: each miss asks the store.
    let before = store.reads.load(Ordering::SeqCst);
    let nobody = UserId::generate();
    assert_eq!(cache.find_by_id(nobody).await.unwrap(), None);
    assert_eq!(cache.find_by_id(nobody).await.unwrap(), None);
    assert_eq!(store.reads.load(Ordering::SeqCst), before + 2);
}

#[tokio::test]
async fn a_reader_that_raced_an_invalidation_cannot_put_the_old_account_back() {
    let store = Arc::new(Changing::default());
    let cache = Arc::new(cache_over(&store));
    let invalidating = Arc::clone(&cache);
    conformance::a_racing_fill_cannot_restore_an_old_account(cache, &store, |id| async move {
        invalidating.invalidate(id);
    })
    .await;
}

#[tokio::test]
async fn a_full_cache_serves_misses_without_keeping_them() {
    let store = Arc::new(Changing::default());
    let cache = cache_over(&store).with_capacity(2);
    let users: Vec<_> = (0..3)
        .map(|i| record(&format!("user{i}@example.com")))
        .collect();
    for user in &users {
        store.put(user.clone());
        assert_eq!(
            cache.find_by_id(user.user.id).await.unwrap().as_ref(),
            Some(user)
        );
    }
    // The first two are kept; the third was served but not kept.
    let reads = store.reads.load(Ordering::SeqCst);
    cache.find_by_id(users[0].user.id).await.unwrap();
    cache.find_by_id(users[1].user.id).await.unwrap();
    assert_eq!(store.reads.load(Ordering::SeqCst), reads);
    cache.find_by_id(users[2].user.id).await.unwrap();
    assert_eq!(store.reads.load(Ordering::SeqCst), reads + 1);
}
