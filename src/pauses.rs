//! The pauses of a garbage collector, per generation: how many collections,
//! what they found, and how long each took on two clocks (wall and the
//! collecting thread's CPU), as running totals, maxima and histogram counts.
//! The binding's `_GcClock` (behind `shardpool.metrics.GcMonitor`) feeds it.
//!
//! Invariants: a collector runs one collection at a time, its start and
//! stop in one thread, so one `started` slot serves; a stop without its
//! start (the clock was added mid-collection) is ignored. All state sits
//! behind one mutex, held for a few additions and never while the caller
//! runs other code, so a snapshot holds whole collections.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// One generation's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    pub collections: u64,
    pub collected: u64,
    pub uncollectable: u64,
    pub wall_ns: u64,
    pub cpu_ns: u64,
    pub max_wall_ns: u64,
    pub max_cpu_ns: u64,
    /// Pauses per bucket (at or below each bound), then the overflow.
    pub wall_counts: Vec<u64>,
    pub cpu_counts: Vec<u64>,
}

/// What one collection found, as the collector reports it at its stop.
pub(crate) struct Collection {
    pub generation: usize,
    pub collected: u64,
    pub uncollectable: u64,
}

struct State {
    /// The running collection's start on the two clocks.
    started: Option<(Instant, i64)>,
    generations: Vec<Generation>,
}

/// The totals of every generation (see the module's invariants).
pub(crate) struct Pauses {
    bounds_ns: Vec<u64>,
    state: Mutex<State>,
}

/// The most generations kept: a larger number is not a generation.
const MAX_GENERATION: usize = 64;

impl Pauses {
    /// `generations` empty rows, with histograms bounded by `bounds_ns`
    /// (refused unless strictly increasing).
    pub fn new(bounds_ns: Vec<u64>, generations: usize) -> Result<Self, String> {
        if bounds_ns.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "bounds must be strictly increasing, got {bounds_ns:?}"
            ));
        }
        let pauses = Pauses {
            bounds_ns,
            state: Mutex::new(State {
                started: None,
                generations: Vec::new(),
            }),
        };
        let empty = pauses.empty();
        pauses.lock().generations = vec![empty; generations];
        Ok(pauses)
    }

    fn empty(&self) -> Generation {
        Generation {
            wall_counts: vec![0; self.bounds_ns.len() + 1],
            cpu_counts: vec![0; self.bounds_ns.len() + 1],
            ..Generation::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned lock's data is whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bucket(&self, ns: u64) -> usize {
        self.bounds_ns.partition_point(|&bound| bound < ns)
    }

    /// A collection starts, at `wall` and `cpu_ns` on the thread's CPU clock.
    pub fn start(&self, wall: Instant, cpu_ns: i64) {
        self.lock().started = Some((wall, cpu_ns));
    }

    /// The running collection stops: its pause is added to its generation.
    pub fn stop(&self, wall: Instant, cpu_ns: i64, found: &Collection) {
        let empty = self.empty();
        let mut state = self.lock();
        let Some((wall0, cpu0)) = state.started.take() else {
            return; // added in the middle of this collection
        };
        let wall_ns = u64::try_from(wall.duration_since(wall0).as_nanos()).unwrap_or(u64::MAX);
        let cpu_ns = cpu_ns.saturating_sub(cpu0).max(0) as u64;
        let (wall_bucket, cpu_bucket) = (self.bucket(wall_ns), self.bucket(cpu_ns));
        if found.generation >= state.generations.len() {
            if found.generation > MAX_GENERATION {
                return; // not a generation: ignore rather than grow without bound
            }
            state.generations.resize(found.generation + 1, empty);
        }
        let g = &mut state.generations[found.generation];
        g.collections += 1;
        g.collected += found.collected;
        g.uncollectable += found.uncollectable;
        g.wall_ns += wall_ns;
        g.cpu_ns += cpu_ns;
        g.max_wall_ns = g.max_wall_ns.max(wall_ns);
        g.max_cpu_ns = g.max_cpu_ns.max(cpu_ns);
        g.wall_counts[wall_bucket] += 1;
        g.cpu_counts[cpu_bucket] += 1;
    }

    /// Every generation's totals, youngest first.
    pub fn snapshot(&self) -> Vec<Generation> {
        self.lock().generations.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn found(generation: usize) -> Collection {
        Collection {
            generation,
            collected: 5,
            uncollectable: 1,
        }
    }

    #[test]
    fn refuses_bounds_that_do_not_increase() {
        let err = Pauses::new(vec![10, 10], 3).err().unwrap();
        assert_eq!(err, "bounds must be strictly increasing, got [10, 10]");
        assert!(Pauses::new(vec![], 3).is_ok());
    }

    #[test]
    fn adds_each_pause_to_its_generation_and_buckets() {
        let pauses = Pauses::new(vec![1_000, 1_000_000], 3).unwrap();
        let t0 = Instant::now();
        pauses.start(t0, 100);
        pauses.stop(t0 + Duration::from_micros(2), 600, &found(1));
        pauses.start(t0, 100);
        pauses.stop(t0 + Duration::from_millis(2), 50, &found(1)); // CPU clock went back
        let rows = pauses.snapshot();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], pauses.empty());
        let g = &rows[1];
        assert_eq!((g.collections, g.collected, g.uncollectable), (2, 10, 2));
        assert_eq!((g.wall_ns, g.max_wall_ns), (2_002_000, 2_000_000));
        assert_eq!((g.cpu_ns, g.max_cpu_ns), (500, 500));
        assert_eq!(g.wall_counts, [0, 1, 1]);
        assert_eq!(g.cpu_counts, [2, 0, 0]);
    }

    #[test]
    fn ignores_a_stop_without_start_and_no_generation() {
        let pauses = Pauses::new(vec![1_000], 1).unwrap();
        let t0 = Instant::now();
        pauses.stop(t0, 0, &found(0));
        pauses.start(t0, 0);
        pauses.stop(t0, 0, &found(MAX_GENERATION + 1));
        assert_eq!(pauses.snapshot(), [pauses.empty()]);
        pauses.start(t0, 0);
        pauses.stop(t0, 0, &found(2)); // a new generation: the rows grow
        assert_eq!(pauses.snapshot().len(), 3);
        assert_eq!(pauses.snapshot()[2].collections, 1);
    }
}
