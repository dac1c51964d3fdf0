//! Feeds arbitrary bytes to every decoder of the codec: as an HTTP long-polling body (whose
//! messages go through a Socket.IO `Decoder`, binary attachments included), and as a single
//! WebSocket text or binary frame.
//!
//! Beyond "never panics", every packet that decodes must encode again and decode to the same
//! packet, so the encoder and the decoder agree on the wire format.

#![no_main]

use bytes::Bytes;
use keel_realtime::engineio::{self, Frame, Message};
use keel_realtime::socketio::{Decoder, Limits, Packet};
use libfuzzer_sys::fuzz_target;

const MAX: usize = engineio::DEFAULT_MAX_PAYLOAD;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();

    // As a polling body: each Engine.IO packet, and each message into the Socket.IO decoder.
    if let Ok(packets) = engineio::decode_payload(data, MAX) {
        let mut decoder = Decoder::new(limits);
        for packet in packets {
            let Ok(packet) = packet else { break };
            check_engineio_round_trip(&packet);
            let decoded = match packet {
                engineio::Packet::Message(Message::Text(text)) => decoder.feed_text(&text),
                engineio::Packet::Message(Message::Binary(data)) => decoder.feed_binary(data),
                _ => continue,
            };
            match decoded {
                Ok(Some(packet)) => check_socketio_round_trip(&packet, limits),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }

    // As single WebSocket frames.
    let _ = engineio::Packet::decode_binary(Bytes::copy_from_slice(data), MAX);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(packet) = engineio::Packet::decode_text(text, MAX) {
            check_engineio_round_trip(&packet);
        }
        if let Ok(packet) = Packet::decode(text, &limits) {
            check_socketio_round_trip(&packet, limits);
        }
    }
});

fn check_engineio_round_trip(packet: &engineio::Packet) {
    let decoded = match packet.encode().expect("a decoded packet encodes") {
        Frame::Text(text) => engineio::Packet::decode_text(&text, usize::MAX),
        Frame::Binary(data) => engineio::Packet::decode_binary(data, usize::MAX),
    };
    assert_eq!(&decoded.expect("an encoded packet decodes"), packet);
}

fn check_socketio_round_trip(packet: &Packet, limits: Limits) {
    let encoded = packet
        .encode_with(&limits)
        .expect("a decoded packet encodes");
    let mut decoder = Decoder::new(Limits {
        max_packet_len: usize::MAX,
        ..limits
    });
    let mut decoded = decoder.feed_text(encoded.socketio_text());
    for attachment in encoded.attachments() {
        decoded = decoder.feed_binary(attachment.clone());
    }
    assert_eq!(
        decoded.expect("an encoded packet decodes").as_ref(),
        Some(packet)
    );
}
