//! `Borrow`: the context manager returned by the object pools' `borrow()`.

use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use super::class_macros::{exit_method, generic_class};

/// Where a `Borrow` gets its object and gives it back: a pool, with the
/// arguments of its `borrow()` call.
pub trait Lend: Send + Sync {
    fn lend(&self, py: Python<'_>) -> PyResult<Py<PyAny>>;
    fn take_back(&self, obj: &Bound<'_, PyAny>) -> PyResult<()>;
    /// Shows the pool and the arguments held to the garbage collector.
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
}

enum Held {
    Free,
    Entering,
    Holding(Py<PyAny>),
}

/// The context manager returned by ``borrow()``: gets an object on entry
/// and puts it back on exit, also when the block raises. One per ``with``.
#[pyclass(frozen, module = "shardpool", name = "Borrow")]
pub struct Borrow {
    lender: Box<dyn Lend>,
    /// Only locked for the state change, never across `get`/`put`, which may
    /// wait without the GIL or run Python code.
    held: Mutex<Held>,
}

impl Borrow {
    pub fn new(lender: Box<dyn Lend>) -> Self {
        Borrow {
            lender,
            held: Mutex::new(Held::Free),
        }
    }

    /// `__exit__`: puts the object back.
    fn exit(&self, py: Python<'_>) -> PyResult<()> {
        match self.swap(Held::Free) {
            Held::Holding(obj) => self.lender.take_back(obj.bind(py)),
            other => {
                self.swap(other);
                Err(PyRuntimeError::new_err(
                    "borrow() exited without being entered",
                ))
            }
        }
    }

    fn swap(&self, new: Held) -> Held {
        std::mem::replace(
            &mut *self.held.lock().unwrap_or_else(PoisonError::into_inner),
            new,
        )
    }
}

#[pymethods]
impl Borrow {
    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.swap(Held::Entering) {
            Held::Free => {}
            other => {
                self.swap(other);
                return Err(PyRuntimeError::new_err(
                    "this borrow() is already in use; call pool.borrow() for each with block",
                ));
            }
        }
        match self.lender.lend(py) {
            Ok(obj) => {
                self.swap(Held::Holding(obj.clone_ref(py)));
                Ok(obj)
            }
            Err(e) => {
                self.swap(Held::Free);
                Err(e)
            }
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.lender.traverse(&visit)?;
        if let Ok(held) = self.held.try_lock() {
            if let Held::Holding(obj) = &*held {
                visit.call(obj)?;
            }
        }
        Ok(())
    }

    /// Breaks a reference cycle the collector found unreachable: drops the
    /// reference to the object held (the pool still accounts for it as
    /// handed out, as when a `Borrow` is dropped without its exit).
    fn __clear__(&self) {
        let held = match self.held.try_lock() {
            Ok(mut held) => std::mem::replace(&mut *held, Held::Free),
            Err(_) => return,
        };
        drop(held);
    }
}

generic_class!(Borrow);
exit_method!(Borrow, exit,);
