//! The database of the app: its pool, its migrations at start-up, and its readiness.
//!
//! Start-up tries the migrations once. When the database cannot be reached, the server starts
//! anyway (unready: the `postgres` check fails) and a task on the shutdown tracker keeps trying,
//! with backoff, until they are applied; then the server becomes ready by itself. A migration
//! that fails for another reason stops start-up: that is a broken deploy, not an outage.

use std::time::Duration;

use keel_http_adapter::{CheckFailure, CheckFuture, ReadinessCheck};
use keel_storage::postgres::sqlx::PgPool;
use keel_storage::postgres::{self, DatabaseConfig, DatabaseError};
use tokio::sync::watch;

use crate::shutdown::Shutdown;
use crate::startup::StartupError;

/// The first and the longest pause between two migration attempts.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The app's database.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    config: DatabaseConfig,
    migrated: watch::Sender<bool>,
}

impl Database {
    /// The pool of `config`; nothing is connected yet.
    pub fn new(config: &DatabaseConfig) -> Result<Self, StartupError> {
        let pool = postgres::pool(config).map_err(StartupError::Database)?;
        Ok(Self {
            pool,
            config: config.clone(),
            migrated: watch::Sender::new(false),
        })
    }

    /// The pool every PostgreSQL store shares.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the migrations, or, when the database cannot be reached, keeps trying in the
    /// background (tracked by `shutdown`).
    ///
    /// # Errors
    ///
    /// [`StartupError::Database`] when a migration fails for a reason that waiting cannot fix.
    pub async fn migrate_or_keep_trying(&self, shutdown: &Shutdown) -> Result<(), StartupError> {
        match postgres::migrate(&self.config).await {
            Ok(()) => {
                tracing::info!("database migrations applied");
                self.migrated.send_replace(true);
                Ok(())
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(
                    error = %error,
                    cause = %cause(&error),
                    "the database cannot be reached: starting unready; migrations will run when it answers"
                );
                self.keep_trying(shutdown);
                Ok(())
            }
            Err(error) => Err(StartupError::Database(error)),
        }
    }

    fn keep_trying(&self, shutdown: &Shutdown) {
        let database = self.clone();
        let token = shutdown.token();
        shutdown.spawn(async move {
            let mut pause = RETRY_FIRST;
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                match postgres::migrate(&database.config).await {
                    Ok(()) => {
                        tracing::info!("the database answers: migrations applied; ready");
                        database.migrated.send_replace(true);
                        return;
                    }
                    Err(error) if error.is_transient() => {
                        tracing::debug!(error = %error, cause = %cause(&error), "database still unreachable");
                    }
                    Err(error) => {
                        tracing::error!(
                            error = %error,
                            cause = %cause(&error),
                            "the database migrations failed; the server stays unready"
                        );
                    }
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
        });
    }

    /// The readiness check of the database.
    pub fn check(&self) -> PostgresCheck {
        PostgresCheck {
            pool: self.pool.clone(),
            migrated: self.migrated.subscribe(),
        }
    }
}

fn cause(error: &DatabaseError) -> String {
    std::error::Error::source(error).map_or_else(String::new, ToString::to_string)
}

/// PostgreSQL answers a `SELECT 1` through the shared pool (so an exhausted pool counts as
/// down, which is what requests would see), and the migrations are applied.
pub struct PostgresCheck {
    pool: PgPool,
    migrated: watch::Receiver<bool>,
}

impl ReadinessCheck for PostgresCheck {
    fn name(&self) -> &'static str {
        "postgres"
    }

    // sqlx's errors do not repeat the URL, so their text (logged) holds no password.
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            if !*self.migrated.borrow() {
                return Err(CheckFailure::new(
                    "not_migrated",
                    "the migrations have not been applied yet",
                ));
            }
            let answer: i32 = keel_storage::postgres::sqlx::query_scalar("SELECT 1")
                .fetch_one(&self.pool)
                .await
                .map_err(|error| CheckFailure::new(postgres_reason(&error), error.to_string()))?;
            if answer == 1 {
                Ok(())
            } else {
                Err(CheckFailure::new(
                    "unexpected_answer",
                    format!("SELECT 1 answered {answer}"),
                ))
            }
        })
    }
}

/// The readiness reason of a PostgreSQL error.
fn postgres_reason(error: &keel_storage::postgres::sqlx::Error) -> &'static str {
    use keel_storage::postgres::sqlx::Error;
    match error {
        Error::PoolTimedOut => "timeout",
        // invalid_password, invalid_authorization_specification
        Error::Database(error) if matches!(error.code().as_deref(), Some("28P01" | "28000")) => {
            "auth_failed"
        }
        Error::Io(error) if error.kind() == std::io::ErrorKind::TimedOut => "timeout",
        _ => "unreachable",
    }
}
