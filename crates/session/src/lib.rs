#![doc = include_str!("../README.md")]

#[cfg(feature = "actix")]
pub mod actix;
mod config;
mod error;
mod memory;
mod redis;
mod session;
mod store;

pub use config::SessionConfig;
pub use error::SessionError;
pub use memory::MemorySessionStore;
pub use redis::{RedisPoolConfig, RedisSessionStore, redis_pool};
pub use session::{
    InvalidRefreshHash, MAX_USER_AGENT_CHARS, PreviousRefresh, RefreshHash, RefreshState, Session,
};
pub use store::{BoxFuture, Result, RotateOutcome, SessionStore};

/// The deadpool-redis version this crate is built on, re-exported so callers name the same
/// `Pool` type.
pub use deadpool_redis;
