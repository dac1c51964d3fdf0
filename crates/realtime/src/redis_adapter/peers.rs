//! The other instances this one has heard from, and the room memberships of their sockets:
//! presence over every instance, forgotten when an instance stops sending heartbeats.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use keel_domain::UserId;
use tokio::time::Instant;

use super::wire::{InstanceId, WireMember};

/// One socket's membership of one room on another instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Membership {
    pub(crate) namespace: String,
    pub(crate) room: String,
    pub(crate) socket_id: String,
    pub(crate) user_id: UserId,
}

impl Membership {
    /// `None` for a user id that is not a UUID (a frame from something that is not Keel).
    pub(crate) fn from_wire(member: WireMember) -> Option<Self> {
        Some(Self {
            user_id: member.user_id.parse().ok()?,
            namespace: member.namespace,
            room: member.room,
            socket_id: member.socket_id,
        })
    }
}

#[derive(Debug)]
struct Peer {
    last_seen: Instant,
    members: HashSet<Membership>,
}

/// Every other live instance and its sockets' room memberships.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    peers: HashMap<InstanceId, Peer>,
}

impl Peers {
    fn peer(&mut self, id: InstanceId, now: Instant) -> (&mut Peer, bool) {
        let mut new = false;
        let peer = self.peers.entry(id).or_insert_with(|| {
            new = true;
            Peer {
                last_seen: now,
                members: HashSet::new(),
            }
        });
        peer.last_seen = now;
        (peer, new)
    }

    /// The instance is alive now. Returns whether it was unknown (so its memberships should be
    /// asked for).
    pub(crate) fn heard(&mut self, id: InstanceId, now: Instant) -> bool {
        self.peer(id, now).1
    }

    /// A socket of the instance joined or left a room.
    pub(crate) fn apply(&mut self, id: InstanceId, member: Membership, joined: bool, now: Instant) {
        let (peer, _) = self.peer(id, now);
        if joined {
            peer.members.insert(member);
        } else {
            peer.members.remove(&member);
        }
    }

    /// The instance's complete memberships replace what was known; returns what disappeared
    /// and what appeared, so the missed changes can be announced.
    pub(crate) fn replace(
        &mut self,
        id: InstanceId,
        members: HashSet<Membership>,
        now: Instant,
    ) -> (Vec<Membership>, Vec<Membership>) {
        let (peer, _) = self.peer(id, now);
        let gone = peer.members.difference(&members).cloned().collect();
        let came = members.difference(&peer.members).cloned().collect();
        peer.members = members;
        (gone, came)
    }

    /// Forgets instances not heard from within `timeout`; returns their memberships, which
    /// ended with them.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Membership> {
        let mut gone = Vec::new();
        self.peers.retain(|_, peer| {
            let alive = now.saturating_duration_since(peer.last_seen) < timeout;
            if !alive {
                gone.extend(peer.members.drain());
            }
            alive
        });
        gone
    }

    /// After this instance could not hear anyone (its subscription was down), every peer gets
    /// a fresh timeout instead of being declared dead for this instance's outage.
    pub(crate) fn refresh_all(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            peer.last_seen = now;
        }
    }

    /// The users of other instances in a room (a user with several sockets more than once).
    pub(crate) fn users_in<'a>(
        &'a self,
        namespace: &'a str,
        room: &'a str,
    ) -> impl Iterator<Item = UserId> + 'a {
        self.peers
            .values()
            .flat_map(|peer| &peer.members)
            .filter(move |m| m.namespace == namespace && m.room == room)
            .map(|m| m.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(room: &str, socket: &str, user: u128) -> Membership {
        Membership {
            namespace: "/".into(),
            room: room.into(),
            socket_id: socket.into(),
            user_id: UserId::from_uuid(uuid::Uuid::from_u128(user)),
        }
    }

    #[test]
    fn memberships_follow_joins_and_leaves_and_end_with_a_silent_instance() {
        let mut peers = Peers::default();
        let start = Instant::now();
        assert!(peers.heard([1; 16], start));
        assert!(!peers.heard([1; 16], start));
        peers.apply([1; 16], member("room:a", "s1", 1), true, start);
        peers.apply([2; 16], member("room:a", "s2", 2), true, start);
        peers.apply([2; 16], member("room:b", "s2", 2), true, start);
        let mut users: Vec<_> = peers.users_in("/", "room:a").collect();
        users.sort();
        assert_eq!(users.len(), 2);
        peers.apply([1; 16], member("room:a", "s1", 1), false, start);
        assert_eq!(peers.users_in("/", "room:a").count(), 1);

        let later = start + Duration::from_secs(5);
        peers.heard([1; 16], later);
        let mut gone = peers.expire(later, Duration::from_secs(3));
        gone.sort_by(|a, b| a.room.cmp(&b.room));
        assert_eq!(
            gone,
            vec![member("room:a", "s2", 2), member("room:b", "s2", 2)]
        );
        assert_eq!(peers.users_in("/", "room:a").count(), 0);
        assert!(peers.expire(later, Duration::from_secs(3)).is_empty());
    }

    #[test]
    fn a_full_sync_reports_what_was_missed() {
        let mut peers = Peers::default();
        let now = Instant::now();
        peers.apply([1; 16], member("room:a", "s1", 1), true, now);
        peers.apply([1; 16], member("room:b", "s1", 1), true, now);
        let fresh = HashSet::from([member("room:b", "s1", 1), member("room:c", "s3", 3)]);
        let (gone, came) = peers.replace([1; 16], fresh, now);
        assert_eq!(gone, vec![member("room:a", "s1", 1)]);
        assert_eq!(came, vec![member("room:c", "s3", 3)]);
        assert_eq!(
            peers.users_in("/", "room:c").collect::<Vec<_>>(),
            vec![UserId::from_uuid(uuid::Uuid::from_u128(3))]
        );
    }

    #[test]
    fn refresh_keeps_peers_alive_after_this_instance_was_deaf() {
        let mut peers = Peers::default();
        let start = Instant::now();
        peers.apply([1; 16], member("room:a", "s1", 1), true, start);
        let later = start + Duration::from_secs(10);
        peers.refresh_all(later);
        assert!(peers.expire(later, Duration::from_secs(3)).is_empty());
    }
}
