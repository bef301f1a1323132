//! A budget of idle weight (bytes, for block pools) shared by several pools.
//!
//! Each thread group (by thread index, as the pools' shards) keeps a credit:
//! weight charged to the budget ahead of use, that its charges draw on and
//! its refunds add to, so that threads putting blocks into one pool do not
//! update one counter on every call (on a free-threaded Python a shared
//! counter's compare-and-swap by two threads cost a block's get+release
//! twice its time). A group short of credit charges the shared count for
//! the weight and a `chunk` more; a group whose credit passes two chunks
//! gives the excess back.
//!
//! Invariants:
//! - `used <= limit` at every moment: `used` only rises through the
//!   compare-and-swap in [`IdleBudget::try_charge`], which refuses to pass
//!   the limit.
//! - `used` is the idle weight, plus every group's credit, plus weight in
//!   flight between the two (taken out of a credit and not yet refunded to
//!   `used`, or charged to `used` and not yet added to a credit): so the
//!   idle weight never exceeds the limit, and once no call is under way,
//!   `used - credits` is exactly the idle weight ([`IdleBudget::used`]).
//!   Weight moves out of a credit only by one atomic update of that credit
//!   (no weight is taken twice) and into it only by an atomic add.
//! - Every charge is ended by exactly one `uncharge` of the same weight when
//!   its object leaves idle storage.
//! - A charge that does not fit takes every group's credit back before it
//!   gives up, so credits held elsewhere never refuse a charge that fits
//!   the idle weight (up to calls racing it).
//! - Which group a call uses is only locality (the caller's home shard,
//!   masked to [`GROUPS`]): any thread may use any group.
//! - With a chunk of 0 (a budget too small to share out, or callers that
//!   never run at once) there are no credits: every charge and refund goes
//!   to `used`, as with one counter. The abi3 binding's callers never run
//!   at once (`shards::SERIALIZED_BUILD`): there the chunk is always 0 and
//!   the credit paths are compiled out of the charge and the refund.

use crate::shards::SERIALIZED_BUILD;
use crate::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// How many credits a budget keeps (a power of two: a home shard is masked
/// to it). Threads whose home shards are this far apart share one.
pub(crate) const GROUPS: usize = 8;

/// A byte budget for idle objects, shared by several pools (the classes
/// of a block pool): a pool keeps an object idle only if its weight fits.
#[derive(Debug)]
pub struct IdleBudget {
    limit: usize,
    /// What a group short of credit charges beyond its need.
    chunk: usize,
    /// The most a credit keeps after a refund: two chunks.
    keep: usize,
    /// The idle weight, the credits and what is in flight (see the module).
    used: CachePadded<AtomicUsize>,
    /// Each thread group's credit.
    credits: [CachePadded<AtomicUsize>; GROUPS],
}

impl IdleBudget {
    /// A budget of `limit` units, none used, whose credits are charged an
    /// eighth of the limit over the groups in use at a time; without credits
    /// when callers are serialized (`shards::callers_serialized`).
    pub fn new(limit: usize) -> Self {
        if crate::shards::callers_serialized() {
            return Self::with_chunk(limit, 0);
        }
        let groups = crate::shards::default_shard_count().clamp(1, GROUPS);
        Self::with_chunk(limit, limit / 8 / groups)
    }

    /// A budget of `limit` units whose credits are charged `chunk` at a
    /// time (0: charges go to the shared count; always 0 in a build whose
    /// callers are serialized, which never reads credits).
    pub(crate) fn with_chunk(limit: usize, chunk: usize) -> Self {
        let chunk = if SERIALIZED_BUILD { 0 } else { chunk };
        IdleBudget {
            limit,
            chunk,
            keep: chunk.saturating_mul(2),
            used: CachePadded::new(AtomicUsize::new(0)),
            credits: std::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
        }
    }

    /// The budget's size.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The idle weight (a moment's reading: exact when no call is under
    /// way, otherwise off by what is in flight, never above the limit).
    pub fn used(&self) -> usize {
        if SERIALIZED_BUILD {
            return self.used.load(Ordering::Relaxed);
        }
        let credits = self
            .credits
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, usize::saturating_add);
        self.used.load(Ordering::Relaxed).saturating_sub(credits)
    }

    /// The credit of the group of `home` (a pool's home shard for the
    /// calling thread: the pools already have it, so a charge looks up
    /// nothing more).
    #[inline(always)]
    fn credit(&self, home: usize) -> &AtomicUsize {
        &self.credits[home & (GROUPS - 1)]
    }

    /// Charges `weight` if it fits, from the credit of `home`'s group.
    #[inline(always)]
    pub(crate) fn try_charge(&self, weight: usize, home: usize) -> bool {
        if SERIALIZED_BUILD || self.chunk == 0 {
            return self.charge_used(weight);
        }
        let credit = self.credit(home);
        credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                c.checked_sub(weight)
            })
            .is_ok()
            || self.charge_shared(credit, weight)
    }

    /// `try_charge` without enough credit: charges the shared count, with a
    /// chunk more for the credit if that fits too; failing, takes every
    /// credit back and tries once more.
    #[cold]
    fn charge_shared(&self, credit: &AtomicUsize, weight: usize) -> bool {
        if self.chunk > 0 && self.charge_used(weight.saturating_add(self.chunk)) {
            credit.fetch_add(self.chunk, Ordering::Relaxed);
            return true;
        }
        if self.charge_used(weight) {
            return true;
        }
        let mut reclaimed = 0usize;
        for c in self.credits.iter() {
            reclaimed += c.swap(0, Ordering::Relaxed);
        }
        if reclaimed == 0 {
            return false;
        }
        self.used.fetch_sub(reclaimed, Ordering::Relaxed);
        self.charge_used(weight)
    }

    /// Adds `weight` to the shared count if it stays within the limit.
    #[inline(always)]
    fn charge_used(&self, weight: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(weight)
                    .filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Ends charges of `weight` in all, to the credit of `home`'s group.
    #[inline(always)]
    pub(crate) fn uncharge(&self, weight: usize, home: usize) {
        if SERIALIZED_BUILD || self.chunk == 0 {
            let before = self.used.fetch_sub(weight, Ordering::Relaxed);
            debug_assert!(before >= weight, "uncharged more than was charged");
            return;
        }
        let credit = self.credit(home);
        if credit.fetch_add(weight, Ordering::Relaxed) + weight > self.keep {
            self.give_back(credit);
        }
    }

    /// Gives a credit's excess over one chunk back to the shared count.
    #[cold]
    fn give_back(&self, credit: &AtomicUsize) {
        let (chunk, keep) = (self.chunk, self.keep);
        if let Ok(before) = credit.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            (c > keep).then_some(chunk)
        }) {
            let before_used = self.used.fetch_sub(before - chunk, Ordering::Relaxed);
            debug_assert!(
                before_used >= before - chunk,
                "gave back more than was charged"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn never_exceeds_the_limit() {
        let b = IdleBudget::with_chunk(10, 0);
        assert!(b.try_charge(6, 0));
        assert!(!b.try_charge(5, 0));
        assert!(b.try_charge(4, 0));
        assert_eq!(b.used(), 10);
        b.uncharge(6, 0);
        assert!(b.try_charge(5, 0));
        assert!(!b.try_charge(usize::MAX, 0));
    }

    #[test]
    #[cfg(not(all(feature = "python", feature = "abi3")))] // no credits there
    fn credits_serve_a_group_and_come_back_when_needed() {
        let b = IdleBudget::with_chunk(100, 10);
        assert!(b.try_charge(5, 0), "charges 15: 5 and a chunk of credit");
        assert_eq!((b.used(), b.used.load(Ordering::Relaxed)), (5, 15));
        assert!(b.try_charge(5, 0), "from the credit");
        assert_eq!((b.used(), b.used.load(Ordering::Relaxed)), (10, 15));
        b.uncharge(10, 0);
        assert_eq!(b.used(), 0);
        // Another group's credit does not refuse what fits the idle weight.
        b.credits[1].fetch_add(20, Ordering::Relaxed);
        b.used.fetch_add(20, Ordering::Relaxed);
        assert!(b.try_charge(95, 0), "the credits taken back");
        assert_eq!((b.used(), b.used.load(Ordering::Relaxed)), (95, 95));
        assert!(!b.try_charge(6, 0));
        b.uncharge(95, 0);
        assert_eq!(b.used(), 0);
        assert!(
            b.used.load(Ordering::Relaxed) <= 20,
            "at most two chunks kept"
        );
    }

    #[test]
    fn concurrent_charges_respect_the_limit() {
        let b = Arc::new(IdleBudget::new(1000));
        let mut charged: usize = (0..4)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let home = crate::shards::current().index;
                    (0..1000).filter(|_| b.try_charge(3, home)).count() * 3
                })
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(charged, b.used());
        assert!(charged <= 1000);
        // A thread's last success may have left credit in its group; a
        // charge that does not fit takes it back, so the budget fills.
        while b.try_charge(3, 0) {
            charged += 3;
        }
        assert_eq!(charged, b.used());
        assert!(charged <= 1000 && charged > 1000 - 3);
    }
}
