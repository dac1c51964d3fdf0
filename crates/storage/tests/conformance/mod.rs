//! The conformance suite every `UserRepository` must pass: one set of behaviours, run against
//! the memory store, the Redis store and the PostgreSQL store (`memory_users.rs`,
//! `redis_users.rs`, `postgres_users.rs`).
//!
//! A backend provides an async factory `fn() -> Harness`: the store under test, a second handle
//! on the same data (another pool, as another instance would have; the same store where there
//! is only one), and whatever must stay alive meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use keel_domain::{
    BoxFuture, DisplayName, Email, RepositoryError, User, UserChange, UserId, UserRecord,
    UserRepository, truncate_to_micros,
};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::Notify;

/// A store under test.
pub struct Harness {
    /// The store.
    pub repo: Arc<dyn UserRepository>,
    /// The same data through another handle (another instance), or the same store.
    pub other: Arc<dyn UserRepository>,
    /// Kept alive for the length of the test.
    pub guard: Box<dyn Any + Send>,
}

impl Harness {
    /// A harness whose second handle is the store itself.
    pub fn single(repo: Arc<dyn UserRepository>, guard: Box<dyn Any + Send>) -> Self {
        Self {
            other: Arc::clone(&repo),
            repo,
            guard,
        }
    }
}

/// A store whose accounts a test can change behind the cache, counting its reads by id, and
/// able to hold the next read after it has read (to interleave a writer).
#[derive(Default)]
pub struct Changing {
    records: Mutex<HashMap<UserId, UserRecord>>,
    /// How many `find_by_id` calls reached the store.
    pub reads: AtomicUsize,
    gate: Mutex<Option<Arc<Gate>>>,
}

#[derive(Default)]
pub struct Gate {
    /// Notified when the held read has taken its value.
    pub reached: Notify,
    /// Lets the held read return.
    pub release: Notify,
}

impl Changing {
    pub fn put(&self, record: UserRecord) {
        self.records.lock().unwrap().insert(record.user.id, record);
    }

    /// The next read takes its value, then waits for `release`.
    pub fn hold_reads(&self) -> Arc<Gate> {
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

    fn replace_password_hash(
        &self,
        id: UserId,
        expected: String,
        new_hash: String,
    ) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        let mut records = self.records.lock().unwrap();
        let replaced = match records.get_mut(&id) {
            Some(record) if record.password_hash == expected => {
                record.password_hash = new_hash;
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(replaced) })
    }

    fn update(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        let mut records = self.records.lock().unwrap();
        let updated = records.get_mut(&id).map(|record| {
            change.apply(record, now);
            record.clone()
        });
        Box::pin(async move { Ok(updated) })
    }

    fn change_email(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        let mut records = self.records.lock().unwrap();
        let changed = records.get_mut(&id).map(|record| {
            keel_domain::apply_email_change(record, email, now);
            record.clone()
        });
        Box::pin(async move { Ok(changed) })
    }

    fn delete(&self, id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        let deleted = self.records.lock().unwrap().remove(&id).is_some();
        Box::pin(async move { Ok(deleted) })
    }

    fn list(
        &self,
        query: keel_domain::UserQuery,
    ) -> BoxFuture<'_, Result<Vec<UserRecord>, RepositoryError>> {
        let mut found: Vec<_> = self
            .records
            .lock()
            .unwrap()
            .values()
            .filter(|r| query.matches(&r.user))
            .cloned()
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse(r.user.id));
        found.truncate(query.limit);
        Box::pin(async move { Ok(found) })
    }
}

/// The race every cache in front of a store must win: a reader misses, reads the old account
/// from the store and is held there while a writer changes the account and calls `invalidate`;
/// the reader then answers what it read, but the next read must see the change.
pub async fn a_racing_fill_cannot_restore_an_old_account<I, IFut>(
    cache: Arc<dyn UserRepository>,
    store: &Changing,
    invalidate: I,
) where
    I: FnOnce(UserId) -> IFut,
    IFut: Future<Output = ()>,
{
    let mut ada = record("ada@example.com");
    store.put(ada.clone());
    let gate = store.hold_reads();
    let reader = {
        let cache = Arc::clone(&cache);
        let id = ada.user.id;
        tokio::spawn(async move { cache.find_by_id(id).await })
    };
    gate.reached.notified().await;
    let old = ada.clone();
    ada.user.display_name = DisplayName::parse("Countess").unwrap();
    store.put(ada.clone());
    invalidate(ada.user.id).await;
    gate.release.notify_one();
    assert_eq!(reader.await.unwrap().unwrap(), Some(old));
    assert_eq!(cache.find_by_id(ada.user.id).await.unwrap(), Some(ada));
}

pub const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

/// A new account for `address`, as registration makes one.
pub fn record(address: &str) -> UserRecord {
    let email = Email::parse(address).unwrap();
    UserRecord::new(
        User::new(
            UserId::generate(),
            email.clone(),
            DisplayName::from_email(&email),
            OffsetDateTime::now_utc(),
        ),
        HASH.to_owned(),
    )
}

pub fn email(address: &str) -> Email {
    Email::parse(address).unwrap()
}

/// Runs every conformance test as its own `#[tokio::test]` against the backend made by `$make`
/// (an `async fn() -> Harness`).
#[macro_export]
macro_rules! user_repository_suite {
    ($make:path) => {
        $crate::user_repository_suite!(@tests $make;
            an_inserted_user_is_found_by_id_and_by_any_spelling_of_its_email,
            unknown_users_are_not_found,
            another_spelling_of_a_taken_email_is_refused_without_a_trace,
            a_taken_id_is_refused_and_claims_no_email,
            a_user_registered_through_one_handle_is_known_through_the_other,
            of_concurrent_registrations_of_one_address_in_many_spellings_exactly_one_wins,
            records_round_trip_exactly,
            a_password_hash_is_replaced_only_while_it_is_the_expected_one,
            a_change_is_applied_once_seen_everywhere_and_concurrent_changes_all_land,
            a_new_password_a_verified_address_and_a_role_are_kept,
            an_address_changes_atomically_and_frees_the_old_one,
            a_deleted_account_is_gone_everywhere_and_its_address_is_free,
            accounts_list_newest_first_in_pages_and_by_search,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                conformance::$name($make).await;
            }
        )*
    };
}

pub async fn a_new_password_a_verified_address_and_a_role_are_kept<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = record("ada@example.com");
    h.repo.insert(ada.clone()).await.unwrap();
    assert!(h.repo.find_by_id(ada.user.id).await.unwrap().is_some());
    let t1 = ada.user.created_at + time::Duration::seconds(1);
    let t2 = t1 + time::Duration::seconds(1);
    let new_hash = "$argon2id$v=19$m=8,t=1,p=1$bmV3$bmV3".to_owned();
    for (change, at) in [
        (UserChange::PasswordHash(new_hash.clone()), t1),
        (UserChange::VerifyEmail, t1),
        (UserChange::GrantRole("admin".into()), t1),
        // Twice: kept once, and the first verification time stays.
        (UserChange::GrantRole("admin".into()), t2),
        (UserChange::VerifyEmail, t2),
    ] {
        h.repo
            .update(ada.user.id, change, at)
            .await
            .unwrap()
            .unwrap();
    }
    for repo in [&h.repo, &h.other] {
        let stored = repo.find_by_id(ada.user.id).await.unwrap().unwrap();
        assert_eq!(stored.password_hash, new_hash);
        assert_eq!(stored.user.email_verified_at, Some(t1));
        assert_eq!(stored.user.roles, ["admin"]);
        assert_eq!(stored.user.updated_at, t2);
        let by_email = repo.find_by_email(&email("ada@example.com")).await.unwrap();
        assert_eq!(by_email.as_ref(), Some(&stored));
    }
}

pub async fn an_address_changes_atomically_and_frees_the_old_one<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = record("ada@example.com");
    let bob = record("bob@example.com");
    h.repo.insert(ada.clone()).await.unwrap();
    h.repo.insert(bob.clone()).await.unwrap();
    assert!(h.repo.find_by_id(ada.user.id).await.unwrap().is_some());
    let later = ada.user.created_at + time::Duration::seconds(3);

    // Another account's address, in any spelling, is taken, and nothing changes.
    let taken = h
        .repo
        .change_email(ada.user.id, email("BOB@example.com"), later)
        .await;
    assert!(
        matches!(taken, Err(RepositoryError::EmailTaken)),
        "{taken:?}"
    );
    assert_eq!(
        h.repo.find_by_id(ada.user.id).await.unwrap(),
        Some(ada.clone())
    );

    let changed = h
        .repo
        .change_email(ada.user.id, email("Lovelace@Example.com"), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.user.email.as_str(), "Lovelace@Example.com");
    assert_eq!(changed.user.email_verified_at, Some(later));
    assert_eq!(changed.user.updated_at, later);
    assert_eq!(changed.password_hash, ada.password_hash);
    for repo in [&h.repo, &h.other] {
        assert_eq!(
            repo.find_by_id(ada.user.id).await.unwrap().as_ref(),
            Some(&changed)
        );
        let found = repo
            .find_by_email(&email("lovelace@example.com"))
            .await
            .unwrap();
        assert_eq!(found.as_ref(), Some(&changed));
        assert_eq!(
            repo.find_by_email(&email("ada@example.com")).await.unwrap(),
            None
        );
    }
    // The old address is free for a new account; the new one is not.
    h.other.insert(record("ada@example.com")).await.unwrap();
    let again = h.other.insert(record("LOVELACE@example.com")).await;
    assert!(
        matches!(again, Err(RepositoryError::EmailTaken)),
        "{again:?}"
    );
    // A change to its own address in another case is no conflict.
    let recased = h
        .repo
        .change_email(ada.user.id, email("lovelace@example.com"), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recased.user.email.as_str(), "lovelace@example.com");
    assert_eq!(
        h.other
            .find_by_email(&email("LoveLace@example.com"))
            .await
            .unwrap()
            .map(|r| r.user.id),
        Some(ada.user.id)
    );
    // No such account.
    let nobody = h
        .repo
        .change_email(UserId::generate(), email("nobody@example.com"), later)
        .await
        .unwrap();
    assert_eq!(nobody, None);
}

pub async fn a_deleted_account_is_gone_everywhere_and_its_address_is_free<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = record("ada@example.com");
    h.repo.insert(ada.clone()).await.unwrap();
    assert!(h.repo.find_by_id(ada.user.id).await.unwrap().is_some());
    assert!(h.repo.delete(ada.user.id).await.unwrap());
    for repo in [&h.repo, &h.other] {
        assert_eq!(repo.find_by_id(ada.user.id).await.unwrap(), None);
        assert_eq!(
            repo.find_by_email(&email("ada@example.com")).await.unwrap(),
            None
        );
    }
    assert!(!h.repo.delete(ada.user.id).await.unwrap(), "deleted twice");
    // The address can register again, as a new account.
    let again = record("Ada@Example.com");
    h.other.insert(again.clone()).await.unwrap();
    assert_eq!(
        h.repo
            .find_by_email(&email("ada@example.com"))
            .await
            .unwrap(),
        Some(again)
    );
}

pub async fn accounts_list_newest_first_in_pages_and_by_search<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    use keel_domain::UserQuery;
    let h = make().await;
    let mut ids = Vec::new();
    for who in ["ada.lovelace", "bob", "carol", "dave.lovelace"] {
        let record = record(&format!("{who}@example.com"));
        ids.push(record.user.id);
        h.repo.insert(record).await.unwrap();
    }
    ids.reverse(); // newest first
    let all = h
        .other
        .list(UserQuery {
            limit: 100,
            ..UserQuery::default()
        })
        .await
        .unwrap();
    let listed: Vec<_> = all
        .iter()
        .map(|r| r.user.id)
        .filter(|id| ids.contains(id))
        .collect();
    assert_eq!(listed, ids);
    // Pages of one, each before the last of the previous one.
    let mut paged = Vec::new();
    let mut before = None;
    while let Some(last) = h
        .repo
        .list(UserQuery {
            before,
            limit: 1,
            ..UserQuery::default()
        })
        .await
        .unwrap()
        .pop()
    {
        before = Some(last.user.id);
        if ids.contains(&last.user.id) {
            paged.push(last.user.id);
        }
    }
    assert_eq!(paged, ids);
    // A search in any case matches the address or the name, and is text, not a pattern.
    let found = h
        .repo
        .list(UserQuery {
            search: Some("LOVELACE".into()),
            limit: 100,
            ..UserQuery::default()
        })
        .await
        .unwrap();
    let found: Vec<_> = found.iter().map(|r| r.user.id).collect();
    assert_eq!(found, [ids[0], ids[3]]);
    for pattern in ["%", "_", "*"] {
        let none = h
            .repo
            .list(UserQuery {
                search: Some(pattern.into()),
                limit: 100,
                ..UserQuery::default()
            })
            .await
            .unwrap();
        assert!(none.is_empty(), "{pattern:?} matched {none:?}");
    }
}

pub async fn an_inserted_user_is_found_by_id_and_by_any_spelling_of_its_email<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let jose = record("Jos\u{e9}.Garc\u{ed}a@Example.com");
    h.repo.insert(jose.clone()).await.unwrap();

    assert_eq!(
        h.repo.find_by_id(jose.user.id).await.unwrap(),
        Some(jose.clone())
    );
    for spelling in [
        "jos\u{e9}.garc\u{ed}a@example.com",
        "JOS\u{c9}.GARC\u{cd}A@EXAMPLE.COM",
        // Decomposed: `e` + combining acute accent.
        "Jose\u{301}.Garci\u{301}a@Example.com",
        "  jos\u{e9}.garc\u{ed}a@example.com\t",
    ] {
        let found = h.repo.find_by_email(&email(spelling)).await.unwrap();
        assert_eq!(found.as_ref(), Some(&jose), "{spelling:?}");
        // The address comes back as it was registered, not in its canonical form.
        assert_eq!(
            found.unwrap().user.email.as_str(),
            "Jos\u{e9}.Garc\u{ed}a@Example.com"
        );
    }
}

pub async fn a_password_hash_is_replaced_only_while_it_is_the_expected_one<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = record("ada@example.com");
    h.repo.insert(ada.clone()).await.unwrap();
    // Read first, so that a cache in front of the store holds the account.
    assert_eq!(
        h.repo.find_by_id(ada.user.id).await.unwrap(),
        Some(ada.clone())
    );

    let stale = "$argon2id$v=19$m=1,t=1,p=1$c3RhbGU$c3RhbGU".to_owned();
    let replaced = h
        .repo
        .replace_password_hash(ada.user.id, stale, "never".into())
        .await
        .unwrap();
    assert!(!replaced, "another hash was expected");
    assert_eq!(
        h.repo.find_by_id(ada.user.id).await.unwrap(),
        Some(ada.clone())
    );

    let upgraded = format!("{}-upgraded", ada.password_hash);
    let replaced = h
        .repo
        .replace_password_hash(ada.user.id, ada.password_hash.clone(), upgraded.clone())
        .await
        .unwrap();
    assert!(replaced);
    let expected = UserRecord {
        password_hash: upgraded.clone(),
        ..ada.clone()
    };
    // Seen at once by id and by email; nothing else changed, `updated_at` included.
    assert_eq!(
        h.repo.find_by_id(ada.user.id).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        h.repo.find_by_email(&ada.user.email).await.unwrap(),
        Some(expected)
    );
    // The old hash is no longer the expected one; an unknown account has none.
    let again = h
        .repo
        .replace_password_hash(ada.user.id, ada.password_hash.clone(), "x".into())
        .await
        .unwrap();
    assert!(!again);
    let unknown = h
        .repo
        .replace_password_hash(UserId::generate(), upgraded, "x".into())
        .await
        .unwrap();
    assert!(!unknown);
}

pub async fn a_change_is_applied_once_seen_everywhere_and_concurrent_changes_all_land<F, Fut>(
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = record("ada@example.com");
    h.repo.insert(ada.clone()).await.unwrap();
    assert_eq!(
        h.repo.find_by_id(ada.user.id).await.unwrap(),
        Some(ada.clone())
    );

    let later = ada.user.created_at + time::Duration::seconds(5);
    let name = keel_domain::DisplayName::parse("Ada Lovelace").unwrap();
    let updated = h
        .repo
        .update(ada.user.id, UserChange::DisplayName(name.clone()), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.user.display_name, name);
    assert_eq!(updated.user.updated_at, later);
    assert_eq!(updated.user.created_at, ada.user.created_at);
    assert_eq!(updated.password_hash, ada.password_hash);
    // Seen at once by id (through any cache) and by e-mail.
    assert_eq!(
        h.repo.find_by_id(ada.user.id).await.unwrap(),
        Some(updated.clone())
    );
    assert_eq!(
        h.repo.find_by_email(&ada.user.email).await.unwrap(),
        Some(updated)
    );
    // An unknown account is no account.
    let none = h
        .repo
        .update(UserId::generate(), UserChange::DisplayName(name), later)
        .await
        .unwrap();
    assert_eq!(none, None);

    // Concurrent changes of one account: each lands whole, and the last one read is one of
    // them (none is half-applied, none fails).
    let names: Vec<String> = (0..8).map(|i| format!("Name {i}")).collect();
    let results = futures_join(names.iter().map(|n| {
        let repo = Arc::clone(&h.repo);
        let id = ada.user.id;
        let change = UserChange::DisplayName(keel_domain::DisplayName::parse(n).unwrap());
        async move { repo.update(id, change, later).await }
    }))
    .await;
    for result in results {
        assert!(result.unwrap().is_some());
    }
    let last = h.repo.find_by_id(ada.user.id).await.unwrap().unwrap();
    assert!(
        names.contains(&last.user.display_name.as_str().to_owned()),
        "{last:?}"
    );
}

/// Runs the futures concurrently, each on a task of its own, and returns their outputs.
async fn futures_join<T: Send + 'static>(
    futures: impl Iterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

pub async fn unknown_users_are_not_found<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    h.repo.insert(record("ada@example.com")).await.unwrap();
    assert_eq!(h.repo.find_by_id(UserId::generate()).await.unwrap(), None);
    for other in ["grace@example.com", "ada@example.org", "ada@example.co"] {
        assert_eq!(h.repo.find_by_email(&email(other)).await.unwrap(), None);
    }
}

pub async fn another_spelling_of_a_taken_email_is_refused_without_a_trace<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let first = record("\u{c9}lodie@Exemple.fr");
    h.repo.insert(first.clone()).await.unwrap();

    for spelling in [
        "\u{e9}lodie@exemple.fr",
        "\u{c9}LODIE@EXEMPLE.FR",
        "E\u{301}lodie@exemple.fr",
        "e\u{301}LODIE@exemple.FR",
    ] {
        let second = record(spelling);
        let second_id = second.user.id;
        let refused = h.repo.insert(second).await;
        assert!(
            matches!(refused, Err(RepositoryError::EmailTaken)),
            "{spelling:?}: {refused:?}"
        );
        assert_eq!(h.repo.find_by_id(second_id).await.unwrap(), None);
    }
    assert_eq!(
        h.repo.find_by_email(&first.user.email).await.unwrap(),
        Some(first)
    );
}

pub async fn a_taken_id_is_refused_and_claims_no_email<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let first = record("ada@example.com");
    h.repo.insert(first.clone()).await.unwrap();

    let mut clash = record("grace@example.com");
    clash.user.id = first.user.id;
    let refused = h.repo.insert(clash).await;
    assert!(
        matches!(refused, Err(RepositoryError::IdTaken)),
        "{refused:?}"
    );
    assert_eq!(
        h.repo
            .find_by_email(&email("grace@example.com"))
            .await
            .unwrap(),
        None
    );
    // The address is still free, and the first account untouched.
    h.repo.insert(record("grace@example.com")).await.unwrap();
    assert_eq!(h.repo.find_by_id(first.user.id).await.unwrap(), Some(first));
}

pub async fn a_user_registered_through_one_handle_is_known_through_the_other<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = record("ada@example.com");
    h.repo.insert(ada.clone()).await.unwrap();
    assert_eq!(
        h.other.find_by_email(&ada.user.email).await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(h.other.find_by_id(ada.user.id).await.unwrap(), Some(ada));
    let refused = h.other.insert(record("ADA@example.com")).await;
    assert!(
        matches!(refused, Err(RepositoryError::EmailTaken)),
        "{refused:?}"
    );
}

pub async fn of_concurrent_registrations_of_one_address_in_many_spellings_exactly_one_wins<F, Fut>(
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    const ATTEMPTS: usize = 24;
    let h = make().await;
    let handles = [Arc::clone(&h.repo), Arc::clone(&h.other)];
    let spellings = [
        "Ren\u{e9}e@Example.com",
        "ren\u{e9}e@example.com",
        "Rene\u{301}e@example.com",
        "RENE\u{301}E@EXAMPLE.COM",
    ];
    let barrier = Arc::new(tokio::sync::Barrier::new(ATTEMPTS));
    let tasks: Vec<_> = (0..ATTEMPTS)
        .map(|i| {
            let repo = Arc::clone(&handles[i % 2]);
            let barrier = Arc::clone(&barrier);
            let candidate = record(spellings[i % spellings.len()]);
            tokio::spawn(async move {
                barrier.wait().await;
                let id = candidate.user.id;
                repo.insert(candidate).await.map(|()| id)
            })
        })
        .collect();

    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(id) => winners.push(id),
            Err(RepositoryError::EmailTaken) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one registration must win");
    for handle in &handles {
        for spelling in spellings {
            let stored = handle
                .find_by_email(&email(spelling))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.user.id, winners[0], "{spelling:?}");
        }
    }
}

pub async fn records_round_trip_exactly<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let longest_local = "L".repeat(Email::MAX_LOCAL_CHARS);
    let long_domain = format!("{}.Example.COM", "d".repeat(150));
    let cases = [
        // A non-UTC offset and microseconds: the instant must come back exactly.
        (
            "Ada.Lovelace+Keel@Example.com".to_owned(),
            "Ada Lovelace \u{2728} \u{ab}\u{639}\u{631}\u{628}\u{649}\u{bb}",
            datetime!(2025-01-02 03:04:05.123456 +02:00),
            true,
        ),
        // A long address (stores that hash it for a key must not care).
        (
            format!("{longest_local}@{long_domain}"),
            "x",
            datetime!(1970-01-01 00:00:00 UTC),
            false,
        ),
        (
            "\u{c9}LODIE@exemple.fr".to_owned(),
            "\u{c9}lodie \"quotes\" \\ and {braces} \u{1F469}\u{200D}\u{1F4BB}",
            datetime!(9999-12-31 23:59:59.999999 UTC),
            true,
        ),
    ];
    for (address, name, created_at, rich) in cases {
        let mut original = record(&address);
        original.user.display_name = DisplayName::parse(name).unwrap();
        original.user.created_at = created_at;
        original.user.updated_at = truncate_to_micros(OffsetDateTime::now_utc());
        if rich {
            original.user.email_verified_at = Some(datetime!(2026-02-03 04:05:06.789012 UTC));
            original.user.roles = vec!["admin".to_owned(), "support".to_owned()];
            original.disabled_at = Some(datetime!(2026-03-04 05:06:07.000001 UTC));
        }
        original.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$\"odd\\hash\u{e9}".into();
        h.repo.insert(original.clone()).await.unwrap();

        for found in [
            h.repo.find_by_id(original.user.id).await.unwrap().unwrap(),
            h.other
                .find_by_email(&email(&address.to_lowercase()))
                .await
                .unwrap()
                .unwrap(),
        ] {
            assert_eq!(found, original);
            assert_eq!(found.user.email.as_str(), original.user.email.as_str());
            assert_eq!(found.user.display_name.as_str(), name);
            assert_eq!(
                found.user.created_at.unix_timestamp_nanos(),
                created_at.unix_timestamp_nanos()
            );
            assert_eq!(found.user.roles, original.user.roles);
            assert_eq!(found.disabled_at, original.disabled_at);
            assert_eq!(found.password_hash, original.password_hash);
        }
    }
}
