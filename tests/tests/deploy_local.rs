//! The local topology of deploy/local/run.sh (a private PostgreSQL and a private redis-server,
//! two `server` processes in the production profile, nginx in front with the rules of
//! deploy/nginx/nginx.conf), driven through nginx: plain HTTP (register, login, /me) and the
//! official `socket.io-client` with default options (long-polling, then the upgrade to
//! WebSocket), then stopped with nothing left running; and the topology without PostgreSQL.
//!
//! Needs `redis-server`, PostgreSQL's server binaries, `nginx` (Debian's packages;
//! `.ci/install-tools` installs them), Node.js for the client, and the `server` binary
//! (`cargo build -p server`).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

#[path = "support/scenarios.rs"]
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_testkit::process::server_binary;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use reqwest::StatusCode;
use scenarios::run_ok;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const RUN_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/run.sh");
const PASSWORD: &str = "correct horse battery staple";

/// How long the topology may take to start (debug binaries, a busy machine).
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long it may take to stop: drain (1 s) + shutdown timeout (5 s) + slack.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// A running deploy/local/run.sh in its own process group; killed (the whole group) on drop.
struct Topology {
    child: Child,
    pgid: Pid,
    dir: PathBuf,
    front: String,
    /// The `postgres` line's URL, when the topology runs one.
    postgres: Option<String>,
    output: Arc<Mutex<String>>,
}

impl Topology {
    async fn start(instances: u32, with_postgres: bool) -> Self {
        for tool in ["redis-server", "nginx"] {
            let found = std::process::Command::new("bash")
                .args([
                    "-c",
                    &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
                ])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "{tool} is not installed: run .ci/install-tools (apt-get install redis-server nginx)"
            );
        }
        let mut args = vec!["--instances".to_owned(), instances.to_string()];
        if !with_postgres {
            args.push("--no-postgres".to_owned());
        }
        let mut child = Command::new("bash")
            .arg(RUN_SH)
            .args(&args)
            .env("LOCAL_KEEL_SERVER", server_binary())
            // Keep the stop quick; the production defaults (5 s drain) are not under test.
            .env("KEEL_SHUTDOWN__DRAIN_SECONDS", "1")
            .env("KEEL_SHUTDOWN__TIMEOUT_SECONDS", "5")
            .env_remove("KEEL_CONFIG")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("bash runs deploy/local/run.sh");
        let pgid = Pid::from_raw(i32::try_from(child.id().expect("a pid")).unwrap());
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, mut lines) = mpsc::unbounded_channel();
        // Read both streams to the end, so the script never writes into a full pipe.
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&output);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let sink = Arc::clone(&output);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push_str(&format!("stderr: {line}\n"));
            }
        });
        let mut topology = Self {
            child,
            pgid,
            dir: PathBuf::new(),
            front: String::new(),
            postgres: None,
            output,
        };
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            let line = match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "run.sh ended before printing the front URL:\n{}",
                    topology.output()
                ),
                Err(_) => panic!(
                    "run.sh printed no front URL within {START_LIMIT:?}:\n{}",
                    topology.output()
                ),
            };
            if let Some(dir) = line.strip_prefix("dir ") {
                topology.dir = PathBuf::from(dir);
            }
            if let Some(url) = line.strip_prefix("postgres ") {
                topology.postgres = Some(url.to_owned());
            }
            if let Some(front) = line.strip_prefix("front ") {
                topology.front = front.to_owned();
                break;
            }
        }
        assert!(
            topology.dir.is_dir(),
            "no `dir` line:\n{}",
            topology.output()
        );
        assert_eq!(
            topology.postgres.is_some(),
            with_postgres,
            "{}",
            topology.output()
        );
        // The instances, Redis, nginx, and PostgreSQL when it runs.
        let listed = topology.pids();
        assert_eq!(
            listed.len(),
            usize::try_from(instances).unwrap() + 2 + usize::from(with_postgres),
            "{listed:?}"
        );
        topology
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.front)
    }

    /// `name pid` lines of DIR/pids.
    fn pids(&self) -> Vec<(String, Pid)> {
        pids_in(&self.dir)
    }

    /// Waits for run.sh to exit, bounded by [`STOP_LIMIT`], and checks that nothing it started
    /// runs any more: no listed pid, no process left in its process group.
    async fn expect_stopped(&mut self, how: &str) {
        let listed = self.pids();
        let status = tokio::time::timeout(STOP_LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "run.sh did not exit within {STOP_LIMIT:?} after {how}:\n{}",
                    self.output()
                )
            })
            .unwrap();
        assert!(
            status.success(),
            "run.sh after {how}: {status}\n{}",
            self.output()
        );
        for (name, pid) in listed {
            assert_eq!(
                kill(pid, None),
                Err(Errno::ESRCH),
                "{name} ({pid}) still runs after {how}:\n{}",
                self.output()
            );
        }
        // nginx's workers and anything else run.sh started share its process group.
        assert_eq!(
            killpg(self.pgid, None),
            Err(Errno::ESRCH),
            "processes of run.sh's group still run after {how}:\n{}",
            self.output()
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Whatever happened, leave nothing behind.
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}

fn pids_in(dir: &Path) -> Vec<(String, Pid)> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (name, pid) = line.split_once(' ')?;
            Some((name.to_owned(), Pid::from_raw(pid.trim().parse().ok()?)))
        })
        .collect()
}

/// Registers and logs in through the front; returns (access token, user id).
async fn signup(client: &reqwest::Client, topology: &Topology, email: &str) -> (String, String) {
    let response = client
        .post(topology.url("/api/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "displayName": "Tester"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "register {email}: {body}");

    let response = client
        .post(topology.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "login {email}: {body}");
    (
        body["accessToken"].as_str().unwrap().to_owned(),
        body["user"]["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn http_and_the_official_client_work_through_nginx_and_stop_leaves_nothing_running() {
    let mut topology = Topology::start(2, true).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Health through the proxy, and each instance ready behind it, on both stores.
    let ready = client
        .get(topology.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["postgres"]["status"], "ok", "{ready}");
    assert_eq!(ready["checks"]["redis"]["status"], "ok", "{ready}");

    // Plain HTTP: register, login, /me with the Bearer token.
    let (ada, ada_id) = signup(&client, &topology, "ada@example.com").await;
    let (bob, bob_id) = signup(&client, &topology, "bob@example.com").await;
    let me = client
        .get(topology.url("/api/v1/auth/me"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    let status = me.status();
    let request_id = me.headers().get("x-request-id").cloned();
    let body: Value = me.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], ada_id.as_str(), "{body}");
    assert_eq!(body["user"]["email"], "ada@example.com", "{body}");
    // nginx's $request_id (32 hex digits) reached Keel, which echoed it: the proxy headers of
    // deploy/nginx/nginx.conf are sent (X-Forwarded-For with them).
    let request_id = request_id.unwrap();
    let request_id = request_id.to_str().unwrap();
    assert!(
        request_id.len() == 32 && request_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "x-request-id {request_id:?} is not nginx's"
    );

    // The official client with default options: long-polling through nginx (sticky), then the
    // upgrade to WebSocket through nginx's Upgrade/Connection headers.
    let result = run_ok(
        "upgrade",
        &[&topology.front, "--token", &ada, "--skip-echo"],
    )
    .await;
    assert_eq!(result["openTransport"], "polling", "{result}");
    assert_eq!(result["upgradedTo"], "websocket", "{result}");
    assert_eq!(result["finalTransport"], "websocket", "{result}");

    // Two users in a room, default options: join acks, presence, a message with its ack.
    let result = run_ok(
        "keel-rooms",
        &[
            &topology.front,
            "--token-a",
            &ada,
            "--token-b",
            &bob,
            "--user-a",
            &ada_id,
            "--user-b",
            &bob_id,
        ],
    )
    .await;
    let r = &result["results"];
    assert_eq!(
        r["joinA"],
        json!({"ok": true, "members": [ada_id]}),
        "{result}"
    );
    assert_eq!(r["messageAck"]["ok"], true, "{result}");
    assert_eq!(r["message"]["from"], ada_id.as_str(), "{result}");
    assert_eq!(r["presenceJoined"]["userId"], bob_id.as_str(), "{result}");

    // nginx logged the upgrade (101) and the polls.
    let access = std::fs::read_to_string(topology.dir.join("nginx/access.log")).unwrap();
    assert!(
        access.contains("/socket.io/?EIO=4&transport=websocket") && access.contains(" 101 "),
        "{access}"
    );
    assert!(access.contains("transport=polling"), "{access}");

    // `run.sh stop DIR` stops everything and run.sh exits.
    let stop = Command::new("bash")
        .arg(RUN_SH)
        .arg("stop")
        .arg(&topology.dir)
        .output()
        .await
        .unwrap();
    assert!(
        stop.status.success(),
        "run.sh stop: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    topology.expect_stopped("`run.sh stop DIR`").await;
}

#[tokio::test]
async fn without_postgres_the_topology_runs_on_redis_and_sigint_stops_it_all() {
    let mut topology = Topology::start(1, false).await;
    let client = reqwest::Client::new();
    let live = client
        .get(topology.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let (token, _) = signup(&client, &topology, "ada@example.com").await;
    let me = client
        .get(topology.url("/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let runner = Pid::from_raw(i32::try_from(topology.child.id().unwrap()).unwrap());
    kill(runner, Signal::SIGINT).unwrap();
    topology.expect_stopped("SIGINT").await;
}
