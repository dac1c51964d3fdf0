//! Logs: `tracing` events on stdout, pretty for a terminal or one JSON object per line.

use std::io::BufWriter;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Keeps the log writer thread running; dropping it flushes what is still queued. Hold it
/// until the process ends.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code, reason = "held for its Drop")] WorkerGuard);

/// Installs the global subscriber and a panic hook that logs panics as events (with their
/// location) instead of raw stderr text. Call once, at start-up, and keep the guard.
///
/// Lines are formatted on the thread that logs and written by a thread of their own through a
/// 64 KiB buffer, flushed whenever the queue runs empty: under load many lines share one
/// `write`, instead of one system call per line under stdout's lock on a request's thread. The
/// queue is not lossy: when it is full, logging waits rather than drop lines.
pub fn init(config: &Config) -> LogGuard {
    let filter = EnvFilter::builder().parse_lossy(&config.log.level);
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("keel-log")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match config.log_format() {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    // A subscriber already installed (by a test harness, say) keeps its place.
    drop(installed);
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(panic = %message, location = location.as_deref().unwrap_or("unknown"), "panic");
    }));
    LogGuard(guard)
}
