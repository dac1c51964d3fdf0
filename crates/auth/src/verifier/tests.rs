//! Tests of the verifier over the memory registry, with a clock that moves on demand.

use keel_domain::{ManualClock, UserId};
use keel_session::{MemorySessionStore, RefreshHash, Session, SessionConfig};
use time::macros::datetime;

use super::*;
use crate::jwt::{JwtAlgorithm, JwtConfig};
use crate::test_support::DownStore;

struct Fixture {
    /// The issuer's ring (it signs).
    keys: KeyRing,
    store: Arc<MemorySessionStore>,
    clock: Arc<ManualClock>,
    verifier: Verifier,
}

impl Fixture {
    fn new() -> Self {
        let keys = KeyRing::generate_ephemeral(&JwtConfig::default()).unwrap();
        Self::with_verifying_ring(keys.clone(), keys)
    }

    /// A verifier whose ring is `verifying`, while `signing` issues the tokens.
    fn with_verifying_ring(signing: KeyRing, verifying: KeyRing) -> Self {
        let store = Arc::new(MemorySessionStore::new(SessionConfig::default()));
        let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
        let verifier = Verifier::new(verifying, store.clone(), clock.clone());
        Self {
            keys: signing,
            store,
            clock,
            verifier,
        }
    }

    /// A live session of a new user, and an access token for it.
    async fn session(&self) -> (Session, String) {
        let now = self.clock.now();
        let session = Session::new(UserId::generate(), now, &SessionConfig::default());
        let session = self
            .store
            .create(
                session,
                RefreshHash::of_token(&SessionId::generate().to_string()),
            )
            .await
            .unwrap();
        let token = self
            .keys
            .issue_access(session.user_id, session.id, now)
            .unwrap()
            .token;
        (session, token)
    }
}

#[tokio::test]
async fn a_valid_token_of_a_live_session_gives_its_principal() {
    let fixture = Fixture::new();
    let (session, token) = fixture.session().await;
    let principal = fixture.verifier.verify_bearer(&token).await.unwrap();
    assert_eq!(principal.user_id, session.user_id);
    assert_eq!(principal.session.id, session.id);
    // Answered again (now from the verification cache), still through the registry.
    let again = fixture.verifier.verify_bearer(&token).await.unwrap();
    assert_eq!(again.session.id, session.id);

    let by_session = fixture.verifier.verify_session(session.id).await.unwrap();
    assert_eq!(by_session.user_id, session.user_id);
}

#[tokio::test]
async fn a_revoked_session_is_unauthorized_at_once() {
    let fixture = Fixture::new();
    let (session, token) = fixture.session().await;
    fixture.verifier.verify_bearer(&token).await.unwrap();
    assert!(fixture.store.revoke(session.id).await.unwrap());
    assert!(matches!(
        fixture.verifier.verify_bearer(&token).await,
        Err(AuthError::Unauthorized)
    ));
    assert!(matches!(
        fixture.verifier.verify_session(session.id).await,
        Err(AuthError::Unauthorized)
    ));
    // A token for a session the registry never knew.
    let unknown = fixture
        .keys
        .issue_access(
            UserId::generate(),
            SessionId::generate(),
            fixture.clock.now(),
        )
        .unwrap()
        .token;
    assert!(matches!(
        fixture.verifier.verify_bearer(&unknown).await,
        Err(AuthError::Unauthorized)
    ));
}

#[tokio::test]
async fn bad_expired_and_foreign_tokens_get_the_errors_of_auth() {
    let fixture = Fixture::new();
    let (session, token) = fixture.session().await;
    for garbage in ["", "garbage", "a.b.c"] {
        assert!(matches!(
            fixture.verifier.verify_bearer(garbage).await,
            Err(AuthError::InvalidToken)
        ));
    }
    // Signed by another ring (another issuer, another key).
    let other = KeyRing::generate_ephemeral(&JwtConfig {
        issuer: "https://other.example".into(),
        ..JwtConfig::default()
    })
    .unwrap();
    let foreign = other
        .issue_access(session.user_id, session.id, fixture.clock.now())
        .unwrap()
        .token;
    assert!(matches!(
        fixture.verifier.verify_bearer(&foreign).await,
        Err(AuthError::InvalidToken)
    ));
    // A token whose subject does not own the session it names.
    let stolen = fixture
        .keys
        .issue_access(UserId::generate(), session.id, fixture.clock.now())
        .unwrap()
        .token;
    assert!(matches!(
        fixture.verifier.verify_bearer(&stolen).await,
        Err(AuthError::InvalidToken)
    ));
    // Past `exp` plus the leeway.
    fixture.clock.advance(time::Duration::hours(1));
    assert!(matches!(
        fixture.verifier.verify_bearer(&token).await,
        Err(AuthError::TokenExpired)
    ));
}

#[tokio::test]
async fn a_registry_that_cannot_answer_fails_closed() {
    let keys = KeyRing::generate_ephemeral(&JwtConfig::default()).unwrap();
    let clock = Arc::new(ManualClock::new(datetime!(2030-01-01 00:00 UTC)));
    let verifier = Verifier::new(keys.clone(), Arc::new(DownStore), clock.clone());
    let token = keys
        .issue_access(UserId::generate(), SessionId::generate(), clock.now())
        .unwrap()
        .token;
    assert!(matches!(
        verifier.verify_bearer(&token).await,
        Err(AuthError::Unavailable(_))
    ));
    assert!(matches!(
        verifier.verify_session(SessionId::generate()).await,
        Err(AuthError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_verifier_on_the_published_jwks_verifies_the_issuers_tokens() {
    for algorithm in [JwtAlgorithm::EdDSA, JwtAlgorithm::ES256] {
        let config = JwtConfig {
            algorithm,
            ..JwtConfig::default()
        };
        let signing = KeyRing::generate_ephemeral(&config).unwrap();
        let verifying = KeyRing::from_jwks(&signing.jwks(), &config).unwrap();
        let fixture = Fixture::with_verifying_ring(signing, verifying);
        let (session, token) = fixture.session().await;

        let principal = fixture.verifier.verify_bearer(&token).await.unwrap();
        assert_eq!(principal.user_id, session.user_id);
        assert!(matches!(
            fixture.verifier.key_ring().issue_access(
                session.user_id,
                session.id,
                fixture.clock.now()
            ),
            Err(crate::JwtError::VerifyOnly)
        ));

        fixture.store.revoke(session.id).await.unwrap();
        assert!(matches!(
            fixture.verifier.verify_bearer(&token).await,
            Err(AuthError::Unauthorized)
        ));
    }
}
