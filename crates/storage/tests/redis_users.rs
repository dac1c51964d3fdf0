//! `RedisUserRepository` against a private redis-server: lookups, uniqueness under races
//! between instances, exact round trips, the key layout, and behaviour when Redis is down.

// Helpers outside `#[test]` functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Manager, Pool, Runtime};
use keel_domain::{DisplayName, Email, RepositoryError, User, UserId, UserRecord, UserRepository};
use keel_storage::RedisUserRepository;
use keel_testkit::redis::RedisServer;
use time::OffsetDateTime;
use time::macros::datetime;

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

fn repo(server: &RedisServer) -> RedisUserRepository {
    RedisUserRepository::new(pool_for(server, Duration::from_secs(2)))
}

fn record(email: &str) -> UserRecord {
    let email = Email::parse(email).unwrap();
    UserRecord {
        user: User {
            id: UserId::generate(),
            display_name: DisplayName::from_email(&email),
            email,
            created_at: OffsetDateTime::now_utc(),
        },
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
    }
}

fn email(address: &str) -> Email {
    Email::parse(address).unwrap()
}

async fn keys(pool: &Pool) -> Vec<String> {
    let mut conn = pool.get().await.unwrap();
    let mut keys: Vec<String> = conn.keys("*").await.unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn an_inserted_user_is_found_by_id_and_by_email_in_another_case() {
    let server = RedisServer::start();
    let repo = repo(&server);
    let ada = record("Ada@Example.com");
    repo.insert(ada.clone()).await.unwrap();

    assert_eq!(
        repo.find_by_id(ada.user.id).await.unwrap(),
        Some(ada.clone())
    );
    let by_email = repo
        .find_by_email(&email("ada@EXAMPLE.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email, ada);
    // The address comes back as it was registered, not in its canonical form.
    assert_eq!(by_email.user.email.as_str(), "Ada@Example.com");

    assert_eq!(repo.find_by_id(UserId::generate()).await.unwrap(), None);
    assert_eq!(
        repo.find_by_email(&email("grace@example.com"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_user_registered_on_one_instance_is_known_on_another() {
    let server = RedisServer::start();
    let a = repo(&server);
    let b = repo(&server);
    let ada = record("ada@example.com");
    a.insert(ada.clone()).await.unwrap();
    assert_eq!(
        b.find_by_email(&ada.user.email).await.unwrap(),
        Some(ada.clone())
    );
    assert!(matches!(
        b.insert(record("ADA@example.com")).await,
        Err(RepositoryError::EmailTaken)
    ));
}

#[tokio::test]
async fn a_second_account_with_the_same_canonical_email_is_refused_without_a_trace() {
    let server = RedisServer::start();
    let repo = repo(&server);
    let first = record("ada@example.com");
    repo.insert(first.clone()).await.unwrap();
    let before = keys(repo.pool()).await;

    let second = record("ADA@Example.COM");
    let second_id = second.user.id;
    assert!(matches!(
        repo.insert(second).await,
        Err(RepositoryError::EmailTaken)
    ));
    assert_eq!(repo.find_by_id(second_id).await.unwrap(), None);
    assert_eq!(
        repo.find_by_email(&first.user.email).await.unwrap(),
        Some(first)
    );
    assert_eq!(keys(repo.pool()).await, before);
}

#[tokio::test]
async fn a_second_account_with_the_same_id_is_refused_and_claims_no_email() {
    let server = RedisServer::start();
    let repo = repo(&server);
    let first = record("ada@example.com");
    repo.insert(first.clone()).await.unwrap();

    let mut clash = record("grace@example.com");
    clash.user.id = first.user.id;
    assert!(matches!(
        repo.insert(clash).await,
        Err(RepositoryError::IdTaken)
    ));
    assert_eq!(
        repo.find_by_email(&email("grace@example.com"))
            .await
            .unwrap(),
        None
    );
    repo.insert(record("grace@example.com")).await.unwrap();
    assert_eq!(repo.find_by_id(first.user.id).await.unwrap(), Some(first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_registrations_of_one_address_on_two_pools_exactly_one_wins() {
    const ATTEMPTS: usize = 20;
    let server = RedisServer::start();
    let instances: [Arc<dyn UserRepository>; 2] =
        [Arc::new(repo(&server)), Arc::new(repo(&server))];
    let barrier = Arc::new(tokio::sync::Barrier::new(ATTEMPTS));

    let tasks: Vec<_> = (0..ATTEMPTS)
        .map(|i| {
            let repo = Arc::clone(&instances[i % 2]);
            let barrier = Arc::clone(&barrier);
            // The same address in different cases: they must collide canonically.
            let address = if i % 3 == 0 {
                "Race@Example.com"
            } else {
                "race@EXAMPLE.COM"
            };
            let candidate = record(address);
            tokio::spawn(async move {
                barrier.wait().await;
                let id = candidate.user.id;
                repo.insert(candidate).await.map(|()| id)
            })
        })
        .collect();

    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(id) => winners.push(id),
            Err(RepositoryError::EmailTaken) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one registration must win");
    for instance in &instances {
        let stored = instance
            .find_by_email(&email("race@example.com"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.user.id, winners[0]);
    }
    // One account key and one email key: the losers left nothing behind.
    let pool = pool_for(&server, Duration::from_secs(2));
    assert_eq!(keys(&pool).await.len(), 2);
}

#[tokio::test]
async fn records_round_trip_exactly() {
    let server = RedisServer::start();
    let repo = repo(&server);
    let longest_local = "L".repeat(Email::MAX_LOCAL_CHARS);
    let long_domain = format!("{}.Example.COM", "d".repeat(150));
    let odd = [
        // A non-UTC offset and nanoseconds: the instant must come back to the nanosecond.
        (
            "Ada.Lovelace+Keel@Example.com".to_owned(),
            "Ada Lovelace ✨ «عربى»",
            datetime!(2025-01-02 03:04:05.123456789 +02:00),
        ),
        // A long address, which the key hashes.
        (
            format!("{longest_local}@{long_domain}"),
            "x",
            datetime!(1970-01-01 00:00:00 UTC),
        ),
        (
            "ÉLODIE@exemple.fr".to_owned(),
            "Élodie \"quotes\" \\ and {braces}",
            datetime!(9999-12-31 23:59:59.999999999 UTC),
        ),
    ];
    for (address, name, created_at) in odd {
        let mut original = record(&address);
        original.user.display_name = DisplayName::parse(name).unwrap();
        original.user.created_at = created_at;
        original.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$\"odd\\hash\u{e9}".into();
        repo.insert(original.clone()).await.unwrap();

        for found in [
            repo.find_by_id(original.user.id).await.unwrap().unwrap(),
            repo.find_by_email(&email(&address.to_lowercase()))
                .await
                .unwrap()
                .unwrap(),
        ] {
            assert_eq!(found, original);
            assert_eq!(found.user.email.as_str(), original.user.email.as_str());
            assert_eq!(found.user.display_name.as_str(), name);
            assert_eq!(
                found.user.created_at.unix_timestamp_nanos(),
                created_at.unix_timestamp_nanos()
            );
            assert_eq!(found.password_hash, original.password_hash);
        }
    }
}

#[tokio::test]
async fn keys_follow_the_documented_layout_and_never_expire() {
    let server = RedisServer::start();
    let repo = RedisUserRepository::new(pool_for(&server, Duration::from_secs(2)))
        .with_key_prefix("app1:");
    assert_eq!(repo.key_prefix(), "app1:");
    let ada = record("Ada@Example.com");
    repo.insert(ada.clone()).await.unwrap();

    let user_key = format!("app1:user:{}", ada.user.id);
    let email_key = repo.email_key(&ada.user.email);
    assert_eq!(repo.user_key(ada.user.id), user_key);
    let mut expected = vec![user_key.clone(), email_key.clone()];
    expected.sort();
    assert_eq!(keys(repo.pool()).await, expected);
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
    let other = repo_with_prefix(&server, "app2:");
    assert_eq!(other.find_by_id(ada.user.id).await.unwrap(), None);
    other.insert(record("ada@example.com")).await.unwrap();
}

fn repo_with_prefix(server: &RedisServer, prefix: &str) -> RedisUserRepository {
    repo(server).with_key_prefix(prefix)
}

#[tokio::test]
async fn an_undecodable_stored_account_is_unavailable_with_its_cause() {
    let server = RedisServer::start();
    let repo = repo(&server);
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
