//! Interop: the official `socket.io-client` (npm, pinned by tests/js/package-lock.json) against
//! Keel's realtime server, through the scenario scripts of tests/js (see its README).
//!
//! - `echo::*` run against the protocol fixture, `crates/realtime/examples/echo.rs`, as a child
//!   process (`target/<profile>/examples/echo`, which `cargo test --workspace` builds);
//! - `keel::*` run against the real Keel app: in-process ([`TestApp`]) with accounts made over
//!   HTTP, or the `server` binary ([`ServerProcess`]) when it has to be restarted.
//!
//! The first test that needs the client runs `npm ci` in tests/js when node_modules is missing.
//! Every wait is bounded: the scripts bound each of theirs (`--timeout`) and the whole run (a
//! watchdog), and the harness bounds each script and each server start again.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

#[path = "support/scenarios.rs"]
mod scenarios;
mod support;

use std::time::Duration;

use keel_domain::UserId;
use keel_testkit::redis::RedisServer;
use keel_testkit::{ServerProcess, TestApp};
use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use scenarios::{EchoServer, Scenario, run_ok};
use serde_json::{Value, json};
use support::{LOGOUT, bearer, email, send, signup};

/// How long a client may take to notice a revoked session (the contract: within one second).
const REVOCATION_DEADLINE_MS: u64 = 1000;

/// The observation of the driver step with this `op` (the first one).
fn step<'a>(result: &'a Value, op: &str) -> &'a Value {
    result["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["op"] == op))
        .unwrap_or_else(|| panic!("no {op} step in {result}"))
}

/// A binary summary of the `binary` scenario without its JS type (`kind`).
fn without_kind(value: &Value) -> Value {
    match value {
        Value::Array(items) => items.iter().map(without_kind).collect(),
        Value::Object(members) => members
            .iter()
            .filter(|(key, _)| *key != "kind")
            .map(|(key, v)| (key.clone(), without_kind(v)))
            .collect(),
        other => other.clone(),
    }
}

/// The driver's `--steps` argument.
fn steps(list: &Value) -> String {
    list.to_string()
}

// ---------------------------------------------------------------------------------------------
// Against the echo example: the wire protocol as the official client speaks it.

mod echo {
    use super::*;

    #[tokio::test]
    async fn websocket_connect_with_auth_receives_the_auth_event() {
        let echo = EchoServer::start(&[]).await;
        let url = echo.url();
        let result = run_ok(
            "connect-auth",
            &[&url, "--transports", "websocket", "--token", "abc"],
        )
        .await;
        assert_eq!(result["transport"], "websocket", "{result}");
        assert_eq!(result["auth"], json!({"token": "abc"}), "{result}");
        assert_eq!(result["sidDiffers"], true, "{result}");

        // Without an auth payload the server sees `{}`; over long-polling alone as well.
        let result = run_ok("connect-auth", &[&url, "--no-auth"]).await;
        assert_eq!(result["auth"], json!({}), "{result}");
        let result = run_ok(
            "connect-auth",
            &[&url, "--transports", "polling", "--token", "abc"],
        )
        .await;
        assert_eq!(result["transport"], "polling", "{result}");
        assert_eq!(result["auth"], json!({"token": "abc"}), "{result}");
    }

    #[tokio::test]
    async fn default_options_open_with_polling_then_upgrade_to_websocket() {
        let echo = EchoServer::start(&[]).await;
        let result = run_ok("upgrade", &[&echo.url()]).await;
        assert_eq!(result["openTransport"], "polling", "{result}");
        assert_eq!(result["upgradedTo"], "websocket", "{result}");
        assert_eq!(result["finalTransport"], "websocket", "{result}");
        assert_eq!(
            result["echo"],
            json!(["after-upgrade", {"n": 1}]),
            "{result}"
        );
    }

    #[tokio::test]
    async fn message_round_trip_over_each_transport_setup() {
        let echo = EchoServer::start(&[]).await;
        let url = echo.url();
        for transports in [
            &["--transports", "websocket"][..],
            &["--transports", "polling"],
            &[],
        ] {
            let mut args = vec![url.as_str()];
            args.extend_from_slice(transports);
            let result = run_ok("message", &args).await;
            assert_eq!(
                result["received"], result["sent"],
                "{transports:?}: {result}"
            );
        }
    }

    #[tokio::test]
    async fn binary_round_trip_over_each_transport() {
        let echo = EchoServer::start(&[]).await;
        let url = echo.url();
        for transport in ["websocket", "polling"] {
            let result = run_ok(
                "binary",
                &[
                    &url,
                    "--transports",
                    transport,
                    "--size",
                    "65536",
                    "--empty",
                ],
            )
            .await;
            assert_eq!(result["transport"], transport, "{result}");
            // Same bytes (length and digest); a Uint8Array may come back as a Buffer.
            assert_eq!(
                without_kind(&result["received"]),
                without_kind(&result["sent"]),
                "{transport}: {result}"
            );
            // Every byte value, a nested Uint8Array, a list, 64 KiB, and an empty buffer.
            assert_eq!(result["sent"][1]["length"], 256, "{result}");
            assert_eq!(result["sent"][3]["length"], 65536, "{result}");
            assert_eq!(result["sent"][4]["length"], 0, "{result}");
        }
    }

    #[tokio::test]
    async fn acks_with_json_and_binary_arguments_over_each_transport() {
        let echo = EchoServer::start(&[]).await;
        let url = echo.url();
        for transport in ["websocket", "polling"] {
            let result = run_ok("ack", &[&url, "--transports", transport]).await;
            assert_eq!(
                result["emitWithAck"]["ack"], result["emitWithAck"]["sent"],
                "{result}"
            );
            assert_eq!(
                result["callback"]["ack"], result["callback"]["sent"],
                "{result}"
            );
        }
    }

    #[tokio::test]
    async fn the_custom_namespace_connects_alone_and_multiplexed_with_the_main_one() {
        let echo = EchoServer::start(&[]).await;
        let url = echo.url();
        let result = run_ok("namespace", &[&url, "--nsp", "/custom", "--token", "abc"]).await;
        assert_eq!(result["nsp"], "/custom", "{result}");
        assert_eq!(result["auth"], json!({"token": "abc"}), "{result}");
        let result = run_ok("namespace", &[&url, "--token", "abc", "--multiplex"]).await;
        let sockets = result["sockets"].as_array().unwrap();
        assert_eq!(sockets.len(), 2, "{result}");
        assert_eq!(sockets[1]["nsp"], "/", "{result}");
        assert_eq!(sockets[1]["auth"], json!({"token": "abc"}), "{result}");
    }

    #[tokio::test]
    async fn an_unknown_namespace_is_refused_with_invalid_namespace() {
        let echo = EchoServer::start(&[]).await;
        let url = echo.url();
        for transports in [&[][..], &["--transports", "websocket"]] {
            let mut args = vec![url.as_str(), "--nsp", "/nope"];
            args.extend_from_slice(transports);
            let result = run_ok("bad-namespace", &args).await;
            assert_eq!(
                result["connectError"]["message"], "Invalid namespace",
                "{result}"
            );
            assert_eq!(result["active"], false, "{result}");
            assert_eq!(result["connected"], false, "{result}");
        }
    }

    /// The server is killed (SIGKILL) while the client is connected and started again on the
    /// same port: the client reconnects by itself and sends its CONNECT auth again.
    async fn reconnects_after_a_restart(transports: &[&str]) {
        let mut echo = EchoServer::start(&[]).await;
        let url = echo.url();
        let mut args = vec![url.as_str(), "--token", "abc", "--expect-auth"];
        args.extend_from_slice(transports);
        let mut client = Scenario::start_with_limit("reconnect", &args, Duration::from_secs(90));
        client
            .wait_signal("connected", Duration::from_secs(20))
            .await;
        echo.restart().await;
        let result = client.finish().await.ok();
        assert_eq!(result["connects"], 2, "{result}");
        // A killed server is "transport close" on a WebSocket and "transport error" on a poll
        // that fails; with default options the kill may land before the upgrade. Either way
        // it is not "io server disconnect", which would stop the client from reconnecting.
        let reason = result["disconnectReason"].as_str().unwrap_or_default();
        assert!(
            matches!(reason, "transport close" | "transport error"),
            "{result}"
        );
        assert_eq!(result["secondAuth"], json!({"token": "abc"}), "{result}");
        assert_ne!(result["firstId"], result["secondId"], "{result}");
    }

    #[tokio::test]
    async fn the_client_reconnects_by_itself_after_a_restart_over_websocket() {
        reconnects_after_a_restart(&["--transports", "websocket"]).await;
    }

    #[tokio::test]
    async fn the_client_reconnects_by_itself_after_a_restart_with_default_options() {
        reconnects_after_a_restart(&[]).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Against the real Keel app: auth, Keel's events, server emits, revocation, restarts.

mod keel {
    use super::*;

    /// The app's Socket.IO URL base (the client adds `/socket.io/`).
    fn base(app: &TestApp) -> String {
        format!("http://{}", app.address)
    }

    #[tokio::test]
    async fn a_token_connects_over_websocket() {
        let app = TestApp::spawn().await;
        let ada = signup(&app, &email("ada")).await;
        let spec = json!([
            {"op": "connect", "as": "a", "token": ada.access, "transports": ["websocket"]},
            {"op": "emit", "as": "a", "event": "ping", "args": [], "expectAck": {"ok": true}, "save": "ping"},
            {"op": "emit", "as": "a", "event": "nope", "args": [], "expectAck": {"ok": false, "error": {"code": "unknown_event"}}},
        ]);
        let result = run_ok("driver", &[&base(&app), "--steps", &steps(&spec)]).await;
        assert_eq!(
            step(&result, "connect")["transport"],
            "websocket",
            "{result}"
        );
        assert!(
            result["results"]["ping"]["serverTime"].is_string(),
            "{result}"
        );
    }

    #[tokio::test]
    async fn a_token_connects_with_default_options_then_upgrades() {
        let app = TestApp::spawn().await;
        let ada = signup(&app, &email("ada")).await;
        let result = run_ok(
            "upgrade",
            &[&base(&app), "--token", &ada.access, "--skip-echo"],
        )
        .await;
        assert_eq!(result["openTransport"], "polling", "{result}");
        assert_eq!(result["upgradedTo"], "websocket", "{result}");
        assert_eq!(result["finalTransport"], "websocket", "{result}");

        // Long-polling alone carries Keel's events too.
        let spec = json!([
            {"op": "connect", "as": "a", "token": ada.access, "transports": ["polling"]},
            {"op": "emit", "as": "a", "event": "ping", "args": [], "expectAck": {"ok": true}},
        ]);
        let result = run_ok("driver", &[&base(&app), "--steps", &steps(&spec)]).await;
        assert_eq!(step(&result, "connect")["transport"], "polling", "{result}");
    }

    #[tokio::test]
    async fn missing_or_bad_tokens_get_connect_error_unauthorized_with_a_code() {
        let app = TestApp::spawn().await;
        let url = base(&app);
        for transports in [&["--transports", "websocket"][..], &[]] {
            let mut args = vec![url.as_str(), "--expect-code", "missing_credentials"];
            args.extend_from_slice(transports);
            let result = run_ok("keel-connect-error", &args).await;
            assert_eq!(
                result["connectError"],
                json!({"message": "unauthorized", "code": "missing_credentials",
                       "data": {"code": "missing_credentials"}, "active": false}),
                "{result}"
            );
        }
        for bad in ["not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"] {
            let result = run_ok(
                "keel-connect-error",
                &[&url, "--token", bad, "--expect-code", "invalid_token"],
            )
            .await;
            assert_eq!(result["connectError"]["active"], false, "{result}");
        }
    }

    #[tokio::test]
    async fn the_session_cookie_connects_only_from_an_allowed_origin() {
        let app = TestApp::spawn_with(|config| {
            config.cors.allowed_origins = vec!["http://app.example".to_owned()];
        })
        .await;
        let ada = signup(&app, &email("ada")).await;
        let refused = json!({"message": "unauthorized", "data": {"code": "origin_not_allowed"}});
        let spec = json!([
            {"op": "connect", "as": "ok", "transports": ["websocket"],
             "extraHeaders": {"cookie": ada.cookie, "origin": "http://app.example"}},
            {"op": "emit", "as": "ok", "event": "ping", "args": [], "expectAck": {"ok": true}},
            {"op": "connect", "as": "foreign", "transports": ["websocket"],
             "extraHeaders": {"cookie": ada.cookie, "origin": "http://evil.example"},
             "expect": "connect_error", "match": refused},
            {"op": "connect", "as": "no-origin", "transports": ["websocket"],
             "extraHeaders": {"cookie": ada.cookie},
             "expect": "connect_error", "match": refused},
        ]);
        run_ok("driver", &[&base(&app), "--steps", &steps(&spec)]).await;
    }

    #[tokio::test]
    async fn two_clients_join_a_room_exchange_messages_and_acks_and_see_presence() {
        let app = TestApp::spawn().await;
        let ada = signup(&app, &email("ada")).await;
        let bob = signup(&app, &email("bob")).await;
        let url = base(&app);
        for transports in [&["--transports", "websocket"][..], &[]] {
            let mut args = vec![
                url.as_str(),
                "--token-a",
                &ada.access,
                "--token-b",
                &bob.access,
                "--user-a",
                &ada.user_id,
                "--user-b",
                &bob.user_id,
            ];
            args.extend_from_slice(transports);
            let result = run_ok("keel-rooms", &args).await;
            let r = &result["results"];
            // The join ack lists the room's members, the joiner included (a Keel extension).
            assert_eq!(
                r["joinA"],
                json!({"ok": true, "members": [ada.user_id]}),
                "{result}"
            );
            let mut members: Vec<String> =
                serde_json::from_value(r["joinB"]["members"].clone()).unwrap();
            members.sort();
            let mut both = vec![ada.user_id.clone(), bob.user_id.clone()];
            both.sort();
            assert_eq!(
                (&r["joinB"]["ok"], members),
                (&json!(true), both),
                "{result}"
            );
            assert_eq!(
                r["presenceJoined"],
                json!({"room": "room:interop", "userId": bob.user_id, "state": "joined"}),
                "{result}"
            );
            assert_eq!(r["messageAck"]["ok"], true, "{result}");
            assert_eq!(r["message"]["from"], ada.user_id.as_str(), "{result}");
            assert_eq!(
                r["message"]["sentAt"], r["messageAck"]["sentAt"],
                "{result}"
            );
            assert_eq!(
                r["joinUserRoom"]["error"]["code"], "room_not_allowed",
                "{result}"
            );
            assert_eq!(
                r["presenceLeft"],
                json!({"room": "room:interop", "userId": bob.user_id, "state": "left"}),
                "{result}"
            );
        }
    }

    #[tokio::test]
    async fn binary_bodies_reach_the_other_member_byte_for_byte() {
        let app = TestApp::spawn().await;
        let ada = signup(&app, &email("ada")).await;
        let bob = signup(&app, &email("bob")).await;
        let all_bytes: String = (0..=255_u8).map(|b| format!("{b:02x}")).collect();
        let body = json!({"label": "bytes", "data": {"$binary": all_bytes},
                          "more": [{"$binary": "00"}, {"$binary": ""}]});
        let room = "room:binary";
        let spec = json!([
            {"op": "connect", "as": "a", "token": ada.access, "transports": ["websocket"]},
            // b reads over long-polling: its binary comes as base64 payloads.
            {"op": "connect", "as": "b", "token": bob.access, "transports": ["polling"]},
            {"op": "emit", "as": "a", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
            {"op": "emit", "as": "b", "event": "join", "args": [{"room": room}], "expectAck": {"ok": true}},
            {"op": "emit", "as": "a", "event": "message", "args": [{"room": room, "body": body}], "expectAck": {"ok": true}},
            {"op": "wait", "as": "b", "event": "message", "match": {"room": room, "body": body, "from": ada.user_id}, "save": "atB"},
            {"op": "emit", "as": "b", "event": "message", "args": [{"room": room, "body": body}], "expectAck": {"ok": true}},
            {"op": "wait", "as": "a", "event": "message", "match": {"room": room, "body": body, "from": bob.user_id}, "save": "atA"},
        ]);
        let result = run_ok("driver", &[&base(&app), "--steps", &steps(&spec)]).await;
        assert_eq!(
            result["results"]["atB"]["body"]["data"]["length"], 256,
            "{result}"
        );
    }

    #[tokio::test]
    async fn a_server_emit_to_a_user_reaches_every_socket_of_that_user_only() {
        let app = TestApp::spawn().await;
        let ada = signup(&app, &email("ada")).await;
        let bob = signup(&app, &email("bob")).await;
        let notice = json!({"text": "hi", "n": 1});
        let spec = json!([
            {"op": "connect", "as": "a1", "token": ada.access, "transports": ["websocket"]},
            {"op": "connect", "as": "a2", "token": ada.access},
            {"op": "connect", "as": "b", "token": bob.access, "transports": ["websocket"]},
            {"op": "signal", "name": "ready", "ids": true},
            {"op": "wait", "as": "a1", "event": "notice", "match": notice, "save": "a1"},
            {"op": "wait", "as": "a2", "event": "notice", "match": notice, "save": "a2"},
            {"op": "noEvent", "as": "b", "event": "notice", "forMs": 300},
        ]);
        let mut client = Scenario::start("driver", &[&base(&app), "--steps", &steps(&spec)]);
        client.wait_signal("ready", Duration::from_secs(30)).await;
        let user: UserId = ada.user_id.parse().unwrap();
        app.emitter
            .as_ref()
            .expect("the app has a realtime emitter")
            .to_user(user)
            .emit_json("notice", &notice)
            .await
            .unwrap();
        let result = client.finish().await.ok();
        assert_eq!(result["results"]["a1"], notice, "{result}");
        assert_eq!(result["results"]["a2"], notice, "{result}");
    }

    /// Logging out over HTTP disconnects the session's socket (on `transport`) within a second
    /// with a Socket.IO DISCONNECT, so the client reports `io server disconnect` and does not
    /// reconnect; a socket of another session of the same user stays connected.
    async fn logout_disconnects(transport: &str) {
        let app = TestApp::spawn().await;
        let first = signup(&app, &email("ada")).await;
        let second = support::login(&app, &email("ada")).await;
        let spec = json!([
            {"op": "connect", "as": "revoked", "token": first.access, "transports": [transport]},
            {"op": "connect", "as": "other", "token": second.access, "transports": ["websocket"]},
            {"op": "signal", "name": "connected", "ids": true},
            {"op": "waitDisconnect", "as": "revoked", "reason": "io server disconnect", "quietMs": 2000, "save": "revoked"},
            {"op": "noEvent", "as": "other", "event": "disconnect", "forMs": 10},
            {"op": "emit", "as": "other", "event": "ping", "args": [], "expectAck": {"ok": true}},
        ]);
        let mut client = Scenario::start("driver", &[&base(&app), "--steps", &steps(&spec)]);
        client
            .wait_signal("connected", Duration::from_secs(30))
            .await;
        let response = send(bearer(&app, Method::POST, LOGOUT, &first.access)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let result = client.finish().await.ok();
        // Measured by the client from the signal, before the logout request was even sent.
        let disconnect = step(&result, "waitDisconnect");
        let since = disconnect["sinceSignalMs"].as_u64().unwrap();
        assert!(
            since < REVOCATION_DEADLINE_MS,
            "disconnected {since} ms after the signal: {result}"
        );
        assert_eq!(disconnect["active"], false, "{result}");
        assert_eq!(disconnect["reconnectAttempts"], 0, "{result}");
        assert_eq!(disconnect["reconnected"], false, "{result}");

        // The logged-out token no longer opens a socket: its session is gone.
        let result = run_ok(
            "keel-connect-error",
            &[
                &base(&app),
                "--token",
                &first.access,
                "--transports",
                transport,
                "--expect-code",
                "unauthorized",
            ],
        )
        .await;
        assert_eq!(result["connectError"]["active"], false, "{result}");
    }

    /// A password reset ends every session of the user, and with them every socket: both of
    /// the user's sockets (one per session, on either transport) get a DISCONNECT within a
    /// second and do not reconnect. The reset's token comes by mail, through a real SMTP server.
    #[tokio::test]
    async fn a_password_reset_disconnects_every_socket_of_the_user() {
        let sink = keel_testkit::smtp::SmtpSink::start();
        let url = sink.url();
        let app = TestApp::spawn_with(move |config| {
            config.mail.smtp_url = Some(secrecy::SecretString::from(url));
        })
        .await;
        let ada = email("ada");
        let first = signup(&app, &ada).await;
        let second = support::login(&app, &ada).await;
        let spec = json!([
            {"op": "connect", "as": "ws", "token": first.access, "transports": ["websocket"]},
            {"op": "connect", "as": "poll", "token": second.access, "transports": ["polling"]},
            {"op": "signal", "name": "connected", "ids": true},
            {"op": "waitDisconnect", "as": "ws", "reason": "io server disconnect", "quietMs": 1000, "save": "ws"},
            {"op": "waitDisconnect", "as": "poll", "reason": "io server disconnect", "quietMs": 1000, "save": "poll"},
        ]);
        let mut client = Scenario::start("driver", &[&base(&app), "--steps", &steps(&spec)]);
        client
            .wait_signal("connected", Duration::from_secs(30))
            .await;
        let asked = app
            .post_json("/api/v1/auth/password-reset", &json!({"email": ada}))
            .await;
        assert_eq!(asked.status(), StatusCode::ACCEPTED);
        let mail = keel_testkit::eventually("the reset mail", Duration::from_secs(10), || async {
            sink.received()
                .into_iter()
                .find(|mail| mail.text().contains("/reset-password?token="))
                .ok_or(())
        })
        .await;
        let text = mail.text();
        let start = text.find("?token=").unwrap() + "?token=".len();
        let token: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let done = app
            .post_json(
                "/api/v1/auth/password-reset/confirm",
                &json!({"token": token, "password": "a new and longer passphrase"}),
            )
            .await;
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
        let result = client.finish().await.ok();
        // The driver also checked that neither client tried to reconnect.
        for name in ["ws", "poll"] {
            let disconnect = &result["results"][name];
            assert_eq!(
                disconnect["reason"], "io server disconnect",
                "{name}: {result}"
            );
        }
    }

    #[tokio::test]
    async fn logout_disconnects_a_websocket_within_a_second_for_good() {
        logout_disconnects("websocket").await;
    }

    #[tokio::test]
    async fn logout_disconnects_a_long_polling_socket_within_a_second_for_good() {
        logout_disconnects("polling").await;
    }

    /// A free loopback port (free a moment ago).
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Registers and logs in over HTTP; returns the access token.
    async fn http_signup(base: &str, who: &str) -> String {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let credentials = json!({"email": email(who), "password": support::PASSWORD});
        let mut register = credentials.clone();
        register["displayName"] = json!("Tester");
        let response = client
            .post(format!("{base}{}", support::REGISTER))
            .json(&register)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let response = client
            .post(format!("{base}{}", support::LOGIN))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["accessToken"].as_str().unwrap().to_owned()
    }

    /// The `server` binary restarted on the same port, with sessions in Redis and a shared HS256
    /// key, so the client's token stays valid: a graceful stop (close 1001) and a crash
    /// (SIGKILL), each followed by a new process on the same port. The client reconnects by
    /// itself both times, with its CONNECT auth.
    #[tokio::test]
    async fn the_client_reconnects_by_itself_after_the_server_restarts() {
        let redis = RedisServer::start();
        let port = free_port().to_string();
        let redis_url = redis.url();
        let env = [
            ("KEEL_SERVER__PORT", port.as_str()),
            ("KEEL_REDIS__URL", redis_url.as_str()),
            ("KEEL_AUTH__JWT__ALGORITHM", "HS256"),
            (
                "KEEL_AUTH__JWT__KEYS",
                r#"[{kid="k1",secret="interop-hmac-secret-0123456789abcdef"}]"#,
            ),
            ("KEEL_SHUTDOWN__DRAIN_SECONDS", "0"),
            ("KEEL_SHUTDOWN__TIMEOUT_SECONDS", "5"),
        ];
        let mut server = ServerProcess::start(&env).await;
        let url = format!("http://{}", server.address());
        let token = http_signup(&url, "ada").await;

        for (signal, transports) in [
            (Signal::SIGTERM, &["--transports", "websocket"][..]),
            (Signal::SIGKILL, &[][..]),
        ] {
            let mut args = vec![url.as_str(), "--token", &token];
            args.extend_from_slice(transports);
            let mut client =
                Scenario::start_with_limit("reconnect", &args, Duration::from_secs(90));
            client
                .wait_signal("connected", Duration::from_secs(30))
                .await;
            server.signal(signal);
            let status = server.wait_exit(Duration::from_secs(15)).await;
            assert!(
                status.is_some(),
                "the server did not exit after {signal}:\n{}",
                server.output()
            );
            if signal == Signal::SIGTERM {
                assert!(
                    status.unwrap().success(),
                    "{status:?}:\n{}",
                    server.output()
                );
            }
            server = ServerProcess::start(&env).await;
            let result = client.finish().await.ok();
            assert_eq!(result["connects"], 2, "{signal}: {result}");
            if signal == Signal::SIGTERM {
                // The shutdown's WebSocket close 1001.
                assert_eq!(
                    result["disconnectReason"], "transport close",
                    "{signal}: {result}"
                );
            } else {
                // A killed server closes nothing: a WebSocket sees its TCP connection end
                // ("transport close"), a long-poll still in flight fails ("transport error"),
                // depending on whether the default transports had upgraded yet. Either way
                // the client stays active and reconnects, which is what this asserts.
                let reason = result["disconnectReason"].as_str().unwrap_or_default();
                assert!(
                    reason == "transport close" || reason == "transport error",
                    "{signal}: {result}"
                );
            }
            assert_ne!(result["firstId"], result["secondId"], "{result}");
        }
        drop(server);
    }
}
