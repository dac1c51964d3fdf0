//! User store on Redis: accounts shared by every Keel instance on one Redis.
//!
//! See [`RedisUserRepository`] for the key layout, durability and failure behaviour.

use std::fmt;

use deadpool_redis::Pool;
use deadpool_redis::redis::{AsyncCommands, Script};
use keel_domain::{
    BoxFuture, Email, RepositoryError, UserChange, UserId, UserQuery, UserRecord, UserRepository,
    apply_email_change,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// A [`UserRepository`] on Redis, so that a user registered through one Keel instance can log
/// in through any other instance on the same Redis.
///
/// # Keys
///
/// With the default prefix `keel:` (see [`with_key_prefix`](Self::with_key_prefix)):
///
/// | key | type | holds |
/// |---|---|---|
/// | `keel:user:{id}` | string | the account as JSON (see below) |
/// | `keel:user-email:{sha256}` | string | the id of the account with that email |
///
/// `{sha256}` is the SHA-256, in lowercase hex, of the email's canonical form (NFC, lowercased;
/// see [`Email`]): key names stay bounded (an address may have 254 characters) and free of
/// personal data, and spellings of one address share one key. The account JSON is
/// `{"id", "email", "displayName", "emailVerifiedAt", "roles", "disabledAt", "createdAt",
/// "updatedAt", "passwordHash"}`, with the email as the user gave it and times as RFC 3339 UTC
/// timestamps to the nanosecond, so a record reads back exactly as it was inserted. Records
/// written before these fields existed read back unverified, without roles, enabled and last
/// changed at creation. The session store's `keel:user:{id}:sessions` lives beside
/// `keel:user:{id}` without clashing.
///
/// [`insert`](UserRepository::insert) is one Lua script (atomic on the server): it refuses the
/// account with [`RepositoryError::EmailTaken`] when an email key of the address exists, else
/// with [`RepositoryError::IdTaken`] when the id key exists, else writes both keys. Of any number
/// of concurrent registrations of one address, on any number of instances, exactly one succeeds.
/// The script touches keys of unrelated hash slots, so the store needs a standalone Redis
/// (with replicas if wanted), not Redis Cluster.
///
/// # Accounts of earlier releases
///
/// Releases before 0.2 keyed an address by its lowercased spelling, not normalised to NFC. An
/// account such a release wrote under a decomposed spelling (`jose\u{301}@…`) is still found,
/// whichever way the address is typed now, and a new registration of the same address is still
/// refused: lookups and the uniqueness check also try the keys of
/// [`Email::legacy_forms`], in the same round trip. The old key is left as it is (no migration
/// rewrites keys); it keeps pointing at the same account.
///
/// # Durability
///
/// Accounts are durable: the keys have **no TTL**. Redis is then the only copy of every
/// account, so in production it must be configured to persist (`appendonly yes`, AOF, ideally
/// with `appendfsync everysec` or stricter, and backups of the files); with persistence off,
/// every account is lost when Redis restarts. It must also not evict these keys: use
/// `maxmemory-policy noeviction` (or a `volatile-*` policy, which only evicts keys with a TTL),
/// never an `allkeys-*` one.
///
/// # Failures
///
/// Any pool or Redis error (Redis down, a timeout, an unexpected reply) is
/// [`RepositoryError::Unavailable`], and so is a stored value that does not decode (its cause
/// says why), for callers to fail closed. Nothing here adds a timeout of its own: build the pool
/// with wait, connect and response timeouts (as `keel_session::redis_pool` does), or a hung
/// Redis hangs the caller.
pub struct RedisUserRepository {
    pool: Pool,
    prefix: String,
    insert: Script,
    replace: Script,
    change_email: Script,
    delete: Script,
}

impl RedisUserRepository {
    /// The key prefix unless [`with_key_prefix`](Self::with_key_prefix) sets another, the same
    /// as the session store's and the rate limiter's default.
    pub const DEFAULT_KEY_PREFIX: &'static str = "keel:";

    /// A store on `pool` (shared with the rest of the app, built with timeouts), with keys
    /// under [`DEFAULT_KEY_PREFIX`](Self::DEFAULT_KEY_PREFIX). Does not touch Redis.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            insert: Script::new(INSERT),
            replace: Script::new(REPLACE),
            change_email: Script::new(CHANGE_EMAIL),
            delete: Script::new(DELETE),
        }
    }

    /// Puts the keys under `prefix` instead, for instance to keep apps that share one Redis
    /// apart. Every instance that should share users must use the same prefix.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key prefix in use.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The Redis key holding the account `id`, such as
    /// `keel:user:0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a`.
    pub fn user_key(&self, id: UserId) -> String {
        format!("{}user:{id}", self.prefix)
    }

    /// The Redis key holding the id of the account with `email` (compared canonically), such as
    /// `keel:user-email:5f3c…` (64 hex digits).
    pub fn email_key(&self, email: &Email) -> String {
        self.key_of_canonical(email.canonical())
    }

    fn key_of_canonical(&self, canonical: &str) -> String {
        let digest = Sha256::digest(canonical.as_bytes());
        let mut key = String::with_capacity(self.prefix.len() + 11 + 2 * digest.len());
        key.push_str(&self.prefix);
        key.push_str("user-email:");
        for byte in digest {
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        key
    }

    /// One page of every account in this store, for moving them elsewhere
    /// (`server users import-from-redis`): pass cursor 0 first, then the cursor each page
    /// returns, until it returns 0. Built on `SCAN` over the whole keyspace, so meant for a
    /// one-off administrative run, not for a request path; `count` is a hint of how many keys
    /// Redis looks at per page.
    ///
    /// # Errors
    ///
    /// [`RepositoryError::Unavailable`] when Redis cannot answer or an account does not decode.
    pub async fn scan_accounts(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<UserRecord>), RepositoryError> {
        let mut conn = self.connection().await?;
        let (next, keys): (u64, Vec<String>) = deadpool_redis::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}user:*", self.prefix))
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut conn)
            .await
            .map_err(RepositoryError::unavailable)?;
        // `user:<id>` only: the session store's `user:<id>:sessions` shares the pattern.
        let accounts: Vec<String> = keys
            .into_iter()
            .filter(|key| {
                key.strip_prefix(&self.prefix)
                    .and_then(|rest| rest.strip_prefix("user:"))
                    .is_some_and(|id| id.parse::<UserId>().is_ok())
            })
            .collect();
        if accounts.is_empty() {
            return Ok((next, Vec::new()));
        }
        let raws: Vec<Option<String>> = conn
            .mget(&accounts)
            .await
            .map_err(RepositoryError::unavailable)?;
        // A key may vanish between SCAN and MGET; what is left decodes or fails loudly.
        let records = raws
            .iter()
            .flatten()
            .map(|raw| decode(raw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((next, records))
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, RepositoryError> {
        self.pool.get().await.map_err(RepositoryError::unavailable)
    }

    /// The email keys an address may be indexed under: its canonical key, then those of the
    /// spellings that earlier releases indexed it under.
    fn email_keys(&self, email: &Email) -> Vec<String> {
        let mut keys = vec![self.email_key(email)];
        keys.extend(
            email
                .legacy_forms()
                .iter()
                .map(|form| self.key_of_canonical(form)),
        );
        keys
    }

    async fn insert_now(&self, record: UserRecord) -> Result<(), RepositoryError> {
        let json = encode(&record)?;
        let user_key = self.user_key(record.user.id);
        let mut conn = self.connection().await?;
        let mut invocation = self.insert.key(user_key);
        for key in self.email_keys(&record.user.email) {
            invocation.key(key);
        }
        let code: i64 = invocation
            .arg(record.user.id.to_string())
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(RepositoryError::unavailable)?;
        match code {
            0 => Ok(()),
            1 => Err(RepositoryError::EmailTaken),
            2 => Err(RepositoryError::IdTaken),
            other => Err(RepositoryError::unavailable(format!(
                "unexpected reply {other} from the Redis user insert script"
            ))),
        }
    }

    async fn find_by_id_now(&self, id: UserId) -> Result<Option<UserRecord>, RepositoryError> {
        let mut conn = self.connection().await?;
        let raw: Option<String> = conn
            .get(self.user_key(id))
            .await
            .map_err(RepositoryError::unavailable)?;
        let Some(raw) = raw else { return Ok(None) };
        let record = decode(&raw)?;
        if record.user.id != id {
            return Err(RepositoryError::unavailable(format!(
                "the account stored under id {id} has id {}",
                record.user.id
            )));
        }
        Ok(Some(record))
    }

    async fn find_by_email_now(
        &self,
        email: &Email,
    ) -> Result<Option<UserRecord>, RepositoryError> {
        let mut conn = self.connection().await?;
        let keys = self.email_keys(email);
        // One round trip either way; MGET only when an earlier spelling may hold the account.
        let raw_id: Option<String> = if keys.len() == 1 {
            conn.get(&keys[0]).await
        } else {
            conn.mget::<_, Vec<Option<String>>>(&keys)
                .await
                .map(|ids| ids.into_iter().flatten().next())
        }
        .map_err(RepositoryError::unavailable)?;
        let Some(raw_id) = raw_id else {
            return Ok(None);
        };
        let id: UserId = raw_id.parse().map_err(|_| {
            RepositoryError::unavailable("the email index holds something other than a user id")
        })?;
        // Insert, change and delete write the two keys in one script, so the id is there.
        // Reading it on the same connection keeps the two reads in order.
        let raw: Option<String> = conn
            .get(self.user_key(id))
            .await
            .map_err(RepositoryError::unavailable)?;
        let Some(raw) = raw else {
            return Err(RepositoryError::unavailable(format!(
                "the email index points to account {id}, which does not exist \
                 (was the key evicted or deleted by hand?)"
            )));
        };
        let record = decode(&raw)?;
        if record.user.id != id || record.user.email != *email {
            return Err(RepositoryError::unavailable(format!(
                "the email index points to account {id}, which has another id or email"
            )));
        }
        Ok(Some(record))
    }
}

impl RedisUserRepository {
    /// Reads the record, and writes the new one only if the stored value is still byte for
    /// byte what was read (one script): a compare and set without JSON handling in Lua.
    async fn replace_password_hash_now(
        &self,
        id: UserId,
        expected: &str,
        new_hash: String,
    ) -> Result<bool, RepositoryError> {
        let key = self.user_key(id);
        let mut conn = self.connection().await?;
        let raw: Option<String> = conn.get(&key).await.map_err(RepositoryError::unavailable)?;
        let Some(raw) = raw else { return Ok(false) };
        let mut record = decode(&raw)?;
        if record.user.id != id || record.password_hash != expected {
            return Ok(false);
        }
        record.password_hash = new_hash;
        let replaced: i64 = self
            .replace
            .key(key)
            .arg(raw)
            .arg(encode(&record)?)
            .invoke_async(&mut conn)
            .await
            .map_err(RepositoryError::unavailable)?;
        Ok(replaced == 1)
    }
}

impl RedisUserRepository {
    /// Read, change, then write only if the value is still the one read; a concurrent writer
    /// makes it read again. Two changes of one account rarely meet, so a few rounds suffice.
    async fn update_now(
        &self,
        id: UserId,
        change: &UserChange,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, RepositoryError> {
        const ROUNDS: usize = 8;
        let key = self.user_key(id);
        let mut conn = self.connection().await?;
        for _ in 0..ROUNDS {
            let raw: Option<String> = conn.get(&key).await.map_err(RepositoryError::unavailable)?;
            let Some(raw) = raw else { return Ok(None) };
            let mut record = decode(&raw)?;
            if record.user.id != id {
                return Err(RepositoryError::unavailable(format!(
                    "the account stored under id {id} has id {}",
                    record.user.id
                )));
            }
            change.apply(&mut record, now);
            let written: i64 = self
                .replace
                .key(&key)
                .arg(raw)
                .arg(encode(&record)?)
                .invoke_async(&mut conn)
                .await
                .map_err(RepositoryError::unavailable)?;
            if written == 1 {
                return Ok(Some(record));
            }
        }
        Err(RepositoryError::unavailable(format!(
            "account {id} kept changing under {ROUNDS} attempts to update it"
        )))
    }
}

impl RedisUserRepository {
    /// Like [`update_now`](Self::update_now), with the e-mail index changed in the same script.
    async fn change_email_now(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
    ) -> Result<Option<UserRecord>, RepositoryError> {
        const ROUNDS: usize = 8;
        let key = self.user_key(id);
        let new_keys = self.email_keys(&email);
        let mut conn = self.connection().await?;
        for _ in 0..ROUNDS {
            let raw: Option<String> = conn.get(&key).await.map_err(RepositoryError::unavailable)?;
            let Some(raw) = raw else { return Ok(None) };
            let mut record = self.decode_own(id, &raw)?;
            let old_keys = self.email_keys(&record.user.email);
            apply_email_change(&mut record, email.clone(), now);
            let mut invocation = self.change_email.key(&key);
            invocation.key(&new_keys[0]);
            for key in &new_keys[1..] {
                invocation.key(key);
            }
            for key in &old_keys {
                invocation.key(key);
            }
            let code: i64 = invocation
                .arg(raw)
                .arg(encode(&record)?)
                .arg(id.to_string())
                .arg(new_keys.len() - 1)
                .invoke_async(&mut conn)
                .await
                .map_err(RepositoryError::unavailable)?;
            match code {
                0 => return Ok(Some(record)),
                1 => return Err(RepositoryError::EmailTaken),
                _ => {}
            }
        }
        Err(RepositoryError::unavailable(format!(
            "account {id} kept changing under {ROUNDS} attempts to change its address"
        )))
    }

    /// Deletes the account and its e-mail keys in one script, once it reads the same twice.
    async fn delete_now(&self, id: UserId) -> Result<bool, RepositoryError> {
        const ROUNDS: usize = 8;
        let key = self.user_key(id);
        let mut conn = self.connection().await?;
        for _ in 0..ROUNDS {
            let raw: Option<String> = conn.get(&key).await.map_err(RepositoryError::unavailable)?;
            let Some(raw) = raw else { return Ok(false) };
            let record = self.decode_own(id, &raw)?;
            let mut invocation = self.delete.key(&key);
            for key in self.email_keys(&record.user.email) {
                invocation.key(key);
            }
            let code: i64 = invocation
                .arg(raw)
                .arg(id.to_string())
                .invoke_async(&mut conn)
                .await
                .map_err(RepositoryError::unavailable)?;
            if code == 1 {
                return Ok(true);
            }
        }
        Err(RepositoryError::unavailable(format!(
            "account {id} kept changing under {ROUNDS} attempts to delete it"
        )))
    }

    fn decode_own(&self, id: UserId, raw: &str) -> Result<UserRecord, RepositoryError> {
        let record = decode(raw)?;
        if record.user.id != id {
            return Err(RepositoryError::unavailable(format!(
                "the account stored under id {id} has id {}",
                record.user.id
            )));
        }
        Ok(record)
    }
}

impl UserRepository for RedisUserRepository {
    fn insert(&self, record: UserRecord) -> BoxFuture<'_, Result<(), RepositoryError>> {
        Box::pin(self.insert_now(record))
    }

    fn find_by_email(
        &self,
        email: &Email,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        let email = email.clone();
        Box::pin(async move { self.find_by_email_now(&email).await })
    }

    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(self.find_by_id_now(id))
    }

    fn replace_password_hash(
        &self,
        id: UserId,
        expected: String,
        new_hash: String,
    ) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(async move {
            self.replace_password_hash_now(id, &expected, new_hash)
                .await
        })
    }

    fn update(
        &self,
        id: UserId,
        change: UserChange,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(async move { self.update_now(id, &change, now).await })
    }

    fn change_email(
        &self,
        id: UserId,
        email: Email,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<UserRecord>, RepositoryError>> {
        Box::pin(async move { self.change_email_now(id, email, now).await })
    }

    fn delete(&self, id: UserId) -> BoxFuture<'_, Result<bool, RepositoryError>> {
        Box::pin(self.delete_now(id))
    }

    /// Redis keeps no index of accounts: this walks them all (`SCAN`) for each page, which
    /// suits the administration of a small deployment. With PostgreSQL configured, accounts
    /// live there and a page is one indexed query.
    fn list(&self, query: UserQuery) -> BoxFuture<'_, Result<Vec<UserRecord>, RepositoryError>> {
        Box::pin(async move {
            let mut found = Vec::new();
            let mut cursor = 0;
            loop {
                let (next, records) = self.scan_accounts(cursor, 500).await?;
                found.extend(records.into_iter().filter(|r| query.matches(&r.user)));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            found.sort_by_key(|record| std::cmp::Reverse(record.user.id));
            found.dedup_by_key(|record| record.user.id);
            found.truncate(query.limit);
            Ok(found)
        })
    }
}

impl fmt::Debug for RedisUserRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUserRepository")
            .field("key_prefix", &self.prefix)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

mod record;
mod scripts;

pub(crate) use record::{decode, encode};
use scripts::{CHANGE_EMAIL, DELETE, INSERT, REPLACE};

#[cfg(test)]
mod tests {
    use keel_domain::{DisplayName, User};
    use time::macros::datetime;

    use super::*;

    fn record() -> UserRecord {
        UserRecord {
            user: User {
                id: "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a".parse().unwrap(),
                email: Email::parse("Ada@Example.com").unwrap(),
                display_name: DisplayName::parse("Ada Lovelace ✨").unwrap(),
                email_verified_at: Some(datetime!(2025-01-03 00:00 UTC)),
                roles: vec!["admin".to_owned()],
                created_at: datetime!(2025-01-02 03:04:05.123456789 +02:00),
                updated_at: datetime!(2025-01-04 00:00:00.5 UTC),
            },
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            disabled_at: None,
        }
    }

    #[test]
    fn a_record_is_stored_in_a_readable_shape_and_decodes_exactly() {
        let record = record();
        let json = encode(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            serde_json::json!({
                "id": "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a",
                "email": "Ada@Example.com",
                "displayName": "Ada Lovelace ✨",
                "emailVerifiedAt": "2025-01-03T00:00:00Z",
                "roles": ["admin"],
                "disabledAt": null,
                "createdAt": "2025-01-02T01:04:05.123456789Z",
                "updatedAt": "2025-01-04T00:00:00.5Z",
                "passwordHash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            })
        );
        let decoded = decode(&json).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(decoded.user.email.as_str(), "Ada@Example.com");
        assert_eq!(decoded.user.created_at, record.user.created_at);
    }

    #[test]
    fn a_record_of_an_earlier_release_reads_back_with_defaults() {
        // The shape releases before 0.2 wrote, with an address today's rules refuse.
        let raw = r#"{"id":"0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a","email":"rita\u200b@example.com","displayName":"Ri\u200bta","createdAt":"2025-01-01T00:00:00Z","passwordHash":"h"}"#;
        let decoded = decode(raw).unwrap();
        assert_eq!(decoded.user.email.as_str(), "rita\u{200B}@example.com");
        assert_eq!(decoded.user.display_name.as_str(), "Ri\u{200B}ta");
        assert_eq!(decoded.user.updated_at, decoded.user.created_at);
        assert_eq!(decoded.user.email_verified_at, None);
        assert!(decoded.user.roles.is_empty());
        assert_eq!(decoded.disabled_at, None);
    }

    #[test]
    fn undecodable_values_are_unavailable_with_a_cause() {
        for raw in [
            "",
            "not json",
            "{}",
            r#"{"id":"x","email":"a@b","displayName":"a","createdAt":"2025-01-01T00:00:00Z","passwordHash":"h"}"#,
            r#"{"id":"0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a","email":"no at","displayName":"a","createdAt":"2025-01-01T00:00:00Z","passwordHash":"h"}"#,
        ] {
            let err = decode(raw).unwrap_err();
            assert!(matches!(err, RepositoryError::Unavailable(_)), "{raw:?}");
            let cause = std::error::Error::source(&err).unwrap().to_string();
            assert!(cause.contains("not valid"), "{cause}");
        }
    }

    #[test]
    fn email_keys_are_canonical_hashed_and_bounded() {
        let pool = deadpool_redis::Config::from_url("redis://127.0.0.1:1/")
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .unwrap();
        let repo = RedisUserRepository::new(pool).with_key_prefix("app:");
        let upper = repo.email_key(&Email::parse("ADA@Example.COM").unwrap());
        let lower = repo.email_key(&Email::parse("ada@example.com").unwrap());
        assert_eq!(upper, lower);
        assert_eq!(upper.len(), "app:user-email:".len() + 64);
        assert!(upper.starts_with("app:user-email:"));
        assert!(!upper.contains("ada"));
        assert_ne!(
            lower,
            repo.email_key(&Email::parse("bob@example.com").unwrap())
        );
        let id: UserId = "0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a".parse().unwrap();
        assert_eq!(
            repo.user_key(id),
            "app:user:0192d5e4-7b1c-7cc0-9a4e-3f1f1c0e8b2a"
        );
    }
}
