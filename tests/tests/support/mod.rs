//! Helpers shared by the auth end-to-end tests: an app on either backend (in memory, or on a
//! private redis-server owned by the test), and a client's view of the auth routes.

#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::ops::Deref;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_testkit::TestApp;
use keel_testkit::postgres::{PostgresServer, TestDatabase};
use keel_testkit::redis::RedisServer;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use server::config::Config;

pub const REGISTER: &str = "/api/v1/auth/register";
pub const LOGIN: &str = "/api/v1/auth/login";
pub const REFRESH: &str = "/api/v1/auth/refresh";
pub const LOGOUT: &str = "/api/v1/auth/logout";
pub const LOGOUT_ALL: &str = "/api/v1/auth/logout-all";
pub const ME: &str = "/api/v1/auth/me";
pub const SESSIONS: &str = "/api/v1/auth/sessions";
pub const JWKS: &str = "/.well-known/jwks.json";

pub const PASSWORD: &str = "correct horse battery staple";
/// The session cookie's name in development over plain http (the test profile).
pub const COOKIE_NAME: &str = "keel_session";
pub const USER_AGENT: &str = "keel-e2e/1.0";

/// Runs each listed `async fn name(backend: Backend)` once per backend, as `memory::name`,
/// `redis::name`, `postgres::name` and `postgres_redis::name`.
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($($test:ident),+ $(,)?) => {
        on_every_backend!(@backend memory, Memory; $($test),+);
        on_every_backend!(@backend redis, Redis; $($test),+);
        on_every_backend!(@backend postgres, Postgres; $($test),+);
        on_every_backend!(@backend postgres_redis, PostgresRedis; $($test),+);
    };
    (@backend $module:ident, $backend:ident; $($test:ident),+) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::$backend).await;
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_every_backend;

/// Where the app keeps its accounts and sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Nothing configured: everything in memory.
    Memory,
    /// Redis only: accounts, sessions and quotas on a private redis-server.
    Redis,
    /// PostgreSQL only: accounts and sessions in a database of the test's own.
    Postgres,
    /// Both: accounts in PostgreSQL (with snapshots in Redis), sessions and quotas on Redis.
    PostgresRedis,
}

impl Backend {
    fn has_redis(self) -> bool {
        matches!(self, Self::Redis | Self::PostgresRedis)
    }

    fn has_postgres(self) -> bool {
        matches!(self, Self::Postgres | Self::PostgresRedis)
    }
}

/// An app of one test, with the private redis-server and database it uses (if any). The app is
/// dropped first.
pub struct Keel {
    pub app: TestApp,
    pub redis: Option<RedisServer>,
    /// The test's database on the binary's PostgreSQL server.
    pub database: Option<TestDatabase>,
}

impl Keel {
    /// The app with test defaults on `backend`, then `customize` applied.
    pub async fn spawn(backend: Backend, customize: impl FnOnce(&mut Config)) -> Self {
        let redis = backend.has_redis().then(RedisServer::start);
        let database = backend
            .has_postgres()
            .then(|| PostgresServer::shared().database());
        let url = redis.as_ref().map(RedisServer::url);
        let database_url = database.as_ref().map(|db| db.url.clone());
        let app = TestApp::spawn_with(|config| {
            if let Some(url) = url {
                config.redis.url = Some(SecretString::from(url));
            }
            if let Some(url) = database_url {
                config.database.url = Some(SecretString::from(url));
            }
            customize(config);
        })
        .await;
        Self {
            app,
            redis,
            database,
        }
    }
}

impl Deref for Keel {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// Reads a problem+json answer, checking what every error must carry; `www-authenticate: Bearer`
/// on every 401. Returns the status, the headers and the body.
pub async fn problem(response: Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    assert_eq!(
        headers
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("application/problem+json"),
        "every error is problem+json ({status}): {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("problem JSON");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(
        body["requestId"].as_str(),
        headers["x-request-id"].to_str().ok(),
        "{body}"
    );
    let code = body["code"].as_str().expect("a code");
    assert!(
        body["type"].as_str().expect("a type").ends_with(code),
        "{body}"
    );
    if status == StatusCode::UNAUTHORIZED {
        let challenge = headers
            .get("www-authenticate")
            .unwrap_or_else(|| panic!("a 401 without www-authenticate: {body}"))
            .to_str()
            .expect("ASCII");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    } else {
        assert!(status.is_client_error() || status.is_server_error());
    }
    (status, headers, body)
}

/// Asserts a 401 problem and returns its code.
pub async fn expect_401(response: Response, what: &str) -> String {
    let status = response.status();
    let (status_seen, _, body) = problem(response).await;
    assert_eq!(
        status_seen,
        StatusCode::UNAUTHORIZED,
        "{what}: {status} {body}"
    );
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// Asserts a problem with `status` and `code`.
pub async fn expect_problem(
    response: Response,
    status: StatusCode,
    code: &str,
    what: &str,
) -> Value {
    let (seen, _, body) = problem(response).await;
    assert_eq!(
        (seen, body["code"].as_str()),
        (status, Some(code)),
        "{what}: {body}"
    );
    body
}

/// Sends `request`, failing the test on a transport error or when no answer comes within a
/// minute (a hang); returns the answer and how long it took.
pub async fn timed(request: RequestBuilder, what: &str) -> (Response, std::time::Duration) {
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(std::time::Duration::from_secs(60), request.send())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within a minute (a hang)"))
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    (response, started.elapsed())
}

/// Expects 503 `dependency_unavailable` problem+json within `bound`; returns the time taken.
pub async fn expect_unavailable(
    request: RequestBuilder,
    bound: std::time::Duration,
    what: &str,
) -> std::time::Duration {
    let (response, took) = timed(request, what).await;
    expect_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
        what,
    )
    .await;
    assert!(
        took <= bound,
        "{what}: answered after {took:?} (bound {bound:?})"
    );
    took
}

/// A successful login as the client sees it.
#[derive(Debug, Clone)]
pub struct Login {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
    pub session_id: String,
    /// `name=value` of the session cookie.
    pub cookie: String,
    /// The double-submit CSRF token handed to the client, if the response carried one.
    pub csrf: Option<String>,
    pub body: Value,
    pub headers: HeaderMap,
}

pub fn email(name: &str) -> String {
    format!("{name}@example.com")
}

/// Registers `email` with [`PASSWORD`]; returns the `user`.
pub async fn register(app: &TestApp, email: &str) -> Value {
    let response = app
        .post_json(
            REGISTER,
            &json!({"email": email, "password": PASSWORD, "displayName": "Tester"}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, StatusCode::CREATED, "register {email}: {body}");
    body["user"].clone()
}

/// POST /login, as-is.
pub async fn login_raw(app: &TestApp, email: &str, password: &str) -> Response {
    app.client
        .post(app.url(LOGIN))
        .header("user-agent", USER_AGENT)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login answered")
}

/// Logs in with [`PASSWORD`] and expects 200.
pub async fn login(app: &TestApp, email: &str) -> Login {
    read_login(login_raw(app, email, PASSWORD).await).await
}

/// Registers then logs in.
pub async fn signup(app: &TestApp, email: &str) -> Login {
    register(app, email).await;
    login(app, email).await
}

pub async fn read_login(response: Response) -> Login {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    assert_eq!(status, StatusCode::OK, "login: {text}");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    let cookie = session_cookie(&headers).expect("login sets the session cookie");
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| body["csrfToken"].as_str().map(str::to_owned));
    Login {
        access: body["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned(),
        refresh: body["refreshToken"]
            .as_str()
            .expect("refreshToken")
            .to_owned(),
        user_id: body["user"]["id"].as_str().expect("user.id").to_owned(),
        session_id: body["session"]["id"]
            .as_str()
            .expect("session.id")
            .to_owned(),
        cookie,
        csrf,
        body,
        headers,
    }
}

/// `name=value` of the session cookie set by `headers`, if any (a non-empty value).
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    set_cookie(headers, COOKIE_NAME)
        .map(|line| line.split(';').next().unwrap_or_default().trim().to_owned())
        .filter(|pair| pair.len() > COOKIE_NAME.len() + 1)
}

/// The whole `set-cookie` line for cookie `name`, if any.
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.trim_start().starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// A request with `Authorization: Bearer <token>`.
pub fn bearer(app: &TestApp, method: Method, path: &str, token: &str) -> RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("authorization", format!("Bearer {token}"))
}

/// A request carrying only the session cookie.
pub fn with_cookie(app: &TestApp, method: Method, path: &str, cookie: &str) -> RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("cookie", cookie)
}

pub async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("the request is answered")
}

/// GET /me with a Bearer token.
pub async fn me(app: &TestApp, token: &str) -> Response {
    send(bearer(app, Method::GET, ME, token)).await
}

/// The status of GET /me with a Bearer token.
pub async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    me(app, token).await.status()
}

/// POST /refresh.
pub async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.post_json(REFRESH, &json!({"refreshToken": refresh_token}))
        .await
}

/// The JSON of a JWT's part `index` (0 header, 1 claims).
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a JWT part");
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The body without `requestId`, to compare two answers.
pub fn without_request_id(mut body: Value) -> Value {
    if let Some(object) = body.as_object_mut() {
        object.remove("requestId");
    }
    body
}

/// The JWT key that every instance of a multi-instance test shares (HS256, so a token signed by
/// one verifies on all).
pub const HS_SECRET: &str = "multi-instance-hs256-secret-0123456789-abcdefghij";
pub const HS_KID: &str = "multi-hs";

/// The cookie key that every instance of a multi-instance test shares: base64 of 64 bytes.
pub fn cookie_key() -> String {
    let bytes: Vec<u8> = (0..64_u8)
        .map(|b| b.wrapping_mul(37).wrapping_add(11))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The environment that gives server processes the shared keys ([`HS_SECRET`], [`cookie_key`])
/// and a short shutdown, for tests that restart them or run several.
pub fn shared_keys_env() -> Vec<(String, String)> {
    vec![
        ("KEEL_AUTH__JWT__ALGORITHM".into(), "HS256".into()),
        (
            "KEEL_AUTH__JWT__KEYS".into(),
            format!(r#"[{{kid="{HS_KID}",secret="{HS_SECRET}"}}]"#),
        ),
        ("KEEL_COOKIE__KEY".into(), cookie_key()),
        ("KEEL_SHUTDOWN__DRAIN_SECONDS".into(), "0".into()),
        ("KEEL_SHUTDOWN__TIMEOUT_SECONDS".into(), "5".into()),
    ]
}

/// Registers `who` on a server process and logs in there: the access token and the user id.
pub async fn signup_on_process(
    client: &reqwest::Client,
    server: &keel_testkit::ServerProcess,
    who: &str,
) -> (String, String) {
    let credentials = json!({"email": email(who), "password": PASSWORD});
    let response = client
        .post(server.url(REGISTER))
        .json(&credentials)
        .send()
        .await
        .expect("register answered");
    assert_eq!(response.status(), StatusCode::CREATED, "register {who}");
    let response = client
        .post(server.url(LOGIN))
        .json(&credentials)
        .send()
        .await
        .expect("login answered");
    assert_eq!(response.status(), StatusCode::OK, "login {who}");
    let body: Value = response.json().await.expect("JSON");
    (
        body["accessToken"].as_str().expect("a token").to_owned(),
        body["user"]["id"].as_str().expect("an id").to_owned(),
    )
}
