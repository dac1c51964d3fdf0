//! A flood of logins cannot exhaust memory: the real `server` binary, 200 concurrent logins,
//! and the process's peak resident memory read from /proc. Every login is answered, 200 or
//! 503 `busy`, never a hang or a 500.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
#![allow(clippy::print_stderr, reason = "the measured numbers are worth seeing")]

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::join_all;
use keel_testkit::ServerProcess;
use keel_testkit::process::server_binary;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

const LOGINS: usize = 200;
/// argon2id slots configured for the server under test (pinned, so the bound does not depend
/// on the machine's CPU count).
const MAX_CONCURRENT_HASHES: u64 = 2;
/// argon2id's memory cost, m = 19456 KiB, per computation.
const ARGON2_KIB: u64 = 19_456;
/// Everything else 200 in-flight logins may add: 200 connections with actix's read/write
/// buffers (a few KiB each, ~2 MiB), the JSON bodies, tokio's blocking-pool threads (stacks are
/// reserved, not resident, until touched), 200 session records, tracing. 48 MiB is several
/// times that, and still two orders of magnitude below what unbounded hashing would take
/// (200 × 19 MiB ≈ 3.7 GiB).
const SLACK_KIB: u64 = 48 * 1024;

/// The pid of the `server` child this test process started, found through /proc (the testkit
/// does not hand it out): a direct child whose executable is the server binary.
fn server_pid() -> u32 {
    let me = std::process::id();
    let binary = std::fs::canonicalize(server_binary()).unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_else(|_| PathBuf::new());
        if ppid == Some(me) && exe == binary {
            found.push(pid);
        }
    }
    assert_eq!(found.len(), 1, "exactly one server child: {found:?}");
    found[0]
}

/// A `VmXxx:   1234 kB` field of /proc/<pid>/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn two_hundred_concurrent_logins_keep_memory_bounded_and_all_get_answers() {
    let server = ServerProcess::start(&[
        // 200 logins from one address would hit the login quotas first; this test is about
        // the hashing pool behind them.
        ("KEEL_RATE_LIMIT__ENABLED", "false"),
        ("KEEL_AUTH__PASSWORD_HASHING__MAX_CONCURRENT", "2"),
    ])
    .await;
    let pid = server_pid();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(LOGINS)
        .build()
        .unwrap();
    let credentials = json!({"email": "flood@example.com", "password": "correct horse battery"});
    let response = client
        .post(server.url("/api/v1/auth/register"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = client
        .post(server.url("/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The baseline has already seen one argon2 computation at a time (register, login).
    let baseline_kib = status_kib(pid, "VmHWM");
    let bound_kib = baseline_kib + MAX_CONCURRENT_HASHES * ARGON2_KIB + SLACK_KIB;

    let started = Instant::now();
    let logins = (0..LOGINS).map(|_| {
        let request = client
            .post(server.url("/api/v1/auth/login"))
            .json(&credentials)
            .send();
        async move {
            let response = tokio::time::timeout(Duration::from_secs(60), request)
                .await
                .expect("every login is answered within 60 s")
                .expect("the connection holds");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    });
    let answers = join_all(logins).await;
    let took = started.elapsed();

    let peak_kib = status_kib(pid, "VmHWM");
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let busy = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::SERVICE_UNAVAILABLE && b["code"] == "busy")
        .count();
    let others: Vec<_> = answers
        .iter()
        .filter(|(s, b)| {
            !(*s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE && b["code"] == "busy")
        })
        .collect();
    assert!(others.is_empty(), "only 200 or 503 busy: {others:?}");
    assert!(ok >= 1, "some logins succeed ({ok} ok, {busy} busy)");
    assert!(
        peak_kib <= bound_kib,
        "peak RSS {peak_kib} KiB exceeds {bound_kib} KiB (baseline {baseline_kib} KiB + \
         {MAX_CONCURRENT_HASHES} × {ARGON2_KIB} KiB + {SLACK_KIB} KiB); {ok} ok, {busy} busy, \
         in {took:?}. Freed argon2 blocks that the allocator keeps resident count too."
    );
    eprintln!(
        "200 logins in {took:?}: {ok} ok, {busy} busy; VmHWM {baseline_kib} -> {peak_kib} KiB \
         (bound {bound_kib} KiB)"
    );

    // And the server is still well.
    let live = client.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let response = client
        .post(server.url("/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
