//! The Keel server as a library: configuration, telemetry, wiring and graceful shutdown. The
//! `server` binary is a thin `main` over it, and tests build the same [`Application`] on port 0.

pub mod admin;
pub mod config;
pub mod database;
pub mod readiness;
pub mod realtime;
pub mod shutdown;
pub mod startup;
pub mod stores;
pub mod telemetry;

pub use config::Config;
pub use startup::{Application, StartupError};
