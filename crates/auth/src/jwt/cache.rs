//! A small, bounded cache of verified access tokens.
//!
//! An EdDSA signature check costs more than the rest of a request's path together, and a client
//! presents the same access token on every request for its whole lifetime. So verified tokens
//! are remembered, keyed by the SHA-256 of the token (the token itself is never stored), and
//! only until the token's `exp`: a cached answer is never more permissive than a fresh
//! verification. Revocation is not the cache's business; the session check runs on every
//! request regardless.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::AccessClaims;

/// Shards keep concurrent requests from queueing on one lock.
const MAX_SHARDS: usize = 16;

type Key = [u8; 32];

/// A capacity-bounded map from (a hash of) an access token to its verified claims, with entries
/// that expire at the token's `exp`.
///
/// When a shard is full, expired entries are dropped first, then the entry closest to its
/// expiry (the one worth least). Capacity 0 disables the cache.
pub struct VerifiedTokenCache {
    shards: Box<[Mutex<HashMap<Key, AccessClaims>>]>,
    per_shard: usize,
}

impl fmt::Debug for VerifiedTokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokenCache")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl VerifiedTokenCache {
    /// A cache holding at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        let shards = capacity.min(MAX_SHARDS);
        // Rounded down, so the total never exceeds `capacity`.
        let per_shard = capacity.checked_div(shards).unwrap_or(0);
        Self {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    /// The most tokens this cache holds at once.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// How many tokens are cached now (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The claims of `token` if it was verified before and has not reached its `exp` at `now`.
    pub fn get(&self, token: &str, now: OffsetDateTime) -> Option<AccessClaims> {
        self.get_by_key(&key_of(token), now)
    }

    /// Remembers that `token` verified to `claims`, until `claims.exp`. Already expired claims
    /// are not stored.
    pub fn insert(&self, token: &str, claims: AccessClaims, now: OffsetDateTime) {
        self.insert_by_key(key_of(token), claims, now);
    }

    pub(crate) fn get_by_key(&self, key: &Key, now: OffsetDateTime) -> Option<AccessClaims> {
        let shard = self.shard(key)?;
        let mut entries = lock(shard);
        let now = now.unix_timestamp();
        match entries.get(key) {
            Some(claims) if now < claims.exp => Some(claims.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert_by_key(&self, key: Key, claims: AccessClaims, now: OffsetDateTime) {
        let now = now.unix_timestamp();
        if claims.exp <= now {
            return;
        }
        let Some(shard) = self.shard(&key) else {
            return;
        };
        let mut entries = lock(shard);
        if !entries.contains_key(&key) && entries.len() >= self.per_shard {
            entries.retain(|_, cached| now < cached.exp);
            if entries.len() >= self.per_shard {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, cached)| cached.exp)
                    .map(|(key, _)| *key);
                if let Some(soonest) = soonest {
                    entries.remove(&soonest);
                }
            }
        }
        entries.insert(key, claims);
    }

    fn shard(&self, key: &Key) -> Option<&Mutex<HashMap<Key, AccessClaims>>> {
        if self.per_shard == 0 {
            return None;
        }
        // The key is a SHA-256 output, so its first byte is uniformly spread.
        self.shards.get(usize::from(key[0]) % self.shards.len())
    }
}

pub(crate) fn key_of(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a HashMap of plain values half-updated in a
    // way that matters to a cache; keep serving rather than poisoning every later request.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use keel_domain::{SessionId, UserId};
    use time::Duration;

    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "keel".into(),
            aud: "keel".into(),
            sub: UserId::generate(),
            sid: SessionId::generate(),
            jti: "jti".into(),
            iat: exp - 900,
            exp,
        }
    }

    #[test]
    fn entries_are_served_until_exp_and_never_after() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let cache = VerifiedTokenCache::new(100);
        let cached = claims(now.unix_timestamp() + 60);
        cache.insert("token", cached.clone(), now);
        assert_eq!(cache.get("token", now), Some(cached.clone()));
        assert_eq!(
            cache.get("token", now + Duration::seconds(59)),
            Some(cached)
        );
        assert_eq!(cache.get("token", now + Duration::seconds(60)), None);
        // The expired entry was dropped, even if the clock goes back.
        assert!(cache.is_empty());
        assert_eq!(cache.get("token", now), None);
        assert_eq!(cache.get("other token", now), None);
    }

    #[test]
    fn expired_claims_are_not_stored() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let cache = VerifiedTokenCache::new(100);
        cache.insert("token", claims(now.unix_timestamp()), now);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        for capacity in [1, 7, 16, 100] {
            let cache = VerifiedTokenCache::new(capacity);
            assert!(cache.capacity() <= capacity);
            assert!(cache.capacity() >= capacity / 2);
            for i in 0..1_000 {
                cache.insert(
                    &format!("token {i}"),
                    claims(now.unix_timestamp() + 60 + i),
                    now,
                );
                assert!(cache.len() <= capacity);
            }
            // The newest entry is always kept.
            assert!(cache.get("token 999", now).is_some());
        }
    }

    #[test]
    fn a_full_shard_drops_expired_entries_before_live_ones() {
        let start = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let cache = VerifiedTokenCache::new(1);
        cache.insert("short", claims(start.unix_timestamp() + 10), start);
        let later = start + Duration::seconds(20);
        cache.insert("long", claims(later.unix_timestamp() + 60), later);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("long", later).is_some());
    }

    #[test]
    fn capacity_zero_disables_the_cache() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let cache = VerifiedTokenCache::new(0);
        cache.insert("token", claims(now.unix_timestamp() + 60), now);
        assert_eq!(cache.get("token", now), None);
        assert_eq!(cache.capacity(), 0);
    }
}
