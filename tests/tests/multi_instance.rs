//! Scale-out: several Keel instances on one Redis behave, as a user sees them, like one server.
//!
//! Each test starts a private redis-server and two or three in-process apps ([`TestApp`]) on it.
//! They share what a deployment shares (the HS256 JWT key, the cookie key, the Redis URL) and
//! nothing else: each has its own HTTP server, its own realtime server and its own Redis adapter.
//! Socket.IO clients are the official `socket.io-client`, driven by the scenario scripts of
//! tests/js (one `driver` process per instance, since a driver talks to one URL); the harness
//! orders them with the scripts' sync lines, so no step waits on a fixed sleep.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

#[path = "support/scenarios.rs"]
mod scenarios;
mod support;

use std::time::Duration;

use keel_auth::{JwtAlgorithm, KeyConfig};
use keel_domain::UserId;
use keel_testkit::redis::RedisServer;
use keel_testkit::{ServerProcess, TestApp};
use reqwest::{Method, StatusCode};
use scenarios::Scenario;
use secrecy::SecretString;
use serde_json::{Value, json};
use server::config::Config;
use support::{
    HS_KID, HS_SECRET, LOGOUT, ME, PASSWORD, REFRESH, bearer, cookie_key, email, expect_401,
    expect_problem, login, login_raw, me, register, send, signup, signup_on_process, with_cookie,
};

/// How long a client may take to notice a revoked session (the contract: within one second).
const REVOCATION_DEADLINE_MS: u64 = 1000;

/// How long the harness waits for a scenario's sync line (node start-up plus a connect).
const SYNC_LIMIT: Duration = Duration::from_secs(30);

/// N instances on one private redis-server. The apps are dropped before the server.
struct Cluster {
    apps: Vec<TestApp>,
    _redis: RedisServer,
}

impl Cluster {
    /// Starts a redis-server and `n` apps on it with the shared keys, then `customize` applied
    /// to each app's configuration.
    async fn start(n: usize, customize: impl Fn(&mut Config)) -> Self {
        let redis = RedisServer::start();
        let url = redis.url();
        let mut apps = Vec::with_capacity(n);
        for _ in 0..n {
            let app = TestApp::spawn_with(|config| {
                config.redis.url = Some(SecretString::from(url.clone()));
                config.auth.jwt.algorithm = JwtAlgorithm::HS256;
                config.auth.jwt.keys = vec![KeyConfig::secret(HS_KID, HS_SECRET)];
                config.cookie.key = Some(SecretString::from(cookie_key()));
                customize(config);
            })
            .await;
            apps.push(app);
        }
        // Every instance is ready (its Redis answers) before the test begins.
        for app in &apps {
            let response = app.get("/health/ready").await;
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "instance {}: {body}", app.address);
        }
        Self {
            apps,
            _redis: redis,
        }
    }

    fn a(&self) -> &TestApp {
        &self.apps[0]
    }

    fn b(&self) -> &TestApp {
        &self.apps[1]
    }

    fn c(&self) -> &TestApp {
        &self.apps[2]
    }
}

/// The app's Socket.IO URL base (the client adds `/socket.io/`).
fn base(app: &TestApp) -> String {
    format!("http://{}", app.address)
}

/// A `driver` scenario against one instance.
fn driver(app: &TestApp, name: &str, spec: &Value) -> Scenario {
    Scenario::start(
        "driver",
        &[&base(app), "--name", name, "--steps", &spec.to_string()],
    )
}

/// The observation of the first driver step with this `op`.
fn step<'a>(result: &'a Value, op: &str) -> &'a Value {
    result["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["op"] == op))
        .unwrap_or_else(|| panic!("no {op} step in {result}"))
}

/// Login on A, /me on B (Bearer and cookie); logout on B refuses the session's token, refresh
/// token and cookie on A at once, and A's socket of that session is disconnected by the server
/// (`io server disconnect`, so the client does not reconnect) within a second. A socket of
/// another session of the same user, also on A, stays connected.
#[tokio::test]
async fn a_session_made_on_one_instance_works_on_another_and_logout_there_revokes_it_everywhere() {
    let cluster = Cluster::start(2, |_| {}).await;
    let (a, b) = (cluster.a(), cluster.b());

    let first = signup(a, &email("ada")).await;
    let response = me(b, &first.access).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "GET /me on B with A's token: {body}"
    );
    assert_eq!(body["user"]["id"], first.user_id.as_str(), "{body}");
    assert_eq!(body["session"]["id"], first.session_id.as_str(), "{body}");
    let response = send(with_cookie(b, Method::GET, ME, &first.cookie)).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "GET /me on B with A's cookie: {body}"
    );

    // A second session of the same user, made on B, keeps its socket on A.
    let second = login(b, &email("ada")).await;
    let spec = json!([
        {"op": "connect", "as": "revoked", "token": first.access, "transports": ["websocket"]},
        {"op": "connect", "as": "other", "token": second.access, "transports": ["websocket"]},
        {"op": "signal", "name": "connected", "ids": true},
        {"op": "waitDisconnect", "as": "revoked", "reason": "io server disconnect", "quietMs": 2000},
        {"op": "noEvent", "as": "other", "event": "disconnect", "forMs": 10},
        {"op": "emit", "as": "other", "event": "ping", "args": [], "expectAck": {"ok": true}},
    ]);
    let mut client = driver(a, "sockets-on-a", &spec);
    client.wait_signal("connected", SYNC_LIMIT).await;

    let response = send(bearer(b, Method::POST, LOGOUT, &first.access)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "logout on B");
    // At once on A: the access token, the cookie and the refresh token are refused.
    expect_401(
        me(a, &first.access).await,
        "A's token on A after logout on B",
    )
    .await;
    expect_401(
        send(with_cookie(a, Method::GET, ME, &first.cookie)).await,
        "the cookie on A after logout on B",
    )
    .await;
    expect_401(
        a.post_json(REFRESH, &json!({"refreshToken": first.refresh}))
            .await,
        "the refresh token on A after logout on B",
    )
    .await;
    // The other session is untouched, on both instances.
    for app in [a, b] {
        assert_eq!(me(app, &second.access).await.status(), StatusCode::OK);
    }

    let result = client.finish().await.ok();
    let disconnect = step(&result, "waitDisconnect");
    // Measured by the client from the signal, before the logout request was even sent.
    let since = disconnect["sinceSignalMs"].as_u64().unwrap();
    assert!(
        since < REVOCATION_DEADLINE_MS,
        "A's socket was disconnected {since} ms after the signal: {result}"
    );
    assert_eq!(disconnect["reason"], "io server disconnect", "{result}");
    assert_eq!(disconnect["active"], false, "{result}");
    assert_eq!(disconnect["reconnectAttempts"], 0, "{result}");
    assert_eq!(disconnect["reconnected"], false, "{result}");
}

/// A room message sent by a socket on A reaches the room's members on A, B and C exactly once
/// each, and never comes back to the sender.
#[tokio::test]
async fn a_room_message_from_one_instance_reaches_members_on_every_instance_exactly_once() {
    let cluster = Cluster::start(3, |_| {}).await;
    let (a, b, c) = (cluster.a(), cluster.b(), cluster.c());
    let room = "room:fanout";
    // Each user logs in where their socket goes, as behind a load balancer.
    let ada = signup(a, &email("ada")).await;
    let amy = signup(a, &email("amy")).await;
    let bob = signup(b, &email("bob")).await;
    let cy = signup(c, &email("cy")).await;
    let body = json!({"text": "hello, everyone", "n": 7});
    let expected = json!({"room": room, "from": ada.user_id, "body": body});

    // The receivers join first and say so; then the sender joins and sends.
    let receiver = |token: &str| {
        json!([
            {"op": "connect", "as": "r", "token": token, "transports": ["websocket"]},
            {"op": "emit", "as": "r", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
            {"op": "signal", "name": "joined"},
            {"op": "wait", "as": "r", "event": "message", "match": expected, "save": "message"},
            // A second copy (from the origin or from Redis) would be here by now.
            {"op": "noEvent", "as": "r", "event": "message", "forMs": 700},
        ])
    };
    let mut receivers = Vec::new();
    for (app, name, login) in [
        (a, "amy-on-a", &amy),
        (b, "bob-on-b", &bob),
        (c, "cy-on-c", &cy),
    ] {
        receivers.push((name, driver(app, name, &receiver(&login.access))));
    }
    for (_, scenario) in &mut receivers {
        scenario.wait_signal("joined", SYNC_LIMIT).await;
    }
    let sender = json!([
        {"op": "connect", "as": "s", "token": ada.access, "transports": ["websocket"]},
        {"op": "emit", "as": "s", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
        {"op": "emit", "as": "s", "event": "message", "args": [{"room": room, "body": body}],
         "expectAck": {"ok": true}, "save": "ack"},
        {"op": "noEvent", "as": "s", "event": "message", "forMs": 700},
    ]);
    let sent = driver(a, "ada-on-a", &sender).finish().await.ok();
    let sent_at = &sent["results"]["ack"]["sentAt"];
    for (name, scenario) in receivers {
        let result = scenario.finish().await.ok();
        let message = &result["results"]["message"];
        assert_eq!(message["from"], ada.user_id.as_str(), "{name}: {result}");
        assert_eq!(message["body"], body, "{name}: {result}");
        assert_eq!(&message["sentAt"], sent_at, "{name}: {result} vs {sent}");
    }
}

/// Server code on A emits to a user whose socket is on C: the user's socket gets it once; a
/// socket of another user (on B) gets nothing.
#[tokio::test]
async fn a_server_emit_to_a_user_on_one_instance_reaches_the_users_socket_on_another() {
    let cluster = Cluster::start(3, |_| {}).await;
    let (a, b, c) = (cluster.a(), cluster.b(), cluster.c());
    let ada = signup(c, &email("ada")).await;
    let bob = signup(b, &email("bob")).await;
    let notice = json!({"text": "from A", "n": 1});

    let on_c = json!([
        {"op": "connect", "as": "ada", "token": ada.access, "transports": ["websocket"]},
        {"op": "signal", "name": "ready"},
        {"op": "wait", "as": "ada", "event": "notice", "match": notice, "save": "notice"},
        {"op": "noEvent", "as": "ada", "event": "notice", "forMs": 700},
    ]);
    let on_b = json!([
        {"op": "connect", "as": "bob", "token": bob.access, "transports": ["websocket"]},
        {"op": "signal", "name": "ready"},
        {"op": "waitInput", "line": "emitted"},
        {"op": "noEvent", "as": "bob", "event": "notice", "forMs": 700},
    ]);
    let mut ada_on_c = driver(c, "ada-on-c", &on_c);
    let mut bob_on_b = driver(b, "bob-on-b", &on_b);
    ada_on_c.wait_signal("ready", SYNC_LIMIT).await;
    bob_on_b.wait_signal("ready", SYNC_LIMIT).await;

    let user: UserId = ada.user_id.parse().unwrap();
    a.emitter
        .as_ref()
        .expect("instance A has a realtime emitter")
        .to_user(user)
        .emit_json("notice", &notice)
        .await
        .unwrap();
    bob_on_b.send_line("emitted").await;

    let result = ada_on_c.finish().await.ok();
    assert_eq!(result["results"]["notice"], notice, "{result}");
    bob_on_b.finish().await.ok();
}

/// Socket connects per client IP count over every instance together: with a quota of 3, two
/// connects on A and one on B use it up, and the next one, on B, is refused with
/// `connect_error` code `rate_limited` (B alone has seen only one).
#[tokio::test]
async fn the_socket_connect_quota_counts_connects_made_on_every_instance() {
    let cluster = Cluster::start(2, |config| {
        config.rate_limit.quotas.socket_connect_ip.limit = 3;
        config.rate_limit.quotas.socket_connect_ip.window_seconds = 600;
    })
    .await;
    let (a, b) = (cluster.a(), cluster.b());
    let ada = signup(a, &email("ada")).await;
    let on_a = json!([
        {"op": "connect", "as": "one", "token": ada.access, "transports": ["websocket"]},
        {"op": "connect", "as": "two", "token": ada.access, "transports": ["websocket"]},
    ]);
    driver(a, "two-on-a", &on_a).finish().await.ok();
    let on_b = json!([
        {"op": "connect", "as": "three", "token": ada.access, "transports": ["websocket"]},
        {"op": "connect", "as": "four", "token": ada.access, "transports": ["websocket"],
         "expect": "connect_error", "match": {"data": {"code": "rate_limited"}}, "save": "refused"},
    ]);
    let result = driver(b, "two-on-b", &on_b).finish().await.ok();
    assert_eq!(
        result["results"]["refused"]["code"], "rate_limited",
        "{result}"
    );
}

/// The per-account login quota counts the failed attempts made on every instance together:
/// with a limit of 5, failures spread over A, B and C (no instance sees more than two) lock
/// the account against unknown devices from the sixth attempt on, on any instance, right
/// password or not.
#[tokio::test]
async fn the_login_limit_counts_attempts_made_on_every_instance() {
    const LIMIT: u32 = 5;
    let cluster = Cluster::start(3, |config| {
        config.rate_limit.quotas.login_ip.limit = 1000;
        config.rate_limit.quotas.login_email.limit = LIMIT;
        config.rate_limit.quotas.login_email.window_seconds = 300;
    })
    .await;
    let apps = &cluster.apps;
    register(cluster.a(), "ada@example.com").await;

    for attempt in 0..LIMIT as usize {
        let app = &apps[attempt % apps.len()];
        let response = login_raw(app, "ada@example.com", "a wrong guess").await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "attempt {} on instance {}: {body}",
            attempt + 1,
            attempt % apps.len()
        );
    }
    // The sixth attempt overall, on C (which has seen only one), is refused; so are the next
    // ones on A and B, with the right password too.
    for (index, password) in [(2, "a wrong guess"), (0, PASSWORD), (1, PASSWORD)] {
        let response = login_raw(&apps[index], "ADA@example.com", password).await;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (retry_after, policy) = (header("retry-after"), header("ratelimit-policy"));
        let body = expect_problem(
            response,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!("attempt over the limit on instance {index}"),
        )
        .await;
        let seconds: u64 = retry_after
            .unwrap_or_else(|| panic!("a 429 without retry-after: {body}"))
            .parse()
            .unwrap();
        assert!((1..=300).contains(&seconds), "retry-after {seconds}");
        let policy = policy.unwrap_or_default();
        assert!(
            policy.contains(&format!("\"login-email\";q={LIMIT};w=300")),
            "ratelimit-policy {policy:?}: {body}"
        );
    }
    // Another account is not limited.
    let response = login_raw(cluster.b(), "bob@example.com", "a wrong guess").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Presence crosses instances: a member on A sees a member joining on B (`presence` joined,
/// once) and leaving (`presence` left).
#[tokio::test]
async fn presence_shows_members_joining_and_leaving_on_another_instance() {
    let cluster = Cluster::start(2, |_| {}).await;
    let (a, b) = (cluster.a(), cluster.b());
    let room = "room:presence";
    let ada = signup(a, &email("ada")).await;
    let bob = signup(b, &email("bob")).await;
    let joined = json!({"room": room, "userId": bob.user_id, "state": "joined"});
    let left = json!({"room": room, "userId": bob.user_id, "state": "left"});

    let on_a = json!([
        {"op": "connect", "as": "ada", "token": ada.access, "transports": ["websocket"]},
        {"op": "emit", "as": "ada", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
        {"op": "signal", "name": "joined"},
        {"op": "wait", "as": "ada", "event": "presence", "match": joined, "save": "joined"},
        {"op": "noEvent", "as": "ada", "event": "presence", "match": joined, "forMs": 500},
        {"op": "signal", "name": "saw-joined"},
        {"op": "wait", "as": "ada", "event": "presence", "match": left, "save": "left"},
    ]);
    let mut ada_on_a = driver(a, "ada-on-a", &on_a);
    ada_on_a.wait_signal("joined", SYNC_LIMIT).await;

    let on_b = json!([
        {"op": "connect", "as": "bob", "token": bob.access, "transports": ["websocket"]},
        {"op": "emit", "as": "bob", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
        {"op": "signal", "name": "joined"},
        {"op": "waitInput", "line": "leave"},
        {"op": "emit", "as": "bob", "event": "leave", "args": [{"room": room}], "expectAck": {"ok": true}},
    ]);
    let mut bob_on_b = driver(b, "bob-on-b", &on_b);
    bob_on_b.wait_signal("joined", SYNC_LIMIT).await;
    // A has seen bob join (once) before bob leaves.
    ada_on_a.wait_signal("saw-joined", SYNC_LIMIT).await;
    bob_on_b.send_line("leave").await;
    bob_on_b.finish().await.ok();

    let result = ada_on_a.finish().await.ok();
    assert_eq!(result["results"]["joined"], joined, "{result}");
    assert_eq!(result["results"]["left"], left, "{result}");
}

/// The same topology from the real `server` binary: three processes on one redis-server,
/// configured only through the environment. A session made on A works on B; a socket on C joins
/// a room with a socket on A and gets its message once; logout on B disconnects the socket on C
/// within a second, for good.
#[tokio::test]
async fn three_server_processes_share_sessions_rooms_and_revocations() {
    let redis = RedisServer::start();
    let redis_url = redis.url();
    let keys = format!(r#"[{{kid="{HS_KID}",secret="{HS_SECRET}"}}]"#);
    let cookie = cookie_key();
    let env = [
        ("KEEL_REDIS__URL", redis_url.as_str()),
        ("KEEL_AUTH__JWT__ALGORITHM", "HS256"),
        ("KEEL_AUTH__JWT__KEYS", keys.as_str()),
        ("KEEL_COOKIE__KEY", cookie.as_str()),
        ("KEEL_SHUTDOWN__DRAIN_SECONDS", "0"),
        ("KEEL_SHUTDOWN__TIMEOUT_SECONDS", "5"),
    ];
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(ServerProcess::start(&env).await);
    }
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |i: usize, path: &str| servers[i].url(path);
    for i in 0..3 {
        let response = client.get(url(i, "/health/ready")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "process {i}");
    }

    // Sign up on A, use the token on B.
    let (ada, ada_id) = signup_on_process(&client, &servers[0], "ada").await;
    let (cy, _) = signup_on_process(&client, &servers[2], "cy").await;
    let response = client
        .get(url(1, ME))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "GET /me on B with A's token: {body}"
    );

    let room = "room:processes";
    let body = json!({"text": "over processes"});
    let on_c = json!([
        {"op": "connect", "as": "ada", "token": ada, "transports": ["websocket"]},
        {"op": "connect", "as": "cy", "token": cy, "transports": ["websocket"]},
        {"op": "emit", "as": "cy", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
        {"op": "signal", "name": "joined"},
        {"op": "wait", "as": "cy", "event": "message", "match": {"room": room, "from": ada_id, "body": body}},
        {"op": "noEvent", "as": "cy", "event": "message", "forMs": 700},
        {"op": "signal", "name": "connected"},
        {"op": "waitDisconnect", "as": "ada", "reason": "io server disconnect", "quietMs": 2000},
        {"op": "emit", "as": "cy", "event": "ping", "args": [], "expectAck": {"ok": true}},
    ]);
    let base_of = |i: usize| format!("http://{}", servers[i].address());
    let mut on_c = Scenario::start("driver", &[&base_of(2), "--steps", &on_c.to_string()]);
    on_c.wait_signal("joined", SYNC_LIMIT).await;
    let on_a = json!([
        {"op": "connect", "as": "ada", "token": ada, "transports": ["websocket"]},
        {"op": "emit", "as": "ada", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
        {"op": "emit", "as": "ada", "event": "message", "args": [{"room": room, "body": body}], "expectAck": {"ok": true}},
        {"op": "noEvent", "as": "ada", "event": "message", "forMs": 300},
        {"op": "disconnect", "as": "ada"},
    ]);
    Scenario::start("driver", &[&base_of(0), "--steps", &on_a.to_string()])
        .finish()
        .await
        .ok();
    on_c.wait_signal("connected", SYNC_LIMIT).await;
    let response = client
        .post(url(1, LOGOUT))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "logout on B");
    let response = client
        .get(url(0, ME))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "A's token on A after logout on B"
    );

    let result = on_c.finish().await.ok();
    let disconnect = step(&result, "waitDisconnect");
    let since = disconnect["sinceSignalMs"].as_u64().unwrap();
    assert!(
        since < REVOCATION_DEADLINE_MS,
        "the socket on C was disconnected {since} ms after the signal: {result}"
    );
    assert_eq!(disconnect["reconnectAttempts"], 0, "{result}");
    drop(servers);
    drop(redis);
}

/// Presence heals when an instance dies without a word: cy's socket lives on C, which is killed
/// with SIGKILL (no leave, no disconnect, no goodbye). A, which stops hearing C's heartbeats,
/// tells ada (on A) that cy left, and drops cy from the room's member list.
#[tokio::test]
async fn presence_forgets_the_members_of_an_instance_killed_without_goodbye() {
    let redis = RedisServer::start();
    let redis_url = redis.url();
    let keys = format!(r#"[{{kid="{HS_KID}",secret="{HS_SECRET}"}}]"#);
    let cookie = cookie_key();
    let env = [
        ("KEEL_REDIS__URL", redis_url.as_str()),
        ("KEEL_AUTH__JWT__ALGORITHM", "HS256"),
        ("KEEL_AUTH__JWT__KEYS", keys.as_str()),
        ("KEEL_COOKIE__KEY", cookie.as_str()),
    ];
    let a = ServerProcess::start(&env).await;
    let mut c = ServerProcess::start(&env).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (ada, ada_id) = signup_on_process(&client, &a, "ada").await;
    let (cy, cy_id) = signup_on_process(&client, &c, "cy").await;
    let room = "room:heal";
    let joined = json!({"room": room, "userId": cy_id, "state": "joined"});
    let left = json!({"room": room, "userId": cy_id, "state": "left"});
    // Heartbeats every 2 s, forgotten after 6 s: `left` comes within about 8 s of the kill.
    let on_a = json!([
        {"op": "connect", "as": "ada", "token": ada, "transports": ["websocket"]},
        {"op": "emit", "as": "ada", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
        {"op": "signal", "name": "joined"},
        {"op": "wait", "as": "ada", "event": "presence", "match": joined},
        {"op": "signal", "name": "saw-cy"},
        {"op": "wait", "as": "ada", "event": "presence", "match": left, "timeoutMs": 20000},
        {"op": "emit", "as": "ada", "event": "join", "args": [{"room": room}], "ack": true, "save": "after"},
    ]);
    let base_a = format!("http://{}", a.address());
    let mut on_a = Scenario::start("driver", &[&base_a, "--steps", &on_a.to_string()]);
    on_a.wait_signal("joined", SYNC_LIMIT).await;
    let on_c = json!([
        {"op": "connect", "as": "cy", "token": cy, "transports": ["websocket"]},
        {"op": "emit", "as": "cy", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
        {"op": "signal", "name": "joined"},
        {"op": "waitInput", "line": "never"},
    ]);
    let base_c = format!("http://{}", c.address());
    let mut on_c = Scenario::start("driver", &[&base_c, "--steps", &on_c.to_string()]);
    on_c.wait_signal("joined", SYNC_LIMIT).await;
    on_a.wait_signal("saw-cy", SYNC_LIMIT).await;
    c.signal(nix::sys::signal::Signal::SIGKILL);
    c.wait_exit(Duration::from_secs(10)).await;
    drop(on_c);

    let result = on_a.finish().await.ok();
    let mut members: Vec<String> =
        serde_json::from_value(result["results"]["after"]["members"].clone()).unwrap();
    members.sort();
    assert_eq!(members, vec![ada_id], "{result}");
}
