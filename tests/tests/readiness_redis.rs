//! Readiness follows Redis: ready while it answers and the realtime adapter holds its
//! subscription, 503 (within the check timeout) while it does not, ready again when it returns,
//! with no restart of Keel. Liveness never depends on it.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::time::Duration;

use keel_testkit::TestApp;
use keel_testkit::redis::RedisServer;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let response = app.get("/health/ready").await;
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn readiness_tracks_redis_and_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = TestApp::spawn_with(|config| {
        config.redis.url = Some(SecretString::from(url));
        config.server.readiness_timeout_ms = 500;
    })
    .await;

    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "ok");
    assert!(body["checks"]["redis"]["latencyMs"].is_u64());
    assert_eq!(body["checks"]["realtime"]["status"], "ok", "{body}");

    redis.stop();
    let asked = Instant::now();
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["redis"]["status"], "unavailable");
    // A stable word, never a library's error text.
    let reason = body["checks"]["redis"]["reason"].as_str();
    assert!(matches!(reason, Some("unreachable" | "timeout")), "{body}");
    assert!(body["checks"]["redis"].get("error").is_none(), "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "answered within the check timeout"
    );
    // The adapter notices the closed subscription by itself; readiness then names it too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&app).await.1["checks"]["realtime"]["status"] != "unavailable" {
        assert!(
            Instant::now() < deadline,
            "the lost subscription never showed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = ready(&app).await;
        if status == StatusCode::OK {
            assert_eq!(body["checks"]["realtime"]["status"], "ok", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness did not recover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_server_starts_unready_when_redis_is_down_at_start() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let app = TestApp::spawn_with(|config| config.redis.url = Some(SecretString::from(url))).await;
    assert_eq!(ready(&app).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&app).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
