//! Socket.IO v5 packets, carried in Engine.IO `message` packets.
//!
//! Text form: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, where the namespace is
//! left out when it is the main namespace `/`. A packet that carries binary data is a
//! `BINARY_EVENT` or `BINARY_ACK`: its JSON holds `{"_placeholder":true,"num":N}` in place of
//! each blob, and the blobs follow as separate binary Engine.IO messages (the attachments).
//!
//! ```
//! use keel_realtime::socketio::{Decoder, Packet, PacketKind, Value};
//! use serde_json::json;
//!
//! // Receiving: feed every Engine.IO message to one Decoder per connection.
//! let mut decoder = Decoder::default();
//! let header = r#"51-["baz",{"_placeholder":true,"num":0}]"#;
//! assert!(decoder.feed_text(header)?.is_none()); // waits for its attachment
//! let packet = decoder.feed_binary(vec![1, 2, 3, 4].into())?.expect("complete");
//! assert_eq!(
//!     packet.kind,
//!     PacketKind::Event {
//!         name: "baz".into(),
//!         args: vec![Value::Binary(vec![1, 2, 3, 4].into())],
//!         ack_id: None,
//!     }
//! );
//!
//! // Sending: encode once, share the text and attachments among all recipients.
//! let encoded = Packet::event("/", "hey", vec![json!("Jude").into()], None).encode()?;
//! assert_eq!(encoded.engineio_text(), r#"42["hey","Jude"]"#);
//! # Ok::<(), keel_realtime::CodecError>(())
//! ```

mod decode;
mod encode;
mod value;

use std::fmt;

pub use decode::Decoder;
pub use encode::{Encoded, encode_ack, encode_event};
pub use value::Value;

/// The default limit on binary attachments per packet.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;

/// The default limit on the length of one Socket.IO packet or attachment, in bytes (the
/// Engine.IO default `maxPayload`).
pub const DEFAULT_MAX_PACKET_LEN: usize = crate::engineio::DEFAULT_MAX_PAYLOAD;

/// The most digits an acknowledgement id may have: `u64::MAX` has 20.
pub const MAX_ACK_ID_DIGITS: usize = 20;

/// The namespace every client connects to unless it asks for another.
pub const MAIN_NAMESPACE: &str = "/";

/// Limits applied when decoding (and, for attachments, encoding) packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most binary attachments per packet. Checked before any attachment is stored.
    pub max_attachments: usize,
    /// Longest text packet or attachment, in bytes.
    pub max_packet_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_attachments: DEFAULT_MAX_ATTACHMENTS,
            max_packet_len: DEFAULT_MAX_PACKET_LEN,
        }
    }
}

/// The Socket.IO packet types and their wire digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// `0`: connect to a namespace (client, with optional auth) or accept it (server, `{sid}`).
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event without binary data.
    Event = 2,
    /// `3`: an acknowledgement without binary data.
    Ack = 3,
    /// `4`: the server refuses a connection to a namespace.
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    /// The type for a wire digit (`b'0'`..`b'6'`), if it is one.
    pub const fn from_digit(byte: u8) -> Option<Self> {
        Some(match byte {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The wire digit of this type (`'0'`..`'6'`).
    pub const fn as_char(self) -> char {
        (b'0' + self as u8) as char
    }

    /// Whether packets of this type carry binary attachments.
    pub const fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "CONNECT",
            Self::Disconnect => "DISCONNECT",
            Self::Event => "EVENT",
            Self::Ack => "ACK",
            Self::ConnectError => "CONNECT_ERROR",
            Self::BinaryEvent => "BINARY_EVENT",
            Self::BinaryAck => "BINARY_ACK",
        })
    }
}

/// A JSON object, the payload of `CONNECT` and `CONNECT_ERROR`.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// One Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The namespace, `/` for the main one. Starts with `/` and contains no `,`.
    pub namespace: String,
    /// What the packet says.
    pub kind: PacketKind,
}

/// The type-specific content of a [`Packet`].
///
/// Events and acks with and without binary data share a variant: the wire type (`EVENT` or
/// `BINARY_EVENT`, `ACK` or `BINARY_ACK`) follows from whether the arguments carry binary data,
/// so a packet cannot claim one and hold the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketKind {
    /// `CONNECT`: from the client with its optional `auth` object, from the server with
    /// `{"sid": ...}`.
    Connect(Option<JsonObject>),
    /// `DISCONNECT`.
    Disconnect,
    /// `EVENT` or `BINARY_EVENT`: the wire payload is `[name, ...args]`.
    Event {
        /// The event name (the first array element).
        name: String,
        /// The arguments after the name.
        args: Vec<Value>,
        /// Set when the sender wants an acknowledgement.
        ack_id: Option<u64>,
    },
    /// `ACK` or `BINARY_ACK`: the wire payload is `[...args]`.
    Ack {
        /// The id of the event being acknowledged.
        ack_id: u64,
        /// The acknowledgement's arguments (possibly none).
        args: Vec<Value>,
    },
    /// `CONNECT_ERROR`, e.g. `{"message":"unauthorized","data":{...}}`.
    ConnectError(JsonObject),
}

impl Packet {
    /// A `CONNECT` packet.
    pub fn connect(namespace: impl Into<String>, payload: Option<JsonObject>) -> Self {
        Self::new(namespace, PacketKind::Connect(payload))
    }

    /// A `DISCONNECT` packet.
    pub fn disconnect(namespace: impl Into<String>) -> Self {
        Self::new(namespace, PacketKind::Disconnect)
    }

    /// An `EVENT` (or `BINARY_EVENT`, if an argument carries binary data) packet.
    pub fn event(
        namespace: impl Into<String>,
        name: impl Into<String>,
        args: Vec<Value>,
        ack_id: Option<u64>,
    ) -> Self {
        let name = name.into();
        Self::new(namespace, PacketKind::Event { name, args, ack_id })
    }

    /// An `ACK` (or `BINARY_ACK`, if an argument carries binary data) packet.
    pub fn ack(namespace: impl Into<String>, ack_id: u64, args: Vec<Value>) -> Self {
        Self::new(namespace, PacketKind::Ack { ack_id, args })
    }

    /// A `CONNECT_ERROR` packet.
    pub fn connect_error(namespace: impl Into<String>, payload: JsonObject) -> Self {
        Self::new(namespace, PacketKind::ConnectError(payload))
    }

    fn new(namespace: impl Into<String>, kind: PacketKind) -> Self {
        Self {
            namespace: namespace.into(),
            kind,
        }
    }

    /// The wire type of this packet; events and acks carrying binary data are `BINARY_*`.
    pub fn packet_type(&self) -> PacketType {
        match &self.kind {
            PacketKind::Connect(_) => PacketType::Connect,
            PacketKind::Disconnect => PacketType::Disconnect,
            PacketKind::ConnectError(_) => PacketType::ConnectError,
            PacketKind::Event { args, .. } if args.iter().any(Value::has_binary) => {
                PacketType::BinaryEvent
            }
            PacketKind::Event { .. } => PacketType::Event,
            PacketKind::Ack { args, .. } if args.iter().any(Value::has_binary) => {
                PacketType::BinaryAck
            }
            PacketKind::Ack { .. } => PacketType::Ack,
        }
    }
}
