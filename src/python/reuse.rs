//! Reuse of the Python objects of released blocks and buffers: a `get`
//! right after a `release` hands out the same `Block` (or `Buffer`) object
//! with a new lease, instead of allocating, GC-tracking and later freeing a
//! new one (about a quarter of a block's get+release).
//!
//! An object is reused only when nothing else can ever observe it again,
//! so no holder sees a released block come back to life as another:
//! - it was released with its memory returned at once (never exported:
//!   no consumer has its address), and its pool does not track sites;
//! - when offered and again when reused it has no weak references (a
//!   weak reference could revive it as the new block; an object with one
//!   is not kept, so the reference dies when its holders let go, as
//!   before);
//! - when reused, the spare slot's reference is the only one (refcount 1,
//!   read while attached: nothing else can take a reference meanwhile);
//! - only on interpreters with a GIL. On a free-threaded build another
//!   thread could revive a weak reference, or hold the object, between the
//!   checks and the reuse, so nothing is ever kept there.
//!
//! A spare holds a strong reference and stays an ordinary (released)
//! object that the GC sees; its pool's `close()`, and the collection of
//! the pool object, let go of it (a spare holds the pool's core, so it
//! must not outlive the pool object).

use std::cell::UnsafeCell;
use std::ptr::NonNull;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::sync::PyOnceLock;
use pyo3::PyClass;

use crate::blocks::spares::{Spares, Verdict};

/// A reusable object's lease: read shared, replaced only when the object
/// is reused ([`SpareObjects::take_renewed`], the only writer).
pub struct Renewable<L>(UnsafeCell<L>);

// SAFETY: the lease is written only by `take_renewed`, while no other
// reference to the object holding it (and so to this) exists on any
// thread; every other access is a shared read of an `L`, which is `Sync`.
unsafe impl<L: Sync> Sync for Renewable<L> {}

impl<L> Renewable<L> {
    pub fn new(lease: L) -> Self {
        Renewable(UnsafeCell::new(lease))
    }

    /// The current lease.
    #[inline]
    pub fn get(&self) -> &L {
        // SAFETY: see `take_renewed`, the only writer.
        unsafe { &*self.0.get() }
    }

    /// The lease, for the object's destructor.
    pub fn get_mut(&mut self) -> &mut L {
        self.0.get_mut()
    }
}

/// A class whose released objects its pool may reuse: `Block`, `Buffer`.
pub trait Reusable: PyClass<Frozen = True> + Sync {
    /// What a holder of the object leases.
    type Lease;
    fn renewable(&self) -> &Renewable<Self::Lease>;
    /// Whether the lease was ever exported (a consumer may keep its address:
    /// the object is then never reused).
    fn was_exported(lease: &Self::Lease) -> bool;
    /// Whether nothing of the lease is left (it gave everything back at its
    /// release): checked, in debug builds, before a reuse drops it.
    fn is_spent(lease: &mut Self::Lease) -> bool;
}

/// Whether this interpreter has a GIL (see the module's last condition).
static GIL_BUILD: PyOnceLock<bool> = PyOnceLock::new();

fn gil_build(py: Python<'_>) -> PyResult<bool> {
    // An abi3 (limited API) build cannot be loaded by a free-threaded
    // interpreter of the versions it targets.
    if cfg!(feature = "abi3") {
        return Ok(true);
    }
    GIL_BUILD
        .get_or_try_init(py, || {
            let flag = py
                .import("sysconfig")?
                .call_method1("get_config_var", ("Py_GIL_DISABLED",))?;
            Ok(!flag.is_truthy()?)
        })
        .copied()
}

/// A pool's spare objects of class `T`.
pub struct SpareObjects {
    spares: Spares<ffi::PyObject>,
    /// `T.__weakrefoffset__`: where an instance keeps its weak-reference
    /// list; `None` when objects are never reused (free-threaded builds).
    weaklist: Option<isize>,
}

impl SpareObjects {
    /// Spares for objects of class `T` (which must support weak references).
    pub fn new<T: PyClass>(py: Python<'_>) -> PyResult<Self> {
        let weaklist = if gil_build(py)? {
            let offset: isize = py.get_type::<T>().getattr("__weakrefoffset__")?.extract()?;
            // 0 would mean no weak references (and no list to read).
            (offset != 0).then_some(offset)
        } else {
            None
        };
        Ok(SpareObjects {
            spares: Spares::default(),
            weaklist,
        })
    }

    /// Whether `obj` (an instance of this spares' class) has weak references.
    fn weakly_referenced(offset: isize, obj: NonNull<ffi::PyObject>) -> bool {
        // SAFETY: `obj` is a live instance of the class whose
        // `__weakrefoffset__` is `offset` (CPython's `tp_weaklistoffset`):
        // the instance keeps its weak-reference list pointer there, null
        // without weak references. Read while attached, and (on a build with
        // a GIL, the only one where `offset` is set) no other thread runs.
        unsafe {
            !obj.as_ptr()
                .cast::<u8>()
                .offset(offset)
                .cast::<*mut ffi::PyObject>()
                .read()
                .is_null()
        }
    }

    /// Keeps `obj`, just released with nothing of its lease left, for reuse
    /// (see the module's conditions): unless its lease was ever exported or
    /// its pool tracks sites (`tracking`).
    #[inline]
    pub fn offer<T: Reusable>(&self, obj: &Bound<'_, T>, tracking: bool) {
        let Some(offset) = self.weaklist else { return };
        if tracking || T::was_exported(obj.get().renewable().get()) {
            return;
        }
        let Some(ptr) = NonNull::new(obj.as_ptr()) else {
            return;
        };
        if Self::weakly_referenced(offset, ptr) {
            return;
        }
        let owned = obj.clone().into_ptr();
        // SAFETY: `into_ptr` gives a non-null owned reference.
        let owned = unsafe { NonNull::new_unchecked(owned) };
        if let Err(refused) = self.spares.offer(owned) {
            // SAFETY: the reference we own and the slots refused.
            drop(unsafe { Bound::from_owned_ptr(obj.py(), refused.as_ptr()) });
        }
    }

    /// A spare object that no one else holds or can reach, with `lease` as
    /// its new lease; `lease` back if there is none.
    #[inline]
    pub fn take_renewed<'py, T: Reusable>(
        &self,
        py: Python<'py>,
        lease: T::Lease,
    ) -> Result<Bound<'py, T>, T::Lease> {
        let Some(spare) = self.take::<T>(py) else {
            return Err(lease);
        };
        // SAFETY: `take` proved that our reference is the only one to this
        // object and that no weak reference to it exists, on a build with a
        // GIL that we hold: no other reference to its lease exists or can be
        // made meanwhile, so this write is exclusive.
        let old = unsafe { &mut *spare.get().renewable().0.get() };
        // Offered only at a release that gave everything back: dropping the
        // old lease loses nothing.
        debug_assert!(T::is_spent(old), "a spare object still holds its lease");
        *old = lease;
        Ok(spare)
    }

    /// A spare object that no one else holds or can reach; `None` if there
    /// is none.
    #[inline]
    fn take<'py, T: PyClass>(&self, py: Python<'py>) -> Option<Bound<'py, T>> {
        let offset = self.weaklist?;
        let judge = |obj: NonNull<ffi::PyObject>| {
            // SAFETY: a live object: the slot's reference, now ours.
            if unsafe { ffi::Py_REFCNT(obj.as_ptr()) } != 1 {
                Verdict::Keep
            } else if Self::weakly_referenced(offset, obj) {
                // Weakly referenced after its release: never reusable.
                Verdict::Discard
            } else {
                Verdict::Reuse
            }
        };
        let discard = |obj: NonNull<ffi::PyObject>| {
            // SAFETY: a reference the slots gave back to us.
            drop(unsafe { Bound::from_owned_ptr(py, obj.as_ptr()) });
        };
        let obj = self.spares.take(judge, discard)?;
        // SAFETY: the slot's reference, now ours; only objects of class `T`
        // are offered to these spares.
        Some(unsafe { Bound::from_owned_ptr(py, obj.as_ptr()).cast_into_unchecked() })
    }

    /// Lets go of every spare, and keeps none from now on.
    pub fn close(&self, py: Python<'_>) {
        self.spares.close(|obj| {
            // SAFETY: a reference the slots gave back to us.
            drop(unsafe { Bound::from_owned_ptr(py, obj.as_ptr()) });
        });
    }
}
