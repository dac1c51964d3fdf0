//! The administrative commands of the binary: `server migrate`,
//! `server users import-from-redis` and `server admin grant <email>`. Each logs what it did and
//! returns the exit code.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use keel_domain::{AuditEvent, AuditKind, AuditLog as _, Email, UserChange, UserRepository};
use keel_session::RedisPoolConfig;
use keel_storage::postgres::{self, PgLifecycleStore, PgUserRepository};
use keel_storage::{CachedUserRepository, RedisUserRepository};

use crate::config::{Config, ConfigError};

/// `database.url` must be set for this command.
pub fn needs_database(config: &Config) -> Result<(), ConfigError> {
    match config.database.url {
        Some(_) => Ok(()),
        None => Err(ConfigError::missing(
            "database.url",
            "is not set; this command works on the PostgreSQL database (KEEL_DATABASE__URL)",
        )),
    }
}

/// `redis.url` must be set for this command.
pub fn needs_redis(config: &Config) -> Result<(), ConfigError> {
    match config.redis.url {
        Some(_) => Ok(()),
        None => Err(ConfigError::missing(
            "redis.url",
            "is not set; this command reads the accounts kept in Redis (KEEL_REDIS__URL)",
        )),
    }
}

/// Applies the migrations and exits: 0 when the database is up to date, 1 otherwise.
pub async fn migrate(config: &Config) -> ExitCode {
    match postgres::migrate(&config.database).await {
        Ok(()) => {
            tracing::info!(
                versions = postgres::migration_versions().len(),
                "database migrations applied; the database is up to date"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(
                error = %error,
                cause = %std::error::Error::source(&error).map_or_else(String::new, ToString::to_string),
                "the migrations failed"
            );
            ExitCode::FAILURE
        }
    }
}

/// Migrates, then copies every account of the Redis user store into PostgreSQL. Exits 0 when
/// every account is in PostgreSQL (imported now or before), 1 when some could not be (each is
/// logged with its id and why) or a store failed.
pub async fn import_users_from_redis(config: &Config) -> ExitCode {
    if migrate(config).await != ExitCode::SUCCESS {
        return ExitCode::FAILURE;
    }
    let (Some(url), Ok(pg)) = (&config.redis.url, postgres::pool(&config.database)) else {
        tracing::error!("cannot set up the stores");
        return ExitCode::FAILURE;
    };
    let redis = match keel_session::redis_pool(&RedisPoolConfig {
        url: url.clone(),
        max_size: 2,
        connect_timeout: Duration::from_millis(config.redis.connect_timeout_ms),
        response_timeout: Duration::from_millis(config.redis.response_timeout_ms),
        wait_timeout: Duration::from_millis(config.redis.wait_timeout_ms),
    }) {
        Ok(pool) => pool,
        Err(error) => {
            tracing::error!(%error, "cannot set up Redis");
            return ExitCode::FAILURE;
        }
    };
    let source = RedisUserRepository::new(redis).with_key_prefix(&config.session.key_prefix);
    let target = PgUserRepository::new(pg, &config.database);
    match postgres::import_from_redis(&source, &target).await {
        Ok(report) => {
            for (id, reason) in &report.conflicts {
                tracing::error!(user_id = %id, reason, "account not imported");
            }
            tracing::info!(
                imported = report.imported,
                already_present = report.already_present,
                not_imported = report.conflicts.len(),
                "accounts imported from Redis"
            );
            if report.conflicts.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            tracing::error!(
                error = %error,
                cause = %std::error::Error::source(&error).map_or_else(String::new, ToString::to_string),
                "the import stopped; what was imported stays, and running it again continues"
            );
            ExitCode::FAILURE
        }
    }
}

/// Migrates, then gives the account with `email` the `admin` role in the database (recorded in
/// the audit log as `user.role_granted`, without an actor: the operator ran it). Exits 0 when
/// the account has the role (now or before), 1 when no account has the address or a store
/// failed.
pub async fn grant_admin(config: &Config, email: &str) -> ExitCode {
    if migrate(config).await != ExitCode::SUCCESS {
        return ExitCode::FAILURE;
    }
    let Ok(email) = Email::parse_lenient(email) else {
        tracing::error!("not an e-mail address");
        return ExitCode::FAILURE;
    };
    let Ok(pool) = postgres::pool(&config.database) else {
        tracing::error!("cannot set up the database");
        return ExitCode::FAILURE;
    };
    let audit = PgLifecycleStore::new(pool.clone(), &config.database);
    let database: Arc<dyn UserRepository> = Arc::new(PgUserRepository::new(pool, &config.database));
    // With Redis configured, the servers read accounts through a snapshot there: change the
    // account through it too, so the role counts at once and not when the snapshot expires.
    let users: Arc<dyn UserRepository> = match &config.redis.url {
        Some(url) => match keel_session::redis_pool(&RedisPoolConfig {
            url: url.clone(),
            max_size: 2,
            connect_timeout: Duration::from_millis(config.redis.connect_timeout_ms),
            response_timeout: Duration::from_millis(config.redis.response_timeout_ms),
            wait_timeout: Duration::from_millis(config.redis.wait_timeout_ms),
        }) {
            Ok(redis) => Arc::new(CachedUserRepository::new(
                database,
                redis,
                &config.session.key_prefix,
            )),
            Err(error) => {
                tracing::error!(%error, "cannot set up Redis");
                return ExitCode::FAILURE;
            }
        },
        None => database,
    };
    let record = match users.find_by_email(&email).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            tracing::error!("no account has this address; register it first");
            return ExitCode::FAILURE;
        }
        Err(error) => {
            tracing::error!(%error, "cannot read the account");
            return ExitCode::FAILURE;
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let role = keel_auth::admin::ADMIN_ROLE;
    let event =
        AuditEvent::new(AuditKind::RoleGranted, Some(record.user.id), now).with("role", role);
    // The grant and its audit event are one transaction.
    match users
        .update_audited(
            record.user.id,
            UserChange::GrantRole(role.to_owned()),
            now,
            event,
        )
        .await
    {
        Ok(audited) => {
            if let Some(event) = audited.unrecorded
                && let Err(error) = audit.append(event).await
            {
                tracing::warn!(%error, "the role is granted, but the audit log did not record it");
            }
        }
        Err(error) => {
            tracing::error!(%error, "cannot grant the role");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(user_id = %record.user.id, "admin role granted");
    ExitCode::SUCCESS
}
