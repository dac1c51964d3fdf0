//! The [`Emitter`]: how server code outside a socket handler sends to clients.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use keel_domain::{SessionId, UserId};
use serde::Serialize;

use crate::adapter::{AckReplies, BroadcastMessage, Target};
use crate::error::EmitError;
use crate::node::{session_room, user_room};
use crate::server::Shared;
use crate::socket::{OutPacket, SocketId};
use crate::socketio::{self, MAIN_NAMESPACE, Packet, Value};

/// Sends to users, sessions, rooms or everyone, on every instance. Cheap to clone; get one
/// from [`crate::RealtimeServer::emitter`].
///
/// ```no_run
/// # async fn demo(emitter: keel_realtime::Emitter, user: keel_domain::UserId)
/// # -> Result<(), keel_realtime::EmitError> {
/// emitter.to_user(user).emit_json("notice", &serde_json::json!({"text": "hi"})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Emitter {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter").finish_non_exhaustive()
    }
}

impl Emitter {
    /// Every socket of a user (room `user:<id>`), in the main namespace unless changed.
    pub fn to_user(&self, user_id: UserId) -> Broadcast {
        self.to(Target::room(user_room(user_id)))
    }

    /// Every socket of a session (room `session:<id>`).
    pub fn to_session(&self, session_id: SessionId) -> Broadcast {
        self.to(Target::room(session_room(session_id)))
    }

    /// Every socket in a room.
    pub fn to_room(&self, room: impl Into<String>) -> Broadcast {
        self.to(Target::room(room))
    }

    /// Every socket of the namespace.
    pub fn to_all(&self) -> Broadcast {
        self.to(Target::All)
    }

    /// Any target.
    pub fn to(&self, target: Target) -> Broadcast {
        Broadcast::new(self.shared.clone(), target)
    }

    /// The users in a room of the main namespace over every instance, each once: presence for
    /// server code.
    ///
    /// # Errors
    /// [`EmitError::Adapter`] when the adapter cannot answer.
    pub async fn room_members(&self, room: &str) -> Result<Vec<UserId>, EmitError> {
        Ok(self
            .shared
            .adapter
            .room_members(MAIN_NAMESPACE, room)
            .await?)
    }

    /// Sends a Socket.IO DISCONNECT (`41`) to every socket of the session on every instance
    /// and closes them; the clients do not reconnect by themselves. Use on session revocation.
    ///
    /// # Errors
    /// [`EmitError::Adapter`] if the other instances could not be told.
    pub async fn disconnect_session(&self, session_id: SessionId) -> Result<(), EmitError> {
        self.shared.adapter.disconnect_session(session_id).await?;
        Ok(())
    }
}

/// A broadcast being addressed: a target in one namespace, optionally leaving one socket out.
#[derive(Clone)]
pub struct Broadcast {
    shared: Arc<Shared>,
    namespace: String,
    target: Target,
    except: Option<SocketId>,
}

impl fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broadcast")
            .field("namespace", &self.namespace)
            .field("target", &self.target)
            .field("except", &self.except)
            .finish()
    }
}

impl Broadcast {
    pub(crate) fn new(shared: Arc<Shared>, target: Target) -> Self {
        Self {
            shared,
            namespace: MAIN_NAMESPACE.to_owned(),
            target,
            except: None,
        }
    }

    /// Sends in this namespace instead of the main one.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Leaves this socket out.
    pub fn except(mut self, socket_id: SocketId) -> Self {
        self.except = Some(socket_id);
        self
    }

    /// Sends an event (arguments may carry binary data). Returns once every local recipient
    /// has it queued and the adapter has passed it on; it never waits for a slow client.
    ///
    /// # Errors
    /// [`EmitError::Codec`] (too many attachments, a bad namespace), [`EmitError::Adapter`].
    pub async fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), EmitError> {
        let packet = Packet::event(&*self.namespace, event, args, None);
        let encoded = packet.encode_with(&self.shared.limits)?;
        self.send(encoded.into()).await
    }

    /// Sends an event with one argument serialized from `arg`.
    ///
    /// # Errors
    /// As [`Broadcast::emit`].
    pub async fn emit_json<T: Serialize + ?Sized>(
        &self,
        event: &str,
        arg: &T,
    ) -> Result<(), EmitError> {
        let encoded = socketio::encode_event(&self.namespace, event, arg, None)?;
        self.send(encoded.into()).await
    }

    /// Sends an event asking every recipient for an acknowledgement, and collects the answers
    /// that arrive within `timeout` (the others are counted in [`AckReplies::missing`]).
    ///
    /// # Errors
    /// As [`Broadcast::emit`].
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<AckReplies, EmitError> {
        let ack_id = self.shared.next_ack_id();
        let packet = Packet::event(&*self.namespace, event, args, Some(ack_id));
        let encoded = packet.encode_with(&self.shared.limits)?;
        let message = self.message(encoded.into());
        Ok(self
            .shared
            .adapter
            .broadcast_with_ack(message, ack_id, timeout)
            .await?)
    }

    fn message(&self, packet: OutPacket) -> BroadcastMessage {
        BroadcastMessage {
            namespace: self.namespace.clone(),
            target: self.target.clone(),
            except: self.except.clone(),
            packet: Arc::new(packet),
        }
    }

    async fn send(&self, packet: OutPacket) -> Result<(), EmitError> {
        let message = self.message(packet);
        self.shared.adapter.broadcast(message).await?;
        Ok(())
    }
}
