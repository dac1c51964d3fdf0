//! The conformance suite every lifecycle store (one-time tokens, the mail outbox, the audit
//! log) must pass: memory, Redis and PostgreSQL (`memory_lifecycle.rs`, `redis_lifecycle.rs`,
//! `postgres_lifecycle.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use keel_domain::{
    AuditEvent, AuditKind, AuditLog, AuditQuery, DisplayName, Email, Mail, OneTimeToken,
    OneTimeTokens, Outbox, TokenHash, TokenPurpose, User, UserId, UserRecord, UserRepository,
};
use time::{Duration, OffsetDateTime};

/// A lifecycle store: the three ports on one store.
pub trait Lifecycle: OneTimeTokens + Outbox + AuditLog {}
impl<T: OneTimeTokens + Outbox + AuditLog> Lifecycle for T {}

/// A store under test.
pub struct Harness {
    /// The store.
    pub store: Arc<dyn Lifecycle>,
    /// The same data through another handle (another instance), or the same store.
    pub other: Arc<dyn Lifecycle>,
    /// Where the accounts that tokens belong to are created (PostgreSQL checks the link).
    pub users: Arc<dyn UserRepository>,
    /// Kept alive for the length of the test.
    pub guard: Box<dyn Any + Send>,
}

/// Runs every conformance test against the backend made by `$make`.
#[macro_export]
macro_rules! lifecycle_suite {
    ($make:path) => {
        $crate::lifecycle_suite!(@tests $make;
            a_token_spends_once_for_its_purpose_only_and_never_after_expiry,
            of_concurrent_spends_on_two_instances_exactly_one_gets_the_token,
            spending_all_of_a_purpose_leaves_the_other_purposes,
            an_issued_token_queues_its_mail_and_the_outbox_leases_retries_and_forgets,
            audit_events_are_kept_once_and_read_newest_first_by_user_type_and_time,
            scrubbing_keeps_ids_types_and_times_and_purging_removes_old_events,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                lifecycle::$name($make).await;
            }
        )*
    };
}

fn now() -> OffsetDateTime {
    keel_domain::truncate_to_micros(OffsetDateTime::now_utc())
}

async fn user(h: &Harness) -> UserId {
    let email = Email::parse(&format!("u{}@example.com", UserId::generate())).unwrap();
    let user = User::new(
        UserId::generate(),
        email.clone(),
        DisplayName::from_email(&email),
        now(),
    );
    let id = user.id;
    h.users
        .insert(UserRecord::new(user, "$argon2id$x".into()))
        .await
        .unwrap();
    id
}

fn hash(n: u8) -> TokenHash {
    let mut bytes = [n; 32];
    bytes[0] = rand_byte();
    TokenHash(bytes)
}

fn rand_byte() -> u8 {
    // Tests share a store across runs of a binary only through unique users, but a distinct
    // first byte keeps two tests' hashes apart as well.
    (uuid::Uuid::now_v7().as_u128() % 251) as u8
}

fn token(user_id: UserId, purpose: TokenPurpose, hash: TokenHash, ttl: Duration) -> OneTimeToken {
    let created_at = now();
    OneTimeToken {
        hash,
        purpose,
        user_id,
        new_email: None,
        created_at,
        expires_at: created_at + ttl,
    }
}

fn mail(to: &str) -> Mail {
    Mail {
        to: to.into(),
        subject: "Subject".into(),
        text: "text https://example.com/x?token=abc".into(),
        html: "<p>html</p>".into(),
    }
}

pub async fn a_token_spends_once_for_its_purpose_only_and_never_after_expiry<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = user(&h).await;
    let reset = hash(1);
    let mut issued = token(ada, TokenPurpose::ChangeEmail, reset, Duration::hours(1));
    issued.new_email = Some(Email::parse("Ada.New@Example.com").unwrap());
    h.store
        .issue(issued.clone(), mail("ada@example.com"))
        .await
        .unwrap();

    // Another purpose does not spend it (and does not use it up).
    let other = h
        .store
        .spend(TokenPurpose::ResetPassword, reset, now())
        .await
        .unwrap();
    assert_eq!(other, None);
    let spent = h
        .other
        .spend(TokenPurpose::ChangeEmail, reset, now())
        .await
        .unwrap();
    assert_eq!(spent, Some(issued));
    let again = h
        .store
        .spend(TokenPurpose::ChangeEmail, reset, now())
        .await
        .unwrap();
    assert_eq!(again, None, "spent twice");

    // Past its expiry, a token is as unknown as one never issued.
    let short = hash(2);
    let issued = token(ada, TokenPurpose::VerifyEmail, short, Duration::seconds(30));
    h.store
        .issue(issued, mail("ada@example.com"))
        .await
        .unwrap();
    let later = now() + Duration::seconds(31);
    let expired = h
        .store
        .spend(TokenPurpose::VerifyEmail, short, later)
        .await
        .unwrap();
    assert_eq!(expired, None);
    let unknown = h
        .store
        .spend(TokenPurpose::VerifyEmail, hash(3), now())
        .await
        .unwrap();
    assert_eq!(unknown, None);
}

pub async fn of_concurrent_spends_on_two_instances_exactly_one_gets_the_token<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = user(&h).await;
    let hash = hash(4);
    let issued = token(ada, TokenPurpose::ResetPassword, hash, Duration::hours(1));
    h.store
        .issue(issued, mail("ada@example.com"))
        .await
        .unwrap();
    let spends = (0..10).map(|i| {
        let store = if i % 2 == 0 {
            Arc::clone(&h.store)
        } else {
            Arc::clone(&h.other)
        };
        tokio::spawn(async move { store.spend(TokenPurpose::ResetPassword, hash, now()).await })
    });
    let mut won = 0;
    for spend in spends {
        if spend.await.unwrap().unwrap().is_some() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

pub async fn spending_all_of_a_purpose_leaves_the_other_purposes<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = user(&h).await;
    let bob = user(&h).await;
    let (r1, r2, v, b) = (hash(5), hash(6), hash(7), hash(8));
    for (owner, purpose, hash) in [
        (ada, TokenPurpose::ResetPassword, r1),
        (ada, TokenPurpose::ResetPassword, r2),
        (ada, TokenPurpose::VerifyEmail, v),
        (bob, TokenPurpose::ResetPassword, b),
    ] {
        let issued = token(owner, purpose, hash, Duration::hours(1));
        h.store.issue(issued, mail("x@example.com")).await.unwrap();
    }
    let spent = h
        .other
        .spend_all(ada, TokenPurpose::ResetPassword)
        .await
        .unwrap();
    assert_eq!(spent, 2);
    for hash in [r1, r2] {
        let late = h
            .store
            .spend(TokenPurpose::ResetPassword, hash, now())
            .await
            .unwrap();
        assert_eq!(late, None);
    }
    assert!(
        h.store
            .spend(TokenPurpose::VerifyEmail, v, now())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        h.store
            .spend(TokenPurpose::ResetPassword, b, now())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        h.store
            .spend_all(ada, TokenPurpose::ResetPassword)
            .await
            .unwrap(),
        0
    );

    let c = hash(9);
    let issued = token(ada, TokenPurpose::ChangeEmail, c, Duration::hours(1));
    h.store.issue(issued, mail("x@example.com")).await.unwrap();
    h.store.forget_user(ada).await.unwrap();
    assert_eq!(
        h.store
            .spend(TokenPurpose::ChangeEmail, c, now())
            .await
            .unwrap(),
        None
    );

    // Purging forgets what expired before the bound and nothing else (a store whose tokens
    // expire by themselves may report 0).
    let (short, long) = (hash(11), hash(12));
    for (hash, ttl) in [(short, Duration::seconds(30)), (long, Duration::hours(1))] {
        let issued = token(bob, TokenPurpose::VerifyEmail, hash, ttl);
        h.store.issue(issued, mail("x@example.com")).await.unwrap();
    }
    let purged = h
        .other
        .purge_expired(now() + Duration::minutes(1))
        .await
        .unwrap();
    assert!(purged <= 1, "{purged}");
    assert!(
        h.store
            .spend(TokenPurpose::VerifyEmail, long, now())
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn an_issued_token_queues_its_mail_and_the_outbox_leases_retries_and_forgets<F, Fut>(
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = user(&h).await;
    let start = now();
    let before = h.store.stats().await.unwrap();
    let issued = token(
        ada,
        TokenPurpose::VerifyEmail,
        hash(10),
        Duration::hours(24),
    );
    h.store
        .issue(issued, mail("ada@example.com"))
        .await
        .unwrap();
    h.store
        .enqueue(mail("bob@example.com"), now())
        .await
        .unwrap();
    let stats = h.other.stats().await.unwrap();
    assert_eq!(stats.queued, before.queued + 2);
    assert!(stats.oldest.is_some_and(|oldest| oldest <= now()));

    // A claim leases what it takes: another instance claiming at once gets nothing of it.
    let lease = Duration::seconds(60);
    let at = now() + Duration::seconds(1);
    let claimed = h.store.claim(at, lease, 10).await.unwrap();
    let ours: Vec<_> = claimed
        .iter()
        .filter(|m| m.created_at >= start && m.mail.to.ends_with("@example.com"))
        .collect();
    assert_eq!(ours.len(), 2, "{claimed:?}");
    assert_eq!(ours[0].mail, mail("ada@example.com"));
    assert_eq!(ours[0].attempts, 0);
    assert!(h.other.claim(at, lease, 10).await.unwrap().is_empty());
    // Once the lease ends (the sender died), another instance takes them.
    let after_lease = at + lease + Duration::seconds(1);
    let retaken = h.other.claim(after_lease, lease, 10).await.unwrap();
    assert_eq!(retaken.len(), 2);

    let (first, second) = (retaken[0].id, retaken[1].id);
    let retry = after_lease + Duration::seconds(30);
    h.store
        .retry_at(first, retry, "421 try later".into())
        .await
        .unwrap();
    h.store.delivered(second).await.unwrap();
    let due = retry + lease + Duration::seconds(1);
    assert!(
        h.store
            .claim(retry - Duration::seconds(1), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = h.store.claim(due, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (first, 1));

    h.store
        .give_up(first, "550 no such user".into())
        .await
        .unwrap();
    assert!(
        h.store
            .claim(due + lease * 2, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stats = h.other.stats().await.unwrap();
    assert_eq!(stats.queued, before.queued);
    assert_eq!(stats.failed, before.failed + 1);
}

fn event(kind: AuditKind, user: Option<UserId>, at: OffsetDateTime) -> AuditEvent {
    AuditEvent::new(kind, user, at)
}

pub async fn audit_events_are_kept_once_and_read_newest_first_by_user_type_and_time<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = UserId::generate();
    let bob = UserId::generate();
    let t0 = now() - Duration::hours(1);
    let mut login = event(AuditKind::UserLogin, Some(ada), t0).with("sessionId", "s1");
    login.ip = Some("203.0.113.7".parse().unwrap());
    login.user_agent = Some("curl/8".into());
    let events = [
        login,
        event(
            AuditKind::UserLoginFailed,
            Some(ada),
            t0 + Duration::seconds(1),
        ),
        event(AuditKind::UserLogin, Some(bob), t0 + Duration::seconds(2)),
        event(AuditKind::UserLogout, Some(ada), t0 + Duration::seconds(3)),
        // Two in one millisecond: the id orders them.
        event(AuditKind::UserLogin, Some(ada), t0 + Duration::seconds(4)),
        event(AuditKind::UserLogin, Some(ada), t0 + Duration::seconds(4)),
    ];
    for e in &events {
        h.store.append(e.clone()).await.unwrap();
    }
    // A retried append of the same event keeps one.
    h.other.append(events[0].clone()).await.unwrap();

    let all_of_ada = h
        .other
        .query(AuditQuery {
            user_id: Some(ada),
            limit: 50,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let expected: Vec<_> = [5, 4, 3, 1, 0].iter().map(|&i| events[i].clone()).collect();
    assert_eq!(all_of_ada, expected);

    // Pages of two, each after the last of the one before, give the same in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = h
            .store
            .query(AuditQuery {
                user_id: Some(ada),
                after,
                limit: 2,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.at, last.id));
        paged.extend(page);
    }
    assert_eq!(paged, expected);

    let logins = h
        .store
        .query(AuditQuery {
            user_id: Some(ada),
            kind: Some(AuditKind::UserLogin),
            since: Some(t0 + Duration::seconds(1)),
            limit: 50,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(logins, vec![events[5].clone(), events[4].clone()]);
    let window = h
        .store
        .query(AuditQuery {
            since: Some(t0 + Duration::seconds(1)),
            until: Some(t0 + Duration::seconds(3)),
            limit: 50,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let window: Vec<_> = window
        .into_iter()
        .filter(|e| e.user_id == Some(ada) || e.user_id == Some(bob))
        .collect();
    assert_eq!(window, vec![events[2].clone(), events[1].clone()]);
}

pub async fn scrubbing_keeps_ids_types_and_times_and_purging_removes_old_events<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make().await;
    let ada = UserId::generate();
    let admin = UserId::generate();
    let t0 = now() - Duration::days(400);
    let mut about = event(AuditKind::UserLogin, Some(ada), now()).with("sessionId", "s1");
    about.ip = Some("203.0.113.7".parse().unwrap());
    about.user_agent = Some("curl/8".into());
    let mut acted = event(AuditKind::UserDisabled, Some(UserId::generate()), now());
    acted.actor_id = Some(ada);
    acted.ip = Some("2001:db8::1".parse().unwrap());
    let mut kept = event(AuditKind::UserDisabled, Some(ada), now()).with("reason", "x");
    kept.actor_id = Some(admin);
    for e in [&about, &acted, &kept] {
        h.store.append(e.clone()).await.unwrap();
    }
    let touched = h.other.scrub(ada).await.unwrap();
    assert_eq!(touched, 3);
    let read = |id: uuid::Uuid| {
        let store = Arc::clone(&h.store);
        async move {
            store
                .query(AuditQuery {
                    limit: 1_000,
                    since: Some(now() - Duration::hours(1)),
                    ..AuditQuery::default()
                })
                .await
                .unwrap()
                .into_iter()
                .find(|e| e.id == id)
                .unwrap()
        }
    };
    let scrubbed = read(about.id).await;
    assert_eq!(
        (scrubbed.kind, scrubbed.user_id, scrubbed.at),
        (about.kind, about.user_id, about.at)
    );
    assert_eq!((scrubbed.ip, scrubbed.user_agent.as_deref()), (None, None));
    assert!(scrubbed.data.is_empty());
    let as_actor = read(acted.id).await;
    assert_eq!((as_actor.actor_id, as_actor.ip), (Some(ada), None));
    assert_eq!(read(kept.id).await.actor_id, Some(admin));
    let record = h
        .store
        .query(AuditQuery {
            user_id: Some(ada),
            kind: Some(AuditKind::AuditScrubbed),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].data.get("events"), Some(&serde_json::json!(3)));

    let old = event(AuditKind::UserLogin, Some(admin), t0);
    h.store.append(old.clone()).await.unwrap();
    let purged = h.other.purge(t0 + Duration::days(1)).await.unwrap();
    assert!(purged >= 1);
    let left = h
        .store
        .query(AuditQuery {
            user_id: Some(admin),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(left.iter().all(|e| e.id != old.id), "{left:?}");
    let purges = h
        .store
        .query(AuditQuery {
            kind: Some(AuditKind::AuditPurged),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(!purges.is_empty());
}
