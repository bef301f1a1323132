//! `Borrow`: the context manager returned by the object pools' `borrow()`.

use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::{PyClass, PyTraverseError};

use super::class_macros::{exit_method, generic_class};

/// A pool class with `borrow()`: how a `Borrow` gets its object and gives
/// it back. Implemented by the pool classes, so that this module names none.
pub trait Lend: PyClass<Frozen = True> + Sync {
    fn lend(&self, py: Python<'_>, args: &BorrowArgs) -> PyResult<Py<PyAny>>;
    fn take_back(&self, obj: &Bound<'_, PyAny>) -> PyResult<()>;
}

/// The arguments of a `borrow()` call, kept for its `with` block.
pub struct BorrowArgs {
    /// `ObjectPool.borrow(timeout)`.
    pub timeout: Option<Py<PyAny>>,
    /// `TieredPool.borrow(size)`.
    pub size: usize,
}

type LendFn = fn(&Bound<'_, PyAny>, &BorrowArgs) -> PyResult<Py<PyAny>>;
type TakeBackFn = fn(&Bound<'_, PyAny>, &Bound<'_, PyAny>) -> PyResult<()>;

/// `pool` as the `P` that [`Borrow::new`] was given.
fn pool_as<'a, 'py, P: Lend>(pool: &'a Bound<'py, PyAny>) -> &'a Bound<'py, P> {
    // SAFETY: `Borrow::new` stores a `Py<P>` as `pool`, beside the
    // `lend::<P>` and `take_back::<P>` that alone call this, and `pool`
    // never changes: it is a `P` (or a subclass's instance).
    unsafe { pool.cast_unchecked::<P>() }
}

fn lend<P: Lend>(pool: &Bound<'_, PyAny>, args: &BorrowArgs) -> PyResult<Py<PyAny>> {
    pool_as::<P>(pool).get().lend(pool.py(), args)
}

fn take_back<P: Lend>(pool: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
    pool_as::<P>(pool).get().take_back(obj)
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
    pool: Py<PyAny>,
    args: BorrowArgs,
    /// [`Lend`] of the pool's class, without boxing a trait object: a
    /// `borrow()` allocates nothing beyond its own object.
    lend: LendFn,
    take_back: TakeBackFn,
    /// Only locked for the state change, never across `get`/`put`, which may
    /// wait without the GIL or run Python code.
    held: Mutex<Held>,
}

impl Borrow {
    pub fn new<P: Lend>(pool: Py<P>, args: BorrowArgs) -> Self {
        Borrow {
            pool: pool.into_any(),
            args,
            lend: lend::<P>,
            take_back: take_back::<P>,
            held: Mutex::new(Held::Free),
        }
    }

    /// `__exit__`: puts the object back.
    fn exit(&self, py: Python<'_>) -> PyResult<()> {
        match self.swap(Held::Free) {
            Held::Holding(obj) => (self.take_back)(self.pool.bind(py), obj.bind(py)),
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
        match (self.lend)(self.pool.bind(py), &self.args) {
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
        visit.call(&self.pool)?;
        visit.call(&self.args.timeout)?;
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
