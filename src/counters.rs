//! Per-shard event counters.
//!
//! Each shard owns two [`Counters`] blocks inside its cache-padded slot, and
//! a thread only ever bumps the blocks of its home shard, so counting adds no
//! shared cache line to the hot path. Reading merges all blocks; the merge is
//! not a consistent cut across shards while other threads keep counting, but
//! every counter is exact once the pool is quiescent.
//!
//! Invariants:
//! - The `owned` block of shard `i` belongs to thread index `i` (see
//!   `shards::thread_index`): only the thread holding that index writes it,
//!   so it counts with a plain load and store, no locked instruction and no
//!   lost update. An index is held by one live thread at a time, and passes
//!   from an exited thread to a new one through a release/acquire pair, so
//!   the new holder continues from the old one's last count.
//! - Every other thread (an index beyond the shard count, or a thread
//!   counting in a shard other than its own) counts in the `shared` block
//!   with atomic adds.
//! - `in_use` never counts an object twice: a merge reads the hits and
//!   misses of every block before the puts of any. The pool counts a get
//!   after the object is taken and a put before it is given back; counts
//!   are `Release` and the merge reads gets with `Acquire`, so a get it
//!   sees brings into view the put that freed that object, however the
//!   object moved between shards meanwhile. Reading block by block instead
//!   could see a get in a later block and miss its put in an earlier one,
//!   and report `in_use` (and so `max_in_use`) above `max_size`.

use crate::sync::atomic::{AtomicU64, Ordering};

/// Everything the pool counts. The discriminant indexes [`Counters`].
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
    /// A `get` had to wait for a bounded pool.
    Wait,
    /// A wait ended without an object.
    Timeout,
}

impl Event {
    pub const COUNT: usize = Event::Timeout as usize + 1;
}

/// A block of counters. Counts are `Release` only for the merge's sake
/// (module invariants; on x86 a plain store or locked add is that already):
/// the counts are statistics, they
/// order nothing else.
#[derive(Debug, Default)]
pub struct Counters {
    counts: [AtomicU64; Event::COUNT],
}

/// A shard's counters: its owner's block and everyone else's.
#[derive(Debug, Default)]
pub struct ShardCounters {
    owned: Counters,
    shared: Counters,
}

impl ShardCounters {
    /// How a thread counts here: in the owned block if it is the owner
    /// (it holds the thread index equal to this shard's), else in the
    /// shared one.
    #[inline]
    pub fn tally(&self, owner: bool) -> Tally<'_> {
        Tally {
            counters: if owner { &self.owned } else { &self.shared },
            exclusive: owner,
        }
    }

    /// Both blocks, for merging.
    pub fn blocks(&self) -> [&Counters; 2] {
        [&self.owned, &self.shared]
    }
}

/// One thread's way of counting in one shard: plain increments in the block
/// it alone writes, atomic ones otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Tally<'a> {
    counters: &'a Counters,
    exclusive: bool,
}

impl Tally<'_> {
    #[inline]
    pub fn bump(self, event: Event) {
        self.add(event, 1);
    }

    /// Bumps and returns the new count.
    #[inline]
    pub fn bump_counted(self, event: Event) -> u64 {
        self.add_counted(event, 1)
    }

    /// Counts `n` events at once (a batch).
    #[inline]
    pub fn add(self, event: Event, n: u64) {
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
    pub fn bump(&self, event: Event) {
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
    pub hits: u64,
    pub misses: u64,
    pub puts: u64,
    pub created: u64,
    pub destroyed: u64,
    pub dropped: u64,
    pub reset_errors: u64,
    pub invalid: u64,
    pub expired: u64,
    pub waits: u64,
    pub timeouts: u64,
    /// Objects sitting idle in the pool.
    pub idle: u64,
    /// Objects handed out and not yet returned.
    pub in_use: u64,
    /// The highest `in_use` the pool has observed (see [`crate::Pool::stats`]).
    pub max_in_use: u64,
}

impl Snapshot {
    /// Sums the counters of every block: the gets of all blocks first,
    /// then everything else (module invariants).
    pub fn merge<'a, I>(blocks: I) -> Snapshot
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
        }
        // Puts read after gets may include returns of objects whose gets
        // were not seen: an undercount, never below zero.
        s.in_use = (s.hits + s.misses).saturating_sub(s.puts);
        s
    }

    /// Fraction of handed-out objects that were reused, 0.0 before any get.
    pub fn hit_rate(&self) -> f64 {
        hit_rate(self.hits, self.misses)
    }
}

/// Fraction of handed-out objects that were reused, 0.0 before any.
pub fn hit_rate(hits: u64, misses: u64) -> f64 {
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
    fn the_owner_counts_in_its_block_and_others_in_the_shared_one() {
        let shard = ShardCounters::default();
        let owner = shard.tally(true);
        assert!(owner.exclusive);
        owner.bump(Event::Hit);
        owner.add(Event::Put, 2);
        let other = shard.tally(false);
        assert!(!other.exclusive);
        assert_eq!(other.bump_counted(Event::Hit), 1);
        assert_eq!(shard.tally(true).bump_counted(Event::Hit), 2);
        let s = Snapshot::merge(shard.blocks());
        assert_eq!((s.hits, s.puts), (3, 2));
        assert_eq!(Snapshot::merge([&shard.owned]).hits, 2);
        assert_eq!(Snapshot::merge([&shard.shared]).hits, 1);
    }

    #[test]
    fn counts_stay_exact_with_an_owner_and_sharers_in_threads() {
        let shard = std::sync::Arc::new(ShardCounters::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let shard = std::sync::Arc::clone(&shard);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        shard.tally(t == 0).bump(Event::Put);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Snapshot::merge(shard.blocks()).puts, 40_000);
    }

    #[test]
    fn in_use_never_counts_an_object_that_moves_between_shards_twice() {
        // One object: X (shard 0) holds it. While a merge reads the blocks
        // one after another, X puts it back and Y (shard 1) takes it.
        let (x_shard, y_shard) = (ShardCounters::default(), ShardCounters::default());
        x_shard.tally(true).bump(Event::Miss);
        let moved = std::cell::Cell::new(false);
        let blocks = [0, 1].into_iter().flat_map(|shard| {
            if shard == 1 && !moved.replace(true) {
                x_shard.tally(true).bump(Event::Put);
                y_shard.tally(true).bump(Event::Hit);
            }
            if shard == 0 {
                x_shard.blocks()
            } else {
                y_shard.blocks()
            }
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
