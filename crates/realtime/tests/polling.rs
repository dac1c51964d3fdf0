//! Wire tests of HTTP long-polling and the upgrade to WebSocket, with raw HTTP requests.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, Read, TestServer, config, http};
use keel_realtime::RealtimeConfig;
use serde_json::{Value as Json, json};

const SEP: char = '\x1e';

struct Polling {
    addr: SocketAddr,
    sid: String,
}

impl Polling {
    async fn open(server: &TestServer) -> (Self, Json) {
        let (status, body) = server.http_get("/socket.io/?EIO=4&transport=polling").await;
        assert_eq!(status, 200, "{body}");
        let open: Json = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
        let sid = open["sid"].as_str().unwrap().to_owned();
        (
            Self {
                addr: server.addr,
                sid,
            },
            open,
        )
    }

    fn path(&self) -> String {
        format!("/socket.io/?EIO=4&transport=polling&sid={}", self.sid)
    }

    async fn post(&self, body: &str) -> (u16, String) {
        http(self.addr, "POST", &self.path(), body).await
    }

    async fn get(&self) -> (u16, String) {
        http(self.addr, "GET", &self.path(), "").await
    }

    /// Polls until `count` packets arrived (answering pings); returns them.
    async fn packets(&self, count: usize) -> Vec<String> {
        let mut packets = Vec::new();
        while packets.len() < count {
            let (status, body) = self.get().await;
            assert_eq!(status, 200, "{body}");
            for packet in body.split(SEP) {
                if packet == "2" {
                    assert_eq!(self.post("3").await.0, 200);
                } else {
                    packets.push(packet.to_owned());
                }
            }
        }
        packets
    }
}

#[actix_web::test]
async fn polling_handshake_sends_the_open_packet_with_the_websocket_upgrade() {
    let server = TestServer::start(config()).await;
    let (_, open) = Polling::open(&server).await;
    let mut keys: Vec<&str> = open
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    assert_eq!(open["upgrades"], json!(["websocket"]));
    server.stop().await;
}

#[actix_web::test]
async fn connect_events_acks_and_binary_over_polling() {
    let server = TestServer::start(config()).await;
    let (polling, open) = Polling::open(&server).await;
    let body = format!(
        r#"40/custom,{{"token":"1/1"}}{SEP}42/custom,["message",1]{SEP}42/custom,5["message-with-ack","a"]"#
    );
    assert_eq!(polling.post(&body).await, (200, "ok".to_owned()));
    let packets = polling.packets(4).await;
    let sid = packets[0].strip_prefix("40/custom,").unwrap();
    let sid: Json = serde_json::from_str(sid).unwrap();
    assert_ne!(sid["sid"], open["sid"]);
    assert_eq!(
        packets[1..],
        [
            r#"42/custom,["auth",{"token":"1/1"}]"#,
            r#"42/custom,["message-back",1]"#,
            r#"43/custom,5["a"]"#,
        ]
    );

    // Binary: attachments travel as b<base64> in the same payloads.
    let body = format!(r#"451-/custom,["message",{{"_placeholder":true,"num":0}}]{SEP}bAQID"#);
    assert_eq!(polling.post(&body).await.0, 200);
    let packets = polling.packets(2).await;
    assert_eq!(
        packets,
        [
            r#"451-/custom,["message-back",{"_placeholder":true,"num":0}]"#,
            "bAQID"
        ]
    );
    server.stop().await;
}

#[actix_web::test]
async fn unknown_sid_is_a_400() {
    let server = TestServer::start(config()).await;
    for method in ["GET", "POST"] {
        let (status, body) = server
            .http(method, "/socket.io/?EIO=4&transport=polling&sid=nope", "40")
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            serde_json::from_str::<Json>(&body).unwrap(),
            json!({"code": 1, "message": "Session ID unknown"})
        );
    }
    server.stop().await;
}

#[actix_web::test]
async fn a_second_get_in_flight_is_refused_and_closes_the_session() {
    let server = TestServer::start(config()).await;
    let (polling, _) = Polling::open(&server).await;
    let addr = polling.addr;
    let path = polling.path();
    let pending = tokio::spawn(async move { http(addr, "GET", &path, "").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = polling.get().await;
    assert_eq!(status, 400);
    // The first poll ends with a close packet, and the session is gone.
    assert_eq!(pending.await.unwrap(), (200, "1".to_owned()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(polling.get().await.0, 400);
    server.stop().await;
}

#[actix_web::test]
async fn polling_heartbeat_times_out_without_a_pong() {
    let server = TestServer::start(RealtimeConfig {
        ping_interval_ms: 100,
        ping_timeout_ms: 100,
        ..config()
    })
    .await;
    let (polling, _) = Polling::open(&server).await;
    assert_eq!(polling.post(r#"40{"token":"1/1"}"#).await.0, 200);
    assert!(polling.get().await.1.starts_with("40"));
    assert_eq!(polling.get().await.1, "2");
    assert_eq!(polling.post("3").await.0, 200);
    assert_eq!(polling.get().await.1, "2");
    // No pong this time: the next poll gets the close packet.
    assert_eq!(polling.get().await.1, "1");
    server.stop().await;
}

#[actix_web::test]
async fn upgrade_from_polling_to_websocket() {
    let server = TestServer::start(config()).await;
    let (polling, _) = Polling::open(&server).await;
    assert_eq!(polling.post(r#"40{"token":"1/1"}"#).await.0, 200);
    assert!(polling.packets(1).await[0].starts_with("40{"));

    let addr = polling.addr;
    let path = polling.path();
    let pending = tokio::spawn(async move { http(addr, "GET", &path, "").await });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let url = server.url(&format!("EIO=4&transport=websocket&sid={}", polling.sid));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut client = Client { ws };
    client.send("2probe").await;
    assert_eq!(client.read().await, Read::Text("3probe".into()));
    // The pending poll is released with a noop so the client can pause polling.
    assert_eq!(pending.await.unwrap(), (200, "6".to_owned()));
    client.send("5").await;

    let ack = client.call(1, "ping", json!({})).await;
    assert_eq!(ack["ok"], true);
    // Polling is over for this session.
    assert_eq!(polling.get().await.0, 400);
    server.stop().await;
}

#[actix_web::test]
async fn packets_queued_during_the_upgrade_arrive_over_the_websocket() {
    let server = TestServer::start(config()).await;
    let (polling, _) = Polling::open(&server).await;
    assert_eq!(polling.post(r#"40{"token":"1/1"}"#).await.0, 200);
    polling.packets(1).await;
    let url = server.url(&format!("EIO=4&transport=websocket&sid={}", polling.sid));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut client = Client { ws };
    client.send("2probe").await;
    assert_eq!(client.read().await, Read::Text("3probe".into()));
    // No poll was pending: the server keeps what it sends until the upgrade completes.
    server
        .realtime
        .emitter()
        .to_all()
        .emit_json("news", &1)
        .await
        .unwrap();
    client.send("5").await;
    assert_eq!(client.event("news").await, json!(1));
    server.stop().await;
}

#[actix_web::test]
async fn shutdown_ends_a_pending_poll_with_a_close_packet() {
    let server = TestServer::start(config()).await;
    let (polling, _) = Polling::open(&server).await;
    assert_eq!(polling.post(r#"40{"token":"1/1"}"#).await.0, 200);
    polling.packets(1).await;
    let addr = polling.addr;
    let path = polling.path();
    let pending = tokio::spawn(async move { http(addr, "GET", &path, "").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.realtime.shutdown();
    assert_eq!(pending.await.unwrap(), (200, "1".to_owned()));
    server.stop().await;
}
