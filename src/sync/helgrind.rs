//! The primitives of [`crate::sync`] for `RUSTFLAGS="--cfg
//! shardpool_helgrind"` builds (`scripts/valgrind`): std's and crossbeam's,
//! wrapped so that valgrind's Helgrind sees the happens-before edges they
//! create.
//!
//! Helgrind knows pthread locks, but std's locks are futex-based and the
//! protocols here are atomics, so on its own it sees no synchronisation at
//! all and reports every shared access. Each wrapper tells it, through
//! Helgrind's client requests (`ANNOTATE_HAPPENS_BEFORE`/`_AFTER` in
//! `helgrind.h`), what the real primitive guarantees:
//! - an atomic operation with release semantics "sends" on the atomic's
//!   address before it, one with acquire semantics "receives" on it after;
//!   fences send and receive on one global tag;
//! - unlocking a mutex (dropping the guard, or waiting on a condition
//!   variable) sends on the mutex, locking it receives;
//! - a queue push sends on the queue, a pop that gets an item receives;
//! - a `OnceLock` sends once its value is built, `get` receives.
//!
//! A receive joins everything sent on the tag so far, so this can only add
//! edges, never remove them: Helgrind may miss a race (an acquire that read
//! an older value still gets the newest sender's edge), but what it reports
//! is a race under the orderings the code declares. Outside valgrind a
//! client request is a few no-op instructions. x86-64 only.

#![allow(dead_code)] // A general wrapper: not every protocol uses every method.

use std::fmt;
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult, WaitTimeoutResult};
use std::time::Duration;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("--cfg shardpool_helgrind needs x86-64 (valgrind client requests)");

/// `_VG_USERREQ__HG_USERSO_SEND_PRE` (helgrind.h, valgrind 3.19).
const SEND_PRE: usize = 0x4847_0121;
/// `_VG_USERREQ__HG_USERSO_RECV_POST`.
const RECV_POST: usize = 0x4847_0122;

/// Runs valgrind client request `code` with one argument.
#[inline(always)]
fn client_request(code: usize, arg: usize) {
    let args: [usize; 6] = [code, arg, 0, 0, 0, 0];
    // SAFETY: valgrind.h's client-request sequence for amd64. The four
    // rotations of rdi add up to 128 bits and leave it as it was, and
    // `xchg rbx, rbx` changes nothing, so natively this does nothing
    // (rdx keeps its default, 0). Under valgrind it is a request whose
    // arguments valgrind reads from `args` (rax) and whose result it writes
    // to rdx; `args` lives until the asm is done.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") 0usize => _,
            out("rdi") _,
            options(nostack),
        );
    }
}

/// Everything this thread did so far happens before whoever later calls
/// [`happens_after`] on `tag`.
#[inline(always)]
fn happens_before<T: ?Sized>(tag: *const T) {
    client_request(SEND_PRE, tag as *const u8 as usize);
}

#[inline(always)]
fn happens_after<T: ?Sized>(tag: *const T) {
    client_request(RECV_POST, tag as *const u8 as usize);
}

pub mod atomic {
    use super::{happens_after, happens_before};
    pub use std::sync::atomic::Ordering;
    use Ordering::*;

    fn releases(order: Ordering) -> bool {
        matches!(order, Release | AcqRel | SeqCst)
    }

    fn acquires(order: Ordering) -> bool {
        matches!(order, Acquire | AcqRel | SeqCst)
    }

    /// The tag that every fence sends and receives on.
    static FENCES: u8 = 0;

    pub fn fence(order: Ordering) {
        if acquires(order) {
            happens_after(&FENCES);
        }
        std::sync::atomic::fence(order);
        if releases(order) {
            happens_before(&FENCES);
        }
    }

    macro_rules! annotated {
        ($name:ident $(<$t:ident>)?, $int:ty) => {
            #[derive(Debug, Default)]
            #[repr(transparent)]
            pub struct $name$(<$t>)?(std::sync::atomic::$name$(<$t>)?);

            impl$(<$t>)? $name$(<$t>)? {
                pub const fn new(v: $int) -> Self {
                    $name(std::sync::atomic::$name::new(v))
                }

                fn before(&self, order: Ordering) {
                    if releases(order) {
                        happens_before(self);
                    }
                }

                fn after(&self, order: Ordering) {
                    if acquires(order) {
                        happens_after(self);
                    }
                }

                pub fn get_mut(&mut self) -> &mut $int {
                    self.0.get_mut()
                }

                pub fn load(&self, order: Ordering) -> $int {
                    let v = self.0.load(order);
                    self.after(order);
                    v
                }

                pub fn store(&self, v: $int, order: Ordering) {
                    self.before(order);
                    self.0.store(v, order);
                }

                pub fn swap(&self, v: $int, order: Ordering) -> $int {
                    self.before(order);
                    let r = self.0.swap(v, order);
                    self.after(order);
                    r
                }

                pub fn compare_exchange(
                    &self,
                    current: $int,
                    new: $int,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$int, $int> {
                    self.before(success);
                    let r = self.0.compare_exchange(current, new, success, failure);
                    self.after(if r.is_ok() { success } else { failure });
                    r
                }

                pub fn fetch_update<F>(
                    &self,
                    set: Ordering,
                    fetch: Ordering,
                    f: F,
                ) -> Result<$int, $int>
                where
                    F: FnMut($int) -> Option<$int>,
                {
                    self.before(set);
                    let r = self.0.fetch_update(set, fetch, f);
                    self.after(if r.is_ok() { set } else { fetch });
                    r
                }
            }
        };
    }

    macro_rules! arithmetic {
        ($name:ident, $int:ty, $($op:ident),*) => {
            impl $name {
                $(
                    pub fn $op(&self, v: $int, order: Ordering) -> $int {
                        self.before(order);
                        let r = self.0.$op(v, order);
                        self.after(order);
                        r
                    }
                )*
            }
        };
    }

    annotated!(AtomicBool, bool);
    annotated!(AtomicU8, u8);
    annotated!(AtomicU32, u32);
    annotated!(AtomicUsize, usize);
    annotated!(AtomicU64, u64);
    arithmetic!(AtomicBool, bool, fetch_and, fetch_or);
    arithmetic!(AtomicU8, u8, fetch_add, fetch_sub, fetch_and, fetch_or);
    arithmetic!(AtomicU32, u32, fetch_add, fetch_sub, fetch_and, fetch_or);
    arithmetic!(
        AtomicUsize,
        usize,
        fetch_add,
        fetch_sub,
        fetch_and,
        fetch_or
    );
    arithmetic!(AtomicU64, u64, fetch_add, fetch_sub, fetch_max, fetch_and, fetch_or);

    annotated!(AtomicPtr<T>, *mut T);
}

pub struct Mutex<T>(std::sync::Mutex<T>);

/// A guard that tells Helgrind when the lock is let go. `inner` is only
/// `None` while a condition variable waits with the lock.
pub struct MutexGuard<'a, T> {
    inner: Option<std::sync::MutexGuard<'a, T>>,
    mutex: &'a Mutex<T>,
}

impl<T> Mutex<T> {
    pub fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }

    fn guard<'a>(&'a self, inner: std::sync::MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        happens_after(self);
        MutexGuard {
            inner: Some(inner),
            mutex: self,
        }
    }

    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        match self.0.lock() {
            Ok(inner) => Ok(self.guard(inner)),
            Err(poisoned) => Err(PoisonError::new(self.guard(poisoned.into_inner()))),
        }
    }

    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(inner) => Ok(self.guard(inner)),
            Err(TryLockError::Poisoned(p)) => Err(TryLockError::Poisoned(PoisonError::new(
                self.guard(p.into_inner()),
            ))),
            Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> std::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner.as_ref().expect("held")
    }
}

impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("held")
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            happens_before(self.mutex);
        }
        // `inner` unlocks when the fields drop, after this.
    }
}

#[derive(Debug, Default)]
pub struct Condvar(std::sync::Condvar);

impl Condvar {
    pub fn new() -> Self {
        Condvar(std::sync::Condvar::new())
    }

    /// Lets go of the lock (telling Helgrind), then waits with std's guard.
    fn release<'a, T>(
        mut guard: MutexGuard<'a, T>,
    ) -> (&'a Mutex<T>, std::sync::MutexGuard<'a, T>) {
        happens_before(guard.mutex);
        let inner = guard.inner.take().expect("held");
        (guard.mutex, inner)
    }

    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        let (mutex, inner) = Self::release(guard);
        match self.0.wait(inner) {
            Ok(inner) => Ok(mutex.guard(inner)),
            Err(p) => Err(PoisonError::new(mutex.guard(p.into_inner()))),
        }
    }

    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        dur: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let (mutex, inner) = Self::release(guard);
        match self.0.wait_timeout(inner, dur) {
            Ok((inner, t)) => Ok((mutex.guard(inner), t)),
            Err(p) => {
                let (inner, t) = p.into_inner();
                Err(PoisonError::new((mutex.guard(inner), t)))
            }
        }
    }

    pub fn notify_one(&self) {
        self.0.notify_one();
    }

    pub fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// crossbeam's `ArrayQueue`: a push happens before the pop that takes its
/// item.
pub struct ArrayQueue<T>(crossbeam_queue::ArrayQueue<T>);

impl<T> ArrayQueue<T> {
    pub fn new(cap: usize) -> Self {
        ArrayQueue(crossbeam_queue::ArrayQueue::new(cap))
    }

    pub fn push(&self, value: T) -> Result<(), T> {
        happens_before(self);
        self.0.push(value)
    }

    pub fn pop(&self) -> Option<T> {
        let value = self.0.pop();
        if value.is_some() {
            happens_after(self);
        }
        value
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

/// std's `OnceLock`, with the value boxed: building the value (in the box)
/// happens before any `get` that finds it. std's own write of the box
/// pointer is ordered by its atomics, which Helgrind cannot see; the
/// suppressions name that one.
pub struct OnceLock<T>(std::sync::OnceLock<Box<T>>);

impl<T> OnceLock<T> {
    pub const fn new() -> Self {
        OnceLock(std::sync::OnceLock::new())
    }

    pub fn get(&self) -> Option<&T> {
        let value = self.0.get()?;
        happens_after(self);
        Some(value)
    }

    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        if let Some(value) = self.get() {
            return value;
        }
        let value = self.0.get_or_init(|| {
            let value = Box::new(f());
            happens_before(self);
            value
        });
        // A thread that found it uninitialised and waited (on std's futex)
        // for another to build it reads what that one built: receive.
        happens_after(self);
        value
    }
}

impl<T> Default for OnceLock<T> {
    fn default() -> Self {
        OnceLock::new()
    }
}
