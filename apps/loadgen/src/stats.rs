//! Latency percentiles over exact samples, and the process-wide monotonic clock they are
//! measured with.

use std::sync::OnceLock;
use std::time::Instant;

/// The instant the process's clock counts from.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Starts the process clock; call once at start-up so later readings never pay for it.
pub fn start_clock() {
    let _ = EPOCH.get_or_init(Instant::now);
}

/// Nanoseconds since [`start_clock`] on a monotonic clock shared by every task of the process.
///
/// A message carries its send time in this unit, so a receiver in the same process computes the
/// latency by one subtraction, immune to wall-clock steps.
pub fn now_nanos() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years; the saturation is only a formality.
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The nearest-rank percentile `p` (0..=100) of ascending `sorted` samples; `None` when empty.
///
/// Nearest rank always returns an observed sample (no interpolation), so p100 is the maximum
/// and a p99 over 100 samples is the 99th smallest.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // Rank ceil(p/100 * n), clamped to 1..=n; computed in f64, exact enough for any sample count
    // a run produces (below 2^53).
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let rank = rank.clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// The p50, p99 and maximum of a set of latency samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median, in milliseconds (`None` without samples).
    pub p50_ms: Option<f64>,
    /// 99th percentile, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Largest sample, in milliseconds.
    pub max_ms: Option<f64>,
}

impl Summary {
    /// Sorts `samples` (nanoseconds) in place and summarises them.
    pub fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        let ms = |p| percentile(samples, p).map(nanos_to_ms);
        Self {
            count: samples.len(),
            p50_ms: ms(50.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
        }
    }
}

/// Nanoseconds as milliseconds, rounded to the microsecond for a readable report.
pub fn nanos_to_ms(nanos: u64) -> f64 {
    let ms = nanos as f64 / 1e6;
    round3(ms)
}

/// Rounds to three decimals, for the JSON report.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_nothing_is_none() {
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        // 1000 samples: p99 is the 990th smallest.
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 99.0), Some(990));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
    }

    #[test]
    fn summary_sorts_and_converts_to_milliseconds() {
        let mut samples = vec![3_000_000, 1_000_000, 2_000_000, 250_000_000];
        let summary = Summary::of(&mut samples);
        assert_eq!(summary.count, 4);
        assert_eq!(summary.p50_ms, Some(2.0));
        assert_eq!(summary.p99_ms, Some(250.0));
        assert_eq!(summary.max_ms, Some(250.0));
        assert_eq!(Summary::of(&mut []).p50_ms, None);
    }

    #[test]
    fn clock_is_monotonic() {
        start_clock();
        let a = now_nanos();
        let b = now_nanos();
        assert!(b >= a);
    }
}
