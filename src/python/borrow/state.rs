//! A `Borrow`'s state: [`Held`], what it holds (nothing, an entry or exit
//! under way, or the block's object). A child of `borrow`, whose invariants
//! it keeps; the items are visible to `borrow` and its children only. (Its
//! pool it reaches through the pool's shared state, a hidden Python object
//! it holds also as a spare: see `borrow`.)

use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicPtr,
    Ordering::{AcqRel, Acquire, Release},
};

use pyo3::ffi;
use pyo3::prelude::*;

/// What a `Borrow` holds: nothing (null), its entry under way or its
/// exit's first step ([`BUSY`]), or the object lent to its block (a
/// reference it owns). Each change is one atomic operation, so two threads
/// using one `Borrow` at once get its errors ("already in use", "exited
/// without being entered"), never a torn state, and no lock is taken (a
/// `Mutex` here cost about 50 instructions a block).
pub(super) struct Held(pub(super) AtomicPtr<ffi::PyObject>);

/// [`Held`] while `__enter__` gets the object, or while `__exit__`, having
/// taken it, reads the block's `lent` entry (which a new entry would
/// overwrite): never an object's address.
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

    /// Holding to free (the collector's `__clear__`): the object, or
    /// `None` (nothing changed) if it holds none.
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
    fn take_leaving<'py>(
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
