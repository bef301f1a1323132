//! `max_lifetime`: objects older than this, since they were created, are
//! destroyed (counted as `expired`) instead of handed out again or kept.
//!
//! Invariants:
//! - A creation time is recorded for every object the pool creates (keyed
//!   by identity, beside the ledger) and forgotten when the pool destroys
//!   it. Only checked pools have a lifetime: the ledger's reference keeps a
//!   handed-out object alive, so its identity cannot be reused by another
//!   object while its creation time is recorded.
//! - Age is checked when an idle object is handed out (`vet`), when one
//!   comes back (`put`, `put_many`) and by `trim`. No thread runs.
//! - Pools without a lifetime pay one branch on an `Option` on get and on a
//!   checked put, nothing else: no clock is read.

use std::time::Duration;

use super::idle::saturating_nanos;
use super::{Event, Hooks, Idle, Pool};
use crate::counters::Tally;
use crate::ledger::Ledger;

/// The lifetime bound and the creation times (nanoseconds since the
/// pool's epoch) of the objects alive.
pub(super) struct Lifetime {
    max: Duration,
    births: Ledger<u64>,
}

impl Lifetime {
    pub(super) fn new(max: Duration, shards: usize) -> Self {
        Lifetime {
            max,
            births: Ledger::new(shards),
        }
    }

    pub(super) fn max(&self) -> Duration {
        self.max
    }

    /// Forgets every creation time (the pool dropped its references).
    pub(super) fn clear(&self) {
        self.births.clear();
    }
}

impl<T: Send> Pool<T> {
    /// Records when `item` (new) was created.
    #[inline]
    pub(super) fn note_birth<H: Hooks<T>>(&self, hooks: &H, item: &T) {
        if let Some(lifetime) = &self.lifetime {
            self.record_birth(lifetime, hooks.identity(item));
        }
    }

    #[cold]
    fn record_birth(&self, lifetime: &Lifetime, id: usize) {
        // A stale record cannot exist in a checked pool (see the module's
        // invariants); replaced all the same, never trusted.
        let _ = lifetime.births.check_in(id);
        let _ = lifetime.births.check_out(id, self.now());
    }

    /// Forgets the creation time of `item`, which is being destroyed.
    #[inline]
    pub(super) fn forget_birth<H: Hooks<T>>(&self, hooks: &H, item: &T) {
        if let Some(lifetime) = &self.lifetime {
            lifetime.births.check_in(hooks.identity(item));
        }
    }

    /// Whether an idle object must not be handed out: idle too long, or
    /// lived too long. One test when neither can happen.
    #[inline(always)]
    pub(super) fn is_stale<H: Hooks<T>>(&self, hooks: &H, idle: &Idle<T>) -> bool {
        self.ages && self.is_stale_slowly(hooks, idle)
    }

    #[cold]
    fn is_stale_slowly<H: Hooks<T>>(&self, hooks: &H, idle: &Idle<T>) -> bool {
        self.is_expired(idle) || self.outlived(hooks, &idle.item)
    }

    /// Whether `item` has lived longer than `max_lifetime`.
    #[inline]
    pub(super) fn outlived<H: Hooks<T>>(&self, hooks: &H, item: &T) -> bool {
        match &self.lifetime {
            None => false,
            Some(lifetime) => self.is_too_old(lifetime, hooks.identity(item)),
        }
    }

    #[cold]
    fn is_too_old(&self, lifetime: &Lifetime, id: usize) -> bool {
        lifetime
            .births
            .get(id)
            .is_some_and(|born| self.now().saturating_sub(born) > saturating_nanos(lifetime.max))
    }

    /// A returned object (counted as such) that outlived `max_lifetime`:
    /// counted as expired, destroyed, and replaced if the pool falls below
    /// `min_size`.
    #[cold]
    pub(super) fn retire<H: Hooks<T>>(&self, hooks: &mut H, counters: Tally<'_>, item: T) {
        counters.bump(Event::Expired);
        self.scrap(hooks, counters, item);
        self.refill_quietly(hooks);
    }
}
