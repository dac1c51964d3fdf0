//! `PgUserRepository` on a private PostgreSQL server (one per test binary, a database per
//! test): the conformance suite every user store passes, then what only PostgreSQL has: the
//! migrations (run twice, run concurrently, a newer release's history), the append-only audit
//! log, and behaviour when the database is down or a statement is blocked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::{Harness, record};
use keel_domain::{RepositoryError, UserRepository};
use keel_storage::postgres::{self, DatabaseConfig, PgUserRepository};
use keel_testkit::postgres::{PostgresServer, TestDatabase};
use secrecy::SecretString;

fn config(db: &TestDatabase) -> DatabaseConfig {
    DatabaseConfig {
        url: Some(SecretString::from(db.url.clone())),
        pool_size: 4,
        connect_timeout_ms: 2_000,
        acquire_timeout_ms: 2_000,
        statement_timeout_ms: 2_000,
    }
}

/// A migrated database of the test's own, and a store on it.
async fn migrated(server: &PostgresServer) -> (TestDatabase, DatabaseConfig) {
    let db = server.database();
    let config = config(&db);
    postgres::migrate(&config).await.unwrap();
    (db, config)
}

fn repo(config: &DatabaseConfig) -> PgUserRepository {
    PgUserRepository::new(postgres::pool(config).unwrap(), config)
}

async fn postgres_backend() -> Harness {
    let (_db, config) = migrated(PostgresServer::shared()).await;
    Harness {
        repo: Arc::new(repo(&config)),
        other: Arc::new(repo(&config)),
        guard: Box::new(()),
    }
}

user_repository_suite!(postgres_backend);

#[tokio::test]
async fn migrations_are_idempotent_and_concurrent_instances_migrate_once() {
    let server = PostgresServer::shared();
    let db = server.database();
    let config = config(&db);
    // Five instances starting at the same moment on an empty database.
    let runs: Vec<_> = (0..5)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { postgres::migrate(&config).await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    postgres::migrate(&config).await.unwrap();
    let applied = server
        .psql(
            &db.name,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations WHERE success",
        )
        .unwrap();
    let expected: Vec<String> = postgres::migration_versions()
        .iter()
        .map(i64::to_string)
        .collect();
    assert_eq!(applied, expected.join(","));
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_release_still_serves_this_one() {
    let server = PostgresServer::shared();
    let (db, config) = migrated(server).await;
    // A newer release applied a migration this one does not know.
    server
        .psql(
            &db.name,
            "CREATE TABLE from_the_future (x int); \
             INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', true, '\\x00', 1)",
        )
        .unwrap();
    postgres::migrate(&config).await.unwrap();
    let repo = repo(&config);
    repo.insert(record("ada@example.com")).await.unwrap();
}

#[tokio::test]
async fn the_audit_log_is_append_only_but_for_purge_and_scrub_which_are_audited() {
    let server = PostgresServer::shared();
    let (db, _config) = migrated(server).await;
    let user = "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a";
    let other = "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2b";
    server
        .psql(
            &db.name,
            &format!(
                "INSERT INTO audit_events (id, type, user_id, ip, user_agent, at, data) VALUES \
                 (keel_uuid_v7(), 'user.login', '{user}', '192.0.2.1', 'ua', now() - interval '400 days', '{{\"a\":1}}'), \
                 (keel_uuid_v7(), 'user.login', '{user}', '192.0.2.1', 'ua', now(), '{{\"a\":2}}'), \
                 (keel_uuid_v7(), 'user.login', '{other}', '192.0.2.2', 'ua', now(), '{{\"a\":3}}')"
            ),
        )
        .unwrap();

    for refused in [
        "UPDATE audit_events SET type = 'forged'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let error = server.psql(&db.name, refused).unwrap_err();
        assert!(error.contains("append-only"), "{refused}: {error}");
    }

    // Retention: the old event goes, and the purge says so.
    let purged = server
        .psql(&db.name, "SELECT audit_purge(now() - interval '365 days')")
        .unwrap();
    assert_eq!(purged, "1");
    let purge_event = server
        .psql(
            &db.name,
            "SELECT data->>'events' FROM audit_events WHERE type = 'audit.purged'",
        )
        .unwrap();
    assert_eq!(purge_event, "1");

    // Erasure: the user's events keep id, type and time; others are untouched.
    let scrubbed = server
        .psql(&db.name, &format!("SELECT audit_scrub('{user}')"))
        .unwrap();
    assert_eq!(scrubbed, "1");
    let left = server
        .psql(
            &db.name,
            &format!(
                "SELECT type, coalesce(host(ip), '-'), coalesce(user_agent, '-'), data::text \
                 FROM audit_events WHERE user_id = '{user}' ORDER BY id"
            ),
        )
        .unwrap();
    assert_eq!(
        left,
        "user.login|-|-|{}\naudit.scrubbed|-|-|{\"events\": 1}"
    );
    let untouched = server
        .psql(
            &db.name,
            &format!("SELECT host(ip), data->>'a' FROM audit_events WHERE user_id = '{other}'"),
        )
        .unwrap();
    assert_eq!(untouched, "192.0.2.2|3");
    // The exception did not outlive the function: the log is append-only again.
    assert!(
        server
            .psql(&db.name, "DELETE FROM audit_events")
            .unwrap_err()
            .contains("append-only")
    );
}

#[tokio::test]
async fn a_blocked_statement_is_unavailable_within_the_bound_and_the_store_recovers() {
    let server = PostgresServer::shared();
    let (db, mut config) = migrated(server).await;
    config.statement_timeout_ms = 300;
    let repo = repo(&config);
    let ada = record("ada@example.com");
    repo.insert(ada.clone()).await.unwrap();

    let lock = server.lock_table(&db.name, "users");
    let started = Instant::now();
    let blocked = repo.find_by_id(ada.user.id).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(blocked, Err(RepositoryError::Unavailable(_))),
        "{blocked:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
    let refused = repo.insert(record("grace@example.com")).await;
    assert!(
        matches!(refused, Err(RepositoryError::Unavailable(_))),
        "{refused:?}"
    );

    lock.release();
    assert_eq!(repo.find_by_id(ada.user.id).await.unwrap(), Some(ada));
}

#[tokio::test]
async fn a_stopped_database_is_unavailable_in_time_and_a_restarted_one_serves_again() {
    let server = PostgresServer::start();
    let (_db, config) = migrated(&server).await;
    let repo = repo(&config);
    let ada = record("ada@example.com");
    repo.insert(ada.clone()).await.unwrap();

    server.stop();
    let started = Instant::now();
    for outcome in [
        repo.find_by_id(ada.user.id).await.map(drop),
        repo.find_by_email(&ada.user.email).await.map(drop),
        repo.insert(record("grace@example.com")).await,
    ] {
        assert!(
            matches!(outcome, Err(RepositoryError::Unavailable(_))),
            "{outcome:?}"
        );
    }
    assert!(started.elapsed() < config.call_timeout() * 3);

    // Unlike an empty Redis restart, PostgreSQL keeps its data; the pool reconnects by itself.
    server.start_again();
    keel_testkit::eventually(
        "the store serves again",
        Duration::from_secs(10),
        || async { repo.find_by_id(ada.user.id).await },
    )
    .await
    .map(|found| assert_eq!(found, ada))
    .unwrap_or_else(|| panic!("the account survived the restart"));
}

#[tokio::test]
async fn accounts_move_from_redis_once_and_two_spellings_of_one_address_are_reported() {
    use deadpool_redis::redis::AsyncCommands;
    use keel_storage::RedisUserRepository;
    use keel_testkit::redis::{RedisServer, unique_prefix};

    let (_db, config) = migrated(PostgresServer::shared()).await;
    let target = repo(&config);
    let redis = RedisServer::shared();
    let pool = deadpool_redis::Config::from_url(redis.url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let prefix = unique_prefix();
    let source = RedisUserRepository::new(pool.clone()).with_key_prefix(&prefix);
    let ada = record("Ada@Example.com");
    let grace = record("grace@example.com");
    source.insert(ada.clone()).await.unwrap();
    source.insert(grace.clone()).await.unwrap();
    // A release before 0.2 let one address in twice, composed and decomposed: they are one
    // address now, so only the first can move.
    let mut conn = pool.get().await.unwrap();
    for (id, spelling) in [
        (
            "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a",
            "jos\u{e9}@example.com",
        ),
        (
            "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2b",
            "jose\u{301}@example.com",
        ),
    ] {
        let json = serde_json::json!({
            "id": id, "email": spelling, "displayName": "Jos\u{e9}",
            "createdAt": "2025-06-01T12:00:00.123456Z", "passwordHash": conformance::HASH,
        });
        let () = conn
            .set(format!("{prefix}user:{id}"), json.to_string())
            .await
            .unwrap();
    }
    // Keys that are not accounts are left alone.
    let () = conn
        .zadd(format!("{prefix}user:{}:sessions", ada.user.id), "s", 1)
        .await
        .unwrap();
    drop(conn);

    let first = postgres::import_from_redis(&source, &target).await.unwrap();
    assert_eq!(first.imported, 3, "{first:?}");
    assert_eq!(first.already_present, 0, "{first:?}");
    assert_eq!(first.conflicts.len(), 1, "{first:?}");
    assert_eq!(
        target.find_by_id(ada.user.id).await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(
        target.find_by_email(&grace.user.email).await.unwrap(),
        Some(grace)
    );

    let again = postgres::import_from_redis(&source, &target).await.unwrap();
    assert_eq!(again.imported, 0, "{again:?}");
    assert_eq!(again.already_present, 3, "{again:?}");
    assert_eq!(again.conflicts, first.conflicts);
}

/// On PostgreSQL an audited change and its audit event are one transaction: both are there
/// afterwards, and while the audit log cannot take the event (its table is locked), the change
/// does not happen either. The other stores hand the event back for the caller to append.
#[tokio::test]
async fn an_audited_change_and_its_event_are_one_transaction() {
    use keel_domain::{AuditEvent, AuditKind, AuditLog as _, AuditQuery, DisplayName, UserChange};
    use keel_storage::postgres::PgLifecycleStore;

    let server = PostgresServer::shared();
    let (db, mut config) = migrated(server).await;
    config.statement_timeout_ms = 300;
    let repo = repo(&config);
    let log = PgLifecycleStore::new(postgres::pool(&config).unwrap(), &config);
    let ada = record("ada@example.com");
    repo.insert(ada.clone()).await.unwrap();
    let id = ada.user.id;
    let now = time::OffsetDateTime::now_utc();

    let event = AuditEvent::new(AuditKind::UserUpdated, Some(id), now);
    let name = DisplayName::parse("Ada Lovelace").unwrap();
    let audited = repo
        .update_audited(
            id,
            UserChange::DisplayName(name.clone()),
            now,
            event.clone(),
        )
        .await
        .unwrap();
    assert!(audited.unrecorded.is_none(), "recorded by the store itself");
    assert_eq!(audited.outcome.unwrap().user.display_name, name);
    let events = |log: &PgLifecycleStore| {
        let log = log.clone();
        async move {
            log.query(AuditQuery {
                user_id: Some(id),
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(events(&log).await, [event.id]);

    let lock = server.lock_table(&db.name, "audit_events");
    let other = DisplayName::parse("Someone Else").unwrap();
    let blocked = repo
        .update_audited(
            id,
            UserChange::DisplayName(other),
            now,
            AuditEvent::new(AuditKind::UserUpdated, Some(id), now),
        )
        .await;
    assert!(
        matches!(blocked, Err(RepositoryError::Unavailable(_))),
        "{blocked:?}"
    );
    let deleted = repo
        .delete_audited(id, AuditEvent::new(AuditKind::UserDeleted, Some(id), now))
        .await;
    assert!(deleted.is_err(), "{deleted:?}");
    lock.release();
    let stored = repo.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        stored.user.display_name, name,
        "the change went with its event"
    );
    assert_eq!(events(&log).await, [event.id]);

    // No such account: nothing changes, nothing is recorded.
    let nobody = keel_domain::UserId::generate();
    let none = repo
        .update_audited(
            nobody,
            UserChange::Disable,
            now,
            AuditEvent::new(AuditKind::UserDisabled, Some(nobody), now),
        )
        .await
        .unwrap();
    assert!(none.outcome.is_none() && none.unrecorded.is_none());
}
