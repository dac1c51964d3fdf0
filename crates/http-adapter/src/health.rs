//! Liveness and readiness. Liveness says the process serves requests; readiness says whether a
//! load balancer should send it traffic: every registered dependency answers, and the server is
//! not draining for shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use serde::Serialize;

/// The future a readiness check returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CheckFailure>> + Send + 'a>>;

/// Why a readiness check failed: a stable word for the readiness body, which probes and
/// dashboards match on, and the detail for the log (a library's error text, which changes
/// between versions and is no part of the contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// `timeout`, `unreachable`, `auth_failed`, `not_subscribed`, `not_migrated` or
    /// `unexpected_answer`.
    pub reason: &'static str,
    /// What happened, for the log; it must hold no secret.
    pub detail: String,
}

impl CheckFailure {
    /// A failure for `reason`, with `detail` for the log.
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// One dependency that readiness depends on (Redis, say). Components register theirs at start-up.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// The key under `checks` in the readiness body.
    fn name(&self) -> &'static str;
    /// Succeeds when the dependency answers.
    fn check(&self) -> CheckFuture<'_>;
}

/// The server's readiness: its checks and whether it is draining.
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

struct ReadinessInner {
    checks: Vec<Arc<dyn ReadinessCheck>>,
    timeout: Duration,
    draining: AtomicBool,
    started: Instant,
    version: &'static str,
}

impl Readiness {
    /// Readiness over these checks, each bounded by `timeout`.
    pub fn new(
        checks: Vec<Arc<dyn ReadinessCheck>>,
        timeout: Duration,
        version: &'static str,
    ) -> Self {
        Self {
            inner: Arc::new(ReadinessInner {
                checks,
                timeout,
                draining: AtomicBool::new(false),
                started: Instant::now(),
                version,
            }),
        }
    }

    /// From now on readiness answers 503: the server is going away.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Runs every check concurrently, each within the timeout.
    pub async fn report(&self) -> ReadinessReport {
        let timeout = self.inner.timeout;
        let results = join_all(self.inner.checks.iter().map(|check| async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(timeout, check.check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(CheckFailure::new(
                    "timeout",
                    format!("no answer within {} ms", timeout.as_millis()),
                )),
            };
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Err(failure) = &outcome {
                tracing::warn!(check = check.name(), reason = failure.reason,
                    detail = %failure.detail, "readiness check failed");
            }
            let status = CheckStatus {
                status: if outcome.is_ok() { "ok" } else { "unavailable" },
                latency_ms,
                reason: outcome.err().map(|failure| failure.reason),
            };
            (check.name(), status)
        }))
        .await;
        let checks: BTreeMap<_, _> = results.into_iter().collect();
        let draining = self.is_draining();
        let ready = !draining && checks.values().all(|check| check.reason.is_none());
        ReadinessReport {
            status: if ready { "ok" } else { "unavailable" },
            draining,
            reason: draining.then_some("draining"),
            checks,
        }
    }
}

/// The readiness body.
#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    status: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    draining: bool,
    /// `draining` while the server shuts down.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    checks: BTreeMap<&'static str, CheckStatus>,
}

impl ReadinessReport {
    /// Whether every check passed and the server is not draining.
    pub fn is_ready(&self) -> bool {
        self.status == "ok"
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckStatus {
    status: &'static str,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthBody {
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
}

/// GET /health: the version and uptime.
pub(crate) async fn health(readiness: web::Data<Readiness>) -> HttpResponse {
    no_store(HttpResponse::Ok()).json(HealthBody {
        status: "ok",
        version: readiness.inner.version,
        uptime_seconds: readiness.inner.started.elapsed().as_secs(),
    })
}

/// GET /health/live: 200 while the process serves requests.
pub(crate) async fn live() -> HttpResponse {
    no_store(HttpResponse::Ok())
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(r#"{"status":"ok"}"#)
}

/// GET /health/ready: 200 when ready, 503 with the same body shape when not.
pub(crate) async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.report().await;
    let response = if report.is_ready() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    no_store(response).json(report)
}

fn no_store(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<(), &'static str>);

    impl ReadinessCheck for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn check(&self) -> CheckFuture<'_> {
            Box::pin(async move {
                self.0.map_err(|reason| {
                    CheckFailure::new(reason, "connection refused (os error 111)")
                })
            })
        }
    }

    struct Hangs;

    impl ReadinessCheck for Hangs {
        fn name(&self) -> &'static str {
            "hangs"
        }
        fn check(&self) -> CheckFuture<'_> {
            Box::pin(std::future::pending())
        }
    }

    fn readiness(checks: Vec<Arc<dyn ReadinessCheck>>) -> Readiness {
        Readiness::new(checks, Duration::from_millis(50), "test")
    }

    #[tokio::test]
    async fn ready_when_every_check_passes() {
        let report = readiness(vec![Arc::new(Fixed(Ok(())))]).report().await;
        assert!(report.is_ready());
        assert_eq!(
            serde_json::to_value(&report).unwrap()["checks"]["fixed"]["status"],
            "ok"
        );
    }

    #[tokio::test]
    async fn a_failing_check_makes_the_server_unready_and_says_why() {
        let report = readiness(vec![Arc::new(Fixed(Err("unreachable")))])
            .report()
            .await;
        assert!(!report.is_ready());
        let body = serde_json::to_value(&report).unwrap();
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["checks"]["fixed"]["reason"], "unreachable");
        // The library's text goes to the log, never into the body.
        assert!(!body.to_string().contains("os error"), "{body}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_fails_at_its_timeout() {
        let report = readiness(vec![Arc::new(Hangs)]).report().await;
        assert!(!report.is_ready());
        let body = serde_json::to_value(&report).unwrap();
        assert_eq!(body["checks"]["hangs"]["reason"], "timeout");
    }

    #[tokio::test]
    async fn draining_makes_the_server_unready() {
        let readiness = readiness(Vec::new());
        assert!(readiness.report().await.is_ready());
        readiness.start_draining();
        let report = readiness.report().await;
        assert!(!report.is_ready());
        let body = serde_json::to_value(&report).unwrap();
        assert_eq!(body["draining"], true);
        assert_eq!(body["reason"], "draining");
    }
}
