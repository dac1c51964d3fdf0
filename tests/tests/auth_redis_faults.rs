//! Authentication when the session store (a private redis-server) fails: it fails closed with
//! 503 `dependency_unavailable` within the configured Redis timeouts (never 401, never a hang,
//! never a 500), readiness says 503 while liveness stays 200, and Keel recovers by itself.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::time::Duration;

use keel_testkit::TestApp;
use keel_testkit::redis::RedisServer;
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use support::*;
use tokio::time::Instant;

/// Each Redis bound of the app under test. A request may wait for a pooled connection, connect
/// and send a command or two, so an answer must come within a few of these.
const REDIS_TIMEOUT_MS: u64 = 300;
/// What "answered within the configured timeout" means here: several Redis bounds plus slack
/// for a loaded test machine, far below anything a client would call a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

async fn app_on(redis: &RedisServer) -> TestApp {
    let url = redis.url();
    TestApp::spawn_with(|config| {
        config.redis.url = Some(SecretString::from(url));
        config.redis.connect_timeout_ms = REDIS_TIMEOUT_MS;
        config.redis.response_timeout_ms = REDIS_TIMEOUT_MS;
        config.redis.wait_timeout_ms = REDIS_TIMEOUT_MS;
        config.server.readiness_timeout_ms = REDIS_TIMEOUT_MS;
    })
    .await
}

async fn readiness(app: &TestApp) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let response = app.get("/health/ready").await;
    let elapsed = started.elapsed();
    (response.status(), response.json().await.unwrap(), elapsed)
}

async fn assert_unready_but_live(app: &TestApp) {
    let (status, body, elapsed) = readiness(app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "unavailable", "{body}");
    assert!(elapsed < ANSWER_WITHIN, "readiness took {elapsed:?}");
    assert_eq!(app.get("/health/live").await.status(), StatusCode::OK);
}

/// Polls until `GET /health/ready` is 200; panics after 10 s.
async fn wait_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body, _) = readiness(app).await;
        if status == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "readiness did not recover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every authenticated route, by Bearer token and by cookie, as requests to send.
fn authenticated_requests(app: &TestApp, login: &Login) -> Vec<(String, RequestBuilder)> {
    let token = login.access.as_str();
    let own = format!("{SESSIONS}/{}", login.session_id);
    vec![
        ("Bearer GET /me".into(), bearer(app, Method::GET, ME, token)),
        (
            "Bearer GET /sessions".into(),
            bearer(app, Method::GET, SESSIONS, token),
        ),
        (
            "cookie GET /me".into(),
            with_cookie(app, Method::GET, ME, &login.cookie),
        ),
        (
            "Bearer POST /logout".into(),
            bearer(app, Method::POST, LOGOUT, token),
        ),
        (
            "Bearer POST /logout-all".into(),
            bearer(app, Method::POST, LOGOUT_ALL, token),
        ),
        (
            "Bearer DELETE /sessions/{own}".into(),
            bearer(app, Method::DELETE, &own, token),
        ),
    ]
}

#[tokio::test]
async fn a_stopped_redis_fails_closed_and_an_empty_restart_ends_old_sessions_only() {
    let mut redis = RedisServer::start();
    let app = app_on(&redis).await;
    let ada = signup(&app, &email("ada")).await;
    assert_eq!(me_status(&app, &ada.access).await, StatusCode::OK);

    redis.stop();
    for (what, request) in authenticated_requests(&app, &ada) {
        expect_unavailable(request, ANSWER_WITHIN, &what).await;
    }
    // The refresh token may be perfectly good: a client must not be told it is not.
    let request = app
        .client
        .post(app.url(REFRESH))
        .json(&serde_json::json!({"refreshToken": ada.refresh}));
    expect_unavailable(request, ANSWER_WITHIN, "POST /refresh").await;
    // Right credentials, but no session can be created.
    let request = app
        .client
        .post(app.url(LOGIN))
        .json(&serde_json::json!({"email": email("ada"), "password": PASSWORD}));
    expect_unavailable(request, ANSWER_WITHIN, "POST /login").await;
    assert_unready_but_live(&app).await;

    // Redis comes back empty (no persistence): Keel reconnects by itself; the sessions (and,
    // since accounts live in Redis too, the accounts) it held are gone, so their credentials
    // are refused, and new accounts and logins work.
    redis.restart();
    wait_ready(&app).await;
    expect_401(me(&app, &ada.access).await, "old access token").await;
    expect_401(refresh(&app, &ada.refresh).await, "old refresh token").await;
    let cookie = send(with_cookie(&app, Method::GET, ME, &ada.cookie)).await;
    expect_401(cookie, "old cookie").await;

    let gone = login_raw(&app, &email("ada"), PASSWORD).await;
    assert_eq!(
        gone.status(),
        StatusCode::UNAUTHORIZED,
        "the account went with Redis"
    );
    let again = signup(&app, &email("ada")).await;
    assert_eq!(me_status(&app, &again.access).await, StatusCode::OK);
    let refreshed = refresh(&app, &again.refresh).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let response = send(bearer(&app, Method::POST, LOGOUT, &again.access)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_401(me(&app, &again.access).await, "after logout").await;
}

#[tokio::test]
async fn a_hung_redis_fails_closed_within_the_timeout_and_everything_works_when_it_answers() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;
    let ada = signup(&app, &email("ada")).await;
    let bob = signup(&app, &email("bob")).await;

    // SIGSTOP: Redis keeps its port and accepts connections but answers nothing. Only reads
    // are sent meanwhile: a write sent now would still be applied when Redis wakes up.
    redis.pause();
    let hung = [
        ("Bearer GET /me", bearer(&app, Method::GET, ME, &ada.access)),
        (
            "Bearer GET /sessions",
            bearer(&app, Method::GET, SESSIONS, &bob.access),
        ),
        (
            "cookie GET /me",
            with_cookie(&app, Method::GET, ME, &ada.cookie),
        ),
    ];
    for (what, request) in hung {
        expect_unavailable(request, ANSWER_WITHIN, what).await;
    }
    assert_unready_but_live(&app).await;

    // Redis answers again: no restart of Keel, and the old sessions are all there.
    redis.resume();
    wait_ready(&app).await;
    // Replies that arrived late must not be taken for answers to later requests: each caller
    // keeps seeing their own user.
    for _ in 0..5 {
        for user in [&ada, &bob] {
            let response = me(&app, &user.access).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["user"]["id"], user.user_id.as_str(), "{body}");
            assert_eq!(body["session"]["id"], user.session_id.as_str(), "{body}");
        }
    }
    let cookie = send(with_cookie(&app, Method::GET, ME, &ada.cookie)).await;
    assert_eq!(cookie.status(), StatusCode::OK);
    assert_eq!(refresh(&app, &ada.refresh).await.status(), StatusCode::OK);
    let response = send(bearer(&app, Method::POST, LOGOUT, &bob.access)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_401(me(&app, &bob.access).await, "bob after logout").await;
    let carl = signup(&app, &email("carl")).await;
    assert_eq!(me_status(&app, &carl.access).await, StatusCode::OK);
}

#[tokio::test]
async fn keel_started_while_redis_is_down_serves_logins_once_it_comes() {
    let mut redis = RedisServer::start();
    redis.stop();
    let app = app_on(&redis).await;
    // Accounts live in Redis: neither registering nor logging in can work yet, and both say
    // so with a 503 rather than a 4xx that would blame the client.
    let request = app.client.post(app.url(REGISTER)).json(
        &serde_json::json!({"email": email("ada"), "password": PASSWORD, "displayName": "Ada"}),
    );
    expect_unavailable(request, ANSWER_WITHIN, "POST /register with Redis down").await;
    let request = app
        .client
        .post(app.url(LOGIN))
        .json(&serde_json::json!({"email": email("ada"), "password": PASSWORD}));
    expect_unavailable(request, ANSWER_WITHIN, "POST /login with Redis down").await;
    assert_unready_but_live(&app).await;

    redis.restart();
    wait_ready(&app).await;
    let ada = signup(&app, &email("ada")).await;
    assert_eq!(me_status(&app, &ada.access).await, StatusCode::OK);
}
