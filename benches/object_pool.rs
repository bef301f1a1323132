//! Rust-core round trips, shardpool beside the structures and crates a Rust
//! user would otherwise reach for, in the same benchmark groups.
//!
//!     cargo bench --bench object_pool
//!
//! Each case does a warm get (an idle object is there) followed by a put.
//! The threaded groups report aggregate time per get+put: with 2 threads on
//! 2 cores, perfect scaling halves the one-thread figure.
//!
//! With `SHARDPOOL_COUNT="<contender> <iterations>"` the binary runs only
//! that contender's round trip, for counting instructions under valgrind
//! (docs/performance.md, "Rust core").

use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkGroup, Criterion};
use crossbeam_queue::ArrayQueue;
use shardpool::{Config, Hooks, Pool};

type Obj = Box<u64>;

struct Plain;

impl Hooks<Obj> for Plain {
    type Error = ();
    fn create(&mut self) -> Result<Obj, ()> {
        Ok(Box::new(0))
    }
    fn identity(&self, item: &Obj) -> usize {
        &**item as *const u64 as usize
    }
    fn duplicate(&mut self, item: &Obj) -> Obj {
        Box::new(**item)
    }
}

struct Alloc;

impl opool::PoolAllocator<Obj> for Alloc {
    fn allocate(&self) -> Obj {
        Box::new(0)
    }
}

/// One get+put, with the pool shared by every thread of a threaded run.
trait RoundTrip: Sync {
    fn round_trip(&self);
}

struct Shard(Pool<Obj>);
impl RoundTrip for Shard {
    #[inline]
    fn round_trip(&self) {
        let mut h = Plain;
        let obj = self.0.get(&mut h, None).unwrap();
        self.0.put(&mut h, black_box(obj)).unwrap();
    }
}

struct Queue(ArrayQueue<Obj>);
impl RoundTrip for Queue {
    #[inline]
    fn round_trip(&self) {
        let obj = self.0.pop().unwrap_or_else(|| Box::new(0));
        let _ = self.0.push(black_box(obj));
    }
}

struct Locked(Mutex<Vec<Obj>>);
impl RoundTrip for Locked {
    #[inline]
    fn round_trip(&self) {
        let obj = self.0.lock().unwrap().pop().unwrap_or_else(|| Box::new(0));
        self.0.lock().unwrap().push(black_box(obj));
    }
}

struct ObjectPoolCrate(object_pool::Pool<Obj>);
impl RoundTrip for ObjectPoolCrate {
    #[inline]
    fn round_trip(&self) {
        let obj = self.0.pull(|| Box::new(0));
        black_box(&*obj);
    }
}

struct LockfreeCrate(lockfree_object_pool::LinearObjectPool<Obj>);
impl RoundTrip for LockfreeCrate {
    #[inline]
    fn round_trip(&self) {
        let obj = self.0.pull();
        black_box(&*obj);
    }
}

struct OpoolCrate(opool::Pool<Alloc, Obj>);
impl RoundTrip for OpoolCrate {
    #[inline]
    fn round_trip(&self) {
        let obj = self.0.get();
        black_box(&*obj);
    }
}

fn contenders() -> Vec<(&'static str, Box<dyn RoundTrip>)> {
    let shard = Pool::new(Config::default()).unwrap();
    shard.put(&mut Plain, Box::new(0)).unwrap();
    let queue = ArrayQueue::new(1024);
    queue.push(Box::new(0)).unwrap();
    vec![
        ("shardpool Pool", Box::new(Shard(shard))),
        ("crossbeam ArrayQueue", Box::new(Queue(queue))),
        (
            "Mutex<Vec>",
            Box::new(Locked(Mutex::new(vec![Box::new(0)]))),
        ),
        (
            "object-pool",
            Box::new(ObjectPoolCrate(object_pool::Pool::new(64, || Box::new(0)))),
        ),
        (
            "lockfree-object-pool",
            Box::new(LockfreeCrate(lockfree_object_pool::LinearObjectPool::new(
                || Box::new(0),
                |v| **v = 0,
            ))),
        ),
        (
            "opool",
            Box::new(OpoolCrate(opool::Pool::new_prefilled(64, Alloc))),
        ),
    ]
}

/// Total time for `iters` round trips split over `threads` threads.
fn run_threads(pool: &dyn RoundTrip, threads: usize, iters: u64) -> Duration {
    let per = iters / threads as u64;
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                for _ in 0..per {
                    pool.round_trip();
                }
            });
        }
        start.wait();
        let t0 = Instant::now();
        // The scope joins every thread before returning.
        t0
    })
    .elapsed()
}

fn group(c: &mut Criterion, threads: usize) {
    let name = if threads == 1 {
        "get+put, 1 thread".to_string()
    } else {
        format!("get+put, {threads} threads (aggregate time per op)")
    };
    let mut g: BenchmarkGroup<'_, _> = c.benchmark_group(name);
    for (label, pool) in contenders() {
        if threads == 1 {
            g.bench_function(label, |b| b.iter(|| pool.round_trip()));
        } else {
            g.bench_function(label, |b| {
                b.iter_custom(|iters| run_threads(&*pool, threads, iters))
            });
        }
    }
    g.finish();
}

fn one_thread(c: &mut Criterion) {
    group(c, 1);
}

fn two_threads(c: &mut Criterion) {
    group(c, 2);
}

criterion_group!(benches, one_thread, two_threads);

/// `SHARDPOOL_COUNT="<contender> <iterations>"`: runs that many round trips
/// of one contender on one thread and nothing else, for counting
/// instructions under valgrind (the difference between two iteration
/// counts, over their difference, is one get+put; see docs/performance.md).
fn count_only(spec: &str) {
    let (label, iters) = spec
        .rsplit_once(' ')
        .expect("SHARDPOOL_COUNT is \"<contender> <iterations>\"");
    let iters: u64 = iters.parse().expect("a number of iterations");
    let (_, pool) = contenders()
        .into_iter()
        .find(|(name, _)| *name == label)
        .unwrap_or_else(|| panic!("no contender named {label:?}"));
    // Warm: thread index, counter block and first objects in place.
    for _ in 0..100 {
        pool.round_trip();
    }
    for _ in 0..iters {
        pool.round_trip();
    }
}

fn main() {
    if let Ok(spec) = std::env::var("SHARDPOOL_COUNT") {
        return count_only(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
