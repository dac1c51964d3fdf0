//! The real `server` binary: graceful shutdown on signals, and logs that are structured and
//! never carry a secret.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::time::Duration;

use keel_testkit::ServerProcess;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn status_of(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|response| response.status().as_u16())
}

/// Polls `condition` every 20 ms until it holds; panics after `timeout`.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_finishes_in_flight_requests_and_exits_0() {
    let mut server = ServerProcess::start(&[
        ("KEEL_SHUTDOWN__DRAIN_SECONDS", "2"),
        ("KEEL_SHUTDOWN__TIMEOUT_SECONDS", "10"),
    ])
    .await;
    let address = server.address();
    assert_eq!(status_of(&server.url("/health/ready")).await, Some(200));

    // A request in flight: the head and half of the body are sent, the rest comes later.
    let body = r#"{"email":"inflight@example.com","password":"correct horse battery"}"#;
    let (first, rest) = body.split_at(20);
    let mut in_flight = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/register HTTP/1.1\r\nhost: keel\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{first}",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();

    server.signal(Signal::SIGTERM);
    let started = Instant::now();

    // During the drain: readiness says 503 while requests are still served.
    let ready_url = server.url("/health/ready");
    eventually(Duration::from_secs(2), "readiness reports 503", || async {
        status_of(&ready_url).await == Some(503)
    })
    .await;
    assert_eq!(
        status_of(&server.url("/health/live")).await,
        Some(200),
        "still serving"
    );

    // After the drain: new connections are refused.
    eventually(Duration::from_secs(6), "the listener closes", || async {
        TcpStream::connect(address).await.is_err()
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the listener stayed open for the drain"
    );

    // The in-flight request still completes normally.
    in_flight.write_all(rest.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("\"user\"") {
        let read = tokio::time::timeout(Duration::from_secs(10), in_flight.read(&mut buffer))
            .await
            .expect("the in-flight request is answered")
            .unwrap();
        assert!(
            read > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buffer[..read]);
    }
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    drop(in_flight);

    let status = server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the server exits in time");
    assert_eq!(status.code(), Some(0), "{}", server.output());
    let output = server.output();
    for phase in [
        "shutdown: draining",
        "shutdown: telling long-lived",
        "shutdown: listener closed",
        "shutdown: complete",
    ] {
        assert!(
            output.contains(phase),
            "phase `{phase}` is logged:\n{output}"
        );
    }
}

#[tokio::test]
async fn sigint_shuts_down_too() {
    let mut server = ServerProcess::start(&[]).await;
    server.signal(Signal::SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the server exits in time");
    assert_eq!(status.code(), Some(0), "{}", server.output());
}

#[tokio::test]
async fn logs_are_json_with_one_access_event_per_request_and_no_secrets() {
    const CANARY: &str = "canary-Pa55w0rd-7f3e";
    let mut server = ServerProcess::start(&[]).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .post(server.url("/api/v1/auth/register"))
        .header("x-request-id", "log-test-1")
        .json(&serde_json::json!({"email": "log@example.com", "password": CANARY}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let bad = client
        .post(server.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "nope", "password": CANARY}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);

    let line = server
        .wait_for_line(Duration::from_secs(5), |line| line.contains("log-test-1"))
        .await
        .expect("the access event is logged");
    let event: Value = serde_json::from_str(&line).expect("every log line is JSON");
    assert_eq!(event["method"], "POST");
    assert_eq!(event["route"], "/api/v1/auth/register");
    assert_eq!(event["status"], 201);
    assert!(event["latency_us"].is_u64());

    server.signal(Signal::SIGTERM);
    server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the server exits");
    let output = server.output();
    assert!(
        !output.contains(CANARY),
        "the password reached the logs:\n{output}"
    );

    for line in output.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
}

#[tokio::test]
async fn a_redis_password_never_reaches_the_logs_even_when_redis_fails() {
    const CANARY: &str = "canary-redis-9d1c";
    // Nothing listens on port 1: every Redis call fails, and its errors are logged.
    let url = format!("redis://:{CANARY}@127.0.0.1:1");
    let mut server = ServerProcess::start(&[("KEEL_REDIS__URL", url.as_str())]).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .post(server.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "log@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response.status(),
        503,
        "accounts live in Redis, which cannot answer"
    );
    assert_eq!(
        client
            .get(server.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    server.signal(Signal::SIGTERM);
    server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the server exits");
    let output = server.output();
    // The cause of the 503 is on the request's own access line, with its request id.
    assert!(
        output.lines().any(|line| line.contains(&request_id)
            && line.contains("\"cause\"")
            && line.contains("dependency_unavailable")),
        "{output}"
    );
    assert!(
        !output.contains(CANARY),
        "the Redis password reached the logs:\n{output}"
    );
}
