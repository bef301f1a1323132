//! Taking objects back: reset (when due on put), then to the longest
//! waiter, else idle in a shard, else destroyed as surplus. Or, with
//! `discard`, destroyed at once.
//!
//! Invariants:
//! - A checked pool takes back only what it handed out, once: the ledger's
//!   check-in is the move back (a foreign or repeated return changes
//!   nothing).
//! - `discard` checks the object in as `put` does, then destroys it and
//!   releases its charge through the same path as every other destroy
//!   (`scrap`, then `Limit::release`, which serves a waiter: a slot for a new
//!   object): it adds no new interleaving with waiters.
//! - A returned object goes to a waiter before it goes idle (see `limit`:
//!   whoever frees capacity then looks for waiters, behind a fence).
//! - Nothing is stored in a closed pool for good: a put that shelves an
//!   object then re-reads `closed` behind a `SeqCst` fence that pairs with
//!   one in `close`, so either `close` drains the object or the put sees the
//!   pool closed and destroys it.

use super::{Event, Filed, Hooks, Idle, NotOut, Pool, PutError, ResetOn, CLOSED};
use crate::counters::Tally;
use crate::limit::Offered;
use crate::sync::atomic::{fence, Ordering};

impl<T: Send> Pool<T> {
    /// Gives an object back. A checked pool refuses objects it has not handed
    /// out; a full pool destroys it; a closed pool destroys it.
    pub fn put<H: Hooks<T>>(&self, hooks: &mut H, item: T) -> Result<(), PutError<H::Error>> {
        self.put_inner(hooks, item, true)
    }

    /// [`Pool::put`] of an object the caller goes on holding a reference
    /// to (a Python argument, borrowed for the call): a checked pool ends
    /// the ledger's record and keeps the reference the ledger held, so the
    /// caller's is neither taken nor given up; an unchecked pool keeps a
    /// [`Hooks::duplicate`]. Otherwise exactly [`Pool::put`]. Saves a
    /// checked put the duplicate and its drop (about 12 instructions for a
    /// Python object, whose reference counting is a call each in the
    /// stable ABI).
    #[inline(always)]
    pub fn put_ref<H: Hooks<T>>(&self, hooks: &mut H, item: &T) -> Result<(), PutError<H::Error>> {
        let item = match &self.ledger {
            None => hooks.duplicate(item),
            Some(ledger) => match ledger.check_in(hooks.identity(item)) {
                Some(own) => own,
                None => return Err(PutError::NotOut { index: 0 }),
            },
        };
        self.take_in(hooks, Event::Put, item, true)
            .map_err(PutError::Hook)
    }

    /// Takes back an object that must not be reused: counted as
    /// `discarded`, destroyed (the `destroy` hook runs, its errors are the
    /// hooks' to report, as for any destroy), and its `max_size` slot freed
    /// at once for the longest waiter. A checked pool refuses an object it
    /// has not handed out, changing nothing; an unchecked one cannot tell
    /// and destroys whatever it is given. Off the hot path: `put` is not
    /// touched.
    #[cold]
    pub fn discard<H: Hooks<T>>(&self, hooks: &mut H, item: T) -> Result<(), NotOut> {
        let item = match &self.ledger {
            None => item,
            Some(ledger) => ledger.check_in(hooks.identity(&item)).ok_or(NotOut)?,
        };
        let (_, counters) = self.shards.local();
        // Counted before the charge is released: a get that takes the slot
        // counts after it, so a merge that sees that get sees this discard.
        counters.bump(Event::Discarded);
        self.scrap(hooks, counters, item);
        self.refill_quietly(hooks);
        Ok(())
    }

    #[inline(always)]
    pub(super) fn put_inner<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        item: T,
        reset: bool,
    ) -> Result<(), PutError<H::Error>> {
        let item = match &self.ledger {
            None => item,
            Some(ledger) => match ledger.check_in(hooks.identity(&item)) {
                // Keep the pool's reference; the holder's one is dropped.
                Some(own) => own,
                None => return Err(PutError::NotOut { index: 0 }),
            },
        };
        self.take_in(hooks, Event::Put, item, reset)
            .map_err(PutError::Hook)
    }

    /// Takes in an object that another pool of a family handed out (see
    /// [`crate::tiered::Tiered`]): counted as created here, since it joins
    /// this pool's objects, then reset and kept as a returned object is (or
    /// destroyed when the pool is full or closed). Only for the unbounded,
    /// unchecked class pools of a `Tiered`: a bound or a ledger would not
    /// know the object.
    pub(crate) fn adopt<H: Hooks<T>>(&self, hooks: &mut H, item: T) -> Result<(), H::Error> {
        debug_assert!(self.limit.is_none() && self.ledger.is_none());
        self.take_in(hooks, Event::Created, item, true)
    }

    /// An object this pool handed out came back and leaves the pool without
    /// being stored (the caller destroys it, or another pool of the family
    /// adopts it): counts its return (`Put`) and its departure (`Destroyed`,
    /// and `Dropped` when `dropped`), so this pool's books still balance.
    pub(crate) fn count_departure(&self, dropped: bool) {
        let (_, counters) = self.shards.local();
        counters.bump(Event::Put);
        if dropped {
            counters.bump(Event::Dropped);
        }
        counters.bump(Event::Destroyed);
        self.release_charge();
    }

    /// Counts `event` (the object's arrival), then keeps the object: reset
    /// (if `reset` and due on put) and stored, or destroyed if the pool is
    /// closed. Inlined into each caller: `put`'s hot path stays one function.
    #[inline(always)]
    pub(super) fn take_in<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        event: Event,
        item: T,
        reset: bool,
    ) -> Result<(), H::Error> {
        let (home, counters) = self.shards.local();
        counters.bump(event);
        // One load for both: closed, or objects with a lifetime.
        let flags = self.flags.load(Ordering::Acquire);
        if flags != 0 {
            if flags & CLOSED != 0 {
                self.scrap(hooks, counters, item);
                self.destroy_idle(hooks, counters);
                return Ok(());
            }
            if self.outlived(hooks, &item) {
                self.retire(hooks, counters, item);
                return Ok(());
            }
        }
        let item = if reset {
            self.reset_returned(hooks, counters, item)?
        } else {
            item
        };
        self.store(hooks, home, item);
        Ok(())
    }

    /// Resets a returned object when resets are due on put. On failure the
    /// object is destroyed (counted) and the error returned. Always
    /// inlined: out of line (as LLVM chose once the binding's `reset`
    /// inlined its common case), the object went in and out through memory,
    /// about 30 instructions a put.
    #[inline(always)]
    pub(super) fn reset_returned<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        item: T,
    ) -> Result<T, H::Error> {
        if self.reset_on == ResetOn::Put {
            if let Err(e) = hooks.reset(&item) {
                return Err(self.reset_failed(hooks, counters, item, e));
            }
        }
        Ok(item)
    }

    /// A returned object's reset failed: it is destroyed (counted) and
    /// `min_size` refilled; the error goes back to the caller.
    #[cold]
    #[inline(never)]
    fn reset_failed<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        item: T,
        e: H::Error,
    ) -> H::Error {
        self.reject(hooks, counters, item, Event::ResetError, false);
        self.refill_quietly(hooks);
        e
    }

    /// Destroys an object that failed a check or a reset, counting why. Its
    /// charge is released, or kept for the caller with `keep_charge`. Cold:
    /// out of the way of the hot path it branches off. The caller refills
    /// to `min_size` (once a call: a get that rejects many idle objects
    /// must not make and reject a replacement for each).
    #[cold]
    pub(super) fn reject<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        item: T,
        why: Event,
        keep_charge: bool,
    ) {
        counters.bump(why);
        self.destroy(hooks, counters, item);
        if !keep_charge {
            self.release_charge();
        }
    }

    /// Files a clean object: to the longest waiter, else idle, else destroys
    /// it as surplus.
    #[inline(always)]
    pub(super) fn store<H: Hooks<T>>(&self, hooks: &mut H, home: usize, item: T) {
        let since = self.stamp();
        self.store_idle(hooks, home, Idle { item, since });
    }

    /// Returns whether the object was kept (stored, or handed to a waiter).
    #[inline(always)]
    pub(super) fn store_idle<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        home: usize,
        idle: Idle<T>,
    ) -> bool {
        match self.file(hooks, home, idle) {
            Filed::Shelved => {
                if self.limit.is_none() {
                    // `after_shelving` of an unbounded pool, inline: no
                    // waiter to serve, only the close check.
                    fence(Ordering::SeqCst);
                    if self.flags.load(Ordering::Relaxed) & CLOSED != 0 {
                        self.drain_closed(hooks, home);
                    }
                } else {
                    self.after_shelving(hooks, home);
                }
                true
            }
            Filed::Handed => true,
            Filed::Discarded => false,
        }
    }

    /// Hands a clean object to the longest waiter, else shelves it in the
    /// shards, else destroys it as surplus. After `Filed::Shelved` the caller
    /// owes one [`Pool::after_shelving`] (a batch owes one for all).
    #[inline(always)]
    pub(super) fn file<H: Hooks<T>>(&self, hooks: &mut H, home: usize, idle: Idle<T>) -> Filed {
        self.file_with(hooks, home, idle, |idle| self.shards.push(home, idle))
    }

    /// [`Pool::file`], shelving with `push` (a batch's walk of the shards,
    /// [`Shards::push_on`](crate::shards::Shards::push_on)).
    #[inline(always)]
    pub(super) fn file_with<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        home: usize,
        idle: Idle<T>,
        push: impl FnOnce(Idle<T>) -> Result<(), Idle<T>>,
    ) -> Filed {
        let idle = match &self.limit {
            None => idle,
            Some(limit) => match limit.offer(idle, &self.idles(home)) {
                Offered::Taken => return Filed::Handed,
                Offered::Kept(idle) => idle,
                Offered::Surplus(idle) => {
                    self.drop_surplus(hooks, home, idle.item);
                    return Filed::Discarded;
                }
            },
        };
        if !hooks.keep(&idle.item) || !self.charge_idle(home) {
            return self.hand_over_or_drop(hooks, home, idle.item, idle.since);
        }
        match push(idle) {
            Ok(()) => Filed::Shelved,
            Err(idle) => {
                self.uncharge_idle(1, home);
                self.hand_over_or_drop(hooks, home, idle.item, idle.since)
            }
        }
    }

    /// An object the pool cannot keep idle goes to a waiter if one can use
    /// it (in normal mode `offer` left it to the store, which cannot take
    /// it), else is destroyed as surplus.
    /// (`item` and `since` apart: passing the `Idle` costs every put
    /// instructions, as LLVM then spills it around the calls before.)
    #[cold]
    #[inline(never)]
    fn hand_over_or_drop<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        home: usize,
        item: T,
        since: u64,
    ) -> Filed {
        let idle = Idle { item, since };
        let idle = match &self.limit {
            None => idle,
            Some(limit) => match limit.hand_over(idle, &self.idles(home)) {
                Offered::Taken => return Filed::Handed,
                Offered::Kept(idle) | Offered::Surplus(idle) => idle,
            },
        };
        self.drop_surplus(hooks, home, idle.item);
        Filed::Discarded
    }

    /// Destroys a returned object that the pool has no room (or no budget)
    /// to keep.
    #[cold]
    pub(super) fn drop_surplus<H: Hooks<T>>(&self, hooks: &mut H, home: usize, item: T) {
        let counters = self.shards.counters(home);
        counters.bump(Event::Dropped);
        self.scrap(hooks, counters, item);
    }

    /// Runs after objects were shelved: serves waiters that queued
    /// meanwhile, and destroys the idle objects if the pool closed. Out of
    /// line: inlined into `store` with a bounded pool's `serve_from`, it
    /// cost every put about ten instructions more (cachegrind). A single
    /// put of an unbounded pool does the same inline (`store_idle`: the
    /// fence and the check, 11 instructions fewer per put).
    #[inline(never)]
    pub(super) fn after_shelving<H: Hooks<T>>(&self, hooks: &mut H, home: usize) {
        // Orders the pushes before the `closed` read: either `close` drains
        // these objects, or this put sees the pool closed.
        match &self.limit {
            Some(limit) => limit.serve_from(&self.idles(home)),
            None => fence(Ordering::SeqCst),
        }
        if self.flags.load(Ordering::Relaxed) & CLOSED != 0 {
            self.drain_closed(hooks, home);
        }
    }

    /// A put shelved objects and then found the pool closed: `close` may
    /// have drained before they arrived, so this thread destroys them.
    #[cold]
    #[inline(never)]
    fn drain_closed<H: Hooks<T>>(&self, hooks: &mut H, home: usize) {
        self.destroy_idle(hooks, self.shards.counters(home));
    }
}
