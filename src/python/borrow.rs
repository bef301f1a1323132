//! `Borrow`: the context manager returned by the object pools' `borrow()`,
//! and the end of a `borrow()`/`aborrow()` block. Which objects blocks
//! hold, so that a block whose object was discarded ends without giving it
//! back again, is `lent`'s (the core's protocol). An `ObjectPool` or a
//! `TieredPool` keeps the `Borrow` of a block that exited and hands it out again
//! ([`SpareBorrows`]); `borrow`, `__enter__` and `__exit__` are
//! `raw_method` entries.
//!
//! Invariants (reuse):
//! - A spare is reused only when the slot's reference is its only one and
//!   no other thread can make one (with a GIL: refcount 1; free-threaded:
//!   `PyUnstable_Object_IsUniquelyReferenced`, as for blocks, `reuse`),
//!   and it holds no object; it takes no weak reference ([`SpareBorrows`]).
//! - A spare does not hold its pool ([`PoolRef`]): only a `Borrow` whose
//!   exit's caller alone held it (the `with` statement, not a variable:
//!   `spares::SoleCaller`; before this check, CPython 3.14's uncounted
//!   reads of a variable let a named `Borrow` look alone and lose its pool)
//!   is kept, and it lets go of its pool once in the slot. So pool and
//!   spares make no reference cycle, and a pool whose last reference goes
//!   away is freed at once. A `Borrow` not holding its pool is in that
//!   pool's slots, or its pool was freed (its slots' `Drop` cleared its
//!   address), or it is about to be freed (see [`PoolRef`]); it holds its
//!   pool again whenever it leaves the slots or is entered, except while
//!   the pool is being freed (its count is 0: code run by that, which
//!   found the spare through the collector, is refused); a `Borrow`
//!   holding an object holds its pool.
//! - An exit takes over its `Borrow`'s pool reference for its duration
//!   instead of taking one of its own ([`PoolRef`], `EXITING`): the pool
//!   stays alive while it runs, whoever enters the `Borrow` meanwhile (a
//!   `reset` hook, another thread) or takes it from the slots takes a
//!   reference of its own, and at its end the exit gives the reference back
//!   to the `Borrow`, or drops it (the `Borrow` owns one again, or was
//!   kept). So a reused `Borrow`'s block changes its pool's reference
//!   count twice (taken from the slot, kept again), not four times: on a
//!   free-threaded build each change is an atomic operation on a count
//!   that every thread using the pool shares.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::{intern, PyClass, PyTraverseError};

use super::logging::{self, Level};

use super::class_macros::generic_class;
use super::raw_method;
mod spares;
mod state;

pub use spares::SpareBorrows;
use state::{free_threaded_spare, Held, PoolRef};

/// A pool class with `borrow()`: how a `Borrow` gets its object and gives
/// it back. Implemented by the pool classes, so that this module names none.
pub trait Lend: PyClass<Frozen = True> + Sync {
    fn lend(&self, py: Python<'_>, args: &BorrowArgs) -> PyResult<Py<PyAny>>;
    /// Ends the block: `exc` is the exception it raised, if any (the pool
    /// may discard the object for it).
    fn take_back(&self, obj: &Bound<'_, PyAny>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()>;
    /// Where the pool keeps `Borrow`s for reuse, if it does.
    fn spare_borrows(&self) -> Option<&SpareBorrows> {
        None
    }
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
#[inline]
pub fn end_block(
    pool: &Bound<'_, PyAny>,
    returned: PyResult<()>,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    match returned {
        Ok(()) => Ok(()),
        Err(err) => end_failed_block(pool, err, exc),
    }
}

/// [`end_block`] after giving the object back raised.
#[cold]
fn end_failed_block(
    pool: &Bound<'_, PyAny>,
    err: PyErr,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    match exc {
        Some(exc) if !exc.is_none() && err.is_instance_of::<PyException>(pool.py()) => {
            attach(pool, &err, exc);
            Ok(())
        }
        _ => Err(err),
    }
}

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
type SparesFn = for<'a> fn(&'a Bound<'_, PyAny>) -> Option<&'a SpareBorrows>;

/// `pool` as the `P` that [`Borrow::new`] was given.
fn pool_as<'a, 'py, P: Lend>(pool: &'a Bound<'py, PyAny>) -> &'a Bound<'py, P> {
    // SAFETY: `Borrow::new` stores a `Py<P>` as `pool`, beside the
    // `lend::<P>` and `take_back::<P>` that alone call this, and the
    // pool's address never changes (it is only let go of and taken again,
    // or forgotten: `PoolRef`): it is a `P` (or a subclass's instance).
    unsafe { pool.cast_unchecked::<P>() }
}

fn lend<P: Lend>(pool: &Bound<'_, PyAny>, args: &BorrowArgs) -> PyResult<Py<PyAny>> {
    pool_as::<P>(pool).get().lend(pool.py(), args)
}

fn spare_borrows<'a, P: Lend>(pool: &'a Bound<'_, PyAny>) -> Option<&'a SpareBorrows> {
    pool_as::<P>(pool).get().spare_borrows()
}

fn take_back<P: Lend>(
    pool: &Bound<'_, PyAny>,
    obj: &Bound<'_, PyAny>,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    pool_as::<P>(pool).get().take_back(obj, exc)
}

/// The context manager returned by ``borrow()``: gets an object on entry
/// and puts it back on exit, also when the block raises. One per ``with``.
#[pyclass(frozen, module = "shardpool", name = "Borrow")]
pub struct Borrow {
    pool: PoolRef,
    /// Replaced only when the object is reused ([`SpareBorrows::take`]).
    args: UnsafeCell<BorrowArgs>,
    /// [`Lend`] of the pool's class, without boxing a trait object: a
    /// `borrow()` allocates nothing beyond its own object.
    lend: LendFn,
    take_back: TakeBackFn,
    spares: SparesFn,
    held: Held,
    /// The block's entry in `lent` while it holds an object: written by
    /// `__enter__` before the object is published in `held` (a release
    /// store), read by `__exit__` after taking it (an acquire exchange).
    entry: AtomicU64,
}

// SAFETY: `args` is written only by `SpareBorrows::take`, while no other
// reference to the object (and so to `args`) exists on any thread (see
// there); every other access is a shared read of `BorrowArgs`, which is
// `Sync` (its fields are). The other fields are `Sync` themselves.
unsafe impl Sync for Borrow {}

impl Borrow {
    fn new<P: Lend>(pool: Py<P>, args: BorrowArgs) -> Self {
        Borrow {
            pool: PoolRef::new(pool.into_any()),
            args: UnsafeCell::new(args),
            lend: lend::<P>,
            take_back: take_back::<P>,
            spares: spare_borrows::<P>,
            held: Held::new(),
            entry: AtomicU64::new(0),
        }
    }

    /// `pool.borrow(...)`: a spare `Borrow` of `pool` that no one else holds
    /// or can reach, given `args`, else a new one.
    #[inline]
    pub fn lent_by<'py, P: Lend>(
        pool: &Bound<'py, P>,
        args: BorrowArgs,
    ) -> PyResult<Bound<'py, Borrow>> {
        let py = pool.py();
        let args = match pool.get().spare_borrows() {
            Some(spares) => match spares.take(pool.as_any(), args) {
                Ok(spare) => return Ok(spare),
                Err(args) => args,
            },
            None => args,
        };
        Bound::new(py, Borrow::new(pool.clone().unbind(), args))
    }

    fn args(&self) -> &BorrowArgs {
        // SAFETY: see `SpareBorrows::take`, the only writer.
        unsafe { &*self.args.get() }
    }

    /// `__enter__`: gets the object.
    fn enter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.held.start_entry() {
            return Err(PyRuntimeError::new_err(
                "this borrow() is already in use; call pool.borrow() for each with block",
            ));
        }
        // A spare the user reached while in its pool's slots (through the
        // collector) may have let go of its pool: with a GIL it holds it
        // again (the pool is alive: its slots hold the spare), unless the
        // pool is being freed by this very thread, which then runs the
        // finder's code (`PoolRef::own` refuses: "was freed"). Without one
        // the pool may be being freed on another thread right now (its
        // slots' `Drop`), so such a `Borrow` is refused instead.
        if free_threaded_spare(&self.pool, py) {
            self.held.set_free();
            return Err(PyRuntimeError::new_err(
                "this borrow() is kept by its pool for reuse; call pool.borrow() for each with block",
            ));
        }
        if !self.pool.own() {
            self.held.set_free();
            return Err(PyRuntimeError::new_err(
                "the pool of this borrow() was freed; call pool.borrow() for each with block",
            ));
        }
        let Some(pool) = self.pool.owned(py) else {
            unreachable!("owned just above")
        };
        match (self.lend)(&pool, self.args()) {
            Ok(obj) => {
                self.entry.store(note_lent(&pool, obj.bind(py)), Relaxed);
                self.held.hold(obj.clone_ref(py));
                Ok(obj)
            }
            Err(e) => {
                self.held.set_free();
                Err(e)
            }
        }
    }

    /// `__exit__`: puts the object back (or discards it, see `Lend`), then
    /// offers this `Borrow` to its pool for reuse.
    fn exit(slf: &Borrowed<'_, '_, Self>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        let Some(obj) = this.held.take_for_exit(py) else {
            return Err(PyRuntimeError::new_err(
                "borrow() exited without being entered",
            ));
        };
        // Entered, so it owns its pool (`PoolRef`): the exit takes that
        // reference over instead of taking one of its own (an atomic
        // operation on a count shared by every thread using the pool, on a
        // free-threaded build), while the `Borrow` is still busy: an entry
        // that started now would find the reference owned and lose it to
        // this step. Python code run after it (`reset`) may enter and exit
        // this `Borrow` again, on this thread or another: such an entry
        // takes a reference of its own (`PoolRef::own`).
        let pool = this.pool.take_over(py);
        // Read while the `Borrow` is still busy: an entry that starts once
        // it is free (another thread, or our `reset`) stores its own.
        let entry = this.entry.load(Relaxed);
        this.held.set_free();
        // The error boxed (rare), inside the give-back: a `PyErr` kept in
        // registers across the calls below cost the common case 8
        // instructions a block, and the unboxed result copied out of
        // `end_lent`'s thread-local access about 30.
        let result = end_lent(&pool, &obj, entry, || {
            end_block(&pool, (this.take_back)(&pool, &obj, Some(exc)), Some(exc)).map_err(Box::new)
        })
        .unwrap_or(Ok(()));
        drop(obj);
        let kept = (this.spares)(&pool).is_some_and(|spares| spares.offer(slf));
        // Last, as nothing of this `Borrow` is used after it. Kept: the
        // `Borrow` lets go of its pool (no cycle through the slot), and if
        // that was the pool's last reference (`with ObjectPool(f).borrow():`),
        // the pool is freed now: its slots' `Drop` makes this `Borrow`
        // forget it and lets go of the slot's reference; the caller's
        // reference (the `with` statement's bound `__exit__`) keeps the
        // `Borrow` itself alive until we return. Not kept: the reference
        // goes back to the `Borrow` (dropping `pool`), whose holders may
        // enter it again.
        if kept {
            pool.let_go();
        }
        result.map_err(|e| *e)
    }
}

// `__enter__` and `__exit__`: hand-written method-table entries (see
// `raw_method`), installed on the class by `install_raw_methods`.
raw_method::no_arg_method!(
    static ENTER: Borrow, "__enter__", "($self)",
    "Gets an object from the pool (waiting as ``get`` does) and returns it.",
    |slf, py| slf.get().enter(py)
);

raw_method::pyo3_signature_method!(
    static EXIT: Borrow, "__exit__",
    // What `#[pymethods]` made of `__exit__(&self, _exc_type, exc, _tb)`.
    pyo3::impl_::extract_argument::FunctionDescription {
        cls_name: Some("Borrow"),
        func_name: "__exit__",
        positional_parameter_names: &["_exc_type", "exc", "_tb"],
        positional_only_parameters: 0,
        required_positional_parameters: 3,
        keyword_only_parameters: &[],
    },
    "($self, _exc_type, exc, _tb)",
    "Puts the object back; discards it instead when the pool's\n\
     ``discard_on`` lists the exception the block raised; does nothing if\n\
     the object was discarded meanwhile (from any thread). Lets the\n\
     block's exception propagate: an ``Exception`` from giving the object\n\
     back (a failing reset) is then added to it as a note, and logged.",
    |slf, py, args| {
        let [_, Some(exc), _] = args else {
            unreachable!("the parser checks that the three arguments are given")
        };
        // `False`: the block's exception, if any, propagates.
        Borrow::exit(&slf, &exc).map(|()| pyo3::types::PyBool::new(py, false).to_owned())
    }
);

/// Adds `__enter__` and `__exit__` to the class (once, at module
/// initialisation).
pub fn install_raw_methods(py: Python<'_>) -> PyResult<()> {
    raw_method::install(&py.get_type::<Borrow>(), &[&ENTER, &EXIT])
}

#[pymethods]
impl Borrow {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: as for the object below: the reference `owned` lends.
        if let Some(pool) = self.pool.owned(unsafe { Python::assume_attached() }) {
            visit.call(pool.as_unbound())?;
        }
        visit.call(&self.args().timeout)?;
        if let Some(obj) = self.held.held() {
            // SAFETY: the collector traverses on a thread attached to the
            // interpreter, with no other thread running (a GIL, or a stopped
            // world): the reference `held` keeps stays for the visit, which
            // the token only lends it to.
            let obj = unsafe { Borrowed::from_ptr(Python::assume_attached(), obj.as_ptr()) };
            visit.call(obj.as_unbound())?;
        }
        Ok(())
    }

    /// Breaks a reference cycle the collector found unreachable: drops the
    /// reference to the object held (the pool still accounts for it as
    /// handed out, as when a `Borrow` is dropped without its exit).
    fn __clear__(&self) {
        Python::attach(|py| drop(self.held.take(py)));
    }
}

generic_class!(Borrow);
