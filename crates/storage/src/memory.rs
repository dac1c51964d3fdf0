//! In-memory user store.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use keel_domain::{
    BoxFuture, Email, RepositoryError, UserChange, UserId, UserQuery, UserRecord, UserRepository,
    apply_email_change,
};
use time::OffsetDateTime;

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

    fn update_now(
        &self,
        id: UserId,
        change: &UserChange,
        now: OffsetDateTime,
    ) -> Option<UserRecord> {
        let mut maps = self.maps();
        let record = maps.by_id.get_mut(&id)?;
        change.apply(record, now);
        Some(record.clone())
    }

    fn change_email_now(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, RepositoryError> {
        let mut maps = self.maps();
        let Maps { by_id, id_by_email } = &mut *maps;
        let Some(record) = by_id.get_mut(&id) else {
            return Ok(None);
        };
        let canonical = email.canonical().to_owned();
        match id_by_email.get(&canonical) {
            Some(owner) if *owner != id => return Err(RepositoryError::EmailTaken),
            _ => {}
        }
        id_by_email.remove(record.user.email.canonical());
        id_by_email.insert(canonical, id);
        apply_email_change(record, email, now);
        Ok(Some(record.clone()))
    }

    fn delete_now(&self, id: UserId) -> bool {
        let mut maps = self.maps();
        let Some(record) = maps.by_id.remove(&id) else {
            return false;
        };
        maps.id_by_email.remove(record.user.email.canonical());
        true
    }

    fn replace_password_hash_now(&self, id: UserId, expected: &str, new_hash: String) -> bool {
        match self.maps().by_id.get_mut(&id) {
            Some(record) if record.password_hash == expected => {
                record.password_hash = new_hash;
                true
            }
            _ => false,
        }
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

    fn replace_password_hash(
        &self,
        id: UserId,
        expected: String,
        new_hash: String,
    ) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(std::future::ready(Ok(
            self.replace_password_hash_now(id, &expected, new_hash)
        )))
    }

    fn update(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(std::future::ready(Ok(self.update_now(id, &change, now))))
    }

    fn change_email(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(std::future::ready(self.change_email_now(id, email, now)))
    }

    fn delete(&self, id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(std::future::ready(Ok(self.delete_now(id))))
    }

    fn list(&self, query: UserQuery) -> BoxFuture<'_, Result<Vec<UserRecord>, RepositoryError>> {
        let maps = self.maps();
        let mut found: Vec<UserRecord> = maps
            .by_id
            .values()
            .filter(|record| query.matches(&record.user))
            .cloned()
            .collect();
        found.sort_by_key(|record| std::cmp::Reverse(record.user.id));
        found.truncate(query.limit);
        Box::pin(std::future::ready(Ok(found)))
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
    // Behaviour is covered by the conformance suite that every store passes
    // (tests/memory_users.rs); what stays here is what only this store has.
    use super::*;

    #[test]
    fn debug_output_shows_no_accounts() {
        let repo = InMemoryUserRepository::new();
        assert_eq!(format!("{repo:?}"), "InMemoryUserRepository { users: 0 }");
    }
}
