//! The session registry's configuration: a plain serde struct with defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How sessions live and where the Redis store keeps them.
///
/// Durations are written as seconds (an integer, or a float for fractions). Every field has a
/// default, so an empty table is a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// The absolute lifetime of a session, from creation, whatever its activity (30 days).
    #[serde(with = "seconds")]
    pub absolute_ttl: Duration,
    /// How long a session lives without activity (7 days).
    #[serde(with = "seconds")]
    pub idle_ttl: Duration,
    /// The least time between two "last seen" writes of a session (60 s): authenticating a
    /// request only writes when this much time has passed since the last write, so reads do not
    /// turn into a write per request. The idle expiry is therefore exact to within this interval.
    #[serde(with = "seconds")]
    pub touch_interval: Duration,
    /// How long after a rotation the previous refresh token is still answered with
    /// [`RotateOutcome::GraceReplay`](crate::RotateOutcome::GraceReplay) instead of being
    /// treated as reuse (10 s; 0 turns the grace window off, so any second use revokes).
    #[serde(with = "seconds")]
    pub refresh_grace: Duration,
    /// The prefix of every Redis key the store writes (`keel:`).
    pub key_prefix: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            absolute_ttl: Duration::from_secs(30 * 24 * 3600),
            idle_ttl: Duration::from_secs(7 * 24 * 3600),
            touch_interval: Duration::from_secs(60),
            refresh_grace: Duration::from_secs(10),
            key_prefix: "keel:".to_owned(),
        }
    }
}

/// Serde for durations as seconds: an integer, or a float for fractions of a second.
pub(crate) mod seconds {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            serializer.serialize_u64(d.as_secs())
        } else {
            serializer.serialize_f64(d.as_secs_f64())
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(SecondsVisitor)
    }

    struct SecondsVisitor;

    impl Visitor<'_> for SecondsVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration in seconds (a non-negative number)")
        }

        fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(secs).map_err(E::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let config = SessionConfig::default();
        assert_eq!(config.absolute_ttl, Duration::from_secs(2_592_000));
        assert_eq!(config.idle_ttl, Duration::from_secs(604_800));
        assert_eq!(config.touch_interval, Duration::from_secs(60));
        assert_eq!(config.refresh_grace, Duration::from_secs(10));
        assert_eq!(config.key_prefix, "keel:");
    }

    #[test]
    fn durations_are_seconds_and_missing_fields_take_defaults() {
        let config: SessionConfig =
            serde_json::from_str(r#"{"idle_ttl": 3600, "refresh_grace": 2.5}"#).unwrap();
        assert_eq!(config.idle_ttl, Duration::from_secs(3600));
        assert_eq!(config.refresh_grace, Duration::from_millis(2500));
        assert_eq!(config.absolute_ttl, SessionConfig::default().absolute_ttl);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["idle_ttl"], 3600);
        assert_eq!(json["refresh_grace"], 2.5);
        assert!(serde_json::from_str::<SessionConfig>(r#"{"idle_ttl": -1}"#).is_err());
        assert!(serde_json::from_str::<SessionConfig>(r#"{"idel_ttl": 1}"#).is_err());
    }
}
