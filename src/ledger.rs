//! The ledger of a checked pool: which objects are handed out right now.
//!
//! Invariants:
//! - Every handed-out object of a checked pool has exactly one entry, keyed
//!   by its identity, holding the pool's own reference to it. Holding that
//!   reference keeps the object alive, so its identity (an address) cannot
//!   be reused by another object while the entry exists.
//! - An identity has one place: the slot its hash picks. Its entry is in
//!   that slot's inline entries (a packed prefix of its inline array) or,
//!   once those are full, in the slot's overflow table, never in both; `check_out` looks in both, under the slot's lock,
//!   before it records, so an identity that is out already is refused.
//! - `check_in` removes the entry atomically (under its slot's lock), so of
//!   two concurrent returns of one object exactly one succeeds.
//! - A slot's lock (a [`FlagLock`]) excludes: one thread at a time
//!   reaches the entries, after everything the previous holder did to
//!   them. It is held only across the slot's own steps (no caller code,
//!   nothing that blocks), so a waiter spins, then yields
//!   ([`FlagLock::with`]), for the few dozen instructions a holder takes.
//!   Under loom it is loom's `Mutex`, the same exclusion, which the models
//!   explore.
//! - Slots are many (far more than threads) and spread by a multiplicative
//!   hash of the whole address, and each slot's lock and first entries live
//!   in its own cache-padded slot: threads that use different objects
//!   rarely meet on one lock or one cache line. (The address's low bits
//!   alone are not enough: allocators put each thread's first objects at
//!   the same offset of their own pages, so those objects met on one lock;
//!   and separately allocated tables of different slots shared cache lines.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crossbeam_utils::CachePadded;

use crate::sync::FlagLock;

/// Identities are addresses: already unique, so a multiply spreads them well
/// enough, and costs far less than SipHash.
#[derive(Default)]
pub(crate) struct AddressHasher(u64);

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
        self.0 = (n as u64).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio: a multiply by it moves every bit of an
/// address into the top bits.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

type Table<T> = HashMap<usize, T, BuildHasherDefault<AddressHasher>>;

/// Entries kept inline in a slot, before its overflow table is used: a
/// slot holds this many objects out without touching the heap, and a
/// `Py<PyAny>` slot's lock, entries, count and overflow pointer fit in one
/// 128-byte padded slot.
const INLINE: usize = 6;

/// One slot's entries: inline first, then the overflow table.
///
/// The inline entries are a prefix, `ids[..len]` and `vals[..len]`
/// (every one `Some`), kept packed: a removal moves the last entry into
/// the hole. So a check-out in a slot with nothing out (the usual case: a
/// slot is one of at least 64, picked by a hash) compares with nothing,
/// and a check-in compares with the entries there are, not with all
/// `INLINE` places (a scan of all six, and a second one for a free place,
/// cost a check-out about 20 instructions).
struct Slot<T> {
    ids: [usize; INLINE],
    vals: [Option<T>; INLINE],
    /// How many inline entries there are.
    len: usize,
    /// The entries that did not fit inline; allocated on the first one.
    more: Option<Box<Table<T>>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            ids: [0; INLINE],
            vals: std::array::from_fn(|_| None),
            len: 0,
            more: None,
        }
    }
}

impl<T> Slot<T> {
    /// The identities of the inline entries.
    #[inline(always)]
    fn inline_ids(&self) -> &[usize] {
        // `len <= INLINE` always; the `min` spares a bounds check.
        &self.ids[..self.len.min(INLINE)]
    }

    /// The inline place of `id`.
    #[inline(always)]
    fn find(&self, id: usize) -> Option<usize> {
        self.inline_ids().iter().position(|&k| k == id)
    }

    #[inline]
    fn get(&self, id: usize) -> Option<&T> {
        match self.find(id) {
            Some(i) => self.vals[i].as_ref(),
            None => self.more.as_deref()?.get(&id),
        }
    }

    #[inline(always)]
    fn insert(&mut self, id: usize, item: T) -> Result<(), T> {
        // The common case: no overflow table, a free inline place.
        let n = self.len;
        if self.more.is_none() && n < INLINE {
            if self.find(id).is_some() {
                return Err(item);
            }
            self.ids[n] = id;
            self.vals[n] = Some(item);
            self.len = n + 1;
            return Ok(());
        }
        self.insert_slow(id, item)
    }

    /// `insert` with an overflow table, or no free inline place. Out of
    /// line: it keeps the common case's function small.
    #[cold]
    #[inline(never)]
    fn insert_slow(&mut self, id: usize, item: T) -> Result<(), T> {
        if self.find(id).is_some() {
            return Err(item);
        }
        if let Some(more) = self.more.as_deref() {
            if more.contains_key(&id) {
                return Err(item);
            }
        }
        let n = self.len;
        if n < INLINE {
            self.ids[n] = id;
            self.vals[n] = Some(item);
            self.len = n + 1;
        } else {
            self.more.get_or_insert_with(Box::default).insert(id, item);
        }
        Ok(())
    }

    #[inline(always)]
    fn remove(&mut self, id: usize) -> Option<T> {
        match self.find(id) {
            Some(i) => {
                let last = self.len - 1;
                self.len = last;
                let item = self.vals[i].take();
                if i != last {
                    // Packed again: the last entry moves into the hole.
                    self.ids[i] = self.ids[last];
                    self.vals.swap(i, last);
                }
                item
            }
            None => self.remove_slow(id),
        }
    }

    /// `remove` of an identity not inline: in the overflow table, or not
    /// out at all (a refused put).
    #[cold]
    #[inline(never)]
    fn remove_slow(&mut self, id: usize) -> Option<T> {
        self.more.as_deref_mut()?.remove(&id)
    }

    fn len(&self) -> usize {
        self.len + self.more.as_ref().map_or(0, |t| t.len())
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        let more = self.more.as_deref().into_iter().flat_map(Table::values);
        self.vals[..self.len].iter().flatten().chain(more)
    }
}

pub(crate) struct Ledger<T> {
    slots: Box<[CachePadded<FlagLock<Slot<T>>>]>,
    /// `64 - log2(slots.len())`: the top bits of the hash pick the slot.
    shift: u32,
}

/// How many slots a ledger of a pool with `shards` shards has: 32 a shard
/// (a shard is a CPU by default), at least 64 and at most 1024. With `k`
/// objects out on different threads, two of them share a slot with
/// probability about `k^2 / (2 * slots)`.
#[cfg(not(loom))]
fn slot_count(shards: usize) -> usize {
    (shards.max(1).next_power_of_two() * 32).clamp(64, 1024)
}

/// Under loom: few slots, so that a model's `len` takes few locks.
#[cfg(loom)]
fn slot_count(shards: usize) -> usize {
    shards.max(1).next_power_of_two() * 2
}

impl<T> Ledger<T> {
    pub(crate) fn new(shards: usize) -> Self {
        let n = slot_count(shards);
        Ledger {
            slots: (0..n)
                .map(|_| CachePadded::new(FlagLock::default()))
                .collect(),
            shift: u64::BITS - n.trailing_zeros(),
        }
    }

    /// `f` of the slot of `id`, under its lock.
    #[inline(always)]
    fn slot<R>(&self, id: usize, f: impl FnOnce(&mut Slot<T>) -> R) -> R {
        // The top bits of the product depend on every bit of the address.
        // (A shift of 64 cannot happen: there are at least 2 slots.)
        let i = ((id as u64).wrapping_mul(FIBONACCI) >> self.shift) as usize;
        self.slots[i].with(f)
    }

    /// Records `item` as handed out. Gives it back if `id` is out already.
    #[inline(always)]
    pub(crate) fn check_out(&self, id: usize, item: T) -> Result<(), T> {
        self.slot(id, |slot| slot.insert(id, item))
    }

    /// Ends the record of `id`, returning the pool's reference to it.
    #[inline(always)]
    pub(crate) fn check_in(&self, id: usize) -> Option<T> {
        self.slot(id, |slot| slot.remove(id))
    }

    /// [`Ledger::check_in`] out of line: for a family's put
    /// ([`crate::tiered::Tiered::put`]), which a block pool shares though
    /// it has no ledger: inlined there, its registers cost a block's
    /// release about 5 instructions (callgrind).
    #[inline(never)]
    pub(crate) fn check_in_outlined(&self, id: usize) -> Option<T> {
        self.check_in(id)
    }

    /// A copy of the entry of `id`, if any.
    pub(crate) fn get(&self, id: usize) -> Option<T>
    where
        T: Copy,
    {
        self.slot(id, |slot| slot.get(id).copied())
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, id: usize) -> bool {
        self.slot(id, |slot| slot.get(id).is_some())
    }

    /// Shows every recorded object to `f`. A slot whose lock is taken is
    /// skipped (its objects stay unseen rather than the caller blocking).
    pub(crate) fn visit<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> Result<(), E> {
        for slot in self.slots.iter() {
            slot.try_with(|slot| slot.values().try_for_each(&mut f))
                .unwrap_or(Ok(()))?;
        }
        Ok(())
    }

    /// Forgets every recorded object. Their references are dropped after
    /// each slot's lock is let go: a drop may run code (a destructor) that
    /// returns an object of this ledger.
    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            drop(slot.with(std::mem::take));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.iter().map(|s| s.with(|slot| slot.len())).sum()
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

    /// Identities that all land in one slot, many more than fit inline.
    fn same_slot(l: &Ledger<usize>, n: usize) -> Vec<usize> {
        let slot = |id: usize| (id as u64).wrapping_mul(FIBONACCI) >> l.shift;
        (1..)
            .map(|k| k * 16)
            .filter(|&id| slot(id) == slot(16))
            .take(n)
            .collect()
    }

    #[test]
    fn a_full_slot_overflows_and_still_refuses_a_second_entry() {
        let l = Ledger::<usize>::new(1);
        let ids = same_slot(&l, 3 * INLINE);
        for &id in &ids {
            assert_eq!(l.check_out(id, id), Ok(()));
        }
        assert_eq!(l.len(), ids.len());
        // Every one is refused again, inline or in the overflow table.
        for &id in &ids {
            assert_eq!(l.check_out(id, 0), Err(0));
            assert_eq!(l.get(id), Some(id));
        }
        // Free inline places, then check out an overflowed identity again:
        // it is still found in the overflow table, not recorded twice.
        for &id in &ids[..INLINE] {
            assert_eq!(l.check_in(id), Some(id));
        }
        let spilled = ids[INLINE];
        assert_eq!(l.check_out(spilled, 0), Err(0));
        assert_eq!(l.check_in(spilled), Some(spilled));
        assert_eq!(l.check_in(spilled), None);
        assert!(!l.contains(spilled));
        // Inline places are reused before the table grows.
        for &id in &ids[..INLINE] {
            assert_eq!(l.check_out(id, id), Ok(()));
        }
        let mut seen = Vec::new();
        l.visit(|&v| {
            seen.push(v);
            Ok::<_, ()>(())
        })
        .unwrap();
        seen.sort_unstable();
        let mut want: Vec<usize> = ids.iter().copied().filter(|&id| id != spilled).collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        l.clear();
        assert!(l.is_empty());
        assert_eq!(l.check_out(spilled, 1), Ok(()));
    }

    #[test]
    fn any_identity_is_recorded_once() {
        let l = Ledger::<usize>::new(1);
        for id in [0, usize::MAX] {
            assert_eq!(l.check_out(id, 1), Ok(()));
            assert_eq!(l.check_out(id, 2), Err(2));
        }
        assert_eq!(l.len(), 2);
        for id in [0, usize::MAX] {
            assert_eq!(l.check_in(id), Some(1));
            assert_eq!(l.check_in(id), None);
        }
        assert!(l.is_empty());
    }

    #[test]
    fn a_check_in_from_the_middle_keeps_the_others() {
        let l = Ledger::<usize>::new(1);
        let ids = same_slot(&l, INLINE);
        for &id in &ids {
            assert_eq!(l.check_out(id, id), Ok(()));
        }
        // Out of order: each removal moves the last entry into its hole.
        for (k, &id) in [2, 0, 5, 3, 1, 4].iter().map(|&k| (k, &ids[k])) {
            assert_eq!(l.check_in(id), Some(id), "entry {k}");
            assert_eq!(l.check_in(id), None);
        }
        assert!(l.is_empty());
        for &id in &ids {
            assert_eq!(l.check_out(id, id), Ok(()));
        }
        for &id in &ids {
            assert_eq!(l.check_out(id, 0), Err(0));
            assert_eq!(l.get(id), Some(id));
        }
        assert_eq!(l.len(), INLINE);
    }

    #[test]
    fn a_slot_of_pointers_fits_one_padded_slot() {
        // A pointer's `Option` takes no more room than the pointer, as for
        // `Py<PyAny>`: the lock, 6 entries and the overflow pointer fit.
        assert_eq!(
            std::mem::size_of::<CachePadded<FlagLock<Slot<Box<u8>>>>>(),
            128
        );
    }

    #[test]
    fn page_aligned_addresses_spread_over_slots() {
        // Each thread's first small object often sits at the same offset of
        // its own page: the slots must not depend on the low bits alone.
        let l = Ledger::<usize>::new(2);
        let slots: std::collections::HashSet<u64> = (0..64u64)
            .map(|page| ((page << 16 | 0x60).wrapping_mul(FIBONACCI)) >> l.shift)
            .collect();
        assert!(slots.len() > 32, "{} slots for 64 pages", slots.len());
    }

    #[test]
    fn racing_check_outs_of_one_identity_record_one() {
        let l = Arc::new(Ledger::<usize>::new(2));
        let ids = same_slot(&l, 2 * INLINE);
        let wins: usize = (0..4)
            .map(|t| {
                let (l, ids) = (Arc::clone(&l), ids.clone());
                std::thread::spawn(move || {
                    ids.iter().filter(|&&id| l.check_out(id, t).is_ok()).count()
                })
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(wins, ids.len());
        assert_eq!(l.len(), ids.len());
    }

    /// Threads checking their own identities out and in, all in one slot
    /// (its inline entries packed by each removal, and its overflow table),
    /// each find exactly their own entries throughout.
    #[test]
    fn threads_sharing_one_slot_keep_their_own_entries() {
        let l = Arc::new(Ledger::<usize>::new(1));
        let ids = same_slot(&l, 4 * 3 * INLINE);
        let per = ids.len() / 4;
        let handles: Vec<_> = ids
            .chunks(per)
            .map(|mine| {
                let (l, mine) = (Arc::clone(&l), mine.to_vec());
                std::thread::spawn(move || {
                    for round in 0..500 {
                        let k = 1 + round % mine.len();
                        for &id in &mine[..k] {
                            assert_eq!(l.check_out(id, id), Ok(()));
                        }
                        for &id in mine[..k].iter().rev().step_by(2) {
                            assert_eq!(l.get(id), Some(id));
                            assert_eq!(l.check_in(id), Some(id));
                        }
                        for &id in &mine[..k] {
                            let _ = l.check_in(id);
                            assert!(!l.contains(id));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(l.is_empty());
    }
}
