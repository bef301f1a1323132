//! The caller's policy ([`Hooks`]): how objects are made, cleaned, checked
//! and disposed of, and how a thread blocks. The pool decides *when* each
//! hook runs, and promises it never runs one while it holds a lock of its
//! own (hooks are user code: they may re-enter the pool, block, or fail).

use std::time::Instant;

use crate::limit::Park;

/// The caller's policy: how objects are made, cleaned, checked and disposed
/// of, and how a thread blocks. The pool decides *when* each runs.
pub trait Hooks<T> {
    /// What a failing hook reports.
    type Error;
    /// Makes a new object.
    fn create(&mut self) -> Result<T, Self::Error>;
    /// Clears an object's state. By default, nothing to clear.
    fn reset(&mut self, _item: &T) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Whether an idle object may be handed out again. By default, always.
    fn validate(&mut self, _item: &T) -> Result<bool, Self::Error> {
        Ok(true)
    }
    /// Disposes of an object the pool no longer keeps. Cannot fail: report
    /// errors out of band. By default, drops it.
    fn destroy(&mut self, item: T) {
        drop(item);
    }
    /// Whether a returned (already reset) object is worth keeping idle; a
    /// `false` destroys it, counted as dropped. For policies that bound what
    /// they keep by more than count, such as a buffer's capacity.
    fn keep(&mut self, _item: &T) -> bool {
        true
    }
    /// Reports an error the pool swallowed because no caller was there to
    /// take it: a factory that failed while the pool refilled to its
    /// `min_size`. By default, dropped.
    fn report(&mut self, _error: Self::Error) {}
    /// Asked by a get after it destroyed an object it rejected (and refilled
    /// to `min_size`), before it goes on to another: an `Err` ends the get
    /// with it, holding nothing. For hooks whose errors in `destroy` or
    /// `report` are swallowed but must still reach the caller (an
    /// interrupt): ended there, the get hands out no object that the
    /// interrupt would then strand. Off the hot path (only after a reject).
    /// By default, `Ok`.
    fn check_interrupts(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// A stable identity of the object (its address), for checked pools.
    fn identity(&self, item: &T) -> usize;
    /// A second reference to the same object, for checked pools: one goes to
    /// the holder, the pool keeps the other in its ledger. Also the
    /// reference an unchecked pool keeps of an object given back by
    /// reference ([`Pool::put_ref`](super::Pool::put_ref)).
    fn duplicate(&mut self, item: &T) -> T;
    /// Records `item` as handed out in a record the caller keeps across
    /// several pools (the ledger of a [`crate::tiered::Tiered`], whose class
    /// pools are unchecked), just before the pool counts it as handed out.
    /// `None` refuses it as out already: the pool drops this reference and
    /// fails the get with [`GetError::AlreadyOut`](super::GetError::AlreadyOut), as a checked pool does.
    /// Pools with a ledger of their own expect the default, which records
    /// nothing.
    #[inline(always)]
    fn record_out(&mut self, item: T) -> Option<T> {
        Some(item)
    }
    /// Blocks on `waiter` until it is served (`Ok(true)`) or `deadline`
    /// passes (`Ok(false)`). Override to block without holding a lock the
    /// caller holds, or to wake up for interrupts (an `Err` abandons the
    /// wait; the pool takes back whatever it was given meanwhile).
    fn park(&mut self, waiter: &dyn Park, deadline: Option<Instant>) -> Result<bool, Self::Error> {
        Ok(waiter.park(deadline))
    }
}
