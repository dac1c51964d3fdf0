//! Ports of the account lifecycle: one-time tokens, the mail outbox and the audit log.
//!
//! One store implements all three (memory, Redis, PostgreSQL), because they must agree: a
//! token and the mail that carries it are written together ([`OneTimeTokens::issue`]), so a
//! token is never mailed without being stored, nor stored without its mail queued.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::email::Email;
use crate::ids::UserId;
use crate::mail::Mail;
use crate::repository::BoxFuture;

/// Why a lifecycle store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot answer now (down, timed out, undecodable data). Callers fail closed.
    #[error("the account lifecycle store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A [`StoreError::Unavailable`] caused by `source`.
    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }
}

/// What a one-time token is for; a token spends only for its own purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    /// Proves that the account's address is the user's (24 h).
    VerifyEmail,
    /// Sets a new password without the old one (1 h).
    ResetPassword,
    /// Moves the account to the new address it was mailed to (24 h).
    ChangeEmail,
}

impl TokenPurpose {
    /// The stored name: `verify_email`, `reset_password` or `change_email`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::ChangeEmail => "change_email",
        }
    }
}

impl FromStr for TokenPurpose {
    type Err = StoreError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "verify_email" => Ok(Self::VerifyEmail),
            "reset_password" => Ok(Self::ResetPassword),
            "change_email" => Ok(Self::ChangeEmail),
            other => Err(StoreError::unavailable(format!(
                "unknown one-time token purpose {other:?}"
            ))),
        }
    }
}

/// The SHA-256 of a one-time token: all that a store keeps of it, so a leaked store does not
/// leak usable tokens.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash in lowercase hex (64 digits), as Redis keys name it.
    pub fn to_hex(&self) -> String {
        use fmt::Write as _;
        self.0
            .iter()
            .fold(String::with_capacity(64), |mut out, byte| {
                let _ = write!(out, "{byte:02x}");
                out
            })
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to tell two apart in a log.
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// A one-time token as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeToken {
    /// The hash of the token that was mailed.
    pub hash: TokenHash,
    /// What it is for.
    pub purpose: TokenPurpose,
    /// Whose it is.
    pub user_id: UserId,
    /// For [`TokenPurpose::ChangeEmail`]: the address the account moves to.
    pub new_email: Option<Email>,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

/// Where one-time tokens are kept, with the outbox that mails them.
pub trait OneTimeTokens: Send + Sync + 'static {
    /// Stores `token` and queues `mail` (which carries it) in the outbox, atomically: both or
    /// neither.
    fn issue(&self, token: OneTimeToken, mail: Mail) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Spends the unspent, unexpired token of `purpose` whose hash is `hash`, and returns it;
    /// `None` for an unknown, spent, expired or other-purpose token (the same answer for
    /// each). Of concurrent spends of one token, on any number of instances, one gets it.
    fn spend(
        &self,
        purpose: TokenPurpose,
        hash: TokenHash,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<OneTimeToken>, StoreError>>;

    /// Spends every outstanding token of `purpose` of `user_id` (a password change spends the
    /// reset links already mailed); returns how many there were.
    fn spend_all(
        &self,
        user_id: UserId,
        purpose: TokenPurpose,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Forgets every token of `user_id` (the account is deleted).
    fn forget_user(&self, user_id: UserId) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Forgets the tokens that expired before `before`, spent or not (they can never be spent
    /// again), and says how many. Stores whose tokens expire by themselves (Redis TTLs)
    /// have nothing to do.
    fn purge_expired(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// A queued mail, as the outbox hands it to its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Its id in the outbox.
    pub id: Uuid,
    /// The mail.
    pub mail: Mail,
    /// How many times sending it failed so far.
    pub attempts: u32,
    /// When it was queued.
    pub created_at: OffsetDateTime,
}

/// How the outbox stands, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Messages waiting to be sent (including those being retried).
    pub queued: u64,
    /// Messages given up on (refused for good, or out of attempts), kept for the operator.
    pub failed: u64,
    /// When the oldest waiting message was queued.
    pub oldest: Option<OffsetDateTime>,
}

/// The mail outbox: mail is queued here and a background sender delivers it, so a mail
/// server that is down never fails a request and nothing queued is lost across a restart.
pub trait Outbox: Send + Sync + 'static {
    /// Queues `mail` (a notice that carries no token) at `now`.
    fn enqueue(&self, mail: Mail, now: OffsetDateTime) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Up to `limit` messages due at `now`, oldest first, each hidden from other claims until
    /// `now + lease` (so two instances do not send one message twice, and a sender that died
    /// mid-send leaves it to another once the lease ends).
    fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxMessage>, StoreError>>;

    /// The message was handed over: it leaves the outbox.
    fn delivered(&self, id: Uuid) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Sending failed and may work later: one more attempt counted, due again at `at`.
    fn retry_at(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        error: String,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Sending failed for good: the message is kept as failed (recipient, subject, error),
    /// never sent again, and without its body: it may carry a link that still works.
    fn give_up(&self, id: Uuid, error: String) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Counts of waiting and failed messages, and the age of the oldest waiting one.
    fn stats(&self) -> BoxFuture<'_, Result<OutboxStats, StoreError>>;
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditKind {
    /// `user.registered`
    UserRegistered,
    /// `user.login`
    UserLogin,
    /// `user.login_failed`: a wrong password for an existing account.
    UserLoginFailed,
    /// `user.logout`
    UserLogout,
    /// `session.revoked`: one session ended by its user or an administrator.
    SessionRevoked,
    /// `token.reused`: a spent refresh token came back after the grace; its session died.
    TokenReused,
    /// `email.verified`
    EmailVerified,
    /// `password.reset_requested`
    PasswordResetRequested,
    /// `password.reset`
    PasswordReset,
    /// `password.changed`
    PasswordChanged,
    /// `email.change_requested`
    EmailChangeRequested,
    /// `email.changed`
    EmailChanged,
    /// `user.updated`: the profile changed.
    UserUpdated,
    /// `user.deleted`
    UserDeleted,
    /// `user.disabled`
    UserDisabled,
    /// `user.enabled`
    UserEnabled,
    /// `user.role_granted`
    RoleGranted,
    /// `audit.purged`: retention removed old events.
    AuditPurged,
    /// `audit.scrubbed`: a deleted account's events were cut to ids, types and times.
    AuditScrubbed,
}

impl AuditKind {
    /// Every kind.
    pub const ALL: [Self; 19] = [
        Self::UserRegistered,
        Self::UserLogin,
        Self::UserLoginFailed,
        Self::UserLogout,
        Self::SessionRevoked,
        Self::TokenReused,
        Self::EmailVerified,
        Self::PasswordResetRequested,
        Self::PasswordReset,
        Self::PasswordChanged,
        Self::EmailChangeRequested,
        Self::EmailChanged,
        Self::UserUpdated,
        Self::UserDeleted,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::RoleGranted,
        Self::AuditPurged,
        Self::AuditScrubbed,
    ];

    /// The contract's name of the type, such as `user.login`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserRegistered => "user.registered",
            Self::UserLogin => "user.login",
            Self::UserLoginFailed => "user.login_failed",
            Self::UserLogout => "user.logout",
            Self::SessionRevoked => "session.revoked",
            Self::TokenReused => "token.reused",
            Self::EmailVerified => "email.verified",
            Self::PasswordResetRequested => "password.reset_requested",
            Self::PasswordReset => "password.reset",
            Self::PasswordChanged => "password.changed",
            Self::EmailChangeRequested => "email.change_requested",
            Self::EmailChanged => "email.changed",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::RoleGranted => "user.role_granted",
            Self::AuditPurged => "audit.purged",
            Self::AuditScrubbed => "audit.scrubbed",
        }
    }
}

impl FromStr for AuditKind {
    type Err = UnknownAuditKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or(UnknownAuditKind)
    }
}

impl Serialize for AuditKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A name that is not an audit event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an audit event type")]
pub struct UnknownAuditKind;

/// One entry of the audit log, in the contract's shape: `{"id", "type", "userId", "actorId"?,
/// "ip"?, "userAgent"?, "at", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Its id (UUIDv7: ordered by time).
    pub id: Uuid,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: AuditKind,
    /// Whose account it concerns.
    pub user_id: Option<UserId>,
    /// Who did it, when not the user (an administrator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<UserId>,
    /// The address the request came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The request's `User-Agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// When it happened.
    #[serde(serialize_with = "crate::user::rfc3339_utc")]
    pub at: OffsetDateTime,
    /// What else is worth knowing (a session id, a count); never a secret.
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl AuditEvent {
    /// An event of `kind` about `user_id` at `at`, with a fresh id and nothing else.
    pub fn new(kind: AuditKind, user_id: Option<UserId>, at: OffsetDateTime) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind,
            user_id,
            actor_id: None,
            ip: None,
            user_agent: None,
            at: crate::user::truncate_to_micros(at),
            data: serde_json::Map::new(),
        }
    }

    /// With `name` set to `value` in its data.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.data.insert(name.to_owned(), value.into());
        self
    }
}

/// A page of the audit log to read: newest first, filtered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    /// Only events about this account.
    pub user_id: Option<UserId>,
    /// Only events of this type.
    pub kind: Option<AuditKind>,
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only events before this time.
    pub until: Option<OffsetDateTime>,
    /// Only events older than this one (the last of the previous page): `(at, id)`.
    pub after: Option<(OffsetDateTime, Uuid)>,
    /// At most this many.
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `event` passes the filters (not the page bounds). Stores that cannot filter
    /// on the server use this, so they agree with those that can.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.user_id.is_none_or(|id| event.user_id == Some(id))
            && self.kind.is_none_or(|kind| event.kind == kind)
            && self.since.is_none_or(|since| event.at >= since)
            && self.until.is_none_or(|until| event.at < until)
            && self
                .after
                .is_none_or(|(at, id)| (event.at, event.id) < (at, id))
    }
}

/// The audit log: append-only but for retention and the scrub of a deleted account.
pub trait AuditLog: Send + Sync + 'static {
    /// Appends `event`. Appending one id twice keeps one event (a retry after a lost answer).
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The events that `query` selects, newest first (by time, then id).
    fn query(&self, query: AuditQuery) -> BoxFuture<'_, Result<Vec<AuditEvent>, StoreError>>;

    /// Removes the events before `before` (retention), records that it did, and says how many.
    fn purge(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Cuts the events about `user_id` to their ids, types and times (the account is
    /// deleted), records that it did, and says how many it touched.
    fn scrub(&self, user_id: UserId) -> BoxFuture<'_, Result<u64, StoreError>>;
}
