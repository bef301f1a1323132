//! `PoolStats`: an immutable snapshot of a pool's counters.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::Snapshot;

/// An immutable snapshot of a pool's counters and gauges, from ``pool.stats()``.
///
/// Counters (``created``, ``hits``, ...) only grow over the pool's life.
/// Gauges (``idle``, ``in_use``) describe the moment of the call. Once the
/// pool is quiescent, ``created == destroyed + idle + in_use``.
#[pyclass(frozen, eq, get_all, module = "shardpool", name = "PoolStats")]
#[derive(Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Objects the factory produced (including ``prefill``).
    created: u64,
    /// Objects the pool discarded, for any reason (``destroy`` ran for each).
    destroyed: u64,
    /// ``get`` calls served with a reused object.
    hits: u64,
    /// ``get`` calls served with a newly created object.
    misses: u64,
    /// Objects given back with ``put`` (also those then dropped or destroyed).
    puts: u64,
    /// Returned objects destroyed because ``max_idle`` objects were idle.
    dropped: u64,
    /// Objects destroyed because their reset raised.
    reset_errors: u64,
    /// Idle objects destroyed because ``validate`` rejected them (or raised).
    invalid: u64,
    /// Idle objects destroyed because they were idle longer than ``idle_timeout``.
    expired: u64,
    /// ``get`` calls that had to wait for a bounded pool.
    waits: u64,
    /// Waits that ended with ``PoolTimeout``.
    timeouts: u64,
    /// Waits given up before their timeout: a cancelled ``aget()`` task
    /// (also one whose event loop closed or that was collected), or a thread
    /// whose wait an exception interrupted (a signal handler's).
    cancelled: u64,
    /// Objects handed out and not yet returned.
    in_use: u64,
    /// Objects idle in the pool.
    idle: u64,
    /// The highest ``in_use`` observed: sampled when an object is created, a
    /// ``get`` waits, every 64th reuse, and on ``stats()``. A short peak
    /// reached through reuse alone between samples can be missed.
    max_in_use: u64,
}

impl From<Snapshot> for PoolStats {
    fn from(s: Snapshot) -> Self {
        PoolStats {
            created: s.created,
            destroyed: s.destroyed,
            hits: s.hits,
            misses: s.misses,
            puts: s.puts,
            dropped: s.dropped,
            reset_errors: s.reset_errors,
            invalid: s.invalid,
            expired: s.expired,
            waits: s.waits,
            timeouts: s.timeouts,
            cancelled: s.cancelled,
            in_use: s.in_use,
            idle: s.idle,
            max_in_use: s.max_in_use,
        }
    }
}

impl PoolStats {
    fn fields(&self) -> [(&'static str, u64); 15] {
        [
            ("created", self.created),
            ("destroyed", self.destroyed),
            ("hits", self.hits),
            ("misses", self.misses),
            ("puts", self.puts),
            ("dropped", self.dropped),
            ("reset_errors", self.reset_errors),
            ("invalid", self.invalid),
            ("expired", self.expired),
            ("waits", self.waits),
            ("timeouts", self.timeouts),
            ("cancelled", self.cancelled),
            ("in_use", self.in_use),
            ("idle", self.idle),
            ("max_in_use", self.max_in_use),
        ]
    }
}

#[pymethods]
impl PoolStats {
    /// Fraction of ``get`` calls served with a reused object (0.0 before any).
    #[getter]
    fn hit_rate(&self) -> f64 {
        crate::counters::hit_rate(self.hits, self.misses)
    }

    /// The counters and gauges as a plain ``dict`` (``hit_rate`` included).
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, value) in self.fields() {
            d.set_item(name, value)?;
        }
        d.set_item("hit_rate", self.hit_rate())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let fields: Vec<String> = self
            .fields()
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        format!("PoolStats({})", fields.join(", "))
    }
}
