//! Keel's events on `/`, the Emitter, session disconnects and throttling, over real sockets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Read, TestAuth, TestServer, config, session, user};
use keel_realtime::socketio::Value;
use keel_realtime::{RealtimeConfig, RealtimeServer};
use serde_json::{Value as Json, json};

fn error_code(ack: &Json) -> &str {
    assert_eq!(ack["ok"], false, "{ack}");
    ack["error"]["code"].as_str().unwrap_or_default()
}

#[actix_web::test]
async fn ping_answers_with_server_time() {
    let server = TestServer::start(config()).await;
    let (mut client, _) = server.user_client(1, 1).await;
    let ack = client.call(5, "ping", json!({})).await;
    assert_eq!(ack["ok"], true);
    assert!(ack["serverTime"].as_str().unwrap().ends_with('Z'));
    let ack = client.call(6, "no-such-event", json!({})).await;
    assert_eq!(error_code(&ack), "unknown_event");
    server.stop().await;
}

#[actix_web::test]
async fn join_message_presence_and_leave_between_two_clients() {
    let server = TestServer::start(config()).await;
    let (mut alice, _) = server.user_client(1, 1).await;
    let (mut bob, _) = server.user_client(2, 2).await;
    let alice_id = user(1).to_string();
    let bob_id = user(2).to_string();

    // The join ack lists who is in the room now, the joiner included.
    assert_eq!(
        alice.call(1, "join", json!({"room": "room:lobby"})).await,
        json!({"ok": true, "members": [alice_id]})
    );
    let ack = bob.call(1, "join", json!({"room": "room:lobby"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(sorted(&ack["members"]), sorted(&json!([alice_id, bob_id])));
    assert_eq!(
        alice.event("presence").await,
        json!({"room": "room:lobby", "userId": bob_id, "state": "joined"})
    );

    let ack = alice
        .call(
            2,
            "message",
            json!({"room": "room:lobby", "body": {"text": "hi", "n": [1]}}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    let message = bob.event("message").await;
    assert_eq!(message["room"], "room:lobby");
    assert_eq!(message["from"], alice_id.as_str());
    assert_eq!(message["body"], json!({"text": "hi", "n": [1]}));
    assert!(message["sentAt"].as_str().unwrap().ends_with('Z'));
    // The sender does not get its own message.
    alice.silent(Duration::from_millis(200)).await;

    assert_eq!(
        bob.call(2, "leave", json!({"room": "room:lobby"})).await,
        json!({"ok": true})
    );
    assert_eq!(
        alice.event("presence").await,
        json!({"room": "room:lobby", "userId": bob_id, "state": "left"})
    );
    let ack = bob
        .call(3, "message", json!({"room": "room:lobby", "body": 1}))
        .await;
    assert_eq!(error_code(&ack), "not_in_room");

    // Rejoin, then disconnect: presence "left" again.
    bob.call(4, "join", json!({"room": "room:lobby"})).await;
    alice.event("presence").await;
    drop(bob);
    assert_eq!(
        alice.event("presence").await,
        json!({"room": "room:lobby", "userId": bob_id, "state": "left"})
    );
    server.stop().await;
}

#[actix_web::test]
async fn binary_room_messages_are_delivered() {
    let server = TestServer::start(config()).await;
    let (mut alice, _) = server.user_client(1, 1).await;
    let (mut bob, _) = server.user_client(2, 2).await;
    alice.call(1, "join", json!({"room": "room:files"})).await;
    bob.call(1, "join", json!({"room": "room:files"})).await;
    alice.event("presence").await;
    alice
        .send(r#"451-3["message",{"room":"room:files","body":{"_placeholder":true,"num":0}}]"#)
        .await;
    alice.send_binary(&[4, 5, 6]).await;
    assert_eq!(alice.ack(3).await["ok"], true);
    let text = bob.text().await;
    assert!(text.starts_with(r#"451-["message",{"#), "{text}");
    assert!(
        text.contains(r#""body":{"_placeholder":true,"num":0}"#),
        "{text}"
    );
    assert_eq!(bob.binary().await, [4, 5, 6]);
    server.stop().await;
}

#[actix_web::test]
async fn room_policy_refuses_reserved_and_malformed_rooms() {
    let server = TestServer::start(config()).await;
    let (mut client, _) = server.user_client(1, 1).await;
    let cases = [
        (
            json!({"room": format!("user:{}", user(1))}),
            "room_not_allowed",
        ),
        (
            json!({"room": format!("session:{}", session(1))}),
            "room_not_allowed",
        ),
        (json!({"room": "lobby"}), "room_not_allowed"),
        (json!({"room": "room:"}), "room_not_allowed"),
        (
            json!({"room": format!("room:{}", "x".repeat(65))}),
            "room_not_allowed",
        ),
        (json!({"room": "room:a b"}), "room_not_allowed"),
        (json!({"name": "room:a"}), "invalid_payload"),
        (json!("room:a"), "invalid_payload"),
    ];
    for (id, (arg, code)) in cases.into_iter().enumerate() {
        let ack = client.call(id as u64, "join", arg.clone()).await;
        assert_eq!(error_code(&ack), code, "{arg}");
    }
    let ack = client
        .call(99, "leave", json!({"room": format!("user:{}", user(1))}))
        .await;
    assert_eq!(error_code(&ack), "not_in_room");
    let ack = client
        .call(
            100,
            "message",
            json!({"room": format!("user:{}", user(1)), "body": 1}),
        )
        .await;
    assert_eq!(error_code(&ack), "not_in_room");
    server.stop().await;
}

#[actix_web::test]
async fn emitter_reaches_users_sessions_rooms_and_everyone() {
    let server = TestServer::start(config()).await;
    let (mut a1, _) = server.user_client(1, 1).await;
    let (mut a2, _) = server.user_client(1, 2).await;
    let (mut b, _) = server.user_client(2, 3).await;
    let emitter = server.realtime.emitter();

    emitter
        .to_user(user(1))
        .emit_json("notice", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(a1.event("notice").await, json!({"n": 1}));
    assert_eq!(a2.event("notice").await, json!({"n": 1}));

    emitter
        .to_session(session(2))
        .emit_json("notice", &json!({"n": 2}))
        .await
        .unwrap();
    assert_eq!(a2.event("notice").await, json!({"n": 2}));

    emitter
        .to_all()
        .emit(
            "notice",
            vec![json!({"n": 3}).into(), Value::from(vec![1u8, 2])],
        )
        .await
        .unwrap();
    for client in [&mut a1, &mut a2, &mut b] {
        let text = client.text().await;
        assert_eq!(
            text,
            r#"451-["notice",{"n":3},{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(client.binary().await, [1, 2]);
    }
    // Nothing else reached anyone (user 2 got only the broadcast).
    b.silent(Duration::from_millis(100)).await;
    a1.silent(Duration::from_millis(100)).await;
    server.stop().await;
}

#[actix_web::test]
async fn server_to_client_acks_with_timeout() {
    let server = TestServer::start(config()).await;
    let (mut a, _) = server.user_client(1, 1).await;
    let (mut b, _) = server.user_client(2, 2).await;
    let emitter = server.realtime.emitter();

    let pending = tokio::spawn({
        let emitter = emitter.clone();
        async move {
            emitter
                .to_all()
                .emit_with_ack(
                    "question",
                    vec![json!("?").into()],
                    Duration::from_millis(500),
                )
                .await
                .unwrap()
        }
    });
    // `a` answers, `b` does not.
    let text = a.text().await;
    let rest = text.strip_prefix("42").unwrap();
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(&rest[id.len()..], r#"["question","?"]"#);
    a.send(&format!(r#"43{id}["yes"]"#)).await;
    let text = b.text().await;
    assert!(
        text.starts_with(&format!("42{id}[")),
        "one id for all recipients: {text}"
    );

    let replies = pending.await.unwrap();
    assert_eq!(replies.replies.len(), 1);
    assert_eq!(replies.replies[0].args, vec![Value::from("yes")]);
    assert_eq!(replies.missing, 1);
    // A late ack is ignored, not a protocol error.
    b.send(&format!(r#"43{id}["late"]"#)).await;
    assert_eq!(b.call(9, "ping", json!({})).await["ok"], true);
    server.stop().await;
}

#[actix_web::test]
async fn disconnect_session_sends_41_and_closes_only_that_session() {
    let server = TestServer::start(config()).await;
    let (mut revoked, _) = server.user_client(1, 1).await;
    let (mut other, _) = server.user_client(1, 2).await;
    server
        .realtime
        .emitter()
        .disconnect_session(session(1))
        .await
        .unwrap();
    assert_eq!(revoked.read().await, Read::Text("41".into()));
    assert_eq!(revoked.closed().await, Some(1000));
    assert_eq!(other.call(1, "ping", json!({})).await["ok"], true);
    server.stop().await;
}

#[actix_web::test]
async fn events_over_the_rate_are_refused_then_a_flood_is_disconnected() {
    let server = TestServer::start(RealtimeConfig {
        events_per_socket_per_second: 5,
        flood_disconnect_after: 20,
        ..config()
    })
    .await;
    let (mut client, _) = server.user_client(1, 1).await;
    for id in 0..5 {
        assert_eq!(client.call(id, "ping", json!({})).await["ok"], true);
    }
    let ack = client.call(5, "ping", json!({})).await;
    assert_eq!(error_code(&ack), "rate_limited");
    for id in 6..40 {
        client.send(&format!(r#"42{id}["ping",{{}}]"#)).await;
    }
    assert_eq!(client.closed().await, Some(1008));
    server.stop().await;
}

#[actix_web::test]
async fn sockets_per_user_are_limited() {
    let server = TestServer::start(RealtimeConfig {
        max_sockets_per_user: 2,
        ..config()
    })
    .await;
    let (_a, _) = server.user_client(1, 1).await;
    let (b, _) = server.user_client(1, 1).await;
    let mut c = server.client().await;
    c.send(r#"40{"token":"1/1"}"#).await;
    assert_eq!(
        c.text().await,
        r#"44{"message":"rate_limited","data":{"code":"too_many_sockets"}}"#
    );
    // Another user is not affected; a closed socket frees its slot.
    server.user_client(2, 2).await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send(r#"40{"token":"1/1"}"#).await;
    c.connected("/").await;
    server.stop().await;
}

#[actix_web::test]
async fn new_connections_per_ip_are_limited() {
    let server = TestServer::start(RealtimeConfig {
        connections_per_ip_per_second: 3,
        ..config()
    })
    .await;
    let mut refused = 0;
    for _ in 0..6 {
        let result =
            tokio_tungstenite::connect_async(server.url("EIO=4&transport=websocket")).await;
        if let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = result {
            assert_eq!(response.status(), 429);
            refused += 1;
        }
    }
    // Windows are whole seconds, so the six may straddle two of them.
    assert!(refused >= 1, "{refused}");
    server.stop().await;
}

#[actix_web::test]
async fn a_slow_reader_is_disconnected_and_others_keep_receiving() {
    let server = TestServer::start(RealtimeConfig {
        outbound_queue: 8,
        ..config()
    })
    .await;
    let (mut slow, _) = server.user_client(1, 1).await;
    let (mut fast, _) = server.user_client(2, 2).await;
    assert_eq!(server.realtime.node().socket_count(), 2);

    let payload = "x".repeat(64 * 1024);
    let emitter = server.realtime.emitter();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = tokio::spawn({
        let received = received.clone();
        async move {
            loop {
                let text = fast.text().await;
                if text.contains("\"done\"") {
                    return fast;
                }
                received.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let mut sent = 0usize;
    // The slow client reads nothing: its socket buffers fill, then its queue, then it is
    // dropped. The broadcaster waits for the fast client only, so that one never lags by
    // more than a few packets whatever the machine's load.
    while sent < 5000 && server.realtime.node().socket_count() == 2 {
        while sent - received.load(std::sync::atomic::Ordering::SeqCst) > 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        emitter.to_all().emit_json("flood", &payload).await.unwrap();
        sent += 1;
    }
    assert_eq!(
        server.realtime.node().socket_count(),
        1,
        "slow reader dropped after {sent}"
    );
    emitter.to_all().emit_json("done", &1).await.unwrap();
    let mut fast = reader.await.unwrap();
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), sent);
    assert_eq!(fast.call(1, "ping", json!({})).await["ok"], true);

    // The slow client, reading at last, finds its connection ended.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read().await {
                Read::Close(_) | Read::Ended => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow connection was closed");
    server.stop().await;
}

#[actix_web::test]
async fn server_can_be_built_with_a_shutdown_token() {
    let token = tokio_util::sync::CancellationToken::new();
    let builder = RealtimeServer::builder(config(), Arc::new(TestAuth)).shutdown_token(&token);
    let server = TestServer::start_with(builder).await;
    let (mut client, _) = server.user_client(1, 1).await;
    token.cancel();
    assert_eq!(client.closed().await, Some(1001));
    let (status, _) = server
        .http_get("/socket.io/?EIO=4&transport=websocket")
        .await;
    assert_eq!(status, 503);
    server.stop().await;
}

fn sorted(list: &Json) -> Vec<String> {
    let mut items: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect();
    items.sort();
    items
}
