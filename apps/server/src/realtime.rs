//! Wiring realtime to auth: the app's implementation of keel-realtime's connect-auth port over
//! keel-auth, and the revocation listener that disconnects a revoked session's sockets.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::ORIGIN;
use actix_web::{HttpMessage, HttpRequest};
use keel_auth::actix::CsrfPolicy;
use keel_auth::{Auth, AuthError, RevocationListener};

use keel_domain::{BoxFuture, SessionId};
use keel_http_adapter::{ClientIp, Quotas};
use keel_realtime::{AuthRefusal, ConnectAuth, ConnectRequest, Emitter, Identity};
use keel_session::actix::read_session_cookie;

/// What `on_upgrade` captures when the request carries a session cookie from a foreign origin.
const FOREIGN_ORIGIN: &str = "foreign-origin";

/// Authenticates sockets with Keel's credentials: an access token in the CONNECT payload
/// (`auth: { token }`), or the session cookie when the handshake's `Origin` is allowed. Tokens
/// in the query string are ignored. Each CONNECT first counts against the client IP's
/// `socket_connect_ip` quota, shared by every instance when Redis is configured.
pub struct KeelConnectAuth {
    auth: Auth,
    origins: CsrfPolicy,
    quotas: Quotas,
}

impl KeelConnectAuth {
    /// Connect-auth over these use cases and quotas, allowing cookies from these origins.
    pub fn new(auth: Auth, quotas: Quotas, allowed_origins: &[String]) -> Self {
        Self {
            auth,
            origins: CsrfPolicy::new(allowed_origins.iter()),
            quotas,
        }
    }
}

impl ConnectAuth for KeelConnectAuth {
    fn on_upgrade(&self, req: &HttpRequest) -> Option<String> {
        let (session_id, _csrf) = read_session_cookie(req)?;
        // A cookie rides along with any cross-site request, so it only counts when the page
        // that opened the socket is one of ours (cross-site WebSocket hijacking).
        let origin_allowed = req
            .headers()
            .get(ORIGIN)
            .and_then(|origin| origin.to_str().ok())
            .is_some_and(|origin| self.origins.allows_origin(origin));
        Some(if origin_allowed {
            session_id.to_string()
        } else {
            FOREIGN_ORIGIN.to_owned()
        })
    }

    fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        // The edge resolved it with the trusted-proxy rule.
        req.extensions().get::<ClientIp>().map(|ip| ip.0)
    }

    fn authenticate<'a>(
        &'a self,
        request: ConnectRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, AuthRefusal>> {
        Box::pin(async move {
            let ip = request
                .client_ip
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            if self.quotas.socket_connect(&ip).await.is_err() {
                return Err(AuthRefusal::new("rate_limited"));
            }
            let token = request
                .auth
                .and_then(|auth| auth.get("token"))
                .and_then(|token| token.as_str());
            let principal = match (token, request.captured) {
                (Some(token), _) => self.auth.authenticate_bearer(token).await,
                (None, Some(FOREIGN_ORIGIN)) => return Err(AuthRefusal::new("origin_not_allowed")),
                (None, Some(session)) => match session.parse::<SessionId>() {
                    Ok(session) => self.auth.authenticate_session(session).await,
                    Err(_) => Err(AuthError::Unauthorized),
                },
                (None, None) => return Err(AuthRefusal::new("missing_credentials")),
            };
            principal
                .map(|principal| Identity {
                    user_id: principal.user_id,
                    session_id: principal.session.id,
                })
                .map_err(|error| AuthRefusal::new(refusal_code(&error)))
        })
    }
}

/// The `data.code` of a refused CONNECT, the same codes as the HTTP problems.
fn refusal_code(error: &AuthError) -> &'static str {
    match error {
        AuthError::InvalidToken | AuthError::InvalidCredentials => "invalid_token",
        AuthError::TokenExpired => "token_expired",
        AuthError::TokenReused
        | AuthError::Unauthorized
        | AuthError::NotFound
        | AuthError::AccountDisabled => "unauthorized",
        AuthError::Busy | AuthError::Unavailable(_) => "dependency_unavailable",
    }
}

/// Disconnects the sockets of revoked sessions (`41`, so clients do not reconnect by
/// themselves), on every instance the adapter reaches.
pub struct DisconnectRevokedSockets {
    emitter: Emitter,
}

impl DisconnectRevokedSockets {
    /// A listener that disconnects through `emitter`.
    pub fn new(emitter: Emitter) -> Arc<Self> {
        Arc::new(Self { emitter })
    }
}

impl RevocationListener for DisconnectRevokedSockets {
    fn revoked(&self, sessions: &[SessionId]) {
        // Listeners must not block the request that revoked: the disconnects go out on their
        // own task.
        let emitter = self.emitter.clone();
        let sessions = sessions.to_vec();
        tokio::spawn(async move {
            for session in sessions {
                if let Err(error) = emitter.disconnect_session(session).await {
                    tracing::warn!(%session, %error, "could not disconnect a revoked session's sockets");
                }
            }
        });
    }
}

/// Every `interval`, and whenever `now` is notified (after the Redis adapter resubscribed),
/// re-checks the sessions of this instance's sockets against the registry and disconnects those
/// that ended (expired, or revoked while the revocation message was lost). A registry that
/// cannot answer disconnects nobody: an outage is not a revocation.
pub fn spawn_session_check(
    realtime: &keel_realtime::RealtimeServer,
    auth: &Auth,
    interval: std::time::Duration,
    now: Arc<tokio::sync::Notify>,
    shutdown: &crate::shutdown::Shutdown,
) {
    // Zero turns the periodic check off; resubscribes still trigger one.
    let interval = if interval.is_zero() {
        std::time::Duration::from_secs(u64::from(u32::MAX))
    } else {
        interval
    };
    let node = realtime.node().clone();
    let emitter = realtime.emitter();
    let auth = auth.clone();
    let token = shutdown.token();
    shutdown.spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = ticks.tick() => {}
                () = now.notified() => {}
            }
            for session in node.session_ids() {
                match auth.authenticate_session(session).await {
                    Ok(_) | Err(AuthError::Busy | AuthError::Unavailable(_)) => {}
                    Err(_) => {
                        tracing::info!(%session, "closing the sockets of an ended session");
                        if let Err(error) = emitter.disconnect_session(session).await {
                            tracing::warn!(%session, %error, "could not disconnect an ended session's sockets");
                        }
                    }
                }
            }
        }
    });
}
