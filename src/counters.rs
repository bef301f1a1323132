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

/// A block of counters. Relaxed accesses: the counts are statistics, they
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
            count.store(new, Ordering::Relaxed);
            new
        } else {
            count.fetch_add(n, Ordering::Relaxed) + n
        }
    }
}

impl Counters {
    /// An atomic increment, for a block any thread may bump (off the hot
    /// path: shards count through a [`Tally`]).
    #[inline]
    pub fn bump(&self, event: Event) {
        self.counts[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn add(&self, event: Event, n: u64) {
        self.counts[event as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn read(&self, event: Event) -> u64 {
        self.counts[event as usize].load(Ordering::Relaxed)
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
    /// Sums the counters of every block.
    pub fn merge<'a>(blocks: impl IntoIterator<Item = &'a Counters>) -> Snapshot {
        let mut s = Snapshot::default();
        for c in blocks {
            s.hits += c.read(Event::Hit);
            s.misses += c.read(Event::Miss);
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
        // Objects go out as hits or misses and come back as puts. Shards are
        // read one after another, so a put may be seen before its get.
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
    fn in_use_never_underflows_and_empty_hit_rate_is_zero() {
        let a = Counters::default();
        a.add(Event::Put, 5);
        let s = Snapshot::merge([&a]);
        assert_eq!(s.in_use, 0);
        assert_eq!(s.hit_rate(), 0.0);
    }
}
