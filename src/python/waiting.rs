//! `_Waiting`: an asyncio task's place in a bounded `ObjectPool`'s queue of
//! waiters, shared with the threads that wait in `get()`, so both are
//! served in one arrival order. `shardpool._aio` drives it: it asks to be
//! told when the wait is decided (`on_decided`), awaits that, then takes
//! the object (`finish`) or gives up (`abandon`).
//!
//! Invariants:
//! - A wake-up callback that raises goes to `sys.unraisablehook`, except a
//!   `KeyboardInterrupt` (Ctrl-C while it ran, on the deciding thread): the
//!   callback is run again, so the task is still woken, and the interrupt
//!   raised again as Ctrl-C is (`hooks::interrupt_again`).
//! - Every `_Waiting` is settled exactly once (the core's `Pending`), by
//!   `finish`, `abandon`, or when it is cleared or collected (a task
//!   destroyed mid-wait), so a granted object or slot always goes back to
//!   the pool.
//! - The wake-up callback belongs to the pool's queue while the task is
//!   queued (the pool shows it to the garbage collector), and is dropped
//!   as soon as the wait is decided (after it ran) or withdrawn: the
//!   callback refers back to this `_Waiting`, and no reference from Rust
//!   is left to close that cycle behind the collector's back. What a
//!   `_Waiting` still holds (its pool, a granted object not yet taken) it
//!   shows to the collector itself; a settled one holds no grant (a lost
//!   race hands its waiter to a new `_Waiting`), so shows none.

use std::any::Any;

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use super::hooks::interrupt_again;
use crate::limit::Notify;
use crate::Pending;

/// An object waited for.
pub type PendingObject = Pending<Py<PyAny>>;

/// The pool a `_Waiting` waits in.
pub trait WaitQueue: Send + Sync {
    /// The object a decided wait was granted, or a new `_Waiting`
    /// (`RuntimeError` if the wait was settled already).
    fn finish(&self, py: Python<'_>, pending: &PendingObject) -> PyResult<Py<PyAny>>;
    /// Gives the wait up, if not settled already; what it was granted goes
    /// back to the pool.
    fn abandon(&self, py: Python<'_>, pending: &PendingObject, timed_out: bool);
    /// Shows the pool to the garbage collector.
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
}

/// A Python callable run when a wait is decided.
pub struct PyNotify {
    pub callback: Py<PyAny>,
}

impl Notify for PyNotify {
    fn notify(self: Box<Self>) {
        Python::attach(|py| {
            let Err(err) = self.callback.call0(py) else {
                return;
            };
            if !err.is_instance_of::<PyKeyboardInterrupt>(py) {
                err.write_unraisable(py, Some(self.callback.bind(py)));
                return;
            }
            // Ctrl-C while the wake-up ran, on the thread that decided the
            // wait: run it again, or the task, never woken, would wait on
            // with what it was granted (a wake-up run twice does nothing
            // more: `_aio._resolve`); then raise the interrupt again as
            // Ctrl-C is, instead of losing it to `sys.unraisablehook`.
            if let Err(again) = self.callback.call0(py) {
                again.write_unraisable(py, Some(self.callback.bind(py)));
            }
            interrupt_again();
        });
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[pyclass(frozen, module = "shardpool._core", name = "_Waiting")]
pub struct Waiting {
    waiter: PendingObject,
    pool: Box<dyn WaitQueue>,
}

impl Waiting {
    pub fn new(waiter: PendingObject, pool: Box<dyn WaitQueue>) -> Self {
        Waiting { waiter, pool }
    }
}

#[pymethods]
impl Waiting {
    /// Calls ``callback()`` once the wait is decided (an object or a slot
    /// was granted, or the pool closed) or woken to compete for an object
    /// returned: from the thread that decides it,
    /// or at once if it is decided already. Exceptions from ``callback``
    /// go to ``sys.unraisablehook``. The callback is dropped once it ran or
    /// the wait was abandoned.
    fn on_decided(&self, callback: Py<PyAny>) {
        self.waiter.on_decided(Box::new(PyNotify { callback }));
    }

    /// Whether the wait is decided, or woken to compete (``finish`` may be
    /// called).
    #[getter]
    fn decided(&self) -> bool {
        self.waiter.is_decided() || self.waiter.is_woken()
    }

    /// Once decided: the object, or a new ``_Waiting`` if the granted object
    /// was rejected (expired or refused by ``validate``), or if the wait was
    /// woken to compete for a returned object and another caller took it
    /// first (then it keeps its place in the queue). Raises
    /// ``PoolClosed`` if the pool closed, and what the factory raises.
    fn finish(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.pool.finish(py, &self.waiter)
    }

    /// Gives up the wait; anything granted meanwhile goes back to the pool.
    /// Counted in ``stats().timeouts`` when ``timed_out``, else in
    /// ``stats().cancelled``. Does nothing if the wait was settled already.
    #[pyo3(signature = (timed_out=false))]
    fn abandon(&self, py: Python<'_>, timed_out: bool) {
        self.pool.abandon(py, &self.waiter, timed_out);
    }

    /// The pool, and a granted object not yet taken.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.pool.traverse(&visit)?;
        // A settled wait owns no grant: a wait that lost its race goes on
        // in a new `_Waiting` over the same waiter, which owns what that
        // waiter is granted later. Shown by both, the one reference would
        // be counted twice by the collector.
        if self.waiter.is_settled() {
            return Ok(());
        }
        self.waiter.visit_granted(|idle| visit.call(idle.item()))
    }

    /// Breaks a reference cycle the collector found unreachable: the wait
    /// is given up (as cancelled), and what it was granted goes back to
    /// the pool.
    fn __clear__(&self) {
        Python::attach(|py| self.pool.abandon(py, &self.waiter, false));
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // A task destroyed while it waited (its event loop closed, say).
        if !self.waiter.is_settled() {
            Python::attach(|py| self.pool.abandon(py, &self.waiter, false));
        }
    }
}
