//! `fanout`: one sender, N receivers in one room. Measures deliveries per second and the
//! latency from the moment a message is made to the moment a receiver reads it.
//!
//! Every message body carries its sequence number and its send time on the process clock
//! ([`crate::stats::now_nanos`]); sender and receivers live in this process, so a latency is a
//! subtraction. Warm-up messages (sequence numbers below `--warmup`) are sent and awaited
//! first, and not measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::{close, join_all, secs};
use crate::cli::{FanoutArgs, Mode};
use crate::engine::{
    Connector, MESSAGE_EVENT, PONG, PRESENCE_EVENT, Packet, Ws, ack_ok, classify, message_frame,
    message_stamp, padding,
};
use crate::ramp::ramp;
use crate::stats::{Summary, now_nanos, round3};

/// The ack id of the `join` every socket sends first; message acks come after it.
const JOIN_ACK_ID: u64 = 1;

/// Receivers' read buffer. tungstenite zero-fills the whole spare buffer before every read
/// (the one that finds nothing included), so a large buffer costs memset time on every
/// delivery; 4 KiB still takes a burst's frames a few dozen per read.
const RECEIVER_READ_BUFFER: usize = 4 * 1024;

/// Counters every socket task updates; the run's coordinator polls them.
#[derive(Debug, Default)]
struct Shared {
    /// Distinct warm-up deliveries so far.
    warm_seen: AtomicU64,
    /// Distinct measured deliveries so far.
    measured_seen: AtomicU64,
    /// Warm-up deliveries that can no longer come: their receiver is gone.
    warm_forfeit: AtomicU64,
    /// Measured deliveries that can no longer come.
    measured_forfeit: AtomicU64,
    /// `presence` events received by any socket.
    presence: AtomicU64,
    /// When the last `presence` event arrived (process clock).
    last_presence: AtomicU64,
    /// Joined receivers the server disconnected during the run.
    dropped: AtomicUsize,
    /// Acks of the sender's messages received, successes and errors.
    acks: AtomicU64,
}

/// The sequence numbers of a run: `0..warmup` are warm-up, `warmup..warmup + messages` are
/// measured.
#[derive(Debug, Clone, Copy)]
struct Plan {
    warmup: u64,
    messages: u64,
}

impl Plan {
    fn total(self) -> u64 {
        self.warmup + self.messages
    }
}

/// What one receiver saw, handed back when the run stops.
#[derive(Debug, Default)]
struct Receipt {
    /// Latency of each distinct measured delivery, in nanoseconds.
    latencies: Vec<u64>,
    /// Deliveries of a sequence number already seen.
    duplicates: u64,
    /// Process-clock time of the last measured delivery (0: none).
    last_delivery: u64,
}

/// Runs the scenario and returns its JSON report.
///
/// # Errors
/// The sender cannot connect or join, or no receiver could.
pub async fn run(connector: Arc<Connector>, args: FanoutArgs) -> Result<Value, crate::Error> {
    let drain = secs(args.drain_timeout_secs, "drain-timeout-secs")?;
    if args.mode == Mode::Paced && !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a positive number of messages per second".into());
    }
    let plan = Plan {
        warmup: args.warmup,
        messages: args.messages,
    };
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let room: Arc<str> = args.room.as_str().into();

    // The sender joins first, on the first URL, so every receiver's presence reaches it too and
    // the expected presence count below holds (on one instance; across instances a presence
    // relayed through Redis also reaches members that joined after it was sent, so more come).
    let target = connector.targets()[0].clone();
    let mut ws = connector
        .connect_to(&target, None)
        .await
        .map_err(|error| format!("the sender could not connect: {error}"))?;
    join(&mut ws, &room, &shared)
        .await
        .map_err(|why| format!("the sender could not join {room}: {why}"))?;
    let sender = Sender::start(
        ws,
        room.clone(),
        padding(args.body_bytes),
        shared.clone(),
        stop.clone(),
    );

    let receivers = Arc::new(
        connector
            .as_ref()
            .clone()
            .with_read_buffer(RECEIVER_READ_BUFFER),
    );
    let concurrency = args.connect.connect_concurrency as usize;
    let (report, handles) = ramp("fanout", args.sockets, concurrency, |index, ready| {
        receive(
            receivers.clone(),
            index,
            room.clone(),
            plan,
            shared.clone(),
            stop.clone(),
            ready,
        )
    })
    .await;
    let joined = report.ok as u64;
    if joined == 0 {
        stop.cancel();
        return Err("no receiver could connect and join; see the errors above".into());
    }

    settle_presence(&shared, joined).await;

    let mode = args.mode;
    let rate = args.rate;
    if plan.warmup > 0 {
        let phase = sender.send(0, plan.warmup, mode, rate).await?;
        let expected = joined * plan.warmup;
        let done = wait_for(
            expected,
            &shared.warm_seen,
            &shared.warm_forfeit,
            drain,
            "warm-up",
        )
        .await;
        eprintln!(
            "fanout: warm-up {}/{expected} deliveries, sent in {:.3}s",
            shared.warm_seen.load(Ordering::Relaxed),
            phase.secs()
        );
        if !done {
            eprintln!("fanout: warm-up deliveries are missing; measuring anyway");
        }
    }

    let phase = sender.send(plan.warmup, plan.messages, mode, rate).await?;
    let expected = joined * plan.messages;
    wait_for(
        expected,
        &shared.measured_seen,
        &shared.measured_forfeit,
        drain,
        "measured",
    )
    .await;
    // The server acks each message after fanning it out, so the last acks trail the last
    // deliveries a little; they are counted before the sockets close.
    let sent = plan.total();
    let acks_by = Instant::now() + Duration::from_secs(5);
    while shared.acks.load(Ordering::Relaxed) < sent && Instant::now() < acks_by {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.cancel();

    let receipts = join_all(handles, Duration::from_secs(10)).await;
    let acks = sender.finish().await;
    let mut latencies = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    let mut duplicates = 0;
    let mut last_delivery = 0;
    for receipt in receipts {
        latencies.extend_from_slice(&receipt.latencies);
        duplicates += receipt.duplicates;
        last_delivery = last_delivery.max(receipt.last_delivery);
    }
    let summary = Summary::of(&mut latencies);
    let deliveries = summary.count as u64;
    let duration_secs = last_delivery.saturating_sub(phase.first) as f64 / 1e9;
    let per_sec = if duration_secs > 0.0 {
        deliveries as f64 / duration_secs
    } else {
        0.0
    };
    Ok(json!({
        "scenario": "fanout",
        "mode": mode.as_str(),
        "sockets": args.sockets,
        "joined": joined,
        "connect_failed": report.failed,
        "dropped": shared.dropped.load(Ordering::Relaxed),
        "messages": plan.messages,
        "warmup": plan.warmup,
        "rate": (mode == Mode::Paced).then_some(rate),
        "body_bytes": args.body_bytes,
        "deliveries": deliveries,
        "expected": expected,
        "lost": expected.saturating_sub(deliveries),
        "duplicates": duplicates,
        "send_secs": round3(phase.secs()),
        "sent": phase.sent,
        "duration_secs": round3(duration_secs),
        "deliveries_per_sec": round3(per_sec),
        "p50_ms": summary.p50_ms,
        "p99_ms": summary.p99_ms,
        "max_ms": summary.max_ms,
        "acks_ok": acks.ok,
        "acks_failed": acks.failed,
        "first_failed_ack": acks.first_failure,
        "presence_events": shared.presence.load(Ordering::Relaxed),
        "errors": report.errors,
    }))
}

/// Sends `join` for `room` and waits for its ack, answering pings and counting presence.
async fn join(ws: &mut Ws, room: &str, shared: &Shared) -> Result<(), String> {
    let frame = format!("42{JOIN_ACK_ID}[\"join\",{}]", json!({ "room": room }));
    ws.send(Message::text(frame))
        .await
        .map_err(|error| error.to_string())?;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => return Err("closed".to_owned()),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.to_string()),
        };
        match classify(&text) {
            Packet::Ack {
                id: JOIN_ACK_ID,
                payload,
            } if ack_ok(payload) => return Ok(()),
            Packet::Ack {
                id: JOIN_ACK_ID,
                payload,
            } => return Err(format!("refused: {payload}")),
            Packet::Ping => ws
                .send(Message::Text(PONG))
                .await
                .map_err(|error| error.to_string())?,
            Packet::Event(payload) if payload.starts_with(PRESENCE_EVENT) => {
                note_presence(shared);
            }
            Packet::Close | Packet::Disconnect => return Err("disconnected".to_owned()),
            _ => {}
        }
    }
}

fn note_presence(shared: &Shared) {
    shared.presence.fetch_add(1, Ordering::Relaxed);
    shared.last_presence.store(now_nanos(), Ordering::Relaxed);
}

/// One receiver: connect, join, then read deliveries until `stop`.
async fn receive(
    connector: Arc<Connector>,
    index: usize,
    room: Arc<str>,
    plan: Plan,
    shared: Arc<Shared>,
    stop: CancellationToken,
    ready: crate::ramp::Ready,
) -> Receipt {
    let mut ws = match connector.connect(index).await {
        Ok(ws) => ws,
        Err(error) => {
            ready.fail(error.to_string());
            return Receipt::default();
        }
    };
    if let Err(why) = join(&mut ws, &room, &shared).await {
        ready.fail(format!("join: {why}"));
        return Receipt::default();
    }
    ready.ok();

    let total = plan.total();
    // One bit per sequence number: duplicates and losses are told apart at the cost of a few
    // bytes per receiver.
    let mut seen = vec![0_u64; usize::try_from(total.div_ceil(64)).unwrap_or(0)];
    let mut receipt = Receipt {
        latencies: Vec::with_capacity(usize::try_from(plan.messages).unwrap_or(0)),
        ..Receipt::default()
    };
    let mut warm_unique = 0_u64;
    // Registered once, not once per frame: this is the hot loop.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let alive = loop {
        let frame = tokio::select! {
            biased;
            () = &mut stopped => break true,
            frame = ws.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break false,
            Some(Ok(_)) => continue,
        };
        // Stamped before anything else, so parsing is not counted as network latency.
        let now = now_nanos();
        match classify(&text) {
            Packet::Event(payload) if payload.starts_with(MESSAGE_EVENT) => {
                let Some((seq, sent)) = message_stamp(payload) else {
                    continue;
                };
                let Some(word) = usize::try_from(seq / 64).ok().and_then(|i| seen.get_mut(i))
                else {
                    continue;
                };
                let bit = 1 << (seq % 64);
                if *word & bit != 0 {
                    receipt.duplicates += 1;
                    continue;
                }
                *word |= bit;
                if seq < plan.warmup {
                    warm_unique += 1;
                    shared.warm_seen.fetch_add(1, Ordering::Relaxed);
                } else {
                    receipt.latencies.push(now.saturating_sub(sent));
                    receipt.last_delivery = now;
                    shared.measured_seen.fetch_add(1, Ordering::Relaxed);
                }
            }
            Packet::Event(payload) if payload.starts_with(PRESENCE_EVENT) => note_presence(&shared),
            Packet::Ping => {
                let answered = ws.send(Message::Text(PONG)).await;
                if answered.is_err() {
                    break false;
                }
            }
            Packet::Close | Packet::Disconnect => break false,
            _ => {}
        }
    };
    if alive {
        close(ws).await;
    } else {
        // Whatever this receiver has not got will never come: the coordinator need not wait.
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        shared
            .warm_forfeit
            .fetch_add(plan.warmup - warm_unique, Ordering::Relaxed);
        let measured = receipt.latencies.len() as u64;
        shared
            .measured_forfeit
            .fetch_add(plan.messages - measured, Ordering::Relaxed);
    }
    receipt
}

/// Waits until the presence storm of the joins is over: every socket's join is announced to
/// every member already in the room, so `joined` receivers after the sender make
/// `joined * (joined + 1) / 2` events (more across instances). Stops early when none arrived
/// for a while: a foreign member or a lost event must not hang the run.
async fn settle_presence(shared: &Shared, joined: u64) {
    let expected = joined * (joined + 1) / 2;
    let quiet = Duration::from_millis(500);
    let start = Instant::now();
    loop {
        let seen = shared.presence.load(Ordering::Relaxed);
        let last = shared.last_presence.load(Ordering::Relaxed);
        let idle_for = Duration::from_nanos(now_nanos().saturating_sub(last));
        if seen >= expected || idle_for >= quiet || start.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "fanout: {seen}/{expected} presence events after the joins ({:.2}s to settle)",
                start.elapsed().as_secs_f64()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `seen + forfeit` reaches `expected`, or `drain` passes. Returns whether every
/// expected delivery came or was forfeited.
async fn wait_for(
    expected: u64,
    seen: &AtomicU64,
    forfeit: &AtomicU64,
    drain: Duration,
    label: &str,
) -> bool {
    let start = Instant::now();
    let mut next_report = start + Duration::from_secs(1);
    loop {
        let got = seen.load(Ordering::Relaxed);
        if got + forfeit.load(Ordering::Relaxed) >= expected {
            return true;
        }
        let now = Instant::now();
        if now.duration_since(start) >= drain {
            eprintln!("fanout: {label}: gave up waiting, {got}/{expected} delivered");
            return false;
        }
        if now >= next_report {
            eprintln!("fanout: {label}: {got}/{expected} delivered");
            next_report += Duration::from_secs(1);
        }
        // Polling costs nothing measurable at this period; the latencies and the duration are
        // stamped by the receivers themselves, not by this loop.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// When a sending phase began and ended.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// Process-clock time of the first message.
    first: u64,
    /// Process-clock time the last message was written.
    last: u64,
    /// Messages written.
    sent: u64,
}

impl Phase {
    fn secs(self) -> f64 {
        self.last.saturating_sub(self.first) as f64 / 1e9
    }
}

/// Acks of the sender's messages.
#[derive(Debug, Default)]
struct AckCount {
    ok: u64,
    failed: u64,
    first_failure: Option<String>,
}

/// A sending phase requested of the sender's writer.
struct Command {
    first_seq: u64,
    count: u64,
    mode: Mode,
    rate: f64,
    done: oneshot::Sender<Result<Phase, String>>,
}

/// The sender socket: a writer task sending phases (and pongs), a reader task counting acks.
struct Sender {
    commands: mpsc::Sender<Command>,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<AckCount>,
}

impl Sender {
    fn start(
        ws: Ws,
        room: Arc<str>,
        pad: String,
        shared: Arc<Shared>,
        stop: CancellationToken,
    ) -> Self {
        let (sink, stream) = ws.split();
        let pong = Arc::new(Notify::new());
        let (commands, rx) = mpsc::channel(1);
        let reader = tokio::spawn(read_acks(stream, pong.clone(), shared, stop.clone()));
        let writer = tokio::spawn(write_messages(sink, rx, pong, room, pad, stop));
        Self {
            commands,
            writer,
            reader,
        }
    }

    /// Sends `count` messages from `first_seq` and returns when the last is written.
    async fn send(
        &self,
        first_seq: u64,
        count: u64,
        mode: Mode,
        rate: f64,
    ) -> Result<Phase, crate::Error> {
        let (done, result) = oneshot::channel();
        let command = Command {
            first_seq,
            count,
            mode,
            rate,
            done,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| "the sender's writer is gone")?;
        let phase = result
            .await
            .map_err(|_| "the sender's writer is gone")?
            .map_err(|why| format!("the sender failed: {why}"))?;
        Ok(phase)
    }

    /// Ends both tasks (the run's stop token must be cancelled) and returns the ack count.
    async fn finish(self) -> AckCount {
        drop(self.commands);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.writer).await;
        match tokio::time::timeout(Duration::from_secs(2), self.reader).await {
            Ok(Ok(count)) => count,
            _ => AckCount::default(),
        }
    }
}

async fn read_acks(
    mut stream: SplitStream<Ws>,
    pong: Arc<Notify>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> AckCount {
    let mut count = AckCount::default();
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let frame = tokio::select! {
            biased;
            () = &mut stopped => break,
            frame = stream.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                eprintln!("fanout: the server closed the sender's socket");
                break;
            }
            Some(Ok(_)) => continue,
        };
        match classify(&text) {
            Packet::Ack { payload, .. } if ack_ok(payload) => {
                count.ok += 1;
                shared.acks.fetch_add(1, Ordering::Relaxed);
            }
            Packet::Ack { payload, .. } => {
                count.failed += 1;
                shared.acks.fetch_add(1, Ordering::Relaxed);
                if count.first_failure.is_none() {
                    count.first_failure = Some(payload.to_owned());
                }
            }
            Packet::Ping => pong.notify_one(),
            Packet::Event(payload) if payload.starts_with(PRESENCE_EVENT) => note_presence(&shared),
            Packet::Close | Packet::Disconnect => {
                eprintln!("fanout: the server disconnected the sender");
                break;
            }
            _ => {}
        }
    }
    count
}

async fn write_messages(
    mut sink: SplitSink<Ws, Message>,
    mut commands: mpsc::Receiver<Command>,
    pong: Arc<Notify>,
    room: Arc<str>,
    pad: String,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = pong.notified() => {
                if sink.send(Message::Text(PONG)).await.is_err() {
                    break;
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { break };
                let result = send_phase(&mut sink, &command, &pong, &room, &pad)
                    .await
                    .map_err(|error| error.to_string());
                let _ = command.done.send(result);
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

async fn send_phase(
    sink: &mut SplitSink<Ws, Message>,
    command: &Command,
    pong: &Notify,
    room: &str,
    pad: &str,
) -> Result<Phase, tokio_tungstenite::tungstenite::Error> {
    let frame = |seq: u64| -> Message {
        // Ack ids follow the join's, one per message, so each ack names its message.
        let text: Utf8Bytes =
            message_frame(room, seq + JOIN_ACK_ID + 1, seq, now_nanos(), pad).into();
        Message::Text(text)
    };
    let seqs = command.first_seq..command.first_seq + command.count;
    let first = now_nanos();
    match command.mode {
        Mode::Burst => {
            // `feed` only buffers (tungstenite writes whenever 128 KiB are pending); one flush
            // at the end: the server gets the burst as fast as the socket takes it.
            for seq in seqs {
                sink.feed(frame(seq)).await?;
            }
            sink.flush().await?;
        }
        Mode::Paced => {
            let period = Duration::from_secs_f64(1.0 / command.rate);
            let start = tokio::time::Instant::now();
            for (k, seq) in seqs.enumerate() {
                // Scheduled against the start rather than the previous send, so the rate holds
                // even when a send is late; a late sender catches up at once.
                let due = start + period.mul_f64(k as f64);
                loop {
                    tokio::select! {
                        biased;
                        () = tokio::time::sleep_until(due) => break,
                        () = pong.notified() => sink.send(Message::Text(PONG)).await?,
                    }
                }
                sink.send(frame(seq)).await?;
            }
        }
    }
    Ok(Phase {
        first,
        last: now_nanos(),
        sent: command.count,
    })
}
