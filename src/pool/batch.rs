//! Batches: `get_many` (all or none) and `put_many`.
//!
//! Invariants:
//! - A batch of a bounded pool is served by the limit all at once (see
//!   `limit`): it holds nothing while it waits, so it never blocks a caller
//!   that must get a second object before it gives back its first.
//! - Once served, a batch never waits again: it vets its idle objects as a
//!   `get` does, and a rejected object's charge is kept for its
//!   replacement (the next idle object, else a new one).
//! - All or none: on failure everything the batch took goes back, counted
//!   neither as handed out nor as returned.
//! - `put_many` of a checked pool changes nothing unless every object was
//!   handed out (and appears once): it checks each in, and at a refusal
//!   checks those before it out again. A batch of puts counts its puts
//!   before any object is filed, and pays one fence for all (see `put`).
//! - A batch walks the shards once ([`Walk`](crate::shards::Walk)): a
//!   shard found empty (or full) is not tried again by the same batch.

use std::time::{Duration, Instant};

use super::{Event, Filed, GetError, Hooks, Idle, Pool, PutError, CLOSED};
use crate::limit::{Enqueued, Grant, Limit, Outcome, Turns, Units};
use crate::sync::atomic::Ordering;

impl<T: Send> Pool<T> {
    /// `n` objects, all or none. In a full bounded pool, waits (up to
    /// `timeout`) until `n` are free at once, holding none meanwhile (see
    /// `limit`). On failure nothing is handed out, and nothing counts as
    /// handed out or returned: what the call took goes back.
    pub fn get_many<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<T>, GetError<H::Error>> {
        if let Some(max_size) = self.max_size() {
            if n > max_size {
                return Err(GetError::TooMany {
                    requested: n,
                    max_size,
                });
            }
        }
        // The list of `n` must fit in memory: refused before anything is
        // taken, since a failed allocation later aborts the process. Small
        // batches need no check.
        if n > 1 << 16 && Vec::<T>::new().try_reserve_exact(n).is_err() {
            return Err(GetError::NoMemory { requested: n });
        }
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let home = self.shards.home();
        let units = match &self.limit {
            None => self.gather(home, n),
            Some(limit) => self.wait_batch(hooks, limit, home, n, timeout)?,
        };
        self.redeem_batch(hooks, home, units)
    }

    /// Up to `n` idle objects, and slots for the rest: a batch of an
    /// unbounded pool.
    pub(super) fn gather(&self, home: usize, n: usize) -> Units<Idle<T>> {
        let mut items = Vec::with_capacity(n.min(self.max_idle()));
        let mut walk = self.shards.walk(home);
        while items.len() < n {
            match self.take_idle_on(home, &mut walk) {
                Some(idle) => items.push(idle),
                None => break,
            }
        }
        let slots = n - items.len();
        Units { items, slots }
    }

    /// The `n` units of a batch of a bounded pool: at once if they are free
    /// together, else once the limit serves the batch, within `timeout`.
    /// The batch holds nothing while it waits; its thread keeps its turns
    /// (see [`Turns`]).
    pub(super) fn wait_batch<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        limit: &Limit<Idle<T>>,
        home: usize,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<Units<Idle<T>>, GetError<H::Error>> {
        let store = self.idles(home);
        let waiter = match limit.enqueue_batch(n, &store) {
            Enqueued::Ready(Grant::Batch(units)) => return Ok(units),
            Enqueued::Ready(_) => unreachable!("a batch is granted its units at once"),
            Enqueued::Closed => return Err(GetError::Closed),
            Enqueued::Busy => return Err(GetError::TooBusy),
            Enqueued::Queued(waiter) => waiter,
        };
        let counters = self.shards.counters(home);
        counters.bump(Event::Wait);
        self.note_in_use();
        let start = Instant::now();
        let deadline = timeout.and_then(|t| start.checked_add(t));
        let mut turns = Turns::new(start);
        loop {
            // loom has no clock: there a batch waits for its deadline only,
            // and the models drive the turns on the limit itself.
            let until = if cfg!(loom) {
                deadline
            } else {
                Some(deadline.map_or(turns.ends(), |d| d.min(turns.ends())))
            };
            if let Err(e) = hooks.park(&*waiter, until) {
                if let Some(Outcome::Granted(grant)) = limit.cancel(&waiter, &store) {
                    self.give_back(hooks, grant);
                }
                limit.note_cancelled();
                return Err(GetError::Hook(e));
            }
            match waiter.take() {
                Some(Outcome::Granted(Grant::Batch(units))) => return Ok(units),
                Some(Outcome::Granted(_)) => unreachable!("a batch is granted its units at once"),
                Some(Outcome::Closed) => return Err(GetError::Closed),
                None => {}
            }
            let now = Instant::now();
            if cfg!(loom) || deadline.is_some_and(|d| now >= d) {
                match limit.cancel(&waiter, &store) {
                    // Served as the deadline passed: take it.
                    Some(Outcome::Granted(Grant::Batch(units))) if units.len() == n => {
                        return Ok(units)
                    }
                    // What was set aside for it goes back.
                    Some(Outcome::Granted(grant)) => self.give_back(hooks, grant),
                    Some(Outcome::Closed) => return Err(GetError::Closed),
                    None => {}
                }
                counters.bump(Event::Timeout);
                return Err(GetError::Timeout);
            }
            if now >= turns.ends() {
                if let Some(yielded) = turns.next(limit, &waiter, &store, now) {
                    self.give_back(hooks, Grant::Batch(yielded));
                }
            }
        }
    }

    /// Turns a batch's units into objects to hand out: each idle one checked
    /// as `get` checks it (a rejected one is replaced by the next idle one,
    /// or by a new one made in its slot: the batch never waits again), a new
    /// one for each slot; then all are counted as handed out at once. On
    /// failure everything goes back, counted neither as handed out nor as
    /// returned.
    pub(super) fn redeem_batch<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        home: usize,
        units: Units<Idle<T>>,
    ) -> Result<Vec<T>, GetError<H::Error>> {
        let counters = self.shards.counters(home);
        // Grown as objects come: an absurd `n` (unbounded pool) must fail
        // as the objects run out, not abort on one huge allocation.
        let mut out = Vec::with_capacity(units.len().min(self.max_idle().max(64)));
        // The idle objects still to vet; a rejected one's replacement is
        // vetted next (`replacement`).
        let mut pending = units.items.into_iter();
        let mut replacement = None;
        let mut slots = units.slots;
        let (mut hits, mut misses, mut rejects) = (0, 0, 0);
        let mut failure = None;
        while let Some(idle) = replacement.take().or_else(|| pending.next()) {
            match self.vet(hooks, counters, idle, true) {
                Ok(Some(item)) => match self.check_out(hooks, item) {
                    Some(item) => {
                        out.push(item);
                        hits += 1;
                    }
                    None => {
                        // As in `hand_out`: the idle copy was a second
                        // reference.
                        counters.bump(Event::Destroyed);
                        self.release_charge();
                        failure = Some(GetError::AlreadyOut);
                        break;
                    }
                },
                // Destroyed, its charge kept: for the next idle object
                // (which brings its own charge), else for a new one.
                Ok(None) => {
                    // As a get does (`Hooks::check_interrupts`).
                    if let Err(e) = hooks.check_interrupts() {
                        slots += 1; // the destroyed one's charge, released below
                        failure = Some(GetError::Hook(e));
                        break;
                    }
                    rejects += 1;
                    let next = if rejects < self.max_rejects {
                        self.take_idle(home)
                    } else {
                        None
                    };
                    match next {
                        Some(next) => {
                            self.release_charge();
                            replacement = Some(next);
                        }
                        None => slots += 1,
                    }
                }
                Err(e) => {
                    slots += 1; // the destroyed one's charge, released below
                    failure = Some(GetError::Hook(e));
                    break;
                }
            }
        }
        while failure.is_none() && slots > 0 {
            // `make` uses the slot, or releases it when it fails.
            slots -= 1;
            match self.make(hooks, counters) {
                Ok(item) => {
                    out.push(item);
                    misses += 1;
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(error) = failure {
            self.undo_batch(
                hooks,
                home,
                out,
                replacement.into_iter().chain(pending),
                slots,
            );
            return Err(error);
        }
        counters.add(Event::Hit, hits);
        counters.add(Event::Miss, misses);
        self.note_in_use();
        Ok(out)
    }

    /// Gives back everything a failed batch holds: the objects it checked
    /// out, the idle ones it did not look at, and its unused slots.
    fn undo_batch<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        home: usize,
        out: Vec<T>,
        pending: impl Iterator<Item = Idle<T>>,
        slots: usize,
    ) {
        for item in out {
            self.return_unused(hooks, home, item);
        }
        for idle in pending {
            self.store_idle(hooks, home, idle);
        }
        for _ in 0..slots {
            self.release_charge();
        }
    }

    /// Takes back an object this call checked out and never handed to its
    /// caller (a failed batch): no reset (it was never used), not counted.
    pub(super) fn return_unused<H: Hooks<T>>(&self, hooks: &mut H, home: usize, item: T) {
        let item = match &self.ledger {
            None => item,
            Some(ledger) => match ledger.check_in(hooks.identity(&item)) {
                Some(own) => own,
                None => return, // unreachable: this call checked it out
            },
        };
        self.store(hooks, home, item);
    }

    /// Gives back many objects. A checked pool first checks them all in: if
    /// any was not handed out (or appears twice), nothing changes. A failing
    /// reset does not stop the others; the first error is returned.
    pub fn put_many<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        items: Vec<T>,
    ) -> Result<(), PutError<H::Error>> {
        let items = self
            .check_in_all(hooks, items)
            .map_err(|(index, _)| PutError::NotOut { index })?;
        self.put_checked_in(hooks, items).map_err(PutError::Hook)
    }

    /// The objects of a batch of puts, checked in: in a checked pool the
    /// ledger's own references (the caller's are dropped), else `items`
    /// as they are. If one was not handed out (or appears twice: its second
    /// check-in finds it returned), those before it are checked out again,
    /// so the ledger is as it was, and the caller gets `items` back with
    /// that index. (Meanwhile a put of one of those by another thread, a
    /// second return of an object this batch returns, is refused as if it
    /// came after the batch.)
    pub(crate) fn check_in_all<H: Hooks<T>>(
        &self,
        hooks: &H,
        items: Vec<T>,
    ) -> Result<Vec<T>, (usize, Vec<T>)> {
        let Some(ledger) = &self.ledger else {
            return Ok(items);
        };
        let mut own = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match ledger.check_in(hooks.identity(item)) {
                Some(kept) => own.push(kept),
                None => {
                    for (item, kept) in items.iter().zip(own) {
                        let again = ledger.check_out(hooks.identity(item), kept);
                        // This batch took it out of the ledger, and no one
                        // can take an object out that is not idle.
                        debug_assert!(again.is_ok(), "a checked-in object was out again");
                    }
                    return Err((index, items));
                }
            }
        }
        Ok(own)
    }

    /// `put` for each object of a batch, checked in already
    /// ([`Pool::check_in_all`]): an object that fails its reset does not
    /// stop the others; the first error is returned.
    pub(crate) fn put_checked_in<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        accepted: Vec<T>,
    ) -> Result<(), H::Error> {
        let (home, counters) = self.shards.local();
        let mut first_error = None;
        // Count the batch's puts before any object is filed: once filed,
        // another thread may take it and count its get, and `in_use` must
        // not count it twice meanwhile.
        counters.add(Event::Put, accepted.len() as u64);
        let mut shelved = false;
        let mut retired = false;
        let mut walk = self.shards.walk(home);
        for item in accepted {
            // One load for both, as in `put`: closed, or objects with a lifetime.
            let flags = self.flags.load(Ordering::Acquire);
            if flags != 0 {
                if flags & CLOSED != 0 {
                    self.scrap(hooks, counters, item);
                    continue;
                }
                if self.outlived(hooks, &item) {
                    counters.bump(Event::Expired);
                    self.scrap(hooks, counters, item);
                    retired = true;
                    continue;
                }
            }
            let item = match self.reset_returned(hooks, counters, item) {
                Ok(item) => item,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let since = self.stamp();
            let idle = Idle { item, since };
            let push = |idle| self.shards.push_on(&mut walk, idle);
            shelved |= matches!(self.file_with(hooks, home, idle, push), Filed::Shelved);
        }
        // One fence (and one look for waiters) for the whole batch: a waiter
        // that queued before it is served; one that queued after it finds
        // the objects in the shards itself. It also destroys what was
        // shelved if the pool closed meanwhile.
        if shelved || self.is_closed() {
            self.after_shelving(hooks, home);
        }
        if retired {
            self.refill_quietly(hooks);
        }
        first_error.map_or(Ok(()), Err)
    }
}
