//! A private `redis-server` for one test (or one test binary).
//!
//! Tests never share the developer's Redis: [`RedisServer::start`] runs a fresh `redis-server`
//! child process on a free port of 127.0.0.1, with persistence off and its working files in a
//! temporary directory, and kills it when dropped. Fault tests can [`stop`](RedisServer::stop),
//! [`restart`](RedisServer::restart), [`pause`](RedisServer::pause) and
//! [`resume`](RedisServer::resume) it, pause its clients with
//! [`client_pause`](RedisServer::client_pause), and ask it who is connected with
//! [`clients`](RedisServer::clients).
//!
//! Start-up waits for the server's own "Ready to accept connections" log line and then for an
//! answer to `PING`, within a bounded deadline: no fixed sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::net::free_port;
use crate::watchdog::{Watchdog, shell_quote};

/// A key prefix no other caller in this process has had, such as `t7:`: tests that share
/// [`RedisServer::shared`] keep their keys apart with it.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("t{}:", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// How long a start (or restart) may take before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How often a start is retried on a fresh port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// How many of the server's last output lines a failure message shows.
const LOG_TAIL: usize = 20;

const INSTALL_HINT: &str = "`redis-server` was not found on PATH. Keel's tests start a private \
     Redis server of their own; install it with `apt-get install redis-server` (Debian/Ubuntu) \
     or `brew install redis` (macOS) and run the tests again.";

/// A private `redis-server` child process, killed when this value is dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// Whether it speaks TLS only (see [`RedisServer::start_tls`]).
    tls: bool,
    // Removed when dropped, after `Drop` has killed the child.
    dir: TempDir,
}

impl RedisServer {
    /// The server of this test binary, started on first use and killed when the binary exits
    /// (a static is never dropped: a watchdog does it). Tests share it, each under a key prefix
    /// of its own ([`unique_prefix`]); it cannot be stopped or restarted (those take
    /// `&mut self`): fault tests [`start`](Self::start) their own.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<(RedisServer, Mutex<Watchdog>)> = OnceLock::new();
        let (server, _) = SHARED.get_or_init(|| {
            let server = RedisServer::start();
            let pid = server.child.as_ref().map_or(0, Child::id);
            let cleanup = format!(
                "kill -9 {pid} 2>/dev/null; rm -rf {}",
                shell_quote(&server.dir.path().display().to_string())
            );
            (server, Mutex::new(Watchdog::arm(&cleanup)))
        });
        server
    }

    /// Starts a private `redis-server` on a free port of 127.0.0.1 and waits until it answers
    /// `PING`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed (the message says how to install it), or when the
    /// server does not come up within a bounded deadline (the message shows its last output).
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), but the server speaks TLS only, with a self-signed
    /// certificate: its [`url`](Self::url) is `rediss://...#insecure`, which tells the client
    /// not to check the certificate.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), and when `openssl` is missing.
    pub fn start_tls() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> RedisServer {
        let dir = match tempfile::Builder::new().prefix("keel-redis-").tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("cannot create a temporary directory for redis-server: {err}"),
        };
        if tls {
            crate::tls::self_signed(dir.path());
        }
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match launch(port, &dir, tls) {
                Ok(child) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        tls,
                        dir,
                    };
                }
                Err(Failure::PortTaken(log)) => failures.push(format!("port {port}: {log}")),
                Err(Failure::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!(
            "redis-server did not start after {PORT_ATTEMPTS} attempts on fresh ports:\n{}",
            failures.join("\n")
        );
    }

    /// The URL to connect to, such as `redis://127.0.0.1:40123/` (or
    /// `rediss://127.0.0.1:40123/#insecure` for a [`start_tls`](Self::start_tls) server).
    pub fn url(&self) -> String {
        if self.tls {
            format!("rediss://127.0.0.1:{}/#insecure", self.port)
        } else {
            format!("redis://127.0.0.1:{}/", self.port)
        }
    }

    /// The TCP port the server listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is running (possibly paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server and waits until it is gone. Connections to it fail from now on.
    /// Does nothing when it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Ignoring errors: the child may already have exited, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (when running) and starts a new, empty one on the same port, waiting
    /// until it answers `PING`.
    ///
    /// # Panics
    ///
    /// When the new server does not come up (for instance because another process took the
    /// port meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        match launch(self.port, &self.dir, self.tls) {
            Ok(child) => self.child = Some(child),
            Err(Failure::PortTaken(log) | Failure::Fatal(log)) => {
                panic!("redis-server did not restart on port {}: {log}", self.port)
            }
        }
    }

    /// Freezes the server with `SIGSTOP`: it keeps its port and accepts TCP connections (the
    /// kernel does) but answers nothing until [`resume`](Self::resume). Simulates a hung Redis.
    ///
    /// # Panics
    ///
    /// When the server is stopped or the signal cannot be sent.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Lets a [`pause`](Self::pause)d server run again with `SIGCONT`.
    ///
    /// # Panics
    ///
    /// When the server is stopped or the signal cannot be sent.
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Sends `CLIENT PAUSE <ms> ALL` over a connection of its own and returns once Redis has
    /// confirmed it, so the pause is in force from then on and ends at most `duration` later.
    ///
    /// Unlike [`pause`](Self::pause) the process keeps running: it accepts connections and
    /// reads what clients send, but holds every command until the pause expires, and then runs
    /// them (so a write sent meanwhile is applied late, unless its connection was closed first).
    /// In Redis 7.0 `CLIENT UNPAUSE` is held like any other command, so a pause cannot be ended
    /// early from a client: let it expire. `CLIENT LIST` is held too: call
    /// [`clients`](Self::clients) only when no pause is in force.
    ///
    /// # Panics
    ///
    /// When Redis does not confirm the pause within a few seconds.
    pub fn client_pause(&self, duration: Duration) {
        let ms = duration.as_millis().max(1).to_string();
        match command(self.port, &[&["CLIENT", "PAUSE", &ms, "ALL"]]).as_deref() {
            Ok([Reply::Status(ok)]) if ok == "OK" => {}
            other => panic!(
                "redis-server on port {} did not confirm CLIENT PAUSE: {other:?}",
                self.port
            ),
        }
    }

    /// Every client connection Redis has, as `CLIENT LIST` reports it, except the one this
    /// call opens to ask.
    ///
    /// # Errors
    ///
    /// When Redis does not answer within a few seconds (it is stopped, frozen or paused) or
    /// answers something unexpected.
    pub fn clients(&self) -> std::io::Result<Vec<RedisClient>> {
        let replies = command(self.port, &[&["CLIENT", "ID"], &["CLIENT", "LIST"]])?;
        let [Reply::Integer(own), Reply::Bulk(list)] = replies.as_slice() else {
            return Err(std::io::Error::other(format!(
                "unexpected replies to CLIENT ID and CLIENT LIST: {replies:?}"
            )));
        };
        let own = u64::try_from(*own).map_err(std::io::Error::other)?;
        let mut clients = Vec::new();
        for line in list.lines().filter(|line| !line.trim().is_empty()) {
            let client = RedisClient::parse(line).ok_or_else(|| {
                std::io::Error::other(format!("unexpected CLIENT LIST line: {line}"))
            })?;
            if client.id != own {
                clients.push(client);
            }
        }
        Ok(clients)
    }

    fn signal(&self, signal: Signal) {
        let Some(child) = &self.child else {
            panic!("redis-server on port {} is not running", self.port);
        };
        let pid = match i32::try_from(child.id()) {
            Ok(pid) => Pid::from_raw(pid),
            Err(_) => panic!("redis-server has an out-of-range pid {}", child.id()),
        };
        if let Err(err) = kill(pid, signal) {
            panic!("cannot send {signal} to redis-server (pid {pid}): {err}");
        }
    }
}

/// One client connection of a [`RedisServer`], from a `CLIENT LIST` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisClient {
    /// The connection's id (`id=`).
    pub id: u64,
    /// The client's address and port (`addr=`).
    pub addr: String,
    /// Channels and patterns subscribed to (`sub=` + `psub=` + `ssub=`): more than 0 for a
    /// pub/sub subscriber.
    pub subscriptions: u64,
    /// The last command it ran (`cmd=`).
    pub last_command: String,
    /// The whole line, for failure messages.
    pub line: String,
}

impl RedisClient {
    fn parse(line: &str) -> Option<RedisClient> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        let count = |name: &str| field(name).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        Some(RedisClient {
            id: field("id")?.parse().ok()?,
            addr: field("addr")?.to_owned(),
            subscriptions: count("sub") + count("psub") + count("ssub"),
            last_command: field("cmd").unwrap_or_default().to_owned(),
            line: line.to_owned(),
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Kill first: the temporary directory is removed after this, when `dir` drops.
        self.stop();
    }
}

enum Failure {
    /// The server exited early, most likely because the port was taken: worth another port.
    PortTaken(String),
    /// Anything else: retrying will not help.
    Fatal(String),
}

/// Spawns `redis-server` on `port` and waits until it is ready.
fn launch(port: u16, dir: &TempDir, tls: bool) -> Result<Child, Failure> {
    let mut command = Command::new("redis-server");
    if tls {
        // TLS only: the plain port is off.
        command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(dir.path().join("server.crt"))
            .arg("--tls-key-file")
            .arg(dir.path().join("server.key"))
            .args(["--tls-auth-clients", "no"]);
    } else {
        command.arg("--port").arg(port.to_string());
    }
    let spawned = command
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--save")
        .arg("")
        .arg("--appendonly")
        .arg("no")
        .arg("--dir")
        .arg(dir.path())
        .arg("--daemonize")
        .arg("no")
        .arg("--loglevel")
        .arg("notice")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::Fatal(INSTALL_HINT.to_owned()));
        }
        Err(err) => return Err(Failure::Fatal(format!("cannot run redis-server: {err}"))),
    };
    let lines = forward_output(&mut child);
    match wait_until_ready(port, &lines, tls) {
        Ok(()) => Ok(child),
        Err(log) => {
            let _ = child.kill();
            let exited_early = matches!(child.try_wait(), Ok(Some(_)));
            let _ = child.wait();
            // Drain what is left so the message shows the server's own explanation.
            let mut log = log;
            while let Ok(line) = lines.try_recv() {
                log.push(line);
            }
            let tail = log[log.len().saturating_sub(LOG_TAIL)..].join("\n");
            if exited_early || tail.contains("Address already in use") {
                Err(Failure::PortTaken(tail))
            } else {
                Err(Failure::Fatal(format!(
                    "redis-server on port {port} did not answer PING within {START_DEADLINE:?}; \
                     its last output:\n{tail}"
                )))
            }
        }
    }
}

/// Copies the child's stdout and stderr, line by line, into a channel. The reader threads keep
/// draining the pipes after the receiver is gone, so the server never blocks on a full pipe.
fn forward_output(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        spawn_reader(stdout, tx.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        spawn_reader(stderr, tx);
    }
    rx
}

fn spawn_reader<R: Read + Send + 'static>(stream: R, tx: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            // The receiver is gone once the server is up: keep draining regardless.
            let _ = tx.send(line);
        }
    });
}

/// Waits for the "ready" log line, then for a `PONG` (plain servers only: the probe speaks no
/// TLS). On failure returns the output seen.
fn wait_until_ready(port: u16, lines: &Receiver<String>, tls: bool) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + START_DEADLINE;
    let mut log = Vec::new();
    let mut ready = false;
    while !ready {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                ready = line.contains("Ready to accept connections");
                log.push(line);
            }
            // Timed out, or both pipes closed: the server exited.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return Err(log),
        }
    }
    if tls {
        return Ok(());
    }
    // Ready by its own account; confirm with a real round trip, still within the deadline.
    loop {
        match ping(port) {
            Ok(()) => return Ok(()),
            Err(err) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    log.push(format!("PING failed: {err}"));
                    return Err(log);
                }
                // Wait for more output (or a short while) before the next attempt.
                match lines.recv_timeout(left.min(Duration::from_millis(20))) {
                    Ok(line) => log.push(line),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err(log),
                }
            }
        }
    }
}

/// One `PING` over a fresh connection, with short timeouts.
fn ping(port: u16) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0_u8; 7];
    stream.read_exact(&mut reply)?;
    if &reply == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&reply)
        )))
    }
}

/// A RESP2 reply, as far as [`command`] needs to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Status(String),
    Integer(i64),
    Bulk(String),
    Nil,
}

/// Sends `commands` (pipelined) over a fresh connection with short timeouts and reads one
/// reply per command.
fn command(port: u16, commands: &[&[&str]]) -> std::io::Result<Vec<Reply>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.set_write_timeout(Some(Duration::from_secs(3)))?;
    let mut request = Vec::new();
    for args in commands {
        request.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in *args {
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    (&stream).write_all(&request)?;
    let mut reader = BufReader::new(&stream);
    commands.iter().map(|_| read_reply(&mut reader)).collect()
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| std::io::Error::other(format!("bad RESP line {line:?}")))
    };
    match kind {
        "+" => Ok(Reply::Status(rest.to_owned())),
        "-" => Err(std::io::Error::other(format!("Redis answered {rest:?}"))),
        ":" => Ok(Reply::Integer(number()?)),
        "$" => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Reply::Nil);
            };
            let mut bytes = vec![0_u8; len + 2];
            reader.read_exact(&mut bytes)?;
            bytes.truncate(len);
            Ok(Reply::Bulk(String::from_utf8_lossy(&bytes).into_owned()))
        }
        _ => Err(std::io::Error::other(format!(
            "unsupported RESP reply {line:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_stops_and_restarts_on_the_same_port() {
        let mut server = RedisServer::start();
        let port = server.port();
        assert!(server.url().contains(&port.to_string()));
        ping(port).unwrap();
        server.stop();
        assert!(ping(port).is_err());
        server.restart();
        assert_eq!(server.port(), port);
        ping(port).unwrap();
    }

    #[test]
    fn lists_its_clients_but_not_the_asking_connection_and_pauses_them() {
        let server = RedisServer::start();
        assert_eq!(server.clients().unwrap(), Vec::new());
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
        let mut subscriber = TcpStream::connect(addr).unwrap();
        subscriber
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        subscriber
            .write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n")
            .unwrap();
        let mut reader = BufReader::new(subscriber.try_clone().unwrap());
        // The confirmation, `*3 $9 subscribe $1 c :1`, is six lines.
        for _ in 0..6 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
        }
        let clients = server.clients().unwrap();
        assert_eq!(clients.len(), 1, "{clients:?}");
        assert_eq!(clients[0].subscriptions, 1, "{clients:?}");
        assert_eq!(clients[0].last_command, "subscribe", "{clients:?}");

        let started = Instant::now();
        server.client_pause(Duration::from_millis(500));
        // Held until the pause expires, then answered.
        ping(server.port()).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(450));
    }

    #[test]
    fn a_paused_server_does_not_answer_until_resumed() {
        let server = RedisServer::start();
        server.pause();
        assert!(ping(server.port()).is_err());
        server.resume();
        ping(server.port()).unwrap();
    }
}
