//! Keel's realtime server speaks the Engine.IO v4 / Socket.IO v5 wire protocol, so the official
//! JavaScript `socket.io-client` 4.x connects to it unchanged.
//!
//! This crate currently holds the wire codec; the transport (actix-ws and HTTP long-polling),
//! rooms, acknowledgements and the emitter build on it.
//!
//! # Layers
//!
//! - [`engineio`]: the Engine.IO v4 packets (`open`, `close`, `ping`, `pong`, `message`,
//!   `upgrade`, `noop`), one per WebSocket frame, or joined by the record separator `\x1e` in an
//!   HTTP long-polling payload, where binary messages become `b<base64>`.
//! - [`socketio`]: the Socket.IO v5 packets carried inside Engine.IO `message` packets
//!   (`CONNECT` .. `BINARY_ACK`), with a [`socketio::Decoder`] that reassembles binary packets
//!   from their attachment frames and an encoder that produces the text plus attachment frames.
//!
//! Every decoding error is a [`CodecError`]; the caller closes the offending connection and no
//! other. Decoding never panics, and the memory it allocates is bounded by the input, whose size
//! the caller limits (`maxPayload`), and by the attachment limit, which is checked before any
//! attachment storage is allocated.
//!
//! # Sending to many sockets
//!
//! An outgoing packet is encoded once into a [`socketio::Encoded`]: one `String` that is already
//! a complete Engine.IO message (`42["event",...]`) plus the binary attachments as
//! [`bytes::Bytes`]. A transport turns the string into its shared frame type once (for actix-ws,
//! `ByteString::from(String)` takes the buffer without copying) and clones that handle for each
//! recipient.

mod error;

pub mod engineio;
pub mod socketio;

pub use error::CodecError;
