//! The synchronisation primitives the concurrent protocols are built from.
//!
//! Normally these are plain re-exports of `std` (and crossbeam's
//! `ArrayQueue`), so the build is exactly what it would be without this
//! module. Under `RUSTFLAGS="--cfg loom"` they are the instrumented types of
//! the [loom](https://docs.rs/loom) model checker instead, so that the
//! models in `loom_tests` run the real protocol code (`lease`, `limit`,
//! `shards`, `counters`, `budget`, `ledger`, `lent`, `pool`) under every
//! interleaving loom explores. See `docs/rust-verification.md`.
//!
//! What differs under loom:
//! - [`ArrayQueue`] is a stand-in for crossbeam-queue's (crossbeam is not
//!   instrumented) built on loom's atomics, with crossbeam's memory
//!   orderings where the protocols rely on them, so the fences that pair
//!   with a queue push or pop are checked against what the real queue
//!   guarantees (see `loom_queue`).
//! - `thread_index` numbers loom's threads per execution (loom runs its
//!   threads as coroutines on one OS thread, so `std`'s thread-locals would
//!   be shared by all of them).
//! - [`UnsafeCell`] is loom's, which reports any two unsynchronised
//!   accesses.
//! - [`OnceLock`] (loom has none) publishes its value with a compare-and-swap
//!   on a loom atomic pointer (see `loom_once`).
//! - [`FlagLock`], the lock of one flag that `ledger`, `lent` and
//!   `buffer_lease` keep their short critical sections under (see
//!   `flag_lock`), is loom's `Mutex`.
//!
//! Under `RUSTFLAGS="--cfg shardpool_helgrind"` (valgrind's Helgrind runs,
//! `scripts/valgrind`) they are std's and crossbeam's wrapped so that
//! Helgrind sees the happens-before edges they make (see `helgrind`).

#[cfg(not(any(loom, shardpool_helgrind)))]
pub(crate) use crossbeam_queue::ArrayQueue;
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(any(loom, shardpool_helgrind)))]
pub(crate) use std::sync::{atomic, Condvar, Mutex, MutexGuard, OnceLock};

#[cfg(loom)]
pub(crate) use loom::sync::{atomic, Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom_once::OnceLock;
#[cfg(loom)]
pub(crate) use loom_queue::ArrayQueue;

mod flag_lock;
pub(crate) use flag_lock::FlagLock;

#[cfg(all(shardpool_helgrind, not(loom)))]
mod helgrind;
#[cfg(all(shardpool_helgrind, not(loom)))]
pub(crate) use helgrind::{atomic, ArrayQueue, Condvar, Mutex, MutexGuard, OnceLock};

/// An `UnsafeCell` reached only through [`UnsafeCell::with_mut`], the shape
/// loom's cell requires. Normally a transparent wrapper of `std`'s.
#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    #[inline(always)]
    pub(crate) fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer to the contents; the caller's `unsafe`
    /// block answers for what `f` does with it.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// The index of the calling loom thread within the current execution:
/// `0, 1, 2, ...` in the order threads first ask, like the real
/// [`crate::shards::thread_index`], but starting afresh in every execution so
/// that each execution is deterministic, as loom requires.
#[cfg(loom)]
pub fn thread_index() -> usize {
    // A plain (uninstrumented) counter: it only numbers threads, so it needs
    // no modelling, and loom resets lazy statics between executions.
    use std::sync::atomic::{AtomicUsize, Ordering};
    loom::lazy_static! {
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }
    loom::thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

/// The stand-in for crossbeam-queue's `ArrayQueue` under loom, which cannot
/// see inside crossbeam. A bounded multi-producer multi-consumer store of
/// slots, each `EMPTY -> WRITING -> FULL -> READING -> EMPTY`, with the
/// orderings crossbeam 0.3.14 uses where the protocols rely on them:
/// - a push claims a slot with a `SeqCst` compare-and-swap (crossbeam's
///   `tail` CAS), writes the value, and publishes it with a `Release` store
///   (crossbeam's stamp); a pop claims it with a `SeqCst` compare-and-swap
///   that acquires that store (crossbeam's stamp load and `head` CAS), so a
///   value moves with everything its pusher wrote before;
/// - a pop that finds nothing, or a push that finds no room, puts a
///   `SeqCst` fence before its verdict, as crossbeam's empty and full paths
///   do: this is what the `SeqCst` fences of `pool` and `limit` pair with.
///
/// Unlike crossbeam it is not FIFO (no protocol relies on the order), and it
/// never waits for a slot that another thread is filling or emptying: such a
/// slot counts as empty to a pop and as full to a push (the operation is
/// ordered before the other one). crossbeam spins there instead, and loom
/// cannot check a spin that waits for another thread's store: it may keep
/// showing the spinning thread an old value for ever, as no real processor
/// does. A push or pop is thus a few steps, which keeps the models small.
#[cfg(loom)]
mod loom_queue {
    use std::mem::MaybeUninit;

    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicU8, Ordering};

    const EMPTY: u8 = 0;
    const WRITING: u8 = 1;
    const FULL: u8 = 2;
    const READING: u8 = 3;

    struct Slot<T> {
        state: AtomicU8,
        value: UnsafeCell<MaybeUninit<T>>,
    }

    pub struct ArrayQueue<T> {
        slots: Box<[Slot<T>]>,
    }

    // SAFETY: a slot's value is written only by the thread whose
    // compare-and-swap moved it from EMPTY to WRITING and read only by the
    // thread whose compare-and-swap moved it from FULL to READING; the
    // release stores of FULL and EMPTY, acquired by those compare-and-swaps,
    // order each write before its read and each read before the next write.
    // Values move between threads, so `T: Send` is required and enough. loom
    // checks these claims: its cells report any unordered access.
    unsafe impl<T: Send> Sync for ArrayQueue<T> {}
    // SAFETY: as above; the queue owns its values.
    unsafe impl<T: Send> Send for ArrayQueue<T> {}

    impl<T> ArrayQueue<T> {
        pub fn new(cap: usize) -> Self {
            assert!(cap > 0, "capacity must be non-zero");
            let slots = (0..cap)
                .map(|_| Slot {
                    state: AtomicU8::new(EMPTY),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect();
            ArrayQueue { slots }
        }

        /// Claims a slot in state `from` for `to`, looking with `order`.
        fn claim(&self, from: u8, to: u8, order: Ordering) -> Option<&Slot<T>> {
            self.slots.iter().find(|slot| {
                slot.state.load(order) == from
                    && slot
                        .state
                        .compare_exchange(from, to, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
            })
        }

        pub fn push(&self, value: T) -> Result<(), T> {
            let slot = match self.claim(EMPTY, WRITING, Ordering::Acquire) {
                Some(slot) => slot,
                None => {
                    // Looks full: crossbeam's full path fences, then looks
                    // again.
                    fence(Ordering::SeqCst);
                    match self.claim(EMPTY, WRITING, Ordering::Relaxed) {
                        Some(slot) => slot,
                        None => return Err(value),
                    }
                }
            };
            // SAFETY: this thread's compare-and-swap claimed the empty slot.
            slot.value
                .with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
            slot.state.store(FULL, Ordering::Release);
            Ok(())
        }

        pub fn pop(&self) -> Option<T> {
            let slot = match self.claim(FULL, READING, Ordering::Acquire) {
                Some(slot) => slot,
                None => {
                    // Looks empty: crossbeam's empty path fences, then looks
                    // again.
                    fence(Ordering::SeqCst);
                    self.claim(FULL, READING, Ordering::Relaxed)?
                }
            };
            // SAFETY: this thread's compare-and-swap claimed the full slot,
            // and acquired the store that published its value.
            let value = slot.value.with(|p| unsafe { p.read().assume_init() });
            slot.state.store(EMPTY, Ordering::Release);
            Some(value)
        }

        /// Values stored (a moment's reading under concurrency).
        pub fn len(&self) -> usize {
            self.slots
                .iter()
                .filter(|slot| slot.state.load(Ordering::SeqCst) == FULL)
                .count()
        }

        /// Whether no value is stored (a moment's reading).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        pub fn capacity(&self) -> usize {
            self.slots.len()
        }
    }

    impl<T> Drop for ArrayQueue<T> {
        fn drop(&mut self) {
            // Exclusive access: `pop` finds every remaining value.
            while self.pop().is_some() {}
        }
    }
}

/// The stand-in for `std::sync::OnceLock` under loom: the value is boxed and
/// published by a `Release` compare-and-swap of a loom atomic pointer, and
/// `get` is an `Acquire` load, as std's `Once` completes with a release
/// store and checks with an acquire load. Unlike std, two threads that
/// find it empty may both build a value; the loser's is dropped (building
/// a pool has no side effects).
#[cfg(loom)]
mod loom_once {
    use loom::sync::atomic::{AtomicPtr, Ordering};

    pub struct OnceLock<T>(AtomicPtr<T>);

    impl<T> OnceLock<T> {
        pub fn new() -> Self {
            OnceLock(AtomicPtr::new(std::ptr::null_mut()))
        }

        pub fn get(&self) -> Option<&T> {
            let ptr = self.0.load(Ordering::Acquire);
            // SAFETY: a non-null pointer came from `Box::into_raw` in
            // `get_or_init` and is freed only by `Drop`, which has `&mut
            // self`; the acquire load orders the value's construction before
            // this read.
            unsafe { ptr.as_ref() }
        }

        pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
            if let Some(value) = self.get() {
                return value;
            }
            let new = Box::into_raw(Box::new(f()));
            let ptr = match self.0.compare_exchange(
                std::ptr::null_mut(),
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => new,
                Err(winner) => {
                    // SAFETY: `new` came from `Box::into_raw` above and was
                    // never published.
                    drop(unsafe { Box::from_raw(new) });
                    winner
                }
            };
            // SAFETY: as in `get`: published, and freed only by `Drop`.
            unsafe { &*ptr }
        }
    }

    impl<T> Drop for OnceLock<T> {
        fn drop(&mut self) {
            let ptr = self.0.load(Ordering::Relaxed);
            if !ptr.is_null() {
                // SAFETY: published by `get_or_init` from `Box::into_raw`;
                // `&mut self` means no reference from `get` is alive.
                drop(unsafe { Box::from_raw(ptr) });
            }
        }
    }
}
