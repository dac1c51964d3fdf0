//! The conformance suite every `SessionStore` must pass: one set of behaviours, run against the
//! memory store and the Redis store (see `memory_store.rs` and `redis_store.rs`).
//!
//! A backend provides an async factory `fn(SessionConfig) -> Harness`; time moves through the
//! harness's `ManualClock`, whose `now` is passed into the store methods.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use keel_domain::{Clock, ManualClock, SessionId, UserId};
use keel_session::{
    MAX_USER_AGENT_CHARS, RefreshHash, RotateOutcome, Session, SessionConfig, SessionError,
    SessionStore,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// A store under test, a clock to move, and whatever must stay alive meanwhile.
pub struct Harness {
    pub store: Arc<dyn SessionStore>,
    pub clock: Arc<ManualClock>,
    pub config: SessionConfig,
    pub guard: Box<dyn Any + Send>,
}

impl Harness {
    pub fn new(
        store: Arc<dyn SessionStore>,
        config: SessionConfig,
        guard: Box<dyn Any + Send>,
    ) -> Self {
        Self {
            store,
            clock: Arc::new(ManualClock::new(start())),
            config,
            guard,
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(time::Duration::try_from(by).unwrap());
    }

    /// Creates a session for `user` at the current time with refresh token `token`.
    pub async fn login(&self, user: UserId, token: &str) -> Session {
        let session = Session::new(user, self.now(), &self.config)
            .with_user_agent("conformance/1")
            .with_ip("192.0.2.7".parse::<IpAddr>().unwrap());
        self.store.create(session, hash(token)).await.unwrap()
    }

    pub async fn authenticate(&self, id: SessionId) -> Option<Session> {
        self.store.authenticate(id, self.now()).await.unwrap()
    }

    pub async fn rotate(&self, presented: &str, new: &str) -> RotateOutcome {
        self.store
            .rotate_refresh(hash(presented), hash(new), self.now())
            .await
            .unwrap()
    }
}

/// Where every test's clock starts.
pub fn start() -> OffsetDateTime {
    datetime!(2030-01-01 00:00 UTC)
}

pub fn hash(token: &str) -> RefreshHash {
    RefreshHash::of_token(token)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config() -> SessionConfig {
    SessionConfig {
        absolute_ttl: secs(4 * 3600),
        idle_ttl: secs(3600),
        touch_interval: secs(60),
        refresh_grace: Duration::ZERO,
        key_prefix: "keel-test:".into(),
    }
}

fn grace_config(grace: Duration) -> SessionConfig {
    SessionConfig {
        refresh_grace: grace,
        ..config()
    }
}

/// Runs every conformance test as its own `#[tokio::test]` against the backend made by `$make`
/// (an `async fn(SessionConfig) -> Harness`).
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@tests $make;
            create_then_authenticate,
            create_rejects_a_taken_id_or_hash,
            user_agents_are_cut_on_create,
            idle_expiry,
            absolute_expiry_beats_activity,
            touch_is_throttled,
            get_never_touches,
            listing_per_user_drops_expired_sessions,
            revoke_removes_the_session_and_its_refresh_token,
            revoke_all_for_user,
            rotation,
            rotation_rejects_bad_new_hashes,
            reuse_of_a_spent_token_revokes_the_session,
            spent_tokens_are_remembered_across_many_rotations,
            an_expired_session_does_not_rotate,
            concurrent_rotation_with_one_token_has_one_winner,
            concurrent_rotation_in_the_grace_window,
            grace_window_on,
            grace_window_off,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                conformance::$name($make).await;
            }
        )*
    };
}

pub async fn create_then_authenticate<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let user = UserId::generate();
    let created = h.login(user, "t0").await;
    assert_eq!(created.user_id, user);
    assert_eq!(created.created_at, start());
    assert_eq!(created.last_seen_at, start());
    assert_eq!(created.expires_at, start() + time::Duration::hours(4));
    assert_eq!(created.idle_expires_at, start() + time::Duration::hours(1));
    assert_eq!(created.user_agent.as_deref(), Some("conformance/1"));
    assert_eq!(created.ip, Some("192.0.2.7".parse().unwrap()));
    let refresh = created.refresh.clone().unwrap();
    assert_eq!(refresh.current, hash("t0"));
    assert_eq!(refresh.generation, 0);
    assert_eq!(refresh.previous, None);

    assert_eq!(h.authenticate(created.id).await, Some(created.clone()));
    assert_eq!(
        h.store.get(created.id, h.now()).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(h.authenticate(SessionId::generate()).await, None);
    assert_eq!(
        h.store.get(SessionId::generate(), h.now()).await.unwrap(),
        None
    );
}

pub async fn create_rejects_a_taken_id_or_hash<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let user = UserId::generate();
    let first = h.login(user, "t0").await;

    let mut same_id = Session::new(user, h.now(), &h.config);
    same_id.id = first.id;
    let err = h.store.create(same_id, hash("other")).await.unwrap_err();
    assert!(matches!(err, SessionError::Conflict(_)), "{err:?}");

    let fresh = Session::new(user, h.now(), &h.config);
    let err = h.store.create(fresh.clone(), hash("t0")).await.unwrap_err();
    assert!(matches!(err, SessionError::Conflict(_)), "{err:?}");
    // Nothing of the rejected sessions was stored.
    assert_eq!(h.authenticate(fresh.id).await, None);
    assert_eq!(h.rotate("other", "x").await, RotateOutcome::Unknown);
    assert_eq!(h.store.list_for_user(user, h.now()).await.unwrap().len(), 1);
}

pub async fn user_agents_are_cut_on_create<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let mut session = Session::new(UserId::generate(), h.now(), &h.config);
    session.user_agent = Some("ü/".repeat(200));
    let stored = h.store.create(session, hash("t0")).await.unwrap();
    let ua = stored.user_agent.clone().unwrap();
    assert_eq!(ua.chars().count(), MAX_USER_AGENT_CHARS);
    assert_eq!(
        h.authenticate(stored.id).await.unwrap().user_agent,
        Some(ua.clone())
    );
    // It survives a touch (a rewrite of the record) unchanged.
    h.advance(secs(61));
    let touched = h.authenticate(stored.id).await.unwrap();
    assert_eq!(touched.last_seen_at, h.now());
    assert_eq!(touched.user_agent, Some(ua));
}

pub async fn idle_expiry<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let user = UserId::generate();
    let idle = h.login(user, "idle").await;
    let active = h.login(user, "active").await;

    // Just before the idle expiry both are live; using `active` moves its idle expiry.
    h.advance(secs(3599));
    let touched = h.authenticate(active.id).await.unwrap();
    assert_eq!(touched.idle_expires_at, h.now() + time::Duration::hours(1));

    // At the idle expiry the unused one is gone; the used one lives on.
    h.advance(secs(1));
    assert_eq!(h.authenticate(idle.id).await, None);
    assert_eq!(h.store.get(idle.id, h.now()).await.unwrap(), None);
    assert!(h.authenticate(active.id).await.is_some());
    // Its refresh token is dead too.
    assert_eq!(h.rotate("idle", "idle2").await, RotateOutcome::Unknown);

    // Unused for an hour after its last touch, `active` expires as well.
    h.advance(secs(3598));
    assert_eq!(
        h.store.get(active.id, h.now()).await.unwrap().map(|s| s.id),
        Some(active.id)
    );
    h.advance(secs(1));
    assert_eq!(h.authenticate(active.id).await, None);
}

pub async fn absolute_expiry_beats_activity<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let session = h.login(UserId::generate(), "t0").await;
    // Active every 50 minutes, for four hours.
    for _ in 0..4 {
        h.advance(secs(50 * 60));
        let seen = h.authenticate(session.id).await.unwrap();
        assert!(seen.idle_expires_at <= seen.expires_at);
    }
    // At 3h50m the idle expiry is capped by the absolute one.
    h.advance(secs(30 * 60));
    let seen = h.authenticate(session.id).await.unwrap();
    assert_eq!(seen.idle_expires_at, session.expires_at);
    h.advance(secs(10 * 60 - 1));
    assert!(h.authenticate(session.id).await.is_some());
    h.advance(secs(1));
    assert_eq!(h.now(), session.expires_at);
    assert_eq!(h.authenticate(session.id).await, None);
    assert_eq!(h.rotate("t0", "t1").await, RotateOutcome::Unknown);
}

pub async fn touch_is_throttled<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let session = h.login(UserId::generate(), "t0").await;

    h.advance(secs(30));
    let within = h.authenticate(session.id).await.unwrap();
    assert_eq!(within.last_seen_at, start());
    assert_eq!(within.idle_expires_at, session.idle_expires_at);
    h.advance(secs(29));
    let still_within = h.authenticate(session.id).await.unwrap();
    assert_eq!(still_within.last_seen_at, start());

    h.advance(secs(1));
    let after = h.authenticate(session.id).await.unwrap();
    assert_eq!(after.last_seen_at, start() + time::Duration::seconds(60));
    assert_eq!(
        after.idle_expires_at,
        after.last_seen_at + time::Duration::hours(1)
    );
    // The write stuck.
    assert_eq!(
        h.store.get(session.id, h.now()).await.unwrap(),
        Some(after.clone())
    );

    // The next write again waits for a full interval after the last one.
    h.advance(secs(59));
    assert_eq!(
        h.authenticate(session.id).await.unwrap().last_seen_at,
        after.last_seen_at
    );
    h.advance(secs(1));
    assert_eq!(
        h.authenticate(session.id).await.unwrap().last_seen_at,
        h.now()
    );
}

pub async fn get_never_touches<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let session = h.login(UserId::generate(), "t0").await;
    h.advance(secs(600));
    let got = h.store.get(session.id, h.now()).await.unwrap().unwrap();
    assert_eq!(got.last_seen_at, start());
    assert_eq!(got.idle_expires_at, session.idle_expires_at);
    h.advance(secs(3000));
    assert_eq!(h.store.get(session.id, h.now()).await.unwrap(), None);
}

pub async fn listing_per_user_drops_expired_sessions<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let alice = UserId::generate();
    let bob = UserId::generate();
    let first = h.login(alice, "a1").await;
    h.advance(secs(600));
    let second = h.login(alice, "a2").await;
    h.advance(secs(600));
    let third = h.login(alice, "a3").await;
    let bobs = h.login(bob, "b1").await;

    let ids = |sessions: Vec<Session>| sessions.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let listed = h.store.list_for_user(alice, h.now()).await.unwrap();
    assert_eq!(ids(listed.clone()), vec![third.id, second.id, first.id]);
    assert_eq!(listed[0], third);
    assert_eq!(
        ids(h.store.list_for_user(bob, h.now()).await.unwrap()),
        vec![bobs.id]
    );
    assert!(
        h.store
            .list_for_user(UserId::generate(), h.now())
            .await
            .unwrap()
            .is_empty()
    );

    // `first` reaches its idle expiry (created at 0, now 1h); the others stay.
    h.advance(secs(2400));
    let listed = ids(h.store.list_for_user(alice, h.now()).await.unwrap());
    assert_eq!(listed, vec![third.id, second.id]);
    assert_eq!(h.authenticate(first.id).await, None);

    h.advance(secs(1200));
    assert!(
        h.store
            .list_for_user(alice, h.now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.store
            .list_for_user(bob, h.now())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn revoke_removes_the_session_and_its_refresh_token<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let user = UserId::generate();
    let doomed = h.login(user, "doomed").await;
    let kept = h.login(user, "kept").await;
    assert_eq!(
        h.rotate("doomed", "doomed2")
            .await
            .rotated()
            .refresh
            .unwrap()
            .generation,
        1
    );

    assert!(h.store.revoke(doomed.id).await.unwrap());
    assert_eq!(h.authenticate(doomed.id).await, None);
    assert!(!h.store.revoke(doomed.id).await.unwrap());
    assert!(!h.store.revoke(SessionId::generate()).await.unwrap());
    // Neither its current nor its spent token means anything now.
    assert_eq!(h.rotate("doomed2", "x").await, RotateOutcome::Unknown);
    assert_eq!(h.rotate("doomed", "y").await, RotateOutcome::Unknown);
    let listed: Vec<SessionId> = h
        .store
        .list_for_user(user, h.now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![kept.id]);
    assert!(h.authenticate(kept.id).await.is_some());
}

pub async fn revoke_all_for_user<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let user = UserId::generate();
    let other = UserId::generate();
    let mut mine = HashSet::new();
    for token in ["m1", "m2", "m3"] {
        mine.insert(h.login(user, token).await.id);
    }
    let theirs = h.login(other, "o1").await;

    let revoked: HashSet<SessionId> = h
        .store
        .revoke_all_for_user(user)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(revoked, mine);
    for id in &mine {
        assert_eq!(h.authenticate(*id).await, None);
    }
    assert_eq!(h.rotate("m2", "m2b").await, RotateOutcome::Unknown);
    assert!(
        h.store
            .list_for_user(user, h.now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.store.revoke_all_for_user(user).await.unwrap().is_empty());
    assert!(h.authenticate(theirs.id).await.is_some());
    assert!(matches!(
        h.rotate("o1", "o2").await,
        RotateOutcome::Rotated(_)
    ));
}

pub async fn rotation<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let session = h.login(UserId::generate(), "t0").await;
    h.advance(secs(10));
    let rotated = h.rotate("t0", "t1").await.rotated();
    assert_eq!(rotated.id, session.id);
    let state = rotated.refresh.clone().unwrap();
    assert_eq!(state.current, hash("t1"));
    assert_eq!(state.generation, 1);
    let previous = state.previous.unwrap();
    assert_eq!(previous.hash, hash("t0"));
    assert_eq!(previous.rotated_at, h.now());
    // Rotation is activity.
    assert_eq!(rotated.last_seen_at, h.now());
    assert_eq!(rotated.idle_expires_at, h.now() + time::Duration::hours(1));
    assert_eq!(
        h.store.get(session.id, h.now()).await.unwrap(),
        Some(rotated)
    );

    h.advance(secs(10));
    let again = h.rotate("t1", "t2").await.rotated();
    assert_eq!(again.refresh.unwrap().generation, 2);
    assert_eq!(h.rotate("never-issued", "t3").await, RotateOutcome::Unknown);
    assert!(h.authenticate(session.id).await.is_some());
}

pub async fn rotation_rejects_bad_new_hashes<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let user = UserId::generate();
    let session = h.login(user, "t0").await;
    h.login(user, "someone-else").await;

    let err = h
        .store
        .rotate_refresh(hash("t0"), hash("t0"), h.now())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidArgument(_)), "{err:?}");
    let err = h
        .store
        .rotate_refresh(hash("t0"), hash("someone-else"), h.now())
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Conflict(_)), "{err:?}");
    // Nothing changed: t0 is still current.
    let unchanged = h.store.get(session.id, h.now()).await.unwrap().unwrap();
    assert_eq!(unchanged.refresh.unwrap().current, hash("t0"));
    assert!(matches!(
        h.rotate("t0", "t1").await,
        RotateOutcome::Rotated(_)
    ));
}

pub async fn reuse_of_a_spent_token_revokes_the_session<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let user = UserId::generate();
    let session = h.login(user, "t0").await;
    let bystander = h.login(user, "b0").await;
    h.rotate("t0", "t1").await.rotated();

    h.advance(secs(5));
    assert_eq!(
        h.rotate("t0", "stolen").await,
        RotateOutcome::Reused(session.id)
    );
    assert_eq!(h.authenticate(session.id).await, None);
    // The legitimate holder's token is dead as well, and so is the thief's replacement.
    assert_eq!(h.rotate("t1", "t2").await, RotateOutcome::Unknown);
    assert_eq!(h.rotate("stolen", "t3").await, RotateOutcome::Unknown);
    let listed: Vec<SessionId> = h
        .store
        .list_for_user(user, h.now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![bystander.id]);
}

pub async fn spent_tokens_are_remembered_across_many_rotations<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let session = h.login(UserId::generate(), "g0").await;
    for generation in 1..=5 {
        h.advance(secs(1800));
        let prev = format!("g{}", generation - 1);
        let next = format!("g{generation}");
        let rotated = h.rotate(&prev, &next).await.rotated();
        assert_eq!(rotated.refresh.unwrap().generation, generation);
    }
    // 2.5 hours later, the very first token is still known as spent.
    assert_eq!(
        h.rotate("g0", "late").await,
        RotateOutcome::Reused(session.id)
    );
}

pub async fn an_expired_session_does_not_rotate<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let session = h.login(UserId::generate(), "t0").await;
    h.advance(secs(3600));
    assert_eq!(h.rotate("t0", "t1").await, RotateOutcome::Unknown);
    assert_eq!(h.store.get(session.id, h.now()).await.unwrap(), None);
}

async fn race<F, Fut>(make: F, config: SessionConfig) -> (Harness, SessionId, Vec<RotateOutcome>)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config).await;
    let session = h.login(UserId::generate(), "contested").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = h.store.clone();
            let barrier = barrier.clone();
            let now = h.now();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .rotate_refresh(hash("contested"), hash(&format!("new-{i}")), now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    (h, session.id, outcomes)
}

pub async fn concurrent_rotation_with_one_token_has_one_winner<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let (h, id, outcomes) = race(make, config()).await;
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, RotateOutcome::Rotated(_)))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| **o == RotateOutcome::Reused(id))
        .count();
    let unknown = outcomes
        .iter()
        .filter(|o| **o == RotateOutcome::Unknown)
        .count();
    assert_eq!((rotated, reused, unknown), (1, 1, 18), "{outcomes:?}");
    // The first loser saw reuse and revoked the session.
    assert_eq!(h.authenticate(id).await, None);
}

pub async fn concurrent_rotation_in_the_grace_window<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let (h, id, outcomes) = race(make, grace_config(secs(10))).await;
    let winners: Vec<&Session> = outcomes
        .iter()
        .filter_map(|o| match o {
            RotateOutcome::Rotated(session) => Some(session),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let replays = outcomes
        .iter()
        .filter(|o| matches!(o, RotateOutcome::GraceReplay(_)))
        .count();
    assert_eq!(replays, 19, "{outcomes:?}");
    let current = winners[0].refresh.as_ref().unwrap().current;
    let live = h.authenticate(id).await.unwrap();
    assert_eq!(live.refresh.unwrap().current, current);
}

pub async fn grace_window_on<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(grace_config(secs(10))).await;
    let session = h.login(UserId::generate(), "t0").await;
    let rotated = h.rotate("t0", "t1").await.rotated();

    // A racing tab presents the old token within the window: the session is answered, unchanged,
    // and the proposed new hash is not installed.
    h.advance(secs(5));
    match h.rotate("t0", "tab2").await {
        RotateOutcome::GraceReplay(replayed) => assert_eq!(replayed, rotated),
        other => panic!("expected a grace replay, got {other:?}"),
    }
    assert_eq!(h.rotate("tab2", "x").await, RotateOutcome::Unknown);
    assert_eq!(
        h.authenticate(session.id)
            .await
            .unwrap()
            .refresh
            .unwrap()
            .current,
        hash("t1")
    );

    // The window is measured from the rotation: at 10 s it is closed and the old token is reuse.
    h.advance(secs(5));
    assert_eq!(
        h.rotate("t0", "late").await,
        RotateOutcome::Reused(session.id)
    );
    assert_eq!(h.authenticate(session.id).await, None);

    // Only the token replaced by the last rotation gets grace, not older ones.
    let h = make(grace_config(secs(10))).await;
    let session = h.login(UserId::generate(), "u0").await;
    h.rotate("u0", "u1").await.rotated();
    h.rotate("u1", "u2").await.rotated();
    assert!(matches!(
        h.rotate("u1", "u3").await,
        RotateOutcome::GraceReplay(_)
    ));
    assert_eq!(
        h.rotate("u0", "u4").await,
        RotateOutcome::Reused(session.id)
    );
}

pub async fn grace_window_off<F, Fut>(make: F)
where
    F: Fn(SessionConfig) -> Fut,
    Fut: Future<Output = Harness>,
{
    let h = make(config()).await;
    let session = h.login(UserId::generate(), "t0").await;
    h.rotate("t0", "t1").await.rotated();
    // Even at the same instant, the replaced token is reuse when the window is off.
    assert_eq!(
        h.rotate("t0", "tab2").await,
        RotateOutcome::Reused(session.id)
    );
    assert_eq!(h.authenticate(session.id).await, None);
}

/// Test shorthand.
pub trait RotatedExt {
    /// The session of a `Rotated` outcome; panics on any other.
    fn rotated(self) -> Session;
}

impl RotatedExt for RotateOutcome {
    fn rotated(self) -> Session {
        match self {
            RotateOutcome::Rotated(session) => session,
            other => panic!("expected Rotated, got {other:?}"),
        }
    }
}
