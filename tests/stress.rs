//! Stress tests of the Rust core: many threads (16) hammer a pool, a bounded
//! pool, close, the limit's waiters, block leases and a block pool's shared
//! byte budget, checking the invariants as they go and exact counts at the
//! end. Each test takes about a second in a debug build on two cores.
//!
//! `SHARDPOOL_STRESS_DIVISOR=N` divides every iteration count by `N`, for
//! runs under valgrind (`scripts/valgrind`), which serialises the threads
//! and runs them 20-100 times slower.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use shardpool::{BlockConfig, BlockPool, InPlace};
use shardpool::{Config, GetError, Hooks, Pool};
use shardpool::{Enqueued, Grant, Limit, NoStore, Outcome, Park, Settled, Turns, Waiter};
use shardpool::{LeaseError, Leased};

const THREADS: usize = 16;

/// `n`, divided by `SHARDPOOL_STRESS_DIVISOR` (at least 1).
fn iters(n: usize) -> usize {
    let divisor = std::env::var("SHARDPOOL_STRESS_DIVISOR")
        .ok()
        .and_then(|d| d.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    (n / divisor).max(1)
}

/// A small deterministic generator per thread (xorshift).
struct Rng(u64);

impl Rng {
    fn new(seed: usize) -> Self {
        Rng(0x9E37_79B9_7F4A_7C15 ^ (seed as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Runs `f(thread_index)` on `THREADS` threads that start together.
fn run<R: Send>(f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let start = Barrier::new(THREADS);
    thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (f, start) = (&f, &start);
                s.spawn(move || {
                    start.wait();
                    f(t)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A pooled object that knows whether it is handed out.
#[derive(Default)]
struct Obj {
    out: AtomicBool,
}

type Item = Arc<Obj>;

/// Counts what the pool creates and destroys.
#[derive(Clone, Default)]
struct Tally {
    created: Arc<AtomicUsize>,
    destroyed: Arc<AtomicUsize>,
}

impl Hooks<Item> for Tally {
    type Error = ();
    fn create(&mut self) -> Result<Item, ()> {
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::default())
    }
    fn destroy(&mut self, item: Item) {
        assert!(!item.out.load(Ordering::Relaxed), "destroyed while out");
        self.destroyed.fetch_add(1, Ordering::Relaxed);
    }
    fn identity(&self, item: &Item) -> usize {
        Arc::as_ptr(item) as usize
    }
    fn duplicate(&mut self, item: &Item) -> Item {
        Arc::clone(item)
    }
}

/// Marks `item` handed out to this thread; it must not be out already.
fn take(item: &Item) {
    assert!(
        !item.out.swap(true, Ordering::AcqRel),
        "one object handed out twice"
    );
}

fn give(item: &Item) {
    assert!(item.out.swap(false, Ordering::AcqRel));
}

fn assert_quiescent(pool: &Pool<Item>, tally: &Tally) {
    let s = pool.stats();
    assert_eq!(s.in_use, 0, "{s:?}");
    assert_eq!(s.created, s.destroyed + s.idle, "{s:?}");
    assert_eq!(s.puts, s.hits + s.misses, "{s:?}");
    assert_eq!(s.created, tally.created.load(Ordering::Relaxed) as u64);
    assert_eq!(s.destroyed, tally.destroyed.load(Ordering::Relaxed) as u64);
}

/// Gets, puts, batches and trims on an unbounded pool with few idle slots
/// (so puts overflow and objects are destroyed): exact counts at the end.
#[test]
fn unbounded_pool_counts_are_exact() {
    let pool = Pool::new(Config {
        max_idle: Some(8),
        shards: Some(4),
        ..Config::default()
    })
    .unwrap();
    let tally = Tally::default();
    run(|t| {
        let mut hooks = tally.clone();
        let mut rng = Rng::new(t);
        for _ in 0..iters(20_000) {
            match rng.below(10) {
                0 => {
                    let items = pool.get_many(&mut hooks, 3, None).unwrap();
                    items.iter().for_each(take);
                    items.iter().for_each(give);
                    pool.put_many(&mut hooks, items).unwrap();
                }
                1 if t == 0 => {
                    pool.trim(&mut hooks, 4);
                }
                _ => {
                    let item = pool.get(&mut hooks, None).unwrap();
                    take(&item);
                    give(&item);
                    pool.put(&mut hooks, item).unwrap();
                }
            }
        }
    });
    assert_quiescent(&pool, &tally);
    assert!(pool.idle() <= 8);
}

/// 16 threads share a pool of at most 4 objects, waiting for them (some
/// with short timeouts, some in batches): never more than 4 out, never one
/// object out twice, nothing lost.
#[test]
fn bounded_pool_never_exceeds_max_size() {
    const MAX: usize = 4;
    let pool = Pool::new(Config {
        max_size: Some(MAX),
        shards: Some(4),
        ..Config::default()
    })
    .unwrap();
    let tally = Tally::default();
    let out = AtomicUsize::new(0);
    let timeouts: usize = run(|t| {
        let mut hooks = tally.clone();
        let mut rng = Rng::new(t);
        let mut timeouts = 0;
        for _ in 0..iters(4_000) {
            let n = if rng.below(8) == 0 { 2 } else { 1 };
            let timeout = (rng.below(4) == 0).then(|| Duration::from_micros(50));
            let items = match pool.get_many(&mut hooks, n, timeout) {
                Ok(items) => items,
                Err(GetError::Timeout) => {
                    timeouts += 1;
                    continue;
                }
                Err(e) => panic!("{e:?}"),
            };
            let now = out.fetch_add(items.len(), Ordering::AcqRel) + items.len();
            assert!(now <= MAX, "{now} objects out of {MAX}");
            items.iter().for_each(take);
            thread::yield_now();
            items.iter().for_each(give);
            out.fetch_sub(items.len(), Ordering::AcqRel);
            pool.put_many(&mut hooks, items).unwrap();
        }
        timeouts
    })
    .into_iter()
    .sum();
    assert_eq!(pool.outstanding(), Some(0));
    assert!(tally.created.load(Ordering::Relaxed) <= MAX);
    assert_eq!(tally.destroyed.load(Ordering::Relaxed), 0);
    assert_quiescent(&pool, &tally);
    let s = pool.stats();
    assert_eq!(s.timeouts as usize, timeouts);
}

/// Threads get and put while the main thread closes the pool: afterwards
/// nothing is idle, and every object ever created has been destroyed once.
#[test]
fn close_racing_puts_strands_nothing() {
    for round in 0..iters(40) {
        let pool = Pool::new(Config {
            max_idle: Some(32),
            shards: Some(4),
            ..Config::default()
        })
        .unwrap();
        let tally = Tally::default();
        let closed = AtomicBool::new(false);
        thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS - 1)
                .map(|t| {
                    let (pool, tally, closed) = (&pool, &tally, &closed);
                    s.spawn(move || {
                        let mut hooks = tally.clone();
                        let mut held = Vec::new();
                        let mut rng = Rng::new(round * THREADS + t);
                        while !closed.load(Ordering::Acquire) || !held.is_empty() {
                            if !closed.load(Ordering::Acquire) && rng.below(2) == 0 {
                                match pool.get(&mut hooks, None) {
                                    Ok(item) => held.push(item),
                                    Err(GetError::Closed) => {}
                                    Err(e) => panic!("{e:?}"),
                                }
                            } else if let Some(item) = held.pop() {
                                pool.put(&mut hooks, item).unwrap();
                            }
                        }
                    })
                })
                .collect();
            thread::sleep(Duration::from_millis(2));
            pool.close(&mut tally.clone());
            closed.store(true, Ordering::Release);
            // Joined explicitly (not just at the end of the scope) so that
            // Helgrind sees the threads end before the next round.
            for w in workers {
                w.join().unwrap();
            }
        });
        assert_eq!(pool.idle(), 0, "round {round}: objects idle after close");
        assert_eq!(
            tally.created.load(Ordering::Relaxed),
            tally.destroyed.load(Ordering::Relaxed),
            "round {round}"
        );
        let s = pool.stats();
        assert_eq!((s.created, s.in_use), (s.destroyed, 0), "{s:?}");
    }
}

/// Releases `n` slots of `limit`.
fn release_slots(limit: &Limit<()>, n: usize) {
    for _ in 0..n {
        limit.release(&NoStore);
    }
}

/// Waits on `waiter` (queued for `need` slots) until a deadline drawn from
/// `rng`: now, soon or far. A batch keeps its turns meanwhile, giving back
/// what it yields. The outcome, or what `cancel` returns once the deadline
/// passes.
fn wait_for(
    limit: &Limit<()>,
    waiter: &Arc<Waiter<()>>,
    need: usize,
    rng: &mut Rng,
) -> Option<Outcome<()>> {
    let now = Instant::now();
    let deadline = match rng.below(3) {
        0 => now,
        1 => now + Duration::from_micros(100),
        _ => now + Duration::from_secs(60),
    };
    let mut turns = Turns::new(now);
    loop {
        let until = if need > 1 {
            deadline.min(turns.ends())
        } else {
            deadline
        };
        if waiter.park(Some(until)) {
            // Decided, or woken to compete for a slot (normal mode): it
            // takes one if it is free, else waits again in its place.
            match limit.settle(waiter, &NoStore) {
                Settled::Decided(outcome) => return Some(outcome),
                Settled::Lost => continue,
                Settled::Undecided => unreachable!("park returned early"),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return limit.cancel(waiter, &NoStore);
        }
        if need > 1 && now >= turns.ends() {
            if let Some(units) = turns.next(limit, waiter, &NoStore, now) {
                release_slots(limit, units.slots);
            }
        }
    }
}

/// The limit alone: threads take slots, one at a time or in batches of
/// two, queue for them, time out and cancel (a batch keeping its turns:
/// passed by, preferred, yielding), hand them over: never more than `max`
/// held, and at the end nothing is charged or set aside and nobody waits.
#[test]
fn limit_slots_are_never_lost_or_doubled() {
    const MAX: usize = 3;
    let limit: Limit<()> = Limit::new(MAX);
    let held = AtomicUsize::new(0);
    let (granted, cancelled): (Vec<usize>, Vec<usize>) = run(|t| {
        let mut rng = Rng::new(t);
        let (mut granted, mut cancelled) = (0, 0);
        for _ in 0..iters(3_000) {
            let need = if rng.below(4) == 0 { 2 } else { 1 };
            // As a pool's `get` does: take a free slot directly only when
            // nobody waits (a preferred batch's set-aside must not be
            // raced for).
            let got = if need == 1 && limit.waiting() == 0 && limit.try_reserve() {
                1
            } else {
                let queued = if need == 1 {
                    limit.enqueue(&NoStore)
                } else {
                    limit.enqueue_batch(need, &NoStore)
                };
                match queued {
                    Enqueued::Ready(Grant::Slot) => 1,
                    Enqueued::Ready(Grant::Batch(units)) => units.slots,
                    Enqueued::Ready(Grant::Item(())) => unreachable!("no items here"),
                    Enqueued::Closed => unreachable!("never closed"),
                    Enqueued::Busy => unreachable!("no max_waiting here"),
                    Enqueued::Queued(waiter) => {
                        match wait_for(&limit, &waiter, need, &mut rng) {
                            Some(Outcome::Granted(Grant::Slot)) => {
                                granted += 1;
                                1
                            }
                            Some(Outcome::Granted(Grant::Batch(units))) if units.slots == need => {
                                granted += 1;
                                need
                            }
                            // A batch withdrawn with units set aside for it.
                            Some(Outcome::Granted(Grant::Batch(units))) => {
                                release_slots(&limit, units.slots);
                                cancelled += 1;
                                0
                            }
                            None => {
                                cancelled += 1;
                                0
                            }
                            Some(other) => panic!("{other:?}"),
                        }
                    }
                }
            };
            if got > 0 {
                assert_eq!(got, need);
                let now = held.fetch_add(got, Ordering::AcqRel) + got;
                assert!(now <= MAX, "{now} slots held of {MAX}");
                thread::yield_now();
                held.fetch_sub(got, Ordering::AcqRel);
                release_slots(&limit, got);
            }
        }
        (granted, cancelled)
    })
    .into_iter()
    .unzip();
    assert_eq!(limit.alive(), 0, "every slot came back");
    assert_eq!((limit.waiting(), limit.set_aside()), (0, 0));
    // Both paths were exercised.
    assert!(granted.iter().sum::<usize>() > 0);
    assert!(cancelled.iter().sum::<usize>() > 0);
}

/// Leased blocks: views export (each writing its own byte), a holder
/// releases or defers, a second releaser races it. Exactly one party gets
/// each block back: a release, only if no view ever started (the memory of
/// an exported block stays with the lease), or else the lease's end
/// (`finish`), which finds every write made through a view.
#[test]
fn lease_release_happens_once_and_after_every_view() {
    // Both paths must be exercised; on a loaded machine the releasers can
    // finish every lease before a view thread starts, so rounds of leases go
    // on until both were (a bound keeps a broken export path from looping).
    let (mut exported, mut at_once) = (0, 0);
    for _ in 0..50 {
        let (e, n) = leases_racing_views_and_releases(iters(2_000));
        (exported, at_once) = (exported + e, at_once + n);
        if exported > 0 && at_once > 0 {
            break;
        }
    }
    assert!(exported > 0, "no release ever met an exported block");
    assert!(at_once > 0, "no release ever came back at once");
}

/// One round of [`lease_release_happens_once_and_after_every_view`]:
/// blocks that came back at the lease's end, and at their release.
fn leases_racing_views_and_releases(rounds: usize) -> (usize, usize) {
    const VIEWS: usize = 8;
    let mut leases: Vec<Leased> = (0..rounds)
        .map(|_| {
            let block = shardpool::OwnedBlock::zeroed(64, 64).unwrap();
            Leased::new(block, 64)
        })
        .collect();
    // Per block: views alive right now, and which views wrote.
    let live: Vec<AtomicUsize> = (0..rounds).map(|_| AtomicUsize::new(0)).collect();
    let wrote: Vec<AtomicUsize> = (0..rounds).map(|_| AtomicUsize::new(0)).collect();
    let released_now: Vec<Vec<usize>> = run(|t| {
        let mut won_here = Vec::new();
        for (i, lease) in leases.iter().enumerate() {
            let won = if t < VIEWS {
                match lease.export() {
                    Ok(ptr) => {
                        live[i].fetch_add(1, Ordering::AcqRel);
                        // SAFETY: the export keeps the 64-byte block alive
                        // and unreleased, and this thread is the only
                        // writer of byte `t`.
                        unsafe { ptr.add(t).write(1) };
                        wrote[i].fetch_or(1 << t, Ordering::Relaxed);
                        live[i].fetch_sub(1, Ordering::AcqRel);
                        lease.unexport();
                    }
                    Err(e) => assert_eq!(e, LeaseError::Released),
                }
                None
            } else if t == VIEWS {
                lease.release_or_defer().ok().flatten()
            } else if t == VIEWS + 1 {
                lease.release().ok().flatten()
            } else {
                assert!(lease.exports() <= VIEWS);
                None
            };
            if let Some(block) = won {
                assert_eq!(
                    live[i].load(Ordering::Relaxed),
                    0,
                    "released while exported"
                );
                assert_eq!(
                    wrote[i].load(Ordering::Relaxed),
                    0,
                    "an exported block was released at once"
                );
                assert!(lease.export().is_err(), "exported after the release");
                // SAFETY: the winner owns the block: no view ever existed.
                let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr(), VIEWS) };
                assert!(bytes.iter().all(|&b| b == 0));
                won_here.push(i);
            }
        }
        won_here
    });
    let now: std::collections::HashSet<usize> = released_now.into_iter().flatten().collect();
    let mut exported = 0;
    for (i, lease) in leases.iter_mut().enumerate() {
        assert!(lease.is_released());
        assert_eq!(lease.exports(), 0);
        assert_eq!(lease.export(), Err(LeaseError::Released));
        match lease.finish() {
            None => assert!(now.contains(&i), "block {i} came back never"),
            Some((block, released)) => {
                assert!(released);
                assert!(!now.contains(&i), "block {i} came back twice");
                exported += 1;
                // SAFETY: `finish` hands the block over exclusively.
                let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr(), VIEWS) };
                let wrote = wrote[i].load(Ordering::Relaxed);
                for (v, &b) in bytes.iter().enumerate() {
                    assert_eq!(b == 1, wrote & (1 << v) != 0, "block {i}, view {v}");
                }
            }
        }
    }
    (exported, now.len())
}

/// A block pool with a small idle byte cap shared by its classes: threads
/// get and return blocks of many sizes while one thread watches the idle
/// bytes. The cap holds at every reading, and at the end the idle bytes are
/// exactly the idle blocks' sizes and every block is accounted for.
#[test]
fn block_pool_idle_bytes_never_exceed_the_cap() {
    const CAP: usize = 64 << 10;
    let pool = BlockPool::new(BlockConfig {
        max_idle_bytes: CAP,
        max_block: Some(32 << 10),
        shards: Some(4),
        ..BlockConfig::default()
    })
    .unwrap();
    let done = AtomicBool::new(false);
    let sizes = [1, 64, 100, 1000, 4096, 5000, 20_000, 32 << 10, 40_000];
    thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let idle = pool.stats().bytes_idle;
                assert!(idle <= CAP, "{idle} idle bytes, cap {CAP}");
                thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..THREADS - 1)
            .map(|t| {
                let (pool, sizes) = (&pool, &sizes);
                s.spawn(move || {
                    let mut rng = Rng::new(t);
                    let mut held = Vec::new();
                    for _ in 0..iters(4_000) {
                        if held.len() < 4 && rng.below(3) != 0 {
                            let n = sizes[rng.below(sizes.len())];
                            let block = pool.get(n, rng.below(2) == 0, &InPlace).unwrap();
                            assert!(block.capacity() >= n);
                            held.push(block);
                        } else if let Some(block) = held.pop() {
                            pool.put(block, &InPlace);
                        }
                    }
                    for block in held {
                        pool.put(block, &InPlace);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        watcher.join().unwrap();
    });
    let s = pool.stats();
    let idle_bytes: usize = s
        .classes
        .iter()
        .map(|c| c.size * c.counts.idle as usize)
        .sum();
    assert_eq!(s.bytes_idle, idle_bytes);
    assert!(s.bytes_idle <= CAP);
    assert_eq!(s.bytes_in_use, 0);
    let t = s.totals;
    assert_eq!(t.in_use, 0, "{t:?}");
    assert_eq!(t.created, t.destroyed + t.idle, "{t:?}");
    assert_eq!(pool.close(&InPlace), idle_bytes);
    assert_eq!(pool.stats().bytes_idle, 0);
}
