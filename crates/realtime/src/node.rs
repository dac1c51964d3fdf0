//! This instance's sockets and rooms: what a broadcast reaches locally.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use keel_domain::{SessionId, UserId};
use tokio::sync::mpsc;

use crate::adapter::{AckReply, BroadcastMessage, PresenceChange, Target};
use crate::error::JoinError;
use crate::keel_events::is_reserved_room;
use crate::socket::{AckSink, Control, SocketId, SocketInner};

/// The room every socket of a user is in: `user:<id>`.
pub fn user_room(user_id: UserId) -> String {
    format!("user:{user_id}")
}

/// The room every socket of a session is in: `session:<id>`.
pub fn session_room(session_id: SessionId) -> String {
    format!("session:{session_id}")
}

#[derive(Debug, Default)]
struct Registry {
    namespaces: HashMap<Arc<str>, NamespaceRooms>,
    /// Open sockets per user, over all namespaces, for `max_sockets_per_user`.
    users: HashMap<UserId, u32>,
    /// Told `(namespace, room)` whenever a room other than `user:`/`session:` gets its first
    /// local member or loses its last one (an adapter subscribes per room).
    room_watch: Option<mpsc::UnboundedSender<RoomKey>>,
}

/// A room of a namespace: `(namespace, room)`.
pub(crate) type RoomKey = (String, String);

impl Registry {
    fn room_changed(&self, namespace: &str, room: &str) {
        if let Some(watch) = &self.room_watch
            && !is_reserved_room(room)
        {
            let _ = watch.send((namespace.to_owned(), room.to_owned()));
        }
    }
}

#[derive(Debug, Default)]
struct NamespaceRooms {
    sockets: HashMap<SocketId, Member>,
    rooms: HashMap<String, HashSet<SocketId>>,
}

#[derive(Debug)]
struct Member {
    socket: Arc<SocketInner>,
    rooms: HashSet<String>,
}

/// The user already has `max_sockets_per_user` sockets open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManySockets;

/// This instance's sockets and rooms. An [`crate::Adapter`] delivers to it: directly for
/// [`crate::LocalAdapter`], or for messages that other instances published.
///
/// Cheap to clone. Delivery never waits: each recipient's packet is put in its bounded queue
/// or, if that is full, the recipient is disconnected.
#[derive(Clone, Default)]
pub struct LocalNode {
    registry: Arc<RwLock<Registry>>,
}

impl fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalNode")
            .field("sockets", &self.socket_count())
            .finish()
    }
}

impl LocalNode {
    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many sockets are connected to this instance, over all namespaces.
    pub fn socket_count(&self) -> usize {
        self.read()
            .namespaces
            .values()
            .map(|ns| ns.sockets.len())
            .sum()
    }

    /// The sessions that have at least one socket on this instance, each once: what a periodic
    /// check against the session registry walks.
    pub fn session_ids(&self) -> Vec<SessionId> {
        let registry = self.read();
        let sessions: HashSet<SessionId> = registry
            .namespaces
            .values()
            .flat_map(|ns| {
                ns.sockets
                    .values()
                    .map(|member| member.socket.identity.session_id)
            })
            .collect();
        sessions.into_iter().collect()
    }

    /// From now on, `(namespace, room)` is sent whenever a room (other than `user:`/`session:`
    /// ones) gets its first local member or loses its last one. Replaces an earlier watcher.
    pub(crate) fn watch_rooms(&self) -> mpsc::UnboundedReceiver<RoomKey> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.write().room_watch = Some(tx);
        rx
    }

    /// Whether the room has a member on this instance.
    pub(crate) fn has_room(&self, namespace: &str, room: &str) -> bool {
        self.read()
            .namespaces
            .get(namespace)
            .is_some_and(|ns| ns.rooms.contains_key(room))
    }

    /// The rooms (other than `user:`/`session:` ones) with a member on this instance.
    pub(crate) fn public_rooms(&self) -> Vec<RoomKey> {
        let registry = self.read();
        registry
            .namespaces
            .iter()
            .flat_map(|(namespace, ns)| {
                ns.rooms
                    .keys()
                    .filter(|room| !is_reserved_room(room))
                    .map(|room| (namespace.to_string(), room.clone()))
            })
            .collect()
    }

    /// The users with a socket in `room` of `namespace` on this instance, each once.
    pub fn room_users(&self, namespace: &str, room: &str) -> Vec<UserId> {
        let registry = self.read();
        let Some(ns) = registry.namespaces.get(namespace) else {
            return Vec::new();
        };
        let users: HashSet<UserId> = ns
            .rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|id| ns.sockets.get(id))
            .map(|member| member.socket.identity.user_id)
            .collect();
        users.into_iter().collect()
    }

    /// Every membership of this instance's sockets in rooms other than `user:` and `session:`
    /// ones: what other instances need to know for presence.
    pub(crate) fn public_memberships(&self) -> Vec<PresenceChange> {
        let registry = self.read();
        let mut out = Vec::new();
        for (namespace, ns) in &registry.namespaces {
            for member in ns.sockets.values() {
                for room in member.rooms.iter().filter(|room| !is_reserved_room(room)) {
                    out.push(PresenceChange {
                        namespace: namespace.to_string(),
                        room: room.clone(),
                        socket_id: member.socket.id.clone(),
                        user_id: member.socket.identity.user_id,
                        joined: true,
                    });
                }
            }
        }
        out
    }

    /// Registers a socket in its `user:` and `session:` rooms. `announce` runs under the
    /// registry lock, so the CONNECT answer it queues precedes any broadcast to the socket.
    pub(crate) fn insert(
        &self,
        socket: &Arc<SocketInner>,
        max_per_user: u32,
        announce: impl FnOnce(),
    ) -> Result<(), TooManySockets> {
        let mut registry = self.write();
        let count = registry.users.entry(socket.identity.user_id).or_default();
        if max_per_user > 0 && *count >= max_per_user {
            return Err(TooManySockets);
        }
        *count += 1;
        let rooms = HashSet::from([
            user_room(socket.identity.user_id),
            session_room(socket.identity.session_id),
        ]);
        let ns = registry
            .namespaces
            .entry(socket.namespace.clone())
            .or_default();
        for room in &rooms {
            ns.rooms
                .entry(room.clone())
                .or_default()
                .insert(socket.id.clone());
        }
        ns.sockets.insert(
            socket.id.clone(),
            Member {
                socket: socket.clone(),
                rooms,
            },
        );
        announce();
        Ok(())
    }

    pub(crate) fn remove(&self, socket: &SocketInner) {
        let mut registry = self.write();
        let Some(ns) = registry.namespaces.get_mut(&socket.namespace) else {
            return;
        };
        let Some(member) = ns.sockets.remove(&socket.id) else {
            return;
        };
        let mut emptied = Vec::new();
        for room in &member.rooms {
            if let Some(ids) = ns.rooms.get_mut(room) {
                ids.remove(&socket.id);
                if ids.is_empty() {
                    ns.rooms.remove(room);
                    emptied.push(room);
                }
            }
        }
        if ns.sockets.is_empty() {
            registry.namespaces.remove(&socket.namespace);
        }
        for room in emptied {
            registry.room_changed(&socket.namespace, room);
        }
        if let Some(count) = registry.users.get_mut(&socket.identity.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                registry.users.remove(&socket.identity.user_id);
            }
        }
    }

    pub(crate) fn join(
        &self,
        socket: &SocketInner,
        room: &str,
        max_rooms: usize,
    ) -> Result<bool, JoinError> {
        let mut registry = self.write();
        let ns = registry
            .namespaces
            .get_mut(&socket.namespace)
            .ok_or(JoinError::Disconnected)?;
        let member = ns
            .sockets
            .get_mut(&socket.id)
            .ok_or(JoinError::Disconnected)?;
        if member.rooms.contains(room) {
            return Ok(false);
        }
        if member.rooms.len() >= max_rooms {
            return Err(JoinError::TooManyRooms);
        }
        member.rooms.insert(room.to_owned());
        let members = ns.rooms.entry(room.to_owned()).or_default();
        let created = members.is_empty();
        members.insert(socket.id.clone());
        if created {
            registry.room_changed(&socket.namespace, room);
        }
        Ok(true)
    }

    pub(crate) fn leave(&self, socket: &SocketInner, room: &str) -> bool {
        let mut registry = self.write();
        let Some(ns) = registry.namespaces.get_mut(&socket.namespace) else {
            return false;
        };
        let Some(member) = ns.sockets.get_mut(&socket.id) else {
            return false;
        };
        if !member.rooms.remove(room) {
            return false;
        }
        if let Some(ids) = ns.rooms.get_mut(room) {
            ids.remove(&socket.id);
            if ids.is_empty() {
                ns.rooms.remove(room);
                registry.room_changed(&socket.namespace, room);
            }
        }
        true
    }

    pub(crate) fn in_room(&self, socket: &SocketInner, room: &str) -> bool {
        self.read()
            .namespaces
            .get(&socket.namespace)
            .and_then(|ns| ns.sockets.get(&socket.id))
            .is_some_and(|member| member.rooms.contains(room))
    }

    pub(crate) fn rooms_of(&self, socket: &SocketInner) -> Vec<String> {
        self.read()
            .namespaces
            .get(&socket.namespace)
            .and_then(|ns| ns.sockets.get(&socket.id))
            .map(|member| member.rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The local sockets a message is for, collected under the read lock and sent to after it
    /// is released.
    fn recipients(&self, message: &BroadcastMessage) -> Vec<Arc<SocketInner>> {
        let registry = self.read();
        let Some(ns) = registry.namespaces.get(message.namespace.as_str()) else {
            return Vec::new();
        };
        let excluded = |id: &SocketId| message.except.as_ref() == Some(id);
        match &message.target {
            Target::All => ns
                .sockets
                .iter()
                .filter(|(id, _)| !excluded(id))
                .map(|(_, member)| member.socket.clone())
                .collect(),
            Target::Rooms(rooms) => {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for room in rooms {
                    for id in ns.rooms.get(room).into_iter().flatten() {
                        if excluded(id) || !seen.insert(id) {
                            continue;
                        }
                        if let Some(member) = ns.sockets.get(id) {
                            out.push(member.socket.clone());
                        }
                    }
                }
                out
            }
        }
    }

    /// Delivers a broadcast to the matching sockets of this instance; returns how many it was
    /// queued for. The encoded packet is shared, not copied, among them.
    pub fn deliver(&self, message: &BroadcastMessage) -> usize {
        let mut delivered = 0;
        for socket in self.recipients(message) {
            if socket.conn.send(message.packet.clone()).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Delivers a broadcast that asks for acknowledgements (its packet carries `ack_id`):
    /// each recipient's answer is sent to `replies`. Returns how many answers to expect.
    pub fn deliver_with_ack(
        &self,
        message: &BroadcastMessage,
        ack_id: u64,
        timeout: Duration,
        replies: &mpsc::UnboundedSender<AckReply>,
    ) -> usize {
        let mut expected = 0;
        for socket in self.recipients(message) {
            socket.expect_ack(ack_id, AckSink::Many(replies.clone()), timeout);
            if socket.conn.send(message.packet.clone()).is_ok() {
                expected += 1;
            } else {
                socket.forget_ack(ack_id);
            }
        }
        expected
    }

    /// Sends DISCONNECT to every local socket of a session and closes them; returns how many.
    pub fn disconnect_session(&self, session_id: SessionId) -> usize {
        let room = session_room(session_id);
        let sockets: Vec<Arc<SocketInner>> = {
            let registry = self.read();
            registry
                .namespaces
                .values()
                .flat_map(|ns| {
                    ns.rooms
                        .get(&room)
                        .into_iter()
                        .flatten()
                        .filter_map(|id| ns.sockets.get(id).map(|m| m.socket.clone()))
                })
                .collect()
        };
        for socket in &sockets {
            socket.conn.control(Control::Disconnect(socket.id.clone()));
        }
        sockets.len()
    }
}
