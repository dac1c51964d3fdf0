//! A private PostgreSQL server for one test binary (or one fault test).
//!
//! Tests never use a shared server on the standard port: [`PostgresServer::shared`] starts one
//! server per test binary (`initdb` into a temporary folder, `pg_ctl` on a free port of
//! 127.0.0.1, its Unix socket in that folder, `fsync=off`), and every test takes a fresh
//! database of its own with [`PostgresServer::database`]. Fault tests that stop the server start
//! one of their own with [`PostgresServer::start`].
//!
//! The binaries are found with `pg_config --bindir` (Debian keeps them off the `PATH`). When the
//! tests run as root (CI does), `initdb` and `postgres` refuse to run, so they run as `nobody`
//! through `setpriv`, and the folder is handed to that user.
//!
//! Each server has a watchdog: a small shell that holds a pipe from the test process and, when
//! that pipe closes (the test binary exits, however it exits), stops the server and removes its
//! folder. That is what lets one server outlive every test of a binary without outliving the
//! binary; dropping an owned server closes the pipe too.

use std::io::{BufRead, BufReader, Write};

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::net::free_port;
use crate::watchdog::{Watchdog, shell_quote};

/// How often a start is retried on a fresh port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// The user the server runs as when the tests run as root.
const UNPRIVILEGED_UID: u32 = 65534;
const UNPRIVILEGED_GID: u32 = 65534;
/// The superuser that `initdb` creates (trust authentication on loopback only).
const SUPERUSER: &str = "postgres";

const INSTALL_HINT: &str = "PostgreSQL's server binaries were not found (`pg_config --bindir`, \
     /usr/lib/postgresql/*/bin). Keel's tests start a private PostgreSQL server of their own; \
     install it with `apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` \
     (macOS) and run the tests again.";

/// A private PostgreSQL server. Stopped, and its folder removed, when dropped or when the test
/// process exits.
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_owner: Vec<String>,
    next_database: AtomicU64,
    // Stops the server and removes the folder when dropped or when the process exits.
    watchdog: Mutex<Option<Watchdog>>,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A database of one test on a [`PostgresServer`].
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// `postgres://postgres@127.0.0.1:<port>/<name>`.
    pub url: String,
}

impl PostgresServer {
    /// The server of this test binary, started on first use and stopped when the binary exits.
    /// Tests share it and each takes its own [`database`](Self::database); never stop it.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(PostgresServer::start)
    }

    /// Starts a server of its own (for tests that stop and start it), on a free port, and
    /// waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When the PostgreSQL binaries are missing (the message says how to install them), or when
    /// the server does not come up (the message shows its log).
    pub fn start() -> PostgresServer {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), but the server accepts TLS connections only (a
    /// self-signed certificate; `hostssl` in `pg_hba.conf`, plain connections rejected):
    /// connect with `?sslmode=require`.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), and when `openssl` is missing.
    pub fn start_tls() -> PostgresServer {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> PostgresServer {
        let bin = bindir().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let dir = match tempfile::Builder::new().prefix("keel-postgres-").tempdir() {
            Ok(dir) => dir.keep(),
            Err(err) => panic!("cannot create a temporary directory for PostgreSQL: {err}"),
        };
        let as_owner = if is_root() {
            hand_over(&dir);
            vec![
                "setpriv".to_owned(),
                format!("--reuid={UNPRIVILEGED_UID}"),
                format!("--regid={UNPRIVILEGED_GID}"),
                "--clear-groups".to_owned(),
                "--".to_owned(),
            ]
        } else {
            Vec::new()
        };
        let mut server = PostgresServer {
            port: 0,
            dir,
            bin,
            as_owner,
            next_database: AtomicU64::new(1),
            watchdog: Mutex::new(None),
        };
        server.arm_watchdog();
        server.init();
        if tls {
            server.require_tls();
        }
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            server.configure();
            match server.pg_ctl(&["start", "-w", "-t", "30", "-l", &server.log_path()]) {
                Ok(()) => return server,
                Err(output) => {
                    let log = server.log_tail();
                    if log.contains("could not bind") || log.contains("already in use") {
                        failures.push(format!("port {}: {log}", server.port));
                    } else {
                        panic!(
                            "PostgreSQL did not start on port {}: {output}\nits log:\n{log}",
                            server.port
                        );
                    }
                }
            }
        }
        panic!(
            "PostgreSQL did not start after {PORT_ATTEMPTS} attempts on fresh ports:\n{}",
            failures.join("\n")
        );
    }

    /// The TCP port it listens on (kept across [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// A fresh, empty database for one test.
    ///
    /// # Panics
    ///
    /// When the server cannot create it.
    pub fn database(&self) -> TestDatabase {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("keel_test_{n}");
        if let Err(err) = self.psql("postgres", &format!("CREATE DATABASE {name}")) {
            panic!("cannot create database {name}: {err}");
        }
        TestDatabase {
            url: self.url(&name),
            name,
        }
    }

    /// Runs `sql` in database `name` with `psql` and returns what it printed (unaligned, tuples
    /// only: one line per row, `|` between columns).
    ///
    /// # Errors
    ///
    /// The statement failed or the server did not answer; the text says why.
    pub fn psql(&self, name: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", name])
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("cannot run psql: {err}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    /// Takes `LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE` in an open transaction of its own
    /// and holds it until the returned guard is dropped (or [`TableLock::release`]d): every
    /// statement on the table blocks meanwhile. Returns once the lock is held.
    ///
    /// # Panics
    ///
    /// When the lock cannot be taken within a few seconds.
    pub fn lock_table(&self, name: &str, table: &str) -> TableLock {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", name])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run psql: {err}"));
        let mut stdin = child.stdin.take().unwrap_or_else(|| unreachable!());
        let stdout = child.stdout.take().unwrap_or_else(|| unreachable!());
        let statements = format!(
            "SET lock_timeout = '5s';\nBEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n"
        );
        if let Err(err) = stdin.write_all(statements.as_bytes()) {
            panic!("cannot talk to psql: {err}");
        }
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        if !matches!(read, Ok(n) if n > 0) || line.trim() != "locked" {
            let _ = child.kill();
            panic!("could not lock table {table}: psql said {line:?} ({read:?})");
        }
        TableLock {
            child: Some(child),
            stdin: Some(stdin),
        }
    }

    /// Stops the server (fast shutdown: connections are closed, data is kept) and waits until
    /// it is gone.
    ///
    /// # Panics
    ///
    /// When `pg_ctl` cannot stop it.
    pub fn stop(&self) {
        if let Err(output) = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "30"]) {
            panic!("PostgreSQL did not stop: {output}");
        }
    }

    /// Starts a [`stop`](Self::stop)ped server again on the same port, with its data.
    ///
    /// # Panics
    ///
    /// When it does not come up (for instance because another process took the port).
    pub fn start_again(&self) {
        if let Err(output) = self.pg_ctl(&["start", "-w", "-t", "30", "-l", &self.log_path()]) {
            panic!(
                "PostgreSQL did not start again on port {}: {output}\nits log:\n{}",
                self.port,
                self.log_tail()
            );
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> String {
        self.dir.join("postgres.log").display().to_string()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A command that runs `program` of the PostgreSQL binaries as the folder's owner.
    fn owner_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match self.as_owner.split_first() {
            Some((wrapper, args)) => {
                let mut command = Command::new(wrapper);
                command.args(args).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn init(&self) {
        let output = self
            .owner_command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync", "--no-instructions"])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(err) => panic!("cannot run initdb: {err}"),
        }
    }

    /// Turns TLS on with a self-signed certificate, and refuses plain TCP connections.
    fn require_tls(&self) {
        let (cert, key) = crate::tls::self_signed(&self.dir);
        let data = self.data();
        let settings = format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            cert.display(),
            key.display()
        );
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
                   host all all 127.0.0.1/32 reject\n";
        let written = std::fs::write(data.join("keel-testkit-tls.conf"), settings)
            .and_then(|()| std::fs::write(data.join("pg_hba.conf"), hba))
            .and_then(|()| {
                let conf = data.join("postgresql.conf");
                let main = std::fs::read_to_string(&conf)?;
                std::fs::write(
                    &conf,
                    format!("{main}\ninclude_if_exists = 'keel-testkit-tls.conf'\n"),
                )
            })
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt as _;
                // PostgreSQL refuses a key that others can read.
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            });
        if let Err(err) = written {
            panic!("cannot set PostgreSQL up for TLS: {err}");
        }
        if is_root() {
            for path in [cert, key] {
                hand_over(&path);
            }
        }
    }

    /// Writes the test settings (port, loopback only, socket in the folder, no durability).
    fn configure(&self) {
        let settings = format!(
            "\n# keel-testkit\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{dir}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 300\nshared_buffers = 32MB\n",
            port = self.port,
            dir = self.dir.display(),
        );
        // `include_if_exists` keeps the last written settings authoritative on a retry.
        let auto = self.data().join("keel-testkit.conf");
        let conf = self.data().join("postgresql.conf");
        let written = std::fs::write(&auto, settings).and_then(|()| {
            let main = std::fs::read_to_string(&conf)?;
            if main.contains("keel-testkit.conf") {
                Ok(())
            } else {
                std::fs::write(
                    &conf,
                    format!("{main}\ninclude_if_exists = 'keel-testkit.conf'\n"),
                )
            }
        });
        if let Err(err) = written {
            panic!("cannot write PostgreSQL's settings: {err}");
        }
        if is_root() {
            hand_over(&auto);
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let output = self
            .owner_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("cannot run pg_ctl: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Arms the watchdog that stops the server and removes the folder.
    fn arm_watchdog(&self) {
        let mut stop = self.as_owner.clone();
        stop.push(self.bin.join("pg_ctl").display().to_string());
        let stop: Vec<String> = stop.iter().map(|word| shell_quote(word)).collect();
        let cleanup = format!(
            "{stop} -D {data} -m immediate -w stop >/dev/null 2>&1; rm -rf {dir}",
            stop = stop.join(" "),
            data = shell_quote(&self.data().display().to_string()),
            dir = shell_quote(&self.dir.display().to_string()),
        );
        *self
            .watchdog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Watchdog::arm(&cleanup));
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // The watchdog's own drop stops the server and waits for it.
        drop(
            self.watchdog
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(),
        );
    }
}

/// A table held locked by [`PostgresServer::lock_table`]; released when dropped.
pub struct TableLock {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl TableLock {
    /// Ends the transaction that holds the lock and waits until it is gone.
    pub fn release(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"ROLLBACK;\n\\q\n");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        self.finish();
    }
}

/// PostgreSQL's binary folder: `pg_config --bindir`, else the newest Debian one.
fn bindir() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .filter(|dir| dir.join("initdb").is_file());
    from_pg_config.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
            .filter(|dir| dir.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Gives `path` to the unprivileged user the server runs as.
fn hand_over(path: &Path) {
    let owner = Some(nix::unistd::Uid::from_raw(UNPRIVILEGED_UID));
    let group = Some(nix::unistd::Gid::from_raw(UNPRIVILEGED_GID));
    if let Err(err) = nix::unistd::chown(path, owner, group) {
        panic!(
            "cannot hand {} to uid {UNPRIVILEGED_UID}: {err}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_fresh_databases_and_keeps_data_across_a_stop() {
        let server = PostgresServer::start();
        let one = server.database();
        let two = server.database();
        assert_ne!(one.name, two.name);
        server
            .psql(
                &one.name,
                "CREATE TABLE t (x int); INSERT INTO t VALUES (42)",
            )
            .unwrap();
        assert!(server.psql(&two.name, "SELECT x FROM t").is_err());
        server.stop();
        assert!(server.psql(&one.name, "SELECT 1").is_err());
        server.start_again();
        assert_eq!(server.psql(&one.name, "SELECT x FROM t").unwrap(), "42");
    }

    #[test]
    fn a_table_lock_blocks_others_until_released() {
        let server = PostgresServer::shared();
        let db = server.database();
        server.psql(&db.name, "CREATE TABLE t (x int)").unwrap();
        let lock = server.lock_table(&db.name, "t");
        let blocked = server.psql(&db.name, "SET lock_timeout = '200ms'; SELECT * FROM t");
        assert!(
            blocked.as_ref().is_err_and(|e| e.contains("lock timeout")),
            "{blocked:?}"
        );
        lock.release();
        assert_eq!(
            server.psql(&db.name, "SELECT count(*) FROM t").unwrap(),
            "0"
        );
    }

    #[test]
    fn dropping_a_server_stops_it_and_removes_its_folder() {
        let server = PostgresServer::start();
        let dir = server.dir.clone();
        let port = server.port();
        drop(server);
        assert!(!dir.exists(), "{} is left behind", dir.display());
        assert!(std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).is_err());
    }
}
