//! Keel's domain: the ids, values and rules that every other Keel crate shares, and the ports
//! (traits) through which the domain reaches storage and time.
//!
//! Values here are valid by construction: an [`Email`], a [`Password`] or a [`DisplayName`]
//! only exists once its `parse` has accepted it, and the errors say which field was wrong and
//! why, in a form the HTTP edge can report field by field ([`ValidationErrors`]).
//!
//! This crate does no I/O and knows no framework: it must never depend on actix, Redis or tokio.
//! Ports such as [`UserRepository`] return boxed futures so adapters can do I/O behind them
//! without the domain choosing a runtime.

mod clock;
mod display_name;
mod email;
mod ids;
mod lifecycle;
mod mail;
mod password;
mod rate_limit;
mod repository;
mod user;
mod validation;

pub use clock::{Clock, ManualClock, SystemClock};
pub use display_name::DisplayName;
pub use email::Email;
pub use ids::{SessionId, UserId};
pub use lifecycle::{
    AuditEvent, AuditKind, AuditLog, AuditQuery, OneTimeToken, OneTimeTokens, Outbox,
    OutboxMessage, OutboxStats, StoreError, TokenHash, TokenPurpose, UnknownAuditKind,
};
pub use mail::{Composer, Mail, MailError, Mailer, Notice};
pub use password::Password;
pub use rate_limit::{Decision, Quota, QuotaError, RateLimitError, RateLimiter};
pub use repository::{
    Audited, BoxFuture, RepositoryError, UserChange, UserQuery, UserRepository, apply_email_change,
};
pub use user::{User, UserRecord, truncate_to_micros};
pub use validation::{ValidationError, ValidationErrors, codes};
