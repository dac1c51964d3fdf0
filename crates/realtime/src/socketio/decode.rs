//! Decoding Socket.IO packets, and reassembling binary packets from their attachments.

use bytes::Bytes;
use serde_json::Value as Json;

use super::{
    JsonObject, Limits, MAIN_NAMESPACE, MAX_ACK_ID_DIGITS, Packet, PacketKind, PacketType, Value,
};
use crate::CodecError;

/// Decodes the Socket.IO packets of one connection, reassembling binary packets.
///
/// A small state machine: feed it every Engine.IO `message` in order, text with
/// [`Decoder::feed_text`] and binary with [`Decoder::feed_binary`]. A complete packet comes back
/// as `Some`. A `BINARY_EVENT`/`BINARY_ACK` header makes the decoder wait for its attachments
/// (`None`) and the last attachment completes the packet, with each placeholder replaced by its
/// blob.
///
/// After an error the decoder is idle again, but the connection has broken the protocol and
/// should be closed.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    pending: Option<Pending>,
}

impl Decoder {
    /// A decoder that enforces `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many attachments the packet being reassembled still needs (0 when idle).
    pub fn pending_attachments(&self) -> usize {
        self.pending.as_ref().map_or(0, Pending::remaining)
    }

    /// Drops a packet being reassembled, if any.
    pub fn reset(&mut self) {
        self.pending = None;
    }

    /// Feeds the text of an Engine.IO `message` (the Socket.IO packet, without the Engine.IO
    /// type `4`).
    ///
    /// # Errors
    /// [`CodecError::AttachmentsPending`] while a binary packet waits for attachments, and
    /// every way a packet can be malformed (see [`CodecError`]).
    pub fn feed_text(&mut self, text: &str) -> Result<Option<Packet>, CodecError> {
        if let Some(pending) = self.pending.take() {
            return Err(CodecError::AttachmentsPending(pending.remaining()));
        }
        match decode(text, &self.limits)? {
            Decoded::Complete(packet) => Ok(Some(packet)),
            Decoded::Partial(pending) => {
                self.pending = Some(pending);
                Ok(None)
            }
        }
    }

    /// Feeds a binary Engine.IO `message`: the next attachment of the packet being reassembled.
    ///
    /// # Errors
    /// [`CodecError::UnexpectedBinary`] if no packet waits for attachments,
    /// [`CodecError::TooLarge`] for an attachment over `max_packet_len`.
    pub fn feed_binary(&mut self, data: Bytes) -> Result<Option<Packet>, CodecError> {
        let Some(mut pending) = self.pending.take() else {
            return Err(CodecError::UnexpectedBinary);
        };
        if data.len() > self.limits.max_packet_len {
            return Err(CodecError::TooLarge {
                len: data.len(),
                max: self.limits.max_packet_len,
            });
        }
        pending.attachments.push(data);
        if pending.remaining() > 0 {
            self.pending = Some(pending);
            return Ok(None);
        }
        Ok(Some(pending.finish()))
    }
}

impl Packet {
    /// Decodes one text packet that carries no attachments (the Socket.IO packet, without the
    /// Engine.IO type `4`). A connection should use a [`Decoder`] instead, which also handles
    /// binary packets.
    ///
    /// # Errors
    /// [`CodecError::AttachmentsExpected`] for a binary packet header that announces
    /// attachments, and every way a packet can be malformed (see [`CodecError`]).
    pub fn decode(text: &str, limits: &Limits) -> Result<Self, CodecError> {
        match decode(text, limits)? {
            Decoded::Complete(packet) => Ok(packet),
            Decoded::Partial(pending) => Err(CodecError::AttachmentsExpected(pending.expected)),
        }
    }
}

/// A binary packet whose header was decoded and validated, waiting for its attachments.
#[derive(Debug)]
struct Pending {
    namespace: String,
    /// `Some(name)` for an event, `None` for an ack.
    event_name: Option<String>,
    ack_id: Option<u64>,
    /// The arguments, placeholders still in place.
    args: Vec<Json>,
    expected: usize,
    attachments: Vec<Bytes>,
}

impl Pending {
    fn remaining(&self) -> usize {
        self.expected.saturating_sub(self.attachments.len())
    }

    fn finish(self) -> Packet {
        let mut slots: Vec<Option<Bytes>> = self.attachments.into_iter().map(Some).collect();
        let args = self
            .args
            .into_iter()
            .map(|arg| resolve(arg, &mut slots))
            .collect();
        packet(self.namespace, self.event_name, self.ack_id, args)
    }
}

enum Decoded {
    Complete(Packet),
    Partial(Pending),
}

/// The fixed-format part of a packet, before its JSON is parsed.
struct Header<'a> {
    packet_type: PacketType,
    attachments: usize,
    namespace: &'a str,
    ack_id: Option<u64>,
    data: &'a str,
}

fn decode(text: &str, limits: &Limits) -> Result<Decoded, CodecError> {
    let header = parse_header(text, limits)?;
    let Header {
        packet_type,
        attachments,
        namespace,
        ack_id,
        data,
    } = header;
    let json = if data.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Json>(data)?)
    };
    let complete = |kind: PacketKind| -> Result<Decoded, CodecError> {
        Ok(Decoded::Complete(Packet {
            namespace: namespace.to_owned(),
            kind,
        }))
    };
    let (event_name, args) = match packet_type {
        PacketType::Connect => {
            no_ack_id(ack_id)?;
            let payload = json.map(|json| object(packet_type, json)).transpose()?;
            return complete(PacketKind::Connect(payload));
        }
        PacketType::Disconnect => {
            no_ack_id(ack_id)?;
            if json.is_some() {
                return Err(invalid(packet_type, "must be empty"));
            }
            return complete(PacketKind::Disconnect);
        }
        PacketType::ConnectError => {
            no_ack_id(ack_id)?;
            let payload = object(packet_type, json.unwrap_or(Json::Null))?;
            return complete(PacketKind::ConnectError(payload));
        }
        PacketType::Event | PacketType::BinaryEvent => {
            const RULE: &str = "must be a non-empty array whose first element is a string";
            let Some(Json::Array(items)) = json else {
                return Err(invalid(packet_type, RULE));
            };
            let mut items = items.into_iter();
            let Some(Json::String(name)) = items.next() else {
                return Err(invalid(packet_type, RULE));
            };
            (Some(name), items.collect::<Vec<_>>())
        }
        PacketType::Ack | PacketType::BinaryAck => {
            if ack_id.is_none() {
                return Err(CodecError::InvalidAckId);
            }
            let Some(Json::Array(items)) = json else {
                return Err(invalid(packet_type, "must be an array"));
            };
            (None, items)
        }
    };
    let namespace = namespace.to_owned();
    if attachments == 0 {
        // Nothing to substitute: in a plain EVENT/ACK, placeholder-like objects are just JSON,
        // and in a binary packet without attachments the check below would reject them.
        if packet_type.is_binary() {
            check_placeholders(&args, 0)?;
        }
        let args = args.into_iter().map(Value::Json).collect();
        return Ok(Decoded::Complete(packet(
            namespace, event_name, ack_id, args,
        )));
    }
    check_placeholders(&args, attachments)?;
    Ok(Decoded::Partial(Pending {
        namespace,
        event_name,
        ack_id,
        args,
        expected: attachments,
        // `attachments` is at most `max_attachments`, checked before this allocation.
        attachments: Vec::with_capacity(attachments),
    }))
}

fn parse_header<'a>(text: &'a str, limits: &Limits) -> Result<Header<'a>, CodecError> {
    if text.len() > limits.max_packet_len {
        return Err(CodecError::TooLarge {
            len: text.len(),
            max: limits.max_packet_len,
        });
    }
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(CodecError::EmptyPacket);
    };
    let Some(packet_type) = PacketType::from_digit(first) else {
        return Err(CodecError::UnknownSocketIoType(
            text.chars().next().unwrap_or('\0'),
        ));
    };
    // Every position below follows an ASCII byte, so slicing `text` there is on a char boundary.
    let mut pos = 1;

    let mut attachments: usize = 0;
    if packet_type.is_binary() {
        let end = digits_end(bytes, pos);
        if end == pos || bytes.get(end) != Some(&b'-') {
            return Err(CodecError::InvalidAttachmentCount);
        }
        for &digit in &bytes[pos..end] {
            attachments = attachments
                .saturating_mul(10)
                .saturating_add(usize::from(digit - b'0'));
            // Checked digit by digit, so an absurd count fails before it is used for anything.
            if attachments > limits.max_attachments {
                return Err(CodecError::TooManyAttachments {
                    count: attachments,
                    max: limits.max_attachments,
                });
            }
        }
        pos = end + 1;
    }

    let mut namespace = MAIN_NAMESPACE;
    if bytes.get(pos) == Some(&b'/') {
        // Like the reference parser, a namespace without a trailing comma runs to the end
        // (`0/admin`).
        match text[pos..].find(',') {
            Some(comma) => {
                namespace = &text[pos..pos + comma];
                pos += comma + 1;
            }
            None => {
                namespace = &text[pos..];
                pos = text.len();
            }
        }
    }

    let end = digits_end(bytes, pos);
    let mut ack_id = None;
    if end > pos {
        if end - pos > MAX_ACK_ID_DIGITS {
            return Err(CodecError::InvalidAckId);
        }
        let mut id: u64 = 0;
        for &digit in &bytes[pos..end] {
            id = id
                .checked_mul(10)
                .and_then(|id| id.checked_add(u64::from(digit - b'0')))
                .ok_or(CodecError::InvalidAckId)?;
        }
        ack_id = Some(id);
        pos = end;
    }

    Ok(Header {
        packet_type,
        attachments,
        namespace,
        ack_id,
        data: &text[pos..],
    })
}

fn digits_end(bytes: &[u8], start: usize) -> usize {
    bytes
        .get(start..)
        .and_then(|rest| rest.iter().position(|b| !b.is_ascii_digit()))
        .map_or(bytes.len(), |offset| start + offset)
}

fn no_ack_id(ack_id: Option<u64>) -> Result<(), CodecError> {
    match ack_id {
        Some(_) => Err(CodecError::InvalidAckId),
        None => Ok(()),
    }
}

fn object(packet_type: PacketType, json: Json) -> Result<JsonObject, CodecError> {
    match json {
        Json::Object(object) => Ok(object),
        _ => Err(invalid(packet_type, "must be a JSON object")),
    }
}

fn invalid(packet_type: PacketType, reason: &'static str) -> CodecError {
    CodecError::InvalidPayload {
        packet_type,
        reason,
    }
}

fn packet(
    namespace: String,
    event_name: Option<String>,
    ack_id: Option<u64>,
    args: Vec<Value>,
) -> Packet {
    let kind = match (event_name, ack_id) {
        (Some(name), ack_id) => PacketKind::Event { name, args, ack_id },
        // Acks always have an id; `decode` rejects them otherwise.
        (None, ack_id) => PacketKind::Ack {
            ack_id: ack_id.unwrap_or_default(),
            args,
        },
    };
    Packet { namespace, kind }
}

/// `None` if `object` is not a placeholder; otherwise its attachment index, if valid.
fn placeholder_num(object: &JsonObject) -> Option<Result<usize, CodecError>> {
    if object.get("_placeholder") != Some(&Json::Bool(true)) {
        return None;
    }
    Some(
        object
            .get("num")
            .and_then(Json::as_u64)
            .and_then(|num| usize::try_from(num).ok())
            .ok_or(CodecError::InvalidPlaceholder(
                "num must be a non-negative integer",
            )),
    )
}

/// Checks that the placeholders in `args` reference each of `count` attachments exactly once.
fn check_placeholders(args: &[Json], count: usize) -> Result<(), CodecError> {
    // `count` is at most `max_attachments`, so this is small.
    let mut seen = vec![false; count];
    args.iter()
        .try_for_each(|arg| mark_placeholders(arg, &mut seen))?;
    if seen.iter().all(|&used| used) {
        Ok(())
    } else {
        Err(CodecError::InvalidPlaceholder(
            "an attachment is not referenced",
        ))
    }
}

// Recursion depth is bounded by serde_json's nesting limit (128) on the parsed input.
fn mark_placeholders(json: &Json, seen: &mut [bool]) -> Result<(), CodecError> {
    match json {
        Json::Object(object) => match placeholder_num(object) {
            Some(num) => {
                let used = seen
                    .get_mut(num?)
                    .ok_or(CodecError::InvalidPlaceholder("num is out of range"))?;
                if *used {
                    return Err(CodecError::InvalidPlaceholder("num is used twice"));
                }
                *used = true;
                Ok(())
            }
            None => object
                .values()
                .try_for_each(|value| mark_placeholders(value, seen)),
        },
        Json::Array(items) => items
            .iter()
            .try_for_each(|item| mark_placeholders(item, seen)),
        _ => Ok(()),
    }
}

/// Replaces the (already validated) placeholders in `json` by their attachments.
fn resolve(json: Json, slots: &mut [Option<Bytes>]) -> Value {
    match json {
        Json::Object(object) => match placeholder_num(&object) {
            Some(num) => Value::Binary(
                num.ok()
                    .and_then(|num| slots.get_mut(num))
                    .and_then(Option::take)
                    .unwrap_or_default(),
            ),
            None => Value::collapse_object(
                object
                    .into_iter()
                    .map(|(key, value)| (key, resolve(value, slots)))
                    .collect(),
            ),
        },
        Json::Array(items) => {
            Value::collapse_array(items.into_iter().map(|item| resolve(item, slots)).collect())
        }
        other => Value::Json(other),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode_ok(text: &str) -> Packet {
        Packet::decode(text, &Limits::default()).unwrap()
    }

    fn decode_err(text: &str) -> CodecError {
        Packet::decode(text, &Limits::default()).unwrap_err()
    }

    fn blob(bytes: &'static [u8]) -> Value {
        Value::Binary(Bytes::from_static(bytes))
    }

    fn obj(json: Json) -> JsonObject {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn spec_connect_and_disconnect_examples() {
        assert_eq!(decode_ok("0"), Packet::connect("/", None));
        assert_eq!(
            decode_ok(r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            Packet::connect("/", Some(obj(json!({"sid": "wZX3oN0bSVIhsaknAAAI"}))))
        );
        assert_eq!(decode_ok("0/admin,"), Packet::connect("/admin", None));
        assert_eq!(decode_ok("0/admin"), Packet::connect("/admin", None));
        assert_eq!(
            decode_ok(r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#),
            Packet::connect("/admin", Some(obj(json!({"sid": "oSO0OpakMV_3jnilAAAA"}))))
        );
        assert_eq!(
            decode_ok(r#"0{"token":"123"}"#),
            Packet::connect("/", Some(obj(json!({"token": "123"}))))
        );
        assert_eq!(
            decode_ok(r#"4{"message":"Not authorized"}"#),
            Packet::connect_error("/", obj(json!({"message": "Not authorized"})))
        );
        assert_eq!(decode_ok("1"), Packet::disconnect("/"));
        assert_eq!(decode_ok("1/admin,"), Packet::disconnect("/admin"));
    }

    #[test]
    fn spec_event_and_ack_examples() {
        let foo = || vec![];
        assert_eq!(
            decode_ok(r#"2["foo"]"#),
            Packet::event("/", "foo", foo(), None)
        );
        assert_eq!(
            decode_ok(r#"2/admin,["bar"]"#),
            Packet::event("/admin", "bar", foo(), None)
        );
        assert_eq!(
            decode_ok(r#"212["foo"]"#),
            Packet::event("/", "foo", foo(), Some(12))
        );
        assert_eq!(decode_ok("312[]"), Packet::ack("/", 12, vec![]));
        assert_eq!(
            decode_ok(r#"2/admin,13["foo"]"#),
            Packet::event("/admin", "foo", foo(), Some(13))
        );
        assert_eq!(
            decode_ok(r#"3/admin,13["bar"]"#),
            Packet::ack("/admin", 13, vec![json!("bar").into()])
        );
        assert_eq!(
            decode_ok(r#"2["hey","Jude"]"#),
            Packet::event("/", "hey", vec![json!("Jude").into()], None)
        );
        assert_eq!(
            decode_ok(r#"20["x",{"a":[1,null]}]"#),
            Packet::event("/", "x", vec![json!({"a": [1, null]}).into()], Some(0))
        );
    }

    #[test]
    fn spec_binary_examples() {
        let mut decoder = Decoder::default();
        assert_eq!(
            decoder
                .feed_text(r#"51-["baz",{"_placeholder":true,"num":0}]"#)
                .unwrap(),
            None
        );
        assert_eq!(decoder.pending_attachments(), 1);
        let packet = decoder
            .feed_binary(Bytes::from_static(&[1, 2, 3, 4]))
            .unwrap();
        assert_eq!(
            packet,
            Some(Packet::event("/", "baz", vec![blob(&[1, 2, 3, 4])], None))
        );
        assert_eq!(decoder.pending_attachments(), 0);

        let header =
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(decoder.feed_text(header).unwrap(), None);
        assert_eq!(
            decoder.feed_binary(Bytes::from_static(&[1, 2])).unwrap(),
            None
        );
        assert_eq!(
            decoder.feed_binary(Bytes::from_static(&[3, 4])).unwrap(),
            Some(Packet::event(
                "/admin",
                "baz",
                vec![blob(&[1, 2]), blob(&[3, 4])],
                None
            ))
        );

        decoder
            .feed_text(r#"51-14["foo",{"_placeholder":true,"num":0}]"#)
            .unwrap();
        assert_eq!(
            decoder
                .feed_binary(Bytes::from_static(&[1, 2, 3, 4]))
                .unwrap(),
            Some(Packet::event(
                "/",
                "foo",
                vec![blob(&[1, 2, 3, 4])],
                Some(14)
            ))
        );

        decoder
            .feed_text(r#"61-15["bar",{"_placeholder":true,"num":0}]"#)
            .unwrap();
        assert_eq!(
            decoder
                .feed_binary(Bytes::from_static(&[1, 2, 3, 4]))
                .unwrap(),
            Some(Packet::ack(
                "/",
                15,
                vec![json!("bar").into(), blob(&[1, 2, 3, 4])]
            ))
        );

        // From the spec's sample session: a BINARY_ACK in a custom namespace.
        decoder
            .feed_text(r#"61-/admin,1[{"_placeholder":true,"num":0}]"#)
            .unwrap();
        assert_eq!(
            decoder.feed_binary(Bytes::from_static(&[9])).unwrap(),
            Some(Packet::ack("/admin", 1, vec![blob(&[9])]))
        );
    }

    #[test]
    fn placeholders_are_replaced_at_any_depth_in_attachment_order() {
        let mut decoder = Decoder::default();
        let header = r#"52-["up",{"file":{"_placeholder":true,"num":1},"meta":{"n":1}},[{"_placeholder":true,"num":0}]]"#;
        decoder.feed_text(header).unwrap();
        decoder.feed_binary(Bytes::from_static(b"zero")).unwrap();
        let packet = decoder
            .feed_binary(Bytes::from_static(b"one"))
            .unwrap()
            .unwrap();
        let PacketKind::Event { args, .. } = packet.kind else {
            panic!("not an event")
        };
        assert_eq!(
            args,
            [
                Value::object([
                    ("file".to_owned(), blob(b"one")),
                    ("meta".to_owned(), json!({"n": 1}).into()),
                ]),
                Value::array([blob(b"zero")]),
            ]
        );
        // Canonical form: the binary-free member stayed plain JSON.
        let Value::Object(members) = &args[0] else {
            panic!("not an object")
        };
        assert!(matches!(members["meta"], Value::Json(_)));
    }

    #[test]
    fn binary_packet_without_attachments_is_complete_at_once() {
        assert_eq!(
            decode_ok(r#"50-["foo",1]"#),
            Packet::event("/", "foo", vec![json!(1).into()], None)
        );
        assert!(matches!(
            decode_err(r#"50-["foo",{"_placeholder":true,"num":0}]"#),
            CodecError::InvalidPlaceholder(_)
        ));
    }

    #[test]
    fn placeholder_objects_in_plain_events_are_plain_json() {
        let text = r#"2["foo",{"_placeholder":true,"num":0}]"#;
        assert_eq!(
            decode_ok(text),
            Packet::event(
                "/",
                "foo",
                vec![json!({"_placeholder": true, "num": 0}).into()],
                None
            )
        );
    }

    #[test]
    fn rejects_bad_placeholders() {
        let cases = [
            r#"52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#,
            r#"52-["a",{"_placeholder":true,"num":0}]"#,
            r#"51-["a",{"_placeholder":true,"num":1}]"#,
            r#"51-["a",{"_placeholder":true,"num":-1}]"#,
            r#"51-["a",{"_placeholder":true,"num":0.5}]"#,
            r#"51-["a",{"_placeholder":true}]"#,
            r#"51-["a",{"_placeholder":true,"num":"0"}]"#,
            r#"51-["a",{"_placeholder":true,"num":99999999999999999999999}]"#,
        ];
        for text in cases {
            let mut decoder = Decoder::default();
            assert!(
                matches!(
                    decoder.feed_text(text),
                    Err(CodecError::InvalidPlaceholder(_))
                ),
                "{text}"
            );
            assert_eq!(decoder.pending_attachments(), 0);
        }
    }

    #[test]
    fn attachment_limit_is_checked_before_anything_is_stored() {
        let mut decoder = Decoder::default();
        assert!(matches!(
            decoder.feed_text(r#"511-["a"]"#),
            Err(CodecError::TooManyAttachments { count: 11, max: 10 })
        ));
        assert!(matches!(
            decoder.feed_text(&format!("5{}-[\"a\"]", "9".repeat(10_000))),
            Err(CodecError::TooManyAttachments { max: 10, .. })
        ));
        let mut decoder = Decoder::new(Limits {
            max_attachments: 1,
            ..Limits::default()
        });
        assert!(matches!(
            decoder.feed_text(r#"52-["a"]"#),
            Err(CodecError::TooManyAttachments { count: 2, max: 1 })
        ));
        let ten: Vec<String> = (0..10)
            .map(|n| format!(r#"{{"_placeholder":true,"num":{n}}}"#))
            .collect();
        let mut decoder = Decoder::default();
        let header = format!(r#"510-["a",{}]"#, ten.join(","));
        assert_eq!(decoder.feed_text(&header).unwrap(), None);
        for n in 0..9 {
            assert_eq!(decoder.feed_binary(Bytes::from(vec![n])).unwrap(), None);
        }
        assert!(decoder.feed_binary(Bytes::from(vec![9])).unwrap().is_some());
    }

    #[test]
    fn decoder_rejects_frames_out_of_order() {
        let mut decoder = Decoder::default();
        assert!(matches!(
            decoder.feed_binary(Bytes::from_static(&[1])),
            Err(CodecError::UnexpectedBinary)
        ));
        decoder
            .feed_text(r#"51-["a",{"_placeholder":true,"num":0}]"#)
            .unwrap();
        assert!(matches!(
            decoder.feed_text(r#"2["b"]"#),
            Err(CodecError::AttachmentsPending(1))
        ));
        assert_eq!(decoder.pending_attachments(), 0, "idle after an error");
        assert!(decoder.feed_text(r#"2["b"]"#).unwrap().is_some());

        let mut small = Decoder::new(Limits {
            max_packet_len: 3,
            ..Limits::default()
        });
        assert!(matches!(
            small.feed_text(r#"2["b"]"#),
            Err(CodecError::TooLarge { len: 6, max: 3 })
        ));
        small.feed_text("1").unwrap();
        let mut decoder = Decoder::new(Limits {
            max_packet_len: 60,
            ..Limits::default()
        });
        decoder
            .feed_text(r#"51-["a",{"_placeholder":true,"num":0}]"#)
            .unwrap();
        assert!(matches!(
            decoder.feed_binary(Bytes::from(vec![0; 61])),
            Err(CodecError::TooLarge { len: 61, max: 60 })
        ));

        assert!(matches!(
            decode_err(r#"51-["a",{"_placeholder":true,"num":0}]"#),
            CodecError::AttachmentsExpected(1)
        ));
        decoder.reset();
    }

    #[test]
    fn ack_ids() {
        assert_eq!(
            decode_ok(r#"218446744073709551615["a"]"#),
            Packet::event("/", "a", vec![], Some(u64::MAX))
        );
        assert_eq!(decode_ok("3007[]"), Packet::ack("/", 7, vec![]));
        for text in [
            r#"218446744073709551616["a"]"#,
            r#"299999999999999999999["a"]"#,
            r#"2000000000000000000001["a"]"#,
            "3[]",
            "3",
            "05",
            "0/admin,5",
            "15",
            r#"47{"message":"x"}"#,
        ] {
            assert!(
                matches!(decode_err(text), CodecError::InvalidAckId),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_packets() {
        let invalid_payload = [
            "2",
            "2[]",
            "2[1]",
            r#"2{"a":1}"#,
            r#"2"a""#,
            "2/admin,",
            "212",
            "3/admin,1",
            r#"31{"a":1}"#,
            r#"1["a"]"#,
            "0[]",
            r#"0"token""#,
            "4",
            r#"4"Not authorized""#,
            r#"51-"a""#,
            "61-1",
        ];
        for text in invalid_payload {
            assert!(
                matches!(decode_err(text), CodecError::InvalidPayload { .. }),
                "{text}: {:?}",
                Packet::decode(text, &Limits::default())
            );
        }
        for text in [
            r#"2["a""#,
            r#"2["a"]x"#,
            r#"2,["a"]"#,
            "0{",
            r#"2/admin["a"]"#,
        ] {
            let error = decode_err(text);
            assert!(
                matches!(
                    error,
                    CodecError::Json(_) | CodecError::InvalidPayload { .. }
                ),
                "{text}: {error:?}"
            );
        }
        assert!(matches!(decode_err(""), CodecError::EmptyPacket));
        assert!(matches!(
            decode_err("7"),
            CodecError::UnknownSocketIoType('7')
        ));
        assert!(matches!(
            decode_err("é"),
            CodecError::UnknownSocketIoType('é')
        ));
        for text in ["5", "5-[]", "5x-[]", r#"51["a"]"#, "51"] {
            assert!(
                matches!(decode_err(text), CodecError::InvalidAttachmentCount),
                "{text}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        let deep = format!(r#"2["a",{}{}]"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(decode_err(&deep), CodecError::Json(_)));
        let deep = format!(
            r#"2["a",{}1{}]"#,
            r#"{"a":"#.repeat(10_000),
            "}".repeat(10_000)
        );
        assert!(matches!(decode_err(&deep), CodecError::Json(_)));
    }
}
