//! A `Borrow`'s state: [`PoolRef`], where its reference to its pool is
//! (owned, taken over by an exit in flight, or none as a spare), and
//! [`Held`], what it holds (nothing, an entry or exit under way, or the
//! block's object). A child of `borrow`, whose invariants they keep; the
//! items are visible to `borrow` and its children only.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicPtr, AtomicU8,
    Ordering::{AcqRel, Acquire, Release},
};

use pyo3::ffi;
use pyo3::prelude::*;

/// A `Borrow`'s pool: the reference that keeps it alive, except while the
/// `Borrow` is a spare in that pool's slots, which would otherwise make a
/// reference cycle (pool, slot, `Borrow`, pool): a pool dropped without
/// `close()` would then be freed only by the next garbage collection.
///
/// `state` says where the reference is:
/// - [`OWNED`]: `ptr` is a strong reference this `Borrow` owns. A `Borrow`
///   holding an object is `OWNED`, and so is one left by an exit that did
///   not offer it.
/// - [`EXITING`]: an exit of this `Borrow` in flight took the reference
///   over ([`PoolRef::take_over`], after it took the block's object), so
///   that a block costs no reference of its own on the pool object (whose
///   count, on a free-threaded build, every thread but the pool's maker
///   changes atomically: two threads sharing a pool bounce its cache line).
///   The pool stays alive: that exit lets go of its reference only if the
///   `Borrow` owns one again meanwhile (dropping its [`TakenOver`]) or when it
///   makes it a spare ([`TakenOver::let_go`]). Anyone who may hold this
///   `Borrow` meanwhile (a `reset` hook or another thread entering it, a
///   slot's `leave`) takes a reference of its own ([`PoolRef::own`]): it
///   goes `OWNED`, and the exit, finding it so at its end, drops its own.
///   Several exits may be in flight (one entered from another's `reset`);
///   each holds one reference, and the `Borrow` one when `OWNED`.
/// - [`SPARE`]: it holds none. Only an exit that offered the `Borrow` to
///   its pool's slots sets it, when its caller alone held it; anyone who
///   takes it from the slots (`take`, `leave`) or enters it there takes a
///   reference again (`own`). So a `Borrow` not owning its pool is in that
///   pool's slots or its pool is gone (below), or it is about to be freed
///   (on a free-threaded build a thread of the same group may take it out
///   of the slot and let go of it before the offering exit lets go of the
///   pool: its caller, alone, then drops it).
///
/// `ptr`: the pool's address, fixed at construction; null only after the
/// pool was freed while this `Borrow`, a spare, was in its slots (the
/// slots' `Drop`): `__enter__` then raises. Also while the pool is being
/// freed, before its slots' `Drop` reaches this spare: Python code run by
/// that (another spare's drop, or a Python subclass's `__dict__` cleared
/// before the pool's own drop) may find the spare through the collector,
/// and the pool's count, 0, is what tells (`own_again` refuses it).
///
/// The change to `SPARE` is allowed only to the `Borrow`'s sole holder (see
/// [`SpareBorrows`](super::SpareBorrows): offered only when no one else holds it or can make a
/// reference, with no Python code run between that check and the change),
/// and `ptr` is cleared only by its pool's slots when the pool is freed, so
/// a thread never sees a pool it may use go away under it.
pub(super) struct PoolRef {
    pub(super) ptr: AtomicPtr<ffi::PyObject>,
    pub(super) state: AtomicU8,
}

/// [`PoolRef`]: the `Borrow` owns a reference to its pool.
pub(super) const OWNED: u8 = 0;
/// [`PoolRef`]: an exit in flight holds the `Borrow`'s reference.
pub(super) const EXITING: u8 = 1;
/// [`PoolRef`]: a spare, holding no reference.
pub(super) const SPARE: u8 = 2;

impl PoolRef {
    pub(super) fn new(pool: Py<PyAny>) -> Self {
        PoolRef {
            ptr: AtomicPtr::new(pool.into_ptr()),
            state: AtomicU8::new(OWNED),
        }
    }

    /// The pool, if this `Borrow` holds a reference to it.
    #[inline]
    pub(super) fn owned<'a, 'py>(&'a self, py: Python<'py>) -> Option<Borrowed<'a, 'py, PyAny>> {
        if self.state.load(Acquire) != OWNED {
            return None;
        }
        // SAFETY: a strong reference this `Borrow` owns (`OWNED`). It is
        // taken over or let go of only by an exit, which first takes the
        // `Borrow`'s object, and dropped only when another is kept (see
        // `PoolRef`): the callers use the reference while an entry is under
        // way (no exit can take an object then), or in the collector's
        // traversal, from a holder of this `Borrow` (which keeps it from
        // being offered, so one reference stays, owned or taken over).
        Some(unsafe { Borrowed::from_ptr(py, self.ptr.load(Acquire)) })
    }

    /// Makes this `Borrow` own a reference to its pool (if it does not);
    /// `false` if the pool is gone. The caller is a holder of this `Borrow`
    /// (`enter`), or a call on the pool that took it from the slots
    /// (`leave`): the pool is alive unless `forget` ran or it is being
    /// freed (its count is 0: see `ptr`) (not owned: a spare in its slots,
    /// or an exit in flight holds its reference and keeps it while anyone
    /// else holds the `Borrow`).
    #[inline]
    pub(super) fn own(&self) -> bool {
        self.state.load(Acquire) == OWNED || self.own_again()
    }

    /// [`PoolRef::own`] for a `Borrow` not owning its pool: out of line,
    /// as entries find their `Borrow` owning it (a spare taken from the
    /// slots owns it again, `own_alone`).
    #[cold]
    #[inline(never)]
    pub(super) fn own_again(&self) -> bool {
        let mut now = self.state.load(Acquire);
        let ptr = self.ptr.load(Acquire);
        if ptr.is_null() {
            return false;
        }
        // SAFETY: not forgotten, so the pool's memory is still there (its
        // slots' `Drop` forgets a spare before the pool is freed); only its
        // count is read.
        if unsafe { ffi::Py_REFCNT(ptr) } == 0 {
            // Its count is 0: the pool is being freed, and Python code run
            // by that (a spare's drop in its slots' `Drop`, or, for a Python
            // subclass, the clearing of its `__dict__` before its own drop)
            // reached this spare through the collector. A reference taken
            // now would outlive the pool.
            return false;
        }
        // SAFETY: not forgotten, and not being freed (above): the pool is
        // alive.
        unsafe { ffi::Py_INCREF(ptr) };
        loop {
            if now == OWNED {
                // Owned meanwhile (an exit in flight on another thread gave
                // its reference back): ours is a second one (not the last).
                // SAFETY: the reference taken above, ours alone.
                unsafe { ffi::Py_DECREF(ptr) };
                return true;
            }
            match self.state.compare_exchange(now, OWNED, AcqRel, Acquire) {
                Ok(_) => return true,
                Err(changed) => now = changed,
            }
        }
    }

    /// [`PoolRef::own`] for a caller whose reference to this `Borrow` is its
    /// only one, and no other thread can make one (`SpareBorrows::take`), on
    /// a call on the pool: nothing else changes the state meanwhile, and
    /// the pool is alive (so not forgotten).
    #[inline(always)]
    pub(super) fn own_alone(&self) {
        if self.state.load(Acquire) != OWNED {
            let ptr = self.ptr.load(Acquire);
            debug_assert!(!ptr.is_null(), "a live pool forgotten");
            // SAFETY: the pool is alive (the caller's call on it).
            unsafe { ffi::Py_INCREF(ptr) };
            self.state.store(OWNED, Release);
        }
    }

    /// The first step of an exit, which took the `Borrow`'s object and
    /// keeps it busy ([`Held::take_for_exit`]) meanwhile, so that no entry
    /// is under way: the exit takes over the `Borrow`'s reference to its
    /// pool (`EXITING`) until it lets go of it ([`TakenOver::let_go`]) or
    /// gives it back (dropping the [`TakenOver`], also if the exit
    /// unwinds).
    #[inline]
    pub(super) fn take_over<'a, 'py>(&'a self, py: Python<'py>) -> TakenOver<'a, 'py> {
        // A `Borrow` holding an object owns its pool, and no one else
        // changes that state now: only an exit takes the reference over,
        // after taking the object (ours); `own` and the end of another
        // exit in flight change only a state not owned, except an exit
        // whose caller alone holds the `Borrow` (not so: ours holds it).
        let was = self.state.swap(EXITING, AcqRel);
        debug_assert_eq!(was, OWNED, "a Borrow holding an object owns its pool");
        TakenOver {
            from: self,
            // SAFETY: the reference `OWNED` stood for, the exit's now (see
            // `PoolRef`: no one else lets go of it while `EXITING`).
            pool: ManuallyDrop::new(unsafe { Bound::from_owned_ptr(py, self.ptr.load(Acquire)) }),
        }
    }

    /// The pool is being freed while this `Borrow`, a spare, is in its
    /// slots: forgets its address.
    pub(super) fn forget(&self) {
        debug_assert_eq!(self.state.load(Acquire), SPARE, "a spare owning its pool");
        self.state.store(SPARE, Release);
        self.ptr.store(std::ptr::null_mut(), Release);
    }
}

impl Drop for PoolRef {
    fn drop(&mut self) {
        let ptr = *self.ptr.get_mut();
        // (`EXITING` cannot be seen here: an exit's caller holds the
        // `Borrow` until the exit ends.)
        if *self.state.get_mut() == OWNED && !ptr.is_null() {
            // SAFETY: the reference `OWNED` stands for, ours alone (`&mut`).
            Python::attach(|py| drop(unsafe { Bound::from_owned_ptr(py, ptr) }));
        }
    }
}

/// A `Borrow`'s reference to its pool, taken over by an exit in flight
/// ([`PoolRef::take_over`]).
pub(super) struct TakenOver<'a, 'py> {
    pub(super) from: &'a PoolRef,
    pub(super) pool: ManuallyDrop<Bound<'py, PyAny>>,
}

impl<'py> Deref for TakenOver<'_, 'py> {
    type Target = Bound<'py, PyAny>;

    fn deref(&self) -> &Bound<'py, PyAny> {
        &self.pool
    }
}

impl TakenOver<'_, '_> {
    /// The end of an exit that put the `Borrow` in its pool's slots, held
    /// by the exit's caller alone: it holds no reference from now on
    /// (`SPARE`), and the exit's (and one taken since, if any) goes, last.
    /// The exit's may be the pool's last reference: the pool is then freed
    /// here (its slots' `Drop` finds this `Borrow` a spare).
    #[inline]
    pub(super) fn let_go(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: taken once; `this` is never dropped (`ManuallyDrop`).
        let pool = unsafe { ManuallyDrop::take(&mut this.pool) };
        if this.from.state.swap(SPARE, AcqRel) == OWNED {
            // Owned again since the exit took its reference over (`own`):
            // that one goes too, before the exit's.
            // SAFETY: the reference `OWNED` stood for, ours alone now (the
            // swap took it out); the exit's is still held.
            unsafe { ffi::Py_DECREF(pool.as_ptr()) };
        }
        drop(pool);
    }
}

impl Drop for TakenOver<'_, '_> {
    /// The end of an exit that did not offer the `Borrow`: its reference
    /// goes back to the `Borrow`, or, if the `Borrow` owns one again
    /// (`own`, meanwhile), is dropped (not the last: the `Borrow`'s stays).
    #[inline]
    fn drop(&mut self) {
        // SAFETY: taken once (`let_go` does not drop `self`).
        let pool = unsafe { ManuallyDrop::take(&mut self.pool) };
        if self
            .from
            .state
            .compare_exchange(EXITING, OWNED, AcqRel, Acquire)
            .is_ok()
        {
            // The `Borrow`'s again (`OWNED`).
            let _ = pool.into_ptr();
        }
    }
}

/// Whether `pool` is that of a spare (not owned) on a free-threaded build.
#[cfg(not(feature = "abi3"))]
#[inline(always)]
pub(super) fn free_threaded_spare(pool: &PoolRef, py: Python<'_>) -> bool {
    #[cold]
    pub(super) fn free_threaded(py: Python<'_>) -> bool {
        crate::python::interpreter::gil_build(py).map_or(true, |gil| !gil)
    }
    pool.state.load(Acquire) == SPARE && free_threaded(py)
}

/// Whether `pool` is that of a spare on a free-threaded build: never with
/// the abi3 wheel (GIL builds only).
#[cfg(feature = "abi3")]
#[inline(always)]
pub(super) fn free_threaded_spare(_pool: &PoolRef, _py: Python<'_>) -> bool {
    false
}

/// What a `Borrow` holds: nothing (null), its entry under way or its
/// exit's first step ([`BUSY`]), or the object lent to its block (a
/// reference it owns). Each change is one atomic operation, so two threads
/// using one `Borrow` at once get its errors ("already in use", "exited
/// without being entered"), never a torn state, and no lock is taken (a
/// `Mutex` here cost about 50 instructions a block).
pub(super) struct Held(pub(super) AtomicPtr<ffi::PyObject>);

/// [`Held`] while `__enter__` gets the object, or while `__exit__`, having
/// taken it, takes over the pool reference ([`PoolRef::take_over`]): never
/// an object's address.
pub(super) const BUSY: *mut ffi::PyObject = std::ptr::without_provenance_mut(1);

impl Held {
    pub(super) fn new() -> Self {
        Held(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Free to busy (an entry); `false` (nothing changed) if not free.
    #[inline]
    pub(super) fn start_entry(&self) -> bool {
        self.0
            .compare_exchange(std::ptr::null_mut(), BUSY, AcqRel, Acquire)
            .is_ok()
    }

    /// Busy (an entry) to holding `obj`, whose reference it keeps.
    #[inline]
    pub(super) fn hold(&self, obj: Py<PyAny>) {
        self.0.store(obj.into_ptr(), Release);
    }

    /// Busy to free: the entry failed, or the exit's first step is done.
    #[inline]
    pub(super) fn set_free(&self) {
        self.0.store(std::ptr::null_mut(), Release);
    }

    /// Holding to free: the object, or `None` (nothing changed) if it holds
    /// none.
    #[inline]
    pub(super) fn take<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.take_leaving(py, std::ptr::null_mut())
    }

    /// Holding to busy (an exit's first step, until [`Held::set_free`]):
    /// the object, or `None` (nothing changed) if it holds none.
    #[inline]
    pub(super) fn take_for_exit<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.take_leaving(py, BUSY)
    }

    #[inline(always)]
    pub(super) fn take_leaving<'py>(
        &self,
        py: Python<'py>,
        then: *mut ffi::PyObject,
    ) -> Option<Bound<'py, PyAny>> {
        let mut now = self.0.load(Acquire);
        loop {
            if now.is_null() || now == BUSY {
                return None;
            }
            match self.0.compare_exchange(now, then, AcqRel, Acquire) {
                // SAFETY: the reference `hold` kept, now ours alone (the
                // exchange took it out). `now`, which the exchange found,
                // not its result: the compiler then knows it is not null
                // (checked above) and drops PyO3's check.
                Ok(_) => return Some(unsafe { Bound::from_owned_ptr(py, now) }),
                Err(changed) => now = changed,
            }
        }
    }

    #[inline]
    pub(super) fn is_free(&self) -> bool {
        self.0.load(Acquire).is_null()
    }

    /// The object held now, if any (for the collector).
    pub(super) fn held(&self) -> Option<NonNull<ffi::PyObject>> {
        NonNull::new(self.0.load(Acquire)).filter(|p| p.as_ptr() != BUSY)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let obj = *self.0.get_mut();
        if !obj.is_null() && obj != BUSY {
            // SAFETY: the reference `hold` kept, ours alone (`&mut self`).
            Python::attach(|py| drop(unsafe { Bound::from_owned_ptr(py, obj) }));
        }
    }
}
