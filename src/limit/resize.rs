//! Changing the bound of a live [`Limit`].
//!
//! Invariants (with those of `limit`):
//! - The bound changes only under the queue lock, so `serve` sees one bound
//!   for a whole walk, and a resize is atomic for the waiters.
//! - Growing serves the waiters at once: the walk runs with the new bound
//!   before the lock is released (their notifications run after).
//! - Shrinking below the units charged sets the `SURPLUS` bit of `waiting`
//!   (under the lock): every `offer` and `release` then takes its slow path,
//!   where a returned item is refused as surplus (the caller destroys it)
//!   while more units are charged than the bound allows; `serve` clears
//!   the bit (under the lock) once the bound holds. No unit is created
//!   meanwhile: `try_reserve` refuses while `alive >= max`. The caller
//!   destroys the surplus idle items itself (see `Pool::resize`). An item
//!   stored by a put that read `waiting` just before the bit was set, and
//!   shelved just after the caller looked at the idle items, stays idle
//!   while the bound is exceeded; it is shed when it next comes back (the
//!   put's fast path stays one load; loom
//!   `sizing::shrinking_while_an_object_comes_back_keeps_the_bound`).
//! - A resize that would strand a caller is refused, changing nothing: a
//!   queued batch that needs more units than the new bound.

use super::{Limit, Store, SURPLUS};
use crate::sync::atomic::Ordering;

/// Why [`Limit::resize`] refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ResizeError {
    /// The bound must be at least 1.
    Zero,
    /// A queued batch needs more units than the new bound: it could never
    /// be served.
    BatchWaiting {
        /// The units the largest queued batch needs.
        need: usize,
    },
    /// The limit is closed.
    Closed,
}

impl<I> Limit<I> {
    /// Sets the bound to `max`. Growing serves the waiters at once;
    /// shrinking below the units charged makes returned items surplus until
    /// the bound holds (see the module's invariants).
    pub fn resize(&self, max: usize, store: &dyn Store<I>) -> Result<(), ResizeError> {
        if max == 0 {
            return Err(ResizeError::Zero);
        }
        let queue = self.lock_queue();
        if queue.closed {
            return Err(ResizeError::Closed);
        }
        if let Some(need) = queue
            .waiters
            .iter()
            .map(|w| w.need)
            .filter(|&n| n > max)
            .max()
        {
            return Err(ResizeError::BatchWaiting { need });
        }
        self.max.store(max, Ordering::SeqCst);
        if self.is_over() {
            self.waiting.fetch_or(SURPLUS, Ordering::SeqCst);
        } else {
            self.waiting.fetch_and(!SURPLUS, Ordering::SeqCst);
        }
        // Growing frees units: the waiters take them now.
        let (_, woken) = self.serve_and_unlock(queue, None, store);
        woken.iter().for_each(|w| w.wake());
        Ok(())
    }
}
