//! Wire tests of the WebSocket transport: raw frames over a real socket to the server on
//! port 0.

mod common;

use std::time::Duration;

use common::{Read, TestServer, config};
use keel_realtime::RealtimeConfig;
use serde_json::{Value as Json, json};

#[actix_web::test]
async fn open_packet_has_exactly_the_five_keys() {
    let server = TestServer::start(RealtimeConfig {
        ping_interval_ms: 300,
        ping_timeout_ms: 200,
        ..config()
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url("EIO=4&transport=websocket"))
        .await
        .unwrap();
    let mut client = common::Client { ws };
    let open = client.text().await;
    let json: Json = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let mut keys: Vec<&str> = json
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
    assert_eq!(json["upgrades"], json!([]));
    assert_eq!(json["pingInterval"], 300);
    assert_eq!(json["pingTimeout"], 200);
    assert_eq!(json["maxPayload"], 1_000_000);
    let eio_sid = json["sid"].as_str().unwrap().to_owned();
    assert!(eio_sid.len() >= 20);

    client.send(r#"40{"token":"1/1"}"#).await;
    let sid = client.connected("/").await;
    assert_ne!(sid, eio_sid, "the Socket.IO id is never the Engine.IO sid");
    ws = client.ws;
    drop(ws);
    server.stop().await;
}

#[actix_web::test]
async fn default_timings_are_advertised() {
    let server = TestServer::start(config()).await;
    let (ws, _) = tokio_tungstenite::connect_async(server.url("EIO=4&transport=websocket"))
        .await
        .unwrap();
    let mut client = common::Client { ws };
    let open = client.text().await;
    let json: Json = serde_json::from_str(&open[1..]).unwrap();
    assert_eq!(json["pingInterval"], 25000);
    assert_eq!(json["pingTimeout"], 20000);
    assert_eq!(json["maxPayload"], 1_000_000);
    server.stop().await;
}

#[actix_web::test]
async fn handshake_errors_use_the_engineio_error_json() {
    let server = TestServer::start(config()).await;
    let cases = [
        (
            "/socket.io/?EIO=3&transport=websocket",
            5,
            "Unsupported protocol version",
        ),
        (
            "/socket.io/?transport=websocket",
            5,
            "Unsupported protocol version",
        ),
        (
            "/socket.io/?EIO=4&transport=carrier-pigeon",
            0,
            "Transport unknown",
        ),
        ("/socket.io/?EIO=4", 0, "Transport unknown"),
        (
            "/socket.io/?EIO=4&transport=websocket&sid=nope",
            1,
            "Session ID unknown",
        ),
        // A plain GET that is not a WebSocket upgrade.
        ("/socket.io/?EIO=4&transport=websocket", 3, "Bad request"),
    ];
    for (path, code, message) in cases {
        let (status, body) = server.http_get(path).await;
        assert_eq!(status, 400, "{path}");
        let body: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(body, json!({"code": code, "message": message}), "{path}");
    }
    server.stop().await;
}

#[actix_web::test]
async fn connect_event_and_ack_round_trips_in_a_custom_namespace() {
    let server = TestServer::start(config()).await;
    let mut client = server.client().await;
    client.send(r#"40/custom,{"token":"1/1","x":[1,2]}"#).await;
    client.connected("/custom").await;
    assert_eq!(
        client.text().await,
        r#"42/custom,["auth",{"token":"1/1","x":[1,2]}]"#
    );
    client
        .send(r#"42/custom,["message",1,"two",{"three":3}]"#)
        .await;
    assert_eq!(
        client.text().await,
        r#"42/custom,["message-back",1,"two",{"three":3}]"#
    );
    client
        .send(r#"42/custom,17["message-with-ack",1,"two"]"#)
        .await;
    assert_eq!(client.text().await, r#"43/custom,17[1,"two"]"#);
    // Leaving the namespace: further events there are ignored, the connection stays.
    client.send("41/custom,").await;
    client.send(r#"42/custom,["message",1]"#).await;
    client.silent(Duration::from_millis(200)).await;
    server.stop().await;
}

#[actix_web::test]
async fn binary_events_and_acks_round_trip() {
    let server = TestServer::start(config()).await;
    let mut client = server.client().await;
    client.send(r#"40/custom,{"token":"1/1"}"#).await;
    client.connected("/custom").await;
    client.text().await; // auth
    client
        .send(r#"452-/custom,["message",{"_placeholder":true,"num":0},{"a":{"_placeholder":true,"num":1}}]"#)
        .await;
    client.send_binary(&[1, 2, 3]).await;
    client.send_binary(&[]).await;
    assert_eq!(
        client.text().await,
        r#"452-/custom,["message-back",{"_placeholder":true,"num":0},{"a":{"_placeholder":true,"num":1}}]"#
    );
    assert_eq!(client.binary().await, [1, 2, 3]);
    assert_eq!(client.binary().await, Vec::<u8>::new());

    client
        .send(r#"451-/custom,9["message-with-ack","x",{"_placeholder":true,"num":0}]"#)
        .await;
    client.send_binary(&[9, 8]).await;
    assert_eq!(
        client.text().await,
        r#"461-/custom,9["x",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(client.binary().await, [9, 8]);
    server.stop().await;
}

#[actix_web::test]
async fn unknown_namespace_is_refused_and_the_connection_stays() {
    let server = TestServer::start(config()).await;
    let mut client = server.client().await;
    client.send("40/nope,").await;
    assert_eq!(
        client.text().await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    client.send(r#"40{"token":"1/1"}"#).await;
    client.connected("/").await;
    server.stop().await;
}

#[actix_web::test]
async fn auth_refusal_is_a_connect_error_with_the_code() {
    let server = TestServer::start(config()).await;
    let mut client = server.client().await;
    client.send(r#"40{"token":"nonsense"}"#).await;
    assert_eq!(
        client.text().await,
        r#"44{"message":"unauthorized","data":{"code":"invalid_token"}}"#
    );
    client.send(r#"40/custom,{"token":"nonsense"}"#).await;
    assert_eq!(
        client.text().await,
        r#"44/custom,{"message":"unauthorized","data":{"code":"invalid_token"}}"#
    );
    client.send("40").await;
    let text = client.text().await;
    let json: Json = serde_json::from_str(text.strip_prefix("44").unwrap()).unwrap();
    assert_eq!(json["data"]["code"], "missing_credentials");
    server.stop().await;
}

#[actix_web::test]
async fn server_pings_and_closes_when_the_pong_does_not_come() {
    let server = TestServer::start(RealtimeConfig {
        ping_interval_ms: 100,
        ping_timeout_ms: 150,
        ..config()
    })
    .await;
    let (mut client, _) = server.user_client(1, 1).await;
    // Answered pings keep it open.
    for _ in 0..3 {
        assert_eq!(client.read().await, Read::Text("2".into()));
        client.send("3").await;
    }
    assert_eq!(client.read().await, Read::Text("2".into()));
    let started = std::time::Instant::now();
    assert_eq!(client.read().await, Read::Close(Some(1008)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    server.stop().await;
}

#[actix_web::test]
async fn connect_timeout_closes_a_connection_that_never_connects() {
    let server = TestServer::start(RealtimeConfig {
        connect_timeout_ms: 200,
        ..config()
    })
    .await;
    let mut client = server.client().await;
    let started = std::time::Instant::now();
    assert_eq!(client.closed().await, Some(1008));
    assert!(started.elapsed() >= Duration::from_millis(150));

    // A connection that connected in time is not affected.
    let (mut connected, _) = server.user_client(1, 1).await;
    connected.silent(Duration::from_millis(400)).await;
    server.stop().await;
}

#[actix_web::test]
async fn a_ping_from_the_client_is_a_protocol_error() {
    let server = TestServer::start(config()).await;
    let (mut client, _) = server.user_client(1, 1).await;
    client.send("2").await;
    assert_eq!(client.closed().await, Some(1002));
    server.stop().await;
}

#[actix_web::test]
async fn websocket_pings_are_answered() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start(config()).await;
    let mut client = server.client().await;
    client
        .ws
        .send(Message::Ping(vec![7, 7].into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(common::WAIT, client.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(vec![7, 7].into()));
    server.stop().await;
}

#[actix_web::test]
async fn malformed_packets_close_only_their_own_connection() {
    let server = TestServer::start(RealtimeConfig {
        max_payload: 1000,
        ..config()
    })
    .await;
    let (mut bystander, _) = server.user_client(9, 9).await;
    let cases: [(&str, u16); 9] = [
        ("42[\"x\"", 1007),                      // not JSON
        ("42{\"a\":1}", 1002),                   // EVENT payload not an array
        ("49", 1002),                            // unknown Socket.IO type
        ("7", 1002),                             // unknown Engine.IO type
        ("43[]", 1002),                          // ACK without an id
        ("4299999999999999999999[\"a\"]", 1002), // ack id overflow
        ("45-[\"a\"]", 1002),                    // bad attachment count
        ("5", 1002),                             // upgrade on an open WebSocket
        ("6", 1002),                             // noop on an open WebSocket
    ];
    for (packet, code) in cases {
        let (mut client, _) = server.user_client(1, 1).await;
        client.send(packet).await;
        assert_eq!(client.closed().await, Some(code), "{packet}");
        let answer = bystander.call(1, "ping", json!({})).await;
        assert_eq!(answer["ok"], true, "bystander after {packet}");
    }
    // A frame over maxPayload: 1009.
    let (mut client, _) = server.user_client(1, 1).await;
    client
        .send(&format!(r#"42["ping","{}"]"#, "x".repeat(2000)))
        .await;
    assert_eq!(client.closed().await, Some(1009));
    // Too many attachments: 1008.
    let (mut client, _) = server.user_client(1, 1).await;
    client.send(r#"4511-["a"]"#).await;
    assert_eq!(client.closed().await, Some(1008));
    // A binary frame nobody announced.
    let (mut client, _) = server.user_client(1, 1).await;
    client.send_binary(&[1]).await;
    assert_eq!(client.closed().await, Some(1002));

    let answer = bystander.call(2, "ping", json!({})).await;
    assert_eq!(answer["ok"], true);
    server.stop().await;
}

#[actix_web::test]
async fn shutdown_closes_every_socket_with_1001_and_no_disconnect_packet() {
    let server = TestServer::start(config()).await;
    let (mut a, _) = server.user_client(1, 1).await;
    let mut b = server.client().await; // not even connected to a namespace
    let realtime = server.realtime.clone();
    realtime.shutdown();
    for client in [&mut a, &mut b] {
        match client.read().await {
            Read::Close(code) => assert_eq!(code, Some(1001)),
            other => panic!("expected close 1001 first (no 41), got {other:?}"),
        }
    }
    tokio::time::timeout(common::WAIT, realtime.closed())
        .await
        .expect("every connection ended");
    assert_eq!(realtime.node().socket_count(), 0);
    server.stop().await;
}
