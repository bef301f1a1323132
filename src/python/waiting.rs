//! `_Waiting`: an asyncio task's place in a bounded `ObjectPool`'s queue of
//! waiters, shared with the threads that wait in `get()`, so both are
//! served in one arrival order. `shardpool._aio` drives it: it asks to be
//! told when the wait is decided (`on_decided`), awaits that, then takes
//! the object (`finish`) or gives up (`abandon`).
//!
//! Invariant: every `_Waiting` is settled exactly once, by `finish`,
//! `abandon`, or when it is collected (a task destroyed mid-wait), so a
//! granted object or slot always goes back to the pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;

use super::object_pool::ObjectPool;
use crate::{Idle, Waiter};

#[pyclass(frozen, module = "shardpool._core", name = "_Waiting")]
pub struct Waiting {
    waiter: Arc<Waiter<Idle<Py<PyAny>>>>,
    pool: Py<ObjectPool>,
    settled: AtomicBool,
}

impl Waiting {
    pub fn new(waiter: Arc<Waiter<Idle<Py<PyAny>>>>, pool: Py<ObjectPool>) -> Self {
        Waiting {
            waiter,
            pool,
            settled: AtomicBool::new(false),
        }
    }

    /// True for the one caller that settles this wait.
    fn settle(&self) -> bool {
        !self.settled.swap(true, Ordering::AcqRel)
    }
}

#[pymethods]
impl Waiting {
    /// Calls ``callback()`` once the wait is decided (an object or a slot
    /// was granted, or the pool closed): from the thread that decides it,
    /// or at once if it is decided already. Exceptions from ``callback``
    /// go to ``sys.unraisablehook``.
    fn on_decided(&self, callback: Py<PyAny>) {
        self.waiter.on_decided(Box::new(move || {
            Python::attach(|py| {
                if let Err(err) = callback.call0(py) {
                    err.write_unraisable(py, Some(callback.bind(py)));
                }
            });
        }));
    }

    /// Whether the wait is decided.
    #[getter]
    fn decided(&self) -> bool {
        self.waiter.is_decided()
    }

    /// Once decided: the object, or a new ``_Waiting`` if the granted object
    /// was rejected (expired or refused by ``validate``). Raises
    /// ``PoolClosed`` if the pool closed, and what the factory raises.
    fn finish(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.settle() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this wait is settled already",
            ));
        }
        ObjectPool::finish_wait(self.pool.bind(py), &self.waiter)
    }

    /// Gives up the wait; anything granted meanwhile goes back to the pool.
    /// Does nothing if the wait was settled already.
    fn abandon(&self, py: Python<'_>) {
        if self.settle() {
            self.pool.get().abandon_wait(py, &self.waiter);
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // A task destroyed while it waited (its event loop closed, say).
        if self.settle() {
            Python::attach(|py| self.pool.get().abandon_wait(py, &self.waiter));
        }
    }
}
