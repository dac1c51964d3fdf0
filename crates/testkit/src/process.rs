//! The real `server` binary as a child process, for what only a process can show: signals,
//! exit codes and what it prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// The `server` binary built next to the running test binary.
///
/// `cargo test --workspace` builds it (apps/server has integration tests, which makes cargo
/// build its binary); run `cargo build -p server` first when testing one package alone.
pub fn server_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary knows its path");
    // target/<profile>/deps/<test binary> -> target/<profile>/server
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join("server");
    assert!(
        binary.is_file(),
        "{} does not exist: run `cargo build -p server` (or `cargo test --workspace`) first",
        binary.display()
    );
    binary
}

/// A running `server` process with its stdout captured line by line.
pub struct ServerProcess {
    child: Child,
    output: Arc<Output>,
    address: Option<SocketAddr>,
}

#[derive(Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    changed: Notify,
    closed: Mutex<bool>,
}

impl ServerProcess {
    /// Starts the binary with these extra environment variables (and JSON logs, loopback, port
    /// 0), without waiting for anything.
    pub fn spawn(env: &[(&str, &str)]) -> Self {
        Self::spawn_with_args(&[], env)
    }

    /// Starts the binary with arguments and extra environment variables.
    pub fn spawn_with_args(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(server_binary());
        command
            .args(args)
            .env("KEEL_SERVER__HOST", "127.0.0.1")
            .env("KEEL_SERVER__PORT", "0")
            .env("KEEL_SERVER__WORKERS", "1")
            .env("KEEL_LOG__FORMAT", "json")
            .env("KEEL_MAIL__DIR", crate::app::test_mail_dir())
            .env("KEEL_MAIL__POLL_INTERVAL_MS", "100")
            .env("KEEL_MAIL__RETRY_BACKOFF_MS", "200")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the server binary starts");
        let output = Arc::new(Output::default());
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lines.lock().expect("output lock").push(line);
                    output.changed.notify_waiters();
                }
                *output.closed.lock().expect("output lock") = true;
                output.changed.notify_waiters();
            });
        }
        Self {
            child,
            output,
            address: None,
        }
    }

    /// Starts the binary and waits until it listens; panics if it does not within 20 s.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let mut process = Self::spawn(env);
        let line = process
            .wait_for_line(Duration::from_secs(20), |line| {
                line.contains("\"listening\"")
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "the server did not start; it printed:\n{}",
                    process.output()
                )
            });
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON logs");
        let address = event["address"]
            .as_str()
            .expect("the listening event names the address");
        process.address = Some(address.parse().expect("a socket address"));
        process
    }

    /// The address it listens on (after [`ServerProcess::start`]).
    pub fn address(&self) -> SocketAddr {
        self.address.expect("start() waits for the address")
    }

    /// The absolute URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address(), path)
    }

    /// Waits until a printed line satisfies `matches`, and returns it; `None` after `timeout`
    /// or when the process closed its output without printing one.
    pub async fn wait_for_line(
        &self,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.output.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(line) = self
                .output
                .lines
                .lock()
                .expect("output lock")
                .iter()
                .find(|l| matches(l))
            {
                return Some(line.clone());
            }
            if *self.output.closed.lock().expect("output lock") {
                return None;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Everything it has printed so far, stdout and stderr interleaved.
    pub fn output(&self) -> String {
        self.output.lines.lock().expect("output lock").join("\n")
    }

    /// Sends a signal (SIGTERM, SIGINT, ...).
    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("the process is running");
        let pid = Pid::from_raw(i32::try_from(pid).expect("a pid fits in i32"));
        signal::kill(pid, signal).expect("the signal is delivered");
    }

    /// Waits for the process to exit, at most `timeout`; `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("waiting for the child works"))
    }
}
