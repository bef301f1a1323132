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
//! - A `Borrow` holds its pool's shared state (a hidden Python object,
//!   `_ObjectPoolState` or `_TieredPoolState`: the core pool, its hooks,
//!   `discard_on`, the default wait and these spare slots), not the pool
//!   object, also while it is a spare: a reused `Borrow`'s block changes
//!   no reference count shared between threads (a free-threaded build's
//!   pool object's count sat on the cache line every pool call reads). A
//!   `Borrow` may outlive its pool object (`with ObjectPool(f).borrow():`):
//!   its state, and so its block, keeps working. The pool object's `Drop`
//!   (and `close()`) closes the slots, letting go of the spares, so a pool
//!   whose last reference goes away is freed at once, spares and all; a
//!   state in a garbage cycle is cleared by the collector.
//! - The collector is shown every reference to a state by at most one
//!   holder at every moment it can look (never twice), and by one unless
//!   that holder is reachable through a reference the collector cannot
//!   see, so CPython's own counting covers every mix of holders: the pool
//!   object and each `Borrow` out of the slots show theirs; a spare is
//!   untracked by the collector while it is in a slot (untracked before it
//!   enters one, tracked again after it leaves one: never both in a slot
//!   and tracked), holds nothing but its state (its arguments are dropped
//!   when it is kept), and the state shows that reference on its behalf
//!   while the slot's reference to the spare is its only one
//!   ([`SpareBorrows::traverse_held`]; a spare that something else still
//!   reaches keeps its hold unexplained, so the state counts as referenced
//!   from outside). A spare is then also out of reach of
//!   `gc.get_objects()` and `gc.get_referents()`: no one can hand it to a
//!   second thread.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
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
use state::Held;

/// The shared state of a pool class with `borrow()` (a hidden Python
/// object that the pool object and its `Borrow`s hold): how a `Borrow`
/// gets its object and gives it back. Implemented by the pool classes'
/// states, so that this module names no pool class.
pub trait Lend: Send + Sync + 'static {
    fn lend(&self, py: Python<'_>, args: &BorrowArgs) -> PyResult<Py<PyAny>>;
    /// Ends the block: `exc` is the exception it raised, if any (the pool
    /// may discard the object for it).
    fn take_back(&self, obj: &Bound<'_, PyAny>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()>;
    /// Where the pool keeps `Borrow`s for reuse.
    fn spare_borrows(&self) -> &SpareBorrows;
    /// The pool, as log messages name it.
    fn describe(&self) -> &str;
    /// Shows the state's Python references to the collector, those its
    /// spares hold included ([`SpareBorrows::traverse_held`]).
    fn traverse_state(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
    /// Breaks a reference cycle through the state that the collector found
    /// unreachable (its objects' references dropped, the spares let go).
    fn clear_state(&self);
}

/// `lending_pool!(Pool, State)`: a pool class with `borrow()` and its
/// shared state, written once for both (the caller's module imports
/// `PyVisit` and `PyTraverseError`): `Pool` holds `state: Py<State>`
/// and derefs to it; `State` is a frozen pyclass implementing [`Lend`]
/// with a `borrows: SpareBorrows` field. It gives:
/// - `State`'s collector methods: `__traverse__` shows what the state
///   holds and, for its spares, their references to it
///   ([`Lend::traverse_state`]); `__clear__` clears a state found in a
///   garbage cycle ([`Lend::clear_state`]);
/// - `Pool::with_state(py, state)`, the state object made for a new pool;
/// - `Pool`'s `Drop`, which lets go of the spares (breaking the cycle
///   state, slot, spare, state at once; a `Borrow` held elsewhere keeps the
///   state, and works), and its `__traverse__`, which shows the state (the
///   pool object holds nothing else, and clears nothing: the state may
///   outlive it, held by a `Borrow`, and is cleared as its own object);
/// - `Pool::lent_key`, the state's address: the pool's key in `lent`, as
///   its `Borrow`s give it.
macro_rules! lending_pool {
    ($pool:ident, $state:ident) => {
        #[pyo3::pymethods]
        impl $state {
            fn __clear__(&self) {
                $crate::python::borrow::Lend::clear_state(self)
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                $crate::python::borrow::Lend::traverse_state(self, &visit)
            }
        }

        impl std::ops::Deref for $pool {
            type Target = $state;

            #[inline(always)]
            fn deref(&self) -> &$state {
                self.state.get()
            }
        }

        impl Drop for $pool {
            fn drop(&mut self) {
                pyo3::Python::attach(|py| self.state.get().borrows.close(py));
            }
        }

        impl $pool {
            fn with_state(py: pyo3::Python<'_>, state: $state) -> pyo3::PyResult<Self> {
                let state = pyo3::Py::new(py, state)?;
                state.get().borrows.held_by(state.bind(py).as_any());
                Ok($pool { state })
            }

            fn lent_key(&self) -> usize {
                self.state.as_ptr() as usize
            }
        }

        #[pyo3::pymethods]
        impl $pool {
            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                visit.call(&self.state)
            }
        }
    };
}

pub(crate) use lending_pool;

/// The arguments of a `borrow()` call, kept for its `with` block (none for
/// a spare).
#[derive(Default)]
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
/// `pool` names the pool in the log message (called only then: for a
/// `Borrow`, a virtual call).
#[inline]
pub fn end_block<'a>(
    py: Python<'_>,
    pool: impl FnOnce() -> &'a str,
    returned: PyResult<()>,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    match returned {
        Ok(()) => Ok(()),
        Err(err) => end_failed_block(py, pool(), err, exc),
    }
}

/// [`end_block`] after giving the object back raised.
#[cold]
fn end_failed_block(
    py: Python<'_>,
    pool: &str,
    err: PyErr,
    exc: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    match exc {
        Some(exc) if !exc.is_none() && err.is_instance_of::<PyException>(py) => {
            attach(py, pool, &err, exc);
            Ok(())
        }
        _ => Err(err),
    }
}

fn attach(py: Python<'_>, pool: &str, err: &PyErr, exc: &Bound<'_, PyAny>) {
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
            "{pool}: giving a borrowed object back raised while the block propagated {}; \
             the block's exception was kept",
            logging::safe_repr(exc),
        ),
        Some(err),
    );
}

/// A `Borrow`'s hold on its pool's state: a strong reference to the state
/// object, and the state in it as `dyn Lend` (dispatched without a
/// downcast: a `borrow()` allocates nothing beyond its own object, and
/// this module names no pool class).
struct StateRef {
    obj: Py<PyAny>,
    lend: NonNull<dyn Lend>,
}

// SAFETY: `lend` points into the object `obj` keeps alive (the contents
// of a frozen pyclass, which never move while it lives) and is only read
// as `&dyn Lend`, which is `Send` and `Sync` (`Lend`'s bounds).
unsafe impl Send for StateRef {}
// SAFETY: as above.
unsafe impl Sync for StateRef {}

impl StateRef {
    fn new<L: Lend + PyClass<Frozen = True>>(state: &Bound<'_, L>) -> Self {
        let lend: &dyn Lend = state.get();
        StateRef {
            lend: NonNull::from(lend),
            obj: state.clone().into_any().unbind(),
        }
    }
}

impl std::ops::Deref for StateRef {
    type Target = dyn Lend;

    #[inline(always)]
    fn deref(&self) -> &dyn Lend {
        // SAFETY: see the `Send` implementation: `obj` keeps it alive.
        unsafe { self.lend.as_ref() }
    }
}

/// The context manager returned by ``borrow()``: gets an object on entry
/// and puts it back on exit, also when the block raises. One per ``with``.
#[pyclass(frozen, module = "shardpool", name = "Borrow")]
pub struct Borrow {
    /// The pool's shared state, kept also as a spare (see the module's
    /// invariants).
    pool: StateRef,
    /// Replaced only when the object is reused ([`SpareBorrows::take`]).
    args: UnsafeCell<BorrowArgs>,
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
    /// `pool.borrow(...)` of the pool whose shared state is `pool`: a spare
    /// `Borrow` that no one else holds or can reach, given `args`, else a
    /// new one.
    #[inline]
    pub fn lent_by<'py, L: Lend + PyClass<Frozen = True>>(
        pool: &Bound<'py, L>,
        args: BorrowArgs,
    ) -> PyResult<Bound<'py, Borrow>> {
        let py = pool.py();
        let args = match pool.get().spare_borrows().take(py, args) {
            Ok(spare) => return Ok(spare),
            Err(args) => args,
        };
        let borrow = Borrow {
            pool: StateRef::new(pool),
            args: UnsafeCell::new(args),
            held: Held::new(),
            entry: AtomicU64::new(0),
        };
        Bound::new(py, borrow)
    }

    fn args(&self) -> &BorrowArgs {
        // SAFETY: see `SpareBorrows::take`, the only writer.
        unsafe { &*self.args.get() }
    }

    /// The key of this `Borrow`'s pool in `lent` (its state's address, as
    /// the pool class's `discard` gives it).
    fn lent_key(&self) -> usize {
        self.pool.obj.as_ptr() as usize
    }

    /// `__enter__`: gets the object.
    fn enter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.held.start_entry() {
            return Err(PyRuntimeError::new_err(
                "this borrow() is already in use; call pool.borrow() for each with block",
            ));
        }
        match self.pool.lend(py, self.args()) {
            Ok(obj) => {
                self.entry
                    .store(note_lent(self.lent_key(), obj.bind(py)), Relaxed);
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
        // Read while the `Borrow` is still busy: an entry that started
        // once it is free (another thread, or our `reset`) writes its own.
        let entry = this.entry.load(Relaxed);
        this.held.set_free();
        // Python code run from here (`reset`) may enter and exit this
        // `Borrow` again, on this thread or another: it holds its pool's
        // state whatever happens, so nothing here depends on who does.
        let pool = &*this.pool;
        // The error boxed (rare), inside the give-back: a `PyErr` kept in
        // registers across the calls below cost the common case 8
        // instructions a block, and the unboxed result copied out of
        // `end_lent`'s thread-local access about 30.
        let result = end_lent(this.lent_key(), &obj, entry, || {
            let returned = pool.take_back(&obj, Some(exc));
            end_block(py, || pool.describe(), returned, Some(exc)).map_err(Box::new)
        })
        .unwrap_or(Ok(()));
        drop(obj);
        pool.spare_borrows().offer(slf);
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
    /// The pool's state, the arguments and the object held. Called only
    /// while this `Borrow` is tracked by the collector, so never for a
    /// spare in its pool's slots (whose state shows what it holds: see the
    /// module's invariants).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.pool.obj)?;
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
    /// handed out, as when a `Borrow` is dropped without its exit). The
    /// state's references are its own to clear.
    fn __clear__(&self) {
        Python::attach(|py| drop(self.held.take(py)));
    }
}

generic_class!(Borrow);
