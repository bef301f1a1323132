//! Learning the sizes of recent use, for pools of growable buffers.
//!
//! Every returned buffer's length is counted in a power-of-two bin. After
//! `window` returns, one thread recomputes two sizes from the counts and
//! starts a new window:
//! - `typical`: the bin seen most often: the capacity new buffers get;
//! - `large`: the bin at the 95th percentile: buffers whose capacity is far
//!   above it (more than `KEEP_FACTOR` times) are not kept, so one rare huge
//!   use does not pin memory for the life of the pool.
//!
//! Invariants: counts are relaxed atomics (statistics only); one thread at a
//! time recomputes (the `calibrating` flag), and readers see either the old
//! or the new sizes, each a valid size. Before the first window completes,
//! `large` is unknown and only the hard cap applies.
//!
//! Each thread group counts in a cache-line-padded block of its own (by
//! thread index, as the pools' shards; one block when callers are
//! serialized, `shards::callers_serialized`, and then, in the abi3
//! binding, `shards::SERIALIZED_BUILD`, the group lookup is compiled out
//! of `record`), so threads returning buffers to one
//! pool do not write a common line on every return (on a free-threaded
//! Python, two threads' `fetch_add`s on shared counters cost a buffer's
//! get+write+release twice its time); the sizes read on every call sit on
//! a line written only when a window ends. A window ends when one group
//! has counted `window` returns, and the recomputation takes every group's
//! counts: with one thread it is exactly every `window` returns, as before;
//! with several, between `window` and `groups * window` (a count racing
//! the recomputation lands in this window or the next; nothing is lost).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

const MIN_BIN: usize = 64;
const BINS: usize = 26; // 64 B .. 2 GiB
/// Buffers up to this many times the 95th-percentile size are kept.
pub(crate) const KEEP_FACTOR: usize = 2;
const PERCENTILE: f64 = 0.95;

/// One thread group's counts in the current window.
#[derive(Debug, Default)]
struct Counts {
    bins: [AtomicU64; BINS],
    calls: AtomicUsize,
}

#[derive(Debug)]
pub struct Calibrator {
    /// Group 0's counts, inline: with callers serialized the only ones,
    /// reached with no lookup.
    first: CachePadded<Counts>,
    /// The other groups' counts (none when callers are serialized).
    more: Box<[CachePadded<Counts>]>,
    window: usize,
    calibrating: AtomicBool,
    typical: AtomicUsize,
    large: AtomicUsize,
}

fn bin(len: usize) -> usize {
    // Lengths above the largest power of two (where `next_power_of_two`
    // would overflow) go in the last bin with every other huge length.
    match len.max(MIN_BIN).checked_next_power_of_two() {
        Some(size) => ((size.trailing_zeros() - MIN_BIN.trailing_zeros()) as usize).min(BINS - 1),
        None => BINS - 1,
    }
}

fn bin_size(bin: usize) -> usize {
    MIN_BIN << bin
}

impl Calibrator {
    /// `initial`: the capacity of new buffers until the first calibration.
    pub fn new(window: usize, initial: usize) -> Self {
        let groups = if crate::shards::callers_serialized() {
            1
        } else {
            crate::shards::default_shard_count()
        };
        Calibrator {
            first: CachePadded::default(),
            more: (1..groups).map(|_| CachePadded::default()).collect(),
            window: window.max(1),
            calibrating: AtomicBool::new(false),
            typical: AtomicUsize::new(initial),
            large: AtomicUsize::new(usize::MAX),
        }
    }

    /// The capacity to give a new buffer.
    pub fn typical(&self) -> usize {
        self.typical.load(Ordering::Relaxed)
    }

    /// The 95th-percentile size of the last window (`usize::MAX` before one).
    pub fn large(&self) -> usize {
        self.large.load(Ordering::Relaxed)
    }

    /// Whether a buffer of this capacity is worth keeping.
    pub(crate) fn keeps(&self, capacity: usize) -> bool {
        capacity <= self.large().saturating_mul(KEEP_FACTOR)
    }

    /// Counts one use of `len` bytes.
    pub(crate) fn record(&self, len: usize) {
        let mine = if crate::shards::SERIALIZED_BUILD || self.more.is_empty() {
            &self.first
        } else {
            self.local()
        };
        mine.bins[bin(len)].fetch_add(1, Ordering::Relaxed);
        if mine.calls.fetch_add(1, Ordering::Relaxed) + 1 >= self.window {
            self.calibrate();
        }
    }

    /// The calling thread's group's counts. Out of line: inlined, it made a
    /// buffer's get+write+release 8 instructions longer where callers are
    /// serialized and it never runs.
    #[inline(never)]
    fn local(&self) -> &Counts {
        let (i, n) = (crate::shards::current().index, self.more.len() + 1);
        // Thread indices are small (see `shards`): the division is rare.
        match if i < n { i } else { i % n } {
            0 => &self.first,
            i => &self.more[i - 1],
        }
    }

    /// Every group's counts.
    fn groups(&self) -> impl Iterator<Item = &Counts> {
        std::iter::once(&*self.first).chain(self.more.iter().map(|c| &**c))
    }

    #[cold]
    #[inline(never)]
    fn calibrate(&self) {
        if self.calibrating.swap(true, Ordering::Acquire) {
            return; // another thread is on it
        }
        let mut counts = [0u64; BINS];
        for group in self.groups() {
            group.calls.store(0, Ordering::Relaxed);
            for (sum, b) in counts.iter_mut().zip(&group.bins) {
                *sum += b.swap(0, Ordering::Relaxed);
            }
        }
        let total: u64 = counts.iter().sum();
        if total > 0 {
            let typical = (0..BINS)
                .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
                .unwrap_or(0);
            let needed = (total as f64 * PERCENTILE).ceil() as u64;
            let mut seen = 0;
            let large = (0..BINS)
                .find(|&i| {
                    seen += counts[i];
                    seen >= needed
                })
                .unwrap_or(BINS - 1);
            self.typical.store(bin_size(typical), Ordering::Relaxed);
            self.large.store(bin_size(large), Ordering::Relaxed);
        }
        self.calibrating.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_powers_of_two_from_64() {
        assert_eq!(
            (bin(0), bin(64), bin(65), bin(128), bin(1 << 20)),
            (0, 0, 1, 1, 14)
        );
        assert_eq!(bin(usize::MAX / 2), BINS - 1);
        assert_eq!(bin(usize::MAX), BINS - 1, "no overflow at the top");
    }

    #[test]
    fn learns_typical_and_large_sizes() {
        let c = Calibrator::new(100, 4096);
        assert_eq!(c.typical(), 4096);
        assert!(c.keeps(1 << 30), "nothing learned yet: keep");
        for i in 0..100 {
            // 90 small responses, 6 medium, 4 huge.
            c.record(match i % 25 {
                0 => 10 << 20,
                1..=3 => 20_000,
                _ => 3000,
            });
        }
        assert_eq!(c.typical(), 4096);
        assert_eq!(c.large(), 32768);
        assert!(c.keeps(65536));
        assert!(!c.keeps(10 << 20), "the rare huge buffer is not kept");
    }

    #[test]
    fn a_window_counts_every_thread_s_returns() {
        let c = Calibrator::new(100, 4096);
        // 10 huge returns here, then 100 small ones on another thread,
        // whose group ends the window (or ours, if both threads count in
        // one group: after 90 of them). Either way the window holds the
        // huge ones too: they make its 95th percentile.
        for _ in 0..10 {
            c.record(1 << 20);
        }
        std::thread::scope(|t| {
            t.spawn(|| (0..100).for_each(|_| c.record(100)));
        });
        assert_eq!(c.typical(), 128);
        assert_eq!(c.large(), 1 << 20, "the other group's returns counted");
    }
}
