//! Several realtime servers in this process, each with its own `RedisAdapter` (so each is a
//! separate instance), on a private redis-server: broadcasts, acks and session disconnects
//! reach every instance once, and flow again after Redis restarts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Client, Read, TestAuth, TestServer, WAIT, config, session, user};
use deadpool_redis::redis::{self, AsyncConnectionConfig};
use deadpool_redis::{Manager, Pool, Runtime};
use keel_realtime::socketio::Value;
use keel_realtime::{RealtimeServer, RedisAdapter, RedisAdapterConfig, SubscriptionState};
use keel_testkit::redis::RedisServer;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

/// The app's shared pool, with the bounded waits Keel uses.
fn pool(url: &str) -> Pool {
    let second = Some(Duration::from_secs(1));
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(second)
        .set_response_timeout(second);
    let manager = Manager::new_with_config(url, connection).expect("a Redis URL");
    Pool::builder(manager)
        .max_size(4)
        .wait_timeout(second)
        .create_timeout(second)
        .recycle_timeout(second)
        .runtime(Runtime::Tokio1)
        .build()
        .expect("a pool")
}

/// Short timings, so faults are noticed within the tests' patience.
fn adapter_config() -> RedisAdapterConfig {
    RedisAdapterConfig {
        ping_interval_ms: 200,
        connect_timeout_ms: 300,
        reconnect_min_ms: 20,
        reconnect_max_ms: 200,
        heartbeat_interval_ms: 100,
        peer_timeout_ms: 600,
        ..RedisAdapterConfig::default()
    }
}

struct Instance {
    server: TestServer,
    subscription: watch::Receiver<SubscriptionState>,
    resubscribes: Arc<AtomicUsize>,
}

impl Instance {
    async fn start(redis: &RedisServer) -> Self {
        let resubscribes = Arc::new(AtomicUsize::new(0));
        let counter = resubscribes.clone();
        let adapter = RedisAdapter::builder(
            pool(&redis.url()),
            redis::Client::open(redis.url()).expect("a Redis URL"),
        )
        .config(adapter_config())
        .on_resubscribe(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let subscription = adapter.subscription();
        let builder =
            RealtimeServer::builder(config(), Arc::new(TestAuth)).adapter(adapter.into_factory());
        let mut instance = Self {
            server: TestServer::start_with(builder).await,
            subscription,
            resubscribes,
        };
        instance.wait_until(|state| state.subscribed).await;
        instance
    }

    async fn wait_until(&mut self, condition: impl FnMut(&SubscriptionState) -> bool) {
        tokio::time::timeout(WAIT, self.subscription.wait_for(condition))
            .await
            .expect("subscription state not reached in time")
            .expect("the adapter is running");
    }

    async fn client(&self, u: u128, s: u128) -> Client {
        self.server.user_client(u, s).await.0
    }
}

/// Joins and returns the room's members as the join ack lists them, sorted.
async fn join(client: &mut Client, room: &str) -> Vec<String> {
    let ack = client.call(1, "join", json!({"room": room})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut members: Vec<String> = serde_json::from_value(ack["members"].clone()).expect("ids");
    members.sort();
    members
}

/// Sends an event on `/` and reads until its ack, failing on any `message` event meanwhile.
async fn call_without_messages(client: &mut Client, id: u64, event: &str, arg: Json) -> Json {
    client.send(&format!("42{id}{}", json!([event, arg]))).await;
    let prefix = format!("43{id}[");
    loop {
        let text = client.text().await;
        assert!(
            !text.starts_with(r#"42["message""#),
            "unexpected message: {text}"
        );
        if let Some(rest) = text.strip_prefix(&prefix) {
            let args: Json = serde_json::from_str(&format!("[{rest}")).expect("JSON ack");
            return args[0].clone();
        }
    }
}

#[actix_web::test]
async fn a_room_message_reaches_every_instance_once_and_not_the_sender() {
    let redis = RedisServer::start();
    let a = Instance::start(&redis).await;
    let b = Instance::start(&redis).await;
    let c = Instance::start(&redis).await;
    let mut alice = a.client(1, 1).await;
    let mut dave = a.client(4, 4).await;
    let mut bob = b.client(2, 2).await;
    let mut carol = c.client(3, 3).await;
    for client in [&mut alice, &mut dave, &mut bob, &mut carol] {
        join(client, "room:lobby").await;
    }

    for n in 1..=2 {
        let ack = call_without_messages(
            &mut alice,
            10 + n,
            "message",
            json!({"room": "room:lobby", "body": {"n": n}}),
        )
        .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    // Each member reads message 1 then message 2: a duplicate of 1 would come between.
    for client in [&mut dave, &mut bob, &mut carol] {
        for n in 1..=2 {
            let message = client.event("message").await;
            assert_eq!(message["body"], json!({"n": n}), "{message}");
            assert_eq!(message["from"], user(1).to_string());
        }
    }
    // The sender got neither (its next ack comes with no message before it).
    assert_eq!(
        call_without_messages(&mut alice, 20, "ping", json!({})).await["ok"],
        true
    );
    // Nor do the others get anything more before their own next answer.
    for client in [&mut dave, &mut bob, &mut carol] {
        assert_eq!(
            call_without_messages(client, 21, "ping", json!({})).await["ok"],
            true
        );
    }
    for instance in [a, b, c] {
        instance.server.stop().await;
    }
}

#[actix_web::test]
async fn an_emit_to_a_user_from_one_instance_reaches_the_users_socket_on_another() {
    let redis = RedisServer::start();
    let a = Instance::start(&redis).await;
    let c = Instance::start(&redis).await;
    let mut user7 = c.client(7, 70).await;
    let mut other = c.client(8, 80).await;
    let emitter = a.server.realtime.emitter();

    emitter
        .to_user(user(7))
        .emit_json("notice", &json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(user7.event("notice").await, json!({"text": "hi"}));

    // Binary attachments travel with the packet, encoded once.
    emitter
        .to_user(user(7))
        .emit(
            "blob",
            vec![json!({"n": 3}).into(), Value::from(vec![1, 2, 255])],
        )
        .await
        .unwrap();
    assert_eq!(
        user7.text().await,
        r#"451-["blob",{"n":3},{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(user7.binary().await, [1, 2, 255]);

    // Someone else got nothing: the answer to its ping is the first thing it reads.
    other.send(r#"421["ping",{}]"#).await;
    let text = other.text().await;
    assert!(text.starts_with("431["), "{text}");

    // A session and everyone, from the other instance too.
    emitter
        .to_session(session(80))
        .emit_json("to-session", &1)
        .await
        .unwrap();
    assert_eq!(other.event("to-session").await, 1);
    emitter.to_all().emit_json("to-all", &2).await.unwrap();
    assert_eq!(user7.event("to-all").await, 2);
    assert_eq!(other.event("to-all").await, 2);
    a.server.stop().await;
    c.server.stop().await;
}

#[actix_web::test]
async fn disconnect_session_from_one_instance_closes_the_sessions_socket_on_another() {
    let redis = RedisServer::start();
    let a = Instance::start(&redis).await;
    let b = Instance::start(&redis).await;
    let mut revoked = a.client(1, 5).await;
    let mut same_user_other_session = a.client(1, 6).await;
    b.server
        .realtime
        .emitter()
        .disconnect_session(session(5))
        .await
        .unwrap();
    assert_eq!(revoked.read().await, Read::Text("41".into()));
    assert_eq!(revoked.closed().await, Some(1000));
    assert_eq!(
        same_user_other_session.call(1, "ping", json!({})).await["ok"],
        true
    );
    a.server.stop().await;
    b.server.stop().await;
}

#[actix_web::test]
async fn acks_from_every_instance_are_collected() {
    let redis = RedisServer::start();
    let a = Instance::start(&redis).await;
    let b = Instance::start(&redis).await;
    let c = Instance::start(&redis).await;
    let mut local = a.client(1, 1).await;
    let mut on_b = b.client(2, 2).await;
    let mut on_c = c.client(3, 3).await;
    for client in [&mut local, &mut on_b, &mut on_c] {
        join(client, "room:q").await;
    }
    let emitter = a.server.realtime.emitter();
    let pending = tokio::spawn(async move {
        emitter
            .to_room("room:q")
            .emit_with_ack("question", vec![json!("?").into()], WAIT)
            .await
            .unwrap()
    });
    for (client, answer) in [(&mut local, "a"), (&mut on_b, "b"), (&mut on_c, "c")] {
        let text = loop {
            let text = client.text().await;
            if text.contains(r#"["question""#) {
                break text;
            }
        };
        let rest = text.strip_prefix("42").unwrap();
        let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
        assert_eq!(&rest[id.len()..], r#"["question","?"]"#);
        client.send(&format!(r#"43{id}["{answer}"]"#)).await;
    }
    // All three answered: the collection ends before the timeout.
    let replies = tokio::time::timeout(WAIT / 2, pending)
        .await
        .expect("collection did not end when everyone had answered")
        .unwrap();
    let mut answers: Vec<Value> = replies.replies.into_iter().flat_map(|r| r.args).collect();
    answers.sort_by_key(|v| v.as_json().map(ToString::to_string));
    assert_eq!(
        answers,
        vec![Value::from("a"), Value::from("b"), Value::from("c")]
    );
    assert_eq!(replies.missing, 0);
    for instance in [a, b, c] {
        instance.server.stop().await;
    }
}

#[actix_web::test]
async fn broadcasts_flow_again_after_redis_restarts() {
    let mut redis = RedisServer::start();
    let mut a = Instance::start(&redis).await;
    let mut b = Instance::start(&redis).await;
    let mut alice = a.client(1, 1).await;
    let mut bob = b.client(2, 2).await;
    join(&mut alice, "room:r").await;
    join(&mut bob, "room:r").await;

    redis.stop();
    a.wait_until(|state| !state.subscribed).await;
    b.wait_until(|state| !state.subscribed).await;
    redis.restart();
    a.wait_until(|state| state.subscribed && state.subscribes >= 2)
        .await;
    b.wait_until(|state| state.subscribed && state.subscribes >= 2)
        .await;
    assert!(a.resubscribes.load(Ordering::SeqCst) >= 1);
    assert!(b.resubscribes.load(Ordering::SeqCst) >= 1);

    let ack = alice
        .call(
            5,
            "message",
            json!({"room": "room:r", "body": "after restart"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(bob.event("message").await["body"], "after restart");
    a.server.stop().await;
    b.server.stop().await;
}

#[actix_web::test]
async fn a_frozen_redis_is_noticed_by_ping_and_the_subscription_comes_back() {
    let redis = RedisServer::start();
    let mut a = Instance::start(&redis).await;
    let mut b = Instance::start(&redis).await;
    let mut alice = a.client(1, 1).await;
    let mut bob = b.client(2, 2).await;
    join(&mut alice, "room:f").await;
    join(&mut bob, "room:f").await;

    redis.pause();
    // No connection closes: only the unanswered PING tells.
    a.wait_until(|state| !state.subscribed).await;
    b.wait_until(|state| !state.subscribed).await;
    redis.resume();
    a.wait_until(|state| state.subscribed && state.subscribes >= 2)
        .await;
    b.wait_until(|state| state.subscribed && state.subscribes >= 2)
        .await;

    let ack = alice
        .call(5, "message", json!({"room": "room:f", "body": "thawed"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(bob.event("message").await["body"], "thawed");
    a.server.stop().await;
    b.server.stop().await;
}

#[actix_web::test]
async fn room_members_span_instances_and_follow_leaves_and_disconnects() {
    let redis = RedisServer::start();
    let a = Instance::start(&redis).await;
    let b = Instance::start(&redis).await;
    let mut alice = a.client(1, 1).await;
    let mut bob = b.client(2, 2).await;
    let (alice_id, bob_id) = (user(1).to_string(), user(2).to_string());

    assert_eq!(join(&mut alice, "room:m").await, vec![alice_id.clone()]);
    // Alice's join reached B before bob's ack: her presence frame precedes his join there.
    wait_for_members(&b, "room:m", &[&alice_id]).await;
    let mut both = vec![alice_id.clone(), bob_id.clone()];
    both.sort();
    assert_eq!(join(&mut bob, "room:m").await, both);
    wait_for_members(&a, "room:m", &[&alice_id, &bob_id]).await;

    assert_eq!(alice.event("presence").await["state"], "joined");
    drop(bob);
    assert_eq!(alice.event("presence").await["state"], "left");
    wait_for_members(&a, "room:m", &[&alice_id]).await;
    a.server.stop().await;
    b.server.stop().await;
}

/// An instance that dies without a word (no leave, no disconnect, no goodbye) is forgotten
/// after `peer_timeout_ms`: its members drop out of the list and the room hears they left. The
/// dead instance is played by the test, speaking the adapter's documented wire format.
#[actix_web::test]
async fn a_silent_instance_is_forgotten_and_its_members_leave() {
    let redis = RedisServer::start();
    let a = Instance::start(&redis).await;
    let mut alice = a.client(1, 1).await;
    let alice_id = user(1).to_string();
    join(&mut alice, "room:m").await;

    let ghost_user = user(9).to_string();
    let mut redis_conn = redis::Client::open(redis.url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection");
    let frame = presence_frame([0xee; 16], "/", "room:m", "ghost-socket", &ghost_user, true);
    let listeners: usize = redis::cmd("PUBLISH")
        .arg("keel:rt:all")
        .arg(frame)
        .query_async(&mut redis_conn)
        .await
        .expect("published");
    assert_eq!(listeners, 1, "instance A listens");
    assert_eq!(
        alice.event("presence").await,
        json!({"room": "room:m", "userId": ghost_user, "state": "joined"})
    );
    wait_for_members(&a, "room:m", &[&alice_id, &ghost_user]).await;

    // The ghost never sends a heartbeat: within the peer timeout (600 ms) it is gone.
    let left = tokio::time::timeout(Duration::from_secs(5), alice.event("presence"))
        .await
        .expect("presence `left` within the peer timeout");
    assert_eq!(
        left,
        json!({"room": "room:m", "userId": ghost_user, "state": "left"})
    );
    assert_eq!(members(&a, "room:m").await, vec![alice_id]);
    a.server.stop().await;
}

/// The adapter's presence frame (kind 6): version 1, kind, 16-byte instance id, then namespace,
/// room, socket id and user id, each with a big-endian `u16` length, then 1 for joined.
fn presence_frame(
    origin: [u8; 16],
    namespace: &str,
    room: &str,
    socket: &str,
    user: &str,
    joined: bool,
) -> Vec<u8> {
    let mut frame = vec![1, 6];
    frame.extend_from_slice(&origin);
    for text in [namespace, room, socket, user] {
        frame.extend_from_slice(&u16::try_from(text.len()).expect("short").to_be_bytes());
        frame.extend_from_slice(text.as_bytes());
    }
    frame.push(u8::from(joined));
    frame
}

async fn members(instance: &Instance, room: &str) -> Vec<String> {
    let mut ids: Vec<String> = instance
        .server
        .realtime
        .emitter()
        .room_members(room)
        .await
        .expect("members")
        .iter()
        .map(ToString::to_string)
        .collect();
    ids.sort();
    ids
}

/// Waits until the instance lists exactly these members (presence travels asynchronously).
async fn wait_for_members(instance: &Instance, room: &str, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|id| (*id).to_owned()).collect();
    expected.sort();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = members(instance, room).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Room broadcasts travel on the room's own channel, which only the instances with a member in
/// the room listen to: C, with no member, is not among its subscribers, and an instance stops
/// listening when its last member leaves or disconnects.
#[actix_web::test]
async fn only_instances_with_members_listen_on_a_rooms_channel() {
    let redis = RedisServer::start();
    let a = Instance::start(&redis).await;
    let b = Instance::start(&redis).await;
    let c = Instance::start(&redis).await;
    let mut alice = a.client(1, 1).await;
    let mut bob = b.client(2, 2).await;
    let _carol = c.client(3, 3).await;
    let mut conn = redis::Client::open(redis.url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection");
    let channel = "keel:rt:r:/#room:shard";

    join(&mut alice, "room:shard").await;
    // The join ack comes after A's subscription: no waiting needed.
    assert_eq!(subscribers(&mut conn, channel).await, 1);
    join(&mut bob, "room:shard").await;
    assert_eq!(subscribers(&mut conn, channel).await, 2);
    let ack = alice
        .call(7, "message", json!({"room": "room:shard", "body": "hi"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(bob.event("message").await["body"], "hi");

    let ack = bob.call(8, "leave", json!({"room": "room:shard"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    wait_for_subscribers(&mut conn, channel, 1).await;
    drop(alice);
    wait_for_subscribers(&mut conn, channel, 0).await;
    for instance in [a, b, c] {
        instance.server.stop().await;
    }
}

async fn subscribers(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> u64 {
    let (_, count): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("PUBSUB NUMSUB");
    count
}

async fn wait_for_subscribers(
    conn: &mut redis::aio::MultiplexedConnection,
    channel: &str,
    expected: u64,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = subscribers(conn, channel).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} subscribers, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
