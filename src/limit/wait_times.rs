//! The wait-time histogram of a bounded pool: how long the waits that
//! ended (served or timed out) took, counted per bucket, for a scraper
//! (Prometheus's `shardpool_wait_seconds`).
//!
//! Invariants:
//! - Each ended wait is counted once, in exactly one bucket, and its
//!   duration added to the sum. Counters only grow; a reader sees each
//!   counter as of some moment (the buckets may be read a few waits
//!   apart: a scrape is a moment's reading, as every gauge is).
//! - Nothing here is on the path of a get that does not wait.

use std::time::Duration;

// Plain std atomics: statistics, not a protocol that loom need model.
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets, in seconds (a last bucket, `+Inf`, holds
/// the rest): from half a millisecond (a hand-off under contention) to a
/// minute (twice the usual 30 s timeout).
pub const WAIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];

/// Counts per bucket of wait durations, and their sum.
#[derive(Default)]
pub struct WaitTimes {
    /// One counter per bound of [`WAIT_BUCKETS`], then `+Inf`.
    counts: [AtomicU64; WAIT_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl WaitTimes {
    /// Counts a wait that ended after `waited`.
    pub fn record(&self, waited: Duration) {
        let secs = waited.as_secs_f64();
        let bucket = WAIT_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(WAIT_BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts per bucket (not cumulative; the last is `+Inf`) and the
    /// sum of the durations in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        (counts, sum)
    }
}
