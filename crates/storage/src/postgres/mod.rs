//! PostgreSQL: Keel's system of record (feature `postgres`).
//!
//! - [`DatabaseConfig`] and [`pool`]: one bounded `sqlx` pool per process, shared by every
//!   store on the database (users here, sessions in keel-session), with connect, acquire and
//!   statement timeouts.
//! - [`migrate`]: the one migration set of the whole database, embedded from
//!   `crates/storage/migrations`, run under an advisory lock so that instances starting together
//!   migrate once. Applied migrations that this release does not know (a newer release ran
//!   them) are ignored, so a rollback is a deploy.
//! - [`PgUserRepository`]: the [`UserRepository`](keel_domain::UserRepository) port, and
//!   [`import_from_redis`] to move the accounts an earlier deployment kept in Redis.
//!
//! Every error of the database (down, timed out, refused) becomes the port's "unavailable"
//! error, for callers to fail closed; the cause rides along for the log.

mod import;
mod lifecycle;
mod users;

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use sqlx::ConnectOptions as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

pub use import::{ImportReport, import_from_redis};
pub use lifecycle::PgLifecycleStore;
pub use sqlx;
pub use users::PgUserRepository;

/// A pooled connection idle this long is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

/// Where the database is and how long anything may wait on it. A plain serde struct with
/// defaults; times are integer milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:5432/db?sslmode=require`; unset means no database. Secret:
    /// it may carry a password (printed redacted).
    #[serde(
        serialize_with = "redacted_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<SecretString>,
    /// Connections in the pool of each instance (10). Instances × pool size must stay below the
    /// server's `max_connections`.
    pub pool_size: u32,
    /// Bound on opening a connection, TLS and authentication included (1000 ms).
    pub connect_timeout_ms: u64,
    /// Bound on waiting for a pooled connection, connecting included (1000 ms).
    pub acquire_timeout_ms: u64,
    /// Bound on one statement: set as the server's `statement_timeout`, and enforced by the
    /// client too, so a frozen server cannot hang a request (2000 ms).
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 10,
            connect_timeout_ms: 1_000,
            acquire_timeout_ms: 1_000,
            statement_timeout_ms: 2_000,
        }
    }
}

impl DatabaseConfig {
    /// The connect bound.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The pool-wait bound.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// The statement bound.
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    /// The longest a store call may take before the client gives up on it: a pool wait, then
    /// a statement, then a margin for the answer to travel. Stores wrap every call in it.
    pub fn call_timeout(&self) -> Duration {
        self.acquire_timeout() + self.statement_timeout() + Duration::from_millis(250)
    }

    /// Checks what types alone cannot: a URL that parses, and bounds of at least 1.
    ///
    /// # Errors
    ///
    /// The field at fault and why; the message never repeats the URL.
    pub fn validate(&self) -> Result<(), InvalidDatabaseConfig> {
        if let Some(url) = &self.url {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(InvalidDatabaseConfig::new(
                    "url",
                    "must start with postgres:// or postgresql://",
                ));
            }
            if let Err(error) = PgConnectOptions::from_str(url) {
                return Err(InvalidDatabaseConfig::new(
                    "url",
                    format!("is not a PostgreSQL URL ({})", describe_url_error(&error)),
                ));
            }
        }
        for (field, value) in [
            ("pool_size", u64::from(self.pool_size)),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("acquire_timeout_ms", self.acquire_timeout_ms),
            ("statement_timeout_ms", self.statement_timeout_ms),
        ] {
            if value == 0 {
                return Err(InvalidDatabaseConfig::new(field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A [`DatabaseConfig`] field that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct InvalidDatabaseConfig {
    /// The field, as named in the configuration (`url`, `pool_size`...).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

impl InvalidDatabaseConfig {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Why the database could not be set up or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// No URL is configured, or it does not parse.
    #[error("the database configuration is unusable: {0}")]
    Config(#[from] InvalidDatabaseConfig),
    /// The database cannot be reached, or refused what was asked.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A migration failed, or the database holds a migration history this release cannot
    /// continue (an edited or half-applied migration).
    #[error("the database migrations failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
}

impl DatabaseError {
    /// Whether waiting may help: the database is down or unreachable (as opposed to a
    /// configuration or a migration that can never work).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Migration(sqlx::migrate::MigrateError::Execute(error)) => is_transient(error),
            _ => false,
        }
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    ) || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|code| {
        // 57P: the server is shutting down or starting up; 08: connection exceptions;
        // 53: insufficient resources (too many connections).
        code.starts_with("57P") || code.starts_with("08") || code.starts_with("53")
    }))
}

/// The connect options of `config` (its URL, with the statement timeout as a session setting).
///
/// # Errors
///
/// [`DatabaseError::Config`] when no URL is set or it does not parse.
fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, DatabaseError> {
    config.validate()?;
    let Some(url) = &config.url else {
        return Err(InvalidDatabaseConfig::new("url", "is not set").into());
    };
    let options = PgConnectOptions::from_str(url.expose_secret()).map_err(|error| {
        InvalidDatabaseConfig::new(
            "url",
            format!("is not a PostgreSQL URL ({})", describe_url_error(&error)),
        )
    })?;
    Ok(options
        .application_name("keel")
        // Statements are logged by Keel's own access line, not once more by sqlx.
        .disable_statement_logging())
}

/// Builds the pool of `config`. Connects lazily: building succeeds while the database is down
/// (the server starts unready, not dead).
///
/// Every statement carries the server-side `statement_timeout`, and an open transaction may not
/// idle longer than it either (`idle_in_transaction_session_timeout`), so a client that went
/// away cannot hold locks.
///
/// # Errors
///
/// [`DatabaseError::Config`] when no URL is set or it does not parse.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, DatabaseError> {
    let statement_ms = config.statement_timeout_ms.to_string();
    let options = connect_options(config)?.options([
        ("statement_timeout", statement_ms.as_str()),
        ("idle_in_transaction_session_timeout", statement_ms.as_str()),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(config.pool_size)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout())
        // sqlx already pings every connection when it comes back to the pool; pinging it again
        // on the way out would add a round trip to every query. Only a connection that sat idle
        // (a restart or failover may have closed it meanwhile) is pinged before use.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_lazy_with(options))
}

/// The embedded migration set, as this release knows it.
fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    // A newer release may have applied migrations this one does not know: it must still run.
    migrator.set_ignore_missing(true);
    migrator
}

/// The versions of the embedded migrations, oldest first.
pub fn migration_versions() -> Vec<i64> {
    migrator()
        .iter()
        .map(|migration| migration.version)
        .collect()
}

/// Applies every embedded migration that the database lacks, under PostgreSQL's advisory lock
/// (one instance migrates while the others wait, then find nothing to do). Runs on a connection
/// of its own without the statement timeout, bounded by `connect_timeout` to connect: a long
/// migration (an index on a big table) must not be cut off.
///
/// # Errors
///
/// [`DatabaseError::Unavailable`] when the database cannot be reached (retry later),
/// [`DatabaseError::Migration`] when a migration fails or the history cannot be continued.
pub async fn migrate(config: &DatabaseConfig) -> Result<(), DatabaseError> {
    let options = connect_options(config)?;
    let mut connection: PgConnection =
        match tokio::time::timeout(config.connect_timeout(), options.connect()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(DatabaseError::Unavailable(error)),
            Err(_) => {
                return Err(DatabaseError::Unavailable(sqlx::Error::Io(
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no connection within the connect timeout",
                    ),
                )));
            }
        };
    let outcome = migrator().run_direct(&mut connection).await;
    // Closing politely is a courtesy; the migration's outcome is what matters.
    let _ = sqlx::Connection::close(connection).await;
    outcome.map_err(DatabaseError::Migration)
}

/// Serialises a database URL with its password replaced, so operators still see the host.
fn redacted_url<S: Serializer>(
    url: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let Some(url) = url else {
        return serializer.serialize_none();
    };
    serializer.serialize_str(&redact_url(url.expose_secret()))
}

/// `url` with everything between `://` and the last `@` (user and password) replaced.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://[REDACTED]{}", &url[at..]),
        _ => url.to_owned(),
    }
}

/// What is wrong with a URL, without repeating it (it may hold a password).
fn describe_url_error(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Configuration(_) => "a part of it is not understood",
        _ => "it does not parse",
    }
}

/// Maps any database error to the port's "unavailable", with the cause.
pub(crate) fn unavailable(
    error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> keel_domain::RepositoryError {
    keel_domain::RepositoryError::unavailable(error)
}

/// Runs a store call within `bound`, or fails it as unavailable: the server-side statement
/// timeout cannot fire on a server that is frozen or a network that dropped the packets.
pub(crate) async fn bounded<T>(
    bound: Duration,
    call: impl Future<Output = Result<T, keel_domain::RepositoryError>>,
) -> Result<T, keel_domain::RepositoryError> {
    match tokio::time::timeout(bound, call).await {
        Ok(outcome) => outcome,
        Err(_) => Err(unavailable(format!(
            "no answer from PostgreSQL within {} ms",
            bound.as_millis()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> DatabaseConfig {
        DatabaseConfig {
            url: Some(SecretString::from(url)),
            ..DatabaseConfig::default()
        }
    }

    #[test]
    fn urls_must_be_postgresql_urls() {
        assert!(with_url("postgres://keel@db:5432/keel").validate().is_ok());
        assert!(
            with_url("postgresql://keel:pw@db/keel?sslmode=require")
                .validate()
                .is_ok()
        );
        assert_eq!(
            with_url("mysql://db/keel").validate().unwrap_err().field,
            "url"
        );
        let error = with_url("postgres://keel:canary@db:notaport/keel")
            .validate()
            .unwrap_err();
        assert_eq!(error.field, "url");
        assert!(!error.to_string().contains("canary"), "{error}");
        assert!(
            with_url("postgres://db/keel?sslmode=sometimes")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn zero_bounds_are_refused() {
        let config = DatabaseConfig {
            statement_timeout_ms: 0,
            ..DatabaseConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "statement_timeout_ms");
        let config = DatabaseConfig {
            pool_size: 0,
            ..DatabaseConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "pool_size");
    }

    #[test]
    fn printing_redacts_the_credentials_but_keeps_the_host() {
        let printed =
            serde_json::to_string(&with_url("postgres://keel:canary-pw@db.internal:5432/keel"))
                .unwrap();
        assert!(!printed.contains("canary"), "{printed}");
        assert!(printed.contains("postgres://[REDACTED]@db.internal:5432/keel"));
    }

    #[test]
    fn migrations_are_embedded_in_order() {
        let versions = migration_versions();
        assert!(!versions.is_empty());
        assert!(versions.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[tokio::test]
    async fn building_a_pool_does_not_connect() {
        // Nothing listens on port 1: a lazy pool builds anyway.
        let pool = pool(&with_url("postgres://keel@127.0.0.1:1/keel")).unwrap();
        assert_eq!(pool.size(), 0);
    }
}
