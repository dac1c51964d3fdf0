//! The cross-instance part of broadcasting, behind the [`Adapter`] trait.
//!
//! Server code broadcasts through an adapter; the adapter delivers to this instance's
//! [`LocalNode`] and, in a multi-instance deployment, to the other instances
//! ([`crate::RedisAdapter`]). [`LocalAdapter`] is the single-instance implementation.
//!
//! The adapter also owns presence: who is in which room over every instance
//! ([`Adapter::room_members`]), kept current by [`Adapter::presence`] changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keel_domain::{BoxFuture, SessionId, UserId};
use tokio::sync::mpsc;

use crate::error::{AdapterError, CodecError};
use crate::node::LocalNode;
use crate::socket::{OutPacket, SocketId};
use crate::socketio::Value;

/// Which sockets of a namespace a broadcast is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every socket of the namespace.
    All,
    /// Every socket in at least one of these rooms (each socket once).
    Rooms(Vec<String>),
}

impl Target {
    /// One room.
    pub fn room(room: impl Into<String>) -> Self {
        Self::Rooms(vec![room.into()])
    }
}

/// A broadcast, encoded once: the same bytes go to every recipient on every instance.
#[derive(Debug, Clone)]
pub struct BroadcastMessage {
    /// The namespace, e.g. `/`.
    pub namespace: String,
    /// Who gets it.
    pub target: Target,
    /// A socket left out (the sender of a room message).
    pub except: Option<SocketId>,
    pub(crate) packet: Arc<OutPacket>,
}

impl BroadcastMessage {
    /// The Engine.IO text frame (e.g. `42["message",{...}]`), for adapters that forward it.
    pub fn text(&self) -> &str {
        &self.packet.text
    }

    /// The binary attachments that follow the text frame, in order.
    pub fn attachments(&self) -> &[Bytes] {
        &self.packet.attachments
    }
}

/// One socket's answer to a broadcast that asked for acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckReply {
    /// The socket that answered.
    pub socket_id: SocketId,
    /// The acknowledgement's arguments.
    pub args: Vec<Value>,
}

/// The answers collected for a broadcast with acknowledgements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckReplies {
    /// The answers that arrived within the timeout.
    pub replies: Vec<AckReply>,
    /// How many recipients did not answer in time (0 when all did).
    pub missing: usize,
}

/// A socket joined or left a room: what [`Adapter::presence`] records and announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// The socket's namespace.
    pub namespace: String,
    /// The room (never a `user:` or `session:` room).
    pub room: String,
    /// The socket that joined or left.
    pub socket_id: SocketId,
    /// The socket's user.
    pub user_id: UserId,
    /// `true` for joined, `false` for left.
    pub joined: bool,
}

impl PresenceChange {
    /// The `presence` event (`{"room","userId","state":"joined"|"left"}`) for the room's other
    /// members, encoded once.
    ///
    /// # Errors
    /// [`CodecError`] for a namespace that cannot be encoded (none the server accepted).
    pub fn to_message(&self) -> Result<BroadcastMessage, CodecError> {
        let state = if self.joined { "joined" } else { "left" };
        let payload = serde_json::json!({
            "room": self.room,
            "userId": self.user_id.to_string(),
            "state": state,
        });
        let encoded = crate::socketio::encode_event(&self.namespace, "presence", &payload, None)?;
        Ok(BroadcastMessage {
            namespace: self.namespace.clone(),
            target: Target::room(self.room.clone()),
            except: Some(self.socket_id.clone()),
            packet: Arc::new(encoded.into()),
        })
    }
}

/// Delivers broadcasts and session disconnects to every instance, this one included.
///
/// Object safe, so the server holds it as `Arc<dyn Adapter>`. Implementations deliver to
/// this instance through the [`LocalNode`] they were built with.
pub trait Adapter: Send + Sync + 'static {
    /// Delivers a broadcast to the matching sockets on every instance.
    fn broadcast(&self, message: BroadcastMessage) -> BoxFuture<'_, Result<(), AdapterError>>;

    /// Delivers a broadcast whose packet carries `ack_id` and collects the recipients'
    /// acknowledgements for at most `timeout`.
    fn broadcast_with_ack(
        &self,
        message: BroadcastMessage,
        ack_id: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckReplies, AdapterError>>;

    /// Sends a Socket.IO DISCONNECT to every socket of the session, on every instance, and
    /// closes them.
    fn disconnect_session(&self, session_id: SessionId) -> BoxFuture<'_, Result<(), AdapterError>>;

    /// Records that a socket joined or left a room and sends the `presence` event to the
    /// room's other members on every instance.
    fn presence(&self, change: PresenceChange) -> BoxFuture<'_, Result<(), AdapterError>>;

    /// The users in a room over every live instance, each once, in no set order. An instance
    /// that stopped without saying goodbye drops out on its own (see the implementation).
    fn room_members<'a>(
        &'a self,
        namespace: &'a str,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<UserId>, AdapterError>>;
}

/// The single-instance adapter: delivers to this instance only.
#[derive(Debug, Clone)]
pub struct LocalAdapter {
    node: LocalNode,
}

impl LocalAdapter {
    /// An adapter delivering to `node`.
    pub fn new(node: LocalNode) -> Self {
        Self { node }
    }
}

impl Adapter for LocalAdapter {
    fn broadcast(&self, message: BroadcastMessage) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.node.deliver(&message);
        Box::pin(async { Ok(()) })
    }

    fn broadcast_with_ack(
        &self,
        message: BroadcastMessage,
        ack_id: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckReplies, AdapterError>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let expected = self.node.deliver_with_ack(&message, ack_id, timeout, &tx);
        // Only the sockets hold senders now: when all of them have answered or gone, the
        // channel closes and the wait ends early.
        drop(tx);
        Box::pin(collect_acks(rx, expected, timeout))
    }

    fn disconnect_session(&self, session_id: SessionId) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.node.disconnect_session(session_id);
        Box::pin(async { Ok(()) })
    }

    fn presence(&self, change: PresenceChange) -> BoxFuture<'_, Result<(), AdapterError>> {
        let delivered = change
            .to_message()
            .map(|message| {
                self.node.deliver(&message);
            })
            .map_err(|error| AdapterError::new(format!("presence not encoded: {error}")));
        Box::pin(async move { delivered })
    }

    fn room_members<'a>(
        &'a self,
        namespace: &'a str,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<UserId>, AdapterError>> {
        let members = self.node.room_users(namespace, room);
        Box::pin(async move { Ok(members) })
    }
}

/// Collects up to `expected` answers, until the timeout or until every recipient is gone.
pub async fn collect_acks(
    mut rx: mpsc::UnboundedReceiver<AckReply>,
    expected: usize,
    timeout: Duration,
) -> Result<AckReplies, AdapterError> {
    let mut replies = Vec::with_capacity(expected.min(1024));
    let deadline = tokio::time::Instant::now() + timeout;
    while replies.len() < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(reply)) => replies.push(reply),
            Ok(None) | Err(_) => break,
        }
    }
    let missing = expected - replies.len();
    Ok(AckReplies { replies, missing })
}
