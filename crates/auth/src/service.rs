//! The sign-in use cases over the ports: login, refresh, bearer and cookie authentication,
//! logout, session listing and revocation.
//!
//! [`Auth`] ties the user store, the password hasher, the session registry, the key ring and
//! the clock together. Every request is checked against the registry, so a revoked session stops
//! working at once, whatever its access tokens say; and when the registry cannot answer,
//! authentication fails closed ([`AuthError::Unavailable`], never [`AuthError::Unauthorized`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_domain::{
    AuditEvent, AuditKind, AuditLog, Clock, Email, SessionId, User, UserChange, UserId, UserRecord,
    UserRepository,
};
use keel_session::{RefreshHash, RotateOutcome, Session, SessionConfig, SessionStore};
use rand::RngCore as _;
use secrecy::SecretString;

use crate::jwt::KeyRing;
use crate::password::{PasswordError, PasswordHasher};
use crate::refresh::RefreshSecret;
use crate::verifier::Verifier;

/// The `token_type` of every token response.
pub const TOKEN_TYPE: &str = "Bearer";

/// The bytes of randomness in a refresh token.
const REFRESH_TOKEN_BYTES: usize = 32;

/// Longest refresh token looked up. Keel's are 43 characters; anything much longer is not one,
/// and is refused before it is hashed or sent to the store.
const MAX_REFRESH_TOKEN_BYTES: usize = 256;

/// Where a login comes from, as the edge saw it; kept with the session for the session list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `User-Agent` header (cut to 256 characters when stored).
    pub user_agent: Option<String>,
    /// The client's IP address (after the edge's trusted-proxy handling).
    pub ip: Option<IpAddr>,
}

impl ClientInfo {
    /// An audit event of `kind` about `user_id` at `at`, with this client's address and agent.
    pub fn event(&self, kind: AuditKind, user_id: UserId, at: time::OffsetDateTime) -> AuditEvent {
        let mut event = AuditEvent::new(kind, Some(user_id), at);
        event.ip = self.ip;
        event.user_agent = self
            .user_agent
            .as_ref()
            .map(|agent| agent.chars().take(256).collect());
        event
    }
}

/// The tokens of a login or refresh, in the shape of the contract's `Tokens` (the edge adds
/// `user` and `session`).
///
/// `Debug` shows neither token.
#[derive(Clone)]
pub struct Tokens {
    /// The access token (a JWT), for `Authorization: Bearer`.
    pub access_token: String,
    /// Always [`TOKEN_TYPE`] (`"Bearer"`).
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The refresh token: 256 random bits, base64url without padding. Only its hash is stored;
    /// this is the one time it exists in clear on the server.
    pub refresh_token: SecretString,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"[REDACTED]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"[REDACTED]")
            .finish()
    }
}

/// The result of a login or refresh: the user, their session and fresh tokens.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The signed-in user.
    pub user: User,
    /// The session, as stored.
    pub session: Session,
    /// The new tokens.
    pub tokens: Tokens,
}

/// Who made an authenticated request: the user and the (live) session the credentials belong
/// to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user_id: UserId,
    /// The session, as the registry returned it for this request.
    pub session: Session,
}

/// Told when sessions are revoked (logout, logout everywhere, revoking one session, refresh
/// token reuse), so that whatever holds them open (realtime sockets) can let go at once.
///
/// Called synchronously on the request's task after the registry has revoked the sessions: it
/// must return quickly (send on a channel, set a flag), never block or await I/O. Any
/// `Fn(&[SessionId]) + Send + Sync` closure is a listener.
pub trait RevocationListener: Send + Sync + 'static {
    /// `sessions` have just been revoked (some may have been gone already).
    fn revoked(&self, sessions: &[SessionId]);
}

impl<F> RevocationListener for F
where
    F: Fn(&[SessionId]) + Send + Sync + 'static,
{
    fn revoked(&self, sessions: &[SessionId]) {
        self(sessions);
    }
}

/// The authentication use cases. Cheap to clone: clones share everything, listeners included.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    users: Arc<dyn UserRepository>,
    hasher: PasswordHasher,
    sessions: Arc<dyn SessionStore>,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    config: SessionConfig,
    refresh_secret: RefreshSecret,
    listeners: RwLock<Vec<Arc<dyn RevocationListener>>>,
    /// Where logins, logouts, revocations and token reuse are recorded, once set.
    audit: OnceLock<Arc<dyn AuditLog>>,
    /// Request authentication, over the same ring, store and clock.
    verifier: Verifier,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("hasher", &self.inner.hasher)
            .field("keys", &self.inner.keys)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The use cases over these ports. `config` must be the one the session store was built
    /// with: it sets the lifetimes of new sessions and the refresh grace. `refresh_secret`
    /// derives refresh-token successors; every instance on the same registry needs the same.
    pub fn new(
        users: Arc<dyn UserRepository>,
        hasher: PasswordHasher,
        sessions: Arc<dyn SessionStore>,
        keys: KeyRing,
        clock: Arc<dyn Clock>,
        config: SessionConfig,
        refresh_secret: RefreshSecret,
    ) -> Self {
        let verifier = Verifier::new(keys.clone(), Arc::clone(&sessions), Arc::clone(&clock));
        Self {
            inner: Arc::new(Inner {
                users,
                hasher,
                sessions,
                keys,
                clock,
                config,
                refresh_secret,
                listeners: RwLock::new(Vec::new()),
                audit: OnceLock::new(),
                verifier,
            }),
        }
    }

    /// Registers a listener for revoked sessions. Listeners may be added at any time (also after
    /// the service is shared); each is called for every revocation from then on.
    pub fn add_revocation_listener(&self, listener: Arc<dyn RevocationListener>) {
        self.inner
            .listeners
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(listener);
    }

    /// Records logins (and failed ones), logouts, revocations and token reuse in `log` from
    /// now on. Set once at start-up; a second call is ignored.
    pub fn set_audit_log(&self, log: Arc<dyn AuditLog>) {
        let _ = self.inner.audit.set(log);
    }

    /// Appends `event` to the audit log, if one is set: after the change it records, retried
    /// once, and logged with its type and id when it cannot be written (the change stands).
    pub async fn audit(&self, event: AuditEvent) {
        let Some(log) = self.inner.audit.get() else {
            return;
        };
        let (kind, id) = (event.kind.as_str(), event.id);
        if let Err(first) = log.append(event.clone()).await {
            tracing::warn!(error = %first, kind, event_id = %id, "audit append failed; retrying");
            if let Err(error) = log.append(event).await {
                tracing::error!(%error, kind, event_id = %id, "an audit event was not recorded");
            }
        }
    }

    /// Appends the event an audited change handed back (its store keeps no audit log of its
    /// own); nothing when the store recorded it with the change.
    pub async fn record(&self, unrecorded: Option<AuditEvent>) {
        if let Some(event) = unrecorded {
            self.audit(event).await;
        }
    }

    /// The key ring that signs access tokens (for the JWKS endpoint).
    pub fn key_ring(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// The request authentication of this service (bearer token or session id), on its own.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The session settings.
    pub fn session_config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// Signs a user in: checks the password, creates a session with a fresh refresh token, and
    /// issues an access token.
    ///
    /// An unknown email, a malformed one and a wrong password all give
    /// [`AuthError::InvalidCredentials`], after the same argon2 work (a dummy hash is verified
    /// when there is no account), so neither the answer nor its timing tells whether an account
    /// exists.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<SignedIn, AuthError> {
        let inner = &self.inner;
        // Lenient: an account registered before invisible characters were refused still signs
        // in with the exact address it was registered with.
        let record = match Email::parse_lenient(email) {
            Ok(email) => inner.users.find_by_email(&email).await?,
            Err(_) => None,
        };
        let Some(record) = record else {
            inner.hasher.verify_dummy(password).await?;
            return Err(AuthError::InvalidCredentials);
        };
        match inner.hasher.verify(password, &record.password_hash).await {
            Ok(true) => {}
            Ok(false) => {
                let event = client
                    .event(
                        AuditKind::UserLoginFailed,
                        record.user.id,
                        inner.clock.now(),
                    )
                    .with("reason", "invalid_credentials");
                self.audit(event).await;
                return Err(AuthError::InvalidCredentials);
            }
            Err(PasswordError::MalformedHash | PasswordError::UnsupportedParams) => {
                // The stored hash is broken. Answering anything but "invalid credentials" would
                // tell the client that the account exists; the operator learns it from here.
                tracing::error!(
                    user_id = %record.user.id,
                    "login refused: the stored password hash cannot be verified"
                );
                return Err(AuthError::InvalidCredentials);
            }
            Err(other) => return Err(other.into()),
        }
        if record.disabled_at.is_some() {
            tracing::info!(user_id = %record.user.id, "login refused: the account is disabled");
            let event = client
                .event(
                    AuditKind::UserLoginFailed,
                    record.user.id,
                    inner.clock.now(),
                )
                .with("reason", "account_disabled");
            self.audit(event).await;
            return Err(AuthError::AccountDisabled);
        }
        // The hash this login verified, as the store has it once the rehash (if any) is done.
        let mut verified_hash = record.password_hash.clone();
        if inner.hasher.needs_rehash(&record.password_hash)
            && let Some(new_hash) = self.rehash(&record, password).await
        {
            verified_hash = new_hash;
        }

        let user = record.user;
        let now = inner.clock.now();
        let event = client.event(AuditKind::UserLogin, user.id, now);
        let mut session = Session::new(user.id, now, &inner.config);
        if let Some(user_agent) = client.user_agent {
            session = session.with_user_agent(user_agent);
        }
        if let Some(ip) = client.ip {
            session = session.with_ip(ip);
        }
        let refresh_token = new_refresh_token();
        let session = inner
            .sessions
            .create(session, RefreshHash::of_token(&refresh_token))
            .await?;
        // A reset, a password change, a disable or a deletion that ran while this login
        // hashed revoked every session there was, but not this one, made after: read the
        // account again, and let the session live only if it is the one that was verified.
        let still = inner.users.find_by_id(user.id).await?;
        if !still.is_some_and(|now| now.disabled_at.is_none() && now.password_hash == verified_hash)
        {
            inner.sessions.revoke(session.id).await?;
            self.notify(&[session.id]);
            tracing::info!(user_id = %user.id, "login refused: the account changed while it was checked");
            return Err(AuthError::InvalidCredentials);
        }
        let tokens = self.tokens(&session, refresh_token)?;
        self.audit(event.with("sessionId", session.id.to_string()))
            .await;
        tracing::info!(user_id = %user.id, session_id = %session.id, "signed in");
        Ok(SignedIn {
            user,
            session,
            tokens,
        })
    }

    /// Replaces a verified password's hash, made with other argon2 parameters than today's,
    /// by one at today's parameters. Best effort: the login goes on whatever happens, and the
    /// next login tries again.
    /// Returns the new hash when it was stored.
    async fn rehash(&self, record: &UserRecord, password: &str) -> Option<String> {
        let inner = &self.inner;
        let new_hash = match inner.hasher.hash(password).await {
            Ok(hash) => hash,
            Err(error) => {
                tracing::warn!(user_id = %record.user.id, %error, "could not rehash a password");
                return None;
            }
        };
        match inner
            .users
            .replace_password_hash(
                record.user.id,
                record.password_hash.clone(),
                new_hash.clone(),
            )
            .await
        {
            Ok(true) => {
                tracing::info!(user_id = %record.user.id, "password rehashed at today's parameters");
                Some(new_hash)
            }
            Ok(false) => {
                tracing::info!(user_id = %record.user.id, "password changed meanwhile; no rehash");
                None
            }
            Err(error) => {
                tracing::warn!(user_id = %record.user.id, %error, "could not store a rehashed password");
                None
            }
        }
    }

    /// Exchanges a refresh token for a new access token and a new refresh token; the presented
    /// one is spent (rotated atomically in the registry).
    ///
    /// - Within the grace window (`refresh_grace`, 10 s by default) of its rotation, the token
    ///   just spent is answered like the winning request: the same successor refresh token (it
    ///   is derived from the presented one, see [`RefreshSecret`]) and a new access token. So
    ///   racing tabs and a client retrying after a timeout or a 503 are never logged out.
    /// - A spent token presented again after the grace, or one spent before the last rotation,
    ///   revokes its whole session: [`AuthError::TokenReused`], and the revocation listeners
    ///   are told.
    /// - An unknown token, or one of an expired session: [`AuthError::InvalidToken`].
    /// - A session whose user no longer exists is revoked: [`AuthError::InvalidToken`].
    pub async fn refresh(&self, refresh_token: &str) -> Result<SignedIn, AuthError> {
        let inner = &self.inner;
        if refresh_token.is_empty() || refresh_token.len() > MAX_REFRESH_TOKEN_BYTES {
            return Err(AuthError::InvalidToken);
        }
        let now = inner.clock.now();
        let new_token = inner.refresh_secret.successor(refresh_token);
        let new_hash = RefreshHash::of_token(&new_token);
        let outcome = inner
            .sessions
            .rotate_refresh(RefreshHash::of_token(refresh_token), new_hash, now)
            .await?;
        let session = match outcome {
            RotateOutcome::Rotated(session) => session,
            RotateOutcome::Reused(id) => {
                tracing::warn!(
                    session_id = %id,
                    "refresh token reused; the session has been revoked"
                );
                self.notify(&[id]);
                let event = AuditEvent::new(AuditKind::TokenReused, None, now)
                    .with("sessionId", id.to_string());
                self.audit(event).await;
                return Err(AuthError::TokenReused);
            }
            RotateOutcome::GraceReplay(session) => {
                let current = session.refresh.as_ref().map(|state| state.current);
                if current != Some(new_hash) {
                    // The winner derived another successor: an instance with another secret.
                    tracing::warn!(
                        session_id = %session.id,
                        "refresh token replayed within the grace window, but its successor \
                         was derived with another secret (instances must share the cookie key)"
                    );
                    return Err(AuthError::InvalidToken);
                }
                tracing::info!(
                    session_id = %session.id,
                    "refresh token replayed within the grace window: the same successor"
                );
                session
            }
            RotateOutcome::Unknown => return Err(AuthError::InvalidToken),
        };
        let record = inner.users.find_by_id(session.user_id).await?;
        let Some(record) = record.filter(|record| record.disabled_at.is_none()) else {
            // The user was deleted or disabled; their sessions must not live on (disabling
            // revokes them, so this is a session that raced the disable).
            inner.sessions.revoke(session.id).await?;
            self.notify(&[session.id]);
            return Err(AuthError::InvalidToken);
        };
        let tokens = self.tokens(&session, new_token)?;
        Ok(SignedIn {
            user: record.user,
            session,
            tokens,
        })
    }

    /// Authenticates `Authorization: Bearer <token>`: verifies the JWT (through the key ring's
    /// cache), then asks the registry, in one round trip, for the live session it names, which
    /// must belong to the token's subject.
    ///
    /// The registry is asked every time, also for a token answered from the cache, so a logout
    /// ends every access token of the session at once. Same as [`Verifier::verify_bearer`].
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        self.inner.verifier.verify_bearer(token).await
    }

    /// Authenticates a session id read from the session cookie: the session must be live in the
    /// registry. Same as [`Verifier::verify_session`].
    pub async fn authenticate_session(
        &self,
        session_id: SessionId,
    ) -> Result<Principal, AuthError> {
        self.inner.verifier.verify_session(session_id).await
    }

    /// The caller's user and session. A user deleted since the session began is
    /// [`AuthError::Unauthorized`].
    pub async fn me(&self, principal: &Principal) -> Result<(User, Session), AuthError> {
        let Some(record) = self.inner.users.find_by_id(principal.user_id).await? else {
            return Err(AuthError::Unauthorized);
        };
        Ok((record.user, principal.session.clone()))
    }

    /// Revokes the caller's session: its access tokens, refresh token and cookie stop working
    /// at once, and the revocation listeners are told.
    pub async fn logout(&self, principal: &Principal) -> Result<(), AuthError> {
        let id = principal.session.id;
        self.inner.sessions.revoke(id).await?;
        // Told even if the session was gone already: whatever still holds it open must close.
        self.notify(&[id]);
        let event = AuditEvent::new(
            AuditKind::UserLogout,
            Some(principal.user_id),
            self.inner.clock.now(),
        )
        .with("sessionId", id.to_string());
        self.audit(event).await;
        tracing::info!(user_id = %principal.user_id, session_id = %id, "signed out");
        Ok(())
    }

    /// Revokes every session of `user_id` and returns their ids; the revocation listeners are
    /// told.
    pub async fn logout_all(&self, user_id: UserId) -> Result<Vec<SessionId>, AuthError> {
        self.revoke_all(user_id, None).await
    }

    /// Revokes every session of `user_id` on behalf of administrator `actor`; returns how many
    /// there were. The revocation listeners are told.
    pub async fn revoke_all_by(&self, user_id: UserId, actor: UserId) -> Result<usize, AuthError> {
        Ok(self.revoke_all(user_id, Some(actor)).await?.len())
    }

    async fn revoke_all(
        &self,
        user_id: UserId,
        actor: Option<UserId>,
    ) -> Result<Vec<SessionId>, AuthError> {
        let revoked = self.inner.sessions.revoke_all_for_user(user_id).await?;
        if !revoked.is_empty() {
            self.notify(&revoked);
        }
        let mut event = AuditEvent::new(
            AuditKind::SessionRevoked,
            Some(user_id),
            self.inner.clock.now(),
        )
        .with("sessions", revoked.len());
        event.actor_id = actor;
        self.audit(event).await;
        tracing::info!(user_id = %user_id, sessions = revoked.len(), "signed out everywhere");
        Ok(revoked)
    }

    /// Revokes every session of `user_id` but `keep` (a password change keeps the session
    /// that made it), and returns their ids; the revocation listeners are told.
    pub async fn logout_others(
        &self,
        user_id: UserId,
        keep: SessionId,
    ) -> Result<Vec<SessionId>, AuthError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut revoked = Vec::new();
        for session in inner.sessions.list_for_user(user_id, now).await? {
            if session.id != keep && inner.sessions.revoke(session.id).await? {
                revoked.push(session.id);
            }
        }
        if !revoked.is_empty() {
            self.notify(&revoked);
        }
        tracing::info!(user_id = %user_id, sessions = revoked.len(), "other sessions revoked");
        Ok(revoked)
    }

    /// Disables account `user_id`: it cannot log in (403 `account_disabled` once the password
    /// verified), and every session it has is revoked through the one revocation path
    /// (tokens, cookies and sockets on every instance). Returns the revoked sessions.
    ///
    /// `actor` is the administrator who did it, for the audit log.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when there is no such account.
    pub async fn disable_user(
        &self,
        user_id: UserId,
        actor: Option<UserId>,
    ) -> Result<Vec<SessionId>, AuthError> {
        let now = self.inner.clock.now();
        let mut event = AuditEvent::new(AuditKind::UserDisabled, Some(user_id), now);
        event.actor_id = actor;
        let audited = self
            .inner
            .users
            .update_audited(user_id, UserChange::Disable, now, event)
            .await?;
        audited.outcome.ok_or(AuthError::NotFound)?;
        let revoked = self.inner.sessions.revoke_all_for_user(user_id).await?;
        if !revoked.is_empty() {
            self.notify(&revoked);
        }
        self.record(audited.unrecorded).await;
        tracing::info!(user_id = %user_id, sessions = revoked.len(), "account disabled");
        Ok(revoked)
    }

    /// Enables account `user_id` again: it can log in. `actor` is who did it.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when there is no such account.
    pub async fn enable_user(
        &self,
        user_id: UserId,
        actor: Option<UserId>,
    ) -> Result<(), AuthError> {
        let now = self.inner.clock.now();
        let mut event = AuditEvent::new(AuditKind::UserEnabled, Some(user_id), now);
        event.actor_id = actor;
        let audited = self
            .inner
            .users
            .update_audited(user_id, UserChange::Enable, now, event)
            .await?;
        audited.outcome.ok_or(AuthError::NotFound)?;
        self.record(audited.unrecorded).await;
        tracing::info!(user_id = %user_id, "account enabled");
        Ok(())
    }

    /// The live sessions of `user_id`, most recently created first.
    pub async fn list_sessions(&self, user_id: UserId) -> Result<Vec<Session>, AuthError> {
        let now = self.inner.clock.now();
        Ok(self.inner.sessions.list_for_user(user_id, now).await?)
    }

    /// Revokes one session of `user_id`. A session that does not exist and a session of another
    /// user are both [`AuthError::NotFound`], so nobody learns about others' sessions.
    pub async fn revoke_session(
        &self,
        user_id: UserId,
        session_id: SessionId,
    ) -> Result<(), AuthError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        match inner.sessions.get(session_id, now).await? {
            Some(session) if session.user_id == user_id => {}
            _ => return Err(AuthError::NotFound),
        }
        // A session never changes owner, so the check above still holds; `false` means it was
        // revoked meanwhile by someone else, which is the caller's wish anyway.
        if !inner.sessions.revoke(session_id).await? {
            return Err(AuthError::NotFound);
        }
        self.notify(&[session_id]);
        let event = AuditEvent::new(AuditKind::SessionRevoked, Some(user_id), now)
            .with("sessionId", session_id.to_string());
        self.audit(event).await;
        tracing::info!(user_id = %user_id, session_id = %session_id, "session revoked");
        Ok(())
    }

    /// The tokens for `session`, with `refresh_token` as the refresh token.
    fn tokens(&self, session: &Session, refresh_token: String) -> Result<Tokens, AuthError> {
        let now = self.inner.clock.now();
        let issued = self
            .inner
            .keys
            .issue_access(session.user_id, session.id, now)?;
        let expires_in = u64::try_from((issued.expires_at - now).whole_seconds()).unwrap_or(0);
        Ok(Tokens {
            access_token: issued.token,
            token_type: TOKEN_TYPE,
            expires_in,
            refresh_token: SecretString::from(refresh_token),
        })
    }

    fn notify(&self, sessions: &[SessionId]) {
        // Copied out so that no lock is held while listeners run (one may register another).
        let listeners = self
            .inner
            .listeners
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for listener in listeners {
            listener.revoked(sessions);
        }
    }
}

/// A fresh refresh token: 256 random bits, base64url without padding (43 characters).
fn new_refresh_token() -> String {
    let mut bytes = [0_u8; REFRESH_TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

mod error;
#[cfg(test)]
mod tests;

pub use error::AuthError;
