#![doc = include_str!("../README.md")]

#[cfg(feature = "actix")]
pub mod actix;
mod config;
mod error;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod redis;
mod session;
mod store;

pub use config::SessionConfig;
pub use error::SessionError;
pub use memory::MemorySessionStore;
#[cfg(feature = "postgres")]
pub use postgres::PgSessionStore;
pub use redis::{RedisPoolConfig, RedisSessionStore, redis_pool};
pub use session::{
    InvalidRefreshHash, MAX_USER_AGENT_CHARS, PreviousRefresh, RefreshHash, RefreshState, Session,
};
pub use store::{BoxFuture, Result, RotateOutcome, SessionStore};

/// The deadpool-redis version this crate is built on, re-exported so callers name the same
/// `Pool` type.
pub use deadpool_redis;
/// The sqlx version the PostgreSQL store is built on (feature `postgres`).
#[cfg(feature = "postgres")]
pub use sqlx;
