//! Account use cases over the domain ports: register now; login, refresh and logout build on the
//! same pieces.

use std::sync::Arc;

use keel_domain::{
    AuditEvent, Audited, Clock, DisplayName, Email, Password, RepositoryError, User, UserChange,
    UserId, UserRecord, UserRepository, ValidationErrors,
};

use crate::password::{PasswordError, PasswordHasher};

/// What a client sends to register.
#[derive(Debug)]
pub struct Registration {
    /// The email address, as typed.
    pub email: String,
    /// The password, exactly as typed.
    pub password: String,
    /// The name to show; derived from the email when absent.
    pub display_name: Option<String>,
}

/// Why an account use case failed. HTTP-free: the edge maps each variant to a status.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Some fields are invalid; every failing field is listed.
    #[error("invalid input: {0}")]
    Invalid(ValidationErrors),
    /// An account with this email (compared case-insensitively) exists already.
    #[error("an account with this email exists already")]
    EmailTaken,
    /// Password hashing is saturated; the client may retry shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// The account is gone (deleted since the caller's session began).
    #[error("the account is gone")]
    Gone,
    /// A one-time token that is unknown, spent or expired (deliberately one answer).
    #[error("invalid one-time token")]
    InvalidToken,
    /// The password given to confirm a change is wrong.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The caller may not do this (the authorization policy said no).
    #[error("forbidden")]
    Forbidden,
    /// The account asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A store cannot answer.
    #[error("a store cannot answer")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<PasswordError> for AccountError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => Self::Busy,
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

impl From<RepositoryError> for AccountError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::EmailTaken => Self::EmailTaken,
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

/// The account use cases.
#[derive(Clone)]
pub struct Accounts {
    users: Arc<dyn UserRepository>,
    hasher: PasswordHasher,
    clock: Arc<dyn Clock>,
}

impl Accounts {
    /// Use cases over these ports.
    pub fn new(
        users: Arc<dyn UserRepository>,
        hasher: PasswordHasher,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            users,
            hasher,
            clock,
        }
    }

    /// Creates an account. Every invalid field is reported at once; an email that matches an
    /// existing account case-insensitively is [`AccountError::EmailTaken`], never a second
    /// account.
    pub async fn register(&self, registration: Registration) -> Result<User, AccountError> {
        let Registration {
            email,
            password,
            display_name,
        } = registration;
        let mut errors = ValidationErrors::new();
        let email = errors.check(Email::parse(&email));
        let password = errors.check(Password::parse(password));
        let display_name = match display_name {
            Some(name) => errors.check(DisplayName::parse(&name)).map(Some),
            None => Some(None),
        };
        let (email, password, display_name) = match (email, password, display_name) {
            (Some(email), Some(password), Some(display_name)) if errors.is_empty() => {
                (email, password, display_name)
            }
            _ => return Err(AccountError::Invalid(errors)),
        };
        // Hashing costs ~20 MiB and tens of milliseconds; refuse a taken email before paying.
        if self.users.find_by_email(&email).await?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        let password_hash = self.hasher.hash(password.expose_secret()).await?;
        let display_name = display_name.unwrap_or_else(|| DisplayName::from_email(&email));
        let user = User::new(UserId::generate(), email, display_name, self.clock.now());
        // The repository enforces uniqueness atomically, so a concurrent registration of the
        // same email that passed the check above still fails here.
        self.users
            .insert(UserRecord::new(user.clone(), password_hash))
            .await?;
        tracing::info!(user_id = %user.id, "account registered");
        Ok(user)
    }

    /// Changes the display name of account `id`: the name is validated (NFC, 1 to 64
    /// characters, no invisible characters but those that shape emoji and scripts) and the
    /// account's `updatedAt` moves.
    ///
    /// # Errors
    /// [`AccountError::Invalid`] for a name the policy refuses, [`AccountError::Gone`] when the
    /// account no longer exists.
    pub async fn update_profile(
        &self,
        id: UserId,
        display_name: &str,
    ) -> Result<User, AccountError> {
        let mut errors = ValidationErrors::new();
        let Some(name) = errors.check(DisplayName::parse(display_name)) else {
            return Err(AccountError::Invalid(errors));
        };
        let updated = self
            .users
            .update(id, UserChange::DisplayName(name), self.clock.now())
            .await?
            .ok_or(AccountError::Gone)?;
        tracing::info!(user_id = %id, "profile updated");
        Ok(updated.user)
    }

    /// [`update_profile`](Self::update_profile), with `event` recorded with the change where
    /// the user store keeps an audit log (PostgreSQL); else handed back to record after.
    ///
    /// # Errors
    /// As `update_profile`.
    pub async fn update_profile_audited(
        &self,
        id: UserId,
        display_name: &str,
        event: AuditEvent,
    ) -> Result<Audited<User>, AccountError> {
        let mut errors = ValidationErrors::new();
        let Some(name) = errors.check(DisplayName::parse(display_name)) else {
            return Err(AccountError::Invalid(errors));
        };
        let audited = self
            .users
            .update_audited(id, UserChange::DisplayName(name), self.clock.now(), event)
            .await?;
        let user = audited.outcome.ok_or(AccountError::Gone)?.user;
        tracing::info!(user_id = %id, "profile updated");
        Ok(Audited::new(user, audited.unrecorded))
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::SystemClock;
    use keel_storage::InMemoryUserRepository;

    use super::*;
    use crate::password::PasswordHashingConfig;

    fn accounts() -> Accounts {
        Accounts::new(
            Arc::new(InMemoryUserRepository::new()),
            PasswordHasher::new(&PasswordHashingConfig::default()),
            Arc::new(SystemClock),
        )
    }

    fn registration(email: &str, password: &str) -> Registration {
        Registration {
            email: email.into(),
            password: password.into(),
            display_name: None,
        }
    }

    #[tokio::test]
    async fn registering_creates_a_user_with_a_derived_name() {
        let user = accounts()
            .register(registration(" Ada@Example.com ", "correct horse"))
            .await
            .unwrap();
        assert_eq!(user.email.as_str(), "Ada@Example.com");
        assert_eq!(user.display_name.as_str(), "Ada");
    }

    #[tokio::test]
    async fn the_same_email_in_another_case_is_taken() {
        let accounts = accounts();
        accounts
            .register(registration("ada@example.com", "correct horse"))
            .await
            .unwrap();
        let error = accounts
            .register(registration("ADA@example.COM", "battery staple"))
            .await;
        assert!(matches!(error, Err(AccountError::EmailTaken)), "{error:?}");
    }

    #[tokio::test]
    async fn every_invalid_field_is_reported_at_once() {
        let error = accounts()
            .register(Registration {
                email: "not-an-email".into(),
                password: "short".into(),
                display_name: Some("\u{7}".into()),
            })
            .await;
        let Err(AccountError::Invalid(errors)) = error else {
            panic!("{error:?}")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["email", "password", "displayName"]);
    }
}
