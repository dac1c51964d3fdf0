//! Redis paused (`CLIENT PAUSE <ms> ALL`) and frozen (`SIGSTOP`), on a private redis-server:
//!
//! - while paused, every Redis-bound request (login, `/me` by Bearer token, refresh, readiness)
//!   answers 503 — `dependency_unavailable` problem+json, readiness naming the failed Redis
//!   check — within a bound derived from the configured Redis timeouts, and `/health/live`
//!   stays 200; when the pause ends the same requests succeed again within seconds, with no
//!   restart of Keel;
//! - the shared pool neither deadlocks nor leaks: after bursts of 4 × `pool_size` concurrent
//!   requests during three pauses and a freeze, a burst of as many is served, all 200, and Redis
//!   sees no more of Keel's connections than the pool size plus the realtime subscriber's.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
#![allow(clippy::print_stderr, reason = "the measured timings are worth seeing")]

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use keel_testkit::TestApp;
use keel_testkit::redis::{RedisClient, RedisServer};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::*;
use tokio::time::Instant;

/// The app's Redis settings (`config.redis`), small so that the bounds below stay short.
const POOL_SIZE: usize = 4;
const CONNECT_TIMEOUT_MS: u64 = 300;
const RESPONSE_TIMEOUT_MS: u64 = 300;
/// Long enough that a burst of 4 × `POOL_SIZE` requests on a healthy Redis never waits this
/// long for a pooled connection, even on a loaded machine.
const WAIT_TIMEOUT_MS: u64 = 1_000;
const READINESS_TIMEOUT_MS: u64 = 300;
/// Slack on every bound for scheduling on a loaded two-core machine.
const MARGIN: Duration = Duration::from_secs(2);
/// "Service resumes within a few seconds": generous, the measured times are printed.
const RECOVER_WITHIN: Duration = Duration::from_secs(15);
/// Concurrent requests of a burst.
const BURST: usize = 4 * POOL_SIZE;

/// Connections Keel opens to Redis, read from the code: the one deadpool-redis pool that
/// sessions, accounts, the rate limiter, readiness and realtime publishing share
/// (`apps/server/src/startup.rs` builds it once with `max_size = pool_size`; it never holds
/// more), plus the realtime Redis adapter's dedicated subscriber connection
/// (`crates/realtime/src/redis_adapter.rs`, opened from its own `redis::Client`, one adapter
/// per app, at most one subscription open at a time). Nothing else connects: keel-storage and
/// keel-session only borrow from the pool.
const KEEL_CONNECTIONS: usize = POOL_SIZE + 1;

/// The longest one Redis call may take with this configuration (see
/// `keel_session::redis_pool`): the wait for a free pooled connection, one health-check `PING`
/// per idle pooled connection (each bounded by the response timeout; against a paused Redis
/// every one fails and is dropped), opening a new connection, and the command itself.
fn redis_call_bound() -> Duration {
    let idle_checks = u64::try_from(POOL_SIZE).unwrap() * RESPONSE_TIMEOUT_MS;
    Duration::from_millis(WAIT_TIMEOUT_MS + idle_checks + CONNECT_TIMEOUT_MS + RESPONSE_TIMEOUT_MS)
}

/// The bound on an answer that needs `calls` Redis calls in a row before it can answer.
fn answer_bound(calls: u32) -> Duration {
    redis_call_bound() * calls + MARGIN
}

/// `/health/ready` runs its checks with their own timeout.
fn readiness_bound() -> Duration {
    Duration::from_millis(READINESS_TIMEOUT_MS) + MARGIN
}

async fn app_on(redis: &RedisServer) -> TestApp {
    let url = redis.url();
    TestApp::spawn_with(|config| {
        config.redis.url = Some(SecretString::from(url));
        config.redis.pool_size = POOL_SIZE;
        config.redis.connect_timeout_ms = CONNECT_TIMEOUT_MS;
        config.redis.response_timeout_ms = RESPONSE_TIMEOUT_MS;
        config.redis.wait_timeout_ms = WAIT_TIMEOUT_MS;
        config.server.readiness_timeout_ms = READINESS_TIMEOUT_MS;
        // Longer than the pause and its recovery together, so that a retry of a refresh that
        // was answered 503 is always inside the grace (the default, 10 s, is a product choice
        // that this test's timing must not depend on).
        config.session.refresh_grace = Duration::from_secs(60);
        // Limits stay on (the shared limiter is Redis-bound too, and falls back to in-process
        // limits while Redis cannot answer), far above what these tests send.
        let limits = &mut config.rate_limit;
        limits.flood_guard.per_second = 100_000;
        limits.flood_guard.burst = 100_000;
        for quota in [
            &mut limits.quotas.login_ip,
            &mut limits.quotas.login_email,
            &mut limits.quotas.refresh_ip,
        ] {
            quota.limit = 100_000;
        }
    })
    .await
}

/// Sends `request`; returns the answer and how long it took. A minute without one is a hang.
fn login_request(app: &TestApp, email: &str) -> RequestBuilder {
    app.client
        .post(app.url(LOGIN))
        .json(&json!({"email": email, "password": PASSWORD}))
}

fn refresh_request(app: &TestApp, refresh_token: &str) -> RequestBuilder {
    app.client
        .post(app.url(REFRESH))
        .json(&json!({"refreshToken": refresh_token}))
}

/// Expects readiness 503 with the Redis check failed, within its bound.
async fn expect_unready(app: &TestApp) -> Duration {
    let (response, took) = timed(app.client.get(app.url("/health/ready")), "ready").await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "unavailable", "{body}");
    let bound = readiness_bound();
    assert!(
        took <= bound,
        "readiness answered after {took:?} (bound {bound:?})"
    );
    took
}

async fn expect_live(app: &TestApp) {
    let (response, took) = timed(app.client.get(app.url("/health/live")), "live").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(took <= MARGIN, "liveness answered after {took:?}");
}

/// Polls `attempt` until it yields a value, failing after `deadline`. Returns the value and the
/// moment it came.
async fn poll_until<T, F, Fut>(deadline: Instant, what: &str, mut attempt: F) -> (T, Instant)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    loop {
        match attempt().await {
            Ok(value) => return (value, Instant::now()),
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what} did not recover in time; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/me` answered 200 for `login`'s user and session.
async fn me_ok(app: &TestApp, login: &Login) -> Result<(), String> {
    let (response, _) = timed(bearer(app, Method::GET, ME, &login.access), "/me").await;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if status != StatusCode::OK {
        return Err(format!("{status} {body}"));
    }
    assert_eq!(body["user"]["id"], login.user_id.as_str(), "{body}");
    assert_eq!(body["session"]["id"], login.session_id.as_str(), "{body}");
    Ok(())
}

async fn ready_ok(app: &TestApp) -> Result<(), String> {
    let response = app.get("/health/ready").await;
    let status = response.status();
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!(
            "{status} {}",
            response.text().await.unwrap_or_default()
        ))
    }
}

/// Keel's connections as Redis sees them (the test's own are never open while asking).
#[derive(Debug, Clone, Copy)]
struct Connections {
    pooled: usize,
    subscribers: usize,
}

impl Connections {
    fn of(clients: &[RedisClient]) -> Self {
        let subscribers = clients.iter().filter(|c| c.subscriptions > 0).count();
        Connections {
            pooled: clients.len() - subscribers,
            subscribers,
        }
    }

    fn total(&self) -> usize {
        self.pooled + self.subscribers
    }
}

impl std::fmt::Display for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} pooled + {} subscriber)",
            self.total(),
            self.pooled,
            self.subscribers
        )
    }
}

/// Asks Redis until Keel holds at most [`KEEL_CONNECTIONS`] and its subscriber is back (exactly
/// one subscribed connection). Connections Keel dropped during the fault may take a moment to
/// close (redis-rs keeps a dropped connection's socket until Redis has answered the commands
/// already sent on it). Returns the first count seen and the settled one.
async fn settled_connections(redis: &RedisServer) -> (Connections, Connections) {
    let deadline = Instant::now() + RECOVER_WITHIN;
    let mut first = None;
    loop {
        let clients = redis.clients().unwrap();
        let seen = Connections::of(&clients);
        if seen.total() <= KEEL_CONNECTIONS && seen.pooled <= POOL_SIZE && seen.subscribers == 1 {
            return (first.unwrap_or(seen), seen);
        }
        assert!(
            Instant::now() < deadline,
            "Keel holds {seen} connections to Redis, more than its pool ({POOL_SIZE}) and one \
             subscriber, or no subscriber:\n{}",
            clients
                .iter()
                .map(|c| c.line.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        first.get_or_insert(seen);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_pause_fails_redis_bound_requests_within_the_timeouts_and_service_resumes() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;
    let ada = signup(&app, &email("ada")).await;
    let bob = signup(&app, &email("bob")).await;
    me_ok(&app, &ada).await.unwrap();
    ready_ok(&app).await.unwrap();

    // Login: the login-ip and login-email quotas (each falls back to in-process limits when
    // Redis cannot answer), then the account lookup, which cannot fall back. Refresh: the
    // refresh-ip quota, then the rotation. /me: the session check.
    let login_bound = answer_bound(3);
    let me_bound = answer_bound(1);
    let refresh_bound = answer_bound(2);
    // Everything is sent at once, so the pause outlasts the longest bound: every answer
    // measured below came while Redis was paused (a late one fails its bound first).
    let pause = login_bound.max(refresh_bound).max(readiness_bound()) + MARGIN;
    redis.client_pause(pause);
    let pause_ends = Instant::now() + pause;

    // Bob's refresh token goes out during the pause; see the end of the test.
    let (login, me, refresh, ready, ()) = tokio::join!(
        expect_unavailable(login_request(&app, &email("ada")), login_bound, "login"),
        expect_unavailable(bearer(&app, Method::GET, ME, &ada.access), me_bound, "/me"),
        expect_unavailable(
            refresh_request(&app, &bob.refresh),
            refresh_bound,
            "refresh"
        ),
        expect_unready(&app),
        expect_live(&app),
    );
    // Sequentially too, now that the pool holds connections stuck behind the pause.
    let me_again = expect_unavailable(
        bearer(&app, Method::GET, ME, &ada.access),
        me_bound,
        "/me again",
    )
    .await;
    let ready_again = expect_unready(&app).await;
    expect_live(&app).await;
    assert!(
        Instant::now() < pause_ends,
        "the checks outlasted the pause of {pause:?}: the machine is too slow for this test"
    );

    // CLIENT UNPAUSE would be held like every other command (Redis 7.0): the pause expires.
    tokio::time::sleep_until(pause_ends).await;
    let deadline = pause_ends + RECOVER_WITHIN;
    let ((), me_back) = poll_until(deadline, "/me", || me_ok(&app, &ada)).await;
    let ((), ready_back) = poll_until(deadline, "readiness", || ready_ok(&app)).await;
    let (again, login_back) = poll_until(deadline, "login", || async {
        let (response, _) = timed(login_request(&app, &email("ada")), "login").await;
        match response.status() {
            StatusCode::OK => Ok(read_login(response).await),
            status => Err(format!(
                "{status} {}",
                response.text().await.unwrap_or_default()
            )),
        }
    })
    .await;
    me_ok(&app, &again).await.unwrap();
    let (_, refresh_back) = poll_until(deadline, "refresh", || async {
        let (response, _) = timed(refresh_request(&app, &again.refresh), "refresh").await;
        match response.status() {
            StatusCode::OK => Ok(()),
            status => Err(format!(
                "{status} {}",
                response.text().await.unwrap_or_default()
            )),
        }
    })
    .await;

    eprintln!(
        "CLIENT PAUSE of {pause:?}: 503 after login {login:?} (bound {login_bound:?}), /me \
         {me:?} then {me_again:?} (bound {me_bound:?}), refresh {refresh:?} (bound \
         {refresh_bound:?}), readiness {ready:?} then {ready_again:?} (bound {:?}); after the \
         pause ended: /me 200 after {:?}, ready after {:?}, login after {:?}, refresh after {:?}",
        readiness_bound(),
        me_back - pause_ends,
        ready_back - pause_ends,
        login_back - pause_ends,
        refresh_back - pause_ends,
    );

    // A write that timed out is not undone: CLIENT PAUSE holds the commands it was sent and
    // runs them when the pause ends, unless their connection was closed first. So bob's
    // rotation may have happened although he was answered 503. Either way his retry with the
    // same refresh token is 200: an unspent token rotates, and a token spent by the held
    // rotation is inside the grace, which answers the successor that the rotation installed.
    // A retry after a 503 never logs the user out.
    let response = send(refresh_request(&app, &bob.refresh)).await;
    let retried = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(retried, StatusCode::OK, "bob's retried refresh: {body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let successor = body["refreshToken"].as_str().unwrap();
    let again = send(refresh_request(&app, successor)).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the successor rotates in turn"
    );
}

/// Sends [`BURST`] concurrent `/me` requests and expects every one to be 503
/// `dependency_unavailable` within the bound of one Redis call; returns the slowest answer.
async fn burst_unavailable(app: &TestApp, login: &Login) -> Duration {
    let bound = answer_bound(1);
    let answers = (0..BURST).map(|i| {
        let request = bearer(app, Method::GET, ME, &login.access);
        async move { expect_unavailable(request, bound, &format!("/me #{i}")).await }
    });
    join_all(answers).await.into_iter().max().unwrap()
}

/// Sends [`BURST`] concurrent `/me` requests and expects every one to be 200 for `login`'s
/// session, all within the bound of one Redis call; returns how long the burst took.
async fn burst_ok(app: &TestApp, login: &Login) -> Duration {
    let started = Instant::now();
    let answers = (0..BURST).map(|_| me_ok(app, login));
    let failed: Vec<String> = join_all(answers)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    let took = started.elapsed();
    assert!(
        failed.is_empty(),
        "{} of {BURST} failed: {failed:?}",
        failed.len()
    );
    let bound = answer_bound(1);
    assert!(
        took <= bound,
        "a burst of {BURST} took {took:?} (bound {bound:?})"
    );
    took
}

/// Polls until `/me` and readiness are 200 again; returns how long that took after `from`.
async fn recovery(app: &TestApp, login: &Login, from: Instant) -> Duration {
    let deadline = from + RECOVER_WITHIN;
    poll_until(deadline, "/me", || me_ok(app, login)).await;
    let ((), back) = poll_until(deadline, "readiness", || ready_ok(app)).await;
    back - from
}

#[tokio::test]
async fn the_pool_neither_deadlocks_nor_leaks_through_pauses_and_a_freeze_under_load() {
    let redis = RedisServer::start();
    let app = app_on(&redis).await;
    let ada = signup(&app, &email("ada")).await;
    let served = burst_ok(&app, &ada).await;
    let (_, before) = settled_connections(&redis).await;
    let mut report = vec![format!(
        "before any fault: a burst of {BURST} /me served in {served:?}; Keel holds {before} \
         connections (bound {KEEL_CONNECTIONS})"
    )];

    for cycle in 1..=3 {
        let pause = answer_bound(1) + MARGIN;
        redis.client_pause(pause);
        let pause_ends = Instant::now() + pause;
        let slowest = burst_unavailable(&app, &ada).await;
        expect_unready(&app).await;
        expect_live(&app).await;
        assert!(
            Instant::now() < pause_ends,
            "the burst outlasted the pause of {pause:?}: the machine is too slow for this test"
        );
        // CLIENT UNPAUSE would be held like every other command (Redis 7.0): the pause expires.
        tokio::time::sleep_until(pause_ends).await;
        let back = recovery(&app, &ada, pause_ends).await;
        let served = burst_ok(&app, &ada).await;
        let (first, settled) = settled_connections(&redis).await;
        report.push(format!(
            "CLIENT PAUSE #{cycle} ({pause:?}): {BURST} concurrent /me all 503, slowest after \
             {slowest:?} (bound {:?}); ready and /me 200 {back:?} after the pause ended; then \
             {BURST} concurrent /me all 200 in {served:?}; Keel holds {first} connections at \
             first, {settled} settled",
            answer_bound(1)
        ));
    }

    redis.pause();
    let slowest = burst_unavailable(&app, &ada).await;
    expect_unready(&app).await;
    expect_live(&app).await;
    redis.resume();
    let resumed = Instant::now();
    let back = recovery(&app, &ada, resumed).await;
    let served = burst_ok(&app, &ada).await;
    let (first, settled) = settled_connections(&redis).await;
    report.push(format!(
        "SIGSTOP: {BURST} concurrent /me all 503, slowest after {slowest:?} (bound {:?}); ready \
         and /me 200 {back:?} after SIGCONT; then {BURST} concurrent /me all 200 in {served:?}; \
         Keel holds {first} connections at first, {settled} settled",
        answer_bound(1)
    ));
    eprintln!("{}", report.join("\n"));
}
