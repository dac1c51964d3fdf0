//! Keel's HTTP surface on actix-web: the routes of the API contract, problem+json errors, the
//! middleware of the edge (request ids, security headers, CORS, body limits and deadlines,
//! client IP resolution, the flood guard, the access log) and readiness checks.
//!
//! This is the only crate that maps errors to HTTP statuses, and nothing but the app depends on
//! it. Build an [`HttpApp`] once at start-up and call [`HttpApp::app`] in each worker:
//!
//! ```no_run
//! use std::time::Duration;
//! use std::sync::Arc;
//! use keel_auth::{Accounts, PasswordHasher, PasswordHashingConfig};
//! use keel_domain::SystemClock;
//! use keel_http_adapter::{CorsConfig, HttpApp, HttpConfig, RateLimitConfig, Readiness, Services};
//! use keel_storage::InMemoryUserRepository;
//!
//! # async fn run() -> std::io::Result<()> {
//! let services = Services {
//!     readiness: Readiness::new(Vec::new(), Duration::from_secs(2), "1.0.0"),
//!     accounts: Accounts::new(
//!         Arc::new(InMemoryUserRepository::new()),
//!         PasswordHasher::new(&PasswordHashingConfig::default()),
//!         Arc::new(SystemClock),
//!     ),
//! };
//! let http = HttpApp::new(&HttpConfig::default(), &CorsConfig::default(),
//!                         &RateLimitConfig::default(), services);
//! actix_web::HttpServer::new(move || http.app()).bind("127.0.0.1:0")?.run().await
//! # }
//! ```

mod app;
mod body_timeout;
mod caller;
mod client_ip;
mod config;
mod convert;
mod cors;
mod edge;
mod error;
mod extract;
#[cfg(feature = "governor")]
mod flood_guard;
mod health;
mod quota;
mod rate_limit;
mod request_id;
mod routes;
mod security_headers;

pub use app::{HttpApp, Services};
pub use client_ip::{InvalidNetwork, IpNetwork, TrustedProxies};
pub use config::{CorsConfig, HttpConfig};
pub use cors::Cors;
pub use edge::{ClientIp, Edge};
pub use error::{ApiError, FieldError, PROBLEM_JSON};
#[cfg(feature = "governor")]
pub use flood_guard::FloodGuard;
pub use health::{CheckFuture, Readiness, ReadinessCheck, ReadinessReport};
pub use quota::{InvalidQuota, QuotaConfig, QuotaSpec, Quotas};
pub use rate_limit::{FloodGuardConfig, RateLimitConfig};
pub use request_id::RequestId;
pub use security_headers::{HstsConfig, SecurityHeaders};
