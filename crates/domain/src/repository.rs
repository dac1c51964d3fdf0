//! Ports: the traits through which the domain reaches its stores.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;

use crate::display_name::DisplayName;
use crate::email::Email;
use crate::ids::UserId;
use crate::lifecycle::AuditEvent;
use crate::user::{UserRecord, truncate_to_micros};

/// A boxed, sendable future: what port methods return, so the traits stay object-safe (usable
/// as `Arc<dyn Trait>`) without an async-trait macro.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// Another account already has this email (compared canonically).
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Another account already has this id. With UUIDv7 ids this means a caller bug (the same
    /// record inserted twice), never a race between two registrations.
    #[error("an account with this id already exists")]
    IdTaken,
    /// The store cannot answer now (down, timed out, misconfigured). Callers fail closed.
    #[error("the user store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RepositoryError {
    /// An [`RepositoryError::Unavailable`] caused by `source`.
    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }
}

/// A change of an account that leaves its id and e-mail address alone (so no store has to
/// touch its e-mail index; [`UserRepository::change_email`] is the one change that does).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserChange {
    /// A new display name.
    DisplayName(DisplayName),
    /// The account can no longer log in (since the change's time); nothing else changes.
    Disable,
    /// The account can log in again.
    Enable,
    /// A new password, as its PHC hash (a change or a reset, which the user sees; a rehash at
    /// new parameters is [`UserRepository::replace_password_hash`]).
    PasswordHash(String),
    /// The address was proven to be the user's (a verification link was followed); verifying
    /// twice keeps the first time.
    VerifyEmail,
    /// The account gains `role` (kept once, in the order granted).
    GrantRole(String),
}

impl fmt::Debug for UserChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DisplayName(name) => f.debug_tuple("DisplayName").field(name).finish(),
            Self::Disable => f.write_str("Disable"),
            Self::Enable => f.write_str("Enable"),
            // Never the hash: it may end up in a log.
            Self::PasswordHash(_) => f.write_str("PasswordHash(..)"),
            Self::VerifyEmail => f.write_str("VerifyEmail"),
            Self::GrantRole(role) => f.debug_tuple("GrantRole").field(role).finish(),
        }
    }
}

impl UserChange {
    /// Applies the change to `record`, which then last changed at `now` (to the microsecond,
    /// as stores keep times). Every store applies changes with this, so they agree.
    pub fn apply(&self, record: &mut UserRecord, now: OffsetDateTime) {
        match self {
            Self::DisplayName(name) => record.user.display_name = name.clone(),
            // Disabling twice keeps the first time: when access ended is what matters.
            Self::Disable => {
                record.disabled_at = record.disabled_at.or(Some(truncate_to_micros(now)));
            }
            Self::Enable => record.disabled_at = None,
            Self::PasswordHash(hash) => record.password_hash.clone_from(hash),
            Self::VerifyEmail => {
                record.user.email_verified_at = record
                    .user
                    .email_verified_at
                    .or(Some(truncate_to_micros(now)));
            }
            Self::GrantRole(role) => {
                if !record.user.roles.contains(role) {
                    record.user.roles.push(role.clone());
                }
            }
        }
        record.user.updated_at = truncate_to_micros(now);
    }
}

/// Where user accounts are kept.
pub trait UserRepository: Send + Sync + 'static {
    /// Stores a new account. Refuses it with [`RepositoryError::EmailTaken`] when an account
    /// with the same canonical email exists, atomically: of two concurrent registrations of one
    /// address, exactly one succeeds.
    fn insert(&self, record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>>;

    /// The account whose email matches `email` canonically (case-insensitively), if any.
    fn find_by_email(
        &self,
        email: &Email,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>>;

    /// The account with this id, if any.
    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>>;

    /// Replaces the password hash of account `id` with `new_hash`, but only while it is still
    /// `expected` (compare and set), and says whether it did: `false` when the account is gone
    /// or its hash changed meanwhile (a password change that raced a login's rehash wins).
    /// `updated_at` stays: a rehash changes nothing that the user can see.
    fn replace_password_hash(
        &self,
        id: UserId,
        expected: String,
        new_hash: String,
    ) -> BoxFuture<'_, Result<bool, RepositoryError>>;

    /// Applies `change` to account `id` at `now`, atomically (a concurrent change is never
    /// lost), and returns the account as stored afterwards; `None` when there is no such
    /// account.
    fn update(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>>;

    /// Gives account `id` the address `email` at `now`, verified then (the change is confirmed
    /// through a link sent to the new address), atomically with the e-mail index: the old
    /// address is free afterwards, and [`RepositoryError::EmailTaken`] when another account
    /// has the new one (compared canonically). `None` when there is no such account.
    fn change_email(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>>;

    /// Deletes account `id` and frees its address; says whether there was such an account.
    /// What else belongs to the account (sessions, tokens) is deleted by its own store.
    fn delete(&self, id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>>;

    /// The accounts that `query` selects, newest first (ids are time-ordered UUIDv7).
    fn list(&self, query: UserQuery) -> BoxFuture<'_, Result<Vec<UserRecord>, RepositoryError>>;

    /// [`update`](Self::update), with `event` recorded in the audit log as part of the change
    /// where the store keeps both (PostgreSQL: one transaction, so neither is ever without the
    /// other). Returns the account, and the event when the caller still has to record it (a
    /// store that keeps no audit log); `(None, None)` when there is no such account.
    fn update_audited(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<Option<UserRecord>>, RepositoryError>> {
        Box::pin(async move {
            let updated = self.update(id, change, now).await?;
            let event = updated.is_some().then_some(event);
            Ok(Audited::new(updated, event))
        })
    }

    /// [`change_email`](Self::change_email), with `event` recorded as
    /// [`update_audited`](Self::update_audited) records it.
    fn change_email_audited(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<Option<UserRecord>>, RepositoryError>> {
        Box::pin(async move {
            let changed = self.change_email(id, email, now).await?;
            let event = changed.is_some().then_some(event);
            Ok(Audited::new(changed, event))
        })
    }

    /// [`delete`](Self::delete), with `event` recorded as
    /// [`update_audited`](Self::update_audited) records it.
    fn delete_audited(
        &self,
        id: UserId,
        event: AuditEvent,
    ) -> BoxFuture<'_, Result<Audited<bool>, RepositoryError>> {
        Box::pin(async move {
            let deleted = self.delete(id).await?;
            Ok(Audited::new(deleted, deleted.then_some(event)))
        })
    }
}

/// What an audited change returns: its outcome, and the audit event if the store did not
/// record it with the change (the caller appends it after, at least once).
#[derive(Debug)]
#[must_use = "an event the store did not record must be appended by the caller"]
pub struct Audited<T> {
    /// The change's outcome.
    pub outcome: T,
    /// The event still to record, if any.
    pub unrecorded: Option<AuditEvent>,
}

impl<T> Audited<T> {
    /// `outcome`, with `unrecorded` left to the caller.
    pub fn new(outcome: T, unrecorded: Option<AuditEvent>) -> Self {
        Self {
            outcome,
            unrecorded,
        }
    }
}

/// A page of accounts to read (administration): newest first, optionally searched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserQuery {
    /// Only accounts whose e-mail (canonical form) or display name (lowercased) contains this,
    /// lowercased.
    pub search: Option<String>,
    /// Only accounts older than this one (the last of the previous page).
    pub before: Option<UserId>,
    /// At most this many.
    pub limit: usize,
}

impl UserQuery {
    /// Whether `user` passes the search and page bound; stores that cannot filter on the
    /// server use this, so they agree with those that can.
    pub fn matches(&self, user: &crate::user::User) -> bool {
        self.before.is_none_or(|before| user.id < before)
            && self.search.as_deref().is_none_or(|needle| {
                let needle = needle.to_lowercase();
                user.email.canonical().contains(&needle)
                    || user.display_name.as_str().to_lowercase().contains(&needle)
            })
    }
}

/// What every store does to a record whose address changes, so that they agree.
pub fn apply_email_change(record: &mut UserRecord, email: Email, now: OffsetDateTime) {
    let now = truncate_to_micros(now);
    record.user.email = email;
    record.user.email_verified_at = Some(now);
    record.user.updated_at = now;
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::sync::Arc;

    use super::*;

    /// A store that is always down: enough to prove the trait is object-safe and usable.
    struct Down;

    impl UserRepository for Down {
        fn insert(&self, _record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>> {
            Box::pin(std::future::ready(Err(RepositoryError::unavailable(
                "down",
            ))))
        }

        fn find_by_email(
            &self,
            _email: &Email,
        ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
            Box::pin(std::future::ready(Err(RepositoryError::unavailable(
                "down",
            ))))
        }

        fn replace_password_hash(
            &self,
            _id: UserId,
            _expected: String,
            _new_hash: String,
        ) -> BoxFuture<'_, Result<bool, RepositoryError>> {
            Box::pin(std::future::ready(Err(RepositoryError::unavailable(
                "down",
            ))))
        }

        fn update(
            &self,
            _id: UserId,
            _change: UserChange,
            _now: OffsetDateTime,
        ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
            Box::pin(std::future::ready(Err(RepositoryError::unavailable(
                "down",
            ))))
        }

        fn find_by_id(
            &self,
            _id: UserId,
        ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
            Box::pin(std::future::ready(Ok(None)))
        }

        fn change_email(
            &self,
            _id: UserId,
            _email: Email,
            _now: OffsetDateTime,
        ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
            Box::pin(std::future::ready(Ok(None)))
        }

        fn delete(&self, _id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>> {
            Box::pin(std::future::ready(Ok(false)))
        }

        fn list(
            &self,
            _query: UserQuery,
        ) -> BoxFuture<'_, Result<Vec<UserRecord>, RepositoryError>> {
            Box::pin(std::future::ready(Ok(Vec::new())))
        }
    }

    #[test]
    fn the_repository_is_object_safe() {
        let repo: Arc<dyn UserRepository> = Arc::new(Down);
        // Building the future is enough; the type checks are the point.
        let _future = repo.find_by_id(UserId::generate());
    }

    #[test]
    fn unavailable_keeps_its_cause_but_does_not_print_it() {
        let error = RepositoryError::unavailable("connection refused");
        assert_eq!(error.to_string(), "the user store is unavailable");
        assert_eq!(error.source().unwrap().to_string(), "connection refused");
    }
}
