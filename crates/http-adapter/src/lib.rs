//! Keel's HTTP surface on actix-web: the routes of the API contract, problem+json errors, the
//! middleware of the edge (request ids, security headers, CORS, body limits and deadlines,
//! client IP resolution, the flood guard, the access log) and readiness checks.
//!
//! This is the only crate that maps errors to HTTP statuses, and nothing but the app depends on
//! it. Build an [`HttpApp`] once at start-up and call [`HttpApp::app`] in each worker:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use actix_web::cookie::Key;
//! use keel_auth::{
//!     Accounts, Admin, AdminPolicy, Auth, JwtConfig, KeyRing, Lifecycle, LifecyclePorts, PasswordHasher,
//!     PasswordHashingConfig, RefreshSecret,
//! };
//! use keel_mail::{Letters, Templates};
//! use keel_domain::{Clock, SystemClock, UserRepository};
//! use keel_http_adapter::{
//!     CorsConfig, HttpApp, HttpConfig, QuotaConfig, Quotas, RateLimitConfig, Readiness, Services,
//! };
//! use keel_session::actix::SessionCookieConfig;
//! use keel_session::{MemorySessionStore, SessionConfig};
//! use keel_storage::{InMemoryRateLimiter, InMemoryUserRepository, MemoryLifecycleStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let users: Arc<dyn UserRepository> = Arc::new(InMemoryUserRepository::new());
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock);
//! let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
//! let sessions = Arc::new(MemorySessionStore::new(SessionConfig::default()));
//! let keys = KeyRing::generate_ephemeral(&JwtConfig::default())?;
//! let auth = Auth::new(users.clone(), hasher.clone(), sessions, keys, clock.clone(),
//!                      SessionConfig::default(), RefreshSecret::random());
//! // Tokens, the outbox and the audit log; an `OutboxSender` delivers the outbox.
//! let store = Arc::new(MemoryLifecycleStore::new());
//! let lifecycle = Lifecycle::new(
//!     LifecyclePorts {
//!         users: users.clone(),
//!         tokens: store.clone(),
//!         outbox: store.clone(),
//!         audit: store,
//!         composer: Arc::new(Letters::new(Templates::load(None)?, "http://localhost:3000")),
//!     },
//!     hasher.clone(),
//!     auth.clone(),
//!     clock.clone(),
//! );
//! let admin = Admin::new(users.clone(), Arc::new(MemoryLifecycleStore::new()), auth.clone(),
//!                        AdminPolicy::default(), clock.clone());
//! let services = Services {
//!     readiness: Readiness::new(Vec::new(), Duration::from_secs(1), "1.0.0"),
//!     accounts: Accounts::new(users, hasher, clock),
//!     auth,
//!     lifecycle,
//!     admin,
//!     dev_pages: true,
//!     quotas: Quotas::new(&QuotaConfig::default(), true, Arc::new(InMemoryRateLimiter::new()))?,
//!     cookie: (SessionCookieConfig { secure: false, name: None }, Key::generate()),
//!     realtime: None,
//! };
//! let http = HttpApp::new(&HttpConfig::default(), &CorsConfig::default(),
//!                         &RateLimitConfig::default(), services)?;
//! actix_web::HttpServer::new(move || http.app()).bind("127.0.0.1:0")?.run().await?;
//! # Ok(()) }
//! ```

mod app;
mod body_timeout;
mod caller;
mod client_ip;
mod config;
mod convert;
mod cors;
mod device;
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
pub use health::{CheckFailure, CheckFuture, Readiness, ReadinessCheck, ReadinessReport};
pub use quota::{InvalidQuota, QuotaConfig, QuotaSpec, Quotas};
pub use rate_limit::{FloodGuardConfig, RateLimitConfig};
pub use request_id::RequestId;
pub use security_headers::{HstsConfig, SecurityHeaders};
