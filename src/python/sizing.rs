//! The binding of the sizing options of `ObjectPool`: `resize()`, the
//! `min_size`/`max_lifetime`/`max_waiting` properties, the wait-time
//! histogram. What they do is the core's (`Pool::resize`, `pool::sizing`,
//! `limit::wait_times`); this converts arguments and results.

use pyo3::prelude::*;

use super::args;
use super::logging::{self, Level};
use crate::{Resized, Sizes};

/// `resize(max_size=..., min_size=...)`'s arguments: `None` (or absent)
/// keeps the current size. (So a bounded pool cannot be made unbounded:
/// there is no way to ask for it.)
pub fn sizes(
    max_size: Option<&Bound<'_, PyAny>>,
    min_size: Option<&Bound<'_, PyAny>>,
) -> PyResult<Sizes> {
    let max_size = args::optional_count(max_size, "max_size")?;
    let min_size = args::optional_count(min_size, "min_size")?;
    Ok(Sizes { max_size, min_size })
}

/// Logs (`INFO`) a resize that took effect: a decision an operator wants
/// to see beside the pool's metrics.
#[cold]
pub fn log_resize(py: Python<'_>, pool: &str, Resized { before, after }: Resized) {
    let size = |s: Option<usize>| s.map_or_else(|| "None".into(), |s| s.to_string());
    let message = format!(
        "{pool}: resized: max_size {} -> {}, min_size {} -> {}",
        size(before.0),
        size(after.0),
        before.1,
        after.1
    );
    logging::log(py, Level::Info, &message, None);
}

/// `sizing_methods!(Class)`: `resize`, `wait_histogram` and the sizing
/// properties, for a class with a `core: Shared<Pool<_>>` and a
/// `call_hooks(py)`.
macro_rules! sizing_methods {
    ($class:ident) => {
        #[pyo3::pymethods]
        impl $class {
            /// Change ``max_size`` and/or ``min_size`` of the live pool
            /// (keyword-only; ``None``, the default, keeps the value).
            /// A bounded pool stays bounded, an unbounded one unbounded.
            ///
            /// Growing ``max_size`` serves waiting threads and tasks at once.
            /// Shrinking it destroys surplus idle objects now and objects in
            /// use when they come back (counted as ``dropped``), until
            /// ``in_use + idle <= max_size``; no object is created meanwhile.
            /// Raising ``min_size`` creates objects now (a factory error is
            /// logged on the ``shardpool`` logger, not raised). A resize
            /// is logged there (``INFO``).
            /// ``max_idle`` stays as built.
            ///
            /// Raises ``ValueError``, changing nothing: ``max_size`` for a
            /// pool built without one (it has no bound to change, nor the
            /// waiters' queue a bound needs: build it with ``max_size``),
            /// ``max_size=0``, ``min_size`` above ``max_size`` or
            /// ``max_idle``, ``max_size`` below the ``n`` of a waiting
            /// ``get_many(n)``, or a closed pool.
            #[pyo3(signature = (*, max_size=None, min_size=None))]
            fn resize(
                &self,
                py: Python<'_>,
                max_size: Option<&Bound<'_, PyAny>>,
                min_size: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                let sizes = $crate::python::sizing::sizes(max_size, min_size)?;
                let resized = self.core.resize(&mut self.call_hooks(py), sizes);
                let resized = resized.map_err($crate::python::errors::config_error)?;
                $crate::python::sizing::log_resize(py, self.hooks.pool(), resized);
                Ok(())
            }

            /// How long the waits of a bounded pool took: ``(bounds, counts,
            /// sum)``, with ``counts[i]`` the waits that ended (served or
            /// timed out) within ``bounds[i]`` seconds and above
            /// ``bounds[i-1]`` (not cumulative; the last count is above the
            /// last bound), and ``sum`` their total in seconds. ``None`` for
            /// a pool without ``max_size`` (nothing waits).
            fn wait_histogram(&self) -> Option<(Vec<f64>, Vec<u64>, f64)> {
                self.core
                    .wait_times()
                    .map(|(counts, sum)| ($crate::WAIT_BUCKETS.to_vec(), counts, sum))
            }

            /// The fewest objects kept in existence (idle or in use).
            #[getter]
            fn min_size(&self) -> usize {
                self.core.min_size()
            }

            /// Seconds an object may live since it was created, or ``None``.
            #[getter]
            fn max_lifetime(&self) -> Option<f64> {
                self.core.max_lifetime().map(|d| d.as_secs_f64())
            }

            /// The most callers that may wait at once, or ``None``.
            #[getter]
            fn max_waiting(&self) -> Option<usize> {
                self.core.max_waiting()
            }
        }
    };
}

pub(crate) use sizing_methods;
