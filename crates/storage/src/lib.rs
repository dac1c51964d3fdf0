//! Adapters that implement keel-domain's ports on real stores.
//!
//! Today that is an in-memory [`InMemoryUserRepository`] and an [`InMemoryRateLimiter`] (GCRA), the embedded default that lets Keel
//! start with no setup (and the store every other crate's tests use), and a
//! [`RedisRateLimiter`] and a [`RedisUserRepository`] that share the same GCRA buckets and the
//! same accounts between instances. A PostgreSQL adapter will
//! sit beside them later, behind the same [`keel_domain::UserRepository`] trait.

mod memory;
mod rate_limit;
mod redis_rate_limit;
mod redis_users;

pub use memory::InMemoryUserRepository;
pub use rate_limit::{DEFAULT_MAX_KEYS, InMemoryRateLimiter};
pub use redis_rate_limit::RedisRateLimiter;
pub use redis_users::RedisUserRepository;
