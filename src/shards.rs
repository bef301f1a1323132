//! Sharded, bounded idle storage, and the thread indices that pick a
//! thread's home shard.
//!
//! Invariants:
//! - A [`Shards`] holds `n >= 1` shards. Shard `i` stores at most `caps[i]`
//!   items, and the capacities add up to the `max_idle` it was built with, so
//!   the whole set never holds more than `max_idle` items. A shard whose
//!   capacity is zero has no queue at all.
//! - Every shard sits in its own [`CachePadded`] slot together with its
//!   [`ShardCounters`], so threads working on different shards share no cache line.
//! - Each shard is a crossbeam [`ArrayQueue`]: lock-free, multi-producer and
//!   multi-consumer. Any thread may push to or pop from any shard; the home
//!   shard is a locality preference, never an ownership claim.
//! - An item is in at most one queue, and `push`/`pop` move it, so the set
//!   never duplicates or loses an item: `push` gives the item back when every
//!   shard is full.
//! - Thread indices ([`IndexSet`]): at every moment each index is held by at
//!   most one live thread. A thread takes the lowest free index at its first
//!   call and frees it when it exits; freeing is a `Release` and taking an
//!   `Acquire` on the same bit, so everything the old holder did happens
//!   before anything the new one does. Index `i` owns the `owned` counter
//!   block of shard `i` (see `counters`), which relies on exactly this.
//!   Threads that work at the same time thus hold small, distinct indices,
//!   and up to `n` of them started together land on `n` distinct shards,
//!   whatever threads came and went before (a never-reused counter would
//!   hand two threads the same home shard whenever a third took an index
//!   between them, and leave the counter blocks of exited threads unowned).

#[cfg(not(loom))]
use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use crossbeam_utils::CachePadded;

use crate::counters::{Counters, ShardCounters, Tally};
use crate::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub use crate::sync::thread_index;
use crate::sync::ArrayQueue;

/// The index of a thread that no longer holds one (its thread-locals are
/// being destroyed as it exits): never a shard's owner.
pub const UNOWNED: usize = usize::MAX;

/// Reusable thread indices: one bit per index, set while a live thread
/// holds it. `WORDS * 64` indices are reused; beyond them (more threads alive
/// at once than that) indices come from a counter and are never reused.
pub struct IndexSet<const WORDS: usize> {
    held: [AtomicU64; WORDS],
    #[cfg(not(loom))]
    beyond: StdAtomicUsize,
    #[cfg(loom)]
    beyond: crate::sync::atomic::AtomicUsize,
}

impl<const WORDS: usize> IndexSet<WORDS> {
    /// The first index that is never reused.
    pub const REUSED: usize = WORDS * 64;

    #[cfg(not(loom))]
    pub const fn new() -> Self {
        IndexSet {
            held: [const { AtomicU64::new(0) }; WORDS],
            beyond: StdAtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        IndexSet {
            held: std::array::from_fn(|_| AtomicU64::new(0)),
            beyond: crate::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Takes the lowest index no one holds.
    pub fn acquire(&self) -> usize {
        for (w, word) in self.held.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != u64::MAX {
                let bit = (!bits).trailing_zeros();
                // Acquire: pairs with the `Release` of the thread that freed
                // this index, so its counts happen before ours.
                match word.compare_exchange_weak(
                    bits,
                    bits | 1 << bit,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return w * 64 + bit as usize,
                    Err(now) => bits = now,
                }
            }
        }
        Self::REUSED + self.beyond.fetch_add(1, Ordering::Relaxed)
    }

    /// Frees `index`, which the caller holds and will not use again.
    pub fn release(&self, index: usize) {
        if index < Self::REUSED {
            self.held[index / 64].fetch_and(!(1 << (index % 64)), Ordering::Release);
        }
    }
}

impl<const WORDS: usize> Default for IndexSet<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

/// The indices of the process's threads. 4096 reusable: more than the
/// [`crate::pool::MAX_SHARDS`] that indices ever own.
#[cfg(not(loom))]
static INDICES: IndexSet<64> = IndexSet::new();

/// The index of the calling thread: the lowest that no other live thread
/// holds, taken at the thread's first call and kept until it exits. Threads
/// that start using pools together get consecutive indices, so up to `n`
/// of them land on `n` distinct shards. [`UNOWNED`] once the thread's
/// thread-locals are being destroyed (a pool used from another
/// thread-local's destructor).
#[cfg(not(loom))]
#[inline]
pub fn thread_index() -> usize {
    struct Held(usize);
    impl Drop for Held {
        fn drop(&mut self) {
            INDICES.release(self.0);
        }
    }
    thread_local! {
        static HELD: Held = Held(INDICES.acquire());
    }
    HELD.try_with(|held| held.0).unwrap_or(UNOWNED)
}

/// The number of shards to use when the caller does not say.
pub fn default_shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub struct Shard<T> {
    idle: Option<ArrayQueue<T>>,
    counters: ShardCounters,
}

pub struct Shards<T> {
    shards: Box<[CachePadded<Shard<T>>]>,
}

impl<T> Shards<T> {
    /// `count` shards sharing `max_idle` slots as evenly as possible.
    ///
    /// # Panics
    /// If `count` is zero.
    pub fn new(count: usize, max_idle: usize) -> Self {
        assert!(count > 0, "a pool needs at least one shard");
        let (base, extra) = (max_idle / count, max_idle % count);
        let shards = (0..count)
            .map(|i| {
                let cap = base + usize::from(i < extra);
                CachePadded::new(Shard {
                    idle: (cap > 0).then(|| ArrayQueue::new(cap)),
                    counters: ShardCounters::default(),
                })
            })
            .collect();
        Shards { shards }
    }

    #[inline]
    pub fn count(&self) -> usize {
        self.shards.len()
    }

    /// The calling thread's home shard.
    #[inline]
    pub fn home(&self) -> usize {
        self.home_of(thread_index())
    }

    #[inline]
    fn home_of(&self, thread: usize) -> usize {
        let n = self.shards.len();
        // Threads are numbered from zero, so the division is rare.
        if thread < n {
            thread
        } else {
            thread % n
        }
    }

    /// The calling thread's home shard and its way of counting there.
    #[inline]
    pub fn local(&self) -> (usize, Tally<'_>) {
        let thread = thread_index();
        let home = self.home_of(thread);
        (home, self.shards[home].counters.tally(thread == home))
    }

    /// The calling thread's way of counting in shard `shard`: in the block
    /// it owns there if its index is `shard`, else in the shared one.
    #[inline]
    pub fn counters(&self, shard: usize) -> Tally<'_> {
        self.shards[shard].counters.tally(thread_index() == shard)
    }

    pub fn all_counters(&self) -> impl Iterator<Item = &Counters> + Clone {
        self.shards.iter().flat_map(|s| s.counters.blocks())
    }

    /// Shard indices starting at `home`, then its neighbours in ring order.
    #[inline]
    fn ring(&self, home: usize) -> impl Iterator<Item = usize> {
        let n = self.shards.len();
        (home..n).chain(0..home)
    }

    /// Takes an item from `home`, or steals one from another shard.
    #[inline]
    pub fn pop(&self, home: usize) -> Option<T> {
        if let Some(item) = self.shards[home].idle.as_ref().and_then(ArrayQueue::pop) {
            return Some(item);
        }
        self.ring(home)
            .skip(1)
            .find_map(|i| self.shards[i].idle.as_ref().and_then(ArrayQueue::pop))
    }

    /// Stores an item in `home`, or in the first other shard with room.
    /// Gives the item back when every shard is full.
    #[inline]
    pub fn push(&self, home: usize, item: T) -> Result<(), T> {
        let mut item = item;
        for i in self.ring(home) {
            if let Some(queue) = &self.shards[i].idle {
                match queue.push(item) {
                    Ok(()) => return Ok(()),
                    Err(back) => item = back,
                }
            }
        }
        Err(item)
    }

    /// Items currently stored (a moment's reading under concurrency).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.idle.as_ref())
            .map(ArrayQueue::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total capacity, the `max_idle` the set was built with.
    pub fn capacity(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.idle.as_ref())
            .map(ArrayQueue::capacity)
            .sum()
    }

    /// Removes every stored item, shard by shard (oldest first within a shard).
    pub fn drain(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        for queue in self.shards.iter().filter_map(|s| s.idle.as_ref()) {
            while let Some(item) = queue.pop() {
                out.push(item);
            }
        }
        out
    }

    /// Shows every stored item to `f`, shard by shard, and leaves each where
    /// it was, in the same order. Queues cannot be iterated, so each shard is
    /// emptied and refilled: the caller must make sure that no other thread
    /// uses the set meanwhile (the Python binding calls this from the
    /// garbage collector, while every thread that could is held off), else
    /// items could be seen twice or missed, though never lost: anything that
    /// does not fit back is returned.
    pub fn visit<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> (Result<(), E>, Vec<T>) {
        let mut result = Ok(());
        let mut homeless = Vec::new();
        for queue in self.shards.iter().filter_map(|s| s.idle.as_ref()) {
            let items: Vec<T> = std::iter::from_fn(|| queue.pop()).collect();
            for item in items {
                if result.is_ok() {
                    result = f(&item);
                }
                if let Err(item) = queue.push(item) {
                    homeless.push(item);
                }
            }
        }
        (result, homeless)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn capacity_is_split_evenly_and_adds_up() {
        let s: Shards<u32> = Shards::new(3, 10);
        assert_eq!(s.capacity(), 10);
        let caps: Vec<_> = s
            .shards
            .iter()
            .map(|s| s.idle.as_ref().map_or(0, ArrayQueue::capacity))
            .collect();
        assert_eq!(caps, vec![4, 3, 3]);
    }

    #[test]
    fn fewer_slots_than_shards_leaves_empty_shards_usable() {
        let s: Shards<u32> = Shards::new(4, 1);
        assert_eq!(s.capacity(), 1);
        // Whatever the home shard, the one slot is found.
        for home in 0..4 {
            assert!(s.push(home, 7).is_ok());
            assert_eq!(s.push(home, 8), Err(8));
            assert_eq!(s.pop(home), Some(7));
            assert_eq!(s.pop(home), None);
        }
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let s: Shards<u32> = Shards::new(2, 0);
        assert_eq!(s.push(0, 1), Err(1));
        assert_eq!(s.pop(1), None);
    }

    #[test]
    fn push_prefers_home_then_spills_and_pop_steals() {
        let s: Shards<u32> = Shards::new(2, 4);
        for v in 0..4 {
            s.push(1, v).unwrap();
        }
        // Home shard 1 took 2 and 3 spilled into shard 0.
        assert_eq!(s.shards[1].idle.as_ref().unwrap().len(), 2);
        assert_eq!(s.shards[0].idle.as_ref().unwrap().len(), 2);
        assert_eq!(s.push(0, 9), Err(9));
        // Shard 0 pops its own first, then steals from shard 1.
        let got: Vec<_> = std::iter::from_fn(|| s.pop(0)).collect();
        assert_eq!(got, vec![2, 3, 0, 1]);
        assert!(s.is_empty());
    }

    #[test]
    fn home_is_stable_per_thread_and_within_range() {
        let s: Shards<u32> = Shards::new(3, 3);
        let h = s.home();
        assert!(h < 3);
        assert_eq!(h, s.home());
        // Threads alive at the same time hold distinct indices.
        let barrier = Arc::new(std::sync::Barrier::new(6));
        let indices: std::collections::HashSet<usize> = (0..6)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let index = thread_index();
                    barrier.wait();
                    assert_eq!(thread_index(), index, "an index is kept for life");
                    index
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(indices.len(), 6, "each live thread has its own index");
        assert!(!indices.contains(&thread_index()));
    }

    #[test]
    fn indices_are_the_lowest_free_and_reused_after_release() {
        let set: IndexSet<2> = IndexSet::new();
        let taken: Vec<usize> = (0..5).map(|_| set.acquire()).collect();
        assert_eq!(taken, [0, 1, 2, 3, 4]);
        set.release(3);
        set.release(1);
        assert_eq!((set.acquire(), set.acquire(), set.acquire()), (1, 3, 5));
        // Across a word boundary, and past the reusable range.
        let more: Vec<usize> = (0..122).map(|_| set.acquire()).collect();
        assert_eq!(more, (6..128).collect::<Vec<_>>());
        assert_eq!(set.acquire(), IndexSet::<2>::REUSED);
        assert_eq!(set.acquire(), IndexSet::<2>::REUSED + 1);
        set.release(IndexSet::<2>::REUSED); // never reused: no effect
        set.release(64);
        assert_eq!(set.acquire(), 64);
        assert_eq!(set.acquire(), IndexSet::<2>::REUSED + 2);
    }

    #[test]
    fn two_threads_started_together_get_distinct_homes_whatever_came_before() {
        // Threads come and go, leaving holes below the highest index taken;
        // the next two fill the lowest holes, which are consecutive here.
        let set = Arc::new(IndexSet::<1>::new());
        let main = set.acquire();
        assert_eq!(main, 0);
        let early: Vec<usize> = (0..5).map(|_| set.acquire()).collect();
        assert_eq!(early, [1, 2, 3, 4, 5]);
        set.release(2);
        set.release(1);
        set.release(4);
        let s: Shards<u32> = Shards::new(2, 2);
        let pair: Vec<usize> = (0..2)
            .map(|_| {
                let set = Arc::clone(&set);
                std::thread::spawn(move || set.acquire())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let mut sorted = pair.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2]);
        assert_ne!(s.home_of(pair[0]), s.home_of(pair[1]));
    }

    #[test]
    fn an_exited_threads_counter_block_passes_to_the_next_holder_of_its_index() {
        let set = Arc::new(IndexSet::<1>::new());
        let counters = Arc::new(ShardCounters::default());
        for _ in 0..4 {
            let (set, counters) = (Arc::clone(&set), Arc::clone(&counters));
            std::thread::spawn(move || {
                let index = set.acquire();
                assert_eq!(index, 0, "the index freed by the last thread");
                for _ in 0..1000 {
                    counters.tally(index == 0).bump(crate::counters::Event::Put);
                }
                set.release(index);
            })
            .join()
            .unwrap();
        }
        let [owned, shared] = counters.blocks();
        assert_eq!(crate::counters::Snapshot::merge([owned]).puts, 4000);
        assert_eq!(crate::counters::Snapshot::merge([shared]).puts, 0);
    }

    #[test]
    fn a_thread_that_exits_frees_its_index() {
        // Another test's threads may take the freed index at once, so this
        // only checks that some thread can: spawn until one gets it back.
        let first = std::thread::spawn(thread_index).join().unwrap();
        let again = (0..1000).any(|_| std::thread::spawn(thread_index).join().unwrap() == first);
        assert!(again, "index {first} was never handed out again");
    }

    #[test]
    fn visit_sees_everything_and_changes_nothing() {
        let s: Shards<u32> = Shards::new(2, 6);
        for v in 0..5 {
            s.push(v as usize % 2, v).unwrap();
        }
        let mut seen = Vec::new();
        let (result, homeless) = s.visit(|&v| {
            seen.push(v);
            Ok::<(), ()>(())
        });
        assert_eq!((result, homeless.len()), (Ok(()), 0));
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        // Same shards, same order.
        assert_eq!(
            std::iter::from_fn(|| s.pop(0)).take(3).collect::<Vec<_>>(),
            vec![0, 2, 4]
        );
        // An error stops the visit but everything stays stored.
        let (result, _) = s.visit(|_| Err("stop"));
        assert_eq!(result, Err("stop"));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn concurrent_push_pop_never_loses_or_duplicates() {
        const THREADS: usize = 4;
        const PER: usize = 10_000;
        let s = Arc::new(Shards::<usize>::new(THREADS, 64));
        let taken: Vec<Vec<usize>> = (0..THREADS)
            .map(|t| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let home = s.home();
                    let mut mine = Vec::new();
                    let mut overflow = Vec::new();
                    for k in 0..PER {
                        if let Err(v) = s.push(home, t * PER + k) {
                            overflow.push(v);
                        }
                        if k % 2 == 0 {
                            mine.extend(s.pop(home));
                        }
                    }
                    mine.extend(overflow);
                    mine
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        let mut all: Vec<usize> = taken.into_iter().flatten().chain(s.drain()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..THREADS * PER).collect::<Vec<_>>());
    }
}
