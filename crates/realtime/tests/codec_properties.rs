//! Property tests of the wire codec: hostile input never panics, and every packet survives an
//! encode/decode round trip.

use std::collections::BTreeMap;

use bytes::Bytes;
use keel_realtime::CodecError;
use keel_realtime::engineio::{self, Frame, Handshake, Message};
use keel_realtime::socketio::{self, Decoder, JsonObject, Limits, Packet, PacketKind, Value};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value as Json;

const MAX: usize = engineio::DEFAULT_MAX_PAYLOAD;

/// Generous enough that generated packets never hit the attachment limit.
const WIDE: Limits = Limits {
    max_attachments: 1_000,
    max_packet_len: MAX,
};

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        // Quarters are exact in binary, so they survive text and back whatever the float parser.
        any::<i32>().prop_map(|n| Json::from(f64::from(n) / 4.0)),
        ".{0,8}".prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Json::Array),
            // No `_` in keys: `_placeholder` objects are the codec's own.
            btree_map("[a-z]{0,6}", inner, 0..4)
                .prop_map(|members| Json::Object(members.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = JsonObject> {
    btree_map("[a-z]{0,6}", json(), 0..4).prop_map(|members| members.into_iter().collect())
}

/// Values with blobs anywhere, in canonical and non-canonical form.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        3 => json().prop_map(Value::Json),
        1 => vec(any::<u8>(), 0..16).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            btree_map("[a-z]{0,6}", inner, 0..3)
                .prop_map(|members| Value::Object(members.into_iter().collect::<BTreeMap<_, _>>())),
        ]
    })
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-zA-Z0-9_./-]{0,10}"]
}

fn packet() -> impl Strategy<Value = Packet> {
    let kind = prop_oneof![
        proptest::option::of(json_object()).prop_map(PacketKind::Connect),
        Just(PacketKind::Disconnect),
        (
            ".{0,10}",
            vec(value(), 0..4),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(name, args, ack_id)| PacketKind::Event { name, args, ack_id }),
        (any::<u64>(), vec(value(), 0..4))
            .prop_map(|(ack_id, args)| PacketKind::Ack { ack_id, args }),
        json_object().prop_map(PacketKind::ConnectError),
    ];
    (namespace(), kind).prop_map(|(namespace, kind)| Packet { namespace, kind })
}

fn engineio_packet() -> impl Strategy<Value = engineio::Packet> {
    let handshake = (
        "[A-Za-z0-9_-]{0,20}",
        vec("[a-z]{0,9}", 0..3),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(sid, upgrades, ping_interval, ping_timeout, max_payload)| Handshake {
                sid,
                upgrades,
                ping_interval,
                ping_timeout,
                max_payload,
            },
        );
    prop_oneof![
        handshake.prop_map(engineio::Packet::Open),
        Just(engineio::Packet::Close),
        ".{0,8}".prop_map(engineio::Packet::Ping),
        ".{0,8}".prop_map(engineio::Packet::Pong),
        ".{0,16}".prop_map(|text| engineio::Packet::Message(Message::Text(text))),
        vec(any::<u8>(), 0..32)
            .prop_map(|data| engineio::Packet::Message(Message::Binary(Bytes::from(data)))),
        Just(engineio::Packet::Upgrade),
        Just(engineio::Packet::Noop),
    ]
}

/// Text that looks like a Socket.IO packet, to get past the first checks more often than
/// random text does, with attachments to feed after it.
fn near_packet() -> impl Strategy<Value = (String, Vec<Bytes>)> {
    let event_args = vec(json(), 0..3).prop_map(|items| {
        let mut items: Vec<Json> = items;
        items.insert(0, Json::from("ev"));
        Json::Array(items).to_string()
    });
    let assembled = (
        prop_oneof![9 => "[0-6]", 1 => "[7-9a-z]"],
        prop_oneof![2 => Just(String::new()), 2 => "[0-2]-", 1 => "[0-9]{1,3}-?"],
        prop_oneof![3 => Just(String::new()), 2 => "/[a-z]{0,5},", 1 => "/[a-z,]{0,5},?"],
        prop_oneof![3 => Just(String::new()), 2 => "[0-9]{1,3}", 1 => "[0-9]{18,22}"],
        prop_oneof![
            4 => event_args,
            2 => json().prop_map(|json| json.to_string()),
            1 => Just(r#"["a",{"_placeholder":true,"num":0}]"#.to_owned()),
            1 => Just(String::new()),
            1 => r#"[\[\]{}",:0-9a-z_ ]{0,20}"#,
        ],
        vec(vec(any::<u8>(), 0..4).prop_map(Bytes::from), 0..3),
    )
        .prop_map(|(kind, attachments, namespace, digits, rest, blobs)| {
            (
                format!("{kind}{attachments}{namespace}{digits}{rest}"),
                blobs,
            )
        });
    // Valid encodings with a few characters deleted, inserted or replaced.
    let edit = (
        0..3u8,
        any::<prop::sample::Index>(),
        prop::sample::select(
            &[
                '0', '1', '5', '9', '-', '/', ',', '[', ']', '{', '}', '"', ':', 'a', '\u{1e}',
                '\u{e9}',
            ][..],
        ),
    );
    let mutated = (packet(), vec(edit, 0..3)).prop_map(|(packet, edits)| {
        let (text, blobs) = match packet.encode_with(&WIDE) {
            Ok(encoded) => (
                encoded.socketio_text().to_owned(),
                encoded.attachments().to_vec(),
            ),
            Err(_) => (String::new(), Vec::new()),
        };
        let mut chars: Vec<char> = text.chars().collect();
        for (op, index, c) in edits {
            if chars.is_empty() {
                chars.push(c);
                continue;
            }
            let at = index.index(chars.len());
            match op {
                0 => {
                    chars.remove(at);
                }
                1 => chars.insert(at, c),
                _ => chars[at] = c,
            }
        }
        (chars.into_iter().collect(), blobs)
    });
    prop_oneof![assembled, mutated]
}

/// Decodes an encoded Socket.IO packet the way a connection receives it.
fn receive(encoded: &socketio::Encoded, limits: Limits) -> Result<Option<Packet>, CodecError> {
    let mut decoder = Decoder::new(limits);
    let mut packet = decoder.feed_text(encoded.socketio_text())?;
    for attachment in encoded.attachments() {
        assert!(packet.is_none(), "complete before its last attachment");
        packet = decoder.feed_binary(attachment.clone())?;
    }
    Ok(packet)
}

fn any_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        ".{0,40}".prop_map(Frame::Text),
        near_packet().prop_map(|(text, _)| Frame::Text(text)),
        vec(any::<u8>(), 0..8).prop_map(|data| Frame::Binary(Bytes::from(data))),
    ]
}

proptest! {
    #[test]
    fn engineio_decoding_arbitrary_input_never_panics(
        text in ".{0,64}",
        bytes in vec(any::<u8>(), 0..128),
    ) {
        let _ = engineio::Packet::decode_text(&text, MAX);
        let _ = engineio::Packet::decode_text(&text, 4);
        let _ = engineio::Packet::decode_binary(Bytes::from(bytes.clone()), MAX);
        if let Ok(packets) = engineio::decode_payload(&bytes, MAX) {
            packets.for_each(drop);
        }
        if let Ok(packets) = engineio::decode_payload(text.as_bytes(), MAX) {
            packets.for_each(drop);
        }
    }

    #[test]
    fn socketio_decoding_arbitrary_frames_never_panics(frames in vec(any_frame(), 0..8)) {
        for limits in [Limits::default(), Limits { max_attachments: 1, max_packet_len: 16 }] {
            let mut decoder = Decoder::new(limits);
            for frame in &frames {
                let _ = match frame {
                    Frame::Text(text) => decoder.feed_text(text),
                    Frame::Binary(data) => decoder.feed_binary(data.clone()),
                };
            }
        }
    }

    #[test]
    fn socketio_decoding_arbitrary_text_never_panics(text in ".{0,64}") {
        let _ = Packet::decode(&text, &Limits::default());
    }

    #[test]
    fn decoded_packets_reencode_to_the_same_packet((text, attachments) in near_packet()) {
        let mut decoder = Decoder::new(WIDE);
        let mut decoded = decoder.feed_text(&text);
        for attachment in attachments {
            if decoder.pending_attachments() == 0 {
                break;
            }
            decoded = decoder.feed_binary(attachment);
        }
        if let Ok(Some(packet)) = decoded {
            let encoded = packet.encode_with(&WIDE).expect("a decoded packet is encodable");
            prop_assert_eq!(receive(&encoded, WIDE)?, Some(packet));
        }
    }

    #[test]
    fn socketio_round_trip(packet in packet()) {
        let encoded = packet.encode_with(&WIDE)?;
        prop_assert_eq!(encoded.attachments().len(), match &packet.kind {
            PacketKind::Event { args, .. } | PacketKind::Ack { args, .. } => {
                args.iter().map(Value::binary_count).sum()
            }
            _ => 0,
        });
        prop_assert_eq!(receive(&encoded, WIDE)?, Some(packet.clone()));

        // Under the default limit: either encoding refuses, or decoding accepts.
        match packet.encode() {
            Ok(encoded) => prop_assert_eq!(receive(&encoded, Limits::default())?, Some(packet)),
            Err(error) => {
                prop_assert!(
                    matches!(error, CodecError::TooManyAttachments { .. }),
                    "{error:?}"
                );
            }
        }
    }

    #[test]
    fn socketio_round_trip_through_engineio(packets in vec(packet(), 1..4)) {
        // What a polling GET carries: several encoded packets with their attachments.
        let encoded: Vec<socketio::Encoded> = packets
            .iter()
            .map(|packet| packet.encode_with(&WIDE))
            .collect::<Result<_, _>>()?;
        let body = engineio::encode_payload(encoded.iter().flat_map(socketio::Encoded::frames))?;
        let mut decoder = Decoder::new(WIDE);
        let mut received = Vec::new();
        for packet in engineio::decode_payload(body.as_bytes(), usize::MAX)? {
            let decoded = match packet? {
                engineio::Packet::Message(Message::Text(text)) => decoder.feed_text(&text)?,
                engineio::Packet::Message(Message::Binary(data)) => decoder.feed_binary(data)?,
                other => panic!("unexpected {other:?}"),
            };
            received.extend(decoded);
        }
        prop_assert_eq!(received, packets);
    }

    #[test]
    fn engineio_round_trip(packets in vec(engineio_packet(), 1..5)) {
        for packet in &packets {
            let decoded = match packet.encode()? {
                Frame::Text(text) => engineio::Packet::decode_text(&text, MAX)?,
                Frame::Binary(data) => engineio::Packet::decode_binary(data, MAX)?,
            };
            prop_assert_eq!(&decoded, packet);
        }

        let frames: Vec<Frame> = packets
            .iter()
            .map(engineio::Packet::encode)
            .collect::<Result<_, _>>()?;
        let has_separator = frames
            .iter()
            .any(|frame| matches!(frame, Frame::Text(text) if text.contains('\x1e')));
        match engineio::encode_payload(frames.iter().map(Frame::as_frame_ref)) {
            Ok(body) => {
                prop_assert!(!has_separator);
                let decoded: Vec<engineio::Packet> =
                    engineio::decode_payload(body.as_bytes(), usize::MAX)?
                        .collect::<Result<_, _>>()?;
                prop_assert_eq!(decoded, packets);
            }
            Err(error) => {
                prop_assert!(has_separator);
                prop_assert!(matches!(error, CodecError::SeparatorInPacket), "{error:?}");
            }
        }
    }
}
