//! `idle`: how fast sockets connect, and what each open socket costs the server in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{hold, join_all, secs};
use crate::cli::IdleArgs;
use crate::engine::Connector;
use crate::ramp::ramp;
use crate::stats::round3;

/// Read buffer per held socket: it only ever reads pings, and tens of thousands are open.
const READ_BUFFER: usize = 4 * 1024;

/// Runs the scenario and returns its JSON report.
///
/// # Errors
/// A server PID whose memory cannot be read.
pub async fn run(connector: Arc<Connector>, args: IdleArgs) -> Result<Value, crate::Error> {
    let hold_for = secs(args.hold_secs, "hold-secs")?;
    let connector = Arc::new(connector.as_ref().clone().with_read_buffer(READ_BUFFER));
    // Read before the first connect (the probe socket is closed by now), so the growth is
    // what the held sockets cost.
    let rss_before = rss_all(&args.server_pids)?;
    let stop = CancellationToken::new();
    let dropped = Arc::new(AtomicUsize::new(0));
    let concurrency = args.connect.connect_concurrency as usize;
    let (report, handles) = ramp("idle", args.sockets, concurrency, |index, ready| {
        let connector = connector.clone();
        let stop = stop.clone();
        let dropped = dropped.clone();
        async move {
            match connector.connect(index).await {
                Ok(ws) => {
                    ready.ok();
                    if !hold(ws, &stop).await {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => ready.fail(error.to_string()),
            }
        }
    })
    .await;
    eprintln!(
        "idle: holding {} sockets for {:.1}s",
        report.ok,
        hold_for.as_secs_f64()
    );
    tokio::time::sleep(hold_for).await;
    let rss_after = rss_all(&args.server_pids)?;
    let dropped_while_held = dropped.load(Ordering::Relaxed);
    if dropped_while_held > 0 {
        eprintln!("idle: {dropped_while_held} sockets were closed by the server while held");
    }
    stop.cancel();
    join_all(handles, Duration::from_secs(10)).await;

    let before: u64 = rss_before.iter().sum();
    let after: u64 = rss_after.iter().sum();
    let growth_per_socket = if report.ok > 0 {
        Some(round3(
            (after as f64 - before as f64) * 1024.0 / report.ok as f64,
        ))
    } else {
        None
    };
    Ok(json!({
        "scenario": "idle",
        "sockets": args.sockets,
        "connected": report.ok,
        "failed": report.failed,
        "dropped": dropped_while_held,
        "connect_secs": round3(report.secs),
        "connects_per_sec": round3(report.per_sec()),
        "hold_secs": args.hold_secs,
        "server_pids": args.server_pids,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_growth_per_socket_bytes": growth_per_socket,
        "errors": report.errors,
    }))
}

/// VmRSS of each process, in KiB.
fn rss_all(pids: &[u32]) -> Result<Vec<u64>, crate::Error> {
    pids.iter().map(|&pid| rss_kib(pid)).collect()
}

/// VmRSS of one process from /proc, in KiB.
fn rss_kib(pid: u32) -> Result<u64, crate::Error> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
    parse_vm_rss(&status).ok_or_else(|| format!("{path} has no VmRSS line").into())
}

/// The `VmRSS:` value of a /proc status file, in KiB.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tserver\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_our_own_rss() {
        assert!(rss_kib(std::process::id()).is_ok_and(|kib| kib > 0));
    }
}
