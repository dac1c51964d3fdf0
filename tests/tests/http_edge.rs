//! The HTTP edge as a client sees it: health, request ids, security headers, CORS, and every row
//! of the bad-input list of the contract, over a real socket.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::time::Duration;

use keel_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REGISTER: &str = "/api/v1/auth/register";

async fn read_problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "every error is problem+json"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(
        body["requestId"], request_id,
        "the body names the request id"
    );
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with(body["code"].as_str().unwrap())
    );
    (status, body)
}

#[tokio::test]
async fn health_reports_version_and_uptime_with_security_headers() {
    let app = TestApp::spawn().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("x-dns-prefetch-control", "off"),
    ] {
        assert_eq!(headers[name], value, "{name}");
    }
    assert!(
        headers.get("strict-transport-security").is_none(),
        "HSTS is off by default"
    );
    assert!(headers.get("server").is_none());
    assert!(headers.get("x-powered-by").is_none());
    assert!(headers.contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptimeSeconds"].is_u64());
}

#[tokio::test]
async fn liveness_and_readiness_answer_ok_when_nothing_is_wrong() {
    let app = TestApp::spawn().await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ok", "checks": {}})
    );
}

#[tokio::test]
async fn hsts_is_sent_when_enabled() {
    let app = TestApp::spawn_with(|config| config.http.hsts.enabled = true).await;
    let response = app.get("/health").await;
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_an_insane_one_replaced() {
    let app = TestApp::spawn().await;
    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");

    let long = "x".repeat(129);
    let replaced = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, long);
    assert_eq!(id.len(), 36);

    let problem_id = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "trace-43")
        .send()
        .await
        .unwrap();
    let (_, body) = read_problem(problem_id).await;
    assert_eq!(body["requestId"], "trace-43");
}

#[tokio::test]
async fn an_unknown_route_is_404_not_found() {
    let app = TestApp::spawn().await;
    for path in ["/nope", "/api/v1/nope", "/api/v2/auth/register"] {
        let (status, body) = read_problem(app.get(path).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["code"], "not_found");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let (status, body) = read_problem(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], "method_not_allowed");

    let response = app.get(REGISTER).await;
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(
        read_problem(response).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn malformed_json_is_400_invalid_request() {
    let app = TestApp::spawn().await;
    for body in ["{", "not json", "", "[1,2", "{\"email\": }"] {
        let response = app
            .client
            .post(app.url(REGISTER))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, problem) = read_problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "body {body:?}");
        assert_eq!(problem["code"], "invalid_request");
    }
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_400_saying_what_is_wrong() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (
            json!({"email": 42, "password": "correct horse"}),
            "expected a string",
        ),
        (json!({"email": "a@b.example"}), "password"),
        (json!(["a@b.example", "correct horse"]), "struct"),
        (
            json!({"email": "a@b.example", "password": "correct horse", "displayName": 7}),
            "string",
        ),
    ] {
        let (status, problem) = read_problem(app.post_json(REGISTER, &body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(problem["code"], "invalid_request");
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn well_formed_but_invalid_values_are_422_with_every_field() {
    let app = TestApp::spawn().await;
    let body = json!({"email": "not-an-email", "password": "short"});
    let (status, problem) = read_problem(app.post_json(REGISTER, &body).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "validation_failed");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password"]);
    assert!(
        !problem.to_string().contains("\"short\""),
        "the password is never echoed"
    );

    let too_long = "p".repeat(129);
    let body = json!({"email": "a@b.example", "password": too_long});
    let (status, problem) = read_problem(app.post_json(REGISTER, &body).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["code"], "too_long");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = TestApp::spawn().await;
    let padding = "x".repeat(1024 * 1024);
    let body = json!({"email": "a@b.example", "password": "correct horse", "displayName": padding});
    let (status, problem) = read_problem(app.post_json(REGISTER, &body).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["code"], "payload_too_large");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_too() {
    let app = TestApp::spawn_with(|config| config.http.body_limit_bytes = 64).await;
    let chunks = futures_chunks(vec![b"{\"email\":\"a@b.example\",".to_vec(); 8]);
    let response = app
        .client
        .post(app.url(REGISTER))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(
        read_problem(response).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

fn futures_chunks(
    chunks: Vec<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .client
            .post(app.url(REGISTER))
            .body(r#"{"email":"a@b.example"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, problem) = read_problem(request.send().await.unwrap()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(problem["code"], "unsupported_media_type");
    }
}

#[tokio::test]
async fn registering_answers_201_and_a_second_time_409() {
    let app = TestApp::spawn().await;
    let body =
        json!({"email": "Ada@Example.com", "password": "correct horse", "displayName": "Ada"});
    let response = app.post_json(REGISTER, &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["user"]["email"], "Ada@Example.com");
    assert_eq!(created["user"]["displayName"], "Ada");
    assert!(created["user"]["id"].as_str().unwrap().len() == 36);
    assert!(
        created["user"]["createdAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(created["user"].get("passwordHash").is_none());

    let again = json!({"email": "ada@EXAMPLE.com", "password": "another one"});
    let (status, problem) = read_problem(app.post_json(REGISTER, &again).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "email_taken");
}

#[tokio::test]
async fn a_body_that_trickles_in_too_slowly_is_408() {
    let app = TestApp::spawn_with(|config| config.http.body_read_timeout_seconds = 1).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST {REGISTER} HTTP/1.1\r\nhost: keel\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"email\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the server answers and closes within the deadline")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"), "{response}");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::spawn_with(|config| {
        config.cors.allowed_origins = vec!["https://app.example".to_owned()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url(REGISTER))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-headers"],
        "content-type"
    );

    let foreign = preflight("https://evil.example").await.unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert_eq!(read_problem(foreign).await.0, StatusCode::FORBIDDEN);

    let actual = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let actual = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        actual
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn the_flood_guard_limits_the_api_per_ip_but_never_health() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.flood_guard.per_second = 1;
        config.rate_limit.flood_guard.burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.get("/api/v1/nope").await.status());
    }
    assert_eq!(&statuses[..3], [StatusCode::NOT_FOUND; 3]);
    let limited = app.get("/api/v1/nope").await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let (status, body) = read_problem(limited).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], "rate_limited");
    for _ in 0..10 {
        assert_eq!(
            app.get("/health").await.status(),
            StatusCode::OK,
            "health is never limited"
        );
    }
}

#[tokio::test]
async fn turning_rate_limits_off_turns_the_flood_guard_off() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.enabled = false;
        config.rate_limit.flood_guard.per_second = 1;
        config.rate_limit.flood_guard.burst = 1;
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            app.get("/api/v1/nope").await.status(),
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    // The test client connects from 127.0.0.1. Untrusted: every forged address shares the
    // peer's bucket. Trusted: each forwarded client gets its own.
    let untrusted = TestApp::spawn_with(|config| {
        config.rate_limit.flood_guard.per_second = 1;
        config.rate_limit.flood_guard.burst = 1;
    })
    .await;
    let trusted = TestApp::spawn_with(|config| {
        config.rate_limit.flood_guard.per_second = 1;
        config.rate_limit.flood_guard.burst = 1;
        config.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    for (app, expected_second) in [
        (&untrusted, StatusCode::TOO_MANY_REQUESTS),
        (&trusted, StatusCode::NOT_FOUND),
    ] {
        let mut statuses = Vec::new();
        for client in ["198.51.100.1", "198.51.100.2"] {
            let response = app
                .client
                .get(app.url("/api/v1/nope"))
                .header("x-forwarded-for", client)
                .send()
                .await
                .unwrap();
            statuses.push(response.status());
        }
        assert_eq!(statuses, [StatusCode::NOT_FOUND, expected_second]);
    }
}

#[tokio::test]
async fn graceful_shutdown_in_process_marks_unready_and_stops() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health/ready").await.status(), StatusCode::OK);
    let address = app.address;
    app.shutdown().await;
    assert!(
        TcpStream::connect(address).await.is_err(),
        "the listener is closed"
    );
}

/// Every GET route answers HEAD (probes and caches use it): the GET answer's status and
/// headers, without a body.
#[tokio::test]
async fn every_get_route_answers_head_without_a_body() {
    let app = TestApp::spawn().await;
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/.well-known/jwks.json",
    ] {
        let get = app.get(path).await;
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(
            head.headers()["content-type"],
            get.headers()["content-type"],
            "{path}"
        );
        assert!(head.headers().contains_key("x-request-id"), "{path}");
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }
    // Authenticated GET routes refuse HEAD without credentials as they refuse GET.
    let head = app
        .client
        .head(app.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), reqwest::StatusCode::UNAUTHORIZED);
}
