//! Encoding Socket.IO packets into an Engine.IO message plus attachment frames.

use bytes::Bytes;
use serde::Serialize;

use super::{Limits, MAIN_NAMESPACE, Packet, PacketKind, PacketType, Value};
use crate::CodecError;
use crate::engineio::{FrameRef, PacketType as EngineIoType};

/// An encoded Socket.IO packet, ready for any number of connections.
///
/// The text is already a complete Engine.IO `message` packet (`42["hey","Jude"]`): one
/// WebSocket text frame, or one packet of a polling payload. A binary packet's attachments
/// follow it as binary frames (`b<base64>` when polling), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// `4` followed by the Socket.IO packet. Writing the Engine.IO type here, rather than
    /// prepending it later, saves copying every outgoing packet once more.
    text: String,
    attachments: Vec<Bytes>,
}

impl Encoded {
    /// The Engine.IO message, e.g. `42["hey","Jude"]`: the text frame to send.
    pub fn engineio_text(&self) -> &str {
        &self.text
    }

    /// The Socket.IO packet alone, e.g. `2["hey","Jude"]`.
    pub fn socketio_text(&self) -> &str {
        self.text.get(1..).unwrap_or_default()
    }

    /// The binary attachments, to send after the text, in order.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// All frames to send, in order: the text, then each attachment. For a polling response,
    /// pass them to [`crate::engineio::encode_payload`].
    pub fn frames(&self) -> impl Iterator<Item = FrameRef<'_>> {
        std::iter::once(FrameRef::Text(&self.text))
            .chain(self.attachments.iter().map(|data| FrameRef::Binary(data)))
    }

    /// The Engine.IO message text and the attachments, e.g. to move the text into a shared
    /// frame type without copying it.
    pub fn into_parts(self) -> (String, Vec<Bytes>) {
        (self.text, self.attachments)
    }
}

impl Packet {
    /// Encodes this packet with the default [`Limits`].
    ///
    /// # Errors
    /// As [`Packet::encode_with`].
    pub fn encode(&self) -> Result<Encoded, CodecError> {
        self.encode_with(&Limits::default())
    }

    /// Encodes this packet; events and acks carrying binary data become `BINARY_EVENT` /
    /// `BINARY_ACK` with one attachment per blob.
    ///
    /// # Errors
    /// [`CodecError::InvalidNamespace`] unless the namespace starts with `/` and has no `,`;
    /// [`CodecError::TooManyAttachments`] over `limits.max_attachments` blobs.
    pub fn encode_with(&self, limits: &Limits) -> Result<Encoded, CodecError> {
        let binary_count: usize = match &self.kind {
            PacketKind::Event { args, .. } | PacketKind::Ack { args, .. } => {
                args.iter().map(Value::binary_count).sum()
            }
            _ => 0,
        };
        if binary_count > limits.max_attachments {
            return Err(CodecError::TooManyAttachments {
                count: binary_count,
                max: limits.max_attachments,
            });
        }
        let packet_type = self.packet_type();
        let mut out = Vec::with_capacity(64);
        start(&mut out, packet_type, &self.namespace, binary_count)?;
        let mut attachments = Vec::with_capacity(binary_count);
        match &self.kind {
            PacketKind::Connect(payload) => {
                if let Some(payload) = payload {
                    serde_json::to_writer(&mut out, payload)?;
                }
            }
            PacketKind::Disconnect => {}
            PacketKind::ConnectError(payload) => serde_json::to_writer(&mut out, payload)?,
            PacketKind::Event { name, args, ack_id } => {
                if let Some(ack_id) = ack_id {
                    push_u64(&mut out, *ack_id);
                }
                out.push(b'[');
                serde_json::to_writer(&mut out, name)?;
                for arg in args {
                    out.push(b',');
                    write_value(&mut out, arg, &mut attachments)?;
                }
                out.push(b']');
            }
            PacketKind::Ack { ack_id, args } => {
                push_u64(&mut out, *ack_id);
                out.push(b'[');
                for (index, arg) in args.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write_value(&mut out, arg, &mut attachments)?;
                }
                out.push(b']');
            }
        }
        finish(out, attachments)
    }
}

/// Encodes an `EVENT` with one argument, serialized straight from `arg` without building a
/// [`Value`] first: the fast path for server events such as `message` or `presence`.
///
/// # Errors
/// [`CodecError::InvalidNamespace`]; [`CodecError::Json`] if `arg` cannot be serialized.
pub fn encode_event<T>(
    namespace: &str,
    name: &str,
    arg: &T,
    ack_id: Option<u64>,
) -> Result<Encoded, CodecError>
where
    T: Serialize + ?Sized,
{
    let mut out = Vec::with_capacity(64);
    start(&mut out, PacketType::Event, namespace, 0)?;
    if let Some(ack_id) = ack_id {
        push_u64(&mut out, ack_id);
    }
    out.push(b'[');
    serde_json::to_writer(&mut out, name)?;
    out.push(b',');
    serde_json::to_writer(&mut out, arg)?;
    out.push(b']');
    finish(out, Vec::new())
}

/// Encodes an `ACK` with one argument, serialized straight from `arg` (e.g. `{"ok":true}`).
///
/// # Errors
/// [`CodecError::InvalidNamespace`]; [`CodecError::Json`] if `arg` cannot be serialized.
pub fn encode_ack<T>(namespace: &str, ack_id: u64, arg: &T) -> Result<Encoded, CodecError>
where
    T: Serialize + ?Sized,
{
    let mut out = Vec::with_capacity(64);
    start(&mut out, PacketType::Ack, namespace, 0)?;
    push_u64(&mut out, ack_id);
    out.push(b'[');
    serde_json::to_writer(&mut out, arg)?;
    out.push(b']');
    finish(out, Vec::new())
}

/// Writes `4<type>[<count>-][<namespace>,]`.
fn start(
    out: &mut Vec<u8>,
    packet_type: PacketType,
    namespace: &str,
    attachments: usize,
) -> Result<(), CodecError> {
    out.push(EngineIoType::Message.as_char() as u8);
    out.push(packet_type.as_char() as u8);
    if packet_type.is_binary() {
        push_u64(out, attachments as u64);
        out.push(b'-');
    }
    if namespace != MAIN_NAMESPACE {
        // A comma would end the namespace early on the other side and turn the rest into
        // (attacker-chosen) ack id and payload.
        if !namespace.starts_with('/') || namespace.contains(',') {
            return Err(CodecError::InvalidNamespace);
        }
        out.extend_from_slice(namespace.as_bytes());
        out.push(b',');
    }
    Ok(())
}

fn finish(out: Vec<u8>, attachments: Vec<Bytes>) -> Result<Encoded, CodecError> {
    // Only `&str` and serde_json output went in, so this cannot fail; checked rather than
    // assumed because `unsafe` is forbidden.
    let text = String::from_utf8(out).map_err(|_| CodecError::InvalidUtf8)?;
    Ok(Encoded { text, attachments })
}

/// Writes `value` as JSON, each blob as the next placeholder, collecting the blobs in order.
fn write_value(
    out: &mut Vec<u8>,
    value: &Value,
    attachments: &mut Vec<Bytes>,
) -> Result<(), CodecError> {
    match value {
        Value::Json(json) => serde_json::to_writer(&mut *out, json)?,
        Value::Binary(data) => {
            out.extend_from_slice(br#"{"_placeholder":true,"num":"#);
            push_u64(out, attachments.len() as u64);
            out.push(b'}');
            attachments.push(data.clone());
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item, attachments)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (index, (key, member)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_value(out, member, attachments)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::socketio::{Decoder, JsonObject};

    fn text(packet: &Packet) -> String {
        packet.encode().unwrap().socketio_text().to_owned()
    }

    fn obj(json: serde_json::Value) -> JsonObject {
        json.as_object().unwrap().clone()
    }

    fn blob(bytes: &'static [u8]) -> Value {
        Value::Binary(Bytes::from_static(bytes))
    }

    #[test]
    fn spec_connect_and_disconnect_examples() {
        assert_eq!(text(&Packet::connect("/", None)), "0");
        assert_eq!(
            text(&Packet::connect(
                "/",
                Some(obj(json!({"sid": "wZX3oN0bSVIhsaknAAAI"})))
            )),
            r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#
        );
        assert_eq!(text(&Packet::connect("/admin", None)), "0/admin,");
        assert_eq!(
            text(&Packet::connect(
                "/admin",
                Some(obj(json!({"sid": "oSO0OpakMV_3jnilAAAA"})))
            )),
            r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#
        );
        assert_eq!(
            text(&Packet::connect_error(
                "/",
                obj(json!({"message": "Not authorized"}))
            )),
            r#"4{"message":"Not authorized"}"#
        );
        assert_eq!(text(&Packet::disconnect("/")), "1");
        assert_eq!(text(&Packet::disconnect("/admin")), "1/admin,");
    }

    #[test]
    fn contract_examples() {
        let unauthorized = Packet::connect_error(
            "/",
            obj(json!({"message": "unauthorized", "data": {"code": "invalid_token"}})),
        );
        let encoded = unauthorized.encode().unwrap();
        let text = encoded.engineio_text();
        assert!(text.starts_with("44{"), "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text[2..]).unwrap(),
            json!({"message": "unauthorized", "data": {"code": "invalid_token"}})
        );
        let invalid_namespace =
            Packet::connect_error("/nope", obj(json!({"message": "Invalid namespace"})));
        assert_eq!(
            invalid_namespace.encode().unwrap().engineio_text(),
            r#"44/nope,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            Packet::disconnect("/").encode().unwrap().engineio_text(),
            "41"
        );
    }

    #[test]
    fn spec_event_and_ack_examples() {
        assert_eq!(
            text(&Packet::event("/", "foo", vec![], None)),
            r#"2["foo"]"#
        );
        assert_eq!(
            text(&Packet::event("/admin", "bar", vec![], None)),
            r#"2/admin,["bar"]"#
        );
        assert_eq!(
            text(&Packet::event("/", "foo", vec![], Some(12))),
            r#"212["foo"]"#
        );
        assert_eq!(text(&Packet::ack("/", 12, vec![])), "312[]");
        assert_eq!(
            text(&Packet::event("/admin", "foo", vec![], Some(13))),
            r#"2/admin,13["foo"]"#
        );
        assert_eq!(
            text(&Packet::ack("/admin", 13, vec![json!("bar").into()])),
            r#"3/admin,13["bar"]"#
        );
        assert_eq!(
            Packet::event("/", "hey", vec!["Jude".into()], None)
                .encode()
                .unwrap()
                .engineio_text(),
            r#"42["hey","Jude"]"#
        );
    }

    #[test]
    fn spec_binary_examples() {
        let encoded = Packet::event("/", "baz", vec![blob(&[1, 2, 3, 4])], None)
            .encode()
            .unwrap();
        assert_eq!(
            encoded.socketio_text(),
            r#"51-["baz",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(encoded.attachments(), [Bytes::from_static(&[1, 2, 3, 4])]);

        let encoded = Packet::event("/admin", "baz", vec![blob(&[1, 2]), blob(&[3, 4])], None)
            .encode()
            .unwrap();
        assert_eq!(
            encoded.socketio_text(),
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(
            encoded.attachments(),
            [Bytes::from_static(&[1, 2]), Bytes::from_static(&[3, 4])]
        );

        assert_eq!(
            text(&Packet::event(
                "/",
                "foo",
                vec![blob(&[1, 2, 3, 4])],
                Some(14)
            )),
            r#"51-14["foo",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            text(&Packet::ack(
                "/",
                15,
                vec!["bar".into(), blob(&[1, 2, 3, 4])]
            )),
            r#"61-15["bar",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            text(&Packet::ack("/admin", 1, vec![blob(&[9])])),
            r#"61-/admin,1[{"_placeholder":true,"num":0}]"#
        );
    }

    #[test]
    fn nested_binary_round_trips_through_the_decoder() {
        let packet = Packet::event(
            "/files",
            "upload",
            vec![
                Value::Object(BTreeMap::from([
                    ("name".to_owned(), "a.bin".into()),
                    (
                        "parts".to_owned(),
                        Value::Array(vec![blob(b"x"), blob(b"yz")]),
                    ),
                ])),
                json!({"n": 2}).into(),
                blob(b""),
            ],
            Some(7),
        );
        assert_eq!(packet.packet_type(), PacketType::BinaryEvent);
        let encoded = packet.encode().unwrap();
        assert_eq!(encoded.attachments().len(), 3);
        let mut decoder = Decoder::default();
        assert_eq!(decoder.feed_text(encoded.socketio_text()).unwrap(), None);
        let mut decoded = None;
        for attachment in encoded.attachments() {
            decoded = decoder.feed_binary(attachment.clone()).unwrap();
        }
        assert_eq!(decoded, Some(packet));
    }

    #[test]
    fn frames_make_a_polling_payload() {
        let encoded = Packet::event("/", "b", vec![blob(&[1, 2, 3])], None)
            .encode()
            .unwrap();
        let frames: Vec<FrameRef<'_>> = encoded.frames().collect();
        assert_eq!(
            frames,
            [
                FrameRef::Text(r#"451-["b",{"_placeholder":true,"num":0}]"#),
                FrameRef::Binary(&[1, 2, 3]),
            ]
        );
        assert_eq!(
            crate::engineio::encode_payload(encoded.frames()).unwrap(),
            "451-[\"b\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID"
        );
        let (text, attachments) = encoded.into_parts();
        assert!(text.starts_with("451-"));
        assert_eq!(attachments.len(), 1);
    }

    #[test]
    fn fast_paths_match_the_general_encoder() {
        let arg = json!({"room": "room:a", "body": {"x": [1, 2]}});
        for (namespace, ack_id) in [("/", None), ("/admin", Some(3))] {
            assert_eq!(
                encode_event(namespace, "message", &arg, ack_id).unwrap(),
                Packet::event(namespace, "message", vec![arg.clone().into()], ack_id)
                    .encode()
                    .unwrap()
            );
        }
        assert_eq!(
            encode_ack("/", 5, &json!({"ok": true}))
                .unwrap()
                .engineio_text(),
            r#"435[{"ok":true}]"#
        );
        assert_eq!(
            encode_ack("/admin", 5, "x").unwrap(),
            Packet::ack("/admin", 5, vec!["x".into()]).encode().unwrap()
        );
        let bad_keys: BTreeMap<Vec<u8>, u8> = BTreeMap::from([(vec![1], 1)]);
        assert!(matches!(
            encode_event("/", "x", &bad_keys, None),
            Err(CodecError::Json(_))
        ));
    }

    #[test]
    fn rejects_invalid_namespaces() {
        for namespace in ["", "admin", "/a,b"] {
            assert!(matches!(
                Packet::disconnect(namespace).encode(),
                Err(CodecError::InvalidNamespace)
            ));
            assert!(matches!(
                encode_event(namespace, "x", &1, None),
                Err(CodecError::InvalidNamespace)
            ));
        }
    }

    #[test]
    fn attachment_limit_applies_when_encoding() {
        let blobs = |n: usize| (0..n).map(|_| blob(b"x")).collect::<Vec<_>>();
        assert!(Packet::event("/", "x", blobs(10), None).encode().is_ok());
        assert!(matches!(
            Packet::event("/", "x", blobs(11), None).encode(),
            Err(CodecError::TooManyAttachments { count: 11, max: 10 })
        ));
        let limits = Limits {
            max_attachments: 11,
            ..Limits::default()
        };
        let encoded = Packet::ack("/", 1, blobs(11)).encode_with(&limits).unwrap();
        assert!(encoded.socketio_text().starts_with("611-1["));
    }

    #[test]
    fn event_names_and_strings_are_json_escaped() {
        let packet = Packet::event("/", "a\"\u{1e}\n", vec!["\u{1e}".into()], None);
        let encoded = packet.encode().unwrap();
        assert_eq!(encoded.socketio_text(), r#"2["a\"\u001e\n","\u001e"]"#);
        assert!(crate::engineio::encode_payload(encoded.frames()).is_ok());
        assert_eq!(
            Packet::decode(encoded.socketio_text(), &Limits::default()).unwrap(),
            packet
        );
    }

    #[test]
    fn push_u64_writes_decimal() {
        for n in [0, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
