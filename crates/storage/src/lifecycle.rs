//! Where the account lifecycle keeps its one-time tokens, its mail outbox and its audit log:
//! in memory, on Redis, or on PostgreSQL ([`crate::postgres::PgLifecycleStore`]).

mod memory;
mod redis;

pub use memory::MemoryLifecycleStore;
pub use redis::RedisLifecycleStore;
