//! Shutdown as a broadcast, then a wait: the app hands every long-lived task a token that is
//! cancelled when shutdown begins, and tracks the tasks so it can wait for all of them to end.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shutdown broadcast and the tasks that must end before the process exits.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A shutdown that has not begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token that is cancelled when long-lived connections must close (realtime sockets close
    /// with 1001 on it; periodic jobs stop).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs `task` on the runtime, tracked: shutdown waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Broadcasts the shutdown.
    pub fn begin(&self) {
        self.token.cancel();
    }

    /// Waits for every tracked task to end, at most `timeout`; says whether they all did.
    pub async fn wait(&self, timeout: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives between start-up and the first poll must not be lost (or, where the
/// parent ignores SIGINT, silently ignored). Call it inside the runtime, before start-up work.
pub fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
                        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
                    }
                }
                _ => {
                    tracing::error!("cannot listen for signals; the server stops only when killed");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(signal = "ctrl-c", "shutdown requested");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_see_the_broadcast_and_are_waited_for() {
        let shutdown = Shutdown::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let token = shutdown.token();
        shutdown.spawn(async move {
            token.cancelled().await;
            let _ = done_tx.send(());
        });
        shutdown.begin();
        assert!(shutdown.wait(Duration::from_secs(5)).await);
        done_rx.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_broadcast_does_not_hold_shutdown_forever() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending());
        shutdown.begin();
        assert!(!shutdown.wait(Duration::from_secs(3)).await);
    }
}
