//! The ledger of a checked pool: which objects are handed out right now.
//!
//! Invariants:
//! - Every handed-out object of a checked pool has exactly one entry, keyed
//!   by its identity, holding the pool's own reference to it. Holding that
//!   reference keeps the object alive, so its identity (an address) cannot
//!   be reused by another object while the entry exists.
//! - `check_in` removes the entry atomically (under its shard's lock), so of
//!   two concurrent returns of one object exactly one succeeds.
//! - Entries are spread over several locks by identity, so unrelated gets and
//!   puts rarely meet on one lock.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::PoisonError;

use crossbeam_utils::CachePadded;

use crate::sync::{Mutex, MutexGuard};

/// Identities are addresses: already unique, so a multiply spreads them well
/// enough, and costs far less than SipHash on the hot path.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Table<T> = HashMap<usize, T, BuildHasherDefault<AddressHasher>>;

pub(crate) struct Ledger<T> {
    shards: Box<[CachePadded<Mutex<Table<T>>>]>,
}

impl<T> Ledger<T> {
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two() * 4;
        Ledger {
            shards: (0..n).map(|_| CachePadded::new(Mutex::default())).collect(),
        }
    }

    fn shard(&self, id: usize) -> MutexGuard<'_, Table<T>> {
        // Objects are at least 8-byte aligned: skip the always-zero bits.
        let i = (id >> 4) & (self.shards.len() - 1);
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `item` as handed out. Gives it back if `id` is out already.
    pub(crate) fn check_out(&self, id: usize, item: T) -> Result<(), T> {
        match self.shard(id).entry(id) {
            Entry::Occupied(_) => Err(item),
            Entry::Vacant(slot) => {
                slot.insert(item);
                Ok(())
            }
        }
    }

    /// Ends the record of `id`, returning the pool's reference to it.
    pub(crate) fn check_in(&self, id: usize) -> Option<T> {
        self.shard(id).remove(&id)
    }

    /// A copy of the entry of `id`, if any.
    pub(crate) fn get(&self, id: usize) -> Option<T>
    where
        T: Copy,
    {
        self.shard(id).get(&id).copied()
    }

    pub(crate) fn contains(&self, id: usize) -> bool {
        self.shard(id).contains_key(&id)
    }

    /// Shows every recorded object to `f`. A shard whose lock is taken is
    /// skipped (its objects stay unseen rather than the caller blocking).
    pub(crate) fn visit<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> Result<(), E> {
        for shard in self.shards.iter() {
            if let Ok(table) = shard.try_lock() {
                table.values().try_for_each(&mut f)?;
            }
        }
        Ok(())
    }

    /// Forgets every recorded object (their references are dropped).
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn check_out_then_in_exactly_once() {
        let l: Ledger<&str> = Ledger::new(2);
        assert_eq!(l.check_out(64, "a"), Ok(()));
        assert_eq!(l.check_out(64, "b"), Err("b"));
        assert!(l.contains(64));
        assert_eq!(l.len(), 1);
        assert_eq!(l.check_in(64), Some("a"));
        assert_eq!(l.check_in(64), None);
        assert!(l.is_empty());
    }

    #[test]
    fn concurrent_check_in_succeeds_once() {
        let l = Arc::new(Ledger::<u32>::new(4));
        for id in 0..1000 {
            l.check_out(id * 16, 1).unwrap();
        }
        let wins: usize = (0..4)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    (0..1000).filter(|id| l.check_in(id * 16).is_some()).count()
                })
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(wins, 1000);
    }
}
