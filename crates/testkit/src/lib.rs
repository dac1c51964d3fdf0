//! Test support for Keel's own tests and for services built on Keel's crates:
//!
//! - [`redis::RedisServer`]: a private `redis-server` on a free port, stopped on drop, that
//!   fault tests can stop, restart and freeze;
//! - [`postgres::PostgresServer`]: a private PostgreSQL server per test binary with a fresh
//!   database per test, or one of a fault test's own to stop and start;
//! - [`smtp::SmtpSink`]: a real SMTP server on a free port that keeps what it receives, and
//!   can be stopped and started again;
//! - [`eventually`]: waits for a condition instead of sleeping;
//! - with the `app` feature, [`app::TestApp`]: the Keel app in-process on port 0 with an HTTP
//!   client, and [`process::ServerProcess`]: the real `server` binary as a child process, for
//!   signals, exit codes and logs.
//!
//! Each test owns what it starts. The one exception is [`postgres::PostgresServer::shared`], one
//! server per test binary, in which each test still owns a database of its own.

#[cfg(feature = "app")]
pub mod app;
mod eventually;
mod net;
pub mod postgres;
#[cfg(feature = "app")]
pub mod process;
pub mod redis;
pub mod smtp;
mod tls;
mod watchdog;

#[cfg(feature = "app")]
pub use app::TestApp;
pub use eventually::eventually;
#[cfg(feature = "app")]
pub use process::ServerProcess;
