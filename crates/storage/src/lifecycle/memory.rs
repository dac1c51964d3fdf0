//! The lifecycle store in process memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use keel_domain::{
    AuditEvent, AuditKind, AuditLog, AuditQuery, BoxFuture, Mail, OneTimeToken, OneTimeTokens,
    Outbox, OutboxMessage, OutboxStats, StoreError, TokenHash, TokenPurpose, UserId,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// One-time tokens, the outbox and the audit log in process memory: nothing survives a
/// restart, and every instance has its own. For development and tests, as the other
/// in-memory stores.
#[derive(Default)]
pub struct MemoryLifecycleStore {
    // One lock: a token and its mail are written in one step, as the other stores do.
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    tokens: HashMap<TokenHash, OneTimeToken>,
    outbox: Vec<Queued>,
    events: Vec<AuditEvent>,
}

struct Queued {
    message: OutboxMessage,
    due: OffsetDateTime,
    failed: bool,
}

impl MemoryLifecycleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No critical section leaves the state half-written.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn queue(state: &mut State, mail: Mail, now: OffsetDateTime) {
        state.outbox.push(Queued {
            message: OutboxMessage {
                id: Uuid::now_v7(),
                mail,
                attempts: 0,
                created_at: now,
            },
            due: now,
            failed: false,
        });
    }

    fn with_message(&self, id: Uuid, change: impl FnOnce(&mut State, usize)) {
        let mut state = self.state();
        if let Some(index) = state.outbox.iter().position(|q| q.message.id == id) {
            change(&mut state, index);
        }
    }
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, Result<T, StoreError>> {
    Box::pin(std::future::ready(Ok(value)))
}

impl OneTimeTokens for MemoryLifecycleStore {
    fn issue(&self, token: OneTimeToken, mail: Mail) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.state();
        let now = token.created_at;
        state.tokens.insert(token.hash, token);
        Self::queue(&mut state, mail, now);
        ready(())
    }

    fn spend(
        &self,
        purpose: TokenPurpose,
        hash: TokenHash,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<OneTimeToken>, StoreError>> {
        let mut state = self.state();
        let spent = match state.tokens.get(&hash) {
            Some(token) if token.purpose == purpose && token.expires_at > now => {
                state.tokens.remove(&hash)
            }
            _ => None,
        };
        // Expired tokens are dropped on the way, so the map does not grow without bound.
        state.tokens.retain(|_, token| token.expires_at > now);
        ready(spent)
    }

    fn spend_all(
        &self,
        user_id: UserId,
        purpose: TokenPurpose,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut state = self.state();
        let before = state.tokens.len();
        state
            .tokens
            .retain(|_, token| !(token.user_id == user_id && token.purpose == purpose));
        ready((before - state.tokens.len()) as u64)
    }

    fn forget_user(&self, user_id: UserId) -> BoxFuture<'_, Result<(), StoreError>> {
        self.state()
            .tokens
            .retain(|_, token| token.user_id != user_id);
        ready(())
    }

    fn purge_expired(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut state = self.state();
        let count = state.tokens.len();
        state.tokens.retain(|_, token| token.expires_at >= before);
        ready((count - state.tokens.len()) as u64)
    }
}

impl Outbox for MemoryLifecycleStore {
    fn enqueue(&self, mail: Mail, now: OffsetDateTime) -> BoxFuture<'_, Result<(), StoreError>> {
        Self::queue(&mut self.state(), mail, now);
        ready(())
    }

    fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxMessage>, StoreError>> {
        let mut state = self.state();
        let claimed = state
            .outbox
            .iter_mut()
            .filter(|q| !q.failed && q.due <= now)
            .take(limit)
            .map(|q| {
                q.due = now + lease;
                q.message.clone()
            })
            .collect();
        ready(claimed)
    }

    fn delivered(&self, id: Uuid) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with_message(id, |state, index| {
            state.outbox.remove(index);
        });
        ready(())
    }

    fn retry_at(
        &self,
        id: Uuid,
        at: OffsetDateTime,
        _error: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with_message(id, |state, index| {
            let queued = &mut state.outbox[index];
            queued.message.attempts += 1;
            queued.due = at;
        });
        ready(())
    }

    fn give_up(&self, id: Uuid, _error: String) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with_message(id, |state, index| {
            let queued = &mut state.outbox[index];
            queued.message.attempts += 1;
            queued.failed = true;
            queued.message.mail.text.clear();
            queued.message.mail.html.clear();
        });
        ready(())
    }

    fn stats(&self) -> BoxFuture<'_, Result<OutboxStats, StoreError>> {
        let state = self.state();
        let waiting = state.outbox.iter().filter(|q| !q.failed);
        ready(OutboxStats {
            queued: waiting.clone().count() as u64,
            failed: state.outbox.iter().filter(|q| q.failed).count() as u64,
            oldest: waiting.map(|q| q.message.created_at).min(),
        })
    }
}

impl AuditLog for MemoryLifecycleStore {
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut state = self.state();
        if !state.events.iter().any(|e| e.id == event.id) {
            state.events.push(event);
        }
        ready(())
    }

    fn query(&self, query: AuditQuery) -> BoxFuture<'_, Result<Vec<AuditEvent>, StoreError>> {
        let state = self.state();
        let mut events: Vec<AuditEvent> = state
            .events
            .iter()
            .filter(|event| query.matches(event))
            .cloned()
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse((e.at, e.id)));
        events.truncate(query.limit);
        ready(events)
    }

    fn purge(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut state = self.state();
        let count = state.events.len();
        state.events.retain(|event| event.at >= before);
        let purged = (count - state.events.len()) as u64;
        let record = AuditEvent::new(AuditKind::AuditPurged, None, OffsetDateTime::now_utc())
            .with("events", purged);
        state.events.push(record);
        ready(purged)
    }

    fn scrub(&self, user_id: UserId) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut state = self.state();
        let mut touched = 0;
        for event in &mut state.events {
            if event.user_id == Some(user_id) {
                event.ip = None;
                event.user_agent = None;
                event.data.clear();
                touched += 1;
            } else if event.actor_id == Some(user_id) {
                event.ip = None;
                event.user_agent = None;
                touched += 1;
            }
        }
        let record = AuditEvent::new(
            AuditKind::AuditScrubbed,
            Some(user_id),
            OffsetDateTime::now_utc(),
        )
        .with("events", touched);
        state.events.push(record);
        ready(touched)
    }
}

impl fmt::Debug for MemoryLifecycleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryLifecycleStore")
            .field("tokens", &state.tokens.len())
            .field("outbox", &state.outbox.len())
            .field("events", &state.events.len())
            .finish()
    }
}
