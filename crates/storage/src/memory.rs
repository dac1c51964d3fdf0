//! In-memory user store.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use keel_domain::{BoxFuture, Email, RepositoryError, UserId, UserRecord, UserRepository};

/// A [`UserRepository`] kept in process memory: nothing survives a restart, and every instance
/// of the server has its own. Meant for development, single-instance deployments and tests.
#[derive(Default)]
pub struct InMemoryUserRepository {
    // One lock over both maps: checking that an email is free and claiming it must be a single
    // step, or two concurrent registrations of one address could both succeed.
    inner: Mutex<Maps>,
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<UserId, UserRecord>,
    /// Canonical email -> id.
    id_by_email: HashMap<String, UserId>,
}

impl InMemoryUserRepository {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // No critical section below can leave the maps half-updated (the only fallible steps
        // run before anything is written), so a poisoned lock still guards consistent data.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert_now(&self, record: UserRecord) -> Result<(), RepositoryError> {
        let mut maps = self.maps();
        let Maps { by_id, id_by_email } = &mut *maps;
        let id = record.user.id;
        if by_id.contains_key(&id) {
            return Err(RepositoryError::IdTaken);
        }
        match id_by_email.entry(record.user.email.canonical().to_owned()) {
            Entry::Occupied(_) => Err(RepositoryError::EmailTaken),
            Entry::Vacant(slot) => {
                slot.insert(id);
                by_id.insert(id, record);
                Ok(())
            }
        }
    }

    fn find_by_email_now(&self, email: &Email) -> Option<UserRecord> {
        let maps = self.maps();
        let id = maps.id_by_email.get(email.canonical())?;
        maps.by_id.get(id).cloned()
    }

    fn find_by_id_now(&self, id: UserId) -> Option<UserRecord> {
        self.maps().by_id.get(&id).cloned()
    }
}

impl UserRepository for InMemoryUserRepository {
    // Every operation finishes before the future is returned, so the lock is never held across
    // an await point and the futures are ready at once.
    fn insert(&self, record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>> {
        Box::pin(std::future::ready(self.insert_now(record)))
    }

    fn find_by_email(
        &self,
        email: &Email,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(std::future::ready(Ok(self.find_by_email_now(email))))
    }

    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(std::future::ready(Ok(self.find_by_id_now(id))))
    }
}

impl fmt::Debug for InMemoryUserRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Accounts are personal data; the count is all a log needs.
        f.debug_struct("InMemoryUserRepository")
            .field("users", &self.maps().by_id.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_domain::{Clock, DisplayName, SystemClock, User};

    use super::*;

    fn record(email: &str) -> UserRecord {
        let email = Email::parse(email).unwrap();
        UserRecord {
            user: User {
                id: UserId::generate(),
                display_name: DisplayName::from_email(&email),
                email,
                created_at: SystemClock.now(),
            },
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        }
    }

    #[tokio::test]
    async fn an_inserted_user_is_found_by_id_and_by_email() {
        let repo = InMemoryUserRepository::new();
        let ada = record("Ada@Example.com");
        repo.insert(ada.clone()).await.unwrap();

        assert_eq!(
            repo.find_by_id(ada.user.id).await.unwrap(),
            Some(ada.clone())
        );
        let by_email = repo
            .find_by_email(&Email::parse("ada@example.com").unwrap())
            .await
            .unwrap();
        assert_eq!(by_email, Some(ada.clone()));
        // The address comes back as it was registered, not in its canonical form.
        assert_eq!(by_email.unwrap().user.email.as_str(), "Ada@Example.com");
    }

    #[tokio::test]
    async fn unknown_users_are_not_found() {
        let repo = InMemoryUserRepository::default();
        repo.insert(record("ada@example.com")).await.unwrap();
        assert_eq!(repo.find_by_id(UserId::generate()).await.unwrap(), None);
        let grace = Email::parse("grace@example.com").unwrap();
        assert_eq!(repo.find_by_email(&grace).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_second_account_with_the_same_canonical_email_is_refused() {
        let repo = InMemoryUserRepository::new();
        let first = record("ada@example.com");
        repo.insert(first.clone()).await.unwrap();

        let second = record("ADA@Example.COM");
        let second_id = second.user.id;
        assert!(matches!(
            repo.insert(second).await,
            Err(RepositoryError::EmailTaken)
        ));
        // The refused account left no trace, and the first is untouched.
        assert_eq!(repo.find_by_id(second_id).await.unwrap(), None);
        let found = repo.find_by_email(&first.user.email).await.unwrap();
        assert_eq!(found, Some(first));
    }

    #[tokio::test]
    async fn a_second_account_with_the_same_id_is_refused() {
        let repo = InMemoryUserRepository::new();
        let first = record("ada@example.com");
        repo.insert(first.clone()).await.unwrap();

        let mut clash = record("grace@example.com");
        clash.user.id = first.user.id;
        assert!(matches!(
            repo.insert(clash).await,
            Err(RepositoryError::IdTaken)
        ));
        // The refused email was not claimed either.
        let grace = record("grace@example.com");
        repo.insert(grace).await.unwrap();
        assert_eq!(repo.find_by_id(first.user.id).await.unwrap(), Some(first));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_many_concurrent_registrations_of_one_address_exactly_one_wins() {
        const ATTEMPTS: usize = 64;
        let repo: Arc<dyn UserRepository> = Arc::new(InMemoryUserRepository::new());
        let barrier = Arc::new(tokio::sync::Barrier::new(ATTEMPTS));

        let tasks: Vec<_> = (0..ATTEMPTS)
            .map(|i| {
                let repo = Arc::clone(&repo);
                let barrier = Arc::clone(&barrier);
                // The same address in different cases: they must collide canonically.
                let address = if i % 2 == 0 {
                    "Race@Example.com"
                } else {
                    "race@EXAMPLE.COM"
                };
                let candidate = record(address);
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

        let stored = repo
            .find_by_email(&Email::parse("race@example.com").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.user.id, winners[0]);
    }

    #[test]
    fn debug_output_shows_no_accounts() {
        let repo = InMemoryUserRepository::new();
        assert_eq!(format!("{repo:?}"), "InMemoryUserRepository { users: 0 }");
    }
}
