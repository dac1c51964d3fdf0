//! What server code plugs into a namespace.

use keel_domain::BoxFuture;

use crate::socket::{Event, Socket};
use crate::socketio::JsonObject;

/// Why a socket disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client left the namespace (Socket.IO DISCONNECT from the client).
    ClientDisconnect,
    /// Server code disconnected it ([`Socket::disconnect`], session revocation).
    ServerDisconnect,
    /// The client closed the connection, or it broke.
    TransportClose,
    /// The server is shutting down.
    ServerShutdown,
    /// The connection was closed by the server for a protocol, size, heartbeat or throttling
    /// violation, or because it did not read fast enough.
    ConnectionError,
}

/// The behaviour of one namespace. Object safe: register it as `Arc<dyn NamespaceHandler>`.
///
/// The methods run one after the other on the task that reads the socket's connection, in
/// the order the client sent its packets. They should not block for long, and must not await
/// an acknowledgement from the same connection (spawn a task for that).
pub trait NamespaceHandler: Send + Sync + 'static {
    /// A socket connected (its CONNECT answer is already queued). `auth` is the CONNECT
    /// payload, if the client sent one.
    fn on_connect<'a>(
        &'a self,
        socket: &'a Socket,
        auth: Option<&'a JsonObject>,
    ) -> BoxFuture<'a, ()> {
        let _ = (socket, auth);
        Box::pin(async {})
    }

    /// The client sent an event (after throttling). If it asked for an acknowledgement,
    /// `event.ack` is there to answer it.
    fn on_event<'a>(&'a self, socket: &'a Socket, event: Event) -> BoxFuture<'a, ()>;

    /// The socket is disconnecting; it is still in its rooms while this runs.
    fn on_disconnect<'a>(
        &'a self,
        socket: &'a Socket,
        reason: DisconnectReason,
    ) -> BoxFuture<'a, ()> {
        let _ = (socket, reason);
        Box::pin(async {})
    }
}
