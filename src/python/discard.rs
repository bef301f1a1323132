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
use super::logging::{self, Level};

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

/// Logs (INFO) a discard the pool decided on: a block raised one of
/// `discard_on`.
#[cold]
pub fn log_discard(pool: &str, obj: &Bound<'_, PyAny>, exc: Option<&Bound<'_, PyAny>>) {
    let py = obj.py();
    let raised = exc.map_or_else(
        || "?".into(),
        |e| {
            e.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        },
    );
    logging::log(
        py,
        Level::Info,
        &format!(
            "{}: discarded {} (its borrow() block raised {raised}, listed in discard_on)",
            pool,
            describe(obj),
        ),
        None,
    );
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

/// `discard_methods!(Class, State, /// docs of discard)`: the methods a
/// pool of Python objects has for discarding (`discard`, the `discard_on`
/// property, and the two private hooks `AsyncBorrow` calls), written once
/// for `ObjectPool` and `TieredPool`, with the end of a `borrow()` block
/// (`end_borrow`, on the class's shared `State`, which `Borrow`s hold).
/// The state provides `discard_object(&self, obj)`, `give_back(&self,
/// obj)` (the put at a block's end), `hooks` and a `discard_on:
/// DiscardOn` field; the class derefs to it and gives `lent_key(&self)`,
/// the state's address.
macro_rules! discard_methods {
    ($class:ident, $state:ident, $(#[$doc:meta])*) => {
        impl $state {
            /// The end of a `borrow()`/`aborrow()` block that did not discard
            /// its object itself: a discard if it raised one of `discard_on`,
            /// else a put. Inlined into `Borrow.__exit__`'s call of it
            /// (`Lend::take_back`): a call and its saved registers less.
            #[inline(always)]
            fn end_borrow(
                &self,
                obj: &Bound<'_, PyAny>,
                exc: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                let discard = match self.discard_on.matches(exc) {
                    Ok(discard) => discard,
                    // The check raised (a class's `__instancecheck__`): the
                    // object still goes back, or its holder, letting go of
                    // it, would leave it out for good; the check's error is
                    // the block's (a give-back's own error replaces it).
                    Err(e) => return self.give_back(obj).and(Err(e)),
                };
                if discard {
                    self.discard_object(obj)?;
                    $crate::python::discard::log_discard(self.hooks.pool(), obj, exc);
                    return Ok(());
                }
                self.give_back(obj)
            }
        }

        #[pyo3::pymethods]
        impl $class {
            $(#[$doc])*
            #[pyo3(signature = (obj, /))]
            fn discard(slf: &Bound<'_, Self>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
                // Marked first: a block's exit that starts from now on does
                // nothing more (see `lent`).
                // Refused while a block gives the object back.
                let key = slf.get().lent_key();
                let Ok(marks) = $crate::python::lent::mark_discarded(key, obj) else {
                    return Err($crate::python::discard::not_out(obj));
                };
                let discarded = slf.get().discard_object(obj);
                if discarded.is_err() {
                    marks.undo();
                }
                discarded
            }

            /// An ``aborrow()`` block got ``obj`` (for ``AsyncBorrow``): returns the
            /// block's entry, for ``_end_borrow``. Not public API.
            #[pyo3(signature = (obj, /))]
            fn _note_lent(slf: &Bound<'_, Self>, obj: &Bound<'_, PyAny>) -> u64 {
                $crate::python::lent::note_lent_outlined(slf.get().lent_key(), obj)
            }

            /// The end of an ``aborrow()`` block (for ``AsyncBorrow``): as the exit
            /// of a ``borrow()`` block; ``entry`` is what ``_note_lent`` returned. Not
            /// public API.
            #[pyo3(signature = (obj, exc, entry, /))]
            fn _end_borrow(
                slf: &Bound<'_, Self>,
                obj: &Bound<'_, PyAny>,
                exc: Option<&Bound<'_, PyAny>>,
                entry: u64,
            ) -> PyResult<()> {
                let pool = slf.get();
                $crate::python::lent::end_lent(pool.lent_key(), obj, entry, || {
                    let returned = pool.end_borrow(obj, exc);
                    $crate::python::borrow::end_block(slf.py(), || pool.hooks.pool(), returned, exc)
                })
                .unwrap_or(Ok(()))
            }

            /// The exception classes whose raising in a ``borrow()`` block discards
            /// the object (a tuple, empty by default).
            #[getter]
            fn discard_on<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyTuple> {
                self.discard_on.value(py)
            }
        }
    };
}

pub(crate) use discard_methods;
