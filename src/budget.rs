//! A budget of idle weight (bytes, for block pools) shared by several pools.
//!
//! Invariant: `used <= limit` at every moment. `used` only rises through the
//! compare-and-swap in [`IdleBudget::try_charge`], which refuses to pass the
//! limit, and every charge is ended by exactly one `uncharge` of the same
//! weight when its object leaves idle storage.

use crate::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// A byte budget for idle objects, shared by several pools (the classes
/// of a block pool): a pool keeps an object idle only if its weight fits.
#[derive(Debug)]
pub struct IdleBudget {
    limit: usize,
    used: CachePadded<AtomicUsize>,
}

impl IdleBudget {
    /// A budget of `limit` units, none used.
    pub fn new(limit: usize) -> Self {
        IdleBudget {
            limit,
            used: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// The budget's size.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Units charged now (a moment's reading).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `weight` if it fits.
    #[inline]
    pub(crate) fn try_charge(&self, weight: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(weight)
                    .filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    #[inline]
    pub(crate) fn uncharge(&self, weight: usize) {
        let before = self.used.fetch_sub(weight, Ordering::Relaxed);
        debug_assert!(before >= weight, "uncharged more than was charged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn never_exceeds_the_limit() {
        let b = IdleBudget::new(10);
        assert!(b.try_charge(6));
        assert!(!b.try_charge(5));
        assert!(b.try_charge(4));
        assert_eq!(b.used(), 10);
        b.uncharge(6);
        assert!(b.try_charge(5));
        assert!(!b.try_charge(usize::MAX));
    }

    #[test]
    fn concurrent_charges_respect_the_limit() {
        let b = Arc::new(IdleBudget::new(1000));
        let charged: usize = (0..4)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || (0..1000).filter(|_| b.try_charge(3)).count() * 3)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(charged, b.used());
        assert!(charged <= 1000 && charged > 1000 - 3);
    }
}
