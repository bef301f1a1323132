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
//! The totals, and why a snapshot holds whole collections, are the core's
//! (`crate::pauses`); this class reads the clocks and the collector's `info`.

use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::pauses::{Collection, Pauses};

/// One generation's totals, as ``snapshot()`` returns them: collections,
/// objects collected, uncollectable, wall and CPU nanoseconds in total and
/// at most, and per-bucket counts (overflow last) on each clock.
type Row = (u64, u64, u64, u64, u64, u64, u64, Vec<u64>, Vec<u64>);

/// The garbage collector clock of ``shardpool.metrics.GcMonitor`` (private).
#[pyclass(frozen, module = "shardpool._core", name = "_GcClock")]
pub struct GcClock {
    cpu_clock: Py<PyAny>,
    pauses: Pauses,
}

impl GcClock {
    fn clocks(&self, py: Python<'_>) -> PyResult<(Instant, i64)> {
        Ok((Instant::now(), self.cpu_clock.call0(py)?.extract(py)?))
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
        let generations = py.import("gc")?.getattr("get_count")?.call0()?.len();
        Ok(GcClock {
            pauses: Pauses::new(bounds, generations.unwrap_or(3)).map_err(PyValueError::new_err)?,
            cpu_clock: py.import("time")?.getattr("thread_time_ns")?.unbind(),
        })
    }

    /// Called by the interpreter with ``"start"`` or ``"stop"`` and the
    /// collection's ``info``.
    fn __call__(&self, py: Python<'_>, phase: &str, info: &Bound<'_, PyDict>) -> PyResult<()> {
        let (wall, cpu) = self.clocks(py)?;
        if phase == "start" {
            self.pauses.start(wall, cpu);
            return Ok(());
        }
        let generation = item(info, intern!(py, "generation"))?;
        let found = Collection {
            generation: usize::try_from(generation).unwrap_or(usize::MAX),
            collected: item(info, intern!(py, "collected"))?,
            uncollectable: item(info, intern!(py, "uncollectable"))?,
        };
        self.pauses.stop(wall, cpu, &found);
        Ok(())
    }

    /// One row per generation, oldest last (see ``Row``).
    fn snapshot(&self) -> Vec<Row> {
        let rows = self.pauses.snapshot().into_iter();
        rows.map(|g| {
            (
                g.collections,
                g.collected,
                g.uncollectable,
                g.wall_ns,
                g.cpu_ns,
                g.max_wall_ns,
                g.max_cpu_ns,
                g.wall_counts,
                g.cpu_counts,
            )
        })
        .collect()
    }
}
