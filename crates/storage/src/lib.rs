//! Adapters that implement keel-domain's ports on real stores.
//!
//! - in memory: [`InMemoryUserRepository`] and [`InMemoryRateLimiter`] (GCRA), the embedded
//!   default that lets Keel start with no setup (and the stores other crates' tests use);
//! - on Redis: [`RedisUserRepository`] and [`RedisRateLimiter`], which share the same accounts
//!   and GCRA buckets between instances;
//! - on PostgreSQL (feature `postgres`): [`postgres`], the system of record, with the one
//!   migration set of the whole database.
//!
//! - the account lifecycle's one-time tokens, mail outbox and audit log:
//!   [`MemoryLifecycleStore`], [`RedisLifecycleStore`] and, on PostgreSQL,
//!   `postgres::PgLifecycleStore`.
//!
//! Every user store passes the same conformance suite (`tests/conformance`).

mod lifecycle;
mod local_user_cache;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rate_limit;
mod redis_rate_limit;
mod redis_users;
mod user_cache;

pub use lifecycle::{MemoryLifecycleStore, RedisLifecycleStore};
pub use local_user_cache::LocalUserCache;
pub use memory::InMemoryUserRepository;
pub use rate_limit::{DEFAULT_MAX_KEYS, InMemoryRateLimiter};
pub use redis_rate_limit::RedisRateLimiter;
pub use redis_users::RedisUserRepository;
pub use user_cache::CachedUserRepository;
