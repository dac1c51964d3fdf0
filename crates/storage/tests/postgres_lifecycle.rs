//! The lifecycle-store conformance suite against `PgLifecycleStore` on a private PostgreSQL
//! server (one per binary, a database per test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lifecycle;

use std::sync::Arc;

use keel_storage::postgres::{self, DatabaseConfig, PgLifecycleStore, PgUserRepository};
use keel_testkit::postgres::PostgresServer;
use lifecycle::Harness;
use secrecy::SecretString;

async fn postgres_backend() -> Harness {
    let db = PostgresServer::shared().database();
    let config = DatabaseConfig {
        url: Some(SecretString::from(db.url.clone())),
        pool_size: 4,
        connect_timeout_ms: 2_000,
        acquire_timeout_ms: 2_000,
        statement_timeout_ms: 2_000,
    };
    postgres::migrate(&config).await.unwrap();
    let store = |config: &DatabaseConfig| {
        Arc::new(PgLifecycleStore::new(
            postgres::pool(config).unwrap(),
            config,
        ))
    };
    Harness {
        store: store(&config),
        other: store(&config),
        users: Arc::new(PgUserRepository::new(
            postgres::pool(&config).unwrap(),
            &config,
        )),
        guard: Box::new(db),
    }
}

lifecycle_suite!(postgres_backend);
