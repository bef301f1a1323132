//! The `shardpool` logger (`logging.getLogger("shardpool")`): what a pool
//! swallows or decides on its own, for a service's operators. A hook error
//! that cannot be raised to anyone (a failing `destroy`) is an `ERROR`; a
//! validator that raised (the object is rejected, the next one tried), a
//! cleanup error attached to a block's own exception, a returned awaitable
//! are `WARNING`s; a discard on `discard_on` is `INFO`.
//!
//! Nothing here runs on the hot path: only when such an event happens is
//! `logging` imported and the logger asked whether the level is enabled.
//! Logging never raises into the pool: a handler that fails is reported
//! through `sys.unraisablehook`, as Python reports errors it cannot raise;
//! a `KeyboardInterrupt` out of a handler (Ctrl-C while it ran) is raised
//! again as Ctrl-C is (`hooks::interrupt_again`), not lost.

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// A `logging` level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Unused so far: kept so the levels read as `logging`'s.
    #[allow(dead_code)]
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
}

fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("logging")?
                    .call_method1("getLogger", ("shardpool",))?
                    .unbind(),
            )
        })
        .map(|l| l.bind(py))
}

/// Logs `message` at `level` on the `shardpool` logger, with `error` (and
/// its traceback) as `exc_info` if given. An exception in flight on this
/// thread is set aside and restored, so logging neither replaces nor loses
/// it.
#[cold]
pub fn log(py: Python<'_>, level: Level, message: &str, error: Option<&PyErr>) {
    let in_flight = PyErr::take(py);
    let logged = (|| -> PyResult<()> {
        let logger = logger(py)?;
        let level = level as i32;
        if !logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
            return Ok(());
        }
        let kwargs = PyDict::new(py);
        if let Some(error) = error {
            kwargs.set_item("exc_info", error.value(py))?;
        }
        logger.call_method("log", (level, message), Some(&kwargs))?;
        Ok(())
    })();
    if let Err(err) = logged {
        if err.is_instance_of::<PyKeyboardInterrupt>(py) {
            // Ctrl-C while a handler ran (slow I/O): raised again as Ctrl-C
            // is, instead of lost to `sys.unraisablehook`.
            super::hooks::interrupt_again();
        } else {
            err.write_unraisable(py, None);
        }
    }
    if let Some(err) = in_flight {
        err.restore(py);
    }
}

/// `repr(value)`, or a placeholder if that raises (for log messages).
pub fn safe_repr(value: &Bound<'_, PyAny>) -> String {
    value
        .repr()
        .map_or_else(|_| super::args::describe(value), |r| r.to_string())
}
