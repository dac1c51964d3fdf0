//! Test support: the realtime server on port 0 in this process, and a raw WebSocket client.

#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test support: a failed unwrap is a failed test; not every test binary uses every helper"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use futures_util::{SinkExt, StreamExt};
use keel_domain::{BoxFuture, SessionId, UserId};
use keel_realtime::socketio::JsonObject;
use keel_realtime::{
    AuthRefusal, ConnectAuth, ConnectRequest, Event, Identity, NamespaceHandler, RealtimeConfig,
    RealtimeServer, RealtimeServerBuilder, Socket,
};
use serde_json::Value as Json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// A config with every throttle off and timings long enough not to interfere.
pub fn config() -> RealtimeConfig {
    RealtimeConfig {
        connections_per_ip_per_second: 0,
        max_sockets_per_user: 0,
        events_per_socket_per_second: 0,
        ..RealtimeConfig::default()
    }
}

/// Accepts `{"token":"<user>/<session>"}` where both are small integers, so tests know every
/// socket's identity; refuses anything else as `invalid_token` (or `missing_credentials`).
pub struct TestAuth;

pub fn user(n: u128) -> UserId {
    UserId::from_uuid(uuid_from(n))
}

pub fn session(n: u128) -> SessionId {
    SessionId::from_uuid(uuid_from(n))
}

fn uuid_from(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

impl ConnectAuth for TestAuth {
    fn authenticate<'a>(
        &'a self,
        request: ConnectRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, AuthRefusal>> {
        let result = match request.auth.and_then(|auth| auth.get("token")) {
            None => Err(AuthRefusal::new("missing_credentials")),
            Some(token) => token
                .as_str()
                .and_then(|token| token.split_once('/'))
                .and_then(|(u, s)| Some((u.parse::<u128>().ok()?, s.parse::<u128>().ok()?)))
                .map(|(u, s)| Identity {
                    user_id: user(u),
                    session_id: session(s),
                })
                .ok_or_else(|| AuthRefusal::new("invalid_token")),
        };
        Box::pin(async move { result })
    }
}

/// The echo fixture's behaviour (see examples/echo.rs).
pub struct Echo;

impl NamespaceHandler for Echo {
    fn on_connect<'a>(
        &'a self,
        socket: &'a Socket,
        auth: Option<&'a JsonObject>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let auth = auth.cloned().unwrap_or_default();
            let _ = socket.emit_json("auth", &auth);
        })
    }

    fn on_event<'a>(&'a self, socket: &'a Socket, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Event { name, args, ack } = event;
            match (name.as_str(), ack) {
                ("message", _) => {
                    let _ = socket.emit("message-back", args);
                }
                ("message-with-ack", Some(ack)) => {
                    let _ = ack.send(args);
                }
                _ => {}
            }
        })
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub realtime: RealtimeServer,
    handle: ServerHandle,
}

impl TestServer {
    /// `/` has Keel's events, `/custom` echoes; `TestAuth` authenticates.
    pub async fn start(config: RealtimeConfig) -> Self {
        Self::start_with(RealtimeServer::builder(config, Arc::new(TestAuth))).await
    }

    pub async fn start_with(builder: RealtimeServerBuilder) -> Self {
        let realtime = builder
            .namespace("/custom", Arc::new(Echo))
            .build()
            .unwrap();
        let mounted = realtime.clone();
        let server = actix_web::HttpServer::new(move || {
            let mounted = mounted.clone();
            actix_web::App::new().configure(move |cfg| mounted.configure(cfg))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            addr,
            realtime,
            handle,
        }
    }

    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/socket.io/?{query}", self.addr)
    }

    /// A WebSocket that has read the OPEN packet.
    pub async fn client(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(self.url("EIO=4&transport=websocket"))
            .await
            .unwrap();
        let mut client = Client { ws };
        let open = client.text().await;
        assert!(open.starts_with("0{"), "{open}");
        client
    }

    /// A client connected to `/` as user `u`, session `s`, that has read its CONNECT answer.
    pub async fn user_client(&self, u: u128, s: u128) -> (Client, String) {
        let mut client = self.client().await;
        client.send(&format!(r#"40{{"token":"{u}/{s}"}}"#)).await;
        let sid = client.connected("/").await;
        (client, sid)
    }

    /// A raw HTTP GET; returns the status and the body.
    pub async fn http_get(&self, path_and_query: &str) -> (u16, String) {
        self.http("GET", path_and_query, "").await
    }

    /// A raw HTTP request on a fresh connection; returns the status and the body.
    pub async fn http(&self, method: &str, path_and_query: &str, body: &str) -> (u16, String) {
        http(self.addr, method, path_and_query, body).await
    }

    pub async fn stop(self) {
        self.realtime.shutdown();
        self.handle.stop(false).await;
    }
}

/// A raw HTTP/1.1 request on a fresh connection; returns the status and the body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    // Bodies without a length arrive chunked; the tests' bodies fit in one chunk.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let (_, rest) = body.split_once("\r\n").unwrap_or(("", ""));
        rest.rsplit_once("\r\n0\r\n")
            .map_or(rest, |(data, _)| data)
            .to_owned()
    } else {
        body.to_owned()
    };
    (status, body)
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the client read next.
#[derive(Debug, PartialEq)]
pub enum Read {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Ended,
}

impl Client {
    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws.send(Message::binary(data.to_vec())).await.unwrap();
    }

    /// The next text, binary or close, skipping WebSocket pings and pongs.
    pub async fn read(&mut self) -> Read {
        self.read_within(WAIT).await.expect("nothing read in time")
    }

    pub async fn read_within(&mut self, wait: Duration) -> Option<Read> {
        loop {
            let next = tokio::time::timeout(wait, self.ws.next()).await.ok()?;
            return Some(match next {
                None | Some(Err(_)) => Read::Ended,
                Some(Ok(Message::Text(text))) => Read::Text(text.to_string()),
                Some(Ok(Message::Binary(data))) => Read::Binary(data.to_vec()),
                Some(Ok(Message::Close(frame))) => Read::Close(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
            });
        }
    }

    /// The next text frame, answering server pings (`2`) on the way.
    pub async fn text(&mut self) -> String {
        loop {
            match self.read().await {
                Read::Text(text) if text == "2" => self.send("3").await,
                Read::Text(text) => return text,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    pub async fn binary(&mut self) -> Vec<u8> {
        match self.read().await {
            Read::Binary(data) => data,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Reads the CONNECT answer for `namespace` and returns the socket id.
    pub async fn connected(&mut self, namespace: &str) -> String {
        let text = self.text().await;
        let prefix = if namespace == "/" {
            "40".to_owned()
        } else {
            format!("40{namespace},")
        };
        let json = text
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("expected CONNECT for {namespace}, got {text}"));
        let json: Json = serde_json::from_str(json).unwrap();
        json["sid"].as_str().unwrap().to_owned()
    }

    /// Skips frames (answering pings) until the connection closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.read().await {
                Read::Close(code) => return code,
                Read::Ended => return None,
                Read::Text(text) if text == "2" => {
                    let _ = self.ws.send(Message::text("3")).await;
                }
                _ => {}
            }
        }
    }

    /// Sends an event on `/` and returns the JSON of its ack (`43<id>[<json>]`).
    pub async fn call(&mut self, id: u64, event: &str, arg: Json) -> Json {
        let packet = format!("42{id}{}", serde_json::json!([event, arg]));
        self.send(&packet).await;
        self.ack(id).await
    }

    /// Waits for the ack with this id, skipping other packets.
    pub async fn ack(&mut self, id: u64) -> Json {
        let prefix = format!("43{id}[");
        loop {
            let text = self.text().await;
            if let Some(rest) = text.strip_prefix(&prefix) {
                let args: Json = serde_json::from_str(&format!("[{rest}")).unwrap();
                return args[0].clone();
            }
        }
    }

    /// Waits for an event on `/` with this name, skipping other packets; returns its argument.
    pub async fn event(&mut self, name: &str) -> Json {
        loop {
            let text = self.text().await;
            if let Some(rest) = text.strip_prefix("42") {
                let args: Json = serde_json::from_str(rest).unwrap();
                if args[0] == name {
                    return args[1].clone();
                }
            }
        }
    }

    /// Asserts that nothing but heartbeats arrives within `wait`.
    pub async fn silent(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_within(left).await {
                None => return,
                Some(Read::Text(text)) if text == "2" => self.send("3").await,
                Some(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}
