//! The realtime server's configuration: a plain serde struct with the contract's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Timings, limits and throttles of the realtime server.
///
/// Every field has a default (the values of the API contract), so an empty configuration is a
/// valid one. Throttles set to 0 are off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Milliseconds between two server pings (`pingInterval`, default 25000).
    pub ping_interval_ms: u64,
    /// Milliseconds the server waits for a pong before it closes the connection
    /// (`pingTimeout`, default 20000).
    pub ping_timeout_ms: u64,
    /// Largest packet, WebSocket frame or reassembled message the client may send, in bytes
    /// (`maxPayload`, default 1000000).
    pub max_payload: usize,
    /// Milliseconds a new connection has to send its first Socket.IO CONNECT (default 45000).
    pub connect_timeout_ms: u64,
    /// Packets that may wait in one connection's outbound queue (a binary packet and its
    /// attachments count as one). A connection whose queue is full is disconnected.
    pub outbound_queue: usize,
    /// Milliseconds a closing connection may spend flushing its queue and close frame before it
    /// is dropped (default 1000).
    pub close_grace_ms: u64,
    /// Most binary attachments in one packet, both directions (default 10).
    pub max_attachments: usize,
    /// Most rooms one socket may be in, its `user:` and `session:` rooms included (default 100).
    pub max_rooms_per_socket: usize,
    /// New WebSocket connections accepted per client IP per second (default 20; 0 is off).
    pub connections_per_ip_per_second: u32,
    /// Sockets one user may have open at once, over all namespaces (default 20; 0 is off).
    pub max_sockets_per_user: u32,
    /// Events one socket may send per second (default 50; 0 is off). Events over the limit get
    /// the error ack `rate_limited`.
    pub events_per_socket_per_second: u32,
    /// Events refused as `rate_limited` in consecutive seconds after which the socket's
    /// connection is closed as a flood (default 100; 0 never closes).
    pub flood_disconnect_after: u32,
    /// How often the app re-checks the sessions of this instance's sockets against the session
    /// registry, closing those of sessions that expired or whose revocation message was lost
    /// (0: never).
    pub session_check_interval_ms: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            max_payload: crate::engineio::DEFAULT_MAX_PAYLOAD,
            connect_timeout_ms: 45_000,
            outbound_queue: 256,
            close_grace_ms: 1_000,
            max_attachments: crate::socketio::DEFAULT_MAX_ATTACHMENTS,
            max_rooms_per_socket: 100,
            connections_per_ip_per_second: 20,
            max_sockets_per_user: 20,
            events_per_socket_per_second: 50,
            flood_disconnect_after: 100,
            session_check_interval_ms: 30_000,
        }
    }
}

/// Why a [`RealtimeConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field that must be positive is 0.
    #[error("realtime.{0} must be greater than 0")]
    Zero(&'static str),
    /// A namespace name does not start with `/` or contains `,`.
    #[error("invalid namespace name {0:?}: it starts with '/' and has no ','")]
    InvalidNamespace(String),
}

impl RealtimeConfig {
    /// Checks the values that cannot work (zero intervals, sizes or queues).
    ///
    /// # Errors
    /// [`ConfigError::Zero`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("ping_interval_ms", self.ping_interval_ms as usize),
            ("ping_timeout_ms", self.ping_timeout_ms as usize),
            ("max_payload", self.max_payload),
            ("connect_timeout_ms", self.connect_timeout_ms as usize),
            ("outbound_queue", self.outbound_queue),
            ("max_rooms_per_socket", self.max_rooms_per_socket),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(ConfigError::Zero(name)),
            None => Ok(()),
        }
    }

    /// [`RealtimeConfig::ping_interval_ms`] as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// [`RealtimeConfig::ping_timeout_ms`] as a duration.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    /// [`RealtimeConfig::connect_timeout_ms`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`RealtimeConfig::close_grace_ms`] as a duration.
    pub fn close_grace(&self) -> Duration {
        Duration::from_millis(self.close_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract_values_and_valid() {
        let config = RealtimeConfig::default();
        assert_eq!(config.ping_interval_ms, 25_000);
        assert_eq!(config.ping_timeout_ms, 20_000);
        assert_eq!(config.max_payload, 1_000_000);
        assert_eq!(config.connect_timeout_ms, 45_000);
        assert_eq!(config.max_attachments, 10);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn an_empty_document_is_the_default_and_unknown_keys_are_refused() {
        let config: RealtimeConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, RealtimeConfig::default());
        let partial: RealtimeConfig = serde_json::from_str(r#"{"ping_interval_ms":100}"#).unwrap();
        assert_eq!(partial.ping_interval_ms, 100);
        assert!(serde_json::from_str::<RealtimeConfig>(r#"{"pingInterval":1}"#).is_err());
    }

    #[test]
    fn zero_sizes_are_refused() {
        let config = RealtimeConfig {
            outbound_queue: 0,
            ..RealtimeConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::Zero("outbound_queue")));
    }
}
