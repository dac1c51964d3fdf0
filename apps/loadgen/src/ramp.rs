//! Opening many sockets with a bounded number of handshakes in flight, with progress on stderr.
//!
//! Each socket is one task for its whole life; the ramp only learns when it is ready (connected,
//! and joined where the scenario joins) or has failed, through a [`Ready`] it must resolve.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

type Outcome = Result<(), String>;

/// A socket task's promise to say once whether it became ready; it also holds the task's slot
/// among the handshakes in flight, freed as soon as it says.
#[derive(Debug)]
pub struct Ready {
    tx: mpsc::UnboundedSender<(Outcome, Instant)>,
    permit: Option<OwnedSemaphorePermit>,
    told: bool,
}

impl Ready {
    /// The socket is ready.
    pub fn ok(mut self) {
        self.tell(Ok(()));
    }

    /// The socket failed for this reason.
    pub fn fail(mut self, why: String) {
        self.tell(Err(why));
    }

    fn tell(&mut self, outcome: Outcome) {
        if !self.told {
            self.told = true;
            self.permit = None;
            // The ramp may have stopped listening; nothing is lost then.
            let _ = self.tx.send((outcome, Instant::now()));
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        // A task that ends (or panics) without saying still counts, so the ramp never hangs.
        self.tell(Err("the socket task ended before it was ready".to_owned()));
    }
}

/// How a ramp went.
#[derive(Debug, Clone, Default)]
pub struct RampReport {
    /// Sockets that became ready.
    pub ok: usize,
    /// Sockets that failed.
    pub failed: usize,
    /// Seconds from the first connect to the last socket that became ready.
    pub secs: f64,
    /// Failure reasons and how often each occurred (at most a few distinct ones kept).
    pub errors: BTreeMap<String, usize>,
}

impl RampReport {
    /// Ready sockets per second of ramp.
    pub fn per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            let ok = self.ok as f64;
            ok / self.secs
        } else {
            0.0
        }
    }
}

/// Distinct failure reasons kept for the report.
const MAX_DISTINCT_ERRORS: usize = 8;

/// Spawns `n` socket tasks made by `task(index, ready)`, at most `concurrency` of them before
/// their [`Ready`], and waits until every one has resolved it.
///
/// Returns the report and the tasks' handles (they go on running).
pub async fn ramp<T, F, Fut>(
    label: &str,
    n: usize,
    concurrency: usize,
    task: F,
) -> (RampReport, Vec<JoinHandle<T>>)
where
    F: Fn(usize, Ready) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    let mut report = RampReport::default();
    let mut last_ready = start;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    while report.ok + report.failed < n {
        tokio::select! {
            permit = slots.clone().acquire_owned(), if handles.len() < n => {
                // The semaphore is never closed.
                let Ok(permit) = permit else { break };
                let ready = Ready { tx: tx.clone(), permit: Some(permit), told: false };
                handles.push(tokio::spawn(task(handles.len(), ready)));
            }
            Some((outcome, at)) = rx.recv() => match outcome {
                Ok(()) => {
                    report.ok += 1;
                    last_ready = last_ready.max(at);
                }
                Err(why) => {
                    report.failed += 1;
                    if report.errors.len() < MAX_DISTINCT_ERRORS || report.errors.contains_key(&why) {
                        *report.errors.entry(why).or_default() += 1;
                    }
                }
            },
            _ = ticker.tick() => {
                eprintln!(
                    "{label}: {}/{n} ready, {} failed, {:.1}s",
                    report.ok,
                    report.failed,
                    start.elapsed().as_secs_f64()
                );
            }
        }
    }
    report.secs = last_ready.duration_since(start).as_secs_f64();
    eprintln!(
        "{label}: {} ready, {} failed in {:.2}s ({:.0}/s)",
        report.ok,
        report.failed,
        report.secs,
        report.per_sec()
    );
    for (why, count) in &report.errors {
        eprintln!("{label}: {count} x {why}");
    }
    (report, handles)
}
