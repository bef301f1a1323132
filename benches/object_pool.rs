//! Rust-core round trips beside simpler structures. Run with `cargo bench`.
use std::hint::black_box;
use std::sync::Mutex;

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_queue::ArrayQueue;
use shardpool::{Config, Hooks, Pool};

struct Plain;

impl Hooks<Box<u64>> for Plain {
    type Error = ();
    fn create(&mut self) -> Result<Box<u64>, ()> {
        Ok(Box::new(0))
    }
    fn reset(&mut self, _: &Box<u64>) -> Result<(), ()> {
        Ok(())
    }
    fn validate(&mut self, _: &Box<u64>) -> Result<bool, ()> {
        Ok(true)
    }
    fn destroy(&mut self, _: Box<u64>) {}
    fn identity(&self, item: &Box<u64>) -> usize {
        &**item as *const u64 as usize
    }
    fn duplicate(&mut self, item: &Box<u64>) -> Box<u64> {
        Box::new(**item)
    }
}

fn get_put(c: &mut Criterion) {
    let mut g = c.benchmark_group("get+put, 1 thread");
    let pool = Pool::new(Config::default()).unwrap();
    let mut hooks = Plain;
    let warm = pool.get(&mut hooks, None).unwrap();
    pool.put(&mut hooks, warm).unwrap();
    g.bench_function("shardpool Pool", |b| {
        b.iter(|| {
            let obj = pool.get(&mut hooks, None).unwrap();
            pool.put(&mut hooks, black_box(obj)).unwrap();
        })
    });
    let q = ArrayQueue::new(1024);
    q.push(Box::new(0u64)).unwrap();
    g.bench_function("crossbeam ArrayQueue", |b| {
        b.iter(|| {
            let obj = q.pop().unwrap();
            q.push(black_box(obj)).unwrap();
        })
    });
    let m = Mutex::new(vec![Box::new(0u64)]);
    g.bench_function("Mutex<Vec>", |b| {
        b.iter(|| {
            let obj = m.lock().unwrap().pop().unwrap();
            m.lock().unwrap().push(black_box(obj));
        })
    });
    g.finish();
}

criterion_group!(benches, get_put);
criterion_main!(benches);
