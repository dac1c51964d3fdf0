//! Test support for Keel's own tests and for services built on Keel's crates:
//!
//! - [`redis::RedisServer`]: a private `redis-server` on a free port, stopped on drop, that
//!   fault tests can stop, restart and freeze;
//! - with the `app` feature, [`app::TestApp`]: the Keel app in-process on port 0 with an HTTP
//!   client, and [`process::ServerProcess`]: the real `server` binary as a child process, for
//!   signals, exit codes and logs.
//!
//! Each test owns what it starts; nothing is shared between tests.

#[cfg(feature = "app")]
pub mod app;
#[cfg(feature = "app")]
pub mod process;
pub mod redis;

#[cfg(feature = "app")]
pub use app::TestApp;
#[cfg(feature = "app")]
pub use process::ServerProcess;
