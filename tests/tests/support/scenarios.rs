//! Driving the official `socket.io-client` from Rust: the Node scenario scripts of `tests/js`
//! (see its README) run as child processes, and the echo example as a server process.
//!
//! - [`ensure_node_modules`] installs the pinned client with `npm ci` once, when
//!   `tests/js/node_modules` is missing or holds another version (a `OnceLock` within the test
//!   binary, a file lock across processes);
//! - [`Scenario`] runs one script, reads its sync lines (`{"signal":..}` / `{"event":..}`), writes
//!   to its stdin, and reads its final JSON line; every wait is bounded;
//! - [`EchoServer`] runs `target/<profile>/examples/echo` on a port it can be restarted on.
//!
//! Included by `#[path]` from the test files that need it (the `support` module is shared by the
//! auth tests and does not include it).

#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The Node project with the pinned client and the scenario scripts.
pub const JS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/js");

/// Longest `npm ci` may take (a cold npm cache downloads 9 small packages).
const NPM_CI_LIMIT: Duration = Duration::from_secs(300);

/// How long a scenario may run by default, on top of its own watchdog.
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(60);

/// The per-wait timeout given to the scripts (`--timeout`).
pub const WAIT_MS: &str = "10000";

static NODE_MODULES: OnceLock<Result<(), String>> = OnceLock::new();

/// Makes sure `tests/js/node_modules` holds the pinned `socket.io-client`, running `npm ci` once
/// if not. Panics with a clear message when Node.js or npm is missing or the install fails.
pub fn ensure_node_modules() {
    if let Err(message) = NODE_MODULES.get_or_init(install_node_modules) {
        panic!("{message}");
    }
}

/// The version of `socket.io-client` that tests/js/package.json pins.
fn pinned_client_version(js: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(js.join("package.json"))
        .map_err(|e| format!("cannot read {}/package.json: {e}", js.display()))?;
    let manifest: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}/package.json is not JSON: {e}", js.display()))?;
    manifest["dependencies"]["socket.io-client"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{}/package.json pins no socket.io-client", js.display()))
}

/// Whether node_modules has the pinned client (and its lockfile-written marker).
fn installed(js: &Path, pinned: &str) -> bool {
    let modules = js.join("node_modules");
    let version = std::fs::read_to_string(modules.join("socket.io-client/package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|manifest| manifest["version"].as_str().map(str::to_owned));
    version.as_deref() == Some(pinned) && modules.join(".package-lock.json").is_file()
}

fn install_node_modules() -> Result<(), String> {
    let js = Path::new(JS_DIR);
    match StdCommand::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("`node --version` failed ({status})")),
        Err(e) => {
            return Err(format!(
                "Node.js was not found on PATH ({e}). The Socket.IO interop tests run the official \
                 socket.io-client under Node.js >= 18: install Node.js with npm \
                 (e.g. `apt-get install nodejs npm`) and run the tests again."
            ));
        }
    }
    let pinned = pinned_client_version(js)?;
    if installed(js, &pinned) {
        return Ok(());
    }
    // Another test process (nextest, a second `cargo test`) may be installing right now: take a
    // lock, released by the kernel if the holder dies, then look again.
    let lock_path = std::env::temp_dir().join("keel-e2e-npm-ci.lock");
    let lock_file = File::create(&lock_path)
        .map_err(|e| format!("cannot create the lock file {}: {e}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    if installed(js, &pinned) {
        return Ok(());
    }
    let child = StdCommand::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(js)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "npm was not found on PATH, and {}/node_modules is missing. The Socket.IO interop \
                 tests need the pinned socket.io-client: install npm (it comes with Node.js) and \
                 run the tests again, or run `npm ci` in tests/js yourself.",
                js.display()
            ));
        }
        Err(e) => return Err(format!("cannot run `npm ci`: {e}")),
    };
    let output = drain_std(child.stdout.take(), child.stderr.take());
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let status = match waited.recv_timeout(NPM_CI_LIMIT) {
        Ok(status) => status.map_err(|e| format!("waiting for `npm ci`: {e}"))?,
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(format!(
                "`npm ci` in {} did not finish within {NPM_CI_LIMIT:?}",
                js.display()
            ));
        }
    };
    if !status.success() || !installed(js, &pinned) {
        let text = output.join().unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        return Err(format!(
            "`npm ci` in {} failed ({status}); its last output:\n{}",
            js.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(())
}

/// Reads a child's stdout and stderr to the end on threads; the handle returns both.
fn drain_std(
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.read_to_string(&mut text);
            }
            text
        });
        let mut text = String::new();
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_string(&mut text);
        }
        text + &err.join().unwrap_or_default()
    })
}

/// Collects a child's stream into a shared string, line by line, in a task.
fn collect(stream: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = sink.lock().expect("output lock");
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

/// One scenario script running as a child process.
pub struct Scenario {
    script: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    deadline: Instant,
}

/// How a scenario ended.
#[derive(Debug)]
pub struct Outcome {
    pub script: String,
    pub status: Option<ExitStatus>,
    /// The last stdout line as JSON (`Value::Null` when there was none or it is not JSON).
    pub result: Value,
    pub lines: Vec<String>,
    pub stderr: String,
}

impl Outcome {
    /// The result, after checking exit 0 and `"ok": true`; panics with everything otherwise.
    pub fn ok(self) -> Value {
        let success = self.status.is_some_and(|s| s.success());
        assert!(
            success && self.result["ok"] == Value::Bool(true),
            "scenario {} failed ({}):\n  result: {}\n  stdout:\n{}\n  stderr:\n{}",
            self.script,
            self.status
                .map_or_else(|| "still running: killed".to_owned(), |s| s.to_string()),
            self.result,
            self.lines.join("\n"),
            self.stderr,
        );
        self.result
    }
}

impl Scenario {
    /// Starts `node scenarios/<script>.mjs <args...> --timeout WAIT_MS`, bounded by
    /// [`SCENARIO_LIMIT`].
    pub fn start(script: &str, args: &[&str]) -> Self {
        Self::start_with_limit(script, args, SCENARIO_LIMIT)
    }

    /// As [`Scenario::start`], with another bound for the whole run.
    pub fn start_with_limit(script: &str, args: &[&str], limit: Duration) -> Self {
        ensure_node_modules();
        let path = PathBuf::from(JS_DIR)
            .join("scenarios")
            .join(format!("{script}.mjs"));
        assert!(path.is_file(), "no scenario script {}", path.display());
        let mut child = Command::new("node")
            .arg(&path)
            .args(args)
            .args(["--timeout", WAIT_MS])
            .current_dir(JS_DIR)
            // Client debug logs would go to stderr only, but keep the output as documented.
            .env_remove("DEBUG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            script: script.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            deadline: Instant::now() + limit,
        }
    }

    /// Waits for a sync line whose `"signal"` or `"event"` is `name`, and returns it. Panics
    /// when the script ends or the time runs out first.
    pub async fn wait_signal(&mut self, name: &str, timeout: Duration) -> Value {
        let until = (Instant::now() + timeout).min(self.deadline);
        loop {
            match tokio::time::timeout_at(until, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    let Ok(value) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if value["signal"] == name || value["event"] == name {
                        return value;
                    }
                    if value.get("ok").is_some() {
                        panic!(
                            "scenario {} ended before the sync line {name:?}: {line}\nstderr:\n{}",
                            self.script,
                            self.stderr()
                        );
                    }
                }
                Ok(None) => panic!(
                    "scenario {} closed its output before the sync line {name:?}; stdout:\n{}\nstderr:\n{}",
                    self.script,
                    self.seen.join("\n"),
                    self.stderr()
                ),
                Err(_) => panic!(
                    "scenario {} printed no sync line {name:?} within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    self.script,
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Writes one line to the script's stdin (for a `waitInput` step).
    pub async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the scenario's stdin");
        stdin.flush().await.expect("flush the scenario's stdin");
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("output lock").clone()
    }

    /// Waits for the script to exit (killing it at the deadline) and reads its last line.
    pub async fn finish(mut self) -> Outcome {
        drop(self.stdin.take());
        let status = match tokio::time::timeout_at(self.deadline, self.child.wait()).await {
            Ok(status) => Some(status.expect("wait for the scenario")),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        };
        // The reader task ends at EOF, which follows the exit.
        let drain_until = Instant::now() + Duration::from_secs(5);
        while let Ok(Some(line)) = tokio::time::timeout_at(drain_until, self.lines.recv()).await {
            self.seen.push(line);
        }
        let result = self
            .seen
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or(Value::Null);
        Outcome {
            script: self.script.clone(),
            status,
            result,
            lines: std::mem::take(&mut self.seen),
            stderr: self.stderr(),
        }
    }
}

/// Runs a scenario to its end and returns its result after checking it passed.
pub async fn run_ok(script: &str, args: &[&str]) -> Value {
    Scenario::start(script, args).finish().await.ok()
}

/// `target/<profile>/examples/<name>`, next to the running test binary.
pub fn example_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary knows its path");
    // target/<profile>/deps/<test binary> -> target/<profile>/examples/<name>
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.is_file(),
        "{} does not exist: run `cargo build -p keel-realtime --example {name}` \
         (or `cargo test --workspace`, which builds the examples) first",
        binary.display()
    );
    binary
}

/// The echo example (`crates/realtime/examples/echo.rs`) as a child process.
pub struct EchoServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    output: Arc<Mutex<String>>,
}

impl EchoServer {
    /// Starts it on a free port with these extra options and waits until it listens.
    pub async fn start(args: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            port: 0,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            output: Arc::new(Mutex::new(String::new())),
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let mut child = Command::new(example_binary("echo"))
            .arg("--port")
            .arg(self.port.to_string())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the echo example starts");
        self.output = collect(child.stderr.take().expect("piped stderr"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), stdout.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "the echo example did not print `listening on` ({other:?}); stderr:\n{}",
                self.output.lock().expect("output lock")
            ),
        };
        let port = line
            .strip_prefix("listening on ")
            .and_then(|addr| addr.trim().rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the echo example: {line:?}"));
        assert!(
            self.port == 0 || self.port == port,
            "restarted on {port}, not {}",
            self.port
        );
        self.port = port;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Kills it and starts it again on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }
}
