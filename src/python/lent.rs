//! The objects `borrow()`/`aborrow()` blocks hold, so that a block whose
//! object was discarded (`pool.discard(obj)`, from any thread) ends
//! without giving it back again.
//!
//! Invariants:
//! - Each thread lists the objects lent to the blocks running on it (pool
//!   and object addresses: both alive while listed, as the block holds
//!   them). An entry is added when a block gets its object and removed when
//!   the block exits, on the thread that runs it (an event loop's, for
//!   `aborrow()`), under the list's own lock: uncontended except while a
//!   `discard` looks through it.
//! - A `discard` marks every entry of its pool and object, on every
//!   thread's list, *before* the pool destroys the object, and unmarks them
//!   if the pool refuses (the object was not out). So an exit that starts
//!   after the discard began sees the mark and does nothing more, and an
//!   exit that removed its entry first gives the object back itself, and
//!   the discard is then refused (`ValueError`, as for any object given
//!   back already): the object is never both put back and destroyed.
//! - Locks are never nested, and no Python code runs under them. Every
//!   lock is only tried for a bounded time: after a `fork`, a lock that a
//!   vanished thread held stays held. A discard in the child then skips
//!   that list (its blocks cannot exit there anyway); a thread whose own
//!   list is stuck so starts a fresh one (the blocks it had entered before
//!   the fork then give their objects back as if not discarded); a thread
//!   that cannot register its list is only found by its own discards.
//! - A block entered and never exited (`__enter__` called by hand) leaves
//!   its entry behind: a few bytes, and never a wrong answer for the
//!   thread's own blocks, since the newest entry is found first.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};

use pyo3::prelude::*;

/// An object lent to a block.
struct Lent {
    pool: usize,
    obj: usize,
    discarded: bool,
}

type List = Mutex<Vec<Lent>>;

/// Every thread's list, for a discard from another thread.
static THREADS: Mutex<Vec<Weak<List>>> = Mutex::new(Vec::new());

thread_local! {
    static LENT: RefCell<Option<Arc<List>>> = const { RefCell::new(None) };
}

/// `f` of this thread's list (see the module's invariants for a list left
/// locked by a fork).
fn with_own<R>(f: impl FnOnce(&mut Vec<Lent>) -> R) -> R {
    LENT.with_borrow_mut(|slot| {
        let list = slot.get_or_insert_with(register);
        if let Some(mut entries) = try_lock(list) {
            return f(&mut entries);
        }
        let fresh = register();
        let result = f(&mut lock(&fresh));
        *slot = Some(fresh);
        result
    })
}

fn register() -> Arc<List> {
    let list = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut threads) = try_lock(&THREADS) {
        threads.retain(|t| t.strong_count() > 0);
        threads.push(Arc::downgrade(&list));
    }
    list
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The lock if it can be had within a bounded number of tries (see the
/// module's invariants: a lock held across a `fork` is never released).
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    for _ in 0..10_000 {
        match m.try_lock() {
            Ok(guard) => return Some(guard),
            Err(TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

fn key(pool: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>) -> (usize, usize) {
    (pool.as_ptr() as usize, obj.as_ptr() as usize)
}

/// A block running on this thread got `obj` from `pool`.
pub fn note_lent(pool: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>) {
    let (pool, obj) = key(pool, obj);
    with_own(|list| {
        list.push(Lent {
            pool,
            obj,
            discarded: false,
        });
    });
}

/// The block that held `obj` from `pool` exits: forgets it, and returns
/// whether it was discarded meanwhile (by any thread).
pub fn note_exit(pool: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>) -> bool {
    let (pool, obj) = key(pool, obj);
    with_own(
        |list| match list.iter().rposition(|l| l.pool == pool && l.obj == obj) {
            Some(i) => list.remove(i).discarded,
            None => false,
        },
    )
}

/// The lists where [`mark_discarded`] marked entries.
pub struct Marks(Vec<Arc<List>>);

/// `pool` is about to discard `obj`: marks the blocks that hold it, on
/// every thread, so that their exits do nothing more. [`Marks::undo`] if
/// the discard is refused.
#[cold]
pub fn mark_discarded(pool: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>) -> Marks {
    let (pool, obj) = key(pool, obj);
    let own = LENT.with_borrow_mut(|slot| slot.get_or_insert_with(register).clone());
    let others: Vec<Arc<List>> = try_lock(&THREADS)
        .map(|threads| threads.iter().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    let mut marked = Vec::new();
    for list in
        std::iter::once(own.clone()).chain(others.into_iter().filter(|l| !Arc::ptr_eq(l, &own)))
    {
        let Some(mut entries) = try_lock(&list) else {
            continue;
        };
        let mut any = false;
        for entry in entries
            .iter_mut()
            .filter(|l| l.pool == pool && l.obj == obj && !l.discarded)
        {
            entry.discarded = true;
            any = true;
        }
        drop(entries);
        if any {
            marked.push(list);
        }
    }
    Marks(marked)
}

impl Marks {
    /// The discard was refused: the blocks still hold the object.
    #[cold]
    pub fn undo(self, pool: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>) {
        let (pool, obj) = key(pool, obj);
        for list in self.0 {
            if let Some(mut entries) = try_lock(&list) {
                for entry in entries
                    .iter_mut()
                    .filter(|l| l.pool == pool && l.obj == obj)
                {
                    entry.discarded = false;
                }
            }
        }
    }
}
