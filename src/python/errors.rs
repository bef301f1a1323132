//! Exceptions, and the mapping from core errors to them.

use std::ffi::CString;

use pyo3::exceptions::{
    PyMemoryError, PyResourceWarning, PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;

use crate::pool::ConfigError;
use crate::{GetError, PutError};

pyo3::create_exception!(
    shardpool,
    PoolTimeout,
    PyTimeoutError,
    "Raised when a bounded pool stays at ``max_size`` until the timeout passes.\n\nA subclass of the built-in ``TimeoutError``."
);

pyo3::create_exception!(
    shardpool,
    PoolTooBusy,
    PoolTimeout,
    "Raised at once, without waiting, when ``max_waiting`` callers already wait for a full bounded pool.\n\nA subclass of ``PoolTimeout``: code that handles a timeout handles it too."
);

pyo3::create_exception!(
    shardpool,
    PoolClosed,
    PyRuntimeError,
    "Raised when an object is requested from a closed pool."
);

pub fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.message)
}

/// What `get` raises for a core error; `timeout` is the caller's, for the message.
pub fn get_error(e: GetError<PyErr>, timeout: Option<f64>, max_size: Option<usize>) -> PyErr {
    match e {
        GetError::Hook(err) => err,
        GetError::Timeout => PoolTimeout::new_err(match timeout {
            Some(secs) => format!(
                "no object became available within {secs} s (max_size={})",
                max_size.map_or_else(|| "None".into(), |m| m.to_string()),
            ),
            // No wait with a limit: a non-blocking get (`_Waiting`) finished
            // before its wait was decided.
            None => format!(
                "no object was available: the wait was finished before it was \
                 decided (max_size={})",
                max_size.map_or_else(|| "None".into(), |m| m.to_string()),
            ),
        }),
        GetError::Closed => PoolClosed::new_err("the pool is closed"),
        GetError::TooBusy => PoolTooBusy::new_err(format!(
            "too many callers waiting: max_waiting callers already wait for this full pool \
             (max_size={}); not waiting",
            max_size.map_or_else(|| "None".into(), |m| m.to_string()),
        )),
        GetError::AlreadyOut => PyRuntimeError::new_err(
            "the factory returned an object that this pool has already handed out; \
             a factory must return a new object on every call",
        ),
        GetError::TooMany {
            requested,
            max_size,
        } => PyValueError::new_err(format!(
            "n must be at most max_size ({max_size}), got {requested}"
        )),
        GetError::Settled => PyRuntimeError::new_err("this wait is settled already"),
        // As `[None] * n` refuses it.
        GetError::NoMemory { requested } => {
            PyMemoryError::new_err(format!("n is too large: no memory for {requested} objects"))
        }
    }
}

/// What `put` raises: the reset hook's error, or [`not_out`].
pub fn put_error(e: PutError<PyErr>, obj: &Bound<'_, PyAny>) -> PyErr {
    match e {
        PutError::Hook(err) => err,
        PutError::NotOut { .. } => not_out(obj),
    }
}

/// What a checked pool's `put` raises for an object it has not handed out.
pub fn not_out(obj: &Bound<'_, PyAny>) -> PyErr {
    PyValueError::new_err(format!(
        "put() of an object this pool has not handed out (foreign, or returned already): {}",
        super::args::describe(obj)
    ))
}

/// Emits a `ResourceWarning` from a destructor. An exception may be in
/// flight (the object is dropped while the stack unwinds): it is set aside
/// and restored, so the warning neither replaces nor loses it. A warning
/// turned into an error goes to `sys.unraisablehook`.
pub fn warn_unreleased(py: Python<'_>, message: String) {
    let message = CString::new(message).expect("no NUL in the message");
    let in_flight = PyErr::take(py);
    let category = py.get_type::<PyResourceWarning>();
    if let Err(err) = PyErr::warn(py, category.as_any(), &message, 1) {
        err.write_unraisable(py, None);
    }
    if let Some(err) = in_flight {
        err.restore(py);
    }
}
