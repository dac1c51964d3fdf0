//! Sockets: one per client per namespace, and the handles server code uses to talk to them.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_ws::{CloseCode, CloseReason};
use bytes::Bytes;
use bytestring::ByteString;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adapter::AckReply;
use crate::auth::Identity;
use crate::emitter::Broadcast;
use crate::error::{AckError, SendError};
use crate::server::Shared;
use crate::socketio::{self, Encoded, Packet, Value};

/// A Socket.IO socket id: fresh and random for every socket, never the Engine.IO `sid`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(Arc<str>);

impl Serialize for SocketId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl SocketId {
    /// A fresh random id (128 bits, base64url).
    pub(crate) fn generate() -> Self {
        Self(random_id().into())
    }

    /// The id of a socket on another instance, as an adapter received it.
    pub(crate) fn from_wire(id: &str) -> Self {
        Self(id.into())
    }

    /// The id as text, as the client sees it in `socket.id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({})", self.0)
    }
}

/// 128 random bits from the thread's CSPRNG, as 22 base64url characters: unguessable, because
/// an Engine.IO sid or a socket id must not let one client address another's connection.
pub(crate) fn random_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An encoded packet as the WebSocket writer sends it: the text frame and its attachments.
/// Built once per broadcast and shared by reference count among all recipients.
#[derive(Debug)]
pub(crate) struct OutPacket {
    pub(crate) text: ByteString,
    pub(crate) attachments: Vec<Bytes>,
}

impl OutPacket {
    pub(crate) fn text(text: &'static str) -> Arc<Self> {
        Arc::new(Self {
            text: ByteString::from_static(text),
            attachments: Vec::new(),
        })
    }
}

impl From<Encoded> for OutPacket {
    fn from(encoded: Encoded) -> Self {
        let (text, attachments) = encoded.into_parts();
        Self {
            text: ByteString::from(text),
            attachments,
        }
    }
}

/// What a connection's writer task sends.
#[derive(Debug)]
pub(crate) enum Outbound {
    Packet(Arc<OutPacket>),
    /// The answer to a WebSocket-level ping from the client.
    WsPong(Bytes),
}

/// Requests that only the connection's own task may carry out, because it owns the sockets.
#[derive(Debug)]
pub(crate) enum Control {
    /// Send DISCONNECT to this socket and drop it; close the connection if it was the last.
    Disconnect(SocketId),
}

/// Why a connection closes; decides the WebSocket close code and whether the queue is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CloseWhy {
    /// Client closed, or the server disconnected its last socket: 1000.
    Normal = 1,
    /// Server shutdown: 1001, so clients reconnect to another instance.
    Shutdown,
    /// A broken protocol rule: 1002.
    Protocol,
    /// Text that is not UTF-8 or JSON: 1007.
    InvalidData,
    /// Connect timeout, ping timeout, flood: 1008.
    Policy,
    /// A frame or message over `maxPayload`: 1009.
    TooBig,
    /// The outbound queue overflowed: the peer does not read, so nothing more is written.
    SlowReader,
    /// The transport is gone; nothing can be written.
    Gone,
}

impl CloseWhy {
    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Normal,
            2 => Self::Shutdown,
            3 => Self::Protocol,
            4 => Self::InvalidData,
            5 => Self::Policy,
            6 => Self::TooBig,
            7 => Self::SlowReader,
            8 => Self::Gone,
            _ => return None,
        })
    }

    /// Whether queued packets and a close frame are still worth writing.
    pub(crate) fn flushes(self) -> bool {
        !matches!(self, Self::SlowReader | Self::Gone)
    }

    pub(crate) fn close_reason(self) -> CloseReason {
        let (code, description) = match self {
            Self::Normal | Self::Gone => (CloseCode::Normal, None),
            Self::Shutdown => (CloseCode::Away, Some("server shutting down")),
            Self::Protocol => (CloseCode::Protocol, Some("protocol error")),
            Self::InvalidData => (CloseCode::Invalid, Some("invalid data")),
            Self::Policy | Self::SlowReader => (CloseCode::Policy, Some("policy violation")),
            Self::TooBig => (CloseCode::Size, Some("message too big")),
        };
        CloseReason {
            code,
            description: description.map(str::to_owned),
        }
    }
}

/// The parts of one Engine.IO connection that other tasks may touch: its outbound queue, its
/// control channel and its close signal. Shared by the connection's sockets.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    queue: mpsc::Sender<Outbound>,
    control: mpsc::Sender<Control>,
    /// Cancelled when the connection starts closing; a child of the server's shutdown token.
    pub(crate) closing: CancellationToken,
    /// The first reason given wins; 0 while open.
    why: AtomicU8,
}

impl ConnHandle {
    pub(crate) fn new(
        queue: mpsc::Sender<Outbound>,
        control: mpsc::Sender<Control>,
        closing: CancellationToken,
    ) -> Self {
        Self {
            queue,
            control,
            closing,
            why: AtomicU8::new(0),
        }
    }

    /// Queues a packet without waiting. A full queue means the client does not read fast
    /// enough: the connection is closed rather than awaited, so one slow client never holds
    /// up a broadcaster.
    pub(crate) fn send(&self, packet: Arc<OutPacket>) -> Result<(), SendError> {
        self.push(Outbound::Packet(packet))
    }

    pub(crate) fn push(&self, item: Outbound) -> Result<(), SendError> {
        if self.closing.is_cancelled() {
            return Err(SendError::Closed);
        }
        match self.queue.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(CloseWhy::SlowReader);
                Err(SendError::Overflow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    pub(crate) fn control(&self, control: Control) {
        // A full control channel means requests pile up faster than the connection handles
        // them; closing it is the bounded answer.
        if self.control.try_send(control).is_err() {
            self.close(CloseWhy::Policy);
        }
    }

    pub(crate) fn close(&self, why: CloseWhy) {
        // Cancelled without a reason means the server's shutdown token (the parent) fired:
        // record that first, so a later reason does not hide the shutdown's 1001.
        let why = if self.closing.is_cancelled() {
            CloseWhy::Shutdown
        } else {
            why
        };
        let _ = self
            .why
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        self.closing.cancel();
    }

    /// Why the connection closed; a cancellation without a reason came from server shutdown.
    pub(crate) fn why(&self) -> CloseWhy {
        CloseWhy::from_u8(self.why.load(Ordering::Acquire)).unwrap_or(CloseWhy::Shutdown)
    }
}

/// Where an acknowledgement goes once the client sends it.
#[derive(Debug)]
pub(crate) enum AckSink {
    One(oneshot::Sender<Vec<Value>>),
    Many(mpsc::UnboundedSender<AckReply>),
}

#[derive(Debug)]
struct PendingAck {
    deadline: Instant,
    sink: AckSink,
}

/// The shared state of one socket. Held by the registry, so it must not point back at the
/// server (that would be a reference cycle).
#[derive(Debug)]
pub(crate) struct SocketInner {
    pub(crate) id: SocketId,
    pub(crate) namespace: Arc<str>,
    pub(crate) identity: Identity,
    pub(crate) conn: Arc<ConnHandle>,
    acks: Mutex<HashMap<u64, PendingAck>>,
}

impl SocketInner {
    pub(crate) fn new(namespace: Arc<str>, identity: Identity, conn: Arc<ConnHandle>) -> Self {
        Self {
            id: SocketId::generate(),
            namespace,
            identity,
            conn,
            acks: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn expect_ack(&self, ack_id: u64, sink: AckSink, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.lock_acks()
            .insert(ack_id, PendingAck { deadline, sink });
    }

    pub(crate) fn forget_ack(&self, ack_id: u64) {
        self.lock_acks().remove(&ack_id);
    }

    /// Hands an ACK from the client to whoever waits for it. Unknown ids are ignored: an ack
    /// that arrives after its timeout is normal, not a protocol error.
    pub(crate) fn resolve_ack(&self, ack_id: u64, args: Vec<Value>) {
        let Some(pending) = self.lock_acks().remove(&ack_id) else {
            return;
        };
        match pending.sink {
            AckSink::One(tx) => {
                let _ = tx.send(args);
            }
            AckSink::Many(tx) => {
                let _ = tx.send(AckReply {
                    socket_id: self.id.clone(),
                    args,
                });
            }
        }
    }

    /// Drops acks nobody waits for any more, so a client that never answers costs no memory.
    pub(crate) fn sweep_acks(&self, now: Instant) {
        self.lock_acks().retain(|_, pending| pending.deadline > now);
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PendingAck>> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connected Socket.IO socket, as namespace handlers see it. Cheap to clone.
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("namespace", &self.inner.namespace)
            .field("identity", &self.inner.identity)
            .finish()
    }
}

impl Socket {
    /// The socket id (the client's `socket.id`).
    pub fn id(&self) -> &SocketId {
        &self.inner.id
    }

    /// The namespace this socket is connected to.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Who this socket belongs to.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Sends an event to this socket. Arguments may carry binary data.
    ///
    /// # Errors
    /// [`SendError::Codec`] for too many attachments, [`SendError::Overflow`] if the queue was
    /// full (the socket is then disconnected), [`SendError::Closed`] if it is gone.
    pub fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), SendError> {
        let packet = Packet::event(&*self.inner.namespace, event, args, None);
        self.send_packet(&packet)
    }

    /// Sends an event with one argument serialized from `arg`.
    ///
    /// # Errors
    /// As [`Socket::emit`].
    pub fn emit_json<T: Serialize + ?Sized>(&self, event: &str, arg: &T) -> Result<(), SendError> {
        let encoded = socketio::encode_event(&self.inner.namespace, event, arg, None)?;
        self.inner.conn.send(Arc::new(encoded.into()))
    }

    /// Sends an event and waits up to `timeout` for the client's acknowledgement.
    ///
    /// Do not await this inside the same socket's event handler: handlers run on the task that
    /// reads the connection, so the ack could not be read; spawn a task instead.
    ///
    /// # Errors
    /// [`AckError::Timeout`], [`AckError::Disconnected`], or [`AckError::Send`].
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, AckError> {
        let ack_id = self.shared.next_ack_id();
        let packet = Packet::event(&*self.inner.namespace, event, args, Some(ack_id));
        let encoded = packet.encode_with(&self.shared.limits)?;
        let (tx, rx) = oneshot::channel();
        self.inner.expect_ack(ack_id, AckSink::One(tx), timeout);
        if let Err(error) = self.inner.conn.send(Arc::new(encoded.into())) {
            self.inner.forget_ack(ack_id);
            return Err(error.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.inner.forget_ack(ack_id);
                Err(AckError::Timeout)
            }
        }
    }

    /// Adds this socket to `room` (any name: server code is trusted; client requests go
    /// through the room policy). Returns whether it was not in the room before.
    ///
    /// # Errors
    /// [`crate::JoinError::TooManyRooms`] over `max_rooms_per_socket`, or
    /// [`crate::JoinError::Disconnected`].
    pub fn join(&self, room: &str) -> Result<bool, crate::JoinError> {
        self.shared
            .node
            .join(&self.inner, room, self.shared.config.max_rooms_per_socket)
    }

    /// Removes this socket from `room`. Returns whether it was in it.
    pub fn leave(&self, room: &str) -> bool {
        self.shared.node.leave(&self.inner, room)
    }

    /// Whether this socket is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.shared.node.in_room(&self.inner, room)
    }

    /// The rooms this socket is in, `user:` and `session:` rooms included, in no set order.
    pub fn rooms(&self) -> Vec<String> {
        self.shared.node.rooms_of(&self.inner)
    }

    /// The users in `room` of this socket's namespace over every instance, each once.
    ///
    /// # Errors
    /// [`crate::AdapterError`] when the adapter cannot answer.
    pub async fn room_members(
        &self,
        room: &str,
    ) -> Result<Vec<keel_domain::UserId>, crate::AdapterError> {
        self.shared
            .adapter
            .room_members(&self.inner.namespace, room)
            .await
    }

    /// Tells the room's other members, on every instance, that this socket joined or left it,
    /// and records the change for [`Socket::room_members`].
    pub(crate) async fn announce(
        &self,
        room: &str,
        joined: bool,
    ) -> Result<(), crate::AdapterError> {
        let change = crate::PresenceChange {
            namespace: self.inner.namespace.to_string(),
            room: room.to_owned(),
            socket_id: self.inner.id.clone(),
            user_id: self.inner.identity.user_id,
            joined,
        };
        self.shared.adapter.presence(change).await
    }

    /// A broadcast to `room` in this socket's namespace that leaves this socket out.
    pub fn to_room(&self, room: impl Into<String>) -> Broadcast {
        Broadcast::new(self.shared.clone(), crate::Target::room(room))
            .namespace(&*self.inner.namespace)
            .except(self.inner.id.clone())
    }

    /// Disconnects this socket: the client gets a Socket.IO DISCONNECT and does not reconnect
    /// by itself; the connection closes once it has no socket left. Takes effect after the
    /// current handler returns.
    pub fn disconnect(&self) {
        self.inner
            .conn
            .control(Control::Disconnect(self.inner.id.clone()));
    }

    fn send_packet(&self, packet: &Packet) -> Result<(), SendError> {
        let encoded = packet.encode_with(&self.shared.limits)?;
        self.inner.conn.send(Arc::new(encoded.into()))
    }
}

/// An event from a client, as handed to [`crate::NamespaceHandler::on_event`].
#[derive(Debug)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The arguments after the name; binary data arrives as [`Value::Binary`].
    pub args: Vec<Value>,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<AckSender>,
}

/// Answers one client event's acknowledgement request; consumed by sending.
#[derive(Debug)]
pub struct AckSender {
    pub(crate) socket: Arc<SocketInner>,
    pub(crate) ack_id: u64,
    pub(crate) limits: socketio::Limits,
}

impl AckSender {
    /// Sends the acknowledgement with these arguments (binary allowed).
    ///
    /// # Errors
    /// As [`Socket::emit`].
    pub fn send(self, args: Vec<Value>) -> Result<(), SendError> {
        let packet = Packet::ack(&*self.socket.namespace, self.ack_id, args);
        let encoded = packet.encode_with(&self.limits)?;
        self.socket.conn.send(Arc::new(encoded.into()))
    }

    /// Sends the acknowledgement with one argument serialized from `arg`, e.g. `{"ok":true}`.
    ///
    /// # Errors
    /// As [`Socket::emit`].
    pub fn send_json<T: Serialize + ?Sized>(self, arg: &T) -> Result<(), SendError> {
        let encoded = socketio::encode_ack(&self.socket.namespace, self.ack_id, arg)?;
        self.socket.conn.send(Arc::new(encoded.into()))
    }
}
