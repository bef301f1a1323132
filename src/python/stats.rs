//! The statistics classes: immutable snapshots of a pool's counters,
//! `PoolStats` for the object and buffer pools, `BlockPoolStats` (with a
//! `BlockClassStats` per class) for the block pool.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::blocks::BlockStats;
use crate::Snapshot;

/// `stats_class! { [eq, from Source;] /// docs  pub struct Name { fields } }`:
/// declares a frozen statistics class with a getter per field (and `==`,
/// and a conversion from the core's `Source` with the same fields, after
/// `eq, from Source;`), and its `dict()`, which holds every field, so that
/// `as_dict()` can never miss one. (PyO3's `eq` is written here, not
/// passed in: its expansion only works with the macro's own tokens.)
macro_rules! stats_class {
    (eq, from $source:ty;
        $(#[$doc:meta])*
        pub struct $class:ident { $($(#[$field_doc:meta])* $field:ident: $ty:ty,)* }
    ) => {
        stats_class!(@class [
            #[pyclass(frozen, eq, get_all, module = "shardpool")]
            #[derive(Clone, PartialEq, Eq)]
        ]
            $(#[$doc])*
            pub struct $class { $($(#[$field_doc])* $field: $ty,)* }
        );

        impl From<$source> for $class {
            fn from(s: $source) -> Self {
                $class { $($field: s.$field,)* }
            }
        }
    };
    (@class [$($attr:tt)*]
        $(#[$doc:meta])*
        pub struct $class:ident { $($(#[$field_doc:meta])* $field:ident: $ty:ty,)* }
    ) => {
        $(#[$doc])*
        $($attr)*
        pub struct $class { $($(#[$field_doc])* $field: $ty,)* }

        impl $class {
            /// The fields as a `dict`.
            fn dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let dict = PyDict::new(py);
                $(dict.set_item(stringify!($field), &self.$field)?;)*
                Ok(dict)
            }
        }
    };
    ($($rest:tt)*) => {
        stats_class!(@class [#[pyclass(frozen, get_all, module = "shardpool")]] $($rest)*);
    };
}

stats_class! {
    eq, from Snapshot;
    /// An immutable snapshot of a pool's counters and gauges, from ``pool.stats()``.
    ///
    /// Counters (``created``, ``hits``, ...) only grow over the pool's life.
    /// Gauges (``idle``, ``in_use``) describe the moment of the call. Once the
    /// pool is quiescent, ``created == destroyed + idle + in_use``.
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
        /// Objects destroyed because they were idle longer than ``idle_timeout``,
        /// or lived longer than ``max_lifetime`` (checked on ``get``, ``put`` and
        /// ``trim``).
        expired: u64,
        /// ``get`` calls that had to wait for a bounded pool.
        waits: u64,
        /// Waits that ended with ``PoolTimeout``.
        timeouts: u64,
        /// Waits given up before their timeout: a cancelled ``aget()`` task
        /// (also one whose event loop closed or that was collected), or a thread
        /// whose wait an exception interrupted (a signal handler's).
        cancelled: u64,
        /// Callers refused at once with ``PoolTooBusy`` because ``max_waiting``
        /// callers were waiting (counted neither as ``waits`` nor as
        /// ``timeouts``).
        rejected: u64,
        /// Objects holders gave back to be destroyed: ``discard(obj)``, or a
        /// ``borrow()`` block that raised one of ``discard_on`` (also counted
        /// in ``destroyed``, not in ``puts``).
        discarded: u64,
        /// Objects handed out and not yet returned.
        in_use: u64,
        /// Callers (threads and tasks) waiting now for a full bounded pool
        /// (always 0 for the pools that never make a caller wait).
        waiting: u64,
        /// Objects idle in the pool.
        idle: u64,
        /// The highest ``in_use`` observed: sampled when an object is created, a
        /// ``get`` waits, every 64th reuse, and on ``stats()``. A short peak
        /// reached through reuse alone between samples can be missed.
        max_in_use: u64,
    }
}

/// `hit_rate!(Class, /// docs)`: the `hit_rate` property, from the class's
/// `hits` and `misses`.
macro_rules! hit_rate {
    ($class:ident, $(#[$doc:meta])*) => {
        #[pymethods]
        impl $class {
            $(#[$doc])*
            #[getter]
            fn hit_rate(&self) -> f64 {
                crate::counters::hit_rate(self.hits, self.misses)
            }
        }
    };
}

hit_rate!(
    PoolStats,
    /// Fraction of ``get`` calls served with a reused object (0.0 before any).
);

#[pymethods]
impl PoolStats {
    /// The counters and gauges as a plain ``dict`` (``hit_rate`` included).
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = self.dict(py)?;
        d.set_item("hit_rate", self.hit_rate())?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let d = self.dict(py)?;
        let fields: Vec<String> = d.iter().map(|(n, v)| format!("{n}={v}")).collect();
        Ok(format!("PoolStats({})", fields.join(", ")))
    }
}

stats_class! {
    /// One size class of a ``BlockPool``.
    pub struct BlockClassStats {
        /// Block size of the class.
        size: usize,
        /// Most blocks kept idle.
        max_idle: usize,
        idle: u64,
        in_use: u64,
        hits: u64,
        misses: u64,
        puts: u64,
        dropped: u64,
        expired: u64,
    }
}

#[pymethods]
impl BlockClassStats {
    fn __repr__(&self) -> String {
        format!(
            "BlockClassStats(size={}, idle={}, in_use={}, hits={}, misses={}, dropped={})",
            self.size, self.idle, self.in_use, self.hits, self.misses, self.dropped
        )
    }
}

stats_class! {
    /// Counters and gauges of a ``BlockPool``, from ``pool.stats()``.
    pub struct BlockPoolStats {
        /// Bytes held idle (never above ``max_idle_bytes``).
        bytes_idle: usize,
        /// Bytes (capacity) of blocks handed out and not yet released.
        bytes_in_use: usize,
        max_idle_bytes: usize,
        /// Blocks handed out and not yet released.
        in_use: u64,
        /// Blocks held idle.
        idle: u64,
        /// Blocks handed out reused.
        hits: u64,
        /// Blocks handed out newly allocated (oversize ones included).
        misses: u64,
        /// Blocks released.
        puts: u64,
        /// Blocks allocated.
        created: u64,
        /// Blocks freed.
        destroyed: u64,
        /// Released blocks freed because a cap (idle bytes, idle count) was hit,
        /// or because they were oversize.
        dropped: u64,
        /// Idle blocks freed after ``idle_timeout``.
        expired: u64,
        /// Requests above ``max_block`` (exact, unpooled allocations).
        oversize: u64,
        /// One ``BlockClassStats`` per class used, smallest first.
        classes: Py<PyTuple>,
    }
}

impl BlockPoolStats {
    pub fn new(py: Python<'_>, s: BlockStats, max_idle_bytes: usize) -> PyResult<Self> {
        let rows = s.classes.iter().map(|c| {
            let n = &c.counts;
            let (size, max_idle) = (c.size, c.max_idle);
            BlockClassStats {
                size,
                max_idle,
                idle: n.idle,
                in_use: n.in_use,
                hits: n.hits,
                misses: n.misses,
                puts: n.puts,
                dropped: n.dropped,
                expired: n.expired,
            }
        });
        let t = &s.totals;
        Ok(BlockPoolStats {
            bytes_idle: s.bytes_idle,
            bytes_in_use: s.bytes_in_use,
            max_idle_bytes,
            in_use: t.in_use,
            idle: t.idle,
            hits: t.hits,
            misses: t.misses,
            puts: t.puts,
            created: t.created,
            destroyed: t.destroyed,
            dropped: t.dropped,
            expired: t.expired,
            oversize: s.oversize,
            classes: PyTuple::new(
                py,
                rows.map(|row| Py::new(py, row))
                    .collect::<PyResult<Vec<_>>>()?,
            )?
            .unbind(),
        })
    }
}

hit_rate!(
    BlockPoolStats,
    /// Fraction of blocks handed out reused (0.0 before any).
);

#[pymethods]
impl BlockPoolStats {
    /// The totals as a plain ``dict`` (classes as a list of dicts).
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let rows = self.classes.bind(py).iter();
        let rows = rows.map(|row| row.cast::<BlockClassStats>()?.get().dict(py));
        let classes = rows.collect::<PyResult<Vec<_>>>()?;
        let d = self.dict(py)?;
        d.set_item("hit_rate", self.hit_rate())?;
        d.del_item("classes")?; // last, as a list of dicts
        d.set_item("classes", classes)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "BlockPoolStats(bytes_idle={}, bytes_in_use={}, hits={}, misses={}, dropped={}, oversize={}, classes={})",
            self.bytes_idle,
            self.bytes_in_use,
            self.hits,
            self.misses,
            self.dropped,
            self.oversize,
            self.classes.bind(py).len()
        )
    }
}
