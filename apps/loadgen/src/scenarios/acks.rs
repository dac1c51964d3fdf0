//! `acks`: every socket runs a closed loop of `ping` events with an ack — send, wait for the
//! ack, send again — so the result is the server's event round-trip capacity and latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{answer_pings_until, close, join_all, secs};
use crate::cli::AcksArgs;
use crate::engine::{Connector, PONG, Packet, ack_ok, classify};
use crate::ramp::{Ready, ramp};
use crate::stats::{Summary, now_nanos, round3};

/// Read buffer per socket: acks are tiny and come one at a time (and tungstenite zero-fills the
/// spare buffer before each read, so smaller is cheaper).
const READ_BUFFER: usize = 4 * 1024;

/// The measured window on the process clock, set once every socket is connected.
#[derive(Debug, Default)]
struct Window {
    from: AtomicU64,
    until: AtomicU64,
}

/// What one socket measured.
#[derive(Debug, Default)]
struct Tally {
    /// Round trips completed inside the window, in nanoseconds.
    latencies: Vec<u64>,
    /// Acks inside the window that were errors (`{"ok":false}`).
    failed: u64,
    /// Whether the server closed the socket before the end.
    dropped: bool,
}

/// Runs the scenario and returns its JSON report.
///
/// # Errors
/// Invalid durations, or no socket could connect.
pub async fn run(connector: Arc<Connector>, args: AcksArgs) -> Result<Value, crate::Error> {
    let duration = secs(args.duration_secs, "duration-secs")?;
    let warmup = secs(args.warmup_secs, "warmup-secs")?;
    if duration.is_zero() {
        return Err("--duration-secs must be positive".into());
    }
    let connector = Arc::new(connector.as_ref().clone().with_read_buffer(READ_BUFFER));
    let go = CancellationToken::new();
    let stop = CancellationToken::new();
    let window = Arc::new(Window::default());
    let concurrency = args.connect.connect_concurrency as usize;
    let (report, handles) = ramp("acks", args.sockets, concurrency, |index, ready| {
        ping_loop(
            connector.clone(),
            index,
            ready,
            go.clone(),
            stop.clone(),
            window.clone(),
        )
    })
    .await;
    if report.ok == 0 {
        return Err("no socket could connect; see the errors above".into());
    }
    let from = now_nanos() + u64::try_from(warmup.as_nanos()).unwrap_or(u64::MAX);
    let until = from + u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    window.from.store(from, Ordering::Relaxed);
    window.until.store(until, Ordering::Relaxed);
    // The window is published before the release: a task reads it only after `go`.
    go.cancel();
    eprintln!(
        "acks: {} sockets pinging: {:.1}s warm-up, {:.1}s measured",
        report.ok,
        warmup.as_secs_f64(),
        duration.as_secs_f64()
    );
    tokio::time::sleep(warmup + duration).await;
    // Round trips in flight at the end finish outside the window and are not counted anyway;
    // a short grace lets them, so no socket is cut mid-ack.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();

    let tallies = join_all(handles, Duration::from_secs(10)).await;
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut dropped = 0;
    for tally in tallies {
        latencies.extend_from_slice(&tally.latencies);
        failed += tally.failed;
        dropped += usize::from(tally.dropped);
    }
    let summary = Summary::of(&mut latencies);
    let secs = duration.as_secs_f64();
    Ok(json!({
        "scenario": "acks",
        "sockets": args.sockets,
        "connected": report.ok,
        "connect_failed": report.failed,
        "dropped": dropped,
        "acks": summary.count,
        "failed_acks": failed,
        "warmup_secs": args.warmup_secs,
        "duration_secs": round3(secs),
        "acks_per_sec": round3(summary.count as f64 / secs),
        "p50_ms": summary.p50_ms,
        "p99_ms": summary.p99_ms,
        "max_ms": summary.max_ms,
        "errors": report.errors,
    }))
}

async fn ping_loop(
    connector: Arc<Connector>,
    index: usize,
    ready: Ready,
    go: CancellationToken,
    stop: CancellationToken,
    window: Arc<Window>,
) -> Tally {
    let mut ws = match connector.connect(index).await {
        Ok(ws) => ws,
        Err(error) => {
            ready.fail(error.to_string());
            return Tally::default();
        }
    };
    ready.ok();
    let mut tally = Tally::default();
    // Until every socket is connected, only the heartbeat.
    if !answer_pings_until(&mut ws, &go).await {
        tally.dropped = true;
        return tally;
    }
    let from = window.from.load(Ordering::Relaxed);
    let until = window.until.load(Ordering::Relaxed);
    let mut id = 0_u64;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        id += 1;
        let sent = now_nanos();
        if sent >= until {
            break;
        }
        if ws
            .send(Message::text(format!("42{id}[\"ping\"]")))
            .await
            .is_err()
        {
            tally.dropped = true;
            return tally;
        }
        // Wait for this ping's ack, answering heartbeats meanwhile.
        let answered = loop {
            let frame = tokio::select! {
                biased;
                () = &mut stopped => break None,
                frame = ws.next() => frame,
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    tally.dropped = true;
                    return tally;
                }
                Some(Ok(_)) => continue,
            };
            match classify(&text) {
                Packet::Ack { id: got, payload } if got == id => {
                    break Some((now_nanos(), ack_ok(payload)));
                }
                Packet::Ping => {
                    let answered = ws.send(Message::Text(PONG)).await;
                    if answered.is_err() {
                        tally.dropped = true;
                        return tally;
                    }
                }
                Packet::Close | Packet::Disconnect => {
                    tally.dropped = true;
                    return tally;
                }
                _ => {}
            }
        };
        let Some((at, ok)) = answered else { break };
        if (from..until).contains(&at) {
            tally.latencies.push(at - sent);
            if !ok {
                tally.failed += 1;
            }
        }
    }
    // Stay connected until everyone is done, so no disconnect lands in another socket's window.
    if answer_pings_until(&mut ws, &stop).await {
        close(ws).await;
    } else {
        tally.dropped = true;
    }
    tally
}
