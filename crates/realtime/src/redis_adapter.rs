//! [`RedisAdapter`]: broadcasts, acknowledgements and session disconnects across every instance
//! through Redis pub/sub.
//!
//! # How it works
//!
//! Every instance gets a random id. A broadcast is delivered to this instance's sockets at once
//! and published, encoded once (a small header plus the already-encoded Engine.IO text and
//! attachments, see `wire`), on one channel shared by all namespaces, `<prefix>all`. Each
//! instance delivers what it receives to its own sockets and skips its own messages, so every
//! socket gets a message once and the origin never twice.
//!
//! A broadcast asking for acknowledgements carries a request id. Each other instance delivers it
//! under an ack id of its own (so it cannot collide with that instance's ids) and answers on the
//! origin's own channel, `<prefix>i:<instance id>`: first how many of its sockets got the event,
//! then each answer as it comes. The origin knows from `PUBLISH`'s answer how many instances
//! listen and stops collecting when all have reported and answered, or at the timeout.
//!
//! Publishing uses the application's shared deadpool-redis pool. Subscribing uses a dedicated
//! connection of its own, opened from a [`redis::Client`] (never the pool), watched by `PING`,
//! and re-opened with exponential backoff whenever it fails: after a Redis restart the adapter
//! resubscribes by itself. Messages published while it was not subscribed are lost; the
//! application hears of every resubscribe ([`RedisAdapterBuilder::on_resubscribe`],
//! [`RedisAdapter::subscription`]) and should then re-check its sockets' sessions.
//!
//! # Presence
//!
//! Each instance publishes a heartbeat every `heartbeat_interval_ms` and keeps, for every other
//! instance it hears, the room memberships of that instance's sockets: each join and leave
//! travels as a presence frame (which also carries the `presence` event to the room), and an
//! instance that (re)subscribes asks everyone for their complete memberships. An instance not
//! heard from within `peer_timeout_ms` (killed, frozen, cut off) is forgotten: its memberships
//! end, and each instance tells its own sockets in those rooms that those members left. So
//! [`Adapter::room_members`] answers from memory, without a round trip, and heals by itself.
//!
//! # Per-room channels
//!
//! A broadcast to one room (other than `user:` and `session:` rooms) goes on that room's own
//! channel, `<prefix>r:<namespace>#<room>`, which only the instances with a member in the room
//! subscribe to: an instance hears only the rooms it serves, so adding instances does not
//! multiply the work of every one. The adapter subscribes when a room gets its first local
//! member and unsubscribes when it loses its last (one task applies these in order, from the
//! node's current state); a `join` is acknowledged only after its room's subscription is in
//! place, so no message sent after the ack can miss the new member. Everything else (several
//! rooms at once, everyone, `user:`/`session:` rooms, disconnects, presence, heartbeats) goes on
//! the shared channel.

mod peers;
mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use deadpool_redis::Pool;
use deadpool_redis::redis;
use futures_util::StreamExt as _;
use keel_domain::{BoxFuture, SessionId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adapter::{AckReplies, AckReply, Adapter, BroadcastMessage, PresenceChange, Target};
use crate::error::AdapterError;
use crate::keel_events::is_reserved_room;
use crate::node::LocalNode;
use crate::socket::{OutPacket, SocketId};
use crate::socketio::{self, Limits, MAIN_NAMESPACE, Packet, PacketKind, Value};
use keel_domain::UserId;
use peers::{Membership, Peers};
use wire::{BroadcastRef, Frame, InstanceId, WireBroadcast, WireMember};

/// Ack ids this instance gives to broadcasts from other instances start here: far above the
/// server's own counter, and still exact as a JavaScript number (below 2^53).
const REMOTE_ACK_BASE: u64 = 1 << 52;

/// Settings of the [`RedisAdapter`]. A plain serde struct with defaults; durations are
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisAdapterConfig {
    /// Prefix of the pub/sub channels (`keel:rt:`). Instances that should reach each other use
    /// the same prefix (and the same Redis database number does not matter: pub/sub ignores it).
    pub channel_prefix: String,
    /// How long opening the subscriber connection and subscribing may take (1000).
    pub connect_timeout_ms: u64,
    /// How often the subscriber connection is checked with `PING` (5000), so a Redis that hangs
    /// is noticed; the `PING` may take `connect_timeout_ms`.
    pub ping_interval_ms: u64,
    /// First wait before re-opening a lost subscriber connection (100); doubles up to
    /// `reconnect_max_ms` (5000), with jitter.
    pub reconnect_min_ms: u64,
    /// Longest wait between two attempts to re-open the subscriber connection (5000).
    pub reconnect_max_ms: u64,
    /// Upper bound on one publish, pool wait included (3000). The pool's own timeouts normally
    /// end it sooner.
    pub publish_timeout_ms: u64,
    /// How often this instance tells the others it is alive (2000).
    pub heartbeat_interval_ms: u64,
    /// An instance not heard from for this long is gone: its sockets' room memberships end and
    /// the rooms' members here get `presence` `left` for them (6000; keep it a few heartbeats).
    pub peer_timeout_ms: u64,
}

impl Default for RedisAdapterConfig {
    fn default() -> Self {
        Self {
            channel_prefix: "keel:rt:".to_owned(),
            connect_timeout_ms: 1_000,
            ping_interval_ms: 5_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
            publish_timeout_ms: 3_000,
            heartbeat_interval_ms: 2_000,
            peer_timeout_ms: 6_000,
        }
    }
}

/// The state of the adapter's subscription, as [`RedisAdapter::subscription`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionState {
    /// Whether the subscriber connection is up and subscribed now.
    pub subscribed: bool,
    /// How many times it has subscribed since the start: 1 after the first subscription, and
    /// one more after every resubscribe.
    pub subscribes: u64,
}

type Callback = Arc<dyn Fn() + Send + Sync>;

/// Builds a [`RedisAdapter`]; see [`RedisAdapter::builder`].
pub struct RedisAdapterBuilder {
    pool: Pool,
    client: redis::Client,
    config: RedisAdapterConfig,
    on_resubscribe: Option<Callback>,
    state: watch::Sender<SubscriptionState>,
}

impl fmt::Debug for RedisAdapterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapterBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisAdapterBuilder {
    /// Uses these settings instead of the defaults.
    pub fn config(mut self, config: RedisAdapterConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs `callback` after every resubscribe (not after the first subscription): messages
    /// published meanwhile were lost, so the application should re-check its sockets' sessions
    /// (e.g. start its session sweep now). The callback must not block; spawn work from it.
    pub fn on_resubscribe(mut self, callback: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_resubscribe = Some(Arc::new(callback));
        self
    }

    /// The subscription state, to watch before the adapter is even started.
    pub fn subscription(&self) -> watch::Receiver<SubscriptionState> {
        self.state.subscribe()
    }

    /// Starts the adapter for `node`: spawns the subscriber task, which connects in the
    /// background (so this succeeds while Redis is down) and runs until the adapter is dropped.
    ///
    /// # Panics
    /// Outside a Tokio runtime (actix-web's counts).
    pub fn start(self, node: LocalNode) -> RedisAdapter {
        let id: InstanceId = rand::random();
        let prefix = &self.config.channel_prefix;
        let inner = Arc::new(Inner {
            broadcast_channel: format!("{prefix}all"),
            own_channel: instance_channel(prefix, &id),
            id,
            node,
            pool: self.pool,
            config: self.config,
            requests: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(0),
            next_remote_ack: AtomicU64::new(0),
            state: self.state,
            on_resubscribe: self.on_resubscribe,
            peers: Mutex::new(Peers::default()),
            rooms: tokio::sync::Mutex::new(RoomSubscriptions::default()),
        });
        let room_changes = inner.node.watch_rooms();
        let stop = CancellationToken::new();
        tokio::spawn(subscriber(inner.clone(), self.client, stop.clone()));
        tokio::spawn(follow_rooms(inner.clone(), room_changes, stop.clone()));
        tokio::spawn(heartbeat(inner.clone(), stop.clone()));
        RedisAdapter { inner, stop }
    }

    /// The factory for [`crate::RealtimeServerBuilder::adapter`]: starts the adapter with the
    /// server's [`LocalNode`] when the server is built (inside a Tokio runtime).
    pub fn into_factory(self) -> impl FnOnce(LocalNode) -> Arc<dyn Adapter> + 'static {
        move |node| Arc::new(self.start(node)) as Arc<dyn Adapter>
    }
}

/// An [`Adapter`] on Redis pub/sub, for several instances behind a load balancer.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use keel_realtime::{AllowAll, RealtimeConfig, RealtimeServer, RedisAdapter};
/// # async fn demo(pool: deadpool_redis::Pool) -> Result<(), Box<dyn std::error::Error>> {
/// // `pool` is the app's shared pool, built with connect, response and wait timeouts.
/// let client = deadpool_redis::redis::Client::open("redis://127.0.0.1:6379/")?;
/// let adapter = RedisAdapter::builder(pool, client)
///     .on_resubscribe(|| { /* trigger the session sweep */ });
/// let mut subscription = adapter.subscription();
/// let realtime = RealtimeServer::builder(RealtimeConfig::default(), Arc::new(AllowAll))
///     .adapter(adapter.into_factory())
///     .build()?;
/// // Optional: readiness can wait for the first subscription.
/// subscription.wait_for(|state| state.subscribed).await?;
/// # Ok(()) }
/// ```
pub struct RedisAdapter {
    inner: Arc<Inner>,
    stop: CancellationToken,
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("instance", &self.instance_id())
            .field("subscription", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisAdapter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RedisAdapter {
    /// Starts building an adapter that publishes on `pool` (the app's shared pool) and
    /// subscribes on a dedicated connection opened from `subscriber` (same Redis).
    pub fn builder(pool: Pool, subscriber: redis::Client) -> RedisAdapterBuilder {
        RedisAdapterBuilder {
            pool,
            client: subscriber,
            config: RedisAdapterConfig::default(),
            on_resubscribe: None,
            state: watch::Sender::new(SubscriptionState::default()),
        }
    }

    /// The subscription state; `changed()` wakes on every (re)subscribe and loss.
    pub fn subscription(&self) -> watch::Receiver<SubscriptionState> {
        self.inner.state.subscribe()
    }

    /// This instance's random id (hex), as it appears in its reply channel's name.
    pub fn instance_id(&self) -> String {
        hex(&self.inner.id)
    }
}

/// What another instance said about one of this instance's ack requests.
enum Remote {
    /// An instance (this one included, with 0) delivered the event to this many sockets.
    Count(u32),
    Reply(AckReply),
}

struct Inner {
    id: InstanceId,
    node: LocalNode,
    pool: Pool,
    config: RedisAdapterConfig,
    broadcast_channel: String,
    own_channel: String,
    /// This instance's broadcasts waiting for acknowledgements, by request id.
    requests: Mutex<HashMap<u64, mpsc::UnboundedSender<Remote>>>,
    next_request: AtomicU64,
    next_remote_ack: AtomicU64,
    state: watch::Sender<SubscriptionState>,
    on_resubscribe: Option<Callback>,
    /// The other instances and their sockets' room memberships.
    peers: Mutex<Peers>,
    /// The subscriber connection's sink and the room channels it is subscribed to. An async
    /// lock: (un)subscribing waits for Redis, and the changes must reach it in order.
    rooms: tokio::sync::Mutex<RoomSubscriptions>,
}

/// What the current subscriber connection is subscribed to, besides the shared channels.
#[derive(Default)]
struct RoomSubscriptions {
    /// `None` while there is no subscriber connection.
    sink: Option<redis::aio::PubSubSink>,
    channels: HashSet<String>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn instance_channel(prefix: &str, id: &InstanceId) -> String {
    format!("{prefix}i:{}", hex(id))
}

fn room_channel(prefix: &str, namespace: &str, room: &str) -> String {
    format!("{prefix}r:{namespace}#{room}")
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn broadcast_ref(message: &BroadcastMessage) -> BroadcastRef<'_> {
    BroadcastRef {
        namespace: &message.namespace,
        target: &message.target,
        except: message.except.as_ref().map(SocketId::as_str),
        text: message.text().as_bytes(),
        attachments: message.attachments(),
    }
}

/// Limits for decoding answers relayed by other instances, which checked them already.
const RELAYED: Limits = Limits {
    max_attachments: 1024,
    max_packet_len: usize::MAX,
};

impl Inner {
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<usize, AdapterError> {
        let publish = async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|error| AdapterError::new(format!("no Redis connection: {error}")))?;
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<usize>(&mut conn)
                .await
                .map_err(|error| AdapterError::new(format!("Redis PUBLISH failed: {error}")))
        };
        tokio::time::timeout(millis(self.config.publish_timeout_ms), publish)
            .await
            .unwrap_or_else(|_| Err(AdapterError::new("Redis PUBLISH timed out")))
    }

    /// The channel a broadcast travels on: its room's own channel when it is for one room
    /// other than a `user:` or `session:` room, else the shared one.
    fn channel_for(&self, message: &BroadcastMessage) -> String {
        match &message.target {
            Target::Rooms(rooms) => match rooms.as_slice() {
                [room] if !is_reserved_room(room) => {
                    room_channel(&self.config.channel_prefix, &message.namespace, room)
                }
                _ => self.broadcast_channel.clone(),
            },
            Target::All => self.broadcast_channel.clone(),
        }
    }

    /// Brings the subscription to a room's channel in line with the node: subscribed while the
    /// room has a local member, not otherwise. Without a subscriber connection it does nothing;
    /// the next connection subscribes to every local room.
    async fn sync_room(&self, namespace: &str, room: &str) {
        let channel = room_channel(&self.config.channel_prefix, namespace, room);
        let mut rooms = self.rooms.lock().await;
        let wanted = self.node.has_room(namespace, room);
        if wanted == rooms.channels.contains(&channel) {
            return;
        }
        let Some(sink) = rooms.sink.as_mut() else {
            return;
        };
        let timeout = millis(self.config.connect_timeout_ms);
        let result = if wanted {
            tokio::time::timeout(timeout, sink.subscribe(&channel)).await
        } else {
            tokio::time::timeout(timeout, sink.unsubscribe(&channel)).await
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "realtime adapter: room channel (un)subscribe failed");
            }
            Err(_) => tracing::warn!("realtime adapter: room channel (un)subscribe timed out"),
        }
        // Recorded even after a failure: a connection that fails is replaced, and its
        // successor subscribes from the node's state.
        if wanted {
            rooms.channels.insert(channel);
        } else {
            rooms.channels.remove(&channel);
        }
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes without making the caller wait (the subscriber loop must never wait).
    fn spawn_publish(self: &Arc<Self>, channel: String, payload: Vec<u8>) {
        let inner = self.clone();
        tokio::spawn(async move {
            if let Err(error) = inner.publish(&channel, &payload).await {
                tracing::warn!(%error, "realtime adapter: control message not sent");
            }
        });
    }

    /// Tells this instance's sockets in the room that a member of another instance joined or
    /// left.
    fn announce_locally(&self, member: &Membership, joined: bool) {
        let change = PresenceChange {
            namespace: member.namespace.clone(),
            room: member.room.clone(),
            socket_id: SocketId::from_wire(&member.socket_id),
            user_id: member.user_id,
            joined,
        };
        match change.to_message() {
            Ok(message) => {
                self.node.deliver(&message);
            }
            Err(error) => tracing::warn!(%error, "realtime adapter: presence not encoded"),
        }
    }

    /// This instance's sockets' memberships, for an instance that asked.
    fn local_members(&self) -> Vec<WireMember> {
        self.node
            .public_memberships()
            .into_iter()
            .map(|change| WireMember {
                namespace: change.namespace,
                room: change.room,
                socket_id: change.socket_id.as_str().to_owned(),
                user_id: change.user_id.to_string(),
            })
            .collect()
    }

    /// Forgets instances that fell silent and tells local members who left with them.
    fn expire_peers(&self) {
        let gone = self
            .lock_peers()
            .expire(Instant::now(), millis(self.config.peer_timeout_ms));
        if !gone.is_empty() {
            tracing::warn!(
                memberships = gone.len(),
                "realtime adapter: an instance fell silent; its sockets left their rooms"
            );
        }
        for member in &gone {
            self.announce_locally(member, false);
        }
    }

    fn route(&self, request: u64, remote: Remote) {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = requests.get(&request) {
            let _ = tx.send(remote);
        }
    }

    fn forget(&self, request: u64) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request);
    }

    fn subscribed(self: &Arc<Self>) {
        let mut subscribes = 0;
        self.state.send_modify(|state| {
            state.subscribed = true;
            state.subscribes += 1;
            subscribes = state.subscribes;
        });
        // Whatever the others did while this instance could not hear them is asked for again;
        // meanwhile nobody is declared dead for this instance's own deafness.
        self.lock_peers().refresh_all(Instant::now());
        self.spawn_publish(
            self.broadcast_channel.clone(),
            wire::encode_sync_request(&self.id),
        );
        if subscribes > 1 {
            tracing::info!(subscribes, "realtime adapter resubscribed to Redis");
            if let Some(callback) = &self.on_resubscribe {
                callback();
            }
        }
    }

    /// Handles one message from the subscription. Never waits: deliveries are queued, and
    /// acknowledgements are collected by a task of their own.
    fn handle(self: &Arc<Self>, payload: &[u8]) {
        let Some(envelope) = wire::decode(Bytes::copy_from_slice(payload)) else {
            tracing::warn!(
                len = payload.len(),
                "realtime adapter: malformed message ignored"
            );
            return;
        };
        if envelope.origin == self.id {
            // Our own message: already delivered here. An ack request still counts this
            // instance among the listeners `PUBLISH` reported, with nothing to wait for.
            if let Frame::AckBroadcast { request, .. } = envelope.frame {
                self.route(request, Remote::Count(0));
            }
            return;
        }
        let new_peer = self.lock_peers().heard(envelope.origin, Instant::now());
        if new_peer && envelope.frame != Frame::SyncRequest {
            // An instance this one did not know (it started, or came back after being
            // forgotten): ask it for its memberships on its own channel.
            let channel = instance_channel(&self.config.channel_prefix, &envelope.origin);
            self.spawn_publish(channel, wire::encode_sync_request(&self.id));
        }
        match envelope.frame {
            Frame::Heartbeat => {}
            Frame::SyncRequest => {
                let channel = instance_channel(&self.config.channel_prefix, &envelope.origin);
                let members = self.local_members();
                self.spawn_publish(channel, wire::encode_sync(&self.id, &members));
            }
            Frame::Sync(members) => {
                let members = members
                    .into_iter()
                    .filter_map(Membership::from_wire)
                    .collect();
                let (gone, came) =
                    self.lock_peers()
                        .replace(envelope.origin, members, Instant::now());
                for member in &gone {
                    self.announce_locally(member, false);
                }
                for member in &came {
                    self.announce_locally(member, true);
                }
            }
            Frame::Presence { member, joined } => match Membership::from_wire(member) {
                Some(member) => {
                    self.lock_peers().apply(
                        envelope.origin,
                        member.clone(),
                        joined,
                        Instant::now(),
                    );
                    self.announce_locally(&member, joined);
                }
                None => tracing::warn!("realtime adapter: bad presence frame ignored"),
            },
            Frame::Broadcast(broadcast) => {
                if let Some(message) = into_message(broadcast, None) {
                    self.node.deliver(&message);
                }
            }
            Frame::AckBroadcast {
                request,
                timeout_ms,
                broadcast,
            } => self.answer_acks(
                envelope.origin,
                request,
                millis(timeout_ms.into()),
                broadcast,
            ),
            Frame::DisconnectSession(session) => match session.parse::<SessionId>() {
                Ok(session) => {
                    self.node.disconnect_session(session);
                }
                Err(_) => tracing::warn!("realtime adapter: bad session id ignored"),
            },
            Frame::AckCount { request, count } => self.route(request, Remote::Count(count)),
            Frame::AckReply {
                request,
                socket_id,
                text,
                attachments,
            } => match decode_ack_args(&text, attachments) {
                Some(args) => self.route(
                    request,
                    Remote::Reply(AckReply {
                        socket_id: SocketId::from_wire(&socket_id),
                        args,
                    }),
                ),
                None => tracing::warn!("realtime adapter: malformed ack reply ignored"),
            },
        }
    }

    /// Delivers another instance's broadcast with acknowledgements to this instance's sockets
    /// and relays their answers to the origin.
    fn answer_acks(
        self: &Arc<Self>,
        origin: InstanceId,
        request: u64,
        timeout: Duration,
        broadcast: WireBroadcast,
    ) {
        let ack_id = REMOTE_ACK_BASE + self.next_remote_ack.fetch_add(1, Ordering::Relaxed);
        let text = std::str::from_utf8(&broadcast.text)
            .ok()
            .and_then(|text| wire::replace_ack_id(text, ack_id));
        let Some(message) = text.and_then(|text| into_message(broadcast, Some(text))) else {
            tracing::warn!("realtime adapter: ack broadcast without an ack id ignored");
            return;
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let expected = self.node.deliver_with_ack(&message, ack_id, timeout, &tx);
        drop(tx);
        let inner = self.clone();
        let deadline = Instant::now() + timeout;
        tokio::spawn(async move {
            let channel = instance_channel(&inner.config.channel_prefix, &origin);
            let count = u32::try_from(expected).unwrap_or(u32::MAX);
            let payload = wire::encode_ack_count(&inner.id, request, count);
            if let Err(error) = inner.publish(&channel, &payload).await {
                tracing::warn!(%error, "realtime adapter: ack count not sent");
            }
            for _ in 0..expected {
                let Ok(Some(reply)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                    break;
                };
                let Ok(encoded) = Packet::ack(MAIN_NAMESPACE, 0, reply.args).encode_with(&RELAYED)
                else {
                    continue;
                };
                let payload = wire::encode_ack_reply(
                    &inner.id,
                    request,
                    reply.socket_id.as_str(),
                    encoded.socketio_text().as_bytes(),
                    encoded.attachments(),
                );
                if let Err(error) = inner.publish(&channel, &payload).await {
                    tracing::warn!(%error, "realtime adapter: ack reply not sent");
                }
            }
        });
    }
}

/// A broadcast from another instance as this instance's node delivers it, optionally with a
/// rewritten text.
fn into_message(broadcast: WireBroadcast, text: Option<String>) -> Option<BroadcastMessage> {
    let text = match text {
        Some(text) => ByteString::from(text),
        None => ByteString::try_from(broadcast.text).ok()?,
    };
    Some(BroadcastMessage {
        namespace: broadcast.namespace,
        target: broadcast.target,
        except: broadcast.except.as_deref().map(SocketId::from_wire),
        packet: Arc::new(OutPacket {
            text,
            attachments: broadcast.attachments,
        }),
    })
}

fn decode_ack_args(text: &[u8], attachments: Vec<Bytes>) -> Option<Vec<Value>> {
    let mut decoder = socketio::Decoder::new(RELAYED);
    let mut packet = decoder.feed_text(std::str::from_utf8(text).ok()?).ok()?;
    for attachment in attachments {
        packet = decoder.feed_binary(attachment).ok()?;
    }
    match packet?.kind {
        PacketKind::Ack { args, .. } => Some(args),
        _ => None,
    }
}

/// Removes an ack request when its collection ends, however it ends.
struct RequestGuard<'a> {
    inner: &'a Inner,
    request: u64,
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.inner.forget(self.request);
    }
}

impl Adapter for RedisAdapter {
    fn broadcast(&self, message: BroadcastMessage) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.node.deliver(&message);
        let payload = wire::encode_broadcast(&self.inner.id, broadcast_ref(&message));
        let channel = self.inner.channel_for(&message);
        drop(message);
        Box::pin(async move { self.inner.publish(&channel, &payload).await.map(drop) })
    }

    fn broadcast_with_ack(
        &self,
        message: BroadcastMessage,
        ack_id: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckReplies, AdapterError>> {
        Box::pin(async move {
            let inner = &*self.inner;
            let request = inner.next_request.fetch_add(1, Ordering::Relaxed);
            let (remote_tx, mut remote_rx) = mpsc::unbounded_channel();
            inner
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(request, remote_tx);
            let _guard = RequestGuard { inner, request };
            let deadline = Instant::now() + timeout;

            let (local_tx, mut local_rx) = mpsc::unbounded_channel();
            let local_expected = inner
                .node
                .deliver_with_ack(&message, ack_id, timeout, &local_tx);
            drop(local_tx);
            let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            let payload =
                wire::encode_ack_broadcast(&inner.id, request, timeout_ms, broadcast_ref(&message));
            let channel = inner.channel_for(&message);
            drop(message);
            // Every listening instance, this one included when it listens on that channel,
            // reports how many answers to expect.
            let instances = inner.publish(&channel, &payload).await?;

            let mut replies = Vec::new();
            let (mut local_replies, mut local_open) = (0, true);
            let (mut reports, mut remote_expected, mut remote_replies) = (0, 0, 0);
            loop {
                let local_done = !local_open || local_replies >= local_expected;
                if local_done && reports >= instances && remote_replies >= remote_expected {
                    break;
                }
                tokio::select! {
                    reply = local_rx.recv(), if local_open => match reply {
                        Some(reply) => {
                            local_replies += 1;
                            replies.push(reply);
                        }
                        None => local_open = false,
                    },
                    remote = remote_rx.recv() => match remote {
                        Some(Remote::Count(count)) => {
                            reports += 1;
                            remote_expected += count as usize;
                        }
                        Some(Remote::Reply(reply)) => {
                            remote_replies += 1;
                            replies.push(reply);
                        }
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let missing = (local_expected + remote_expected).saturating_sub(replies.len());
            Ok(AckReplies { replies, missing })
        })
    }

    fn disconnect_session(&self, session_id: SessionId) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.node.disconnect_session(session_id);
        let payload = wire::encode_disconnect_session(&self.inner.id, &session_id.to_string());
        Box::pin(async move {
            self.inner
                .publish(&self.inner.broadcast_channel, &payload)
                .await
                .map(drop)
        })
    }

    fn presence(&self, change: PresenceChange) -> BoxFuture<'_, Result<(), AdapterError>> {
        let delivered = change
            .to_message()
            .map(|message| {
                self.inner.node.deliver(&message);
            })
            .map_err(|error| AdapterError::new(format!("presence not encoded: {error}")));
        let member = WireMember {
            namespace: change.namespace,
            room: change.room,
            socket_id: change.socket_id.as_str().to_owned(),
            user_id: change.user_id.to_string(),
        };
        let payload = wire::encode_presence(&self.inner.id, &member, change.joined);
        Box::pin(async move {
            delivered?;
            // The join is acknowledged after this returns: by then this instance listens on
            // the room's channel, so nothing sent to the room afterwards misses the new member.
            self.inner.sync_room(&member.namespace, &member.room).await;
            self.inner
                .publish(&self.inner.broadcast_channel, &payload)
                .await
                .map(drop)
        })
    }

    fn room_members<'a>(
        &'a self,
        namespace: &'a str,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<UserId>, AdapterError>> {
        let mut members: HashSet<UserId> = self
            .inner
            .node
            .room_users(namespace, room)
            .into_iter()
            .collect();
        members.extend(self.inner.lock_peers().users_in(namespace, room));
        Box::pin(async move { Ok(members.into_iter().collect()) })
    }
}

/// Publishes this instance's heartbeat and forgets silent instances, until the adapter is
/// dropped. While this instance is not subscribed it cannot hear anyone, so nobody is expired.
async fn heartbeat(inner: Arc<Inner>, stop: CancellationToken) {
    let period = millis(inner.config.heartbeat_interval_ms.max(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = wire::encode_heartbeat(&inner.id);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !inner.state.borrow().subscribed {
            continue;
        }
        inner.expire_peers();
        if let Err(error) = inner.publish(&inner.broadcast_channel, &beat).await {
            tracing::debug!(%error, "realtime adapter: heartbeat not sent");
        }
    }
}

/// The subscriber task: connects, subscribes, listens; after any failure waits (exponential
/// backoff with jitter) and starts again, until the adapter is dropped.
async fn subscriber(inner: Arc<Inner>, client: redis::Client, stop: CancellationToken) {
    let min = millis(inner.config.reconnect_min_ms.max(1));
    let max = millis(inner.config.reconnect_max_ms).max(min);
    let mut backoff = min;
    loop {
        let connect = tokio::time::timeout(
            millis(inner.config.connect_timeout_ms),
            subscribe(&client, &inner),
        );
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = connect => connected,
        };
        match connected {
            Ok(Ok(pubsub)) => {
                backoff = min;
                let (sink, stream) = pubsub.split();
                if let Err(error) = subscribe_rooms(&inner, sink.clone()).await {
                    tracing::warn!(%error, "realtime adapter cannot subscribe to its rooms");
                    inner.rooms.lock().await.sink = None;
                } else {
                    inner.subscribed();
                    let why = listen(&inner, sink, stream, &stop).await;
                    let mut rooms = inner.rooms.lock().await;
                    rooms.sink = None;
                    rooms.channels.clear();
                    drop(rooms);
                    inner.state.send_modify(|state| state.subscribed = false);
                    if stop.is_cancelled() {
                        return;
                    }
                    tracing::warn!(why, "realtime adapter lost its Redis subscription");
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "realtime adapter cannot subscribe to Redis");
            }
            Err(_) => tracing::warn!("realtime adapter: subscribing to Redis timed out"),
        }
        // Full jitter on the upper half, so instances do not reconnect in lockstep.
        let wait = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

async fn subscribe(
    client: &redis::Client,
    inner: &Inner,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(&[inner.broadcast_channel.as_str(), inner.own_channel.as_str()])
        .await?;
    Ok(pubsub)
}

/// Subscribes a new connection to the channels of every room with a local member, and makes
/// it the connection that room changes go to.
async fn subscribe_rooms(
    inner: &Inner,
    mut sink: redis::aio::PubSubSink,
) -> redis::RedisResult<()> {
    let mut rooms = inner.rooms.lock().await;
    let prefix = &inner.config.channel_prefix;
    let channels: HashSet<String> = inner
        .node
        .public_rooms()
        .into_iter()
        .map(|(namespace, room)| room_channel(prefix, &namespace, &room))
        .collect();
    if !channels.is_empty() {
        let list: Vec<&String> = channels.iter().collect();
        tokio::time::timeout(
            millis(inner.config.connect_timeout_ms),
            sink.subscribe(list),
        )
        .await
        .map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "subscribing to rooms timed out"))
        })??;
    }
    rooms.sink = Some(sink);
    rooms.channels = channels;
    Ok(())
}

/// Applies the node's room changes to the room channel subscriptions, in order, until the
/// adapter is dropped.
async fn follow_rooms(
    inner: Arc<Inner>,
    mut changes: mpsc::UnboundedReceiver<crate::node::RoomKey>,
    stop: CancellationToken,
) {
    loop {
        let (namespace, room) = tokio::select! {
            () = stop.cancelled() => return,
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
        };
        inner.sync_room(&namespace, &room).await;
    }
}

/// Delivers messages until the connection fails or stops answering `PING`; returns why.
async fn listen(
    inner: &Arc<Inner>,
    mut sink: redis::aio::PubSubSink,
    mut stream: redis::aio::PubSubStream,
    stop: &CancellationToken,
) -> &'static str {
    let period = millis(inner.config.ping_interval_ms.max(1));
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return "stopped",
            message = stream.next() => match message {
                Some(message) => inner.handle(message.get_payload_bytes()),
                None => return "connection closed",
            },
            _ = ticker.tick() => {
                let ping = sink.ping::<redis::Value>();
                match tokio::time::timeout(millis(inner.config.connect_timeout_ms), ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return "PING failed",
                    Err(_) => return "PING timed out",
                }
            }
        }
    }
}
