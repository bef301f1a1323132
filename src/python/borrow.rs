//! `Borrow`: the context manager returned by the object pools' `borrow()`.

use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyGenericAlias, PyType};
use pyo3::PyTraverseError;

use super::object_pool::ObjectPool;
use super::tiered_pool::TieredPool;

/// Where a borrow gets its object, and with what arguments.
pub enum Lender {
    Objects {
        pool: Py<ObjectPool>,
        timeout: Option<Py<PyAny>>,
    },
    Tiers {
        pool: Py<TieredPool>,
        size: usize,
    },
}

impl Lender {
    fn get(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Lender::Objects { pool, timeout } => pool
                .get()
                .get_object(py, timeout.as_ref().map(|t| t.bind(py))),
            Lender::Tiers { pool, size } => pool.get().get_sized(py, *size),
        }
    }

    fn put(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        match self {
            Lender::Objects { pool, .. } => pool.get().put_object(obj),
            Lender::Tiers { pool, .. } => pool.get().put_object(obj),
        }
    }
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
    lender: Lender,
    /// Only locked for the state change, never across `get`/`put`, which may
    /// wait without the GIL or run Python code.
    held: Mutex<Held>,
}

impl Borrow {
    pub fn new(lender: Lender) -> Self {
        Borrow {
            lender,
            held: Mutex::new(Held::Free),
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
        match self.lender.get(py) {
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

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        match self.swap(Held::Free) {
            Held::Holding(obj) => {
                self.lender.put(obj.bind(py))?;
                Ok(false)
            }
            other => {
                self.swap(other);
                Err(PyRuntimeError::new_err(
                    "borrow() exited without being entered",
                ))
            }
        }
    }

    /// ``Borrow[T]`` for type annotations.
    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        PyGenericAlias::new(cls.py(), cls.as_any(), item).map(Bound::into_any)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        match &self.lender {
            Lender::Objects { pool, timeout } => {
                visit.call(pool)?;
                visit.call(timeout)?;
            }
            Lender::Tiers { pool, .. } => visit.call(pool)?,
        }
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
