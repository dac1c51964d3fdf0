//! Engine.IO v4 packets and the HTTP long-polling payload format.
//!
//! A packet is `<type digit>[<data>]` as text (`4hello`, `2probe`, `6`), or a binary message.
//! Over WebSocket every packet is one frame and a binary message is a binary frame holding the
//! raw bytes (no type byte: in v4 binary data is always a `message`). In an HTTP long-polling
//! body, packets are joined by the record separator `\x1e` and a binary message is written as
//! `b<base64>`.
//!
//! ```
//! use keel_realtime::engineio::{self, FrameRef, Message, Packet};
//!
//! let body = b"4hello\x1ebAQID";
//! let packets: Vec<Packet> = engineio::decode_payload(body, 1_000_000)?
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(packets[0], Packet::Message(Message::Text("hello".into())));
//! assert_eq!(packets[1], Packet::Message(Message::Binary(vec![1, 2, 3].into())));
//!
//! let frames = [FrameRef::Text("4hello"), FrameRef::Binary(&[1, 2, 3])];
//! assert_eq!(engineio::encode_payload(frames)?, "4hello\x1ebAQID");
//! # Ok::<(), keel_realtime::CodecError>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::CodecError;

/// The Engine.IO protocol revision implemented here (the `EIO=4` query parameter).
pub const PROTOCOL_VERSION: u8 = 4;

/// Separates packets in an HTTP long-polling payload (ASCII "record separator").
pub const RECORD_SEPARATOR: char = '\x1e';

/// The default `maxPayload`: the largest packet or polling body, in bytes, a peer may send.
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;

/// Standard alphabet; padding is written, and accepted whether present or not, because
/// browsers' base64 helpers differ on it and the reference server (Node's `Buffer`) is lenient.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The Engine.IO packet types and their wire digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// `0`: sent by the server when a session opens, with the [`Handshake`] as JSON.
    Open = 0,
    /// `1`: closes the transport.
    Close = 1,
    /// `2`: heartbeat sent by the server (or the `2probe` of an upgrade, sent by the client).
    Ping = 2,
    /// `3`: answer to a ping, echoing its data.
    Pong = 3,
    /// `4`: application data, text or binary.
    Message = 4,
    /// `5`: completes the upgrade from polling to WebSocket.
    Upgrade = 5,
    /// `6`: no operation; ends a pending poll during an upgrade.
    Noop = 6,
}

impl PacketType {
    /// The type for a wire digit (`b'0'`..`b'6'`), if it is one.
    pub const fn from_digit(byte: u8) -> Option<Self> {
        Some(match byte {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }

    /// The wire digit of this type (`'0'`..`'6'`).
    pub const fn as_char(self) -> char {
        (b'0' + self as u8) as char
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Close => "close",
            Self::Ping => "ping",
            Self::Pong => "pong",
            Self::Message => "message",
            Self::Upgrade => "upgrade",
            Self::Noop => "noop",
        })
    }
}

/// The body of the `open` packet.
///
/// Serializes to exactly `{"sid","upgrades","pingInterval","pingTimeout","maxPayload"}`, in
/// that order, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The Engine.IO session id (never reused as a Socket.IO socket id).
    pub sid: String,
    /// Transports the client may upgrade to: `["websocket"]` on polling, `[]` on WebSocket.
    pub upgrades: Vec<String>,
    /// Milliseconds between two server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong before it closes the session.
    pub ping_timeout: u64,
    /// Largest packet or polling body, in bytes, the client may send.
    pub max_payload: u64,
}

/// The data of a `message` packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (for Socket.IO, an encoded Socket.IO packet such as `2["hello"]`).
    Text(String),
    /// A binary message (for Socket.IO, an attachment of a binary packet).
    Binary(Bytes),
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0{...}`: session opened.
    Open(Handshake),
    /// `1`: close.
    Close,
    /// `2[data]`: ping; the data is empty except for the upgrade probe (`2probe`).
    Ping(String),
    /// `3[data]`: pong, echoing the ping's data.
    Pong(String),
    /// `4<text>` or a binary message.
    Message(Message),
    /// `5`: upgrade.
    Upgrade,
    /// `6`: noop.
    Noop,
}

/// An encoded packet that owns its data, in the form of one WebSocket frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame, e.g. `4hello`.
    Text(String),
    /// A binary frame: the raw bytes of a binary message.
    Binary(Bytes),
}

/// A borrowed encoded packet (see [`Frame`]), so a polling payload can be built from frames
/// stored in any shared form without copying them first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRef<'a> {
    /// A text frame, e.g. `4hello`.
    Text(&'a str),
    /// A binary frame: the raw bytes of a binary message.
    Binary(&'a [u8]),
}

impl Frame {
    /// Borrows this frame.
    pub fn as_frame_ref(&self) -> FrameRef<'_> {
        match self {
            Self::Text(text) => FrameRef::Text(text),
            Self::Binary(data) => FrameRef::Binary(data),
        }
    }
}

impl Packet {
    /// The type of this packet.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Open(_) => PacketType::Open,
            Self::Close => PacketType::Close,
            Self::Ping(_) => PacketType::Ping,
            Self::Pong(_) => PacketType::Pong,
            Self::Message(_) => PacketType::Message,
            Self::Upgrade => PacketType::Upgrade,
            Self::Noop => PacketType::Noop,
        }
    }

    /// Decodes a text packet: a WebSocket text frame, or one packet of a polling payload.
    ///
    /// `b<base64>` is accepted as a binary message, as the reference parser does on every
    /// transport. Data after `close`, `upgrade` and `noop` carries no meaning and is ignored,
    /// as the reference parser does.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] over `max_len` bytes, [`CodecError::EmptyPacket`],
    /// [`CodecError::UnknownEngineIoType`], [`CodecError::InvalidBase64`], or
    /// [`CodecError::Json`] for an `open` packet whose body is not a [`Handshake`].
    pub fn decode_text(text: &str, max_len: usize) -> Result<Self, CodecError> {
        check_len(text.len(), max_len)?;
        let Some(&first) = text.as_bytes().first() else {
            return Err(CodecError::EmptyPacket);
        };
        // Only slice after an ASCII first byte: slicing inside a multi-byte char would panic.
        if first == b'b' {
            let data = BASE64
                .decode(&text[1..])
                .map_err(|_| CodecError::InvalidBase64)?;
            return Ok(Self::Message(Message::Binary(Bytes::from(data))));
        }
        let Some(packet_type) = PacketType::from_digit(first) else {
            return Err(CodecError::UnknownEngineIoType(first_char(text)));
        };
        let data = &text[1..];
        Ok(match packet_type {
            PacketType::Open => Self::Open(serde_json::from_str(data)?),
            PacketType::Close => Self::Close,
            PacketType::Ping => Self::Ping(data.to_owned()),
            PacketType::Pong => Self::Pong(data.to_owned()),
            PacketType::Message => Self::Message(Message::Text(data.to_owned())),
            PacketType::Upgrade => Self::Upgrade,
            PacketType::Noop => Self::Noop,
        })
    }

    /// Decodes a WebSocket binary frame, which in Engine.IO v4 is always a binary message.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] over `max_len` bytes.
    pub fn decode_binary(data: Bytes, max_len: usize) -> Result<Self, CodecError> {
        check_len(data.len(), max_len)?;
        Ok(Self::Message(Message::Binary(data)))
    }

    /// Encodes this packet as one WebSocket frame. Use [`encode_payload`] for polling.
    ///
    /// # Errors
    /// [`CodecError::Json`] if the handshake cannot be serialized (it always can).
    pub fn encode(&self) -> Result<Frame, CodecError> {
        let packet_type = self.packet_type().as_char();
        let text = match self {
            Self::Message(Message::Binary(data)) => return Ok(Frame::Binary(data.clone())),
            Self::Open(handshake) => {
                let mut text = String::from(packet_type);
                text.push_str(&serde_json::to_string(handshake)?);
                text
            }
            Self::Ping(data) | Self::Pong(data) | Self::Message(Message::Text(data)) => {
                let mut text = String::with_capacity(1 + data.len());
                text.push(packet_type);
                text.push_str(data);
                text
            }
            Self::Close | Self::Upgrade | Self::Noop => String::from(packet_type),
        };
        Ok(Frame::Text(text))
    }
}

fn check_len(len: usize, max: usize) -> Result<(), CodecError> {
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    Ok(())
}

fn first_char(text: &str) -> char {
    text.chars().next().unwrap_or('\0')
}

/// Joins encoded packets into one HTTP long-polling body: text frames as they are, binary
/// frames as `b<base64>`, separated by `\x1e`. No frames give an empty body.
///
/// # Errors
/// [`CodecError::SeparatorInPacket`] if a text frame contains `\x1e`: sent as is, it would
/// reach the client as two packets, the second one chosen by whoever wrote the text.
pub fn encode_payload<'a, I>(frames: I) -> Result<String, CodecError>
where
    I: IntoIterator<Item = FrameRef<'a>>,
{
    let mut body = String::new();
    for (index, frame) in frames.into_iter().enumerate() {
        if index > 0 {
            body.push(RECORD_SEPARATOR);
        }
        match frame {
            FrameRef::Text(text) => {
                if text.as_bytes().contains(&(RECORD_SEPARATOR as u8)) {
                    return Err(CodecError::SeparatorInPacket);
                }
                body.push_str(text);
            }
            FrameRef::Binary(data) => {
                body.push('b');
                BASE64.encode_string(data, &mut body);
            }
        }
    }
    Ok(body)
}

/// Starts decoding an HTTP long-polling body (a POST from the client).
///
/// Packets are decoded lazily, one per [`Iterator::next`], so a body of many tiny packets
/// costs no more memory than the packet being handled; the caller may stop (or rate-limit) at
/// any packet. The iterator ends after the first error.
///
/// # Errors
/// [`CodecError::TooLarge`] over `max_len` bytes, [`CodecError::InvalidUtf8`]; each packet
/// then as [`Packet::decode_text`].
pub fn decode_payload(body: &[u8], max_len: usize) -> Result<PayloadDecoder<'_>, CodecError> {
    check_len(body.len(), max_len)?;
    let body = std::str::from_utf8(body).map_err(|_| CodecError::InvalidUtf8)?;
    Ok(PayloadDecoder {
        parts: Some(body.split(RECORD_SEPARATOR)),
        max_len,
    })
}

/// The packets of a polling body, decoded one at a time; see [`decode_payload`].
#[derive(Debug, Clone)]
pub struct PayloadDecoder<'a> {
    /// `None` once an error was returned: the rest of a broken body is not trusted.
    parts: Option<std::str::Split<'a, char>>,
    max_len: usize,
}

impl Iterator for PayloadDecoder<'_> {
    type Item = Result<Packet, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        let part = self.parts.as_mut()?.next()?;
        let packet = Packet::decode_text(part, self.max_len);
        if packet.is_err() {
            self.parts = None;
        }
        Some(packet)
    }
}

impl std::iter::FusedIterator for PayloadDecoder<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_PAYLOAD;

    fn decode(text: &str) -> Packet {
        Packet::decode_text(text, MAX).unwrap()
    }

    fn text(packet: &Packet) -> String {
        match packet.encode().unwrap() {
            Frame::Text(text) => text,
            Frame::Binary(_) => panic!("expected a text frame"),
        }
    }

    fn payload(body: &[u8]) -> Result<Vec<Packet>, CodecError> {
        decode_payload(body, MAX)?.collect()
    }

    fn handshake() -> Handshake {
        Handshake {
            sid: "lv_VI97HAXpY6yYWAAAC".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 5000,
            max_payload: 1_000_000,
        }
    }

    #[test]
    fn open_packet_is_exactly_the_spec_example() {
        let spec = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#;
        let packet = Packet::Open(handshake());
        assert_eq!(text(&packet), spec);
        assert_eq!(decode(spec), packet);
    }

    #[test]
    fn handshake_has_exactly_the_five_fields() {
        let value = serde_json::to_value(handshake()).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = [
            "sid",
            "upgrades",
            "pingInterval",
            "pingTimeout",
            "maxPayload",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn every_packet_type_both_ways() {
        let cases = [
            ("1", Packet::Close),
            ("2", Packet::Ping(String::new())),
            ("2probe", Packet::Ping("probe".into())),
            ("3", Packet::Pong(String::new())),
            ("3probe", Packet::Pong("probe".into())),
            ("4hello", Packet::Message(Message::Text("hello".into()))),
            ("4", Packet::Message(Message::Text(String::new()))),
            ("4€€€", Packet::Message(Message::Text("€€€".into()))),
            ("5", Packet::Upgrade),
            ("6", Packet::Noop),
        ];
        for (wire, packet) in cases {
            assert_eq!(decode(wire), packet, "decoding {wire:?}");
            assert_eq!(text(&packet), wire, "encoding {packet:?}");
            assert_eq!(
                PacketType::from_digit(wire.as_bytes()[0]),
                Some(packet.packet_type())
            );
        }
    }

    #[test]
    fn binary_message_is_a_raw_binary_frame() {
        let packet = Packet::Message(Message::Binary(Bytes::from_static(&[1, 2, 3])));
        assert_eq!(
            packet.encode().unwrap(),
            Frame::Binary(Bytes::from_static(&[1, 2, 3]))
        );
        assert_eq!(
            Packet::decode_binary(Bytes::from_static(&[1, 2, 3]), MAX).unwrap(),
            packet
        );
        assert!(matches!(
            Packet::decode_binary(Bytes::from_static(&[1, 2, 3]), 2),
            Err(CodecError::TooLarge { len: 3, max: 2 })
        ));
    }

    #[test]
    fn base64_binary_packet_with_or_without_padding() {
        let expected = Packet::Message(Message::Binary(Bytes::from_static(&[1, 2, 3, 4])));
        assert_eq!(decode("bAQIDBA=="), expected);
        assert_eq!(decode("bAQIDBA"), expected);
        assert_eq!(decode("b"), Packet::Message(Message::Binary(Bytes::new())));
        assert!(matches!(
            Packet::decode_text("b!!", MAX),
            Err(CodecError::InvalidBase64)
        ));
    }

    #[test]
    fn ignores_data_after_close_upgrade_and_noop() {
        assert_eq!(decode("1x"), Packet::Close);
        assert_eq!(decode("5x"), Packet::Upgrade);
        assert_eq!(decode("6x"), Packet::Noop);
    }

    #[test]
    fn rejects_malformed_packets() {
        assert!(matches!(
            Packet::decode_text("", MAX),
            Err(CodecError::EmptyPacket)
        ));
        assert!(matches!(
            Packet::decode_text("7", MAX),
            Err(CodecError::UnknownEngineIoType('7'))
        ));
        assert!(matches!(
            Packet::decode_text("€4", MAX),
            Err(CodecError::UnknownEngineIoType('€'))
        ));
        assert!(matches!(
            Packet::decode_text("0", MAX),
            Err(CodecError::Json(_))
        ));
        assert!(matches!(
            Packet::decode_text("0{}", MAX),
            Err(CodecError::Json(_))
        ));
        assert!(matches!(
            Packet::decode_text("4hello", 5),
            Err(CodecError::TooLarge { len: 6, max: 5 })
        ));
    }

    #[test]
    fn payload_examples_from_the_spec() {
        assert_eq!(
            payload(b"4hello\x1e4world").unwrap(),
            [
                Packet::Message(Message::Text("hello".into())),
                Packet::Message(Message::Text("world".into())),
            ]
        );
        // The engine.io-parser 4.0 changelog example: a text and a binary message.
        assert_eq!(
            payload("4hello\x1ebAQID".as_bytes()).unwrap(),
            [
                Packet::Message(Message::Text("hello".into())),
                Packet::Message(Message::Binary(Bytes::from_static(&[1, 2, 3]))),
            ]
        );
        assert_eq!(
            payload("4hello\x1e4€€€".as_bytes()).unwrap()[1],
            Packet::Message(Message::Text("€€€".into()))
        );
        assert_eq!(
            payload(br#"42["hello"]\x1e42["world"]"#.as_slice())
                .unwrap()
                .len(),
            1,
            "a literal backslash-x1e is not a separator"
        );
        assert_eq!(payload(b"2").unwrap(), [Packet::Ping(String::new())]);
    }

    #[test]
    fn encodes_payloads() {
        let frames = [
            FrameRef::Text("4hello"),
            FrameRef::Binary(&[1, 2, 3]),
            FrameRef::Text("4€€€"),
        ];
        assert_eq!(encode_payload(frames).unwrap(), "4hello\x1ebAQID\x1e4€€€");
        assert_eq!(encode_payload([]).unwrap(), "");
        let owned = [Frame::Text("6".into())];
        assert_eq!(
            encode_payload(owned.iter().map(Frame::as_frame_ref)).unwrap(),
            "6"
        );
        assert!(matches!(
            encode_payload([FrameRef::Text("4a\x1e4b")]),
            Err(CodecError::SeparatorInPacket)
        ));
    }

    #[test]
    fn rejects_malformed_payloads_and_stops_at_the_first_error() {
        assert!(matches!(payload(b""), Err(CodecError::EmptyPacket)));
        assert!(matches!(payload(b"4a\x1e"), Err(CodecError::EmptyPacket)));
        assert!(matches!(
            payload(b"4a\x1e\x1e4b"),
            Err(CodecError::EmptyPacket)
        ));
        assert!(matches!(payload(b"4\xff"), Err(CodecError::InvalidUtf8)));
        assert!(matches!(
            decode_payload(b"4hello", 3),
            Err(CodecError::TooLarge { len: 6, max: 3 })
        ));
        let mut packets = decode_payload(b"4a\x1e9\x1e4b", MAX).unwrap();
        assert!(packets.next().unwrap().is_ok());
        assert!(packets.next().unwrap().is_err());
        assert!(packets.next().is_none(), "nothing after an error");
    }
}
