//! Keel's realtime server speaks the Engine.IO v4 / Socket.IO v5 wire protocol, so the official
//! JavaScript `socket.io-client` 4.x connects to it unchanged.
//!
//! # Using it
//!
//! ```no_run
//! use std::sync::Arc;
//! use keel_realtime::{AllowAll, RealtimeConfig, RealtimeServer};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // The application implements `ConnectAuth` with its own tokens and sessions.
//! let realtime = RealtimeServer::builder(RealtimeConfig::default(), Arc::new(AllowAll)).build()?;
//! let mounted = realtime.clone();
//! let server = actix_web::HttpServer::new(move || {
//!     actix_web::App::new().configure(|cfg| mounted.configure(cfg))
//! })
//! .bind(("127.0.0.1", 0))?
//! .run();
//! // Server code sends with `realtime.emitter()`; on shutdown: `realtime.shutdown()`.
//! # Ok(()) }
//! ```
//!
//! # Layers
//!
//! - [`engineio`]: the Engine.IO v4 packets (`open`, `close`, `ping`, `pong`, `message`,
//!   `upgrade`, `noop`), one per WebSocket frame, or joined by the record separator `\x1e` in an
//!   HTTP long-polling payload, where binary messages become `b<base64>`.
//! - [`socketio`]: the Socket.IO v5 packets carried inside Engine.IO `message` packets
//!   (`CONNECT` .. `BINARY_ACK`), with a [`socketio::Decoder`] that reassembles binary packets
//!   from their attachment frames and an encoder that produces the text plus attachment frames.
//! - The transports ([`RealtimeServer`]): WebSocket on actix-ws, and HTTP long-polling with the
//!   upgrade to WebSocket. One task per connection owns its sockets; a bounded outbound queue
//!   is drained by a writer task (WebSocket) or by the pending GET (polling).
//! - Sockets, namespaces ([`NamespaceHandler`]), rooms, acknowledgements, Keel's own events
//!   ([`KeelEvents`]), and the [`Emitter`] for server code, broadcasting through an
//!   [`Adapter`] ([`LocalAdapter`] for one instance, [`RedisAdapter`] for several).
//!
//! Every decoding error is a [`CodecError`]; the caller closes the offending connection and no
//! other. Decoding never panics, and the memory it allocates is bounded by the input, whose size
//! the caller limits (`maxPayload`), and by the attachment limit, which is checked before any
//! attachment storage is allocated.
//!
//! # Several instances
//!
//! A WebSocket connection lives on one instance from start to end, so it needs no sticky
//! sessions. Long-polling keeps a session in one instance's memory between requests: behind
//! several instances, a client's requests must reach the same one, e.g. with nginx
//!
//! ```text
//! upstream keel { ip_hash; server 10.0.0.1:8080; server 10.0.0.2:8080; }
//! location /socket.io/ {
//!     proxy_pass http://keel;
//!     proxy_http_version 1.1;
//!     proxy_set_header Upgrade $http_upgrade;
//!     proxy_set_header Connection "upgrade";
//! }
//! ```
//!
//! # Sending to many sockets
//!
//! An outgoing packet is encoded once into a [`socketio::Encoded`]: one `String` that is already
//! a complete Engine.IO message (`42["event",...]`) plus the binary attachments as
//! [`bytes::Bytes`]. The transport turns the string into its shared frame type once (for
//! actix-ws, `ByteString::from(String)` takes the buffer without copying) and queues that
//! handle, by reference count, for each recipient. Queues are bounded and never awaited: a
//! recipient whose queue is full is disconnected.

mod adapter;
mod auth;
mod config;
mod connection;
mod emitter;
mod error;
mod handler;
mod keel_events;
mod node;
mod polling;
mod redis_adapter;
mod server;
mod socket;

pub mod engineio;
pub mod socketio;

pub use adapter::{
    AckReplies, AckReply, Adapter, BroadcastMessage, LocalAdapter, PresenceChange, Target,
    collect_acks,
};
pub use auth::{AllowAll, AuthRefusal, ConnectAuth, ConnectRequest, Identity};
pub use config::{ConfigError, RealtimeConfig};
pub use emitter::{Broadcast, Emitter};
pub use error::{AckError, AdapterError, CodecError, EmitError, JoinError, SendError};
pub use handler::{DisconnectReason, NamespaceHandler};
pub use keel_events::{
    DefaultRoomPolicy, KeelEvents, RoomPolicy, codes, error_ack, is_reserved_room,
};
pub use node::{LocalNode, session_room, user_room};
pub use redis_adapter::{RedisAdapter, RedisAdapterBuilder, RedisAdapterConfig, SubscriptionState};
pub use server::{PATH, RealtimeServer, RealtimeServerBuilder};
pub use socket::{AckSender, Event, Socket, SocketId};
