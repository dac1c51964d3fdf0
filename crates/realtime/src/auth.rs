//! The connect-auth port: how the application decides who a Socket.IO CONNECT belongs to.
//!
//! keel-realtime knows nothing of tokens or session cookies; the application implements
//! [`ConnectAuth`] (with keel-auth and keel-session behind it) and hands it to the server.

use std::net::IpAddr;

use actix_web::HttpRequest;
use keel_domain::{BoxFuture, SessionId, UserId};
use serde::Serialize;

use crate::socketio::JsonObject;

/// Who a socket belongs to, as established by [`ConnectAuth::authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The authenticated user; the socket joins room `user:<user_id>`.
    pub user_id: UserId,
    /// The session the credentials belong to; the socket joins room `session:<session_id>`, so
    /// revoking the session can disconnect it.
    pub session_id: SessionId,
}

/// A refused CONNECT. The client receives
/// `44{"message":"unauthorized","data":{"code":"<code>"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRefusal {
    /// A stable, machine-readable reason such as `missing_credentials`, `invalid_token` or
    /// `dependency_unavailable`. Sent to the client as is: it must not reveal secrets.
    pub code: String,
}

impl AuthRefusal {
    /// A refusal with `code`.
    pub fn new(code: impl Into<String>) -> Self {
        Self { code: code.into() }
    }
}

/// What the application gets to authenticate one Socket.IO CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct ConnectRequest<'a> {
    /// The namespace being connected to (`/` for the main one).
    pub namespace: &'a str,
    /// The CONNECT packet's `auth` object (`io(url, { auth: { token } })`), if any.
    pub auth: Option<&'a JsonObject>,
    /// The client IP, as [`ConnectAuth::client_ip`] determined it at upgrade time.
    pub client_ip: Option<IpAddr>,
    /// What [`ConnectAuth::on_upgrade`] captured from the upgrade request, if anything.
    pub captured: Option<&'a str>,
}

/// The connect-auth port. Object safe: the server holds it as `Arc<dyn ConnectAuth>`.
pub trait ConnectAuth: Send + Sync + 'static {
    /// Called once per connection with the upgrade request, before the WebSocket handshake.
    ///
    /// Whatever is returned reaches every [`ConnectAuth::authenticate`] of this connection as
    /// [`ConnectRequest::captured`]. It is the place to read state that only the actix request
    /// gives access to, e.g. the session id from an encrypted session cookie.
    fn on_upgrade(&self, req: &HttpRequest) -> Option<String> {
        let _ = req;
        None
    }

    /// The client IP used for per-IP throttling and passed to `authenticate`.
    ///
    /// The default is the TCP peer address. An application behind a reverse proxy overrides it
    /// with its trusted-proxy rule, so that the proxy's address is not taken for the client's.
    fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        req.peer_addr().map(|addr| addr.ip())
    }

    /// Authenticates one CONNECT: the identity of the new socket, or the refusal to send.
    ///
    /// Must answer in bounded time (the connection reads nothing else meanwhile); a dependency
    /// that cannot answer is a refusal (`dependency_unavailable`), never an identity.
    fn authenticate<'a>(
        &'a self,
        request: ConnectRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, AuthRefusal>>;
}

/// Accepts every CONNECT, each with a fresh random user and session: for examples and protocol
/// tests only, never for a server that users reach.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl ConnectAuth for AllowAll {
    fn authenticate<'a>(
        &'a self,
        _request: ConnectRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, AuthRefusal>> {
        Box::pin(async {
            Ok(Identity {
                user_id: UserId::generate(),
                session_id: SessionId::generate(),
            })
        })
    }
}
