//! The one error type of the wire codec.

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
