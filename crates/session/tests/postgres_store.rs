//! The conformance suite against `PgSessionStore` on a private PostgreSQL server (one per test
//! binary, a fresh database per test), plus what only PostgreSQL has: the purge of ended
//! sessions, and behaviour when a statement is blocked or the database stops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::{Harness, hash};
use keel_domain::UserId;
use keel_session::{PgSessionStore, Session, SessionConfig, SessionError, SessionStore};
use keel_storage::postgres::{self, DatabaseConfig};
use keel_testkit::postgres::{PostgresServer, TestDatabase};
use secrecy::SecretString;
use time::OffsetDateTime;

fn database_config(db: &TestDatabase, statement_timeout_ms: u64) -> DatabaseConfig {
    DatabaseConfig {
        url: Some(SecretString::from(db.url.clone())),
        pool_size: 8,
        connect_timeout_ms: 2_000,
        acquire_timeout_ms: 2_000,
        statement_timeout_ms,
    }
}

async fn store_on(
    server: &PostgresServer,
    config: SessionConfig,
    statement_timeout_ms: u64,
) -> (TestDatabase, PgSessionStore) {
    let db = server.database();
    let database = database_config(&db, statement_timeout_ms);
    postgres::migrate(&database).await.unwrap();
    let pool = postgres::pool(&database).unwrap();
    let store = PgSessionStore::new(pool, config, database.call_timeout());
    (db, store)
}

async fn postgres_backend(config: SessionConfig) -> Harness {
    let (_db, store) = store_on(PostgresServer::shared(), config.clone(), 2_000).await;
    Harness::new(Arc::new(store), config, Box::new(()))
}

conformance_suite!(postgres_backend);

#[tokio::test]
async fn ended_sessions_are_purged_in_bounded_batches_with_their_tokens() {
    let config = SessionConfig {
        idle_ttl: Duration::from_secs(60),
        ..SessionConfig::default()
    };
    let server = PostgresServer::shared();
    let (db, store) = store_on(server, config.clone(), 2_000).await;
    let start = OffsetDateTime::now_utc();
    let user = UserId::generate();
    for i in 0..5 {
        let session = Session::new(user, start, &config);
        store
            .create(session, hash(&format!("old{i}")))
            .await
            .unwrap();
    }
    let later = start + time::Duration::minutes(2);
    let live = store
        .create(Session::new(user, later, &config), hash("live"))
        .await
        .unwrap();

    assert_eq!(store.purge_ended(later, 2).await.unwrap(), 2);
    assert_eq!(store.purge_ended(later, 100).await.unwrap(), 3);
    assert_eq!(store.purge_ended(later, 100).await.unwrap(), 0);
    let left = server
        .psql(
            &db.name,
            "SELECT (SELECT count(*) FROM sessions) || ',' || (SELECT count(*) FROM session_refresh_tokens)",
        )
        .unwrap();
    assert_eq!(left, "1,1");
    assert!(store.get(live.id, later).await.unwrap().is_some());
}

#[tokio::test]
async fn a_blocked_statement_is_unavailable_within_the_bound_and_the_store_recovers() {
    let server = PostgresServer::shared();
    let (db, store) = store_on(server, SessionConfig::default(), 300).await;
    let now = OffsetDateTime::now_utc();
    let session = store
        .create(
            Session::new(UserId::generate(), now, &SessionConfig::default()),
            hash("t0"),
        )
        .await
        .unwrap();

    let lock = server.lock_table(&db.name, "sessions");
    let started = Instant::now();
    let blocked = store.authenticate(session.id, now).await;
    assert!(
        matches!(blocked, Err(SessionError::Unavailable(_))),
        "{blocked:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    let blocked = store.rotate_refresh(hash("t0"), hash("t1"), now).await;
    assert!(
        matches!(blocked, Err(SessionError::Unavailable(_))),
        "{blocked:?}"
    );
    lock.release();
    // The blocked rotation changed nothing: the token still rotates.
    assert!(matches!(
        store
            .rotate_refresh(hash("t0"), hash("t1"), now)
            .await
            .unwrap(),
        keel_session::RotateOutcome::Rotated(_)
    ));
}

#[tokio::test]
async fn a_stopped_database_is_unavailable_and_sessions_survive_its_restart() {
    let server = PostgresServer::start();
    let (_db, store) = store_on(&server, SessionConfig::default(), 1_000).await;
    let now = OffsetDateTime::now_utc();
    let session = store
        .create(
            Session::new(UserId::generate(), now, &SessionConfig::default()),
            hash("t0"),
        )
        .await
        .unwrap();

    server.stop();
    let outcome = store.authenticate(session.id, now).await;
    assert!(
        matches!(outcome, Err(SessionError::Unavailable(_))),
        "{outcome:?}"
    );
    server.start_again();
    let found = keel_testkit::eventually(
        "the store serves again",
        Duration::from_secs(10),
        || async { store.authenticate(session.id, now).await },
    )
    .await;
    assert_eq!(found.map(|s| s.id), Some(session.id));
}
