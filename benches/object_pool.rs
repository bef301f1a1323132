//! Rust-core round trips. Run with `cargo bench`.
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
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
    fn duplicate(&mut self, _: &Box<u64>) -> Box<u64> {
        unreachable!("unchecked pools never duplicate")
    }
}

fn get_put(c: &mut Criterion) {
    let pool = Arc::new(Pool::new(Config::default()).unwrap());
    let mut hooks = Plain;
    let warm = pool.get(&mut hooks, None).unwrap();
    pool.put(&mut hooks, warm).unwrap();
    c.bench_function("pool get+put, 1 thread", |b| {
        b.iter(|| {
            let obj = pool.get(&mut hooks, None).unwrap();
            pool.put(&mut hooks, black_box(obj)).unwrap();
        })
    });
}

criterion_group!(benches, get_put);
criterion_main!(benches);
