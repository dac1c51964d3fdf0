//! The application: routes and middleware assembled in one place.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, web};

use crate::client_ip::TrustedProxies;
use crate::config::{CorsConfig, HttpConfig};
use crate::cors::Cors;
use crate::device::DeviceCookies;
use crate::edge::Edge;
use crate::error::ApiError;
#[cfg(feature = "governor")]
use crate::flood_guard::FloodGuard;
use crate::health::{self, Readiness};
use crate::rate_limit::RateLimitConfig;
use crate::security_headers::SecurityHeaders;
use crate::{extract, routes};
use actix_web::cookie::Key;
use keel_auth::actix::CsrfPolicy;
use keel_auth::{Accounts, Admin, Auth, Lifecycle};
use keel_realtime::RealtimeServer;
use keel_session::actix::{SessionCookieConfig, SessionCookieConfigError, session_middleware};

use crate::quota::Quotas;

/// The services behind the routes, built by the app from its stores.
pub struct Services {
    /// Readiness and its checks.
    pub readiness: Readiness,
    /// The account use cases.
    pub accounts: Accounts,
    /// Logins, tokens and sessions.
    pub auth: Auth,
    /// The account lifecycle: verification, reset, changes, deletion, export.
    pub lifecycle: Lifecycle,
    /// Administration: accounts and the audit log, for the `admin` role.
    pub admin: Admin,
    /// Whether Keel serves its development pages at `/verify-email` and `/reset-password`
    /// (development only: in production the product's front end serves those paths).
    pub dev_pages: bool,
    /// The quotas of the account endpoints.
    pub quotas: Quotas,
    /// How the session cookie is set, and the key that encrypts it (the same on every
    /// instance).
    pub cookie: (SessionCookieConfig, Key),
    /// The Socket.IO server, mounted at `/socket.io/` when present.
    pub realtime: Option<RealtimeServer>,
}

/// Everything the HTTP app needs, built once at start-up and cloned into every worker.
#[derive(Clone)]
pub struct HttpApp {
    inner: Arc<Inner>,
}

struct Inner {
    edge: Edge,
    readiness: web::Data<Readiness>,
    accounts: web::Data<Accounts>,
    auth: web::Data<Auth>,
    lifecycle: web::Data<Lifecycle>,
    admin: web::Data<Admin>,
    dev_pages: bool,
    quotas: web::Data<Quotas>,
    csrf: web::Data<CsrfPolicy>,
    devices: web::Data<DeviceCookies>,
    cookie: (SessionCookieConfig, Key),
    realtime: Option<RealtimeServer>,
    body_limit: usize,
    #[cfg(feature = "governor")]
    flood_guard: Option<FloodGuard>,
}

impl HttpApp {
    /// Builds the app's shared parts from configuration.
    pub fn new(
        http: &HttpConfig,
        cors: &CorsConfig,
        rate_limit: &RateLimitConfig,
        services: Services,
    ) -> Result<Self, SessionCookieConfigError> {
        services.cookie.0.validate()?;
        let edge = Edge::new(
            Cors::new(&cors.allowed_origins),
            SecurityHeaders::new(&http.hsts),
            TrustedProxies::new(http.trusted_proxies.clone()),
            Duration::from_secs(http.body_read_timeout_seconds),
        );
        #[cfg(not(feature = "governor"))]
        let _ = rate_limit;
        Ok(Self {
            inner: Arc::new(Inner {
                edge,
                readiness: web::Data::new(services.readiness),
                accounts: web::Data::new(services.accounts),
                auth: web::Data::new(services.auth),
                lifecycle: web::Data::new(services.lifecycle),
                admin: web::Data::new(services.admin),
                dev_pages: services.dev_pages,
                quotas: web::Data::new(services.quotas),
                csrf: web::Data::new(CsrfPolicy::new(cors.allowed_origins.iter())),
                devices: web::Data::new(DeviceCookies::new(
                    &services.cookie.1,
                    services.cookie.0.secure,
                )),
                cookie: services.cookie,
                realtime: services.realtime,
                body_limit: http.body_limit_bytes,
                #[cfg(feature = "governor")]
                flood_guard: rate_limit
                    .enabled
                    .then(|| FloodGuard::new(&rate_limit.flood_guard))
                    .flatten(),
            }),
        })
    }

    /// The flood guard, when it is on, so the app can prune it periodically.
    #[cfg(feature = "governor")]
    pub fn flood_guard(&self) -> Option<&FloodGuard> {
        self.inner.flood_guard.as_ref()
    }

    /// The Socket.IO server, when mounted: server code emits through its `emitter()`.
    pub fn realtime(&self) -> Option<&RealtimeServer> {
        self.inner.realtime.as_ref()
    }

    /// The readiness shared by the health routes, so shutdown can mark the server draining.
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// One worker's actix `App`.
    pub fn app(
        &self,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody + use<>>,
            Error = actix_web::Error,
            InitError = (),
        > + use<>,
    > {
        let inner = &self.inner;
        let app = App::new()
            .app_data(inner.readiness.clone())
            .app_data(inner.accounts.clone())
            .app_data(inner.auth.clone())
            .app_data(inner.lifecycle.clone())
            .app_data(inner.admin.clone())
            .app_data(inner.quotas.clone())
            .app_data(inner.csrf.clone())
            .app_data(inner.devices.clone())
            .app_data(extract::json_config(inner.body_limit))
            .app_data(extract::payload_config(inner.body_limit))
            .app_data(extract::path_config())
            .app_data(extract::query_config())
            .service(get("/health", health::health))
            .service(get("/health/live", health::live))
            .service(get("/health/ready", health::ready))
            .service(get("/.well-known/jwks.json", routes::auth::jwks));
        let app = if inner.dev_pages {
            app.service(get("/verify-email", routes::account::verify_email_page))
                .service(get("/reset-password", routes::account::reset_password_page))
                .service(get("/_keel/pages.js", routes::account::pages_script))
        } else {
            app
        };
        let app = app
            .default_service(web::to(not_found))
            .wrap(inner.edge.clone());
        let (cookie_config, cookie_key) = &inner.cookie;
        // Runs at each worker's start-up; `HttpApp::new` validated the same configuration.
        let session_cookies = || {
            session_middleware(cookie_config, cookie_key.clone())
                .expect("the cookie configuration was validated by HttpApp::new")
        };
        let api = web::scope("/api/v1")
            .service(post("/auth/register", routes::auth::register))
            .service(post("/auth/login", routes::auth::login))
            .service(post("/auth/refresh", routes::auth::refresh))
            .service(post("/auth/logout", routes::auth::logout))
            .service(post("/auth/logout-all", routes::auth::logout_all))
            .service(get("/auth/me", routes::auth::me))
            .service(get("/auth/sessions", routes::auth::sessions))
            .service(
                web::resource("/auth/sessions/{id}")
                    .route(web::delete().to(routes::auth::revoke_session))
                    .default_service(web::to(|| async { method_not_allowed("DELETE") })),
            )
            .service(post("/auth/verify-email", routes::account::verify_email))
            .service(post(
                "/auth/verify-email/resend",
                routes::account::resend_verification,
            ))
            .service(post(
                "/auth/password-reset",
                routes::account::request_password_reset,
            ))
            .service(post(
                "/auth/password-reset/confirm",
                routes::account::confirm_password_reset,
            ))
            .service(post("/auth/password", routes::account::change_password))
            .service(post("/auth/email", routes::account::request_email_change))
            .service(
                web::resource("/users/me")
                    .route(web::patch().to(routes::account::update_profile))
                    .route(web::delete().to(routes::account::delete_account))
                    .default_service(web::to(|| async { method_not_allowed("PATCH, DELETE") })),
            )
            .service(get("/users/me/export", routes::account::export))
            .service(get("/admin/users", routes::admin::list_users))
            .service(get("/admin/users/{id}", routes::admin::get_user))
            .service(post(
                "/admin/users/{id}/disable",
                routes::admin::disable_user,
            ))
            .service(post("/admin/users/{id}/enable", routes::admin::enable_user))
            .service(
                web::resource("/admin/users/{id}/sessions")
                    .route(web::delete().to(routes::admin::revoke_sessions))
                    .default_service(web::to(|| async { method_not_allowed("DELETE") })),
            )
            .service(get("/admin/audit", routes::admin::audit))
            .default_service(web::to(not_found))
            .wrap(session_cookies());
        let app = match &inner.realtime {
            // The session middleware lets the socket handshake read the session cookie. Not
            // behind the flood guard: realtime throttles connections itself, and long-polling
            // clients legitimately make a request per message.
            Some(realtime) => app.service(
                web::scope(keel_realtime::PATH.trim_end_matches('/'))
                    .service(realtime_resource(realtime))
                    .wrap(session_cookies()),
            ),
            None => app,
        };
        #[cfg(feature = "governor")]
        if let Some(guard) = &inner.flood_guard {
            return app.service(api.wrap(guard.middleware()));
        }
        app.service(api)
    }
}

/// `/socket.io/`: the Engine.IO handshake, polls, polling POSTs and WebSocket upgrades.
fn realtime_resource(realtime: &RealtimeServer) -> actix_web::Resource {
    let get = realtime.clone();
    let post = realtime.clone();
    web::resource("/")
        .route(web::get().to(move |req: HttpRequest, body: web::Payload| {
            let realtime = get.clone();
            async move { realtime.handle(req, body).await }
        }))
        .route(web::post().to(move |req: HttpRequest, body: web::Payload| {
            let realtime = post.clone();
            async move { realtime.handle(req, body).await }
        }))
        .default_service(web::to(|| async { method_not_allowed("GET, POST") }))
}

/// A resource that answers GET and HEAD, and says 405 with `allow: GET, HEAD` to every other
/// method.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    // HEAD too: probes and caches use it; actix-http sends the head of the GET answer alone.
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| async { method_not_allowed("GET, HEAD") }))
}

/// A resource that answers POST and says 405 with `allow: POST` to every other method.
fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(|| async { method_not_allowed("POST") }))
}

fn method_not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed(allow))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
