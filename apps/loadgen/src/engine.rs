//! The client side of Engine.IO v4 / Socket.IO v5 over WebSocket, reduced to what a load
//! generator needs: open a socket, complete the Socket.IO CONNECT with a token, recognise the
//! few packet kinds the scenarios react to, and answer the server's heartbeat.
//!
//! There is deliberately no full codec: a load generator that decoded every packet into a tree
//! would measure itself. Packets are matched by their type prefix and only the parts a scenario
//! needs are read.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

/// One established WebSocket carrying a connected Socket.IO socket.
pub type Ws = WebSocketStream<TcpStream>;

/// The Engine.IO pong, the answer to the server's ping `2`.
pub const PONG: Utf8Bytes = Utf8Bytes::from_static("3");

/// How an `EVENT` payload starts when it is Keel's room `message`.
pub const MESSAGE_EVENT: &str = "[\"message\",";
/// How an `EVENT` payload starts when it is Keel's `presence`.
pub const PRESENCE_EVENT: &str = "[\"presence\",";

/// A server given on the command line, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The HTTP base URL (scheme, authority and path prefix, no trailing slash).
    pub http_base: String,
    /// The Socket.IO WebSocket URL.
    pub ws_url: String,
    /// The resolved address the TCP connections go to.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses `http://host:port[/prefix]` (or `ws://`) and resolves the host once, so thousands
    /// of connects do not each ask the resolver.
    pub async fn resolve(url: &str) -> Result<Self, crate::Error> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if let Some(rest) = url.strip_prefix("ws://") {
            rest
        } else if url.starts_with("https://") || url.starts_with("wss://") {
            return Err(format!("{url}: TLS is not supported; use http:// or ws://").into());
        } else {
            return Err(format!("{url}: expected a URL like http://127.0.0.1:3000").into());
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.trim_end_matches('/');
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host").into());
        }
        let with_port = if has_port(authority) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|error| format!("{url}: cannot resolve {authority}: {error}"))?
            .next()
            .ok_or_else(|| format!("{url}: {authority} resolves to no address"))?;
        Ok(Self {
            http_base: format!("http://{authority}{prefix}"),
            ws_url: format!("ws://{authority}{prefix}/socket.io/?EIO=4&transport=websocket"),
            addr,
        })
    }
}

/// Whether an authority (`host`, `host:port`, `[v6]`, `[v6]:port`) names a port.
fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    }
}

/// Why one socket could not be opened; counted by the scenarios, never fatal on its own.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connection failed (refused, no ports left, too many open files...).
    Io(std::io::Error),
    /// The WebSocket handshake or a later frame failed.
    WebSocket(tungstenite::Error),
    /// The server answered CONNECT_ERROR (`44`): the text of that packet.
    Refused(String),
    /// The connection closed before the Socket.IO CONNECT completed.
    Closed,
    /// The handshake took longer than the connect timeout.
    Timeout,
    /// The server sent something that is not Engine.IO v4 at this point.
    Protocol(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "tcp: {error}"),
            Self::WebSocket(error) => write!(f, "websocket: {error}"),
            Self::Refused(packet) => write!(f, "connect refused: {packet}"),
            Self::Closed => f.write_str("closed during the handshake"),
            Self::Timeout => f.write_str("handshake timed out"),
            Self::Protocol(what) => write!(f, "protocol: {what}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<std::io::Error> for ConnectError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

impl From<tungstenite::Error> for ConnectError {
    fn from(error: tungstenite::Error) -> Self {
        Self::WebSocket(error)
    }
}

/// Opens authenticated sockets, spreading them over targets and source addresses.
#[derive(Debug, Clone)]
pub struct Connector {
    targets: Vec<Target>,
    source_ips: Vec<IpAddr>,
    /// The CONNECT packet, encoded once: every socket sends the same token.
    connect_packet: Utf8Bytes,
    config: WebSocketConfig,
    timeout: Duration,
}

impl Connector {
    /// A connector for these targets (at least one), binding round-robin to `source_ips` (none:
    /// the kernel picks), authenticating with `token`.
    pub fn new(targets: Vec<Target>, source_ips: Vec<IpAddr>, token: &str) -> Self {
        let auth = serde_json::json!({ "token": token });
        Self {
            targets,
            source_ips,
            connect_packet: format!("40{auth}").into(),
            config: WebSocketConfig::default(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The same connector with a per-socket read buffer of `bytes`.
    ///
    /// tungstenite allocates the read buffer eagerly (128 KiB by default): with tens of
    /// thousands of sockets that alone would be gigabytes, so the scenarios choose.
    #[must_use]
    pub fn with_read_buffer(mut self, bytes: usize) -> Self {
        self.config = self.config.read_buffer_size(bytes);
        self
    }

    /// The targets, in command-line order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Opens socket number `index`: target and source address are chosen round-robin by it.
    pub async fn connect(&self, index: usize) -> Result<Ws, ConnectError> {
        let target = &self.targets[index % self.targets.len()];
        let source =
            (!self.source_ips.is_empty()).then(|| self.source_ips[index % self.source_ips.len()]);
        self.connect_to(target, source).await
    }

    /// Opens one socket to `target`, from `source` when given, and completes the Socket.IO
    /// CONNECT within the connect timeout.
    pub async fn connect_to(
        &self,
        target: &Target,
        source: Option<IpAddr>,
    ) -> Result<Ws, ConnectError> {
        tokio::time::timeout(self.timeout, self.handshake(target, source))
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    async fn handshake(&self, target: &Target, source: Option<IpAddr>) -> Result<Ws, ConnectError> {
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(target.addr).await?;
        // Small frames must leave at once: Nagle would add up to 40 ms to every latency.
        stream.set_nodelay(true)?;
        let (mut ws, _response) = tokio_tungstenite::client_async_with_config(
            target.ws_url.as_str(),
            stream,
            Some(self.config),
        )
        .await?;
        // Engine.IO OPEN first.
        match next_text(&mut ws).await? {
            text if text.starts_with('0') => {}
            text => {
                return Err(ConnectError::Protocol(format!(
                    "expected OPEN, got {}",
                    clip(&text)
                )));
            }
        }
        ws.send(Message::Text(self.connect_packet.clone())).await?;
        loop {
            let text = next_text(&mut ws).await?;
            match classify(&text) {
                Packet::Connected => return Ok(ws),
                Packet::ConnectError => return Err(ConnectError::Refused(clip(&text))),
                Packet::Ping => ws.send(Message::Text(PONG)).await?,
                Packet::Close | Packet::Disconnect => return Err(ConnectError::Closed),
                _ => {}
            }
        }
    }
}

/// The next text frame; control frames are handled by tungstenite, binary frames skipped.
async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(_))) | None => return Err(ConnectError::Closed),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
        }
    }
}

/// At most 200 characters of a packet, for an error message.
fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

/// What a text frame from the server is, as far as the scenarios care. Only the main
/// namespace `/` is recognised; packets of other namespaces are [`Packet::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Engine.IO OPEN (`0{...}`).
    Open,
    /// Engine.IO CLOSE (`1`).
    Close,
    /// Engine.IO PING (`2`): the client must answer [`PONG`].
    Ping,
    /// Socket.IO CONNECT accepted (`40...`).
    Connected,
    /// Socket.IO DISCONNECT (`41`): the server dropped the socket.
    Disconnect,
    /// Socket.IO CONNECT_ERROR (`44...`).
    ConnectError,
    /// Socket.IO EVENT: its JSON array payload (`["name",...]`), any ack id skipped.
    Event(&'a str),
    /// Socket.IO ACK with its id and JSON array payload.
    Ack {
        /// The ack id the client chose.
        id: u64,
        /// The JSON array of the ack's arguments.
        payload: &'a str,
    },
    /// Anything else (other namespaces, binary events, upgrade probes...).
    Other,
}

/// Classifies one text frame by its type prefix, without parsing any JSON.
pub fn classify(text: &str) -> Packet<'_> {
    let bytes = text.as_bytes();
    match bytes {
        [b'2', ..] => Packet::Ping,
        [b'0', ..] => Packet::Open,
        [b'1', ..] => Packet::Close,
        [b'4', b'0', ..] => Packet::Connected,
        [b'4', b'1', ..] => Packet::Disconnect,
        [b'4', b'4', ..] => Packet::ConnectError,
        [b'4', b'2', ..] => {
            let (_, payload) = split_ack_id(&text[2..]);
            if payload.starts_with('[') {
                Packet::Event(payload)
            } else {
                Packet::Other
            }
        }
        [b'4', b'3', ..] => match split_ack_id(&text[2..]) {
            (Some(id), payload) if payload.starts_with('[') => Packet::Ack { id, payload },
            _ => Packet::Other,
        },
        _ => Packet::Other,
    }
}

/// Splits the leading decimal ack id (if any) off a packet's data.
fn split_ack_id(data: &str) -> (Option<u64>, &str) {
    let digits = data.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return (None, data);
    }
    (data[..digits].parse().ok(), &data[digits..])
}

/// Whether an ack payload is Keel's success (`[{"ok":true,...}]`).
pub fn ack_ok(payload: &str) -> bool {
    payload.contains("\"ok\":true")
}

/// The unsigned integer that follows `key` (e.g. `"seq":`) in `text`.
///
/// The fast path for the load generator's own message bodies, whose keys cannot collide with
/// anything else in a Keel `message` event (room names hold no quotes, user ids are UUIDs).
pub fn u64_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let rest = text[start..].trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// The sequence number and send time a load-generator message body carries, from the payload
/// of a `message` event: the fast path first, a full parse when the server reformatted it.
pub fn message_stamp(payload: &str) -> Option<(u64, u64)> {
    if let (Some(seq), Some(sent)) = (
        u64_after(payload, "\"seq\":"),
        u64_after(payload, "\"sent\":"),
    ) {
        return Some((seq, sent));
    }
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let body = value.get(1)?.get("body")?;
    Some((body.get("seq")?.as_u64()?, body.get("sent")?.as_u64()?))
}

/// Writes the frame of message `seq` sent at `sent` (nanoseconds of the process clock) to
/// `room`, with ack id `ack_id`, padded so the body is about `body_bytes` long.
pub fn message_frame(room: &str, ack_id: u64, seq: u64, sent: u64, pad: &str) -> String {
    format!(
        "42{ack_id}[\"message\",{{\"room\":\"{room}\",\"body\":{{\"seq\":{seq},\"sent\":{sent},\"pad\":\"{pad}\"}}}}]"
    )
}

/// The padding that makes a body `{"seq":..,"sent":..,"pad":"..."}` about `body_bytes` long
/// (typical sequence and time widths assumed; never negative).
pub fn padding(body_bytes: usize) -> String {
    // `{"seq":123,"sent":12345678901,"pad":""}` is about 40 bytes.
    "x".repeat(body_bytes.saturating_sub(40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_engineio_and_socketio_packets() {
        assert_eq!(classify("0{\"sid\":\"a\"}"), Packet::Open);
        assert_eq!(classify("2"), Packet::Ping);
        assert_eq!(classify("1"), Packet::Close);
        assert_eq!(classify("40{\"sid\":\"x\"}"), Packet::Connected);
        assert_eq!(classify("41"), Packet::Disconnect);
        assert_eq!(
            classify("44{\"message\":\"unauthorized\"}"),
            Packet::ConnectError
        );
        assert_eq!(classify("42[\"a\",1]"), Packet::Event("[\"a\",1]"));
        assert_eq!(classify("4217[\"a\"]"), Packet::Event("[\"a\"]"));
        assert_eq!(
            classify("4312[{\"ok\":true}]"),
            Packet::Ack {
                id: 12,
                payload: "[{\"ok\":true}]"
            }
        );
        assert_eq!(classify("43[{}]"), Packet::Other);
        assert_eq!(classify("42/chat,[\"a\"]"), Packet::Other);
        assert_eq!(classify("6"), Packet::Other);
        assert_eq!(classify(""), Packet::Other);
    }

    #[test]
    fn reads_the_stamp_of_a_delivered_message() {
        let frame = message_frame("room:bench", 7, 42, 123_456_789, "xx");
        assert!(frame.starts_with("427[\"message\","));
        // What Keel delivers: the body inside its own envelope, keys possibly reordered.
        let delivered = "42[\"message\",{\"body\":{\"pad\":\"xx\",\"sent\":123456789,\"seq\":42},\
                         \"from\":\"0190-ab\",\"room\":\"room:bench\",\"sentAt\":\"2026-01-01T00:00:00Z\"}]";
        let Packet::Event(payload) = classify(delivered) else {
            panic!("not an event")
        };
        assert!(payload.starts_with(MESSAGE_EVENT));
        assert_eq!(message_stamp(payload), Some((42, 123_456_789)));
        // Whitespace defeats neither path.
        let spaced = "[\"message\",{\"body\":{\"seq\": 3, \"sent\": 9}}]";
        assert_eq!(message_stamp(spaced), Some((3, 9)));
        assert_eq!(message_stamp("[\"message\",{\"body\":1}]"), None);
    }

    #[test]
    fn message_bodies_have_about_the_requested_size() {
        let frame = message_frame("room:bench", 1, 123, 12_345_678_901, &padding(64));
        let body = &frame[frame.find("{\"seq\"").unwrap_or(0)..frame.len() - 2];
        assert!(
            (60..=70).contains(&body.len()),
            "{} bytes: {body}",
            body.len()
        );
        assert_eq!(padding(10), "");
    }

    #[test]
    fn recognises_success_acks() {
        assert!(ack_ok("[{\"ok\":true}]"));
        assert!(!ack_ok("[{\"ok\":false,\"error\":{}}]"));
    }

    #[test]
    fn urls_with_and_without_ports() {
        assert!(has_port("127.0.0.1:3000"));
        assert!(!has_port("localhost"));
        assert!(has_port("[::1]:3000"));
        assert!(!has_port("[::1]"));
    }
}
