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
//!   on a free-threaded build the offer reads the flags of the object's
//!   shared count (atomically; a weak reference sets "maybe weakref"
//!   there before it is published), not the list pointer, which CPython
//!   writes under a lock this crate cannot take;
//! - when reused, the spare slot's reference is the only one, and no other
//!   thread can make another: with a GIL, refcount 1 read while attached
//!   (nothing else runs meanwhile); on a free-threaded build,
//!   `PyUnstable_Object_IsUniquelyReferenced` (CPython 3.14; looked up when
//!   a pool is made, nothing reused without it): the object is
//!   owned by this thread, its local count is 1 and its shared count, flags
//!   included, is 0. No other thread then holds a reference, and none can
//!   make one without changing the counts the check reads: a weak
//!   reference ever made to the object set the "maybe weakref" flag of its
//!   shared count (`init_weakref`) for good, as does a locked read from a
//!   list or dict on another thread (`_Py_NewRefWithLock`), so such an
//!   object is never judged unique (it is discarded instead); the pools
//!   do not show their spares to the collector's traversal, and
//!   `gc.get_objects()`, which does list them, stops the world and takes a
//!   counted reference, so it cannot fall between the check and the reuse,
//!   which run with no call into Python and no detaching in between (keep
//!   it so). An acquire fence after the check orders the reuse after
//!   everything a former holder on another thread did before its decrement
//!   brought the shared count back to 0.
//!
//! On a free-threaded build each thread group keeps its own spares
//! (`ShardedSpares`): two threads sharing a pool never swap one slot, and
//! an object is offered to the group of the thread that released it, which
//! is mostly the thread that made it (only such an object can be judged
//! unique there; another is let go).
//!
//! What spares keep idle is bounded by the CPUs, not by the threads: a
//! pool's [`ThreadSpares`] has `P` groups, `P` the CPUs this process may
//! use (`shards::default_shard_count`, read once: the core's shards are as
//! many), fixed when the pool is made; a thread uses group `index % P` of
//! its thread index, so 64 or 1000 threads share the same `P` groups. Each
//! group keeps at most [`SLOTS`](crate::blocks::spares::SLOTS) = 2 spares,
//! so a pool keeps at most `2P` objects idle (a GIL build: 1 group, 2),
//! each a released `Block` or `Buffer` (128 bytes each,
//! `sys.getsizeof` on 3.14t, its lease holding no memory) or, for an
//! `ObjectPool`'s `borrow()`, a `Borrow` holding no object (80 bytes),
//! plus the groups themselves, `P` cache-line-padded slot pairs of 128
//! bytes made with the pool. At most `2P * 128 + P * 128` bytes a pool:
//! 768 bytes with 2 CPUs, 24 KiB with 64, whatever the number of threads.
//!
//! A spare holds a strong reference and stays an ordinary (released)
//! object that the GC sees; its pool's `close()`, and the collection of
//! the pool object, let go of it (a spare holds the pool's core, so it
//! must not outlive the pool object). A spare `Borrow` holds its pool's
//! shared state the same way, and its pool object's `Drop` lets go of it
//! (`borrow`).
//!
//! The two classes are declared here too, so that what they share is
//! written once: `reusable_class!` (the class, its lease and its pool),
//! [`Reusable::hand_out`] for both `get`s, and [`Holder`] with
//! `item_methods!` for `put()` and the `with` exit (`release()` is a
//! `raw_method` entry of each class, over the same [`Holder::release`]).

use std::cell::UnsafeCell;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

#[cfg(not(feature = "abi3"))]
use std::sync::atomic::{fence, AtomicPtr, Ordering::Acquire, Ordering::Relaxed};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::PyClass;

#[cfg(not(feature = "abi3"))]
use super::interpreter::{
    free_threaded_header_as_expected, gil_build, is_unique, shared_count, IsUnique, SHARED_FLAGS,
};
use super::naming::Naming;
use super::pool_class::{PoolLink, Shared};
use super::tracking::Tracking;
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

/// A class whose released objects its pool may reuse: `Block`, `Buffer`
/// (declared by [`reusable_class!`]).
pub trait Reusable: PyClass<Frozen = True> + Sync + Sized {
    /// What a holder of the object leases.
    type Lease;
    /// The core pool that hands the leases out.
    type Pool;
    fn renewable(&self) -> &Renewable<Self::Lease>;
    /// Whether the lease was ever exported (a consumer may keep its address:
    /// the object is then never reused).
    fn was_exported(lease: &Self::Lease) -> bool;
    /// Whether nothing of the lease is left (it gave everything back at its
    /// release): checked, in debug builds, before a reuse drops it.
    fn is_spent(lease: &mut Self::Lease) -> bool;
    /// The pool that handed the object out.
    fn link(&self) -> &PoolLink<WithSpares<Self::Pool>>;
    /// A new object of this class, for a lease `pool` just handed out.
    fn create<'py>(
        py: Python<'py>,
        lease: Renewable<Self::Lease>,
        pool: PoolLink<WithSpares<Self::Pool>>,
    ) -> PyResult<Bound<'py, Self>>;

    /// An object holding `lease`, just handed out by `pool`: a spare one
    /// renewed if there is one, else a new one.
    #[inline]
    fn hand_out<'py>(
        py: Python<'py>,
        pool: &Arc<Shared<WithSpares<Self::Pool>>>,
        lease: Self::Lease,
    ) -> PyResult<Bound<'py, Self>> {
        let lease = match pool.spares.take_renewed::<Self>(py, lease) {
            Ok(spare) => return Ok(spare),
            Err(lease) => Renewable::new(lease),
        };
        let link = PoolLink::acquired(py, pool);
        Self::create(py, lease, link)
    }

    /// After a successful release: an object whose lease gave everything
    /// back may serve the next `get` (see the module's conditions).
    #[inline]
    fn offer_for_reuse(slf: &Bound<'_, Self>) {
        let pool = slf.get().link();
        pool.spares.offer(slf, pool.tracking.is_tracking());
    }
}

/// `reusable_class!(/// docs  Class { lease: Lease, pool: Pool })`: the
/// Python class of the objects a block or buffer pool hands out,
/// [`Reusable`]: a `Lease` (`self.lease()`) and the link to the core `Pool`
/// that handed it out (`self.pool`). The docs are the class's (what
/// `help()` shows).
macro_rules! reusable_class {
    ($(#[$doc:meta])* $class:ident { lease: $lease:ty, pool: $pool:ty $(,)? }) => {
        $(#[$doc])*
        #[pyo3::pyclass(frozen, weakref, module = "shardpool")]
        pub struct $class {
            /// Replaced when the object is reused (see `reuse`).
            lease: $crate::python::reuse::Renewable<$lease>,
            pool: $crate::python::pool_class::PoolLink<$crate::python::reuse::WithSpares<$pool>>,
        }

        impl $crate::python::reuse::Reusable for $class {
            type Lease = $lease;
            type Pool = $pool;

            fn renewable(&self) -> &$crate::python::reuse::Renewable<$lease> {
                &self.lease
            }

            fn was_exported(lease: &$lease) -> bool {
                lease.was_exported()
            }

            fn is_spent(lease: &mut $lease) -> bool {
                lease.finish().is_none()
            }

            fn link(
                &self,
            ) -> &$crate::python::pool_class::PoolLink<$crate::python::reuse::WithSpares<$pool>> {
                &self.pool
            }

            fn create<'py>(
                py: pyo3::Python<'py>,
                lease: $crate::python::reuse::Renewable<$lease>,
                pool: $crate::python::pool_class::PoolLink<$crate::python::reuse::WithSpares<$pool>>,
            ) -> pyo3::PyResult<pyo3::Bound<'py, Self>> {
                pyo3::Bound::new(py, $class { lease, pool })
            }
        }

        impl $class {
            #[inline]
            fn lease(&self) -> &$lease {
                self.lease.get()
            }
        }
    };
}

pub(crate) use reusable_class;

/// A holder's side of a block or buffer: how its lease ends, through the
/// core pool, and what a refusal raises. `release()`, `put()` and a `with`
/// exit are written once over it ([`item_methods!`]).
pub trait Holder: Reusable {
    /// Why the core refused to end the lease.
    type Refusal;
    /// Ends the lease: refused while it is exported (`release()`, `put()`)
    /// unless `deferring` (a `with` exit: live exports keep working).
    /// Implementations are `#[inline(always)]` (see [`Holder::let_go`]).
    fn end_lease(&self, py: Python<'_>, deferring: bool) -> Result<(), Self::Refusal>;
    /// The Python exception of a refused `release()` or `put()`.
    fn refused(refusal: Self::Refusal) -> PyErr;

    /// Lets the object go (see [`Holder::end_lease`]): once its lease has
    /// ended, its site is forgotten and the object offered for reuse.
    /// Always inlined, as `end_lease` is, so that `deferring` is a constant
    /// in each caller (left to the compiler, a `with` exit cost 20 more
    /// instructions, a `release()` 5).
    #[inline(always)]
    fn let_go(slf: &Bound<'_, Self>, deferring: bool) -> Result<(), Self::Refusal> {
        let this = slf.get();
        this.link().settle(this.end_lease(slf.py(), deferring))?;
        Self::offer_for_reuse(slf);
        Ok(())
    }

    /// `release()` and `put()`.
    #[inline(always)]
    fn release(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::let_go(slf, false).map_err(Self::refused)
    }
}

/// `item_methods!(Class, "item", "copy")`: what `Block` and `Buffer` share
/// over their [`Holder`] implementation: the `with` exit, `released`, the end of an export and the
/// refusal to pickle (`copy` says how to copy the bytes instead).
macro_rules! item_methods {
    ($class:ident, $item:literal, $copy:literal) => {
        #[pyo3::pymethods]
        impl $class {
            #[doc = concat!("Releases the ", $item, "; views still alive keep working. Does nothing if")]
            /// it was released inside the block.
            fn __exit__(
                slf: &Bound<'_, Self>,
                _exc_type: &Bound<'_, PyAny>,
                _exc: &Bound<'_, PyAny>,
                _tb: &Bound<'_, PyAny>,
            ) -> bool {
                // Refused only when released already: a no-op then.
                let _ = $crate::python::reuse::Holder::let_go(slf, true);
                false
            }

            #[doc = concat!("Whether the ", $item, " was released.")]
            #[getter]
            fn released(&self) -> bool {
                self.lease().is_released()
            }

            unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
                self.lease().unexport();
            }

            fn __reduce__(&self) -> PyResult<()> {
                Err(pyo3::exceptions::PyTypeError::new_err(concat!(
                    "cannot pickle '", stringify!($class), "' object: copy its bytes with ", $copy,
                )))
            }
        }
    };
}

pub(crate) use item_methods;

/// A core block or buffer pool with the spare objects of its released
/// blocks or buffers.
pub struct WithSpares<P> {
    pool: P,
    pub spares: SpareObjects,
}

impl<P> Deref for WithSpares<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.pool
    }
}

/// What a block or buffer pool object holds: its shared core, which its
/// spares hold too. Letting it go lets go of the spares, or the two would
/// keep each other alive.
pub struct PoolCore<P>(Arc<Shared<WithSpares<P>>>);

impl<P> PoolCore<P> {
    /// `pool`, named and tracked as `labels` say, keeping spare objects of
    /// class `T`.
    pub fn new<T: Reusable<Pool = P>>(
        py: Python<'_>,
        pool: P,
        labels: (Naming, Tracking),
    ) -> PyResult<Self> {
        let spares = SpareObjects::new::<T>(py)?;
        let core = Shared::new(WithSpares { pool, spares }, labels);
        Ok(PoolCore(Arc::new(core)))
    }
}

impl<P> Deref for PoolCore<P> {
    type Target = Arc<Shared<WithSpares<P>>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<P> Drop for PoolCore<P> {
    fn drop(&mut self) {
        Python::attach(|py| self.0.spares.close(py));
    }
}

/// The spares of one pool: one group on builds with a GIL (the abi3
/// wheel pays nothing for groups), one per thread group otherwise.
#[cfg(feature = "abi3")]
type Slots = Spares<ffi::PyObject>;
#[cfg(not(feature = "abi3"))]
type Slots = crate::blocks::spares::ShardedSpares<ffi::PyObject>;

/// The spare slots of one pool for one class of objects (one group, or
/// one per thread group on a free-threaded build), and how a spare taken
/// from them is judged to have no other holder (see the module's
/// conditions): what `Block`/`Buffer` reuse ([`SpareObjects`]) and `Borrow`
/// reuse (`borrow::SpareBorrows`) share.
pub struct ThreadSpares {
    spares: Slots,
    /// A free-threaded interpreter: uniqueness is judged by
    /// `PyUnstable_Object_IsUniquelyReferenced` (see the module's
    /// conditions).
    #[cfg(not(feature = "abi3"))]
    free_threaded: bool,
    /// That function, on a free-threaded interpreter that has it.
    #[cfg(not(feature = "abi3"))]
    is_unique: Option<IsUnique>,
}

impl ThreadSpares {
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        #[cfg(feature = "abi3")]
        let _ = py;
        #[cfg(not(feature = "abi3"))]
        let free_threaded = !gil_build(py)?;
        Ok(ThreadSpares {
            #[cfg(feature = "abi3")]
            spares: Spares::default(),
            #[cfg(not(feature = "abi3"))]
            spares: Slots::new(if free_threaded {
                crate::shards::default_shard_count()
            } else {
                1
            }),
            #[cfg(not(feature = "abi3"))]
            free_threaded,
            #[cfg(not(feature = "abi3"))]
            is_unique: if free_threaded { is_unique() } else { None },
        })
    }

    /// Whether [`ThreadSpares::unique`] can ever find a spare unique: not
    /// on a free-threaded interpreter without
    /// `PyUnstable_Object_IsUniquelyReferenced` (where it answers `None`;
    /// [`SpareObjects`] then offers nothing).
    #[cfg(not(feature = "abi3"))]
    pub fn judges(&self) -> bool {
        !self.free_threaded || self.is_unique.is_some()
    }

    /// Whether the interpreter is free-threaded.
    #[inline(always)]
    pub fn free_threaded(&self) -> bool {
        #[cfg(not(feature = "abi3"))]
        return self.free_threaded;
        #[cfg(feature = "abi3")]
        false
    }

    /// The calling thread's spares.
    #[inline(always)]
    pub fn local(&self) -> &Spares<ffi::PyObject> {
        #[cfg(feature = "abi3")]
        return &self.spares;
        #[cfg(not(feature = "abi3"))]
        return self.spares.local();
    }

    /// Whether our reference to `obj` is the only one, and no other thread
    /// can make one (see the module's conditions); `None`: never will be.
    #[inline(always)]
    pub fn unique(&self, obj: NonNull<ffi::PyObject>) -> Option<bool> {
        #[cfg(not(feature = "abi3"))]
        if self.free_threaded {
            // Not found: nothing is offered (`judges`), and so none taken.
            let is_unique = self.is_unique?;
            // SAFETY: a live object (the slot's reference, now ours), read
            // while attached.
            if unsafe { is_unique(obj.as_ptr()) } != 0 {
                // Pairs with the release of the decrement (an atomic
                // read-modify-write) by which a former holder on another
                // thread let go (see the module's conditions).
                fence(Acquire);
                return Some(true);
            }
            // SAFETY: as above.
            return if unsafe { ffi::Py_REFCNT(obj.as_ptr()) } == 1 {
                // Ours alone, yet not unique: made on another thread, or
                // weakly referenced once. It never becomes unique here.
                None
            } else {
                Some(false)
            };
        }
        // SAFETY: a live object: the slot's reference, now ours.
        Some(unsafe { ffi::Py_REFCNT(obj.as_ptr()) } == 1)
    }

    /// Every group, for a traversal.
    #[cfg(feature = "abi3")]
    pub fn peek(
        &self,
        visit: impl FnMut(NonNull<ffi::PyObject>) -> Result<(), pyo3::PyTraverseError>,
    ) -> Result<(), pyo3::PyTraverseError> {
        self.spares.peek(visit)
    }

    /// Every group, for a traversal.
    #[cfg(not(feature = "abi3"))]
    pub fn peek(
        &self,
        mut visit: impl FnMut(NonNull<ffi::PyObject>) -> Result<(), pyo3::PyTraverseError>,
    ) -> Result<(), pyo3::PyTraverseError> {
        for group in self.spares.all() {
            group.peek(&mut visit)?;
        }
        Ok(())
    }

    /// Lets go of every spare (given to `discard`), and keeps none from now
    /// on.
    pub fn close(&self, discard: impl FnMut(NonNull<ffi::PyObject>)) {
        self.spares.close(discard);
    }
}

/// A pool's spare objects of class `T`.
pub struct SpareObjects {
    slots: ThreadSpares,
    /// `T.__weakrefoffset__`: where an instance keeps its weak-reference
    /// list; `None` when objects are never reused.
    weaklist: Option<isize>,
}

impl SpareObjects {
    /// Spares for objects of class `T` (which must support weak references).
    pub fn new<T: PyClass>(py: Python<'_>) -> PyResult<Self> {
        let offset: isize = py.get_type::<T>().getattr("__weakrefoffset__")?.extract()?;
        let slots = ThreadSpares::new(py)?;
        // Reuse on a free-threaded build reads the shared count's flags at
        // a fixed place of the object header: only where it is there, and
        // where the interpreter can judge a spare unique.
        #[cfg(not(feature = "abi3"))]
        let offset =
            if slots.free_threaded() && !(slots.judges() && free_threaded_header_as_expected(py)) {
                0
            } else {
                offset
            };
        Ok(SpareObjects {
            slots,
            // 0 would mean no weak references (and no list to read).
            weaklist: (offset != 0).then_some(offset),
        })
    }

    /// Whether `obj` may have weak references, read when it is offered,
    /// while other holders may be using it. A free-threaded build reads the
    /// flags of its shared count, atomically as CPython writes them: a weak
    /// reference sets "maybe weakref" before it is published
    /// (`init_weakref`), where the list pointer is written without an
    /// atomic, under a lock this crate cannot take.
    #[inline(always)]
    fn may_be_weakly_referenced(&self, offset: isize, obj: NonNull<ffi::PyObject>) -> bool {
        #[cfg(not(feature = "abi3"))]
        if self.slots.free_threaded() {
            // SAFETY: a live object; on a free-threaded build its shared
            // count is an atomic `isize` where `shared_count` reads it
            // (checked at construction, `free_threaded_header_as_expected`).
            return unsafe { shared_count(obj.as_ptr()) } & SHARED_FLAGS != 0;
        }
        Self::weakly_referenced(offset, obj)
    }

    /// Whether `obj` (an instance of this spares' class) has weak references.
    fn weakly_referenced(offset: isize, obj: NonNull<ffi::PyObject>) -> bool {
        // SAFETY: `obj` is a live instance of the class whose
        // `__weakrefoffset__` is `offset` (CPython's `tp_weaklistoffset`):
        // the instance keeps its weak-reference list pointer there, null
        // without weak references; a pointer-aligned field. Read with no
        // other thread running (a GIL build), or on a free-threaded build
        // once `unique` found no other holder on any thread (no one can
        // add a weak reference, and the fence after it orders the writes
        // of any former one).
        unsafe {
            let list = obj
                .as_ptr()
                .cast::<u8>()
                .offset(offset)
                .cast::<*mut ffi::PyObject>();
            // The abi3 wheel runs only with a GIL: a plain read, which
            // x86 compares in place (the atomic load cost a block's
            // get+release 2 instructions).
            #[cfg(feature = "abi3")]
            return !list.read().is_null();
            #[cfg(not(feature = "abi3"))]
            return !AtomicPtr::from_ptr(list).load(Relaxed).is_null();
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
        if self.may_be_weakly_referenced(offset, ptr) {
            return;
        }
        let owned = obj.clone().into_ptr();
        // SAFETY: `into_ptr` gives a non-null owned reference.
        let owned = unsafe { NonNull::new_unchecked(owned) };
        if let Err(refused) = self.slots.local().offer(owned) {
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
        // object, that no other thread can make one, and that no weak
        // reference to it exists (see the module's conditions): no other
        // reference to its lease exists or can be made meanwhile, so this
        // write is exclusive. (Nothing between that verdict and this write
        // may call into Python or detach: a stopped world's
        // `gc.get_objects()` would hand the object out in between.)
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
        let judge = |obj: NonNull<ffi::PyObject>| match self.slots.unique(obj) {
            None => Verdict::Discard,
            Some(false) => Verdict::Keep,
            // Weakly referenced after its release: never reusable.
            Some(true) if Self::weakly_referenced(offset, obj) => Verdict::Discard,
            Some(true) => Verdict::Reuse,
        };
        let discard = |obj: NonNull<ffi::PyObject>| {
            // SAFETY: a reference the slots gave back to us.
            drop(unsafe { Bound::from_owned_ptr(py, obj.as_ptr()) });
        };
        let obj = self.slots.local().take(judge, discard)?;
        // SAFETY: the slot's reference, now ours; only objects of class `T`
        // are offered to these spares.
        Some(unsafe { Bound::from_owned_ptr(py, obj.as_ptr()).cast_into_unchecked() })
    }

    /// Lets go of every spare, and keeps none from now on.
    pub fn close(&self, py: Python<'_>) {
        self.slots.close(|obj: NonNull<ffi::PyObject>| {
            // SAFETY: a reference the slots gave back to us.
            drop(unsafe { Bound::from_owned_ptr(py, obj.as_ptr()) });
        });
    }
}
