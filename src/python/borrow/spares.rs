//! [`SpareBorrows`]: the `Borrow` objects a pool keeps for reuse, and how
//! an exit tells that its caller alone holds its `Borrow` ([`SoleCaller`]).
//! A child of `borrow`, so that it reaches `Borrow`'s state (its held
//! object and arguments) without widening their visibility; the
//! invariants of reuse are stated there.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use crate::blocks::spares::Verdict;

#[cfg(unix)]
use super::super::interpreter::cpython_symbol;
use super::super::reuse::ThreadSpares;
use super::{Borrow, BorrowArgs};

/// A pool's spare `Borrow` objects: a `borrow()` after a block's exit
/// hands out the same object again instead of allocating, GC-tracking and
/// later freeing a new one (about 450 of a block's instructions).
///
/// A `Borrow` is reused only when nothing else holds or can reach it, so no
/// holder sees its `Borrow` turn into another block's:
/// - when offered, and again when reused, our reference is the only one
///   and no other thread can make one ([`ThreadSpares::unique`]: refcount 1
///   read while attached with a GIL; `PyUnstable_Object_IsUniquelyReferenced`
///   and an acquire fence on a free-threaded build, where the spares are
///   kept per thread group and only the thread that made a `Borrow` can
///   judge it unique) and it holds no object (its block exited);
/// - it supports no weak reference (the class has no weak-reference list),
///   so nothing can revive it;
/// - a spare is untracked by the collector while it is in a slot
///   (untracked before it enters one, tracked again once out), so neither
///   `gc.get_objects()` nor `gc.get_referents()` can hand it to another
///   thread while this one reuses it; it holds nothing but its reference
///   to its pool's state (its arguments are dropped when it is kept),
///   which the state shows on its behalf while the slot's reference is
///   its only one ([`SpareBorrows::traverse_held`]), so each reference to
///   the state is shown by one holder at most.
///
/// A `Borrow` is offered only at the end of an exit at which it holds no
/// object and its caller's reference is the only one (`with
/// pool.borrow():`, not a `Borrow` the user named). With a GIL before
/// 3.14 that is read as a count of 1, which is also what an exit called
/// through a bound `__exit__` kept elsewhere sees (`ex = b.__exit__; del
/// b; ex(...)`): such a spare is still reached by that holder while in
/// its slot; `take` then finds it held and lets it go, and the state does
/// not show its references.
///
/// A spare keeps its pool's state (which holds these slots): the pool
/// object's `Drop` and `close()`, and the collector's clearing of the
/// state, close the slots ([`SpareBorrows::close`]), letting go of the
/// spares, so a pool whose last reference goes away is freed at once,
/// spares and all.
pub struct SpareBorrows {
    slots: ThreadSpares,
    sole_caller: SoleCaller,
    /// The state object that holds these slots (not a counted reference:
    /// it owns us), set once it is made ([`SpareBorrows::held_by`]).
    state: AtomicPtr<ffi::PyObject>,
}

/// `PyUnstable_Object_IsUniqueReferencedTemporary` (CPython 3.14).
type IsTemporary = unsafe extern "C" fn(*mut ffi::PyObject) -> std::ffi::c_int;

/// How an exit tells that its caller's reference to the `Borrow` is the
/// only one: the `with` statement's, not a variable's.
#[derive(Clone, Copy)]
enum SoleCaller {
    /// A reference count of 1 (before CPython 3.14, with a GIL: every
    /// reference on a frame's stack is counted).
    Refcount,
    /// From 3.14 a frame's stack may hold a borrowed reference to what a
    /// variable holds (`with kept:` compiles to `LOAD_FAST_BORROW`), so a
    /// count of 1 may be the variable's: CPython's check that the only
    /// reference is a counted one on the running frame's stack (on a
    /// free-threaded build also that it is this thread's alone,
    /// `PyUnstable_Object_IsUniquelyReferenced`).
    Temporary(IsTemporary),
    /// Neither can be told (3.13t, or the check not found): never offered.
    Never,
}

impl SoleCaller {
    fn new(py: Python<'_>, free_threaded: bool) -> Self {
        if py.version_info() < (3, 14) {
            return if free_threaded {
                SoleCaller::Never
            } else {
                SoleCaller::Refcount
            };
        }
        is_temporary().map_or(SoleCaller::Never, SoleCaller::Temporary)
    }
}

/// CPython's `PyUnstable_Object_IsUniqueReferencedTemporary`, looked up in
/// the running interpreter (on Unix, [`cpython_symbol`]), not linked: the abi3 wheel also loads
/// into 3.11-3.13, which lack it, and so does a build without `abi3` made
/// for one of them with a GIL (a module linking it would fail to import
/// there: undefined symbol). Elsewhere (Windows) the abi3 wheel does
/// without it, and a build without `abi3` declares it, resolved when the
/// module is linked against a 3.14 or later import library.
#[cfg(all(not(feature = "abi3"), not(unix)))]
fn is_temporary() -> Option<IsTemporary> {
    extern "C" {
        fn PyUnstable_Object_IsUniqueReferencedTemporary(op: *mut ffi::PyObject)
            -> std::ffi::c_int;
    }
    Some(PyUnstable_Object_IsUniqueReferencedTemporary)
}

#[cfg(unix)]
fn is_temporary() -> Option<IsTemporary> {
    // SAFETY: CPython exports it with this signature (`int (PyObject *)`).
    unsafe { cpython_symbol(c"PyUnstable_Object_IsUniqueReferencedTemporary") }
}

#[cfg(all(feature = "abi3", not(unix)))]
fn is_temporary() -> Option<IsTemporary> {
    None
}

impl SpareBorrows {
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        let slots = ThreadSpares::new(py)?;
        let sole_caller = SoleCaller::new(py, slots.free_threaded());
        Ok(SpareBorrows {
            slots,
            sole_caller,
            state: AtomicPtr::new(std::ptr::null_mut()),
        })
    }

    /// Records the state object that holds these slots, which
    /// [`SpareBorrows::traverse_held`] shows for each spare (until then it
    /// shows nothing: a conservative count, never a premature free).
    pub fn held_by(&self, state: &Bound<'_, PyAny>) {
        self.state.store(state.as_ptr(), Relaxed);
    }

    /// Keeps `borrow`, whose block just exited, for a later `borrow()`, if
    /// no one but its caller holds it.
    #[inline]
    pub(super) fn offer(&self, borrow: &Bound<'_, Borrow>) {
        let ptr = borrow.as_ptr();
        let alone = match self.sole_caller {
            // SAFETY: a live object (`borrow` lends a reference).
            SoleCaller::Refcount => (unsafe { ffi::Py_REFCNT(ptr) }) == 1,
            // SAFETY: as above, read while attached.
            SoleCaller::Temporary(is_temporary) => (unsafe { is_temporary(ptr) }) != 0,
            SoleCaller::Never => false,
        };
        // A `Borrow` someone else holds is theirs to use again: not kept.
        if !alone || !borrow.get().held.is_free() {
            return;
        }
        // Kept, it holds nothing but its state (see `SpareBorrows`): the
        // arguments go, dropped last (their `timeout` may run Python code).
        // SAFETY: our caller's reference is the only one and no other
        // thread can make one (checked above, with no Python code run
        // since): this write is exclusive, as in `take`.
        let args = std::mem::take(unsafe { &mut *borrow.get().args.get() });
        let owned = borrow.clone().into_ptr();
        // Out of the collector's sight before it is in a slot (see
        // `SpareBorrows`): from here the state shows what it holds.
        // SAFETY: a live object; untracking one is allowed at any time.
        unsafe { ffi::PyObject_GC_UnTrack(owned.cast()) };
        // SAFETY: `into_ptr` gives a non-null owned reference.
        let owned = unsafe { NonNull::new_unchecked(owned) };
        if let Err(refused) = self.slots.local().offer(owned) {
            leave(borrow.py(), refused);
        }
        drop(args);
    }

    /// A spare that no one else holds or can reach, given `args`; `args`
    /// back if there is none. Inlined into each pool class's `borrow()`
    /// (with two callers a plain `#[inline]` was not: +27 instructions a
    /// block).
    #[inline(always)]
    pub(super) fn take<'py>(
        &self,
        py: Python<'py>,
        args: BorrowArgs,
    ) -> Result<Bound<'py, Borrow>, BorrowArgs> {
        let judge = |obj: NonNull<ffi::PyObject>| {
            let unique = self.slots.unique(obj) == Some(true);
            // SAFETY: as above; only `Borrow`s are offered here.
            let borrow = unsafe { Borrowed::from_ptr(py, obj.as_ptr()).cast_unchecked::<Borrow>() };
            let free = borrow.get().held.is_free();
            // Held elsewhere: its holder keeps it, the slot lets go.
            if unique && free {
                Verdict::Reuse
            } else {
                Verdict::Discard
            }
        };
        let discard = |obj: NonNull<ffi::PyObject>| leave(py, obj);
        let Some(obj) = self.slots.local().take(judge, discard) else {
            return Err(args);
        };
        // SAFETY: the slot's reference, now ours; only `Borrow`s are
        // offered to these spares.
        let spare =
            unsafe { Bound::from_owned_ptr(py, obj.as_ptr()).cast_into_unchecked::<Borrow>() };
        // SAFETY: `judge` found our reference the only one and that no other
        // thread can make one (`ThreadSpares::unique`), and `Borrow` has no
        // weak references: no other reference to the object, and so to
        // `args`, exists or can be made meanwhile, so this write is
        // exclusive. The old arguments are dropped after it (their
        // `timeout` may run a destructor).
        let old = std::mem::replace(unsafe { &mut *spare.get().args.get() }, args);
        // Dropped while the spare is still untracked: Python code a
        // destructor runs (and, free-threaded, a stop of the world it lets
        // another thread's `gc.get_objects()` make) cannot find it and
        // enter it before our caller gets it (tracked first, a timeout's
        // `__del__` did, and the caller's `with` then failed "already in
        // use"). Meanwhile no one shows what it holds: the collector takes
        // its state and new timeout as referenced from outside. (`offer`
        // drops a kept spare's arguments, so `old` holds none now: the
        // order keeps this safe if it ever does.)
        drop(old);
        // Out of the slot: the collector sees it again.
        // SAFETY: a live object, untracked since its offer (never tracked
        // twice: only `offer` untracks a `Borrow`, and only what leaves a
        // slot is tracked again).
        unsafe { ffi::PyObject_GC_Track(obj.as_ptr().cast()) };
        Ok(spare)
    }

    /// Shows the collector the references the spares in the slots hold:
    /// each its state's (untracked there, they show none themselves, and
    /// hold nothing else: see [`SpareBorrows`]), that is, the state itself
    /// once per spare. Only each spare's count is read, never its fields,
    /// with no other thread changing it: CPython traverses with a GIL or a
    /// stopped world (its collector, and `gc.get_referents`, which stops
    /// the world on 3.14t).
    ///
    /// Only the reference of a spare the slot alone holds: a spare someone
    /// else still reaches (with a GIL before 3.14, an exit called through a
    /// bound `__exit__` the caller kept, `ex = b.__exit__`, found the
    /// `Borrow`'s count 1 and offered it) is reachable from outside any
    /// cycle through a reference the collector cannot see (the spare is
    /// untracked), so its hold on the state must stay unexplained: shown as
    /// the state's own, it let a collection find the state unreachable and
    /// clear it while that `Borrow` still used it (its block's put was then
    /// refused as foreign). Left unshown, the state counts as referenced
    /// from outside until the spare leaves the slot: at worst a cycle
    /// through that other holder waits for it.
    pub fn traverse_held(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let state = self.state.load(Relaxed);
        if state.is_null() {
            return Ok(());
        }
        // SAFETY: the collector traverses on a thread attached to the
        // interpreter; the token only lends the state's pointer to the
        // visit below (no call into Python, no reference count changed).
        let py = unsafe { Python::assume_attached() };
        // SAFETY: the state is alive: it is being traversed (it owns
        // these slots).
        let state = unsafe { Borrowed::from_ptr(py, state) };
        self.slots.peek(|obj| {
            // SAFETY: a live object a slot holds a reference to; its count
            // is read with no other thread changing it (see above).
            if unsafe { ffi::Py_REFCNT(obj.as_ptr()) } != 1 {
                return Ok(());
            }
            visit.call(state.as_unbound())
        })
    }

    /// Lets go of every spare, and keeps none from now on (a closed pool,
    /// or one the collector clears).
    pub fn close(&self, py: Python<'_>) {
        self.slots.close(|obj| leave(py, obj));
    }
}

/// A spare leaves the slots to its other holders, if any: tracked by the
/// collector again, then the slot's reference goes (which may free it,
/// and with it its hold on the pool's state: never the last, as the caller
/// holds the state too: a call on the pool, its object's `Drop`, or the
/// collector clearing the state; so the slots are empty when the state is
/// freed, and need no `Drop` here). Also for an offer the slots refused.
/// Cold: kept out of `take`, which is inlined into `borrow()`.
#[cold]
#[inline(never)]
fn leave(py: Python<'_>, obj: NonNull<ffi::PyObject>) {
    // SAFETY: a live object, untracked by `offer` before it reached the
    // slots (see `take`).
    unsafe { ffi::PyObject_GC_Track(obj.as_ptr().cast()) };
    // SAFETY: a reference the slots gave back to us.
    drop(unsafe { Bound::from_owned_ptr(py, obj.as_ptr()) });
}
