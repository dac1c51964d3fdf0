//! Wiring: builds the stores, the services and the HTTP server from the configuration, bound and
//! ready to run. Tests call [`Application::build`] with port 0 and keep the bound listener.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::Server;
use std::sync::Arc;

use actix_web::cookie::Key;
use keel_auth::{
    Accounts, Admin, AdminPolicy, Auth, JwtError, KeyRing, Lifecycle, LifecyclePorts,
    PasswordHasher, RefreshSecret,
};
use keel_domain::{AuditLog, Clock, Mailer, OneTimeTokens, SystemClock};
use keel_http_adapter::{HttpApp, InvalidQuota, Quotas, Readiness, ReadinessCheck, Services};
use keel_mail::{FileMailer, Letters, OutboxSender, SmtpConfig, SmtpMailer, Templates};
use keel_session::actix::{SessionCookieConfig, SessionCookieConfigError, cookie_key};

use crate::config::{Config, Profile};
use crate::readiness::{RedisCheck, SubscriptionCheck};
use crate::realtime::{DisconnectRevokedSockets, KeelConnectAuth, spawn_session_check};
use crate::shutdown::Shutdown;
use crate::stores::{LifecycleStores, Stores};
use keel_realtime::{RealtimeServer, RedisAdapter};
use keel_session::deadpool_redis;
use secrecy::ExposeSecret;
use tokio::sync::Notify;

/// The version reported by /health.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often the flood guard forgets clients whose quota has replenished.
#[cfg(feature = "governor")]
const FLOOD_GUARD_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The Redis pool could not be built from the configuration.
    #[error("cannot set up Redis")]
    Redis(#[source] keel_session::SessionError),
    /// The database could not be set up, or its migrations failed for a reason that waiting
    /// cannot fix (an unreachable database is not this: the server starts unready).
    #[error("cannot set up the database")]
    Database(#[source] keel_storage::postgres::DatabaseError),
    /// The JWT keys are unusable, or the start-up self-test failed.
    #[error("the JWT key ring is unusable")]
    Keys(#[source] JwtError),
    /// The session cookie settings are unusable.
    #[error("the session cookie settings are unusable")]
    Cookie(#[source] SessionCookieConfigError),
    /// A quota is unusable.
    #[error("a rate-limit quota is unusable")]
    Quota(#[source] InvalidQuota),
    /// The Redis URL does not parse (the URL is not repeated: it may hold a password).
    #[error("redis.url is not a valid Redis URL")]
    RedisUrl,
    /// The realtime settings are unusable.
    #[error("the realtime settings are unusable")]
    Realtime(#[source] keel_realtime::ConfigError),
    /// The mail transport cannot be set up.
    #[error("cannot set up mail ({})", .0.key())]
    Mail(#[source] keel_mail::MailSetupError),
    /// The mail templates cannot be loaded.
    #[error("the mail templates are unusable")]
    Templates(#[source] keel_mail::TemplatesError),
    /// The HTTP server could not be set up on the listener.
    #[error("cannot start the HTTP server")]
    Server(#[source] io::Error),
}

/// A Keel server, bound and ready to run.
pub struct Application {
    address: SocketAddr,
    server: Server,
    http: HttpApp,
    shutdown: Shutdown,
    drain: Duration,
    timeout: Duration,
}

impl Application {
    /// Binds the configured address and builds everything.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let address = SocketAddr::new(config.server.host, config.server.port);
        let listener =
            TcpListener::bind(address).map_err(|source| StartupError::Bind { address, source })?;
        Self::build_with_listener(config, listener).await
    }

    /// Builds everything on a listener the caller already bound (port 0 in tests, so there is
    /// no window between finding a free port and binding it).
    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        let address = listener.local_addr().map_err(StartupError::Server)?;
        let shutdown = Shutdown::new();
        let mut checks: Vec<Arc<dyn ReadinessCheck>> = Vec::new();
        let stores = Stores::build(&config, &shutdown)?;
        if let Some(database) = &stores.database {
            database.migrate_or_keep_trying(&shutdown).await?;
            checks.push(Arc::new(database.check()));
        }
        let pool = stores.redis.clone();
        // Asked for after every resubscribe of the Redis adapter: revocations published while
        // it was not subscribed were lost, so this instance re-checks its sockets' sessions.
        let recheck_sessions = Arc::new(Notify::new());
        let mut adapter = None;
        if let (Some(pool), Some(url)) = (&pool, &config.redis.url) {
            checks.push(Arc::new(RedisCheck::new(pool.clone())));
            let subscriber = deadpool_redis::redis::Client::open(url.expose_secret())
                .map_err(|_| StartupError::RedisUrl)?;
            let recheck = Arc::clone(&recheck_sessions);
            let builder = RedisAdapter::builder(pool.clone(), subscriber)
                .on_resubscribe(move || recheck.notify_one());
            checks.push(Arc::new(SubscriptionCheck::new(builder.subscription())));
            adapter = Some(builder);
        }
        let readiness = Readiness::new(
            checks,
            Duration::from_millis(config.server.readiness_timeout_ms),
            VERSION,
        );
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let Stores {
            users,
            sessions,
            limiter,
            lifecycle: lifecycle_stores,
            ..
        } = stores;
        let hasher = PasswordHasher::new(&config.auth.password_hashing);
        let keys = key_ring(&config)?;
        let cookie = cookie(&config)?;
        // Refresh-token successors are derived from the cookie key, which every instance on
        // the same stores shares, so any instance answers a replay inside the grace window.
        let refresh_secret = RefreshSecret::derive(cookie.1.master());
        let auth = Auth::new(
            Arc::clone(&users),
            hasher.clone(),
            sessions,
            keys,
            Arc::clone(&clock),
            config.session.clone(),
            refresh_secret,
        );
        let quotas = Quotas::new(
            &config.rate_limit.quotas,
            config.rate_limit.enabled,
            limiter,
        )
        .map_err(StartupError::Quota)?;
        let mut realtime = RealtimeServer::builder(
            config.realtime.clone(),
            Arc::new(KeelConnectAuth::new(
                auth.clone(),
                quotas.clone(),
                &config.cors.allowed_origins,
            )),
        )
        .shutdown_token(&shutdown.token());
        if let Some(adapter) = adapter {
            realtime = realtime.adapter(adapter.into_factory());
        }
        let realtime = realtime.build().map_err(StartupError::Realtime)?;
        auth.add_revocation_listener(DisconnectRevokedSockets::new(realtime.emitter()));
        spawn_session_check(
            &realtime,
            &auth,
            Duration::from_millis(config.realtime.session_check_interval_ms),
            recheck_sessions,
            &shutdown,
        );
        let mailer = mailer(&config)?;
        let letters = Letters::new(
            Templates::load(config.mail.templates.as_deref()).map_err(StartupError::Templates)?,
            &config.app_url,
        );
        let sender = OutboxSender::new(
            Arc::clone(&lifecycle_stores.outbox),
            mailer,
            config.mail.sender(),
        );
        let stop = shutdown.token();
        shutdown.spawn(async move { sender.run(stop.cancelled_owned()).await });
        spawn_lifecycle_upkeep(&lifecycle_stores, &config, &shutdown);
        let admin = Admin::new(
            Arc::clone(&users),
            Arc::clone(&lifecycle_stores.audit),
            auth.clone(),
            AdminPolicy::new(
                config.admin.emails.iter().map(String::as_str),
                config.profile == Profile::Production,
            ),
            Arc::clone(&clock),
        );
        let lifecycle = Lifecycle::new(
            LifecyclePorts {
                users: Arc::clone(&users),
                tokens: lifecycle_stores.tokens,
                outbox: lifecycle_stores.outbox,
                audit: lifecycle_stores.audit,
                composer: Arc::new(letters),
            },
            hasher.clone(),
            auth.clone(),
            Arc::clone(&clock),
        );
        let services = Services {
            realtime: Some(realtime),
            readiness,
            accounts: Accounts::new(users, hasher, clock),
            auth,
            lifecycle,
            admin,
            dev_pages: config.profile == Profile::Development,
            quotas,
            cookie,
        };
        let http = HttpApp::new(&config.http, &config.cors, &config.rate_limit, services)
            .map_err(StartupError::Cookie)?;
        #[cfg(feature = "governor")]
        spawn_flood_guard_pruning(&http, &shutdown);

        let timeout = Duration::from_secs(config.shutdown.timeout_seconds);
        let app = http.clone();
        let mut server = HttpServer::new(move || app.app())
            // Keel runs its own shutdown sequence (drain first), so actix must not react to
            // signals by itself.
            .disable_signals()
            .shutdown_timeout(config.shutdown.timeout_seconds)
            .keep_alive(Duration::from_secs(config.server.keep_alive_seconds))
            .client_request_timeout(Duration::from_millis(
                config.server.client_request_timeout_ms,
            ))
            .client_disconnect_timeout(Duration::from_millis(
                config.server.client_disconnect_timeout_ms,
            ));
        if let Some(workers) = config.server.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener).map_err(StartupError::Server)?.run();
        tracing::info!(%address, profile = ?config.profile, version = VERSION, "listening");
        Ok(Self {
            address,
            server,
            http,
            shutdown,
            drain: Duration::from_secs(config.drain_seconds()),
            timeout,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The realtime emitter: server code emits to users, sessions, rooms or everyone with it.
    pub fn realtime_emitter(&self) -> Option<keel_realtime::Emitter> {
        self.http.realtime().map(RealtimeServer::emitter)
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until `stop` resolves (a signal, in the binary), then shuts down in order:
    /// readiness 503 at once; requests still served for the drain period; long-lived
    /// connections told to close; the listener closed; in-flight requests finished within the
    /// shutdown timeout; tracked tasks awaited.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> io::Result<()> {
        let Self {
            server,
            http,
            shutdown,
            drain,
            timeout,
            ..
        } = self;
        let handle = server.handle();
        let mut serving = tokio::spawn(server);
        tokio::select! {
            () = stop => {}
            result = &mut serving => {
                // The server ended by itself: nothing to drain.
                shutdown.begin();
                return result.map_err(io::Error::other)?;
            }
        }

        http.readiness().start_draining();
        tracing::info!(
            drain_seconds = drain.as_secs(),
            "shutdown: draining; readiness reports 503"
        );
        tokio::time::sleep(drain).await;

        tracing::info!("shutdown: telling long-lived connections to close");
        shutdown.begin();

        tracing::info!(
            timeout_seconds = timeout.as_secs(),
            "shutdown: listener closed; finishing in-flight requests"
        );
        handle.stop(true).await;
        serving.await.map_err(io::Error::other)??;

        if !shutdown.wait(timeout).await {
            tracing::warn!("shutdown: some background tasks did not finish in time");
        }
        tracing::info!("shutdown: complete");
        Ok(())
    }
}

/// How often the lifecycle's upkeep runs.
const LIFECYCLE_UPKEEP_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How long an expired one-time token is kept before it is purged (spent or not, it can never
/// be spent again; the day is for whoever investigates a link that "did not work").
const EXPIRED_TOKEN_KEEP: time::Duration = time::Duration::DAY;

/// At start and then daily, on the shutdown tracker: purges audit events past
/// `audit.retention_days` and one-time tokens expired for a day. Every instance runs it; a
/// purge that finds nothing old is cheap.
fn spawn_lifecycle_upkeep(stores: &LifecycleStores, config: &Config, shutdown: &Shutdown) {
    let retention = config.audit.retention();
    let audit: Arc<dyn AuditLog> = Arc::clone(&stores.audit);
    let tokens: Arc<dyn OneTimeTokens> = Arc::clone(&stores.tokens);
    let token = shutdown.token();
    shutdown.spawn(async move {
        let mut interval = tokio::time::interval(LIFECYCLE_UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = interval.tick() => {
                    let now = time::OffsetDateTime::now_utc();
                    if let Some(retention) = retention {
                        match audit.purge(now - retention).await {
                            Ok(purged) => tracing::info!(purged, "audit retention"),
                            Err(error) => tracing::warn!(%error, "audit retention failed; trying again later"),
                        }
                    }
                    match tokens.purge_expired(now - EXPIRED_TOKEN_KEEP).await {
                        Ok(purged) => tracing::debug!(purged, "expired one-time tokens purged"),
                        Err(error) => tracing::warn!(%error, "could not purge expired one-time tokens"),
                    }
                }
            }
        }
    });
}

/// The mail transport: SMTP when configured, else (development: production requires SMTP)
/// `.eml` files in `mail.dir`.
fn mailer(config: &Config) -> Result<Arc<dyn Mailer>, StartupError> {
    let mail = &config.mail;
    Ok(match &mail.smtp_url {
        Some(url) => Arc::new(
            SmtpMailer::new(&SmtpConfig {
                url: url.clone(),
                from: mail.from.clone(),
                timeout: mail.timeout(),
                pool_size: mail.pool_size,
            })
            .map_err(StartupError::Mail)?,
        ),
        None => {
            tracing::warn!(dir = %mail.dir.display(),
                "no SMTP server configured: mail is written to files in mail.dir");
            Arc::new(FileMailer::new(&mail.dir, &mail.from).map_err(StartupError::Mail)?)
        }
    })
}

/// The configured key ring, or in development without keys an ephemeral one; either way
/// self-tested (sign and verify once) before the server takes traffic.
fn key_ring(config: &Config) -> Result<KeyRing, StartupError> {
    let keys = if config.auth.jwt.keys.is_empty() {
        tracing::warn!(
            "no JWT keys configured: using an ephemeral development key; every token dies when the server restarts"
        );
        KeyRing::generate_ephemeral(&config.auth.jwt)
    } else {
        KeyRing::from_config(&config.auth.jwt)
    }
    .map_err(StartupError::Keys)?;
    keys.self_test().map_err(StartupError::Keys)?;
    Ok(keys)
}

/// The session cookie's settings and key; a random key in development when none is configured.
fn cookie(config: &Config) -> Result<(SessionCookieConfig, Key), StartupError> {
    let settings = SessionCookieConfig {
        secure: config.cookie_secure(),
        name: config.cookie.name.clone(),
    };
    let key = match config.cookie_key_bytes() {
        Some(bytes) => cookie_key(&bytes).map_err(StartupError::Cookie)?,
        None => {
            tracing::warn!(
                "no cookie key configured: using a random one; session cookies die when the server restarts"
            );
            Key::generate()
        }
    };
    Ok((settings, key))
}

#[cfg(feature = "governor")]
fn spawn_flood_guard_pruning(http: &HttpApp, shutdown: &Shutdown) {
    let Some(guard) = http.flood_guard().cloned() else {
        return;
    };
    let token = shutdown.token();
    shutdown.spawn(async move {
        let mut interval = tokio::time::interval(FLOOD_GUARD_PRUNE_INTERVAL);
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = interval.tick() => guard.prune(),
            }
        }
    });
}
