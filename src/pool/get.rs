//! Handing out one object: an idle one, vetted, or a new one.
//!
//! Invariants:
//! - An idle object is vetted before it is handed out: expired, reset (when
//!   due on get) and validated. A rejected one is destroyed, its charge
//!   released (or kept for the caller, by a batch), and the get goes on; it
//!   looks at no more than `max_rejects` idle objects before it creates one
//!   (the first look, a hit in the common case, is taken ahead of the wait
//!   loop; `acquire_slowly` goes on with its count of rejects and does not
//!   look again when the first look found nothing).
//! - A new object is created only in a slot already charged to the limit;
//!   if the factory fails, or hands out an object that is out already, the
//!   slot is released.
//! - After each rejected object (destroyed, and `min_size` refilled) a get
//!   asks [`Hooks::check_interrupts`] before it goes on: an interrupt that
//!   `destroy` or a refill's factory raised (and the hooks could not raise)
//!   ends the get there, holding nothing, instead of after it handed out an
//!   object.
//! - The holder's reference is checked out (ledger, or the caller's own
//!   record through [`Hooks::record_out`]) before the get is counted, so a
//!   get that fails counts nothing.

use std::time::{Duration, Instant};

use super::{Event, GetError, Hooks, Idle, Pool, ResetOn, Source, IN_USE_SAMPLE_EVERY};
use crate::counters::Tally;
use crate::limit::Grant;

impl<T: Send> Pool<T> {
    /// An idle object (reset, validated, not expired), a new one from the
    /// factory, or, in a full bounded pool, one returned within `timeout`
    /// (`None` waits forever).
    #[inline(always)]
    pub fn get<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        timeout: Option<Duration>,
    ) -> Result<T, GetError<H::Error>> {
        self.acquire(hooks, timeout, true)
    }

    /// `get`, or with `may_wait == false` a [`GetError::Timeout`] (not
    /// counted) where `get` would wait. Always inlined: its common case is
    /// short, and its slow paths are out of line (`acquire_slowly`).
    #[inline(always)]
    pub(super) fn acquire<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        timeout: Option<Duration>,
        may_wait: bool,
    ) -> Result<T, GetError<H::Error>> {
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        debug_assert!(self.max_rejects >= 1, "at least one shard");
        let (home, counters) = self.shards.local();
        // The common case, ahead of the loop and its state: the first idle
        // object (`max_rejects` is at least 1) passes. Everything else is
        // `acquire_slowly`, which goes on exactly as the loop would have.
        let Some(idle) = self.take_idle(home) else {
            return self.acquire_slowly(hooks, timeout, may_wait, home, counters, 0, true);
        };
        match self.vet(hooks, counters, idle, false) {
            Ok(Some(item)) => self.hand_out(hooks, counters, item, Event::Hit),
            Ok(None) => {
                self.refill_quietly(hooks);
                self.acquire_slowly(hooks, timeout, may_wait, home, counters, 1, false)
            }
            Err(e) => {
                self.refill_quietly(hooks);
                Err(GetError::Hook(e))
            }
        }
    }

    /// The rest of `acquire` after its first look at the idle objects:
    /// `rejects` idle objects rejected so far, and `emptied` when that look
    /// found none (so the loop's first turn does not look again).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn acquire_slowly<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        timeout: Option<Duration>,
        may_wait: bool,
        home: usize,
        counters: Tally<'_>,
        mut rejects: usize,
        emptied: bool,
    ) -> Result<T, GetError<H::Error>> {
        if rejects > 0 {
            // The first look's reject (`Hooks::check_interrupts`), asked
            // here to keep `acquire`'s common case as it was.
            hooks.check_interrupts().map_err(GetError::Hook)?;
        }
        let mut deadline = None;
        let mut waited = false;
        let mut emptied = emptied;
        loop {
            let idle = if rejects < self.max_rejects && !std::mem::take(&mut emptied) {
                self.take_idle(home)
            } else {
                None
            };
            let source = match (idle, &self.limit) {
                (Some(idle), _) => Source::Idle(idle),
                (None, None) => Source::Slot,
                (None, Some(limit)) if !limit.is_contended() && limit.try_reserve() => Source::Slot,
                (None, Some(_)) if !may_wait => return Err(GetError::Timeout),
                (None, Some(limit)) => {
                    let deadline = *deadline
                        .get_or_insert_with(|| timeout.and_then(|t| Instant::now().checked_add(t)));
                    match self.wait(hooks, limit, home, deadline, &mut waited)? {
                        Grant::Item(idle) => Source::Idle(idle),
                        Grant::Slot => Source::Slot,
                        Grant::Batch(_) => unreachable!("a single waiter is granted one unit"),
                    }
                }
            };
            let idle = match source {
                Source::Slot => return self.create(hooks, counters),
                Source::Idle(idle) => idle,
            };
            match self.vet(hooks, counters, idle, false) {
                Ok(Some(item)) => return self.hand_out(hooks, counters, item, Event::Hit),
                Ok(None) => {
                    if rejects == 0 {
                        self.refill_quietly(hooks);
                    }
                    hooks.check_interrupts().map_err(GetError::Hook)?;
                    rejects += 1;
                }
                Err(e) => {
                    self.refill_quietly(hooks);
                    return Err(GetError::Hook(e));
                }
            }
        }
    }

    /// Turns a grant into an object to hand out: a new one for a slot, the
    /// granted one if it passes the checks of `get`, else `None` (it was
    /// destroyed).
    pub(super) fn redeem<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        grant: Grant<Idle<T>>,
    ) -> Result<Option<T>, GetError<H::Error>> {
        let (_, counters) = self.shards.local();
        let idle = match grant {
            Grant::Slot => return self.create(hooks, counters).map(Some),
            Grant::Item(idle) => idle,
            Grant::Batch(_) => unreachable!("a single waiter is granted one unit"),
        };
        let vetted = self.vet(hooks, counters, idle, false);
        if !matches!(vetted, Ok(Some(_))) {
            self.refill_quietly(hooks);
        }
        match vetted {
            Ok(Some(item)) => self.hand_out(hooks, counters, item, Event::Hit).map(Some),
            Ok(None) => hooks
                .check_interrupts()
                .map(|()| None)
                .map_err(GetError::Hook),
            Err(e) => Err(GetError::Hook(e)),
        }
    }

    /// A new object handed out (a miss), in a slot already charged.
    pub(super) fn create<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
    ) -> Result<T, GetError<H::Error>> {
        let out = self.make(hooks, counters)?;
        counters.bump(Event::Miss);
        self.note_in_use();
        Ok(out)
    }

    /// A new object, checked out, in a slot already charged (counted as
    /// created, not yet as handed out). On failure the slot is released.
    #[inline]
    pub(super) fn make<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
    ) -> Result<T, GetError<H::Error>> {
        let item = match hooks.create() {
            Ok(item) => item,
            Err(e) => {
                self.release_charge();
                return Err(GetError::Hook(e));
            }
        };
        let Some(out) = self.check_out(hooks, item) else {
            // Not ours to destroy: its holder still uses it.
            self.release_charge();
            return Err(GetError::AlreadyOut);
        };
        counters.bump(Event::Created);
        self.note_birth(hooks, &out);
        Ok(out)
    }

    #[inline(always)]
    pub(super) fn hand_out<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        item: T,
        event: Event,
    ) -> Result<T, GetError<H::Error>> {
        let Some(out) = self.check_out(hooks, item) else {
            // The factory handed out an object that was also idle here: the
            // idle copy is a second reference to it, now dropped.
            counters.bump(Event::Destroyed);
            self.release_charge();
            return Err(GetError::AlreadyOut);
        };
        if counters.bump_counted(event) % IN_USE_SAMPLE_EVERY == 0 {
            self.note_in_use();
        }
        Ok(out)
    }

    /// The holder's reference to `item`; a checked pool records `item` in
    /// its ledger. `None` (and `item` dropped) if it is out already.
    #[inline(always)]
    pub(super) fn check_out<H: Hooks<T>>(&self, hooks: &mut H, item: T) -> Option<T> {
        let item = hooks.record_out(item)?;
        let Some(ledger) = &self.ledger else {
            return Some(item);
        };
        let out = hooks.duplicate(&item);
        ledger.check_out(hooks.identity(&item), item).ok()?;
        Some(out)
    }

    /// Expire, reset (when due on get) and validate an idle object before
    /// it is handed out. `Ok(None)`: it was rejected and destroyed. A
    /// rejected object's charge is released, or kept for the caller with
    /// `keep_charge` (a batch makes a replacement in it).
    #[inline(always)]
    pub(super) fn vet<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        idle: Idle<T>,
        keep_charge: bool,
    ) -> Result<Option<T>, H::Error> {
        if self.is_stale(hooks, &idle) {
            self.reject(hooks, counters, idle.item, Event::Expired, keep_charge);
            return Ok(None);
        }
        let item = idle.item;
        if self.reset_on == ResetOn::Get {
            if let Err(e) = hooks.reset(&item) {
                self.reject(hooks, counters, item, Event::ResetError, keep_charge);
                return Err(e);
            }
        }
        match hooks.validate(&item) {
            Ok(true) => Ok(Some(item)),
            Ok(false) => {
                self.reject(hooks, counters, item, Event::Invalid, keep_charge);
                Ok(None)
            }
            Err(e) => {
                self.reject(hooks, counters, item, Event::Invalid, keep_charge);
                Err(e)
            }
        }
    }
}
