//! The objects `borrow()`/`aborrow()` blocks hold, so that a block whose
//! object was discarded (`pool.discard(obj)`, from any thread) ends
//! without giving it back again: the core's `lent` protocol (its invariants
//! are there), keyed by the address of the pool's shared state (which the
//! pool object and its `Borrow`s hold, `Lend`) and that of the object,
//! which the block holds while its entry is listed.

use pyo3::prelude::*;

use super::Detached;
use crate::lent::{self, Key};

fn key(pool: usize, obj: &Bound<'_, PyAny>) -> Key {
    Key {
        pool,
        obj: obj.as_ptr() as usize,
    }
}

/// A block running on this thread got `obj` from `pool`: its entry's id,
/// for [`end_lent`]. For `Borrow.__enter__`, its only caller, into which
/// it is inlined (see `lent::note_lent`).
#[inline(always)]
pub fn note_lent(pool: usize, obj: &Bound<'_, PyAny>) -> u64 {
    lent::note_lent(key(pool, obj))
}

/// [`note_lent`] for an `aborrow()` block (`AsyncBorrow`).
pub fn note_lent_outlined(pool: usize, obj: &Bound<'_, PyAny>) -> u64 {
    lent::note_lent_outlined(key(pool, obj))
}

/// The end of a block that held `obj` from `pool` (its entry `id`, from
/// [`note_lent`] on any thread): `None` if it was
/// discarded meanwhile (by any thread: the block does nothing more), else
/// what `give_back` (the put, or the block's own discard) returns, run
/// while a discard from another thread is refused.
#[inline]
pub fn end_lent<R>(
    pool: usize,
    obj: &Bound<'_, PyAny>,
    id: u64,
    give_back: impl FnOnce() -> R,
) -> Option<R> {
    lent::end_lent(key(pool, obj), id, give_back)
}

/// `pool` is about to discard `obj`: marks the blocks that hold it, on
/// every thread, so that their exits do nothing more. `Marks::undo` if the
/// discard is refused; `Err` (refused, nothing marked) if a block is giving
/// it back now on this thread, or still after a wait (detached) for one on
/// another.
#[cold]
pub fn mark_discarded(pool: usize, obj: &Bound<'_, PyAny>) -> Result<lent::Marks, lent::Refused> {
    lent::mark_discarded(key(pool, obj), &Detached(obj.py()))
}
