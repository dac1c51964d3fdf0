//! Tests of the sign-in use cases over the memory stores, with a clock that moves on demand.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use keel_domain::{BoxFuture, ManualClock, RepositoryError, UserRecord};
use keel_session::{MemorySessionStore, SessionError};
use keel_storage::InMemoryUserRepository;
use secrecy::ExposeSecret as _;
use time::macros::datetime;

use super::*;
use crate::accounts::{Accounts, Registration};
use crate::jwt::{JwtAlgorithm, JwtConfig, JwtError};
use crate::password::PasswordHashingConfig;
use crate::test_support::DownStore;

const PASSWORD: &str = "correct horse battery";

/// A user store whose users can be made to vanish, as if deleted.
#[derive(Default)]
struct Users {
    inner: InMemoryUserRepository,
    deleted: Mutex<HashSet<UserId>>,
}

impl Users {
    fn delete(&self, id: UserId) {
        self.deleted.lock().unwrap().insert(id);
    }

    fn is_deleted(&self, id: UserId) -> bool {
        self.deleted.lock().unwrap().contains(&id)
    }
}

impl UserRepository for Users {
    fn insert(&self, record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>> {
        self.inner.insert(record)
    }

    fn find_by_email(
        &self,
        email: &Email,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        let email = email.clone();
        Box::pin(async move {
            let found = self.inner.find_by_email(&email).await?;
            Ok(found.filter(|record| !self.is_deleted(record.user.id)))
        })
    }

    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(async move {
            if self.is_deleted(id) {
                return Ok(None);
            }
            self.inner.find_by_id(id).await
        })
    }

    fn replace_password_hash(
        &self,
        id: UserId,
        expected: String,
        new_hash: String,
    ) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        self.inner.replace_password_hash(id, expected, new_hash)
    }

    fn update(
        &self,
        id: UserId,
        change: keel_domain::UserChange,
        now: time::OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        self.inner.update(id, change, now)
    }

    fn change_email(
        &self,
        id: UserId,
        email: Email,
        now: time::OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        self.inner.change_email(id, email, now)
    }

    fn delete(&self, id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        self.inner.delete(id)
    }

    fn list(
        &self,
        query: keel_domain::UserQuery,
    ) -> BoxFuture<'_, Result<Vec<UserRecord>, RepositoryError>> {
        self.inner.list(query)
    }
}

struct Fixture {
    auth: Auth,
    accounts: Accounts,
    users: Arc<Users>,
    clock: Arc<ManualClock>,
    revoked: Arc<Mutex<Vec<Vec<SessionId>>>>,
}

impl Fixture {
    fn new() -> Self {
        Self::with_config(SessionConfig::default())
    }

    fn with_config(config: SessionConfig) -> Self {
        let store = Arc::new(MemorySessionStore::new(config.clone()));
        Self::with_store(config, store)
    }

    fn with_store(config: SessionConfig, store: Arc<dyn SessionStore>) -> Self {
        let users = Arc::new(Users::default());
        let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
        let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
        let keys = KeyRing::generate_ephemeral(&JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            ..JwtConfig::default()
        })
        .unwrap();
        let auth = Auth::new(
            users.clone(),
            hasher.clone(),
            store,
            keys,
            clock.clone(),
            config,
            RefreshSecret::random(),
        );
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&revoked);
        auth.add_revocation_listener(Arc::new(move |ids: &[SessionId]| {
            record.lock().unwrap().push(ids.to_vec());
        }));
        let accounts = Accounts::new(users.clone(), hasher, clock.clone());
        Self {
            auth,
            accounts,
            users,
            clock,
            revoked,
        }
    }

    async fn register(&self, email: &str) -> User {
        self.accounts
            .register(Registration {
                email: email.into(),
                password: PASSWORD.into(),
                display_name: None,
            })
            .await
            .unwrap()
    }

    async fn login(&self, email: &str) -> SignedIn {
        self.auth
            .login(email, PASSWORD, ClientInfo::default())
            .await
            .unwrap()
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(time::Duration::try_from(by).unwrap());
    }

    fn revocations(&self) -> Vec<Vec<SessionId>> {
        self.revoked.lock().unwrap().clone()
    }
}

fn refresh_token(signed_in: &SignedIn) -> String {
    signed_in.tokens.refresh_token.expose_secret().to_owned()
}

#[tokio::test]
async fn raised_argon2_parameters_rehash_a_password_at_its_next_login() {
    let f = Fixture::new();
    // An account whose hash was made with cheaper parameters (an earlier configuration).
    let cheap = PasswordHasher::new(&PasswordHashingConfig {
        memory_kib: 8 * 1024,
        iterations: 1,
        ..PasswordHashingConfig::default()
    });
    let accounts = Accounts::new(f.users.clone(), cheap, f.clock.clone());
    let user = accounts
        .register(Registration {
            email: "ada@example.com".into(),
            password: PASSWORD.into(),
            display_name: None,
        })
        .await
        .unwrap();
    let before = f.users.find_by_id(user.id).await.unwrap().unwrap();
    assert!(before.password_hash.contains("m=8192,t=1,p=1"));

    // A wrong password changes nothing; the right one upgrades the hash, transparently.
    let wrong = f
        .auth
        .login("ada@example.com", "wrong password", ClientInfo::default())
        .await;
    assert!(
        matches!(wrong, Err(AuthError::InvalidCredentials)),
        "{wrong:?}"
    );
    assert_eq!(f.users.find_by_id(user.id).await.unwrap().unwrap(), before);
    f.login("ada@example.com").await;
    let after = f.users.find_by_id(user.id).await.unwrap().unwrap();
    assert!(
        after.password_hash.contains("m=19456,t=2,p=1"),
        "{}",
        after.password_hash
    );
    assert_eq!(after.user, before.user, "nothing the user sees changed");
    // And the upgraded hash still logs in.
    f.login("ada@example.com").await;
}

#[tokio::test]
async fn a_disabled_account_is_refused_only_after_its_password_and_loses_every_session() {
    let f = Fixture::new();
    let user = f.register("ada@example.com").await;
    let first = f.login("ada@example.com").await;
    let second = f.login("ada@example.com").await;

    let revoked = f.auth.disable_user(user.id, None).await.unwrap();
    assert_eq!(revoked.len(), 2);
    assert_eq!(
        f.revocations().len(),
        1,
        "listeners told once, of both sessions"
    );
    for signed_in in [&first, &second] {
        let bearer = f
            .auth
            .authenticate_bearer(&signed_in.tokens.access_token)
            .await;
        assert!(matches!(bearer, Err(AuthError::Unauthorized)), "{bearer:?}");
        let refresh = f.auth.refresh(&refresh_token(signed_in)).await;
        assert!(
            matches!(refresh, Err(AuthError::InvalidToken)),
            "{refresh:?}"
        );
    }
    // The right password learns that the account is disabled; a wrong one learns nothing.
    let right = f
        .auth
        .login("ada@example.com", PASSWORD, ClientInfo::default())
        .await;
    assert!(
        matches!(right, Err(AuthError::AccountDisabled)),
        "{right:?}"
    );
    let wrong = f
        .auth
        .login("ada@example.com", "wrong password", ClientInfo::default())
        .await;
    assert!(
        matches!(wrong, Err(AuthError::InvalidCredentials)),
        "{wrong:?}"
    );
    // Disabling again keeps the first time; enabling lets the account in again.
    let disabled_at = f
        .users
        .find_by_id(user.id)
        .await
        .unwrap()
        .unwrap()
        .disabled_at;
    f.advance(Duration::from_secs(60));
    f.auth.disable_user(user.id, None).await.unwrap();
    let again = f.users.find_by_id(user.id).await.unwrap().unwrap();
    assert_eq!(again.disabled_at, disabled_at);
    f.auth.enable_user(user.id, None).await.unwrap();
    f.login("ada@example.com").await;
    // An unknown account is not found.
    let unknown = f.auth.disable_user(UserId::generate(), None).await;
    assert!(matches!(unknown, Err(AuthError::NotFound)), "{unknown:?}");
}

#[tokio::test]
async fn login_creates_a_session_and_tokens_that_authenticate() {
    let f = Fixture::new();
    let user = f.register("ada@example.com").await;
    let client = ClientInfo {
        user_agent: Some("test-agent/1".into()),
        ip: Some("192.0.2.1".parse().unwrap()),
    };
    let signed_in = f
        .auth
        .login("ada@example.com", PASSWORD, client)
        .await
        .unwrap();
    assert_eq!(signed_in.user, user);
    assert_eq!(signed_in.session.user_id, user.id);
    assert_eq!(
        signed_in.session.user_agent.as_deref(),
        Some("test-agent/1")
    );
    assert_eq!(signed_in.session.ip, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(signed_in.tokens.token_type, "Bearer");
    assert_eq!(signed_in.tokens.expires_in, 900);

    // 256 random bits, base64url without padding, and the store keeps only the hash.
    let token = refresh_token(&signed_in);
    assert_eq!(token.len(), 43);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let stored = signed_in.session.refresh.as_ref().unwrap();
    assert_eq!(stored.current, RefreshHash::of_token(&token));

    let principal = f
        .auth
        .authenticate_bearer(&signed_in.tokens.access_token)
        .await
        .unwrap();
    assert_eq!(principal.user_id, user.id);
    assert_eq!(principal.session.id, signed_in.session.id);
    assert!(f.revocations().is_empty());
}

#[tokio::test]
async fn emails_match_case_insensitively_at_login() {
    let f = Fixture::new();
    let user = f.register("Ada@Example.com").await;
    assert_eq!(f.login("ada@EXAMPLE.com").await.user.id, user.id);
}

#[tokio::test]
async fn wrong_password_unknown_email_and_malformed_email_are_the_same_error() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    for (email, password) in [
        ("ada@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
        ("not an email", PASSWORD),
        ("", ""),
    ] {
        let result = f.auth.login(email, password, ClientInfo::default()).await;
        assert!(
            matches!(result, Err(AuthError::InvalidCredentials)),
            "{email}: {result:?}"
        );
    }
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let f = Fixture::new();
    let user = f.register("ada@example.com").await;
    let first = f.login("ada@example.com").await;
    f.advance(Duration::from_secs(5));

    let second = f.auth.refresh(&refresh_token(&first)).await.unwrap();
    assert_eq!(second.user, user);
    assert_eq!(second.session.id, first.session.id);
    assert_ne!(refresh_token(&second), refresh_token(&first));
    assert_ne!(second.tokens.access_token, first.tokens.access_token);
    assert_eq!(second.session.refresh.as_ref().unwrap().generation, 1);
    assert_eq!(
        second.session.refresh.as_ref().unwrap().current,
        RefreshHash::of_token(&refresh_token(&second))
    );
    let principal = f
        .auth
        .authenticate_bearer(&second.tokens.access_token)
        .await
        .unwrap();
    assert_eq!(principal.session.id, first.session.id);

    // And the new one rotates in turn.
    let third = f.auth.refresh(&refresh_token(&second)).await.unwrap();
    assert_eq!(third.session.refresh.as_ref().unwrap().generation, 2);
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_session_and_tells_the_listeners() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    let first = f.login("ada@example.com").await;
    let second = f.auth.refresh(&refresh_token(&first)).await.unwrap();
    // Past the grace window (10 s by default), a second use is reuse.
    f.advance(Duration::from_secs(10));

    let reused = f.auth.refresh(&refresh_token(&first)).await;
    assert!(matches!(reused, Err(AuthError::TokenReused)), "{reused:?}");
    assert_eq!(f.revocations(), vec![vec![first.session.id]]);

    // The whole session is dead: its access tokens and its current refresh token too.
    let bearer = f
        .auth
        .authenticate_bearer(&second.tokens.access_token)
        .await;
    assert!(matches!(bearer, Err(AuthError::Unauthorized)), "{bearer:?}");
    let refresh = f.auth.refresh(&refresh_token(&second)).await;
    assert!(
        matches!(refresh, Err(AuthError::InvalidToken)),
        "{refresh:?}"
    );
}

#[tokio::test]
async fn a_replay_within_the_grace_window_gets_the_same_successor() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    let first = f.login("ada@example.com").await;
    let second = f.auth.refresh(&refresh_token(&first)).await.unwrap();
    f.advance(Duration::from_millis(9_999));

    // A racing tab, or a retry after a lost answer: the winner's refresh token again.
    let replay = f.auth.refresh(&refresh_token(&first)).await.unwrap();
    assert_eq!(refresh_token(&replay), refresh_token(&second));
    assert_eq!(replay.session.id, second.session.id);
    assert_ne!(replay.tokens.access_token, second.tokens.access_token);
    assert!(f.revocations().is_empty());
    f.auth
        .authenticate_bearer(&replay.tokens.access_token)
        .await
        .unwrap();
    // The successor rotates once, whoever presents it.
    let third = f.auth.refresh(&refresh_token(&second)).await.unwrap();
    assert_eq!(third.session.refresh.as_ref().unwrap().generation, 2);
}

#[tokio::test]
async fn a_token_two_rotations_old_is_reuse_even_inside_the_grace() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    let first = f.login("ada@example.com").await;
    let second = f.auth.refresh(&refresh_token(&first)).await.unwrap();
    f.auth.refresh(&refresh_token(&second)).await.unwrap();

    let reused = f.auth.refresh(&refresh_token(&first)).await;
    assert!(matches!(reused, Err(AuthError::TokenReused)), "{reused:?}");
    assert_eq!(f.revocations(), vec![vec![first.session.id]]);
}

#[tokio::test]
async fn without_a_grace_window_the_first_replay_is_reuse() {
    let f = Fixture::with_config(SessionConfig {
        refresh_grace: Duration::ZERO,
        ..SessionConfig::default()
    });
    f.register("ada@example.com").await;
    let first = f.login("ada@example.com").await;
    f.auth.refresh(&refresh_token(&first)).await.unwrap();

    let reused = f.auth.refresh(&refresh_token(&first)).await;
    assert!(matches!(reused, Err(AuthError::TokenReused)), "{reused:?}");
}

#[tokio::test]
async fn a_replay_whose_successor_another_secret_derived_is_refused_without_revoking() {
    let store: Arc<dyn SessionStore> = Arc::new(MemorySessionStore::new(SessionConfig::default()));
    let f = Fixture::with_store(SessionConfig::default(), Arc::clone(&store));
    // Another instance on the same stores whose secret differs (a misconfiguration).
    let other = Auth::new(
        f.users.clone(),
        PasswordHasher::new(&PasswordHashingConfig::default()),
        store,
        KeyRing::generate_ephemeral(&JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            ..JwtConfig::default()
        })
        .unwrap(),
        f.clock.clone(),
        SessionConfig::default(),
        RefreshSecret::random(),
    );
    f.register("ada@example.com").await;
    let first = f.login("ada@example.com").await;
    f.auth.refresh(&refresh_token(&first)).await.unwrap();

    let replay = other.refresh(&refresh_token(&first)).await;
    assert!(matches!(replay, Err(AuthError::InvalidToken)), "{replay:?}");
    assert!(f.revocations().is_empty());
    f.auth
        .authenticate_bearer(&first.tokens.access_token)
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_empty_and_oversized_refresh_tokens_are_invalid() {
    let f = Fixture::new();
    for token in [
        String::new(),
        "x".repeat(10_000),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
    ] {
        let result = f.auth.refresh(&token).await;
        assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
    }
}

#[tokio::test]
async fn refreshing_for_a_deleted_user_is_invalid_and_ends_the_session() {
    let f = Fixture::new();
    let user = f.register("ada@example.com").await;
    let signed_in = f.login("ada@example.com").await;
    f.users.delete(user.id);

    let result = f.auth.refresh(&refresh_token(&signed_in)).await;
    assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
    assert_eq!(f.revocations(), vec![vec![signed_in.session.id]]);
    assert!(f.auth.list_sessions(user.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn logout_ends_the_access_token_at_once_although_the_jwt_is_still_cached() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    let signed_in = f.login("ada@example.com").await;
    let token = &signed_in.tokens.access_token;
    let principal = f.auth.authenticate_bearer(token).await.unwrap();

    f.auth.logout(&principal).await.unwrap();
    assert_eq!(f.revocations(), vec![vec![signed_in.session.id]]);

    // The signature check alone would still pass (and is answered from the cache) ...
    let now = f.clock.now();
    assert!(f.auth.key_ring().cache().get(token, now).is_some());
    assert!(f.auth.key_ring().verify_access_cached(token, now).is_ok());
    // ... but the session check runs every time.
    let result = f.auth.authenticate_bearer(token).await;
    assert!(matches!(result, Err(AuthError::Unauthorized)), "{result:?}");
    let result = f.auth.authenticate_session(signed_in.session.id).await;
    assert!(matches!(result, Err(AuthError::Unauthorized)), "{result:?}");
    let result = f.auth.refresh(&refresh_token(&signed_in)).await;
    assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_and_no_other() {
    let f = Fixture::new();
    let ada = f.register("ada@example.com").await;
    f.register("bob@example.com").await;
    let phone = f.login("ada@example.com").await;
    let laptop = f.login("ada@example.com").await;
    let bob = f.login("bob@example.com").await;

    let revoked: HashSet<SessionId> = f
        .auth
        .logout_all(ada.id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        revoked,
        HashSet::from([phone.session.id, laptop.session.id])
    );
    let told: HashSet<SessionId> = f.revocations().concat().into_iter().collect();
    assert_eq!(told, revoked);
    for signed_in in [&phone, &laptop] {
        let result = f
            .auth
            .authenticate_bearer(&signed_in.tokens.access_token)
            .await;
        assert!(matches!(result, Err(AuthError::Unauthorized)), "{result:?}");
    }
    f.auth
        .authenticate_bearer(&bob.tokens.access_token)
        .await
        .unwrap();

    // Nothing left: an empty list, and nobody is bothered.
    assert!(f.auth.logout_all(ada.id).await.unwrap().is_empty());
    assert_eq!(f.revocations().len(), 1);
}

#[tokio::test]
async fn sessions_are_listed_newest_first_and_only_the_callers() {
    let f = Fixture::new();
    let ada = f.register("ada@example.com").await;
    f.register("bob@example.com").await;
    let older = f.login("ada@example.com").await;
    f.advance(Duration::from_secs(1));
    let newer = f.login("ada@example.com").await;
    f.login("bob@example.com").await;

    let ids: Vec<SessionId> = f
        .auth
        .list_sessions(ada.id)
        .await
        .unwrap()
        .into_iter()
        .map(|session| session.id)
        .collect();
    assert_eq!(ids, [newer.session.id, older.session.id]);
}

#[tokio::test]
async fn revoking_someone_elses_session_is_not_found_and_changes_nothing() {
    let f = Fixture::new();
    let ada = f.register("ada@example.com").await;
    f.register("bob@example.com").await;
    let ada_session = f.login("ada@example.com").await;
    let bob_session = f.login("bob@example.com").await;

    let result = f.auth.revoke_session(ada.id, bob_session.session.id).await;
    assert!(matches!(result, Err(AuthError::NotFound)), "{result:?}");
    f.auth
        .authenticate_bearer(&bob_session.tokens.access_token)
        .await
        .unwrap();
    let result = f.auth.revoke_session(ada.id, SessionId::generate()).await;
    assert!(matches!(result, Err(AuthError::NotFound)), "{result:?}");
    assert!(f.revocations().is_empty());

    f.auth
        .revoke_session(ada.id, ada_session.session.id)
        .await
        .unwrap();
    assert_eq!(f.revocations(), vec![vec![ada_session.session.id]]);
    let result = f
        .auth
        .authenticate_bearer(&ada_session.tokens.access_token)
        .await;
    assert!(matches!(result, Err(AuthError::Unauthorized)), "{result:?}");
    // Twice is not found: it is gone.
    let result = f.auth.revoke_session(ada.id, ada_session.session.id).await;
    assert!(matches!(result, Err(AuthError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn an_idle_expired_session_is_unauthorized_while_its_jwt_is_still_valid() {
    let f = Fixture::with_config(SessionConfig {
        idle_ttl: Duration::from_secs(60),
        ..SessionConfig::default()
    });
    f.register("ada@example.com").await;
    let signed_in = f.login("ada@example.com").await;
    f.advance(Duration::from_secs(61));

    let result = f
        .auth
        .authenticate_bearer(&signed_in.tokens.access_token)
        .await;
    assert!(matches!(result, Err(AuthError::Unauthorized)), "{result:?}");
    let result = f.auth.authenticate_session(signed_in.session.id).await;
    assert!(matches!(result, Err(AuthError::Unauthorized)), "{result:?}");
    let result = f.auth.refresh(&refresh_token(&signed_in)).await;
    assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
}

#[tokio::test]
async fn an_expired_access_token_is_token_expired_and_refresh_gives_a_new_one() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    let signed_in = f.login("ada@example.com").await;
    // 900 s of lifetime plus 30 s of leeway.
    f.advance(Duration::from_secs(931));

    let result = f
        .auth
        .authenticate_bearer(&signed_in.tokens.access_token)
        .await;
    assert!(matches!(result, Err(AuthError::TokenExpired)), "{result:?}");
    let refreshed = f.auth.refresh(&refresh_token(&signed_in)).await.unwrap();
    f.auth
        .authenticate_bearer(&refreshed.tokens.access_token)
        .await
        .unwrap();
}

#[tokio::test]
async fn garbage_and_foreign_tokens_are_invalid() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    let signed_in = f.login("ada@example.com").await;
    let other = Fixture::new();
    let foreign = other
        .auth
        .key_ring()
        .issue_access(signed_in.user.id, signed_in.session.id, f.clock.now())
        .unwrap();
    for token in ["", "garbage", "a.b.c", foreign.token.as_str()] {
        let result = f.auth.authenticate_bearer(token).await;
        assert!(
            matches!(result, Err(AuthError::InvalidToken)),
            "{token}: {result:?}"
        );
    }
}

#[tokio::test]
async fn a_token_whose_subject_does_not_own_the_session_is_invalid() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    let signed_in = f.login("ada@example.com").await;
    let forged = f
        .auth
        .key_ring()
        .issue_access(UserId::generate(), signed_in.session.id, f.clock.now())
        .unwrap();
    let result = f.auth.authenticate_bearer(&forged.token).await;
    assert!(matches!(result, Err(AuthError::InvalidToken)), "{result:?}");
}

#[tokio::test]
async fn cookie_sessions_authenticate_against_the_registry() {
    let f = Fixture::new();
    let user = f.register("ada@example.com").await;
    let signed_in = f.login("ada@example.com").await;
    let principal = f
        .auth
        .authenticate_session(signed_in.session.id)
        .await
        .unwrap();
    assert_eq!(principal.user_id, user.id);
    let result = f.auth.authenticate_session(SessionId::generate()).await;
    assert!(matches!(result, Err(AuthError::Unauthorized)), "{result:?}");
}

#[tokio::test]
async fn me_returns_the_user_and_the_session_until_the_user_is_gone() {
    let f = Fixture::new();
    let user = f.register("ada@example.com").await;
    let signed_in = f.login("ada@example.com").await;
    let principal = f
        .auth
        .authenticate_bearer(&signed_in.tokens.access_token)
        .await
        .unwrap();
    let (me, session) = f.auth.me(&principal).await.unwrap();
    assert_eq!(me, user);
    assert_eq!(session.id, signed_in.session.id);

    f.users.delete(user.id);
    let result = f.auth.me(&principal).await;
    assert!(matches!(result, Err(AuthError::Unauthorized)), "{result:?}");
}

#[tokio::test]
async fn a_session_store_that_cannot_answer_fails_closed_as_unavailable() {
    let f = Fixture::with_store(SessionConfig::default(), Arc::new(DownStore));
    let user = f.register("ada@example.com").await;
    let now = f.clock.now();
    let session_id = SessionId::generate();
    let token = f
        .auth
        .key_ring()
        .issue_access(user.id, session_id, now)
        .unwrap()
        .token;
    let principal = Principal {
        user_id: user.id,
        session: Session::new(user.id, now, &SessionConfig::default()),
    };

    let results: Vec<(&str, Result<(), AuthError>)> = vec![
        ("bearer", f.auth.authenticate_bearer(&token).await.map(drop)),
        (
            "cookie",
            f.auth.authenticate_session(session_id).await.map(drop),
        ),
        (
            "login",
            f.auth
                .login("ada@example.com", PASSWORD, ClientInfo::default())
                .await
                .map(drop),
        ),
        (
            "refresh",
            f.auth
                .refresh("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                .await
                .map(drop),
        ),
        ("logout", f.auth.logout(&principal).await),
        ("logout_all", f.auth.logout_all(user.id).await.map(drop)),
        ("list", f.auth.list_sessions(user.id).await.map(drop)),
        ("revoke", f.auth.revoke_session(user.id, session_id).await),
    ];
    for (case, result) in results {
        let Err(AuthError::Unavailable(source)) = result else {
            panic!("{case}: {result:?}");
        };
        assert!(
            source.to_string().contains("unavailable"),
            "{case}: {source}"
        );
        assert_eq!(
            source.source().unwrap().to_string(),
            "connection refused",
            "{case}"
        );
    }
    // Nothing was revoked, so nobody was told.
    assert!(f.revocations().is_empty());
}

#[test]
fn errors_map_as_documented() {
    let corrupt = AuthError::from(SessionError::Corrupt("bad json".into()));
    let AuthError::Unavailable(source) = corrupt else {
        panic!("{corrupt:?}")
    };
    assert!(source.to_string().contains("bad json"));
    assert!(matches!(
        AuthError::from(PasswordError::Busy),
        AuthError::Busy
    ));
    assert!(matches!(
        AuthError::from(JwtError::Expired),
        AuthError::TokenExpired
    ));
    assert!(matches!(
        AuthError::from(RepositoryError::unavailable("down")),
        AuthError::Unavailable(_)
    ));
}

#[test]
fn tokens_never_show_in_debug_output() {
    let tokens = Tokens {
        access_token: "eyJhbGciOiJIUzI1NiJ9.secret.sig".into(),
        token_type: TOKEN_TYPE,
        expires_in: 900,
        refresh_token: SecretString::from("refresh-secret"),
    };
    let debug = format!("{tokens:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(debug.contains("900"));
}

#[tokio::test]
async fn listeners_added_after_sharing_are_told_too() {
    let f = Fixture::new();
    f.register("ada@example.com").await;
    let shared = f.auth.clone();
    let late = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&late);
    shared.add_revocation_listener(Arc::new(move |ids: &[SessionId]| {
        record.lock().unwrap().extend_from_slice(ids);
    }));
    let signed_in = f.login("ada@example.com").await;
    let principal = f
        .auth
        .authenticate_session(signed_in.session.id)
        .await
        .unwrap();
    f.auth.logout(&principal).await.unwrap();
    assert_eq!(*late.lock().unwrap(), [signed_in.session.id]);
    assert_eq!(f.revocations(), vec![vec![signed_in.session.id]]);
}

#[test]
fn the_service_and_its_futures_can_cross_threads() {
    // The realtime layer and the edge spawn these on multi-threaded runtimes.
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let f = Fixture::new();
    send_sync(&f.auth);
    let principal = Principal {
        user_id: UserId::generate(),
        session: Session::new(UserId::generate(), f.clock.now(), &SessionConfig::default()),
    };
    send(f.auth.login("a@example.com", "pw", ClientInfo::default()));
    send(f.auth.refresh("token"));
    send(f.auth.authenticate_bearer("token"));
    send(f.auth.authenticate_session(SessionId::generate()));
    send(f.auth.me(&principal));
    send(f.auth.logout(&principal));
    send(f.auth.logout_all(principal.user_id));
    send(f.auth.list_sessions(principal.user_id));
    send(
        f.auth
            .revoke_session(principal.user_id, SessionId::generate()),
    );
}
