//! The account lifecycle: e-mail verification, password reset and change, e-mail change,
//! deletion and export, over the domain's ports.
//!
//! Every mail goes through the outbox; a mail that carries a one-time token is queued with the
//! token in one step ([`OneTimeTokens::issue`]). Every change that ends access revokes sessions
//! through [`Auth`], the one revocation path (tokens, cookies and sockets on every instance).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_domain::{
    AuditEvent, AuditKind, AuditLog, AuditQuery, Clock, Composer, Email, Notice, OneTimeToken,
    OneTimeTokens, Outbox, Password, StoreError, TokenHash, TokenPurpose, User, UserChange, UserId,
    UserRecord, UserRepository, ValidationErrors,
};
use keel_session::Session;
use rand::RngCore as _;
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use time::Duration;

use crate::accounts::AccountError;
use crate::password::{PasswordError, PasswordHasher};
use crate::service::{Auth, AuthError, ClientInfo, Principal};

/// How long a verification link works.
pub const VERIFY_EMAIL_TTL: Duration = Duration::hours(24);
/// How long a password-reset link works.
pub const RESET_PASSWORD_TTL: Duration = Duration::hours(1);
/// How long the link confirming a new address works.
pub const CHANGE_EMAIL_TTL: Duration = Duration::hours(24);

/// The bytes of randomness in a one-time token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Longest token looked up; Keel's are 43 characters.
const MAX_TOKEN_CHARS: usize = 128;
/// The most audit events an export holds.
const EXPORT_EVENTS: usize = 10_000;

impl From<StoreError> for AccountError {
    fn from(error: StoreError) -> Self {
        Self::Unavailable(Box::new(error))
    }
}

impl From<AuthError> for AccountError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Busy => Self::Busy,
            AuthError::Unauthorized | AuthError::NotFound => Self::Gone,
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

/// What [`Lifecycle::export`] gives a user: everything Keel keeps about them.
#[derive(Debug)]
pub struct Export {
    /// The account.
    pub user: User,
    /// Its live sessions.
    pub sessions: Vec<Session>,
    /// Its audit events, newest first.
    pub events: Vec<AuditEvent>,
}

/// The stores the lifecycle works on; one store usually implements the last three.
pub struct LifecyclePorts {
    /// Accounts.
    pub users: Arc<dyn UserRepository>,
    /// One-time tokens, with the outbox that mails them.
    pub tokens: Arc<dyn OneTimeTokens>,
    /// The outbox, for notices without a token.
    pub outbox: Arc<dyn Outbox>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// Renders notices into mail.
    pub composer: Arc<dyn Composer>,
}

/// The account lifecycle's use cases. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    ports: LifecyclePorts,
    hasher: PasswordHasher,
    auth: Auth,
    clock: Arc<dyn Clock>,
}

impl Lifecycle {
    /// The use cases over `ports`, hashing with `hasher`, ending access through `auth` (which
    /// records into the same audit log from now on).
    pub fn new(
        ports: LifecyclePorts,
        hasher: PasswordHasher,
        auth: Auth,
        clock: Arc<dyn Clock>,
    ) -> Self {
        auth.set_audit_log(Arc::clone(&ports.audit));
        Self {
            inner: Arc::new(Inner {
                ports,
                hasher,
                auth,
                clock,
            }),
        }
    }

    /// After a registration: records it and mails the verification link. The account exists
    /// whatever happens here; a link that could not be queued is logged, and the user can ask
    /// for another ([`resend_verification`](Self::resend_verification)).
    pub async fn registered(&self, user: &User, client: &ClientInfo) {
        let now = self.inner.clock.now();
        self.inner
            .auth
            .audit(client.event(AuditKind::UserRegistered, user.id, now))
            .await;
        if let Err(error) = self.send_verification(user).await {
            tracing::warn!(user_id = %user.id, %error, "could not queue the verification mail");
        }
    }

    /// Mails a new verification link to the caller's address, unless it is verified already
    /// (then nothing is sent; the answer is the same).
    ///
    /// # Errors
    /// [`AccountError::Gone`] when the account no longer exists.
    pub async fn resend_verification(&self, user_id: UserId) -> Result<(), AccountError> {
        let record = self.account(user_id).await?;
        if record.user.email_verified() {
            return Ok(());
        }
        self.send_verification(&record.user).await
    }

    async fn send_verification(&self, user: &User) -> Result<(), AccountError> {
        self.issue(
            user,
            &user.email,
            TokenPurpose::VerifyEmail,
            VERIFY_EMAIL_TTL,
            None,
            |token| Notice::VerifyEmail { token },
        )
        .await
    }

    /// Spends a token mailed by a verification or an e-mail change and applies it: the
    /// address is verified, or the account moves to the new address (verified by the same
    /// act) and the old address is told. Returns the account as it is now.
    ///
    /// # Errors
    /// [`AccountError::InvalidToken`] for a token that is unknown, spent or expired (the same
    /// answer for each); [`AccountError::EmailTaken`] when another account took the new
    /// address meanwhile.
    pub async fn verify_email(
        &self,
        token: &str,
        client: &ClientInfo,
    ) -> Result<User, AccountError> {
        let inner = &self.inner;
        let hash = token_hash(token).ok_or(AccountError::InvalidToken)?;
        let now = inner.clock.now();
        let tokens = &inner.ports.tokens;
        if let Some(spent) = tokens.spend(TokenPurpose::VerifyEmail, hash, now).await? {
            let event = client.event(AuditKind::EmailVerified, spent.user_id, now);
            let audited = inner
                .ports
                .users
                .update_audited(spent.user_id, UserChange::VerifyEmail, now, event)
                .await?;
            let user = audited.outcome.ok_or(AccountError::InvalidToken)?.user;
            inner.auth.record(audited.unrecorded).await;
            tracing::info!(user_id = %user.id, "e-mail verified");
            return Ok(user);
        }
        let Some(spent) = tokens.spend(TokenPurpose::ChangeEmail, hash, now).await? else {
            return Err(AccountError::InvalidToken);
        };
        let Some(new_email) = spent.new_email else {
            return Err(AccountError::InvalidToken);
        };
        let old = self
            .account(spent.user_id)
            .await
            .map_err(|error| match error {
                AccountError::Gone => AccountError::InvalidToken,
                other => other,
            })?;
        let event = client.event(AuditKind::EmailChanged, spent.user_id, now);
        let audited = inner
            .ports
            .users
            .change_email_audited(spent.user_id, new_email.clone(), now, event)
            .await?;
        let user = audited.outcome.ok_or(AccountError::InvalidToken)?.user;
        // Links mailed to the old address (a reset, a verification) must not work for the new.
        for purpose in [TokenPurpose::ResetPassword, TokenPurpose::VerifyEmail] {
            tokens.spend_all(user.id, purpose).await?;
        }
        self.notify(
            &old.user.email,
            &old.user,
            Notice::EmailChanged { new_email },
        )
        .await;
        inner.auth.record(audited.unrecorded).await;
        tracing::info!(user_id = %user.id, "e-mail changed");
        Ok(user)
    }

    /// Mails a reset link when an account has `email`; does the same amount of store work
    /// and answers the same when none has, so the caller learns nothing about the address.
    /// A disabled account gets no link (it could not log in with the new password).
    ///
    /// # Errors
    /// [`AccountError::Invalid`] for a malformed address.
    pub async fn request_password_reset(
        &self,
        email: &str,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        let inner = &self.inner;
        // Lenient, as login: an address registered before today's rules still resets; only
        // input that is no address at all is refused.
        let email = match Email::parse_lenient(email) {
            Ok(email) => email,
            Err(error) => {
                let mut errors = ValidationErrors::new();
                errors.push(error);
                return Err(AccountError::Invalid(errors));
            }
        };
        let record = inner.ports.users.find_by_email(&email).await?;
        let Some(record) = record.filter(|record| record.disabled_at.is_none()) else {
            // Store work of the same kind as issuing (a spend, and a recorded event), so the
            // answer's timing says as little as its body about whether the address has an
            // account. The event names no address: it may be no user's.
            let now = inner.clock.now();
            inner
                .ports
                .tokens
                .spend(TokenPurpose::ResetPassword, random_hash(), now)
                .await?;
            let mut event = AuditEvent::new(AuditKind::PasswordResetRequested, None, now)
                .with("account", false);
            event.ip = client.ip;
            inner.auth.audit(event).await;
            return Ok(());
        };
        let user = &record.user;
        self.issue(
            user,
            &user.email,
            TokenPurpose::ResetPassword,
            RESET_PASSWORD_TTL,
            None,
            |token| Notice::ResetPassword { token },
        )
        .await?;
        let now = inner.clock.now();
        inner
            .auth
            .audit(client.event(AuditKind::PasswordResetRequested, user.id, now))
            .await;
        Ok(())
    }

    /// Spends a reset token and sets `password`: every outstanding reset link is spent, every
    /// session of the user revoked (tokens, cookies, sockets), and the address told. The
    /// address counts as verified: the link reached it.
    ///
    /// # Errors
    /// [`AccountError::Invalid`] for a password the policy refuses (the token stays
    /// unspent); [`AccountError::InvalidToken`] for an unknown, spent or expired token.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        password: String,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        let inner = &self.inner;
        let password = valid_password(password, "password")?;
        let hash = token_hash(token).ok_or(AccountError::InvalidToken)?;
        let now = inner.clock.now();
        let spent = inner
            .ports
            .tokens
            .spend(TokenPurpose::ResetPassword, hash, now)
            .await?
            .ok_or(AccountError::InvalidToken)?;
        let user_id = spent.user_id;
        let password_hash = inner.hasher.hash(password.expose_secret()).await?;
        let users = &inner.ports.users;
        let event = client.event(AuditKind::PasswordReset, user_id, now);
        let audited = users
            .update_audited(user_id, UserChange::PasswordHash(password_hash), now, event)
            .await?;
        audited.outcome.ok_or(AccountError::InvalidToken)?;
        let record = users
            .update(user_id, UserChange::VerifyEmail, now)
            .await?
            .ok_or(AccountError::InvalidToken)?;
        self.spend_links(user_id).await?;
        let revoked = inner.auth.logout_all(user_id).await?;
        self.notify(&record.user.email, &record.user, Notice::PasswordChanged)
            .await;
        inner.auth.record(audited.unrecorded).await;
        tracing::info!(user_id = %user_id, sessions = revoked.len(), "password reset");
        Ok(())
    }

    /// Changes the caller's password: the current one must verify; every other session of
    /// the user is revoked (the caller's stays), outstanding reset links are spent, and the
    /// address is told.
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`] for a wrong current password;
    /// [`AccountError::Invalid`] for a new one the policy refuses.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: String,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        let inner = &self.inner;
        let user_id = principal.user_id;
        let new = valid_password(new, "newPassword")?;
        let record = self.account(user_id).await?;
        self.check_password(&record, current, client).await?;
        let password_hash = inner.hasher.hash(new.expose_secret()).await?;
        let now = inner.clock.now();
        let event = client.event(AuditKind::PasswordChanged, user_id, now);
        let audited = inner
            .ports
            .users
            .update_audited(user_id, UserChange::PasswordHash(password_hash), now, event)
            .await?;
        audited.outcome.ok_or(AccountError::Gone)?;
        self.spend_links(user_id).await?;
        inner
            .auth
            .logout_others(user_id, principal.session.id)
            .await?;
        self.notify(&record.user.email, &record.user, Notice::PasswordChanged)
            .await;
        inner.auth.record(audited.unrecorded).await;
        Ok(())
    }

    /// Starts moving the caller's account to `new_email`: the password must verify, and a
    /// link that confirms the change is mailed to the new address (the change happens only
    /// when it is followed, through [`verify_email`](Self::verify_email)).
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`], [`AccountError::Invalid`] for a malformed
    /// address, [`AccountError::EmailTaken`] when another account has it.
    pub async fn request_email_change(
        &self,
        principal: &Principal,
        new_email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        let inner = &self.inner;
        let mut errors = ValidationErrors::new();
        let Some(new_email) = errors.check(Email::parse(new_email)) else {
            return Err(AccountError::Invalid(errors));
        };
        let record = self.account(principal.user_id).await?;
        self.check_password(&record, password, client).await?;
        match inner.ports.users.find_by_email(&new_email).await? {
            Some(owner) if owner.user.id != record.user.id => return Err(AccountError::EmailTaken),
            _ => {}
        }
        let user = &record.user;
        self.issue(
            user,
            &new_email,
            TokenPurpose::ChangeEmail,
            CHANGE_EMAIL_TTL,
            Some(new_email.clone()),
            |token| Notice::ConfirmNewEmail {
                token,
                new_email: new_email.clone(),
            },
        )
        .await?;
        let now = inner.clock.now();
        inner
            .auth
            .audit(client.event(AuditKind::EmailChangeRequested, user.id, now))
            .await;
        Ok(())
    }

    /// Changes the caller's display name (see [`crate::Accounts::update_profile`]), recorded
    /// in the audit log.
    ///
    /// # Errors
    /// As `update_profile`.
    pub async fn update_profile(
        &self,
        accounts: &crate::Accounts,
        principal: &Principal,
        display_name: &str,
        client: &ClientInfo,
    ) -> Result<User, AccountError> {
        let now = self.inner.clock.now();
        let event = client.event(AuditKind::UserUpdated, principal.user_id, now);
        let audited = accounts
            .update_profile_audited(principal.user_id, display_name, event)
            .await?;
        self.inner.auth.record(audited.unrecorded).await;
        Ok(audited.outcome)
    }

    /// Deletes the caller's account: the password must verify; every session is revoked, the
    /// account, its tokens and its data are deleted (the address can register again), and
    /// its audit events are scrubbed to ids, types and times.
    ///
    /// # Errors
    /// [`AccountError::InvalidCredentials`] for a wrong password.
    pub async fn delete_account(
        &self,
        principal: &Principal,
        password: &str,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        let inner = &self.inner;
        let user_id = principal.user_id;
        let record = self.account(user_id).await?;
        self.check_password(&record, password, client).await?;
        // Sessions first: nothing may stay signed in to an account that is going. The account
        // goes last, so a step that fails leaves it in place for the user to try again.
        let revoked = inner.auth.logout_all(user_id).await?;
        inner.ports.tokens.forget_user(user_id).await?;
        inner.ports.audit.scrub(user_id).await?;
        // Recorded after the scrub, with the account's deletion: ids, type and time only.
        let now = inner.clock.now();
        let event = AuditEvent::new(AuditKind::UserDeleted, Some(user_id), now)
            .with("sessions", revoked.len());
        let audited = inner.ports.users.delete_audited(user_id, event).await?;
        inner.auth.record(audited.unrecorded).await;
        tracing::info!(user_id = %user_id, "account deleted");
        Ok(())
    }

    /// Everything kept about the caller: the account, its live sessions and its audit events.
    ///
    /// # Errors
    /// [`AccountError::Gone`] when the account no longer exists.
    pub async fn export(&self, principal: &Principal) -> Result<Export, AccountError> {
        let inner = &self.inner;
        let record = self.account(principal.user_id).await?;
        let sessions = inner.auth.list_sessions(principal.user_id).await?;
        let events = inner
            .ports
            .audit
            .query(AuditQuery {
                user_id: Some(principal.user_id),
                limit: EXPORT_EVENTS,
                ..AuditQuery::default()
            })
            .await?;
        Ok(Export {
            user: record.user,
            sessions,
            events,
        })
    }

    /// Tells the owner of `email`, if an account has it, that failed logins locked the account
    /// against devices it does not know (its known devices still log in). Best effort, and
    /// the caller limits how often.
    pub async fn account_locked(&self, email: &str) {
        let Ok(email) = Email::parse_lenient(email) else {
            return;
        };
        match self.inner.ports.users.find_by_email(&email).await {
            Ok(Some(record)) if record.disabled_at.is_none() => {
                tracing::info!(user_id = %record.user.id, "account locked against unknown devices");
                self.notify(&record.user.email, &record.user, Notice::AccountLocked)
                    .await;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not look up a locked account"),
        }
    }

    /// Spends every link that could take the account over: outstanding resets and e-mail
    /// changes (a password change or reset must lock out whoever started them).
    async fn spend_links(&self, user_id: UserId) -> Result<(), AccountError> {
        for purpose in [TokenPurpose::ResetPassword, TokenPurpose::ChangeEmail] {
            self.inner.ports.tokens.spend_all(user_id, purpose).await?;
        }
        Ok(())
    }

    async fn account(&self, user_id: UserId) -> Result<UserRecord, AccountError> {
        self.inner
            .ports
            .users
            .find_by_id(user_id)
            .await?
            .ok_or(AccountError::Gone)
    }

    /// Checks the password that confirms a change; a wrong one is recorded as a failed login.
    async fn check_password(
        &self,
        record: &UserRecord,
        password: &str,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        let inner = &self.inner;
        match inner.hasher.verify(password, &record.password_hash).await {
            Ok(true) => Ok(()),
            Ok(false) | Err(PasswordError::MalformedHash | PasswordError::UnsupportedParams) => {
                let event = client
                    .event(
                        AuditKind::UserLoginFailed,
                        record.user.id,
                        inner.clock.now(),
                    )
                    .with("reason", "password_check");
                inner.auth.audit(event).await;
                Err(AccountError::InvalidCredentials)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Issues a token of `purpose` for `user` and queues the mail `notice` makes of it, to
    /// `to`, in one step.
    async fn issue(
        &self,
        user: &User,
        to: &Email,
        purpose: TokenPurpose,
        ttl: Duration,
        new_email: Option<Email>,
        notice: impl FnOnce(SecretString) -> Notice,
    ) -> Result<(), AccountError> {
        let inner = &self.inner;
        let token = new_token();
        let Some(hash) = token_hash(&token) else {
            unreachable!("a fresh token has the shape of one");
        };
        let mail = inner
            .ports
            .composer
            .compose(to, &user.display_name, &notice(SecretString::from(token)))
            .map_err(|error| AccountError::Unavailable(Box::new(error)))?;
        let now = inner.clock.now();
        let record = OneTimeToken {
            hash,
            purpose,
            user_id: user.id,
            new_email,
            created_at: now,
            expires_at: now + ttl,
        };
        inner.ports.tokens.issue(record, mail).await?;
        tracing::info!(user_id = %user.id, purpose = purpose.as_str(), "one-time link queued");
        Ok(())
    }

    /// Queues a notice without a token. Best effort: the change it tells of is done.
    async fn notify(&self, to: &Email, user: &User, notice: Notice) {
        let inner = &self.inner;
        let queued = match inner
            .ports
            .composer
            .compose(to, &user.display_name, &notice)
        {
            Ok(mail) => inner
                .ports
                .outbox
                .enqueue(mail, inner.clock.now())
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = queued {
            tracing::warn!(user_id = %user.id, ?notice, %error, "could not queue a notice");
        }
    }
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle").finish_non_exhaustive()
    }
}

/// `password` if the policy accepts it, reported under `field` (`password`, `newPassword`).
fn valid_password(password: String, field: &'static str) -> Result<Password, AccountError> {
    Password::parse(password).map_err(|mut error| {
        error.field = field;
        let mut errors = ValidationErrors::new();
        errors.push(error);
        AccountError::Invalid(errors)
    })
}

/// A fresh one-time token: 256 random bits, base64url without padding (43 characters).
fn new_token() -> String {
    let mut bytes = [0_u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored hash of `token`; `None` for input that cannot be a token (empty, too long).
fn token_hash(token: &str) -> Option<TokenHash> {
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return None;
    }
    Some(TokenHash(Sha256::digest(token.as_bytes()).into()))
}

fn random_hash() -> TokenHash {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    TokenHash(bytes)
}
