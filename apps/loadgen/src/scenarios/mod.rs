//! The scenarios, and the socket loops they share.

pub mod acks;
pub mod fanout;
pub mod idle;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::engine::{PONG, Packet, Ws, classify};

/// How long a socket may spend sending its close frame at the end of a run.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Keeps a socket alive, answering the server's pings, until `stop`; then closes it.
///
/// Returns whether it was still connected when told to stop.
pub async fn hold(mut ws: Ws, stop: &CancellationToken) -> bool {
    let alive = answer_pings_until(&mut ws, stop).await;
    if alive {
        close(ws).await;
    }
    alive
}

/// Answers heartbeats (ignoring everything else) until `until` is cancelled; false when the
/// server closed the socket first.
pub async fn answer_pings_until(ws: &mut Ws, until: &CancellationToken) -> bool {
    // Registered once, not once per frame.
    let cancelled = until.cancelled();
    tokio::pin!(cancelled);
    loop {
        let frame = tokio::select! {
            biased;
            () = &mut cancelled => return true,
            frame = ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => match classify(&text) {
                Packet::Ping => {
                    let answered = ws.send(Message::Text(PONG)).await;
                    if answered.is_err() {
                        return false;
                    }
                }
                Packet::Close | Packet::Disconnect => return false,
                _ => {}
            },
            Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
            Some(Ok(_)) => {}
        }
    }
}

/// Closes a socket politely but without waiting long: the run is over.
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
}

/// Awaits every task, giving up on those not done within `within` (they are aborted).
pub async fn join_all<T>(handles: Vec<JoinHandle<T>>, within: Duration) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + within;
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(_)) => {}
            Err(_) => abort.abort(),
        }
    }
    results
}

/// Seconds as a duration, refusing what cannot be one.
pub fn secs(value: f64, name: &str) -> Result<Duration, crate::Error> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a non-negative number of seconds").into())
}
