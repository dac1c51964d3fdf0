//! `RedisUserRepository` against a private redis-server: the conformance suite that every
//! user store passes (one server for the binary, a key prefix per test), then what only Redis
//! has: the key layout, leftovers of refused inserts, accounts written by an earlier release,
//! undecodable values, and behaviour when Redis is down.

// Helpers outside `#[test]` functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use conformance::{Harness, email, record};
use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Manager, Pool, Runtime};
use keel_domain::{Email, RepositoryError, UserRepository};
use keel_storage::RedisUserRepository;
use keel_testkit::redis::{RedisServer, unique_prefix};
use sha2::{Digest, Sha256};

/// A pool built like `keel_session::redis_pool`: every wait bounded by `timeout`.
fn pool_for(server: &RedisServer, timeout: Duration) -> Pool {
    let connection = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let manager = Manager::new_with_config(server.url(), connection).unwrap();
    Pool::builder(manager)
        .max_size(8)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap()
}

/// A store on `server` under a prefix of its own.
fn repo(server: &RedisServer) -> RedisUserRepository {
    RedisUserRepository::new(pool_for(server, Duration::from_secs(2)))
        .with_key_prefix(unique_prefix())
}

/// A store under a prefix of its own on the binary's server; the other handle is another pool,
/// as another instance would have.
async fn redis_backend() -> Harness {
    let server = RedisServer::shared();
    let repo = repo(server);
    let other = RedisUserRepository::new(pool_for(server, Duration::from_secs(2)))
        .with_key_prefix(repo.key_prefix());
    Harness {
        repo: Arc::new(repo),
        other: Arc::new(other),
        guard: Box::new(()),
    }
}

user_repository_suite!(redis_backend);

async fn keys(repo: &RedisUserRepository) -> Vec<String> {
    let mut conn = repo.pool().get().await.unwrap();
    let mut keys: Vec<String> = conn.keys(format!("{}*", repo.key_prefix())).await.unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn refused_inserts_leave_no_key_behind() {
    let repo = repo(RedisServer::shared());
    let first = record("ada@example.com");
    repo.insert(first.clone()).await.unwrap();
    let before = keys(&repo).await;
    assert_eq!(before.len(), 2, "{before:?}");

    assert!(matches!(
        repo.insert(record("ADA@Example.COM")).await,
        Err(RepositoryError::EmailTaken)
    ));
    let mut clash = record("grace@example.com");
    clash.user.id = first.user.id;
    assert!(matches!(
        repo.insert(clash).await,
        Err(RepositoryError::IdTaken)
    ));
    assert_eq!(keys(&repo).await, before);
}

/// The email key a release before 0.2 wrote: the SHA-256 of the lowercased spelling.
fn key_of_an_earlier_release(prefix: &str, spelling: &str) -> String {
    let digest = Sha256::digest(spelling.trim().to_lowercase().as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}user-email:{hex}")
}

#[tokio::test]
async fn accounts_an_earlier_release_wrote_are_found_and_not_duplicated() {
    let repo = repo(RedisServer::shared());
    let prefix = repo.key_prefix().to_owned();
    let mut conn = repo.pool().get().await.unwrap();
    // What releases before 0.2 wrote for a registration typed decomposed, and for one with a
    // zero-width space (which today's rules refuse): the record in their JSON shape, and the
    // email key of the lowercased, unnormalised spelling.
    let old = [
        (
            "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a",
            "Jose\u{301}@Example.com",
        ),
        (
            "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2b",
            "rita\u{200B}@example.com",
        ),
    ];
    for (id, spelling) in old {
        let json = serde_json::json!({
            "id": id,
            "email": spelling,
            "displayName": "Old",
            "createdAt": "2025-06-01T12:00:00.123456789Z",
            "passwordHash": conformance::HASH,
        });
        let () = conn
            .set(format!("{prefix}user:{id}"), json.to_string())
            .await
            .unwrap();
        let () = conn
            .set(key_of_an_earlier_release(&prefix, spelling), id)
            .await
            .unwrap();
    }
    drop(conn);

    // The decomposed account is found however it is typed now, and keeps its data.
    for spelling in ["jos\u{e9}@example.com", "JOSE\u{301}@EXAMPLE.COM"] {
        let found = repo
            .find_by_email(&email(spelling))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{spelling:?} not found"));
        assert_eq!(found.user.id.to_string(), old[0].0);
        assert_eq!(found.user.email.as_str(), "Jos\u{e9}@Example.com");
        assert_eq!(found.user.updated_at, found.user.created_at);
    }
    // Nobody registers the same address again, in either form.
    for spelling in ["jos\u{e9}@example.com", "Jose\u{301}@example.com"] {
        let refused = repo.insert(record(spelling)).await;
        assert!(
            matches!(refused, Err(RepositoryError::EmailTaken)),
            "{spelling:?}: {refused:?}"
        );
    }
    // The zero-width account still signs in with its own spelling (looked up leniently)...
    let lenient = Email::parse_lenient("rita\u{200B}@example.com").unwrap();
    let found = repo.find_by_email(&lenient).await.unwrap().unwrap();
    assert_eq!(found.user.id.to_string(), old[1].0);
    // ...and is not the visible address it imitates, which stays free.
    assert_eq!(
        repo.find_by_email(&email("rita@example.com"))
            .await
            .unwrap(),
        None
    );
    repo.insert(record("rita@example.com")).await.unwrap();
}

#[tokio::test]
async fn keys_follow_the_documented_layout_and_never_expire() {
    let server = RedisServer::shared();
    let repo =
        RedisUserRepository::new(pool_for(server, Duration::from_secs(2))).with_key_prefix("app1:");
    assert_eq!(repo.key_prefix(), "app1:");
    let ada = record("Ada@Example.com");
    repo.insert(ada.clone()).await.unwrap();

    let user_key = format!("app1:user:{}", ada.user.id);
    let email_key = repo.email_key(&ada.user.email);
    assert_eq!(repo.user_key(ada.user.id), user_key);
    let mut expected = vec![user_key.clone(), email_key.clone()];
    expected.sort();
    assert_eq!(keys(&repo).await, expected);
    // No personal data in key names.
    assert!(!email_key.to_lowercase().contains("example"));

    let mut conn = repo.pool().get().await.unwrap();
    let id: String = conn.get(&email_key).await.unwrap();
    assert_eq!(id, ada.user.id.to_string());
    let json: String = conn.get(&user_key).await.unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["email"], "Ada@Example.com");
    assert_eq!(value["id"], ada.user.id.to_string());
    for key in [&user_key, &email_key] {
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert_eq!(ttl, -1, "{key} must not expire");
    }
    drop(conn);

    // Another prefix is another store on the same Redis.
    let other = self::repo(server);
    assert_eq!(other.find_by_id(ada.user.id).await.unwrap(), None);
    other.insert(record("ada@example.com")).await.unwrap();
}

#[tokio::test]
async fn an_undecodable_stored_account_is_unavailable_with_its_cause() {
    let repo = repo(RedisServer::shared());
    let ada = record("ada@example.com");
    repo.insert(ada.clone()).await.unwrap();
    let mut conn = repo.pool().get().await.unwrap();
    let () = conn
        .set(repo.user_key(ada.user.id), "{not json")
        .await
        .unwrap();
    drop(conn);

    for result in [
        repo.find_by_id(ada.user.id).await,
        repo.find_by_email(&ada.user.email).await,
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, RepositoryError::Unavailable(_)), "{err:?}");
        let cause = err.source().unwrap().to_string();
        assert!(cause.contains("not valid"), "{cause}");
    }
}

#[tokio::test]
async fn a_stopped_redis_is_unavailable_and_a_restarted_one_serves_again() {
    let mut server = RedisServer::start();
    let repo = repo(&server);
    let ada = record("ada@example.com");
    repo.insert(ada.clone()).await.unwrap();

    server.stop();
    assert!(matches!(
        repo.insert(record("grace@example.com")).await,
        Err(RepositoryError::Unavailable(_))
    ));
    assert!(matches!(
        repo.find_by_id(ada.user.id).await,
        Err(RepositoryError::Unavailable(_))
    ));
    assert!(matches!(
        repo.find_by_email(&ada.user.email).await,
        Err(RepositoryError::Unavailable(_))
    ));

    // The test server has persistence off, so its accounts are gone after a restart: the
    // reason production Redis must persist (AOF). The store itself recovers (the script is
    // sent again after NOSCRIPT).
    server.restart();
    assert_eq!(repo.find_by_id(ada.user.id).await.unwrap(), None);
    repo.insert(ada.clone()).await.unwrap();
    assert_eq!(
        repo.find_by_email(&ada.user.email).await.unwrap(),
        Some(ada)
    );
}
