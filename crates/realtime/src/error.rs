//! The error types: the wire codec's, and those of sending, acknowledgements and broadcasts.

use crate::socketio;

/// Why a packet could not be decoded or encoded.
///
/// Every decoding variant means the peer broke the protocol: the transport closes that
/// connection (and only that one). The messages name the rule that was broken but never echo
/// the peer's input, so they are safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The packet (or a packet inside a polling payload) was empty.
    #[error("empty packet")]
    EmptyPacket,

    /// The packet, payload or attachment is longer than the caller's limit.
    #[error("{len} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// Length of the rejected input, in bytes.
        len: usize,
        /// The limit it was checked against.
        max: usize,
    },

    /// The input was not valid UTF-8 where text is required (polling payloads).
    #[error("text is not valid UTF-8")]
    InvalidUtf8,

    /// The first character is not an Engine.IO packet type (`0`..`6`, or `b` for base64 binary).
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEngineIoType(char),

    /// The first character is not a Socket.IO packet type (`0`..`6`).
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownSocketIoType(char),

    /// A `b`-prefixed binary packet did not hold valid base64.
    #[error("invalid base64 in a binary packet")]
    InvalidBase64,

    /// A JSON payload (or the `open` handshake) was not valid JSON, or could not be serialized.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// The attachment count of a binary packet is missing, not a number or not followed by `-`.
    #[error("invalid attachment count")]
    InvalidAttachmentCount,

    /// A binary packet announces (or an encoded packet carries) more attachments than allowed.
    #[error("{count} binary attachments exceed the limit of {max}")]
    TooManyAttachments {
        /// The announced or carried number of attachments (at least this many).
        count: usize,
        /// The configured `max_attachments`.
        max: usize,
    },

    /// The acknowledgement id is missing where required, present where not allowed, or is not
    /// an unsigned integer that fits in 64 bits.
    #[error("invalid acknowledgement id")]
    InvalidAckId,

    /// A namespace that does not start with `/` or contains `,` (which would end it early).
    #[error("invalid namespace")]
    InvalidNamespace,

    /// The payload does not have the shape its packet type requires.
    #[error("invalid {packet_type} payload: {reason}")]
    InvalidPayload {
        /// The packet type whose rule was broken.
        packet_type: socketio::PacketType,
        /// The rule, e.g. "must be a non-empty array whose first element is a string".
        reason: &'static str,
    },

    /// A `{"_placeholder":true,"num":N}` object is malformed, out of range or used twice, or an
    /// attachment is never referenced.
    #[error("invalid binary placeholder: {0}")]
    InvalidPlaceholder(&'static str),

    /// A binary frame arrived although no binary packet is waiting for attachments.
    #[error("binary frame received while no attachment was expected")]
    UnexpectedBinary,

    /// A text packet arrived while a binary packet still waits for its attachments.
    #[error("text packet received while {0} binary attachment(s) are still expected")]
    AttachmentsPending(usize),

    /// [`socketio::Packet::decode`] was given a binary packet header; use a
    /// [`socketio::Decoder`] to collect its attachments.
    #[error("packet expects {0} binary attachment(s); decode it with a Decoder")]
    AttachmentsExpected(usize),

    /// A text packet contains the record separator `\x1e`, so it cannot be put in a polling
    /// payload without being split into two packets on the other side.
    #[error("packet contains the record separator \\x1e")]
    SeparatorInPacket,
}

/// Why a packet could not be queued for a socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The packet could not be encoded (e.g. more attachments than allowed).
    #[error("cannot encode the packet: {0}")]
    Codec(#[from] CodecError),
    /// The socket's outbound queue was full; its connection is being closed.
    #[error("the socket's outbound queue is full; it is being disconnected")]
    Overflow,
    /// The socket's connection is closed or closing.
    #[error("the socket is disconnected")]
    Closed,
}

/// Why an acknowledgement did not come back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The event could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The client did not acknowledge within the timeout.
    #[error("no acknowledgement within the timeout")]
    Timeout,
    /// The socket disconnected before acknowledging.
    #[error("the socket disconnected before acknowledging")]
    Disconnected,
}

impl From<CodecError> for AckError {
    fn from(error: CodecError) -> Self {
        Self::Send(SendError::Codec(error))
    }
}

/// Why a socket could not join a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The socket is already in `max_rooms_per_socket` rooms.
    #[error("the socket is in too many rooms")]
    TooManyRooms,
    /// The socket is no longer connected.
    #[error("the socket is disconnected")]
    Disconnected,
}

/// A failure of the cross-instance adapter (e.g. its pub/sub connection is down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("realtime adapter: {message}")]
pub struct AdapterError {
    /// What failed, safe to log.
    pub message: String,
}

impl AdapterError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Why a broadcast from server code failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The packet could not be encoded.
    #[error("cannot encode the packet: {0}")]
    Codec(#[from] CodecError),
    /// The adapter could not deliver it to the other instances.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}
