//! The lifecycle-store conformance suite against `RedisLifecycleStore` on a private
//! redis-server (one per binary, a key prefix per test; the second handle has a pool of its
//! own, as another instance would).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lifecycle;

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use deadpool_redis::{Manager, Pool, Runtime};
use keel_storage::{InMemoryUserRepository, RedisLifecycleStore};
use keel_testkit::redis::{RedisServer, unique_prefix};
use lifecycle::Harness;

fn pool(server: &RedisServer) -> Pool {
    let timeout = Duration::from_secs(2);
    let connection = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let manager = Manager::new_with_config(server.url(), connection).unwrap();
    Pool::builder(manager)
        .max_size(8)
        .wait_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap()
}

async fn redis_backend() -> Harness {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    Harness {
        store: Arc::new(RedisLifecycleStore::new(pool(server), prefix.clone())),
        other: Arc::new(RedisLifecycleStore::new(pool(server), prefix)),
        users: Arc::new(InMemoryUserRepository::new()),
        guard: Box::new(()),
    }
}

lifecycle_suite!(redis_backend);
