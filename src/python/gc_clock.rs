//! `_GcClock`: the `gc.callbacks` entry behind `shardpool.metrics.GcMonitor`.
//! It times every collection on two clocks and keeps running totals and
//! histogram counts per generation.
//!
//! Why native: calling it runs no Python bytecode. A Python callback hands
//! the GIL to a waiting thread at its first instruction, in the middle of
//! the collection, and CPython 3.11 resets the young generation's
//! allocation count after the "start" callbacks, so whatever other threads
//! allocate meanwhile is never counted. Measured on 4 threads building
//! rows: a no-op Python callback cut the young collections from 520 to
//! 277-385, a Python timing callback to 60. This one reads the wall clock
//! with `Instant` and the thread's CPU clock through `time.thread_time_ns`
//! (a C function: portable, and it never lets another thread run).
//!
//! Invariant: the interpreter never runs two collections at once, and
//! runs a collection's "start" and "stop" callbacks in one thread, so one
//! `started` slot serves; a "stop" without its "start" (the clock was added
//! mid-collection) is ignored. All state sits behind one mutex, taken by
//! the callback and by `snapshot` and never held while Python code runs,
//! so a snapshot holds whole collections.

use std::sync::Mutex;
use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

#[derive(Clone, Default)]
struct Generation {
    collections: u64,
    collected: u64,
    uncollectable: u64,
    wall_ns: u64,
    cpu_ns: u64,
    max_wall_ns: u64,
    max_cpu_ns: u64,
    /// Pauses per bucket (at or below each bound), then the overflow.
    wall_counts: Vec<u64>,
    cpu_counts: Vec<u64>,
}

struct State {
    started: Option<(Instant, i64)>,
    generations: Vec<Generation>,
}

/// One generation's totals, as ``snapshot()`` returns them: collections,
/// objects collected, uncollectable, wall and CPU nanoseconds in total and
/// at most, and per-bucket counts (overflow last) on each clock.
type Row = (u64, u64, u64, u64, u64, u64, u64, Vec<u64>, Vec<u64>);

/// The garbage collector clock of ``shardpool.metrics.GcMonitor`` (private).
#[pyclass(frozen, module = "shardpool._core", name = "_GcClock")]
pub struct GcClock {
    bounds_ns: Vec<u64>,
    cpu_clock: Py<PyAny>,
    state: Mutex<State>,
}

impl GcClock {
    fn empty(&self) -> Generation {
        Generation {
            wall_counts: vec![0; self.bounds_ns.len() + 1],
            cpu_counts: vec![0; self.bounds_ns.len() + 1],
            ..Generation::default()
        }
    }

    fn clocks(&self, py: Python<'_>) -> PyResult<(Instant, i64)> {
        Ok((Instant::now(), self.cpu_clock.call0(py)?.extract(py)?))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned lock's data is whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bucket(&self, ns: u64) -> usize {
        self.bounds_ns.partition_point(|&bound| bound < ns)
    }
}

fn item(info: &Bound<'_, PyDict>, key: &Bound<'_, PyString>) -> PyResult<u64> {
    match info.get_item(key)? {
        Some(value) => Ok(value.extract::<i64>()?.max(0) as u64),
        None => Ok(0),
    }
}

#[pymethods]
impl GcClock {
    /// ``bounds``: the histogram's upper bounds in nanoseconds, increasing.
    #[new]
    fn new(py: Python<'_>, bounds: Vec<u64>) -> PyResult<Self> {
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PyValueError::new_err(format!(
                "bounds must be strictly increasing, got {bounds:?}"
            )));
        }
        let time = py.import("time")?;
        let generations = py
            .import("gc")?
            .getattr("get_count")?
            .call0()?
            .len()
            .unwrap_or(3);
        let clock = GcClock {
            bounds_ns: bounds,
            cpu_clock: time.getattr("thread_time_ns")?.unbind(),
            state: Mutex::new(State {
                started: None,
                generations: Vec::new(),
            }),
        };
        let empty = clock.empty();
        clock.lock().generations = vec![empty; generations];
        Ok(clock)
    }

    /// Called by the interpreter with ``"start"`` or ``"stop"`` and the
    /// collection's ``info``.
    fn __call__(&self, py: Python<'_>, phase: &str, info: &Bound<'_, PyDict>) -> PyResult<()> {
        let (wall, cpu) = self.clocks(py)?;
        if phase == "start" {
            self.lock().started = Some((wall, cpu));
            return Ok(());
        }
        let generation = item(info, intern!(py, "generation"))?;
        let generation = usize::try_from(generation).unwrap_or(usize::MAX);
        let collected = item(info, intern!(py, "collected"))?;
        let uncollectable = item(info, intern!(py, "uncollectable"))?;
        let empty = self.empty();
        let mut state = self.lock();
        let Some((wall0, cpu0)) = state.started.take() else {
            return Ok(()); // added in the middle of this collection
        };
        let wall_ns = u64::try_from(wall.duration_since(wall0).as_nanos()).unwrap_or(u64::MAX);
        let cpu_ns = cpu.saturating_sub(cpu0).max(0) as u64;
        let (wall_bucket, cpu_bucket) = (self.bucket(wall_ns), self.bucket(cpu_ns));
        if generation >= state.generations.len() {
            if generation > 64 {
                return Ok(()); // not a generation: ignore rather than grow without bound
            }
            state.generations.resize(generation + 1, empty);
        }
        let g = &mut state.generations[generation];
        g.collections += 1;
        g.collected += collected;
        g.uncollectable += uncollectable;
        g.wall_ns += wall_ns;
        g.cpu_ns += cpu_ns;
        g.max_wall_ns = g.max_wall_ns.max(wall_ns);
        g.max_cpu_ns = g.max_cpu_ns.max(cpu_ns);
        g.wall_counts[wall_bucket] += 1;
        g.cpu_counts[cpu_bucket] += 1;
        Ok(())
    }

    /// One row per generation, oldest last (see ``Row``).
    fn snapshot(&self) -> Vec<Row> {
        self.lock()
            .generations
            .iter()
            .map(|g| {
                (
                    g.collections,
                    g.collected,
                    g.uncollectable,
                    g.wall_ns,
                    g.cpu_ns,
                    g.max_wall_ns,
                    g.max_cpu_ns,
                    g.wall_counts.clone(),
                    g.cpu_counts.clone(),
                )
            })
            .collect()
    }
}
