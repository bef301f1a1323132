//! Idle storage as the pool sees it: the shards, the idle stamps that
//! expiry reads, and the shared idle budget ([`Charge`](super::Charge)).
//!
//! Invariants:
//! - An idle object is charged to the budget exactly while it is in a
//!   shard: charged before it is pushed, uncharged as it is popped.
//! - A stamp of 0 means unstamped: only a pool with an `idle_timeout` reads
//!   the clock, and an unstamped object never expires.

use std::time::Duration;

use super::{Idle, Pool};
use crate::shards::Walk;

/// `d` in nanoseconds, or `u64::MAX` if it does not fit.
#[inline]
pub(super) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<T: Send> Pool<T> {
    #[inline]
    pub(super) fn is_expired(&self, idle: &Idle<T>) -> bool {
        match self.idle_timeout {
            // Saturating: a timeout beyond u64 nanoseconds (585 years) never
            // expires, where a plain cast would wrap it to a short one.
            Some(timeout) if idle.since != 0 => {
                self.now().saturating_sub(idle.since) > saturating_nanos(timeout)
            }
            _ => false,
        }
    }

    /// The idle stamp of an object stored now: 0 (none) unless objects expire.
    #[inline]
    pub(super) fn stamp(&self) -> u64 {
        if self.idle_timeout.is_some() {
            self.now()
        } else {
            0
        }
    }

    /// Nanoseconds since the pool's epoch, at least 1 (0 means unstamped).
    pub(super) fn now(&self) -> u64 {
        saturating_nanos(self.epoch.elapsed()).max(1)
    }

    /// Takes an idle object (home shard first), ending its charge. Always
    /// inlined: out of line (as LLVM chose once the budget's credits made
    /// it longer) it cost a get about 45 instructions more.
    #[inline(always)]
    pub(super) fn take_idle(&self, home: usize) -> Option<Idle<T>> {
        let idle = self.shards.pop(home)?;
        self.uncharge_idle(1, home);
        Some(idle)
    }

    /// [`Pool::take_idle`] for a batch: from where its walk of the shards
    /// is (see [`Walk`]).
    #[inline(always)]
    pub(super) fn take_idle_on(&self, home: usize, walk: &mut Walk) -> Option<Idle<T>> {
        let idle = self.shards.pop_on(walk)?;
        self.uncharge_idle(1, home);
        Some(idle)
    }

    /// Takes every idle object, ending their charges.
    pub(super) fn drain_idle(&self) -> Vec<Idle<T>> {
        let idle = self.shards.drain();
        self.uncharge_idle(idle.len(), self.shards.home());
        idle
    }

    /// Charges an object about to be stored in `home` (the calling
    /// thread's home shard, whose budget credit it uses).
    #[inline]
    pub(super) fn charge_idle(&self, home: usize) -> bool {
        self.charge
            .as_ref()
            .is_none_or(|c| c.budget.try_charge(c.weight, home))
    }

    /// Ends the charges of `n` objects, to the credit of `home`.
    #[inline]
    pub(super) fn uncharge_idle(&self, n: usize, home: usize) {
        if let Some(c) = &self.charge {
            c.budget.uncharge(c.weight * n, home);
        }
    }
}
