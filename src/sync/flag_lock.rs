//! [`FlagLock`]: a lock of one flag around a value, for the short critical
//! sections of the ledger's slots (`ledger`), of each thread's list of
//! lent objects (`lent`) and of a buffer's lease (`buffer_lease`; its
//! longest is the copy of one write or one `getvalue()`, and only another
//! thread using the same buffer at that moment waits for it).
//!
//! Invariants:
//! - It excludes: the flag is taken by one compare-and-swap (`Acquire`)
//!   and given back by one store (`Release`) by the thread that took it,
//!   so one thread at a time reaches the value, after everything the
//!   previous holder did to it. The value is reached only inside a
//!   closure run by the holder (`with` and the `try_with`s), never through
//!   a guard that could outlive it.
//! - It is let go of after the closure, even if the closure unwinds (a
//!   guard's `Drop` stores the flag), so a panic never leaves it held; and
//!   it has no poisoning to check: the callers' sections keep their
//!   invariants at every step they could unwind from, or have none to
//!   keep.
//! - Held only across its users' own steps (no caller code, nothing that
//!   blocks), so a waiter spins, then yields ([`FlagLock::with`], with
//!   crossbeam's `Backoff`), rather than sleeping: a holder takes a few
//!   dozen instructions. Not re-entrant: a holder that asked for it again
//!   with `with` would wait for itself.
//! - A flag held by a thread that vanished at a `fork` stays held in the
//!   child for ever (no thread there will let it go). A user that must not
//!   hang there tries it for a bounded time only
//!   ([`FlagLock::try_with_bounded`], [`TRIES`] tries, yielding between),
//!   and gives up: `lent`'s invariants say what it does then.
//!
//! Why a flag, not a `Mutex`: taking it is one compare-and-swap and letting
//! go one store; a `Mutex` cost a checked pool's get+put about 20
//! instructions more (callgrind), and each of a `borrow()` block's two
//! steps twice the flag's, with its poisoning checks at each lock and
//! unlock and its check for sleepers at each unlock.
//!
//! Under loom it is loom's `Mutex`, the same exclusion, which the models
//! explore (loom cannot explore a spinning thread's unbounded retries); and
//! there the bounded try waits for the lock instead: loom's scheduler may
//! run a spinning thread for ever while another holds the lock, which a
//! bound would take for a lock left held by a fork (which loom does not
//! model; the unit tests hold a lock on purpose to check what the bound
//! does). Under `--cfg shardpool_helgrind` the flag is
//! [`crate::sync::atomic`]'s annotated `AtomicBool`: its `Acquire`
//! compare-and-swap receives on the flag, its `Release` store sends, so
//! Helgrind sees the exclusion with no annotation here.

#[cfg(not(loom))]
use super::atomic::{
    AtomicBool,
    Ordering::{Acquire, Relaxed, Release},
};
#[cfg(loom)]
use std::sync::{PoisonError, TryLockError};

#[cfg(loom)]
use super::Mutex;

/// How many times [`FlagLock::try_with_bounded`] tries the flag before it
/// takes it for left held by a fork (see the module's invariants); fewer in
/// the unit tests, which hold one on purpose. (A holder takes microseconds;
/// 10,000 tries, each after a yield, are many times that.)
#[cfg(not(loom))]
const TRIES: usize = if cfg!(test) { 100 } else { 10_000 };

/// A value behind one flag (see the module's invariants).
#[cfg(not(loom))]
pub(crate) struct FlagLock<T> {
    held: AtomicBool,
    value: std::cell::UnsafeCell<T>,
}

// SAFETY: the value is reached only by the holder of the flag (see
// `FlagLock::held_with`), one thread at a time, so sharing the lock shares
// nothing but the value's ownership, moved between threads: `T: Send`
// suffices.
#[cfg(not(loom))]
unsafe impl<T: Send> Sync for FlagLock<T> {}

#[cfg(not(loom))]
impl<T> FlagLock<T> {
    pub(crate) fn new(value: T) -> Self {
        FlagLock {
            held: AtomicBool::new(false),
            value: std::cell::UnsafeCell::new(value),
        }
    }

    /// Takes the flag if it is free.
    #[inline(always)]
    fn take(&self) -> bool {
        self.held
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_ok()
    }

    /// `f` of the value under the lock, waiting for it if it is held.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        if !self.take() {
            self.wait();
        }
        self.held_with(f)
    }

    /// `f` of the value under the lock; `None` if the lock is held.
    #[inline]
    pub(crate) fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.take().then(|| self.held_with(f))
    }

    /// `f` of the value under the lock, if it can be had within [`TRIES`]
    /// tries (a yield between two); `None` if not: taken for left held by
    /// a thread that vanished at a fork (see the module's invariants).
    #[inline]
    pub(crate) fn try_with_bounded<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if !self.take() && !self.take_within_tries() {
            return None;
        }
        Some(self.held_with(f))
    }

    /// Takes the flag once the holder lets go.
    #[cold]
    #[inline(never)]
    fn wait(&self) {
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            while self.held.load(Relaxed) {
                backoff.snooze();
            }
            if self.take() {
                return;
            }
        }
    }

    /// The rest of [`FlagLock::try_with_bounded`]'s tries, after its first
    /// failed: whether one took the flag.
    #[cold]
    #[inline(never)]
    fn take_within_tries(&self) -> bool {
        for _ in 1..TRIES {
            std::thread::yield_now();
            if self.take() {
                return true;
            }
        }
        false
    }

    /// `f` of the value, by the thread that has just taken the flag, which
    /// it lets go after `f` (even if `f` unwinds).
    #[inline(always)]
    fn held_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        struct Held<'a>(&'a AtomicBool);
        impl Drop for Held<'_> {
            #[inline(always)]
            fn drop(&mut self) {
                self.0.store(false, Release);
            }
        }
        let _held = Held(&self.held);
        // SAFETY: this thread holds the flag (taken with `Acquire` by the
        // caller, given back with `Release` when `_held` drops, after `f`),
        // so no other reference to the value exists meanwhile.
        f(unsafe { &mut *self.value.get() })
    }
}

/// Under loom: loom's `Mutex` (see the module's last paragraph).
#[cfg(loom)]
pub(crate) struct FlagLock<T>(Mutex<T>);

#[cfg(loom)]
impl<T> FlagLock<T> {
    pub(crate) fn new(value: T) -> Self {
        FlagLock(Mutex::new(value))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut value = match self.0.try_lock() {
            Ok(value) => value,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(f(&mut value))
    }

    /// Waits for the lock: see the module's last paragraph.
    pub(crate) fn try_with_bounded<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        Some(self.with(f))
    }
}

impl<T: Default> Default for FlagLock<T> {
    fn default() -> Self {
        FlagLock::new(T::default())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;

    use super::FlagLock;

    /// Four threads adding under the lock through each way of taking it.
    #[test]
    fn it_excludes_whichever_way_it_is_taken() {
        let lock = Arc::new(FlagLock::new(0_u64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        match t % 3 {
                            0 => lock.with(|n| *n += 1),
                            1 => while lock.try_with(|n| *n += 1).is_none() {},
                            // Tried until had: the bound is for a fork.
                            _ => while lock.try_with_bounded(|n| *n += 1).is_none() {},
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(lock.with(|n| *n), 40_000);
    }

    #[test]
    fn a_held_lock_is_not_had_by_a_try_even_a_bounded_one() {
        let lock = Arc::new(FlagLock::new(1_u8));
        let (holding, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let holder = {
            let (lock, holding, release) = (
                Arc::clone(&lock),
                Arc::clone(&holding),
                Arc::clone(&release),
            );
            std::thread::spawn(move || {
                lock.with(|v| {
                    *v = 2;
                    holding.store(true, SeqCst);
                    while !release.load(SeqCst) {
                        std::thread::yield_now();
                    }
                })
            })
        };
        while !holding.load(SeqCst) {
            std::thread::yield_now();
        }
        // Held on another thread: refused, the bounded try after its tries
        // (as for a lock a fork left held).
        assert_eq!(lock.try_with(|v| *v), None);
        assert_eq!(lock.try_with_bounded(|v| *v), None);
        release.store(true, SeqCst);
        holder.join().unwrap();
        assert_eq!(lock.try_with_bounded(|v| *v), Some(2));
        // Held by this very thread (as by one that vanished at a fork): the
        // bounded try gives up rather than wait for itself.
        lock.with(|_| {
            assert_eq!(lock.try_with_bounded(|v| *v), None);
        });
        assert_eq!(lock.try_with(|v| *v), Some(2));
    }

    /// A panic under the lock lets go of it (the guard's `Drop` on unwind),
    /// whichever way it was taken, so the next user does not spin for ever.
    #[test]
    fn a_panic_under_the_lock_lets_go_of_it() {
        let lock = FlagLock::<u64>::default();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lock.with(|v| {
                *v = 1;
                panic!("under the lock");
            })
        }));
        assert!(unwound.is_err());
        assert_eq!(lock.try_with(|v| *v), Some(1));
        for bounded in [false, true] {
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let panics = |v: &mut u64| {
                    *v += 1;
                    if *v > 0 {
                        panic!("under the lock");
                    }
                };
                if bounded {
                    lock.try_with_bounded(panics)
                } else {
                    lock.try_with(panics)
                }
            }));
            assert!(unwound.is_err());
        }
        assert_eq!(lock.with(|v| *v), 3);
    }
}
