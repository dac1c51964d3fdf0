//! Keel's events on the main namespace: `join`, `leave`, `message`, `ping`, and `presence`.

use std::sync::Arc;

use keel_domain::BoxFuture;
use serde_json::{Value as Json, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Identity;
use crate::handler::{DisconnectReason, NamespaceHandler};
use crate::socket::{AckSender, Event, Socket};
use crate::socketio::Value;

/// Error codes of Keel's acknowledgements (`{"ok":false,"error":{"code","message"}}`).
pub mod codes {
    /// The event's argument does not have the documented shape.
    pub const INVALID_PAYLOAD: &str = "invalid_payload";
    /// The room name is reserved or refused by the room policy.
    pub const ROOM_NOT_ALLOWED: &str = "room_not_allowed";
    /// The socket is not in the room it names.
    pub const NOT_IN_ROOM: &str = "not_in_room";
    /// The socket is in `max_rooms_per_socket` rooms already.
    pub const TOO_MANY_ROOMS: &str = "too_many_rooms";
    /// No such event.
    pub const UNKNOWN_EVENT: &str = "unknown_event";
    /// The socket sends events faster than `events_per_socket_per_second`.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The server could not do it (e.g. the adapter is down); retrying later may work.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// Decides which rooms a client may join with the `join` event.
///
/// `user:*` and `session:*` rooms are refused before the policy is asked, whatever it says.
pub trait RoomPolicy: Send + Sync + 'static {
    /// Whether `identity` may join `room`. May do I/O (a membership lookup), in bounded time.
    fn may_join<'a>(&'a self, identity: &'a Identity, room: &'a str) -> BoxFuture<'a, bool>;
}

/// The default room policy: names of the form `room:<1..64 of [A-Za-z0-9_.-]>`, open to any
/// authenticated user.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRoomPolicy;

impl DefaultRoomPolicy {
    /// Whether `room` is a well-formed public room name.
    pub fn is_valid_name(room: &str) -> bool {
        room.strip_prefix("room:").is_some_and(|name| {
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        })
    }
}

impl RoomPolicy for DefaultRoomPolicy {
    fn may_join<'a>(&'a self, _identity: &'a Identity, room: &'a str) -> BoxFuture<'a, bool> {
        let allowed = Self::is_valid_name(room);
        Box::pin(async move { allowed })
    }
}

/// Whether a room name is one of the server-managed rooms no client may join or leave.
pub fn is_reserved_room(room: &str) -> bool {
    room.starts_with("user:") || room.starts_with("session:")
}

/// The main namespace's handler: Keel's events from the API contract.
#[derive(Clone)]
pub struct KeelEvents {
    policy: Arc<dyn RoomPolicy>,
}

impl std::fmt::Debug for KeelEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeelEvents").finish_non_exhaustive()
    }
}

impl Default for KeelEvents {
    fn default() -> Self {
        Self::new(Arc::new(DefaultRoomPolicy))
    }
}

/// What went wrong with one event, for its error ack.
struct Refusal {
    code: &'static str,
    message: &'static str,
}

const fn refuse(code: &'static str, message: &'static str) -> Refusal {
    Refusal { code, message }
}

impl KeelEvents {
    /// Keel's events with this room policy.
    pub fn new(policy: Arc<dyn RoomPolicy>) -> Self {
        Self { policy }
    }

    async fn handle(&self, socket: &Socket, name: &str, args: Vec<Value>) -> Result<Json, Refusal> {
        match name {
            "join" => self.join(socket, &args).await,
            "leave" => leave(socket, &args).await,
            "message" => message(socket, args).await,
            "ping" => Ok(json!({"ok": true, "serverTime": now()})),
            _ => Err(refuse(codes::UNKNOWN_EVENT, "no such event")),
        }
    }

    async fn join(&self, socket: &Socket, args: &[Value]) -> Result<Json, Refusal> {
        let room = room_arg(args)?;
        if is_reserved_room(room) || !self.policy.may_join(socket.identity(), room).await {
            return Err(refuse(
                codes::ROOM_NOT_ALLOWED,
                "this room cannot be joined",
            ));
        }
        match socket.join(room) {
            Ok(true) => presence(socket, room, true).await?,
            Ok(false) => {}
            Err(crate::JoinError::TooManyRooms) => {
                return Err(refuse(codes::TOO_MANY_ROOMS, "too many rooms"));
            }
            Err(_) => return Err(refuse(codes::UNAVAILABLE, "the socket is disconnected")),
        }
        // Who is there now, over every instance: with the `presence` events that follow, the
        // client can keep the room's member list without asking again.
        let members = socket.room_members(room).await.map_err(|error| {
            tracing::warn!(%error, "room members not known");
            refuse(codes::UNAVAILABLE, "the room's members could not be listed")
        })?;
        let members: Vec<String> = members.iter().map(ToString::to_string).collect();
        Ok(json!({"ok": true, "members": members}))
    }
}

async fn leave(socket: &Socket, args: &[Value]) -> Result<Json, Refusal> {
    let room = room_arg(args)?;
    if is_reserved_room(room) || !socket.leave(room) {
        return Err(refuse(codes::NOT_IN_ROOM, "the socket is not in this room"));
    }
    presence(socket, room, false).await?;
    Ok(json!({"ok": true}))
}

async fn message(socket: &Socket, mut args: Vec<Value>) -> Result<Json, Refusal> {
    const SHAPE: Refusal = refuse(codes::INVALID_PAYLOAD, "expected {\"room\",\"body\"}");
    if args.len() != 1 {
        return Err(SHAPE);
    }
    // The body may carry binary data, so the argument is taken apart as a `Value`.
    let (room, body) = match args.pop() {
        Some(Value::Json(Json::Object(mut members))) => {
            let room = members.remove("room");
            let body = members.remove("body");
            match (room, body) {
                (Some(Json::String(room)), Some(body)) => (room, Value::Json(body)),
                _ => return Err(SHAPE),
            }
        }
        Some(Value::Object(mut members)) => {
            let room = members.remove("room");
            let body = members.remove("body");
            match (room, body) {
                (Some(Value::Json(Json::String(room))), Some(body)) => (room, body),
                _ => return Err(SHAPE),
            }
        }
        _ => return Err(SHAPE),
    };
    if is_reserved_room(&room) || !socket.in_room(&room) {
        return Err(refuse(codes::NOT_IN_ROOM, "the socket is not in this room"));
    }
    let sent_at = now();
    let out = Value::object([
        ("room".to_owned(), Value::from(room.as_str())),
        (
            "from".to_owned(),
            Value::from(socket.identity().user_id.to_string()),
        ),
        ("body".to_owned(), body),
        ("sentAt".to_owned(), Value::from(sent_at.as_str())),
    ]);
    socket
        .to_room(room)
        .emit("message", vec![out])
        .await
        .map_err(|error| {
            tracing::warn!(%error, "room message not delivered");
            refuse(codes::UNAVAILABLE, "the message could not be delivered")
        })?;
    Ok(json!({"ok": true, "sentAt": sent_at}))
}

async fn presence(socket: &Socket, room: &str, joined: bool) -> Result<(), Refusal> {
    socket.announce(room, joined).await.map_err(|error| {
        tracing::warn!(%error, "presence not delivered");
        refuse(codes::UNAVAILABLE, "presence could not be delivered")
    })
}

fn room_arg(args: &[Value]) -> Result<&str, Refusal> {
    match args {
        [Value::Json(Json::Object(members))] => members
            .get("room")
            .and_then(Json::as_str)
            .ok_or(refuse(codes::INVALID_PAYLOAD, "expected {\"room\"}")),
        _ => Err(refuse(codes::INVALID_PAYLOAD, "expected {\"room\"}")),
    }
}

/// The current time as an RFC 3339 UTC string, as the contract writes times.
fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The error acknowledgement of the contract.
pub fn error_ack(code: &str, message: &str) -> Json {
    json!({"ok": false, "error": {"code": code, "message": message}})
}

fn answer(ack: Option<AckSender>, result: Result<Json, Refusal>) {
    let Some(ack) = ack else { return };
    let body = match result {
        Ok(body) => body,
        Err(refusal) => error_ack(refusal.code, refusal.message),
    };
    // A failed ack means the socket is going away; nothing is left to tell it.
    let _ = ack.send_json(&body);
}

impl NamespaceHandler for KeelEvents {
    fn on_event<'a>(&'a self, socket: &'a Socket, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Event { name, args, ack } = event;
            let result = self.handle(socket, &name, args).await;
            answer(ack, result);
        })
    }

    fn on_disconnect<'a>(
        &'a self,
        socket: &'a Socket,
        _reason: DisconnectReason,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for room in socket.rooms() {
                if !is_reserved_room(&room) {
                    let _ = presence(socket, &room, false).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_accepts_only_well_formed_public_rooms() {
        assert!(DefaultRoomPolicy::is_valid_name("room:a"));
        assert!(DefaultRoomPolicy::is_valid_name("room:A-z_0.9"));
        assert!(DefaultRoomPolicy::is_valid_name(&format!(
            "room:{}",
            "x".repeat(64)
        )));
        for bad in [
            "room:", "a", "user:1", "room:a b", "room:é", "room:a/b", "Room:a",
        ] {
            assert!(!DefaultRoomPolicy::is_valid_name(bad), "{bad}");
        }
        assert!(!DefaultRoomPolicy::is_valid_name(&format!(
            "room:{}",
            "x".repeat(65)
        )));
    }

    #[test]
    fn user_and_session_rooms_are_reserved() {
        assert!(is_reserved_room("user:x"));
        assert!(is_reserved_room("session:x"));
        assert!(!is_reserved_room("room:user:x"));
    }

    #[test]
    fn error_ack_has_the_contract_shape() {
        assert_eq!(
            error_ack("rate_limited", "slow down"),
            json!({"ok": false, "error": {"code": "rate_limited", "message": "slow down"}})
        );
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let text = now();
        assert!(text.ends_with('Z'), "{text}");
        assert!(OffsetDateTime::parse(&text, &Rfc3339).is_ok());
    }
}
