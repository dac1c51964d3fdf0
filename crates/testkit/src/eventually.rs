//! Waiting for a condition instead of sleeping.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Calls `probe` until it returns `Ok`, at most for `within`, and returns what it returned.
///
/// The pause between attempts starts at 10 ms and doubles up to 200 ms, so a condition that
/// holds soon is seen soon and one that takes seconds costs few attempts.
///
/// # Panics
///
/// When `within` passes first: the message names `what` and the last `Err` the probe returned,
/// which should say what was seen instead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
///
/// let done = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&done);
/// tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
/// keel_testkit::eventually("the task ran", Duration::from_secs(5), || async {
///     if done.load(Ordering::SeqCst) { Ok(()) } else { Err("not yet") }
/// })
/// .await;
/// # }
/// ```
pub async fn eventually<T, E, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Debug,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!("{what}: not so within {within:?}; last seen: {last:?}");
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn returns_as_soon_as_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let value = eventually("the third call", Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 3 { Ok(n) } else { Err(n) }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "never: not so within")]
    async fn panics_with_what_was_seen_when_time_runs_out() {
        eventually("never", Duration::from_millis(50), || async {
            Err::<(), _>("nope")
        })
        .await;
    }
}
