//! The framing of the adapter's Redis messages: a small binary header, then the already-encoded
//! Engine.IO text and binary attachments, copied as they are.
//!
//! Every frame starts with the version byte, the frame kind and the 16-byte id of the instance
//! that sent it. Strings and byte strings are length-prefixed (big-endian): room names,
//! namespaces and socket ids with `u16`, packet text and attachments with `u32`.
//!
//! | kind | frame | after the header |
//! |---|---|---|
//! | 1 | broadcast | namespace, target, except, text, attachments |
//! | 2 | broadcast asking for acks | request id `u64`, timeout ms `u32`, then as 1 |
//! | 3 | disconnect a session | the session id as text |
//! | 4 | how many acks an instance waits for | request id `u64`, count `u32` |
//! | 5 | one socket's ack | request id `u64`, socket id, ACK text, attachments |
//! | 6 | a socket joined or left a room | namespace, room, socket id, user id, `1` joined / `0` left |
//! | 7 | heartbeat: the sender is alive | nothing |
//! | 8 | send me your room memberships | nothing (the answer goes to the sender's own channel) |
//! | 9 | all of the sender's room memberships | `u32` count, then namespace, room, socket id, user id each |
//!
//! Target: `0` for every socket, or `1` followed by a `u16` room count and the rooms.

use bytes::{Buf, BufMut, Bytes};

use crate::adapter::Target;

/// The framing version; frames of another version are ignored.
const VERSION: u8 = 1;

const BROADCAST: u8 = 1;
const ACK_BROADCAST: u8 = 2;
const DISCONNECT_SESSION: u8 = 3;
const ACK_COUNT: u8 = 4;
const ACK_REPLY: u8 = 5;
const PRESENCE: u8 = 6;
const HEARTBEAT: u8 = 7;
const SYNC_REQUEST: u8 = 8;
const SYNC: u8 = 9;

/// A random id per adapter instance, carried by every frame so an instance skips its own.
pub(crate) type InstanceId = [u8; 16];

/// A broadcast as it travels: the encoded packet and who gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireBroadcast {
    pub(crate) namespace: String,
    pub(crate) target: Target,
    /// The socket left out, by id.
    pub(crate) except: Option<String>,
    /// The Engine.IO text frame, e.g. `42["message",{...}]`; valid UTF-8 once decoded.
    pub(crate) text: Bytes,
    pub(crate) attachments: Vec<Bytes>,
}

/// What a frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Broadcast(WireBroadcast),
    AckBroadcast {
        request: u64,
        timeout_ms: u32,
        broadcast: WireBroadcast,
    },
    DisconnectSession(String),
    AckCount {
        request: u64,
        count: u32,
    },
    AckReply {
        request: u64,
        socket_id: String,
        /// A Socket.IO ACK packet (without the Engine.IO type) carrying the arguments.
        text: Bytes,
        attachments: Vec<Bytes>,
    },
    Presence {
        member: WireMember,
        joined: bool,
    },
    Heartbeat,
    SyncRequest,
    Sync(Vec<WireMember>),
}

/// One socket's membership of a room, as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireMember {
    pub(crate) namespace: String,
    pub(crate) room: String,
    pub(crate) socket_id: String,
    pub(crate) user_id: String,
}

/// A frame with the instance that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) origin: InstanceId,
    pub(crate) frame: Frame,
}

/// Borrowed parts of a broadcast, for encoding without copying into owned values first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BroadcastRef<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) target: &'a Target,
    pub(crate) except: Option<&'a str>,
    pub(crate) text: &'a [u8],
    pub(crate) attachments: &'a [Bytes],
}

impl BroadcastRef<'_> {
    fn len(&self) -> usize {
        let rooms = match self.target {
            Target::All => 0,
            Target::Rooms(rooms) => 2 + rooms.iter().map(|room| 2 + room.len()).sum::<usize>(),
        };
        2 + self.namespace.len()
            + 1
            + rooms
            + 2
            + self.except.map_or(0, str::len)
            + 4
            + self.text.len()
            + 2
            + self.attachments.iter().map(|a| 4 + a.len()).sum::<usize>()
    }

    fn put(&self, out: &mut Vec<u8>) {
        put_str16(out, self.namespace);
        match self.target {
            Target::All => out.put_u8(0),
            Target::Rooms(rooms) => {
                out.put_u8(1);
                out.put_u16(len16(rooms.len()));
                for room in rooms {
                    put_str16(out, room);
                }
            }
        }
        put_str16(out, self.except.unwrap_or_default());
        put_bytes32(out, self.text);
        put_attachments(out, self.attachments);
    }
}

fn header(out: &mut Vec<u8>, kind: u8, origin: &InstanceId) {
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_slice(origin);
}

const HEADER_LEN: usize = 2 + 16;

/// A broadcast frame.
pub(crate) fn encode_broadcast(origin: &InstanceId, broadcast: BroadcastRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + broadcast.len());
    header(&mut out, BROADCAST, origin);
    broadcast.put(&mut out);
    out
}

/// A broadcast frame that asks the other instances for acknowledgements.
pub(crate) fn encode_ack_broadcast(
    origin: &InstanceId,
    request: u64,
    timeout_ms: u32,
    broadcast: BroadcastRef<'_>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 12 + broadcast.len());
    header(&mut out, ACK_BROADCAST, origin);
    out.put_u64(request);
    out.put_u32(timeout_ms);
    broadcast.put(&mut out);
    out
}

/// A session disconnect frame.
pub(crate) fn encode_disconnect_session(origin: &InstanceId, session_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 2 + session_id.len());
    header(&mut out, DISCONNECT_SESSION, origin);
    put_str16(&mut out, session_id);
    out
}

/// How many acknowledgements an instance waits for.
pub(crate) fn encode_ack_count(origin: &InstanceId, request: u64, count: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 12);
    header(&mut out, ACK_COUNT, origin);
    out.put_u64(request);
    out.put_u32(count);
    out
}

/// One socket's acknowledgement.
pub(crate) fn encode_ack_reply(
    origin: &InstanceId,
    request: u64,
    socket_id: &str,
    text: &[u8],
    attachments: &[Bytes],
) -> Vec<u8> {
    let len = HEADER_LEN
        + 8
        + 2
        + socket_id.len()
        + 4
        + text.len()
        + 2
        + attachments.iter().map(|a| 4 + a.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    header(&mut out, ACK_REPLY, origin);
    out.put_u64(request);
    put_str16(&mut out, socket_id);
    put_bytes32(&mut out, text);
    put_attachments(&mut out, attachments);
    out
}

fn put_member(out: &mut Vec<u8>, member: &WireMember) {
    put_str16(out, &member.namespace);
    put_str16(out, &member.room);
    put_str16(out, &member.socket_id);
    put_str16(out, &member.user_id);
}

fn member_len(member: &WireMember) -> usize {
    8 + member.namespace.len() + member.room.len() + member.socket_id.len() + member.user_id.len()
}

/// A socket joined (`joined`) or left a room.
pub(crate) fn encode_presence(origin: &InstanceId, member: &WireMember, joined: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + member_len(member) + 1);
    header(&mut out, PRESENCE, origin);
    put_member(&mut out, member);
    out.put_u8(u8::from(joined));
    out
}

/// The sender is alive.
pub(crate) fn encode_heartbeat(origin: &InstanceId) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    header(&mut out, HEARTBEAT, origin);
    out
}

/// Asks for the receivers' room memberships.
pub(crate) fn encode_sync_request(origin: &InstanceId) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    header(&mut out, SYNC_REQUEST, origin);
    out
}

/// All of the sender's room memberships.
pub(crate) fn encode_sync(origin: &InstanceId, members: &[WireMember]) -> Vec<u8> {
    let len = HEADER_LEN + 4 + members.iter().map(member_len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    header(&mut out, SYNC, origin);
    out.put_u32(u32::try_from(members.len()).unwrap_or(u32::MAX));
    for member in members {
        put_member(&mut out, member);
    }
    out
}

/// Decodes a frame; `None` for anything malformed, truncated or of another version. Byte
/// strings are slices of `data`, not copies.
pub(crate) fn decode(data: Bytes) -> Option<Envelope> {
    let mut r = Reader(data);
    if r.u8()? != VERSION {
        return None;
    }
    let kind = r.u8()?;
    let origin: InstanceId = r.bytes(16)?.as_ref().try_into().ok()?;
    let frame = match kind {
        BROADCAST => Frame::Broadcast(r.broadcast()?),
        ACK_BROADCAST => Frame::AckBroadcast {
            request: r.u64()?,
            timeout_ms: r.u32()?,
            broadcast: r.broadcast()?,
        },
        DISCONNECT_SESSION => Frame::DisconnectSession(r.str16()?),
        ACK_COUNT => Frame::AckCount {
            request: r.u64()?,
            count: r.u32()?,
        },
        ACK_REPLY => Frame::AckReply {
            request: r.u64()?,
            socket_id: r.str16()?,
            text: r.bytes32()?,
            attachments: r.attachments()?,
        },
        PRESENCE => Frame::Presence {
            member: r.member()?,
            joined: match r.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            },
        },
        HEARTBEAT => Frame::Heartbeat,
        SYNC_REQUEST => Frame::SyncRequest,
        SYNC => {
            let count = usize::try_from(r.u32()?).ok()?;
            // Each member takes at least its four 2-byte lengths: a bogus count cannot
            // allocate much.
            let mut members = Vec::with_capacity(count.min(r.0.remaining() / 8));
            for _ in 0..count {
                members.push(r.member()?);
            }
            Frame::Sync(members)
        }
        _ => return None,
    };
    // Trailing bytes mean a frame this version does not understand.
    r.0.is_empty().then_some(Envelope { origin, frame })
}

/// Replaces the acknowledgement id of an encoded event, `4<type>[<n>-][<nsp>,]<id>[...`, so an
/// instance can give a broadcast from elsewhere an id of its own. `None` if the text is not an
/// event with an id.
pub(crate) fn replace_ack_id(text: &str, ack_id: u64) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'4') {
        return None;
    }
    let mut i = 2;
    match bytes.get(1)? {
        b'2' => {}
        b'5' => {
            while bytes.get(i)?.is_ascii_digit() {
                i += 1;
            }
            if bytes.get(i)? != &b'-' {
                return None;
            }
            i += 1;
        }
        _ => return None,
    }
    if bytes.get(i) == Some(&b'/') {
        i += text.get(i..)?.find(',')? + 1;
    }
    let start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == start || bytes.get(i) != Some(&b'[') {
        return None;
    }
    let (head, tail) = (text.get(..start)?, text.get(i..)?);
    Some(format!("{head}{ack_id}{tail}"))
}

fn len16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// Writes a string of at most 65535 bytes (longer ones are cut at a character boundary; room
/// names, namespaces and ids are far shorter).
fn put_str16(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(len16(end));
    out.put_slice(&text.as_bytes()[..end]);
}

fn put_bytes32(out: &mut Vec<u8>, data: &[u8]) {
    out.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    out.put_slice(data);
}

fn put_attachments(out: &mut Vec<u8>, attachments: &[Bytes]) {
    out.put_u16(len16(attachments.len()));
    for attachment in attachments {
        put_bytes32(out, attachment);
    }
}

struct Reader(Bytes);

impl Reader {
    fn u8(&mut self) -> Option<u8> {
        (self.0.remaining() >= 1).then(|| self.0.get_u8())
    }

    fn u16(&mut self) -> Option<u16> {
        (self.0.remaining() >= 2).then(|| self.0.get_u16())
    }

    fn u32(&mut self) -> Option<u32> {
        (self.0.remaining() >= 4).then(|| self.0.get_u32())
    }

    fn u64(&mut self) -> Option<u64> {
        (self.0.remaining() >= 8).then(|| self.0.get_u64())
    }

    fn bytes(&mut self, len: usize) -> Option<Bytes> {
        (self.0.remaining() >= len).then(|| self.0.split_to(len))
    }

    fn str16(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?);
        String::from_utf8(self.bytes(len)?.to_vec()).ok()
    }

    fn bytes32(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.bytes(len)
    }

    fn member(&mut self) -> Option<WireMember> {
        Some(WireMember {
            namespace: self.str16()?,
            room: self.str16()?,
            socket_id: self.str16()?,
            user_id: self.str16()?,
        })
    }

    fn attachments(&mut self) -> Option<Vec<Bytes>> {
        let count = self.u16()?;
        // Each attachment takes at least its 4-byte length: a bogus count cannot allocate much.
        let mut out = Vec::with_capacity(usize::from(count).min(self.0.remaining() / 4));
        for _ in 0..count {
            out.push(self.bytes32()?);
        }
        Some(out)
    }

    fn broadcast(&mut self) -> Option<WireBroadcast> {
        let namespace = self.str16()?;
        let target = match self.u8()? {
            0 => Target::All,
            1 => {
                let count = self.u16()?;
                let mut rooms = Vec::with_capacity(usize::from(count).min(self.0.remaining() / 2));
                for _ in 0..count {
                    rooms.push(self.str16()?);
                }
                Target::Rooms(rooms)
            }
            _ => return None,
        };
        let except = Some(self.str16()?).filter(|id| !id.is_empty());
        let text = self.bytes32()?;
        std::str::from_utf8(&text).ok()?;
        let attachments = self.attachments()?;
        Some(WireBroadcast {
            namespace,
            target,
            except,
            text,
            attachments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: InstanceId = [7; 16];

    fn broadcast_ref<'a>(target: &'a Target, attachments: &'a [Bytes]) -> BroadcastRef<'a> {
        BroadcastRef {
            namespace: "/chat",
            target,
            except: Some("abc"),
            text: b"451-/chat,[\"x\",{\"_placeholder\":true,\"num\":0}]",
            attachments,
        }
    }

    #[test]
    fn broadcasts_round_trip_with_attachments() {
        let target = Target::Rooms(vec!["room:a".into(), "user:é".into()]);
        let attachments = [Bytes::from_static(&[0, 1, 2, 255])];
        let frame = encode_broadcast(&ORIGIN, broadcast_ref(&target, &attachments));
        let decoded = decode(Bytes::from(frame)).unwrap();
        assert_eq!(decoded.origin, ORIGIN);
        let Frame::Broadcast(b) = decoded.frame else {
            panic!("{decoded:?}")
        };
        assert_eq!(b.namespace, "/chat");
        assert_eq!(b.target, target);
        assert_eq!(b.except.as_deref(), Some("abc"));
        assert_eq!(&b.text[..], broadcast_ref(&target, &attachments).text);
        assert_eq!(b.attachments, attachments);
    }

    #[test]
    fn ack_frames_round_trip() {
        let frame = encode_ack_broadcast(&ORIGIN, 9, 500, broadcast_ref(&Target::All, &[]));
        let decoded = decode(Bytes::from(frame)).unwrap().frame;
        let Frame::AckBroadcast {
            request: 9,
            timeout_ms: 500,
            broadcast,
        } = decoded
        else {
            panic!("{decoded:?}")
        };
        assert_eq!(broadcast.target, Target::All);
        let frame = encode_ack_count(&ORIGIN, 9, 3);
        assert_eq!(
            decode(Bytes::from(frame)).unwrap().frame,
            Frame::AckCount {
                request: 9,
                count: 3
            }
        );
        let frame = encode_ack_reply(&ORIGIN, 9, "sid", b"3[1]", &[Bytes::from_static(b"x")]);
        assert_eq!(
            decode(Bytes::from(frame)).unwrap().frame,
            Frame::AckReply {
                request: 9,
                socket_id: "sid".into(),
                text: Bytes::from_static(b"3[1]"),
                attachments: vec![Bytes::from_static(b"x")],
            }
        );
        let frame = encode_disconnect_session(&ORIGIN, "s-1");
        assert_eq!(
            decode(Bytes::from(frame)).unwrap().frame,
            Frame::DisconnectSession("s-1".into())
        );
    }

    #[test]
    fn presence_frames_round_trip_and_refuse_truncation() {
        let member = WireMember {
            namespace: "/".into(),
            room: "room:é".into(),
            socket_id: "sid-1".into(),
            user_id: "0190c0de-0000-7000-8000-000000000001".into(),
        };
        let frame = encode_presence(&ORIGIN, &member, false);
        assert_eq!(
            decode(Bytes::from(frame.clone())).unwrap().frame,
            Frame::Presence {
                member: member.clone(),
                joined: false
            }
        );
        let members = vec![
            member.clone(),
            WireMember {
                room: "room:b".into(),
                ..member
            },
        ];
        let sync = encode_sync(&ORIGIN, &members);
        assert_eq!(
            decode(Bytes::from(sync.clone())).unwrap().frame,
            Frame::Sync(members)
        );
        for len in 0..sync.len() {
            assert!(
                decode(Bytes::copy_from_slice(&sync[..len])).is_none(),
                "{len}"
            );
        }
        for len in 0..frame.len() {
            assert!(
                decode(Bytes::copy_from_slice(&frame[..len])).is_none(),
                "{len}"
            );
        }
        let heartbeat = encode_heartbeat(&ORIGIN);
        assert_eq!(
            decode(Bytes::from(heartbeat)).unwrap().frame,
            Frame::Heartbeat
        );
        let request = encode_sync_request(&ORIGIN);
        assert_eq!(
            decode(Bytes::from(request)).unwrap().frame,
            Frame::SyncRequest
        );
    }

    #[test]
    fn malformed_frames_are_refused_not_panicking() {
        let frame = encode_broadcast(&ORIGIN, broadcast_ref(&Target::All, &[]));
        for len in 0..frame.len() {
            assert!(
                decode(Bytes::copy_from_slice(&frame[..len])).is_none(),
                "{len}"
            );
        }
        let mut longer = frame.clone();
        longer.push(0);
        assert!(decode(Bytes::from(longer)).is_none());
        let mut other_version = frame;
        other_version[0] = 2;
        assert!(decode(Bytes::from(other_version)).is_none());
        assert!(decode(Bytes::from_static(&[1, 99, 0, 0])).is_none());
    }

    #[test]
    fn ack_ids_are_replaced_in_every_event_shape() {
        let id = 1 << 52;
        assert_eq!(
            replace_ack_id("4212[\"q\"]", id).unwrap(),
            format!("42{id}[\"q\"]")
        );
        assert_eq!(
            replace_ack_id("42/chat,7[\"q\"]", id).unwrap(),
            format!("42/chat,{id}[\"q\"]")
        );
        assert_eq!(
            replace_ack_id("451-/chat,7[\"q\",{}]", id).unwrap(),
            format!("451-/chat,{id}[\"q\",{{}}]")
        );
        assert_eq!(replace_ack_id("451-7[\"q\"]", 1).unwrap(), "451-1[\"q\"]");
        for bad in ["42[\"q\"]", "43[1]", "2", "", "45x-1[", "42/chat[1]"] {
            assert_eq!(replace_ack_id(bad, 1), None, "{bad}");
        }
    }
}
