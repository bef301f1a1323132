//! Sharded idle storage and its counters (`shards.rs`, `counters.rs`), on
//! the loom port of crossbeam's `ArrayQueue` (see `crate::sync`).
//!
//! For every interleaving within the bound these models prove:
//! - pushes that spill over to a neighbour shard and pops that steal from
//!   one never lose or duplicate an item: what the threads popped, what
//!   `push` gave back as not fitting, and what is left add up to exactly the
//!   items pushed;
//! - a push finds room in another shard when its home is full, and a pop
//!   finds an item in another shard when its home is empty, also when two
//!   threads race for that room or that item;
//! - the stored count never exceeds `max_idle`, and `len` is exact once the
//!   threads are joined;
//! - each thread counts on its home shard only, and the merged counters are
//!   exact once the threads are joined;
//! - thread indices: two threads taking indices at once get distinct ones,
//!   and an index freed by one thread and taken by the next passes the
//!   owned counter block with it: the new holder's plain (non-atomic)
//!   increments continue from the old holder's last count, none lost;
//! - a merge never counts an object as out twice: while one thread returns
//!   the pool's only object in its shard and another takes it in its own,
//!   a concurrent merge sees `in_use <= 1` (the gets are read before the
//!   puts, and a get seen brings its object's put into view).

use loom::sync::Arc;
use loom::thread;

use super::Bound::Exhaustive;
use super::{check, spawn_with};
use crate::counters::{Event, Place, Snapshot, ThreadCounters, OWN_BLOCKS};
use crate::shards::{IndexSet, Shards};

/// One thread's push then pop on its home shard, counting both.
fn push_then_pop(shards: &Shards<u32>, item: u32) -> (Option<u32>, Option<u32>) {
    let home = shards.home();
    let counters = shards.counters(home);
    let refused = match shards.push(home, item) {
        Ok(()) => {
            counters.bump(Event::Put);
            None
        }
        Err(item) => {
            counters.bump(Event::Dropped);
            Some(item)
        }
    };
    let popped = shards.pop(home);
    if popped.is_some() {
        counters.bump(Event::Hit);
    }
    (refused, popped)
}

/// Two shards of one slot each, one already filled: two threads push and
/// pop at once (the second push must spill, or be refused once both shards
/// are full; a pop may steal the other shard's item).
#[test]
fn spill_and_steal_never_lose_or_duplicate() {
    check(Exhaustive, || {
        let shards = Arc::new(Shards::<u32>::new(2, 2));
        // The main thread is thread 0: its home is shard 0.
        assert_eq!(shards.home(), 0);
        shards.push(0, 0).unwrap();
        let threads: Vec<_> = (1..3)
            .map(|item| {
                spawn_with(&shards, move |shards| {
                    assert!(shards.len() <= 2);
                    push_then_pop(&shards, item)
                })
            })
            .collect();
        let mut all = Vec::new();
        let (mut puts, mut dropped, mut hits) = (0, 0, 0);
        for t in threads {
            let (refused, popped) = t.join().unwrap();
            puts += u64::from(refused.is_none());
            dropped += u64::from(refused.is_some());
            hits += u64::from(popped.is_some());
            all.extend(refused.into_iter().chain(popped));
        }
        let left = shards.len();
        assert!(left <= 2);
        let drained = shards.drain();
        assert_eq!(drained.len(), left);
        all.extend(drained);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2], "every item exactly once");
        // Each thread counted on its home shard, in the block it owns or
        // the shared one: the merge is exact either way.
        let s = Snapshot::merge(shards.all_counters());
        assert_eq!((s.puts, s.dropped, s.hits), (puts, dropped, hits));
    });
}

/// Two threads push at once into the same full-to-be home shard: the
/// second spills over to the free one, so neither is refused.
#[test]
fn concurrent_pushes_spill_to_the_free_shard() {
    check(Exhaustive, || {
        let shards = Arc::new(Shards::<u32>::new(2, 2));
        let threads: Vec<_> = (1..3)
            .map(|item| spawn_with(&shards, move |shards| shards.push(0, item)))
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(()));
        }
        assert_eq!(shards.len(), 2);
        let mut all = shards.drain();
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
    });
}

/// One item in shard 1, two thieves whose home is shard 0: exactly one
/// steals it.
#[test]
fn one_item_is_stolen_once() {
    check(Exhaustive, || {
        let shards = Arc::new(Shards::<u32>::new(2, 2));
        shards.push(1, 7).unwrap();
        let threads: Vec<_> = (0..2)
            .map(|_| spawn_with(&shards, move |shards| shards.pop(0)))
            .collect();
        let got: Vec<_> = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(got, [7]);
        assert!(shards.is_empty());
    });
}

/// Three threads, one reusable index word: the first holds an index for its
/// life; each of the other two takes one, counts twice in its block and
/// frees it, so the third takes the freed one (or a fresh one if it came
/// first) and counts in the same block. Indices held at once are distinct,
/// and a block loses no count across the hand-over.
#[test]
fn an_index_and_its_counter_block_pass_between_threads_without_a_lost_count() {
    check(Exhaustive, || {
        let set = Arc::new(IndexSet::<1>::new());
        let counters = Arc::new(ThreadCounters::default());
        let resident = set.acquire(1);
        assert_eq!(resident, 0);
        counters.tally(Place::of(resident)); // allocates block 0: block 1 is the second
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (set, counters) = (Arc::clone(&set), Arc::clone(&counters));
                thread::spawn(move || {
                    let index = set.acquire(1);
                    assert_ne!(index, resident);
                    counters.tally(Place::of(index)).bump(Event::Put);
                    counters.tally(Place::of(index)).bump(Event::Put);
                    set.release(index);
                    index
                })
            })
            .collect();
        let indices: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(indices.iter().all(|&i| i == 1 || i == 2));
        assert_eq!(Snapshot::merge(counters.blocks()).puts, 4);
        // Block 1 (the first of bucket 1) has the counts of index 1's holders.
        let block_1 = counters.blocks().nth(1).unwrap();
        let by_index_1 = 2 * indices.iter().filter(|&&i| i == 1).count() as u64;
        assert_eq!(Snapshot::merge([block_1]).puts, by_index_1);
    });
}

/// The pool's one object moves from thread X to thread Y through a flag
/// standing in for the queue (a `Release` push and an `Acquire` pop, as
/// crossbeam's): X counts its put before it lets go, Y its hit after it has
/// the object. X counts in its own block, read first; Y, with an index
/// beyond the per-thread blocks, in the shared one, read last (an atomic
/// add: loom explores a thread's plain load-and-store too little to find
/// the interleaving; the orderings are the same). A merge running
/// meanwhile must never see the object out twice.
#[test]
fn a_merge_never_counts_an_object_moving_between_threads_as_out_twice() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    check(Exhaustive, || {
        let counters = Arc::new(ThreadCounters::default());
        let handed = Arc::new(AtomicBool::new(false));
        let (x, y) = (0, OWN_BLOCKS);
        counters.tally(Place::of(x)).bump(Event::Miss); // X holds the object
        let putter = {
            let (counters, handed) = (Arc::clone(&counters), Arc::clone(&handed));
            thread::spawn(move || {
                counters.tally(Place::of(x)).bump(Event::Put);
                handed.store(true, Ordering::Release);
            })
        };
        let getter = {
            let (counters, handed) = (Arc::clone(&counters), Arc::clone(&handed));
            thread::spawn(move || {
                if handed.load(Ordering::Acquire) {
                    counters.tally(Place::of(y)).bump(Event::Hit);
                }
            })
        };
        let s = Snapshot::merge(counters.blocks());
        assert!(s.in_use <= 1, "one object counted out twice: {s:?}");
        putter.join().unwrap();
        getter.join().unwrap();
    });
}
