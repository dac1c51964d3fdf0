//! Which store serves what: the README's table, in one place.
//!
//! | configured | users | sessions | quotas | realtime | tokens, outbox, audit |
//! |---|---|---|---|---|---|
//! | nothing | memory | memory | memory | this process | memory |
//! | Redis | Redis | Redis | Redis | Redis pub/sub | Redis |
//! | PostgreSQL | PostgreSQL, with a 5 s copy per user in memory | PostgreSQL | memory (per instance) | this process | PostgreSQL |
//! | both | PostgreSQL, with a Redis snapshot per user | Redis | Redis | Redis pub/sub | PostgreSQL |
//!
//! PostgreSQL without Redis is for one instance: it keeps accounts and sessions across
//! restarts and deploys, but nothing tells other instances about a revocation and each counts
//! its own quotas. The user read of an authenticated request is not a database round trip:
//! with both stores it reads the user's Redis snapshot, with PostgreSQL alone a short-lived
//! copy in this process.

use std::sync::Arc;
use std::time::Duration;

use keel_domain::{AuditLog, OneTimeTokens, Outbox, RateLimiter, UserRepository};
use keel_session::deadpool_redis::Pool;
use keel_session::{
    MemorySessionStore, PgSessionStore, RedisPoolConfig, RedisSessionStore, SessionStore,
};
use keel_storage::postgres::{PgLifecycleStore, PgUserRepository};
use keel_storage::{
    CachedUserRepository, InMemoryRateLimiter, InMemoryUserRepository, LocalUserCache,
    MemoryLifecycleStore, RedisLifecycleStore, RedisRateLimiter, RedisUserRepository,
};

use crate::config::{Config, RedisConfig};
use crate::database::Database;
use crate::shutdown::Shutdown;
use crate::startup::StartupError;

/// How often the in-process quota limiter forgets replenished keys.
const RATE_LIMITER_PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How often ended sessions are purged from PostgreSQL (it has no TTLs), and how many per
/// statement.
const SESSION_PURGE_INTERVAL: Duration = Duration::from_secs(300);
const SESSION_PURGE_BATCH: u32 = 1_000;

/// The account lifecycle's store, as its three ports.
pub struct LifecycleStores {
    /// One-time tokens (queued with their mail).
    pub tokens: Arc<dyn OneTimeTokens>,
    /// The mail outbox.
    pub outbox: Arc<dyn Outbox>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
}

impl LifecycleStores {
    fn of<S: OneTimeTokens + Outbox + AuditLog>(store: S) -> Self {
        let store = Arc::new(store);
        Self {
            tokens: store.clone(),
            outbox: store.clone(),
            audit: store,
        }
    }
}

/// The stores of the app, chosen from the configuration.
pub struct Stores {
    /// Accounts.
    pub users: Arc<dyn UserRepository>,
    /// The session registry.
    pub sessions: Arc<dyn SessionStore>,
    /// Keel's quota limiter.
    pub limiter: Arc<dyn RateLimiter>,
    /// One-time tokens, the mail outbox and the audit log: one store, three ports.
    pub lifecycle: LifecycleStores,
    /// The one Redis pool, when Redis is configured.
    pub redis: Option<Pool>,
    /// The database, when PostgreSQL is configured.
    pub database: Option<Database>,
}

impl Stores {
    /// Builds the stores (connecting to nothing yet) and starts their upkeep tasks on the
    /// shutdown tracker: pruning the in-process limiter, purging ended PostgreSQL sessions.
    pub fn build(config: &Config, shutdown: &Shutdown) -> Result<Self, StartupError> {
        let redis = redis_pool(&config.redis)?;
        let database = match &config.database.url {
            Some(_) => Some(Database::new(&config.database)?),
            None => None,
        };
        let prefix = &config.session.key_prefix;

        let users: Arc<dyn UserRepository> = match (&database, &redis) {
            (Some(database), Some(pool)) => Arc::new(CachedUserRepository::new(
                Arc::new(PgUserRepository::new(
                    database.pool().clone(),
                    &config.database,
                )),
                pool.clone(),
                prefix,
            )),
            // One instance: a few seconds' copy in its own memory does what the Redis snapshot
            // does for many.
            (Some(database), None) => Arc::new(LocalUserCache::new(Arc::new(
                PgUserRepository::new(database.pool().clone(), &config.database),
            ))),
            (None, Some(pool)) => {
                Arc::new(RedisUserRepository::new(pool.clone()).with_key_prefix(prefix))
            }
            (None, None) => Arc::new(InMemoryUserRepository::new()),
        };

        let sessions: Arc<dyn SessionStore> = match (&redis, &database) {
            (Some(pool), _) => {
                Arc::new(RedisSessionStore::new(pool.clone(), config.session.clone()))
            }
            (None, Some(database)) => {
                let store = PgSessionStore::new(
                    database.pool().clone(),
                    config.session.clone(),
                    config.database.call_timeout(),
                );
                spawn_session_purge(store.clone(), shutdown);
                Arc::new(store)
            }
            (None, None) => Arc::new(MemorySessionStore::new(config.session.clone())),
        };

        // The system of record when there is one; else shared through Redis, so any instance
        // spends a token another issued and sends any instance's mail.
        let lifecycle = match (&database, &redis) {
            (Some(database), _) => LifecycleStores::of(PgLifecycleStore::new(
                database.pool().clone(),
                &config.database,
            )),
            (None, Some(pool)) => {
                LifecycleStores::of(RedisLifecycleStore::new(pool.clone(), prefix))
            }
            (None, None) => LifecycleStores::of(MemoryLifecycleStore::new()),
        };

        // With Redis, quotas hold across every instance (the edge falls back to in-process
        // limits while Redis cannot answer); without it, this process is the only one.
        let limiter: Arc<dyn RateLimiter> = match &redis {
            Some(pool) => Arc::new(RedisRateLimiter::new(pool.clone()).with_key_prefix(prefix)),
            None => {
                let limiter = Arc::new(InMemoryRateLimiter::new());
                spawn_rate_limiter_pruning(&limiter, shutdown);
                limiter
            }
        };

        let (users_in, sessions_in, shared_in) = match (&database, &redis) {
            (Some(_), Some(_)) => ("postgres (snapshots in redis)", "redis", "redis"),
            (Some(_), None) => (
                "postgres (copies in this process)",
                "postgres",
                "this process",
            ),
            (None, Some(_)) => ("redis", "redis", "redis"),
            (None, None) => ("memory", "memory", "this process"),
        };
        tracing::info!(
            users = users_in,
            sessions = sessions_in,
            quotas_and_realtime = shared_in,
            "stores"
        );
        if database.is_some() && redis.is_none() {
            tracing::warn!(
                "PostgreSQL without Redis: run one instance only. Accounts and sessions survive \
                 restarts, but a revocation reaches only this instance's sockets and quotas are \
                 counted per instance; configure redis.url to run several"
            );
        }
        Ok(Self {
            users,
            sessions,
            limiter,
            lifecycle,
            redis,
            database,
        })
    }
}

/// The one pool shared by everything that talks to Redis, when Redis is configured. Building it
/// does not connect: a Redis that is down at start makes the server unready, not dead.
fn redis_pool(config: &RedisConfig) -> Result<Option<Pool>, StartupError> {
    let Some(url) = &config.url else {
        return Ok(None);
    };
    let pool = keel_session::redis_pool(&RedisPoolConfig {
        url: url.clone(),
        max_size: config.pool_size,
        connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        response_timeout: Duration::from_millis(config.response_timeout_ms),
        wait_timeout: Duration::from_millis(config.wait_timeout_ms),
    })
    .map_err(StartupError::Redis)?;
    Ok(Some(pool))
}

/// Forgets rate-limit keys whose quota has fully replenished.
fn spawn_rate_limiter_pruning(limiter: &Arc<InMemoryRateLimiter>, shutdown: &Shutdown) {
    let limiter = Arc::clone(limiter);
    let token = shutdown.token();
    shutdown.spawn(async move {
        let mut interval = tokio::time::interval(RATE_LIMITER_PRUNE_INTERVAL);
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = interval.tick() => { limiter.prune(time::OffsetDateTime::now_utc()); }
            }
        }
    });
}

/// Removes ended sessions from PostgreSQL now and then, a bounded batch per statement.
fn spawn_session_purge(store: PgSessionStore, shutdown: &Shutdown) {
    let token = shutdown.token();
    shutdown.spawn(async move {
        // The first purge one interval after start-up, when the migrations have long run.
        let mut interval = tokio::time::interval_at(
            tokio::time::Instant::now() + SESSION_PURGE_INTERVAL,
            SESSION_PURGE_INTERVAL,
        );
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = interval.tick() => {}
            }
            let mut purged = 0;
            loop {
                match store
                    .purge_ended(time::OffsetDateTime::now_utc(), SESSION_PURGE_BATCH)
                    .await
                {
                    Ok(batch) => {
                        purged += batch;
                        if batch < u64::from(SESSION_PURGE_BATCH) || token.is_cancelled() {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "could not purge ended sessions; will retry");
                        break;
                    }
                }
            }
            if purged > 0 {
                tracing::info!(sessions = purged, "purged ended sessions");
            }
        }
    });
}
