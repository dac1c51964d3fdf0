//! The session record and the refresh-token state it carries.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use keel_domain::{SessionId, UserId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::SessionConfig;

/// The longest user agent a session keeps, in characters; longer ones are cut.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// One server-side session: who it belongs to, when it ends, where it came from, and the state
/// of its refresh token.
///
/// A session is live while `now` is before both [`expires_at`](Self::expires_at) (absolute
/// lifetime, fixed at creation) and [`idle_expires_at`](Self::idle_expires_at) (pushed forward
/// by activity, never past `expires_at`).
///
/// The serde form is the storage form: times are Unix milliseconds, and it contains the refresh
/// token hashes. It is not the API's `Session` object; map it to one at the edge and never send
/// this record to a client as is. Times are kept at millisecond precision so that every store
/// returns exactly what was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id (random, unguessable: it travels in the cookie).
    pub id: SessionId,
    /// The user the session belongs to.
    pub user_id: UserId,
    /// When the session was created.
    #[serde(with = "unix_ms")]
    pub created_at: OffsetDateTime,
    /// When the session was last used (written at most once per `touch_interval`).
    #[serde(with = "unix_ms")]
    pub last_seen_at: OffsetDateTime,
    /// The absolute end of the session, whatever its activity.
    #[serde(with = "unix_ms")]
    pub expires_at: OffsetDateTime,
    /// The end of the session if it stays unused; never later than `expires_at`.
    #[serde(with = "unix_ms")]
    pub idle_expires_at: OffsetDateTime,
    /// The client's `User-Agent`, cut to [`MAX_USER_AGENT_CHARS`] characters.
    pub user_agent: Option<String>,
    /// The client's IP address as the edge saw it.
    pub ip: Option<IpAddr>,
    /// The refresh-token state; `None` until a store's `create` installs the first token.
    pub refresh: Option<RefreshState>,
}

impl Session {
    /// A new session for `user_id`, created at `now`, with its lifetimes taken from `config`
    /// (times are cut to whole milliseconds). Its refresh state is installed by
    /// [`SessionStore::create`](crate::SessionStore::create).
    pub fn new(user_id: UserId, now: OffsetDateTime, config: &SessionConfig) -> Self {
        let now = truncate_to_ms(now);
        let expires_at = add(now, config.absolute_ttl);
        let idle_expires_at = add(now, config.idle_ttl).min(expires_at);
        Self {
            id: SessionId::generate(),
            user_id,
            created_at: now,
            last_seen_at: now,
            expires_at,
            idle_expires_at,
            user_agent: None,
            ip: None,
            refresh: None,
        }
    }

    /// Sets the user agent, cut to [`MAX_USER_AGENT_CHARS`] characters.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(truncate_user_agent(user_agent.into()));
        self
    }

    /// Sets the client's IP address.
    #[must_use]
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Whether the session is live at `now`: before both its absolute and its idle expiry.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at && now < self.idle_expires_at
    }

    /// Records activity at `now` when `touch_interval` has passed since `last_seen_at`: moves
    /// `last_seen_at` and the idle expiry. Returns whether anything changed.
    pub(crate) fn touch_if_due(&mut self, now: OffsetDateTime, config: &SessionConfig) -> bool {
        let now = truncate_to_ms(now);
        if now - self.last_seen_at < config.touch_interval {
            return false;
        }
        self.touch(now, config);
        true
    }

    /// Records activity at `now` unconditionally.
    pub(crate) fn touch(&mut self, now: OffsetDateTime, config: &SessionConfig) {
        let now = truncate_to_ms(now);
        self.last_seen_at = now;
        self.idle_expires_at = add(now, config.idle_ttl).min(self.expires_at);
    }

    /// Brings a record handed to `create` into the stored form: whole milliseconds, a cut user
    /// agent, an idle expiry no later than the absolute one, and a fresh refresh state.
    pub(crate) fn normalized_for_create(mut self, refresh_hash: RefreshHash) -> Self {
        self.created_at = truncate_to_ms(self.created_at);
        self.last_seen_at = truncate_to_ms(self.last_seen_at);
        self.expires_at = truncate_to_ms(self.expires_at);
        self.idle_expires_at = truncate_to_ms(self.idle_expires_at).min(self.expires_at);
        self.user_agent = self.user_agent.map(truncate_user_agent);
        self.refresh = Some(RefreshState {
            current: refresh_hash,
            generation: 0,
            previous: None,
        });
        self
    }
}

/// The refresh-token state of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshState {
    /// The hash of the one refresh token that rotates now.
    pub current: RefreshHash,
    /// How many times the token was rotated (0 for the token issued at login).
    pub generation: u64,
    /// The token that was current before the last rotation, for the optional grace window.
    pub previous: Option<PreviousRefresh>,
}

/// The refresh token replaced by the last rotation, and when that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousRefresh {
    /// The replaced token's hash.
    pub hash: RefreshHash,
    /// When it was replaced.
    #[serde(with = "unix_ms")]
    pub rotated_at: OffsetDateTime,
}

/// The SHA-256 hash of a refresh token. Stores keep only this, never the token.
///
/// Its text (and serde) form is 64 lowercase hex digits. `Debug` shows only a prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefreshHash([u8; 32]);

impl RefreshHash {
    /// Hashes a refresh token as presented by a client.
    pub fn of_token(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Wraps a hash computed elsewhere.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the hash.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits of the hash.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    }
}

/// The text was not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a refresh token hash is 64 hex digits")]
pub struct InvalidRefreshHash;

impl FromStr for RefreshHash {
    type Err = InvalidRefreshHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fn nibble(c: u8) -> Result<u8, InvalidRefreshHash> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(InvalidRefreshHash),
            }
        }
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(InvalidRefreshHash);
        }
        let mut out = [0_u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for RefreshHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RefreshHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefreshHash({}..)", &self.to_hex()[..8])
    }
}

impl Serialize for RefreshHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for RefreshHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Cuts a user agent to [`MAX_USER_AGENT_CHARS`] characters (not bytes).
fn truncate_user_agent(mut user_agent: String) -> String {
    if let Some((index, _)) = user_agent.char_indices().nth(MAX_USER_AGENT_CHARS) {
        user_agent.truncate(index);
    }
    user_agent
}

/// `at + by`, saturating at the largest representable time.
pub(crate) fn add(at: OffsetDateTime, by: std::time::Duration) -> OffsetDateTime {
    let by = time::Duration::try_from(by).unwrap_or(time::Duration::MAX);
    at.saturating_add(by)
}

/// Drops the sub-millisecond part of a time.
pub(crate) fn truncate_to_ms(at: OffsetDateTime) -> OffsetDateTime {
    let ms = at.millisecond();
    at.replace_millisecond(ms).unwrap_or(at)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn to_unix_ms(at: OffsetDateTime) -> i64 {
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// The time `ms` milliseconds after the Unix epoch, if representable.
pub(crate) fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Serde for times as integer Unix milliseconds (integral floats are accepted too, as Lua's JSON
/// encoder may produce them).
mod unix_ms {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use time::OffsetDateTime;

    pub(super) fn serialize<S: Serializer>(
        at: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(super::to_unix_ms(*at))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        deserializer.deserialize_any(MsVisitor)
    }

    struct MsVisitor;

    impl MsVisitor {
        fn at<E: de::Error>(ms: i64) -> Result<OffsetDateTime, E> {
            super::from_unix_ms(ms).ok_or_else(|| E::custom("time out of range"))
        }
    }

    impl Visitor<'_> for MsVisitor {
        type Value = OffsetDateTime;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a time as integer Unix milliseconds")
        }

        fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Self::Value, E> {
            Self::at(ms)
        }

        fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Self::Value, E> {
            Self::at(i64::try_from(ms).map_err(|_| E::custom("time out of range"))?)
        }

        fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Self::Value, E> {
            // Exact for every millisecond time up to the year 287396 (2^53 ms).
            if ms.fract() != 0.0 || ms.abs() > 9_007_199_254_740_992.0 {
                return Err(E::custom("time is not a whole number of milliseconds"));
            }
            #[allow(clippy::cast_possible_truncation)]
            Self::at(ms as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: i64) -> OffsetDateTime {
        from_unix_ms(ms).unwrap()
    }

    #[test]
    fn a_new_session_takes_its_lifetimes_from_the_config() {
        let config = SessionConfig::default();
        let now = at(1_700_000_000_123) + time::Duration::nanoseconds(456_789);
        let session = Session::new(UserId::generate(), now, &config);
        assert_eq!(session.created_at, at(1_700_000_000_123));
        assert_eq!(session.last_seen_at, session.created_at);
        assert_eq!(
            session.expires_at,
            session.created_at + time::Duration::days(30)
        );
        assert_eq!(
            session.idle_expires_at,
            session.created_at + time::Duration::days(7)
        );
        assert!(session.is_live(session.created_at));
        assert!(!session.is_live(session.idle_expires_at));
    }

    #[test]
    fn idle_expiry_never_passes_the_absolute_one() {
        let config = SessionConfig {
            absolute_ttl: Duration::from_secs(60),
            idle_ttl: Duration::from_secs(3600),
            ..SessionConfig::default()
        };
        let mut session = Session::new(UserId::generate(), at(0), &config);
        assert_eq!(session.idle_expires_at, session.expires_at);
        session.touch(at(30_000), &config);
        assert_eq!(session.idle_expires_at, session.expires_at);
    }

    #[test]
    fn user_agents_are_cut_to_256_characters_not_bytes() {
        let long: String = "é".repeat(300);
        let session = Session::new(UserId::generate(), at(0), &SessionConfig::default())
            .with_user_agent(long);
        let ua = session.user_agent.unwrap();
        assert_eq!(ua.chars().count(), MAX_USER_AGENT_CHARS);
        let short = Session::new(UserId::generate(), at(0), &SessionConfig::default())
            .with_user_agent("curl/8");
        assert_eq!(short.user_agent.as_deref(), Some("curl/8"));
    }

    #[test]
    fn refresh_hashes_are_sha256_in_hex() {
        let hash = RefreshHash::of_token("abc");
        assert_eq!(
            hash.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash.to_hex().parse::<RefreshHash>().unwrap(), hash);
        assert_eq!(
            hash.to_hex().to_uppercase().parse::<RefreshHash>().unwrap(),
            hash
        );
        assert!("abc".parse::<RefreshHash>().is_err());
        assert!("zz".repeat(32).parse::<RefreshHash>().is_err());
        assert_eq!(format!("{hash:?}"), "RefreshHash(ba7816bf..)");
    }

    #[test]
    fn the_stored_form_round_trips_and_uses_unix_milliseconds() {
        let session = Session::new(
            UserId::generate(),
            at(1_700_000_000_123),
            &Default::default(),
        )
        .with_user_agent("ua")
        .with_ip("2001:db8::1".parse().unwrap())
        .normalized_for_create(RefreshHash::of_token("t"));
        let json = serde_json::to_value(&session).unwrap();
        assert_eq!(json["created_at"], 1_700_000_000_123_i64);
        assert_eq!(json["ip"], "2001:db8::1");
        let back: Session = serde_json::from_value(json).unwrap();
        assert_eq!(back, session);
        // Lua's encoder may write integral floats.
        let mut json = serde_json::to_value(&session).unwrap();
        json["created_at"] = serde_json::json!(1_700_000_000_123.0_f64);
        let back: Session = serde_json::from_value(json).unwrap();
        assert_eq!(back.created_at, session.created_at);
    }
}
