//! Sharded, bounded idle storage, and the thread indices that pick a
//! thread's home shard and its counters.
//!
//! Invariants:
//! - A [`Shards`] holds `n >= 1` shards. Shard `i` stores at most `caps[i]`
//!   items, and the capacities add up to the `max_idle` it was built with, so
//!   the whole set never holds more than `max_idle` items. A shard whose
//!   capacity is zero has no queue at all.
//! - Every shard sits in its own [`CachePadded`] slot, so threads working on
//!   different shards share no cache line; each thread counts in a block of
//!   its own ([`ThreadCounters`]).
//! - Each shard is a crossbeam [`ArrayQueue`]: lock-free, multi-producer and
//!   multi-consumer. Any thread may push to or pop from any shard; the home
//!   shard is a locality preference, never an ownership claim.
//! - An item is in at most one queue, and `push`/`pop` move it, so the set
//!   never duplicates or loses an item: `push` gives the item back when every
//!   shard is full.
//! - Thread indices ([`IndexSet`]): at every moment each index is held by at
//!   most one live thread. A thread takes one at its first call and frees it
//!   when it exits; freeing is a `Release` and taking an `Acquire` on the
//!   same bit, so everything the old holder did happens before anything the
//!   new one does. Index `i` owns counter block `i` of every pool (see
//!   `counters`), which relies on exactly this.
//! - A new thread takes the lowest free index in the next residue class,
//!   modulo the default shard count, round robin: threads that start
//!   together land on distinct shards of a default pool (up to `n` of them
//!   on `n` shards), as with a counter, whatever threads came and went
//!   before, and indices stay small, so that per-index counter blocks stay
//!   few. (Taking the lowest free index would give two threads the same
//!   home whenever the holes left by exited threads have one parity; a
//!   never-reused counter left the counter blocks of exited threads to
//!   nobody, and grew without bound.)

#[cfg(not(loom))]
use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use crossbeam_utils::CachePadded;

use crate::counters::{Counters, Place, Tally, ThreadCounters};
use crate::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use crate::sync::thread_index;
use crate::sync::ArrayQueue;

/// The index of a thread that no longer holds one (its thread-locals are
/// being destroyed as it exits): never a shard's owner.
#[cfg(not(loom))]
pub(crate) const UNOWNED: usize = usize::MAX;

/// Reusable thread indices: one bit per index, set while a live thread
/// holds it. `WORDS * 64` indices are reused; beyond them (more threads alive
/// at once than that) indices come from a counter and are never reused.
pub(crate) struct IndexSet<const WORDS: usize> {
    held: [AtomicU64; WORDS],
    #[cfg(not(loom))]
    next_class: StdAtomicUsize,
    #[cfg(loom)]
    next_class: crate::sync::atomic::AtomicUsize,
    #[cfg(not(loom))]
    beyond: StdAtomicUsize,
    #[cfg(loom)]
    beyond: crate::sync::atomic::AtomicUsize,
}

impl<const WORDS: usize> IndexSet<WORDS> {
    /// The first index that is never reused.
    pub(crate) const REUSED: usize = WORDS * 64;

    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        IndexSet {
            held: [const { AtomicU64::new(0) }; WORDS],
            next_class: StdAtomicUsize::new(0),
            beyond: StdAtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        IndexSet {
            held: std::array::from_fn(|_| AtomicU64::new(0)),
            next_class: crate::sync::atomic::AtomicUsize::new(0),
            beyond: crate::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Takes the lowest free index in the next residue class modulo
    /// `classes`, round robin: threads that start together take
    /// consecutive classes. The lowest free index of all when that class
    /// has none.
    pub(crate) fn acquire(&self, classes: usize) -> usize {
        let classes = classes.max(1);
        let class = self.next_class.fetch_add(1, Ordering::Relaxed) % classes;
        self.take(|index| index % classes == class)
            .or_else(|| self.take(|_| true))
            .unwrap_or_else(|| Self::REUSED + self.beyond.fetch_add(1, Ordering::Relaxed))
    }

    /// Takes the lowest free index that `fits`, if any.
    fn take(&self, fits: impl Fn(usize) -> bool) -> Option<usize> {
        for (w, word) in self.held.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            'word: loop {
                let mut free = !bits;
                while free != 0 {
                    let bit = free.trailing_zeros() as usize;
                    free &= free - 1;
                    if !fits(w * 64 + bit) {
                        continue;
                    }
                    // Acquire: pairs with the `Release` of the thread that
                    // freed this index, so its counts happen before ours.
                    match word.compare_exchange(
                        bits,
                        bits | 1 << bit,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return Some(w * 64 + bit),
                        Err(now) => {
                            bits = now;
                            continue 'word;
                        }
                    }
                }
                break;
            }
        }
        None
    }

    /// Frees `index`, which the caller holds and will not use again.
    pub(crate) fn release(&self, index: usize) {
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

/// The indices of the process's threads, 4096 of them reusable.
#[cfg(not(loom))]
static INDICES: IndexSet<64> = IndexSet::new();

/// A thread's index and where it counts, worked out once per thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ThreadSlot {
    pub index: usize,
    pub place: Place,
}

impl ThreadSlot {
    pub(crate) const fn new(index: usize) -> Self {
        ThreadSlot {
            index,
            place: Place::of(index),
        }
    }
}

/// The calling thread's slot: its index, taken at its first call and kept
/// until it exits, the lowest free one in the next residue class modulo
/// [`default_shard_count`], round robin, so threads that start together
/// land on distinct shards of a default pool (up to `n` of them on `n`).
/// Index [`UNOWNED`] once the thread's thread-locals are being destroyed
/// (a pool used from another thread-local's destructor).
#[cfg(not(loom))]
#[inline]
pub(crate) fn current() -> ThreadSlot {
    struct Held(ThreadSlot);
    impl Drop for Held {
        fn drop(&mut self) {
            INDICES.release(self.0.index);
        }
    }
    thread_local! {
        static HELD: Held = Held(ThreadSlot::new(INDICES.acquire(default_shard_count())));
    }
    HELD.try_with(|held| held.0)
        .unwrap_or(const { ThreadSlot::new(UNOWNED) })
}

/// Under loom: the loom thread's index (see `crate::sync::thread_index`).
#[cfg(loom)]
pub(crate) fn current() -> ThreadSlot {
    ThreadSlot::new(thread_index())
}

/// The index of the calling thread (see [`current`]).
#[cfg(not(loom))]
#[inline]
pub(crate) fn thread_index() -> usize {
    current().index
}

/// Whether this build's callers never run at once, known at compile time:
/// the abi3 binding, a wheel for CPython with a GIL only (no free-threaded
/// CPython loads an abi3 wheel). The idle budget and the calibrator test
/// it before their per-thread-group paths, so there those paths fold away
/// (a runtime test cost a block's get+release 12 instructions). Pure-Rust
/// builds (no `python` feature, whatever `abi3` says) keep the groups.
pub(crate) const SERIALIZED_BUILD: bool = cfg!(all(feature = "python", feature = "abi3"));

/// Whether the pools made from now on may assume that their callers never
/// run at once (see [`set_callers_serialized`]).
#[cfg(all(feature = "python", not(feature = "abi3")))]
static SERIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Tells the pools made from now on whether their callers never run at
/// once: the non-abi3 binding, loaded by a CPython with a GIL, says so at
/// import. Such pools keep one idle-budget count and one set of
/// calibration counts instead of one per thread group, which only cost
/// instructions when nothing runs in parallel. Only a matter of speed:
/// every protocol is correct either way.
#[cfg(all(feature = "python", not(feature = "abi3")))]
pub(crate) fn set_callers_serialized(serialized: bool) {
    SERIALIZED.store(serialized, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the pools made now may assume serialized callers: always in the
/// abi3 binding ([`SERIALIZED_BUILD`]), as the binding said at import in
/// the non-abi3 one, never without the binding.
pub(crate) fn callers_serialized() -> bool {
    #[cfg(all(feature = "python", not(feature = "abi3")))]
    if SERIALIZED.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    SERIALIZED_BUILD
}

/// The number of shards to use when the caller does not say: the number of
/// CPUs this process may use, read once (it reads cgroup files).
pub(crate) fn default_shard_count() -> usize {
    // Helgrind's build reads it through the annotated `OnceLock`: std's
    // publishes with a futex, which Helgrind does not see.
    #[cfg(shardpool_helgrind)]
    static COUNT: crate::sync::OnceLock<usize> = crate::sync::OnceLock::new();
    #[cfg(not(shardpool_helgrind))]
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

pub(crate) struct Shard<T> {
    idle: Option<ArrayQueue<T>>,
}

/// Where a batch (`get_many`, `put_many`) is in its one walk of the
/// shards: the shard it tries next. A shard found empty (or full) is not
/// tried again by the same batch, so a batch larger than its home shard
/// tries the home once, not once an item. (Each failed try of a crossbeam
/// queue costs a `SeqCst` fence and about 20 instructions, and the steal
/// or spill after it a walk of the ring from the home: for a batch of 64
/// in two shards of 32, about 45 instructions an object.) Items another
/// thread stores meanwhile in a shard the walk has passed are left for the
/// next call, as a single `get` that has looked leaves them.
pub(crate) struct Walk {
    home: usize,
    at: usize,
    done: bool,
}

pub(crate) struct Shards<T> {
    shards: Box<[CachePadded<Shard<T>>]>,
    counters: ThreadCounters,
}

impl<T> Shards<T> {
    /// `count` shards sharing `max_idle` slots as evenly as possible.
    ///
    /// # Panics
    /// If `count` is zero.
    pub(crate) fn new(count: usize, max_idle: usize) -> Self {
        assert!(count > 0, "a pool needs at least one shard");
        let (base, extra) = (max_idle / count, max_idle % count);
        let shards = (0..count)
            .map(|i| {
                let cap = base + usize::from(i < extra);
                CachePadded::new(Shard {
                    idle: (cap > 0).then(|| ArrayQueue::new(cap)),
                })
            })
            .collect();
        Shards {
            shards,
            counters: ThreadCounters::default(),
        }
    }

    #[inline]
    pub(crate) fn count(&self) -> usize {
        self.shards.len()
    }

    /// The calling thread's home shard.
    #[inline]
    pub(crate) fn home(&self) -> usize {
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

    /// The calling thread's home shard and its way of counting.
    #[inline]
    pub(crate) fn local(&self) -> (usize, Tally<'_>) {
        let me = current();
        (self.home_of(me.index), self.counters.tally(me.place))
    }

    /// The calling thread's way of counting. Counters are per thread, not
    /// per shard: `_shard` (where the event happened) does not matter.
    #[inline]
    pub(crate) fn counters(&self, _shard: usize) -> Tally<'_> {
        self.counters.tally(current().place)
    }

    pub(crate) fn all_counters(&self) -> impl Iterator<Item = &Counters> + Clone {
        self.counters.blocks()
    }

    /// Shard indices starting at `home`, then its neighbours in ring order.
    #[inline]
    fn ring(&self, home: usize) -> impl Iterator<Item = usize> {
        let n = self.shards.len();
        (home..n).chain(0..home)
    }

    /// Takes an item from `home`, or steals one from another shard.
    #[inline]
    pub(crate) fn pop(&self, home: usize) -> Option<T> {
        if let Some(item) = self.shards[home].idle.as_ref().and_then(ArrayQueue::pop) {
            return Some(item);
        }
        self.steal(home)
    }

    /// Takes an item from a shard other than `home`. Out of line: it keeps
    /// `pop`, inlined into every get, small.
    #[inline(never)]
    fn steal(&self, home: usize) -> Option<T> {
        self.ring(home)
            .skip(1)
            .find_map(|i| self.shards[i].idle.as_ref().and_then(ArrayQueue::pop))
    }

    /// Stores an item in `home`, or in the first other shard with room.
    /// Gives the item back when every shard is full.
    #[inline]
    pub(crate) fn push(&self, home: usize, item: T) -> Result<(), T> {
        match &self.shards[home].idle {
            Some(queue) => match queue.push(item) {
                Ok(()) => Ok(()),
                Err(item) => self.spill(home, item),
            },
            None => self.spill(home, item),
        }
    }

    /// Stores an item in the first shard after `home` with room. Out of
    /// line, as `steal` is: the ring walk inlined into every put cost it
    /// about 20 instructions (callgrind), even when the home shard had room.
    #[inline(never)]
    fn spill(&self, home: usize, item: T) -> Result<(), T> {
        let mut item = item;
        for i in self.ring(home).skip(1) {
            if let Some(queue) = &self.shards[i].idle {
                match queue.push(item) {
                    Ok(()) => return Ok(()),
                    Err(back) => item = back,
                }
            }
        }
        Err(item)
    }

    /// A batch's walk of the shards, from `home` (see [`Walk`]).
    #[inline]
    pub(crate) fn walk(&self, home: usize) -> Walk {
        Walk {
            home,
            at: home,
            done: false,
        }
    }

    /// Takes an item from the walk's shard, else from the shards after it
    /// in ring order (up to the walk's home); `None` once all were empty,
    /// and the walk is over.
    #[inline]
    pub(crate) fn pop_on(&self, walk: &mut Walk) -> Option<T> {
        while !walk.done {
            if let Some(item) = self.shards[walk.at].idle.as_ref().and_then(ArrayQueue::pop) {
                return Some(item);
            }
            self.step(walk);
        }
        None
    }

    /// Stores an item in the walk's shard, else in the first shard after it
    /// in ring order (up to the walk's home) with room; gives it back once
    /// all were full, and the walk is over.
    #[inline]
    pub(crate) fn push_on(&self, walk: &mut Walk, mut item: T) -> Result<(), T> {
        while !walk.done {
            if let Some(queue) = &self.shards[walk.at].idle {
                match queue.push(item) {
                    Ok(()) => return Ok(()),
                    Err(back) => item = back,
                }
            }
            self.step(walk);
        }
        Err(item)
    }

    /// Moves a walk to the next shard in ring order; over when back home.
    #[inline]
    fn step(&self, walk: &mut Walk) {
        walk.at = if walk.at + 1 == self.shards.len() {
            0
        } else {
            walk.at + 1
        };
        walk.done = walk.at == walk.home;
    }

    /// Whether shard `shard` holds an item (a moment's reading).
    #[inline]
    pub(crate) fn holds(&self, shard: usize) -> bool {
        self.shards[shard]
            .idle
            .as_ref()
            .is_some_and(|queue| !queue.is_empty())
    }

    /// Items currently stored (a moment's reading under concurrency).
    pub(crate) fn len(&self) -> usize {
        self.queues().map(ArrayQueue::len).sum()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total capacity, the `max_idle` the set was built with.
    pub(crate) fn capacity(&self) -> usize {
        self.queues().map(ArrayQueue::capacity).sum()
    }

    /// The shards' queues (a shard of capacity 0 has none).
    fn queues(&self) -> impl Iterator<Item = &ArrayQueue<T>> {
        self.shards.iter().filter_map(|s| s.idle.as_ref())
    }

    /// Removes every stored item, shard by shard (oldest first within a shard).
    pub(crate) fn drain(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        for queue in self.queues() {
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
    pub(crate) fn visit<E>(
        &self,
        mut f: impl FnMut(&T) -> Result<(), E>,
    ) -> (Result<(), E>, Vec<T>) {
        let mut result = Ok(());
        let mut homeless = Vec::new();
        for queue in self.queues() {
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
    fn a_walk_tries_each_shard_once_in_ring_order_from_its_home() {
        let s: Shards<u32> = Shards::new(3, 6);
        let lens = |s: &Shards<u32>| -> Vec<usize> {
            s.shards
                .iter()
                .map(|s| s.idle.as_ref().map_or(0, ArrayQueue::len))
                .collect()
        };
        let mut walk = s.walk(1);
        for v in 0..6 {
            s.push_on(&mut walk, v).unwrap();
        }
        // Shard 1 filled first, then 2, then 0.
        assert_eq!(lens(&s), [2, 2, 2]);
        assert_eq!(s.push_on(&mut walk, 6), Err(6));
        // Over: with room again, this walk stores nothing more.
        assert_eq!(s.pop(0), Some(4));
        assert_eq!(s.push_on(&mut walk, 7), Err(7));
        assert_eq!(lens(&s), [1, 2, 2]);
        // A walk from shard 2 empties it, then 0, then 1.
        let mut walk = s.walk(2);
        let got: Vec<_> = std::iter::from_fn(|| s.pop_on(&mut walk)).collect();
        assert_eq!(got, [2, 3, 5, 0, 1]);
        // Over: an item stored meanwhile is left for the next call.
        s.push(2, 9).unwrap();
        assert_eq!(s.pop_on(&mut walk), None);
        assert_eq!(s.pop(2), Some(9));
    }

    #[test]
    fn a_walk_does_not_go_back_to_a_shard_it_passed() {
        let s: Shards<u32> = Shards::new(2, 4);
        s.push(1, 1).unwrap();
        let mut walk = s.walk(0);
        // Shard 0 was empty: the walk moved on to shard 1.
        assert_eq!(s.pop_on(&mut walk), Some(1));
        s.push(0, 2).unwrap();
        assert_eq!(s.pop_on(&mut walk), None);
        // A walk of a shard with no queue passes it.
        let s: Shards<u32> = Shards::new(3, 1);
        let mut walk = s.walk(1);
        assert_eq!(s.push_on(&mut walk, 5), Ok(()));
        assert_eq!(s.push_on(&mut walk, 6), Err(6));
        assert_eq!(s.pop(2), Some(5));
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
        // One class: plain lowest-free.
        let set: IndexSet<2> = IndexSet::new();
        let taken: Vec<usize> = (0..5).map(|_| set.acquire(1)).collect();
        assert_eq!(taken, [0, 1, 2, 3, 4]);
        set.release(3);
        set.release(1);
        assert_eq!((set.acquire(1), set.acquire(1), set.acquire(1)), (1, 3, 5));
        // Across a word boundary, and past the reusable range.
        let more: Vec<usize> = (0..122).map(|_| set.acquire(1)).collect();
        assert_eq!(more, (6..128).collect::<Vec<_>>());
        assert_eq!(set.acquire(1), IndexSet::<2>::REUSED);
        assert_eq!(set.acquire(1), IndexSet::<2>::REUSED + 1);
        set.release(IndexSet::<2>::REUSED); // never reused: no effect
        set.release(64);
        assert_eq!(set.acquire(1), 64);
        assert_eq!(set.acquire(1), IndexSet::<2>::REUSED + 2);
    }

    #[test]
    fn classes_are_taken_round_robin_and_each_its_lowest_free_index() {
        let set: IndexSet<1> = IndexSet::new();
        let taken: Vec<usize> = (0..6).map(|_| set.acquire(3)).collect();
        assert_eq!(taken, [0, 1, 2, 3, 4, 5]);
        set.release(4);
        set.release(1);
        set.release(0);
        // Next classes: 0, 1, 2, 0, 1.
        let again: Vec<usize> = (0..5).map(|_| set.acquire(3)).collect();
        assert_eq!(again, [0, 1, 8, 6, 4]);
        // A class with no free index left takes the lowest free one.
        let full: IndexSet<1> = IndexSet::new();
        for _ in 0..64 {
            full.acquire(1);
        }
        full.release(5);
        full.release(9);
        assert_eq!(full.acquire(2), 5, "class 0 has none free");
        assert_eq!(full.acquire(2), 9);
    }

    #[test]
    fn threads_started_together_get_distinct_homes_whatever_came_before() {
        // The main thread and a long-lived thread hold indices of one
        // parity, and threads came and went: the next two still land on
        // different shards of a two-shard pool.
        for before in 0..6 {
            let set = Arc::new(IndexSet::<1>::new());
            let main = set.acquire(2);
            let churn: Vec<usize> = (0..before).map(|_| set.acquire(2)).collect();
            let resident = set.acquire(2);
            for index in churn {
                set.release(index);
            }
            let s: Shards<u32> = Shards::new(2, 2);
            let pair: Vec<usize> = (0..2)
                .map(|_| {
                    let set = Arc::clone(&set);
                    std::thread::spawn(move || set.acquire(2))
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_ne!(
                s.home_of(pair[0]),
                s.home_of(pair[1]),
                "{before} came and went"
            );
            assert!(pair.iter().all(|&i| i != main && i != resident && i < 8));
        }
    }

    #[test]
    fn an_exited_threads_counter_block_passes_to_the_next_holder_of_its_index() {
        let set = Arc::new(IndexSet::<1>::new());
        let counters = Arc::new(ThreadCounters::default());
        for _ in 0..4 {
            let (set, counters) = (Arc::clone(&set), Arc::clone(&counters));
            std::thread::spawn(move || {
                let index = set.acquire(1);
                assert_eq!(index, 0, "the index freed by the last thread");
                for _ in 0..1000 {
                    counters
                        .tally(Place::of(index))
                        .bump(crate::counters::Event::Put);
                }
                set.release(index);
            })
            .join()
            .unwrap();
        }
        let blocks: Vec<&Counters> = counters.blocks().collect();
        assert_eq!(blocks.len(), 2, "index 0's block and the shared one");
        assert_eq!(crate::counters::Snapshot::merge([blocks[0]]).puts, 4000);
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
