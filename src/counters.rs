//! Event counters: one block per thread, merged when read.
//!
//! Each pool keeps a [`ThreadCounters`]: a block of counters for every
//! thread index that has counted in it (see `shards::thread_index`), each
//! in its own cache line, so a thread counts in a line no other thread
//! writes, whatever its home shard. Reading merges all blocks; the merge is
//! not a consistent cut while other threads keep counting, but every
//! counter is exact once the pool is quiescent.
//!
//! Invariants:
//! - Block `i` belongs to thread index `i`: only the thread holding that
//!   index writes it, so it counts with a plain load and store, no locked
//!   instruction and no lost update. An index is held by one live thread at
//!   a time, and passes from an exited thread to a new one through a
//!   release/acquire pair, so the new holder continues from the old one's
//!   last count.
//! - Blocks are allocated in buckets, bucket `b` holding the `2^b` blocks
//!   of indices `2^b - 1 ..= 2^(b+1) - 2`, when an index of the bucket
//!   first counts; a bucket is published by one compare-and-swap of its
//!   pointer (a loser frees its own allocation and uses the winner's) and
//!   freed only when the pool is dropped, so a block never moves. Its bit
//!   in `allocated` is set before, so a merge that reads the bits sees
//!   every bucket counted in before that.
//! - A thread with an index beyond the buckets, or none (see
//!   `shards::UNOWNED`), counts in the `shared` block with atomic adds.
//! - `in_use` never counts an object twice: a merge reads the hits and
//!   misses of every block before the puts (and discards) of any. The pool counts a get
//!   after the object is taken and a put before it is given back; counts
//!   are `Release` and the merge reads gets with `Acquire`, so a get it
//!   sees brings into view the put that freed that object, however the
//!   object moved between threads meanwhile. Reading block by block instead
//!   could see a get in a later block and miss its put in an earlier one,
//!   and report `in_use` (and so `max_in_use`) above `max_size`.

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Everything the pool counts. The discriminant indexes `Counters`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Event {
    /// An object was handed out that had been used before.
    Hit,
    /// An object was handed out freshly created, because none was idle.
    Miss,
    /// An object came back through `put`.
    Put,
    /// The factory produced an object.
    Created,
    /// The pool discarded an object (for any reason below, or trim/clear/close).
    Destroyed,
    /// A returned object was discarded because the idle storage was full.
    Dropped,
    /// Resetting an object failed; the object was discarded.
    ResetError,
    /// Validation rejected (or failed on) an idle object; it was discarded.
    Invalid,
    /// An idle object outlived `idle_timeout`; it was discarded.
    Expired,
    /// A `get` (or `get_many`, `aget`) had to wait for a bounded pool.
    Wait,
    /// A wait ran out of time (the caller got a timeout error).
    Timeout,
    /// A holder gave an object back to be destroyed (`discard`), not reused.
    Discarded,
}

impl Event {
    /// How many kinds of event there are.
    pub const COUNT: usize = Event::Discarded as usize + 1;
}

/// A block of counters. Counts are `Release` only for the merge's sake
/// (module invariants; on x86 a plain store or locked add is that already):
/// the counts are statistics, they
/// order nothing else.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    counts: [AtomicU64; Event::COUNT],
}

/// The per-thread blocks of bucket `b` cover indices `2^b - 1 ..= 2^(b+1) - 2`.
const BUCKETS: usize = 13;

/// Thread indices with a block of their own: `0 .. 2^BUCKETS - 1` (8191,
/// more than the reusable thread indices).
pub(crate) const OWN_BLOCKS: usize = (1 << BUCKETS) - 1;

type Block = CachePadded<Counters>;

/// A pool's counters: a block per thread index, and one for the rest.
/// `repr(C)`: the bucket pointers first, whatever the size of a block.
/// Left to Rust, the order changed when a counter was added (`Discarded`),
/// and with it the code LLVM made for `put`: 4 to 5 instructions more per
/// get+put (cachegrind).
#[repr(C)]
pub(crate) struct ThreadCounters {
    buckets: [AtomicPtr<Block>; BUCKETS],
    /// Bit `b` is set before bucket `b` is published, so that a merge
    /// visits only buckets that may be allocated.
    allocated: AtomicU32,
    shared: Counters,
}

impl Default for ThreadCounters {
    fn default() -> Self {
        ThreadCounters {
            buckets: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            allocated: AtomicU32::new(0),
            shared: Counters::default(),
        }
    }
}

/// Where a thread index counts: its bucket and its block in it, or the
/// shared block. Worked out once per thread (see `shards::current`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    bucket: u32,
    offset: u32,
}

impl Place {
    /// The place of thread index `index`: its own block below
    /// [`OWN_BLOCKS`], the shared block from there on.
    pub(crate) const fn of(index: usize) -> Place {
        if index >= OWN_BLOCKS {
            return Place {
                bucket: BUCKETS as u32,
                offset: 0,
            };
        }
        let n = index + 1;
        let bucket = usize::BITS - 1 - n.leading_zeros();
        Place {
            bucket,
            offset: (n - (1 << bucket)) as u32,
        }
    }
}

impl ThreadCounters {
    /// How a thread counts at `place`: in its own block, or (beyond
    /// [`OWN_BLOCKS`]) in the shared one.
    #[inline]
    pub(crate) fn tally(&self, place: Place) -> Tally<'_> {
        let Some(bucket) = self.buckets.get(place.bucket as usize) else {
            return Tally {
                counters: &self.shared,
                exclusive: false,
            };
        };
        let mut blocks = bucket.load(Ordering::Acquire);
        if blocks.is_null() {
            blocks = self.allocate(place.bucket as usize);
        }
        // SAFETY: a non-null bucket pointer points to `1 << bucket` blocks,
        // published with `Release` after they were initialised (read here
        // with `Acquire`) and freed only in `drop`, which `&self` excludes;
        // `offset < 1 << bucket` by `Place::of`.
        let block = unsafe { &*blocks.add(place.offset as usize) };
        Tally {
            counters: block,
            exclusive: true,
        }
    }

    /// Allocates bucket `bucket`, or finds it allocated by another thread.
    #[cold]
    #[inline(never)]
    fn allocate(&self, bucket: usize) -> *mut Block {
        // Before the bucket is published: whoever counts in it (and so
        // whatever it counts) happens after the bit is set, and a merge
        // reads the bits after the gets it has seen (module invariants).
        self.allocated.fetch_or(1 << bucket, Ordering::Release);
        let fresh: Box<[Block]> = (0..1usize << bucket).map(|_| Block::default()).collect();
        let fresh = Box::into_raw(fresh).cast::<Block>();
        match self.buckets[bucket].compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: `fresh` came from `Box::into_raw` of a boxed slice
                // of `1 << bucket` blocks just above and was never shared.
                drop(unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(fresh, 1 << bucket))
                });
                theirs
            }
        }
    }

    /// Every block: the allocated per-thread ones, then the shared one.
    pub(crate) fn blocks(&self) -> Blocks<'_> {
        Blocks {
            counters: self,
            buckets: None,
            current: [].iter(),
            shared: true,
        }
    }
}

/// The blocks of a [`ThreadCounters`]. Which buckets are allocated is read
/// when the iteration starts: a clone made before and started later (the
/// second pass of a merge) reads it again. A plain struct rather than
/// iterator adapters: a pool merges its counters every 64 gets.
#[derive(Clone)]
pub(crate) struct Blocks<'a> {
    counters: &'a ThreadCounters,
    /// The allocated buckets not visited yet; `None` before the start.
    buckets: Option<u32>,
    current: std::slice::Iter<'a, Block>,
    shared: bool,
}

impl<'a> Iterator for Blocks<'a> {
    type Item = &'a Counters;

    fn next(&mut self) -> Option<&'a Counters> {
        loop {
            if let Some(block) = self.current.next() {
                return Some(&**block);
            }
            let counters = self.counters;
            let left = *self
                .buckets
                .get_or_insert_with(|| counters.allocated.load(Ordering::Acquire));
            if left == 0 {
                let shared = std::mem::take(&mut self.shared);
                return shared.then_some(&counters.shared);
            }
            let bucket = left.trailing_zeros() as usize;
            self.buckets = Some(left & (left - 1));
            let blocks = counters.buckets[bucket].load(Ordering::Acquire);
            self.current = if blocks.is_null() {
                [].iter() // being allocated: nothing counted in it yet
            } else {
                // SAFETY: as in `tally`: `1 << bucket` initialised blocks,
                // alive as long as the `&'a ThreadCounters`.
                unsafe { std::slice::from_raw_parts(blocks, 1 << bucket) }.iter()
            };
        }
    }
}

impl Drop for ThreadCounters {
    fn drop(&mut self) {
        for (bucket, pointer) in self.buckets.iter().enumerate() {
            let blocks = pointer.load(Ordering::Acquire);
            if !blocks.is_null() {
                // SAFETY: allocated by `allocate` as a boxed slice of
                // `1 << bucket` blocks; `&mut self` means no tally or
                // iterator borrows them any more.
                drop(unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(blocks, 1 << bucket))
                });
            }
        }
    }
}

impl std::fmt::Debug for ThreadCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadCounters")
            .field("snapshot", &Snapshot::merge(self.blocks()))
            .finish()
    }
}

/// One thread's way of counting in a pool: plain increments in the block
/// it alone writes, atomic ones otherwise.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tally<'a> {
    counters: &'a Counters,
    exclusive: bool,
}

impl Tally<'_> {
    #[inline]
    pub(crate) fn bump(self, event: Event) {
        self.add(event, 1);
    }

    /// Bumps and returns the new count.
    #[inline]
    pub(crate) fn bump_counted(self, event: Event) -> u64 {
        self.add_counted(event, 1)
    }

    /// Counts `n` events at once (a batch).
    #[inline]
    pub(crate) fn add(self, event: Event, n: u64) {
        self.add_counted(event, n);
    }

    #[inline]
    fn add_counted(self, event: Event, n: u64) -> u64 {
        let count = &self.counters.counts[event as usize];
        if self.exclusive {
            // Only this thread writes this block (module invariant).
            let new = count.load(Ordering::Relaxed) + n;
            count.store(new, Ordering::Release);
            new
        } else {
            count.fetch_add(n, Ordering::Release) + n
        }
    }
}

impl Counters {
    /// An atomic increment, for a block any thread may bump (off the hot
    /// path: shards count through a [`Tally`]).
    #[inline]
    pub(crate) fn bump(&self, event: Event) {
        self.counts[event as usize].fetch_add(1, Ordering::Release);
    }

    #[cfg(test)]
    fn add(&self, event: Event, n: u64) {
        self.counts[event as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn read(&self, event: Event) -> u64 {
        self.counts[event as usize].load(Ordering::Relaxed)
    }

    /// Reads a count, seeing everything that happened before it was made.
    fn read_acquire(&self, event: Event) -> u64 {
        self.counts[event as usize].load(Ordering::Acquire)
    }
}

/// Counters merged over all shards, plus the gauges a pool reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Objects handed out from idle storage.
    pub hits: u64,
    /// Objects handed out new from the factory.
    pub misses: u64,
    /// Objects callers gave back.
    pub puts: u64,
    /// Objects created.
    pub created: u64,
    /// Objects destroyed.
    pub destroyed: u64,
    /// Returned objects destroyed because the pool had no room (or no
    /// budget) to keep them.
    pub dropped: u64,
    /// Resets that failed (the object was destroyed).
    pub reset_errors: u64,
    /// Idle objects that `validate` refused (or failed on).
    pub invalid: u64,
    /// Idle objects destroyed for being idle too long.
    pub expired: u64,
    /// Gets that waited for a full bounded pool.
    pub waits: u64,
    /// Waits that timed out.
    pub timeouts: u64,
    /// Objects holders gave back to be destroyed (`discard`).
    pub discarded: u64,
    /// Waits given up before their timeout (a cancelled task, a thread
    /// interrupted by an exception). Not a shard counter: only a bounded
    /// pool's waits end so, and it counts them itself (see
    /// `Limit::note_cancelled`).
    pub cancelled: u64,
    /// Callers refused at once (`PoolTooBusy`) because `max_waiting`
    /// callers were waiting: neither a wait nor a timeout. Counted by the
    /// limit, as `cancelled` is.
    pub rejected: u64,
    /// Objects sitting idle in the pool.
    pub idle: u64,
    /// Objects handed out and not yet returned.
    pub in_use: u64,
    /// Callers (threads and tasks) waiting for a full bounded pool now.
    pub waiting: u64,
    /// The highest `in_use` the pool has observed (see [`crate::Pool::stats`]).
    pub max_in_use: u64,
}

impl Snapshot {
    /// Sums the counters of every block: the gets of all blocks first,
    /// then everything else (module invariants).
    pub(crate) fn merge<'a, I>(blocks: I) -> Snapshot
    where
        I: IntoIterator<Item = &'a Counters>,
        I::IntoIter: Clone,
    {
        let blocks = blocks.into_iter();
        let mut s = Snapshot::default();
        for c in blocks.clone() {
            s.hits += c.read_acquire(Event::Hit);
            s.misses += c.read_acquire(Event::Miss);
        }
        for c in blocks {
            s.puts += c.read(Event::Put);
            s.created += c.read(Event::Created);
            s.destroyed += c.read(Event::Destroyed);
            s.dropped += c.read(Event::Dropped);
            s.reset_errors += c.read(Event::ResetError);
            s.invalid += c.read(Event::Invalid);
            s.expired += c.read(Event::Expired);
            s.waits += c.read(Event::Wait);
            s.timeouts += c.read(Event::Timeout);
            s.discarded += c.read(Event::Discarded);
        }
        // Puts (and discards) read after gets may include returns of objects
        // whose gets were not seen: an undercount, never below zero.
        s.in_use = (s.hits + s.misses).saturating_sub(s.puts + s.discarded);
        s
    }

    /// Fraction of handed-out objects that were reused, 0.0 before any get.
    pub fn hit_rate(&self) -> f64 {
        hit_rate(self.hits, self.misses)
    }
}

/// Fraction of handed-out objects that were reused, 0.0 before any.
pub(crate) fn hit_rate(hits: u64, misses: u64) -> f64 {
    let total = hits + misses;
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_blocks_and_derives_in_use() {
        let a = Counters::default();
        let b = Counters::default();
        a.add(Event::Hit, 3);
        b.bump(Event::Miss);
        b.add(Event::Put, 2);
        a.bump(Event::Created);
        let s = Snapshot::merge([&a, &b]);
        assert_eq!((s.hits, s.misses, s.puts, s.created), (3, 1, 2, 1));
        assert_eq!(s.in_use, 2);
        assert_eq!(s.hit_rate(), 0.75);
    }

    #[test]
    fn each_thread_index_counts_in_its_own_block_and_the_rest_in_the_shared_one() {
        let counters = ThreadCounters::default();
        assert_eq!(
            counters.blocks().count(),
            1,
            "only the shared block until a thread counts"
        );
        counters.tally(Place::of(0)).bump(Event::Hit);
        counters.tally(Place::of(0)).add(Event::Put, 2);
        assert!(counters.tally(Place::of(5)).exclusive);
        assert_eq!(counters.tally(Place::of(5)).bump_counted(Event::Hit), 1);
        assert_eq!(counters.tally(Place::of(5)).bump_counted(Event::Hit), 2);
        let other = counters.tally(Place::of(OWN_BLOCKS));
        assert!(!other.exclusive);
        assert_eq!(other.bump_counted(Event::Hit), 1);
        assert_eq!(
            counters
                .tally(Place::of(usize::MAX))
                .bump_counted(Event::Hit),
            2
        );
        let s = Snapshot::merge(counters.blocks());
        assert_eq!((s.hits, s.puts), (5, 2));
        // Buckets 0 (index 0) and 2 (indices 3..=6) were allocated, no more.
        assert_eq!(counters.blocks().count(), 1 + 4 + 1);
        // Each block in its own cache line.
        let addresses: Vec<usize> = counters.blocks().map(|c| c as *const _ as usize).collect();
        assert!(addresses
            .iter()
            .all(|a| a % 128 == 0 || *a == addresses[addresses.len() - 1]));
    }

    #[test]
    fn buckets_cover_every_index_once() {
        let mut seen = std::collections::HashSet::new();
        for index in 0..OWN_BLOCKS {
            let Place { bucket, offset } = Place::of(index);
            assert!(
                (bucket as usize) < BUCKETS && offset < 1 << bucket,
                "{index}"
            );
            assert!(seen.insert((bucket, offset)));
        }
        let at = |bucket, offset| Place { bucket, offset };
        assert_eq!(Place::of(0), at(0, 0));
        assert_eq!(Place::of(1), at(1, 0));
        assert_eq!(Place::of(2), at(1, 1));
        assert_eq!(Place::of(3), at(2, 0));
        assert_eq!(Place::of(OWN_BLOCKS), at(BUCKETS as u32, 0));
        assert_eq!(Place::of(usize::MAX), at(BUCKETS as u32, 0));
        assert_eq!(
            Place::of(OWN_BLOCKS - 1),
            at(BUCKETS as u32 - 1, (1 << (BUCKETS - 1)) - 1)
        );
    }

    #[test]
    fn counts_stay_exact_when_threads_allocate_one_bucket_at_once() {
        for _ in 0..50 {
            let counters = std::sync::Arc::new(ThreadCounters::default());
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let (counters, barrier) = (counters.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        // Indices 7..=14: all in bucket 3, allocated by whoever comes first.
                        for _ in 0..1000 {
                            counters.tally(Place::of(7 + t)).bump(Event::Put);
                        }
                        counters.tally(Place::of(OWN_BLOCKS + t)).bump(Event::Put);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(Snapshot::merge(counters.blocks()).puts, 8 * 1001);
            assert_eq!(counters.blocks().count(), 8 + 1);
        }
    }

    #[test]
    fn in_use_never_counts_an_object_that_moves_between_threads_twice() {
        // One object: thread X holds it. While a merge reads the blocks one
        // after another, X puts it back and thread Y takes it.
        let counters = ThreadCounters::default();
        let (x, y) = (0, 1); // thread indices: the first two blocks
        counters.tally(Place::of(x)).bump(Event::Miss);
        counters.tally(Place::of(y)); // Y's block exists before the merge starts
        let moved = std::cell::Cell::new(false);
        let blocks = counters.blocks().enumerate().map(|(i, block)| {
            if i == 1 && !moved.replace(true) {
                counters.tally(Place::of(x)).bump(Event::Put);
                counters.tally(Place::of(y)).bump(Event::Hit);
            }
            block
        });
        let s = Snapshot::merge(blocks);
        assert!(moved.get());
        assert_eq!(s.in_use, 1, "one object, out once: {s:?}");
        assert_eq!((s.hits, s.misses, s.puts), (1, 1, 1));
    }

    #[test]
    fn in_use_never_underflows_and_empty_hit_rate_is_zero() {
        let a = Counters::default();
        a.add(Event::Put, 5);
        let s = Snapshot::merge([&a]);
        assert_eq!(s.in_use, 0);
        assert_eq!(s.hit_rate(), 0.0);
    }
}
