//! `Borrow`: the context manager returned by the object pools' `borrow()`,
//! and the end of a `borrow()`/`aborrow()` block. Which objects blocks
//! hold, so that a block whose object was discarded ends without giving it
//! back again, is `lent`'s.

use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::{intern, PyClass, PyTraverseError};

use super::logging::{self, Level};

use super::class_macros::{exit_method, generic_class};

/// A pool class with `borrow()`: how a `Borrow` gets its object and gives
/// it back. Implemented by the pool classes, so that this module names none.
pub trait Lend: PyClass<Frozen = True> + Sync {
    fn lend(&self, py: Python<'_>, args: &BorrowArgs) -> PyResult<Py<PyAny>>;
    /// Ends the block: `exc` is the exception it raised, if any (the pool
    /// may discard the object for it).
    fn take_back(&self, obj: &Bound<'_, PyAny>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()>;
}

/// The arguments of a `borrow()` call, kept for its `with` block.
pub struct BorrowArgs {
    /// `ObjectPool.borrow(timeout)`: the object given, `None` if left out
    /// (the pool's default applies).
    pub timeout: Option<Py<PyAny>>,
    /// `TieredPool.borrow(size)`.
    pub size: usize,
}

use super::lent::{end_lent, note_lent};

/// The end of a `borrow()`/`aborrow()` block, after its object was given
/// back (`returned`). A block that raises keeps its exception: an
/// `Exception` from giving the object back (a failing `reset`, which
/// destroyed the object) does not replace it but is attached to it as a
/// note (`add_note`) and logged with its traceback. A `BaseException` that
/// is not an `Exception` (`KeyboardInterrupt`) still propagates, with the
/// block's exception as its `__context__`, as Python chains it.
pub fn end_block(
    pool: &Bound<'_, PyAny>,
    returned: PyResult<()>,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    match (returned, exc) {
        (Err(err), Some(exc)) if !exc.is_none() && err.is_instance_of::<PyException>(pool.py()) => {
            attach(pool, &err, exc);
            Ok(())
        }
        (returned, _) => returned,
    }
}

#[cold]
fn attach(pool: &Bound<'_, PyAny>, err: &PyErr, exc: &Bound<'_, PyAny>) {
    let py = pool.py();
    let note = format!(
        "shardpool: giving the borrowed object back raised {} as this exception \
         left the block (a failing reset destroys the object); its traceback is \
         logged on the 'shardpool' logger",
        logging::safe_repr(err.value(py)),
    );
    if let Err(e) = exc.call_method1(intern!(py, "add_note"), (note,)) {
        e.write_unraisable(py, Some(exc));
    }
    logging::log(
        py,
        Level::Warning,
        &format!(
            "{}: giving a borrowed object back raised while the block propagated {}; \
             the block's exception was kept",
            logging::safe_repr(pool),
            logging::safe_repr(exc),
        ),
        Some(err),
    );
}

type LendFn = fn(&Bound<'_, PyAny>, &BorrowArgs) -> PyResult<Py<PyAny>>;
type TakeBackFn =
    fn(&Bound<'_, PyAny>, &Bound<'_, PyAny>, Option<&Bound<'_, PyAny>>) -> PyResult<()>;

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

fn take_back<P: Lend>(
    pool: &Bound<'_, PyAny>,
    obj: &Bound<'_, PyAny>,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    pool_as::<P>(pool).get().take_back(obj, exc)
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

    /// `__exit__`: puts the object back (or discards it, see `Lend`).
    fn exit(&self, py: Python<'_>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.swap(Held::Free) {
            Held::Holding(obj) => {
                let (pool, obj) = (self.pool.bind(py), obj.bind(py));
                end_lent(pool, obj, || {
                    end_block(pool, (self.take_back)(pool, obj, Some(exc)), Some(exc))
                })
                .unwrap_or(Ok(()))
            }
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
                note_lent(self.pool.bind(py), obj.bind(py));
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

exit_method!(
    Borrow,
    exit(exc),
    /// Puts the object back; discards it instead when the pool's
    /// ``discard_on`` lists the exception the block raised; does nothing if
    /// the object was discarded meanwhile (from any thread). Lets the
    /// block's exception propagate: an ``Exception`` from giving the object
    /// back (a failing reset) is then added to it as a note, and logged.
);
