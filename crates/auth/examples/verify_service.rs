//! A separate service that accepts Keel's access tokens, built on keel-auth and keel-session
//! alone: it verifies each token against Keel's published keys (JWKS) and checks its session in
//! the Redis that Keel writes to, so a logout on Keel is refused here at once.
//!
//! ```text
//! VERIFY_REDIS_URL=redis://127.0.0.1:6379 \
//! VERIFY_JWKS_URL=http://127.0.0.1:8080/.well-known/jwks.json \
//! cargo run -p keel-auth --features actix --example verify_service
//! ```
//!
//! Configuration, from the environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `VERIFY_PORT` | `0` (a free port) | the port on 127.0.0.1 |
//! | `VERIFY_REDIS_URL` | `redis://127.0.0.1:6379` | Keel's Redis (`KEEL_REDIS__URL`) |
//! | `VERIFY_REDIS_TIMEOUT_MS` | `1000` | connect, response and pool-wait bound of every Redis call |
//! | `VERIFY_JWKS_URL` | | Keel's `http://…/.well-known/jwks.json`, fetched once at start |
//! | `VERIFY_JWKS_FILE` | | or a file holding that document |
//! | `VERIFY_ALGORITHM` | the keys' `alg` | `EdDSA` or `ES256`, as Keel's `auth.jwt.algorithm` |
//! | `VERIFY_ISSUER`, `VERIFY_AUDIENCE` | `keel` | Keel's `auth.jwt.issuer` and `audience` |
//! | `VERIFY_KEY_PREFIX` | `keel:` | Keel's session `key_prefix` |
//! | `VERIFY_IDLE_TTL_SECONDS`, `VERIFY_TOUCH_INTERVAL_SECONDS` | keel-session's defaults | Keel's session `idle_ttl` and `touch_interval` (checking a session records its activity, as Keel does) |
//!
//! The first line on stdout is `listening on 127.0.0.1:PORT`. Then `GET /whoami` with
//! `Authorization: Bearer <Keel access token>` answers 200 `{"userId", "sessionId"}` while the
//! token is valid and its session alive, 401 (with `www-authenticate`) otherwise, and 503 when
//! Redis cannot answer (it fails closed). A bare status, no problem+json: that is Keel's edge.
//!
//! What this example leaves out: HTTPS for the JWKS (it speaks plain HTTP/1.0 over a
//! `TcpStream`, to stay free of an HTTP client; use `VERIFY_JWKS_FILE` or a real client), and
//! fetching the JWKS again when Keel rotates its key (tokens of the new `kid` are refused until
//! the service builds a new ring: re-fetch on a timer, or when a token's `kid` is unknown).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line service: it prints its address and its start-up errors"
)]

use std::error::Error;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use keel_auth::actix::Authenticated;
use keel_auth::{JwtAlgorithm, JwtConfig, KeyRing, Verifier};
use keel_domain::SystemClock;
use keel_session::{RedisPoolConfig, RedisSessionStore, SessionConfig, redis_pool};
use secrecy::SecretString;
use serde_json::{Value, json};

type BoxError = Box<dyn Error + Send + Sync>;

/// How long fetching the JWKS may take, per step (connect, write, each read).
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS response read. Keel's is well under 1 KiB.
const MAX_JWKS_RESPONSE: u64 = 256 * 1024;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("verify_service: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Where Keel's keys come from.
enum JwksSource {
    Url(String),
    File(PathBuf),
}

/// The settings, read once from the environment.
struct Settings {
    port: u16,
    redis: RedisPoolConfig,
    jwks: JwksSource,
    algorithm: Option<JwtAlgorithm>,
    jwt: JwtConfig,
    sessions: SessionConfig,
}

#[allow(
    clippy::disallowed_methods,
    reason = "an example service reads its own environment; Keel's libraries take config structs"
)]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn env_parsed<T>(name: &str) -> Result<Option<T>, BoxError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    env(name)
        .map(|value| {
            value
                .parse()
                .map_err(|e| format!("{name}={value:?} is not valid: {e}").into())
        })
        .transpose()
}

impl Settings {
    fn from_env() -> Result<Self, BoxError> {
        let jwks = match (env("VERIFY_JWKS_URL"), env("VERIFY_JWKS_FILE")) {
            (Some(url), None) => JwksSource::Url(url),
            (None, Some(path)) => JwksSource::File(path.into()),
            _ => return Err("set exactly one of VERIFY_JWKS_URL and VERIFY_JWKS_FILE".into()),
        };
        let algorithm = env("VERIFY_ALGORITHM")
            .map(|name| {
                serde_json::from_value::<JwtAlgorithm>(Value::String(name.clone()))
                    .map_err(|_| format!("VERIFY_ALGORITHM={name:?}: use EdDSA or ES256"))
            })
            .transpose()?;

        let redis_timeout =
            Duration::from_millis(env_parsed("VERIFY_REDIS_TIMEOUT_MS")?.unwrap_or(1000));
        let redis = RedisPoolConfig {
            url: SecretString::from(
                env("VERIFY_REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
            ),
            connect_timeout: redis_timeout,
            response_timeout: redis_timeout,
            wait_timeout: redis_timeout,
            ..RedisPoolConfig::default()
        };

        let defaults = JwtConfig::default();
        let jwt = JwtConfig {
            issuer: env("VERIFY_ISSUER").unwrap_or(defaults.issuer),
            audience: env("VERIFY_AUDIENCE").unwrap_or(defaults.audience),
            ..JwtConfig::default()
        };

        let mut sessions = SessionConfig::default();
        if let Some(prefix) = env("VERIFY_KEY_PREFIX") {
            sessions.key_prefix = prefix;
        }
        if let Some(seconds) = env_parsed("VERIFY_IDLE_TTL_SECONDS")? {
            sessions.idle_ttl = Duration::from_secs(seconds);
        }
        if let Some(seconds) = env_parsed("VERIFY_TOUCH_INTERVAL_SECONDS")? {
            sessions.touch_interval = Duration::from_secs(seconds);
        }

        Ok(Self {
            port: env_parsed("VERIFY_PORT")?.unwrap_or(0),
            redis,
            jwks,
            algorithm,
            jwt,
            sessions,
        })
    }
}

fn run() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;

    // Keel's public keys: a verify-only ring (it could not sign even if asked).
    let jwks: Value = match &settings.jwks {
        JwksSource::Url(url) => fetch_jwks(url).map_err(|e| format!("fetching {url}: {e}"))?,
        JwksSource::File(path) => serde_json::from_str(&std::fs::read_to_string(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?,
    };
    let algorithm = match settings.algorithm {
        Some(algorithm) => algorithm,
        None => algorithm_of(&jwks)?,
    };
    let jwt = JwtConfig {
        algorithm,
        ..settings.jwt
    };
    let keys = KeyRing::from_jwks(&jwks, &jwt)?;

    // Keel's session registry, on the Redis Keel uses, under Keel's key prefix. The pool
    // connects lazily: the service starts while Redis is down and answers 503 until it is back.
    let pool = redis_pool(&settings.redis)?;
    let sessions = Arc::new(RedisSessionStore::new(pool, settings.sessions));

    let verifier = Verifier::new(keys, sessions, Arc::new(SystemClock));
    actix_web::rt::System::new().block_on(serve(verifier, settings.port))?;
    Ok(())
}

async fn serve(verifier: Verifier, port: u16) -> std::io::Result<()> {
    let server = HttpServer::new(move || {
        App::new()
            // The `Authenticated` extractor finds the verifier here.
            .app_data(web::Data::new(verifier.clone()))
            .service(web::resource("/whoami").get(whoami))
    })
    .workers(2)
    .bind(("127.0.0.1", port))?;
    let address = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("bound to no address"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    drop(stdout);
    server.run().await
}

/// The caller, as the token and Keel's session registry say. Without a valid token of a live
/// session the extractor has already answered 401 (or 503 when Redis cannot answer).
async fn whoami(who: Authenticated) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({
            "userId": who.user_id.to_string(),
            "sessionId": who.session.id.to_string(),
        }))
}

/// The algorithm of the JWKS's keys: the first key's `alg`, else its key type.
fn algorithm_of(jwks: &Value) -> Result<JwtAlgorithm, BoxError> {
    let first = &jwks["keys"][0];
    if let Some(alg) = first.get("alg") {
        return serde_json::from_value(alg.clone())
            .map_err(|_| format!("the JWKS's key has `alg` {alg}, not EdDSA or ES256").into());
    }
    match first["kty"].as_str() {
        Some("OKP") => Ok(JwtAlgorithm::EdDSA),
        Some("EC") => Ok(JwtAlgorithm::ES256),
        _ => Err("cannot tell the JWKS's algorithm; set VERIFY_ALGORITHM".into()),
    }
}

/// `GET url` over a plain `TcpStream` (HTTP/1.0, so the answer is neither chunked nor kept
/// alive), and the body parsed as JSON. Only `http://` URLs.
fn fetch_jwks(url: &str) -> Result<Value, BoxError> {
    let rest = url.strip_prefix("http://").ok_or(
        "only http:// URLs are fetched by this example; use VERIFY_JWKS_FILE for anything else",
    )?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("the URL needs a host (and no user info)".into());
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let address = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };

    let mut last_error: Option<std::io::Error> = None;
    let mut stream = None;
    for candidate in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&candidate, JWKS_TIMEOUT) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last_error = Some(error),
        }
    }
    let mut stream = match (stream, last_error) {
        (Some(stream), _) => stream,
        (None, Some(error)) => return Err(error.into()),
        (None, None) => return Err(format!("{authority} resolves to no address").into()),
    };
    stream.set_read_timeout(Some(JWKS_TIMEOUT))?;
    stream.set_write_timeout(Some(JWKS_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\nUser-Agent: keel-verify-service\r\n\r\n"
    )?;
    stream.flush()?;

    let mut response = Vec::new();
    stream
        .take(MAX_JWKS_RESPONSE + 1)
        .read_to_end(&mut response)?;
    if response.len() as u64 > MAX_JWKS_RESPONSE {
        return Err(format!("the response is larger than {MAX_JWKS_RESPONSE} bytes").into());
    }
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("the response has no end of headers")?;
    let head = std::str::from_utf8(&response[..split])?;
    let body = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .ok_or("no status line")?;
    if status != "200" {
        return Err(format!("status {status}, expected 200").into());
    }
    for header in lines {
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        if name.trim().eq_ignore_ascii_case("transfer-encoding")
            && !value.trim().eq_ignore_ascii_case("identity")
        {
            return Err(format!("unsupported transfer-encoding `{}`", value.trim()).into());
        }
    }
    Ok(serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?)
}
