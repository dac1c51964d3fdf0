//! Reuse of keel-auth and keel-session by another service: keel-auth's `verify_service` example
//! (a separate actix-web process that knows Keel only by its JWKS and its Redis) accepts the
//! access tokens that the real `server` binary issued, and refuses them as soon as Keel logs the
//! session out. Everything runs on a private redis-server.
//!
//! The example binary is built by `cargo test --workspace`; when testing this package alone,
//! build it first: `cargo build -p keel-auth --features actix --example verify_service`.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_auth::{JwtConfig, KeyRing};
use keel_testkit::ServerProcess;
use keel_testkit::redis::RedisServer;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

const PASSWORD: &str = "correct horse battery staple";
/// The Redis bounds of the example under test: a stopped or hung Redis must give 503 fast.
const REDIS_TIMEOUT_MS: &str = "300";
/// "At once": several Redis bounds plus slack for a loaded machine, far below a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// `target/<profile>/examples/verify_service`, next to this test binary's `deps`.
fn example_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join("examples").join("verify_service");
    assert!(
        binary.is_file(),
        "{} does not exist: run `cargo build -p keel-auth --features actix --example \
         verify_service` (or `cargo test --workspace`, which builds it) first",
        binary.display()
    );
    binary
}

/// The example service as a child process, killed when dropped.
struct VerifyService {
    child: Child,
    address: SocketAddr,
    output: Arc<Mutex<Vec<String>>>,
}

impl VerifyService {
    /// Starts it with these `VERIFY_*` variables and waits for its `listening on` line.
    async fn start(env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(example_binary())
            .env_remove("VERIFY_JWKS_FILE")
            .env("VERIFY_PORT", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (first_line, mut first_line_rx) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        collect(stdout, Arc::clone(&output), Some(first_line));
        collect(stderr, Arc::clone(&output), None);

        let line = tokio::time::timeout(Duration::from_secs(20), first_line_rx.recv())
            .await
            .ok()
            .flatten();
        let dump = || output.lock().unwrap().join("\n");
        let Some(line) = line else {
            let status = child.try_wait().ok().flatten();
            panic!(
                "the example did not print its address (exit: {status:?}); it printed:\n{}",
                dump()
            );
        };
        let address = line
            .strip_prefix("listening on ")
            .and_then(|address| address.trim().parse().ok())
            .unwrap_or_else(|| panic!("the first line is `listening on ADDRESS`, not {line:?}"));
        Self {
            child,
            address,
            output,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for VerifyService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line on a thread into `output`; the first line also goes to
/// `first_line`.
fn collect(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<Vec<String>>>,
    mut first_line: Option<mpsc::UnboundedSender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(sender) = first_line.take() {
                let _ = sender.send(line.clone());
            }
            output.lock().unwrap().push(line);
        }
    });
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

/// Registers `email` on Keel and logs in: `(access token, refresh token, user id, session id)`.
async fn sign_up(keel: &ServerProcess, email: &str) -> (String, String, String, String) {
    let response = client()
        .post(keel.url("/api/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "register");
    log_in(keel, email).await
}

async fn log_in(keel: &ServerProcess, email: &str) -> (String, String, String, String) {
    let response = client()
        .post(keel.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "login");
    let body: Value = response.json().await.unwrap();
    let field = |pointer: &str| body.pointer(pointer).unwrap().as_str().unwrap().to_owned();
    (
        field("/accessToken"),
        field("/refreshToken"),
        field("/user/id"),
        field("/session/id"),
    )
}

/// `GET /whoami` on the example, with `token` as the Bearer token if any; the status, the
/// `www-authenticate` header, the body and how long the answer took.
async fn whoami(
    service: &VerifyService,
    token: Option<&str>,
) -> (StatusCode, Option<String>, Value, Duration) {
    let mut request = client().get(service.url("/whoami"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .unwrap_or_else(|_| panic!("/whoami: no answer within 30 s\n{}", service.output()))
        .unwrap();
    let elapsed = started.elapsed();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, challenge, body, elapsed)
}

async fn whoami_status(service: &VerifyService, token: &str) -> StatusCode {
    whoami(service, Some(token)).await.0
}

#[tokio::test]
async fn another_service_verifies_keel_tokens_and_sees_logouts_at_once() {
    let mut redis = RedisServer::start();
    let redis_url = redis.url();
    // The real server, with its default ephemeral EdDSA key: the example knows it by its JWKS.
    let keel = ServerProcess::start(&[("KEEL_REDIS__URL", &redis_url)]).await;
    let (access, refresh, user_id, session_id) = sign_up(&keel, "reuse@example.com").await;

    let jwks_url = keel.url("/.well-known/jwks.json");
    let service = VerifyService::start(&[
        ("VERIFY_REDIS_URL", &redis_url),
        ("VERIFY_JWKS_URL", &jwks_url),
        ("VERIFY_REDIS_TIMEOUT_MS", REDIS_TIMEOUT_MS),
    ])
    .await;

    // Keel's token, verified by the other service with keel-auth and keel-session alone.
    let (status, _, body, _) = whoami(&service, Some(&access)).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", service.output());
    assert_eq!(body, json!({"userId": user_id, "sessionId": session_id}));

    // No token, garbage, Keel's refresh token, a token of another issuer and key: 401.
    let (status, challenge, _, _) = whoami(&service, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    let foreign = KeyRing::generate_ephemeral(&JwtConfig {
        issuer: "https://other-issuer.example".into(),
        ..JwtConfig::default()
    })
    .unwrap()
    .issue_access(
        serde_json::from_value(json!(user_id)).unwrap(),
        serde_json::from_value(json!(session_id)).unwrap(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap()
    .token;
    for (what, token) in [
        ("garbage", "garbage"),
        ("a JWT-shaped garbage", "eyJhbGciOiJub25lIn0.e30."),
        ("the refresh token", refresh.as_str()),
        ("another issuer's token", foreign.as_str()),
    ] {
        let (status, challenge, _, _) = whoami(&service, Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer error=\"invalid_token\""),
            "{what}"
        );
    }

    // Logout on Keel: the other service refuses the same token at once (no waiting for `exp`).
    let response = client()
        .post(keel.url("/api/v1/auth/logout"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, challenge, _, _) = whoami(&service, Some(&access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""));

    // A new login works there too.
    let (access, _, user_id, _) = log_in(&keel, "reuse@example.com").await;
    let (status, _, body, _) = whoami(&service, Some(&access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["userId"], user_id.as_str());

    // Redis hung, then stopped: 503 within the configured bounds, never 401 and never 200.
    redis.pause();
    let (status, _, _, elapsed) = whoami(&service, Some(&access)).await;
    redis.resume();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "Redis hung");
    assert!(
        elapsed < ANSWER_WITHIN,
        "Redis hung: answered after {elapsed:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while whoami_status(&service, &access).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "no recovery after Redis resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    redis.stop();
    let (status, _, _, elapsed) = whoami(&service, Some(&access)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "Redis stopped");
    assert!(
        elapsed < ANSWER_WITHIN,
        "Redis stopped: answered after {elapsed:?}"
    );

    // Redis back, but empty: the session is gone, so the token is refused (after recovery).
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = whoami_status(&service, &access).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "never allowed");
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
