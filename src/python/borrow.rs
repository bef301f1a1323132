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
//! - A `Borrow` holds its pool's shared state (`Arc<dyn Lend>`: the core
//!   pool, its hooks, `discard_on`, the default wait and these spare
//!   slots), not the Python pool object, also while it is a spare: a
//!   reused `Borrow`'s block changes no reference count shared between
//!   threads (a free-threaded build's pool object's count sat on the cache
//!   line every pool call reads). The cycle state, slots, spare, state is
//!   broken deterministically: the pool object's `Drop` (and `close()`,
//!   and the collector's `__clear__`) closes the slots, letting go of the
//!   spares, as `reuse`'s `PoolCore` does for blocks. A `Borrow` may
//!   outlive its pool object (`with ObjectPool(f).borrow():`): its state,
//!   and so its block, keeps working.
//! - The collector sees the state's Python references (hooks, objects) from
//!   one holder at a time, never two (each is one reference): from the
//!   pool object while no `Borrow` outside its slots holds the state
//!   ([`visible_from_pool`]), from a `Borrow` that is the state's only
//!   holder (its pool object is gone), else from none: they are then kept
//!   alive, as a `Borrow` holding its pool object kept them before
//!   (conservative, never a premature free). So a pool in a cycle with its
//!   hooks or objects is collected once no named `Borrow` of it is alive;
//!   a cycle through two or more `Borrow`s that outlived their pool object
//!   is never collected (a known leak, for a contrived case). The counts
//!   read (the `Arc`'s, the spares') do not change during a traversal: it
//!   runs with a GIL or a stopped world, and they change only in code run
//!   while attached.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::{intern, PyTraverseError};

use super::logging::{self, Level};

use super::class_macros::generic_class;
use super::raw_method;
mod spares;
mod state;

pub use spares::SpareBorrows;
use state::Held;

/// The shared state of a pool class with `borrow()` (what its Python
/// object and its `Borrow`s hold, in an `Arc`): how a `Borrow` gets its
/// object and gives it back. Implemented by the pool classes' states, so
/// that this module names no pool class.
pub trait Lend: Send + Sync + 'static {
    fn lend(&self, py: Python<'_>, args: &BorrowArgs) -> PyResult<Py<PyAny>>;
    /// Ends the block: `exc` is the exception it raised, if any (the pool
    /// may discard the object for it).
    fn take_back(&self, obj: &Bound<'_, PyAny>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()>;
    /// Where the pool keeps `Borrow`s for reuse.
    fn spare_borrows(&self) -> &SpareBorrows;
    /// The pool, as log messages name it.
    fn describe(&self) -> &str;
    /// Shows the state's Python references to the collector (called by
    /// one holder only, see the module's invariants).
    fn traverse_state(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
    /// Breaks a reference cycle through the state that the collector found
    /// unreachable (its objects' references dropped, the spares let go).
    fn clear_state(&self);
}

/// Whether the pool object that holds `state` (in `Arc` `held`) is the one
/// to show the state to the collector: no `Borrow` outside its spare slots
/// holds it (each spare holds one reference to the state; a reference held
/// elsewhere could make the state reachable the collector cannot see, and
/// another holder must not show the same references twice).
pub fn visible_from_pool<L: Lend>(state: &Arc<L>) -> bool {
    Arc::strong_count(state) == 1 + state.spare_borrows().count()
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

/// The context manager returned by ``borrow()``: gets an object on entry
/// and puts it back on exit, also when the block raises. One per ``with``.
#[pyclass(frozen, module = "shardpool", name = "Borrow")]
pub struct Borrow {
    /// The pool's shared state, kept also as a spare (see the module's
    /// invariants). Dispatched through `dyn Lend`: a `borrow()` allocates
    /// nothing beyond its own object, and this module names no pool class.
    pool: Arc<dyn Lend>,
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
    pub fn lent_by<'py, L: Lend>(
        py: Python<'py>,
        pool: &Arc<L>,
        args: BorrowArgs,
    ) -> PyResult<Bound<'py, Borrow>> {
        let args = match pool.spare_borrows().take(py, args) {
            Ok(spare) => return Ok(spare),
            Err(args) => args,
        };
        let borrow = Borrow {
            pool: Arc::clone(pool) as Arc<dyn Lend>,
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
        Arc::as_ptr(&self.pool).cast::<()>() as usize
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
    /// The object held, the arguments, and the pool's state when this
    /// `Borrow` is its only holder (its pool object is gone: see the
    /// module's invariants).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.args().timeout)?;
        if let Some(obj) = self.held.held() {
            // SAFETY: the collector traverses on a thread attached to the
            // interpreter, with no other thread running (a GIL, or a stopped
            // world): the reference `held` keeps stays for the visit, which
            // the token only lends it to.
            let obj = unsafe { Borrowed::from_ptr(Python::assume_attached(), obj.as_ptr()) };
            visit.call(obj.as_unbound())?;
        }
        if Arc::strong_count(&self.pool) == 1 {
            self.pool.traverse_state(&visit)?;
        }
        Ok(())
    }

    /// Breaks a reference cycle the collector found unreachable: drops the
    /// reference to the object held (the pool still accounts for it as
    /// handed out, as when a `Borrow` is dropped without its exit), and,
    /// as the state's only holder, the state's references.
    fn __clear__(&self) {
        Python::attach(|py| drop(self.held.take(py)));
        if Arc::strong_count(&self.pool) == 1 {
            self.pool.clear_state();
        }
    }
}

generic_class!(Borrow);
