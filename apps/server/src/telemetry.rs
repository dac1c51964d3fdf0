//! Logs: `tracing` events on stdout, pretty for a terminal or one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber and a panic hook that logs panics as events (with their
/// location) instead of raw stderr text. Call once, at start-up.
pub fn init(config: &Config) {
    let filter = EnvFilter::builder().parse_lossy(&config.log.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
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
}
