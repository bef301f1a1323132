//! `discard_on=`: which exceptions of a `borrow()` block mean "destroy the
//! object, do not put it back", and the message of a refused `discard`.
//! What a discard does is the core's (`Pool::discard`, `Tiered::discard`);
//! this only converts the argument and matches exceptions against it.

use pyo3::exceptions::{PyBaseException, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use pyo3::PyTraverseError;

use super::args::describe;

/// The exception classes that make a `borrow()`/`aborrow()` exit discard
/// its object: none (the default), or a tuple of `BaseException`
/// subclasses, as an `except` clause takes them.
pub struct DiscardOn(Option<Py<PyTuple>>);

impl DiscardOn {
    /// `discard_on=`: `None` or `()` (none), an exception class, or a tuple
    /// of them. Anything else (an instance, a non-exception class, a list,
    /// a nested tuple) is a `TypeError` naming the argument and the value.
    pub fn new(value: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let Some(value) = value.filter(|v| !v.is_none()) else {
            return Ok(DiscardOn(None));
        };
        let refuse = |why: String| {
            PyTypeError::new_err(format!(
                "discard_on must be an exception class or a tuple of exception classes, \
                 got {}{why}",
                value.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))
        };
        let classes = if let Ok(tuple) = value.cast::<PyTuple>() {
            tuple.clone()
        } else if is_exception_class(value) {
            PyTuple::new(value.py(), [value])?
        } else {
            return Err(refuse(String::new()));
        };
        for item in classes.iter() {
            if !is_exception_class(&item) {
                let item = item.repr().map_or_else(|_| "?".into(), |r| r.to_string());
                return Err(refuse(format!(" ({item} is not an exception class)")));
            }
        }
        Ok(DiscardOn((!classes.is_empty()).then(|| classes.unbind())))
    }

    /// Whether an exception raised by the block is one of the classes.
    pub fn matches(&self, exc: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        match (&self.0, exc) {
            (Some(classes), Some(exc)) if !exc.is_none() => exc.is_instance(classes.bind(exc.py())),
            _ => Ok(false),
        }
    }

    /// The `discard_on` property: always a tuple.
    pub fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyTuple> {
        match &self.0 {
            Some(classes) => classes.bind(py).clone(),
            None => PyTuple::empty(py),
        }
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.0)
    }
}

fn is_exception_class(value: &Bound<'_, PyAny>) -> bool {
    value
        .cast::<PyType>()
        .is_ok_and(|t| t.is_subclass_of::<PyBaseException>().unwrap_or(false))
}

/// What `discard` raises for an object the pool has not handed out (a
/// checked pool's refusal; nothing changed).
pub fn not_out(obj: &Bound<'_, PyAny>) -> PyErr {
    PyValueError::new_err(format!(
        "discard() of an object this pool has not handed out \
         (foreign, or returned or discarded already): {}",
        describe(obj)
    ))
}
