//! Spare slots: a few released items a binding keeps to hand out again
//! instead of building new ones (the Python binding keeps the `Block` and
//! `Buffer` objects of released leases here, so that a `get` after a
//! `release` costs no object allocation).
//!
//! An item is an owned handle the slots never dereference (a strong
//! reference to a refcounted object, say); two handles with the same
//! address are interchangeable. The caller decides what may be reused
//! (`take`'s verdict) and disposes of what the slots give back.
//!
//! Invariants:
//! - A slot holds null or one handle. A handle enters a slot only by a
//!   compare-and-swap from null and leaves it only by a swap or a
//!   compare-and-swap to null, so every handle put in comes out to exactly
//!   one caller: nothing is lost or handed to two takers.
//! - Nothing stays in a slot once `close` has returned and every `offer`
//!   racing it has returned: `offer` stores and then reads `closed`,
//!   `close` sets `closed` and then empties every slot, all `SeqCst`, so
//!   whichever runs second sees the other (an offerer that sees `closed`
//!   takes its handle back unless `close` or a taker already has it).
//! - After `close`, `offer` refuses every handle.
//!
//! [`ShardedSpares`] is several independent [`Spares`], each in its own
//! cache-line-padded slot; a thread offers to and takes from the group of
//! its thread index (`shards::thread_index`), so threads on different
//! groups touch no common cache line (on a free-threaded Python, two
//! threads swapping one slot pair would bounce it between their cores on
//! every call). The invariants above hold for each group on its own;
//! `close` closes every group, so they hold for the whole: nothing stays in
//! any group once `close` and the offers racing it have returned. Which
//! group a thread picks is only locality: a handle offered to one group is
//! taken from that group (a thread may take another's, when indices wrap).

use std::ptr::{self, NonNull};

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{AtomicBool, AtomicPtr, Ordering::SeqCst};

/// How many spare items a pool keeps. Two, so that the common `with
/// pool.get(n) as b:` loop, whose `b` still holds the previous item while
/// the next `get` runs, alternates between them.
pub const SLOTS: usize = 2;

/// What `take` does with a spare it looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it out.
    Reuse,
    /// Not now (someone else still holds it): back into its slot.
    Keep,
    /// Never reusable: give it to the caller's `discard`.
    Discard,
}

/// A few spare items (see the module's invariants).
#[derive(Debug)]
pub struct Spares<T> {
    slots: [AtomicPtr<T>; SLOTS],
    closed: AtomicBool,
}

impl<T> Default for Spares<T> {
    fn default() -> Self {
        Spares {
            slots: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            closed: AtomicBool::new(false),
        }
    }
}

impl<T> Spares<T> {
    /// Keeps `item` if a slot is free and the slots are open; gives it back
    /// otherwise.
    #[inline]
    pub fn offer(&self, item: NonNull<T>) -> Result<(), NonNull<T>> {
        if self.closed.load(SeqCst) {
            return Err(item);
        }
        for slot in &self.slots {
            if self.put_in(slot, item).is_ok() {
                return Ok(());
            }
        }
        Err(item)
    }

    /// Stores `item` in `slot` if it is empty, then honours a racing
    /// `close`: `Err` hands `item` back to the caller.
    #[inline]
    fn put_in(&self, slot: &AtomicPtr<T>, item: NonNull<T>) -> Result<(), NonNull<T>> {
        slot.compare_exchange(ptr::null_mut(), item.as_ptr(), SeqCst, SeqCst)
            .map_err(|_| item)?;
        if self.closed.load(SeqCst)
            && slot
                .compare_exchange(item.as_ptr(), ptr::null_mut(), SeqCst, SeqCst)
                .is_ok()
        {
            // Closed meanwhile, and our handle (or an interchangeable one)
            // is still there: it is ours to dispose of.
            return Err(item);
        }
        Ok(())
    }

    /// The first spare `judge` lets be reused. Spares judged `Keep` go back
    /// to their slot (or to `discard` if it filled meanwhile or the slots
    /// closed); spares judged `Discard` go to `discard`.
    #[inline]
    pub fn take(
        &self,
        mut judge: impl FnMut(NonNull<T>) -> Verdict,
        mut discard: impl FnMut(NonNull<T>),
    ) -> Option<NonNull<T>> {
        for slot in &self.slots {
            let Some(item) = NonNull::new(slot.swap(ptr::null_mut(), SeqCst)) else {
                continue;
            };
            match judge(item) {
                Verdict::Reuse => return Some(item),
                Verdict::Keep => {
                    if let Err(item) = self.put_in(slot, item) {
                        discard(item);
                    }
                }
                Verdict::Discard => discard(item),
            }
        }
        None
    }

    /// Calls `f` with each spare held now, leaving it in its slot (a garbage
    /// collector's traversal), until `f` fails. An offer or take racing it
    /// may or may not be seen: the caller excludes them where it needs an
    /// exact answer (the binding counts its spare `Borrow`s in a
    /// collection, which runs with a GIL or a stopped world).
    pub fn peek<E>(&self, mut f: impl FnMut(NonNull<T>) -> Result<(), E>) -> Result<(), E> {
        for slot in &self.slots {
            if let Some(item) = NonNull::new(slot.load(SeqCst)) {
                f(item)?;
            }
        }
        Ok(())
    }

    /// Refuses every later offer and gives every spare to `discard`.
    pub fn close(&self, mut discard: impl FnMut(NonNull<T>)) {
        self.closed.store(true, SeqCst);
        for slot in &self.slots {
            if let Some(item) = NonNull::new(slot.swap(ptr::null_mut(), SeqCst)) {
                discard(item);
            }
        }
    }
}

/// Independent [`Spares`] per group of threads (see the module's
/// invariants).
#[derive(Debug)]
pub struct ShardedSpares<T> {
    groups: Box<[CachePadded<Spares<T>>]>,
}

impl<T> ShardedSpares<T> {
    /// `groups` groups (at least one).
    pub fn new(groups: usize) -> Self {
        ShardedSpares {
            groups: (0..groups.max(1))
                .map(|_| CachePadded::new(Spares::default()))
                .collect(),
        }
    }

    /// How many groups there are.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The calling thread's group.
    #[inline]
    pub fn local(&self) -> &Spares<T> {
        let (i, n) = (crate::shards::current().index, self.groups.len());
        // Thread indices are small (see `shards`): the division is rare.
        &self.groups[if i < n { i } else { i % n }]
    }

    /// Every group, for a traversal (see [`Spares::peek`]).
    pub fn all(&self) -> impl Iterator<Item = &Spares<T>> {
        self.groups.iter().map(|g| &**g)
    }

    /// Closes every group, giving every spare to `discard`.
    pub fn close(&self, mut discard: impl FnMut(NonNull<T>)) {
        for group in self.all() {
            group.close(&mut discard);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Three distinct items (the slots only keep, compare and hand back
    /// their pointers).
    fn items() -> [NonNull<u8>; 3] {
        static ITEMS: [u8; 3] = [1, 2, 3];
        ITEMS.each_ref().map(NonNull::from)
    }

    /// Spares holding `items`, offered in order.
    fn holding(items: &[NonNull<u8>]) -> Spares<u8> {
        let s = Spares::default();
        for &item in items {
            s.offer(item).unwrap();
        }
        s
    }

    #[test]
    fn keeps_two_and_hands_each_out_once() {
        let [a, b, c] = items();
        let s = Spares::default();
        assert_eq!(s.offer(a), Ok(()));
        assert_eq!(s.offer(b), Ok(()));
        assert_eq!(s.offer(c), Err(c), "two slots");
        let mut discarded = Vec::new();
        assert_eq!(s.take(|_| Verdict::Reuse, |d| discarded.push(d)), Some(a));
        assert_eq!(s.take(|_| Verdict::Reuse, |d| discarded.push(d)), Some(b));
        assert_eq!(s.take(|_| Verdict::Reuse, |d| discarded.push(d)), None);
        assert!(discarded.is_empty());
    }

    #[test]
    fn kept_spares_stay_and_discarded_ones_leave() {
        let [a, b, _] = items();
        let s = holding(&[a, b]);
        let mut discarded = Vec::new();
        let verdict = |h: NonNull<u8>| {
            if h == a {
                Verdict::Keep
            } else {
                Verdict::Discard
            }
        };
        assert_eq!(s.take(verdict, |d| discarded.push(d)), None);
        assert_eq!(discarded, vec![b]);
        assert_eq!(
            s.take(|_| Verdict::Reuse, |_| unreachable!()),
            Some(a),
            "kept"
        );
    }

    #[test]
    fn a_thread_takes_from_its_own_group_and_close_empties_every_group() {
        let [a, b, c] = items();
        let s = ShardedSpares::new(2);
        assert_eq!(s.groups(), 2);
        s.local().offer(a).unwrap();
        // Another thread usually lands on the other group (indices are
        // handed out round robin), but the outcome is the same either way.
        std::thread::scope(|t| {
            t.spawn(|| s.local().offer(items()[1]).unwrap())
                .join()
                .unwrap()
        });
        assert_eq!(
            s.local().take(|_| Verdict::Reuse, |_| unreachable!()),
            Some(a)
        );
        let mut discarded = Vec::new();
        s.close(|d| discarded.push(d));
        assert_eq!(discarded, vec![b], "the other thread's spare");
        assert_eq!(s.local().offer(c), Err(c), "closed");
        assert!(s
            .all()
            .all(|g| g.take(|_| Verdict::Reuse, |_| unreachable!()).is_none()));
    }

    #[test]
    fn close_empties_the_slots_and_refuses_offers() {
        let [a, b, _] = items();
        let s = holding(&[a]);
        let mut discarded = Vec::new();
        s.close(|d| discarded.push(d));
        assert_eq!(discarded, vec![a]);
        assert_eq!(s.offer(b), Err(b));
        assert_eq!(s.take(|_| Verdict::Reuse, |_| unreachable!()), None);
    }
}
