//! `resize` and `min_size` against the pool's waiters and destroys
//! (`pool::sizing`, `limit::resize`), on the real `Pool`.
//!
//! For every interleaving (exhaustively) these models prove:
//! - growing `max_size` serves a get already waiting (no lost wake-up: the
//!   waiter is served by the resize itself, or finds the room when it
//!   queues);
//! - shrinking `max_size` while an object comes back loses nothing and
//!   keeps no more than the new bound once every object is back: the
//!   returned object is shed (its put sees the surplus mark) or the resize
//!   sheds it from idle storage, and then the last object back is kept;
//! - two discards racing, each refilling to `min_size`, make exactly the
//!   one replacement needed (the refill charges the bound with
//!   `try_reserve_below`), and the books balance.

use loom::sync::Arc;
use loom::thread;

use super::check;
use super::pool::{assert_balanced, Tally};
use super::Bound::Exhaustive;
use crate::pool::{Config, Pool, Sizes};

fn bounded(max_size: usize, min_size: usize) -> Arc<Pool<usize>> {
    Arc::new(
        Pool::new(Config {
            max_idle: Some(2),
            max_size: Some(max_size),
            min_size,
            shards: Some(1),
            ..Config::default()
        })
        .unwrap(),
    )
}

/// A pool of `N` with all `N` objects handed out, and the main thread's
/// hooks.
fn all_out<const N: usize>() -> (Arc<Pool<usize>>, Tally, [usize; N]) {
    let pool = bounded(N, 0);
    let mut main = Tally::new(0);
    let out = std::array::from_fn(|_| pool.get(&mut main, None).unwrap());
    (pool, main, out)
}

/// A pool of one, handed out; a get waits; the main thread grows the pool
/// to two: the get is served with a new object.
#[test]
fn growing_serves_a_waiting_get() {
    check(Exhaustive, || {
        let (pool, mut main, [out]) = all_out();
        let waiter = Arc::clone(&pool);
        let get = thread::spawn(move || waiter.get(&mut Tally::new(100), None));
        pool.resize(
            &mut main,
            Sizes {
                max_size: Some(2),
                min_size: None,
            },
        )
        .unwrap();
        let got = get.join().unwrap().unwrap();
        assert_ne!(got, out);
        assert_stats!(pool, created: 2, in_use: 2, idle: 0);
        assert_eq!(pool.waiting(), 0);
    });
}

/// A pool of two, both out: one comes back while the pool shrinks to one,
/// then the other comes back. Exactly one object is destroyed, one stays
/// idle (the bound holds once everything is back), nothing is lost.
#[test]
fn shrinking_while_an_object_comes_back_keeps_the_bound() {
    check(Exhaustive, || {
        let (pool, mut main, [a, b]) = all_out();
        let putter = Arc::clone(&pool);
        let put = thread::spawn(move || {
            let mut hooks = Tally::new(100);
            putter.put(&mut hooks, a).unwrap();
            hooks.destroyed
        });
        pool.resize(
            &mut main,
            Sizes {
                max_size: Some(1),
                min_size: None,
            },
        )
        .unwrap();
        let mut destroyed = put.join().unwrap();
        pool.put(&mut main, b).unwrap();
        destroyed.extend(main.destroyed);
        assert_eq!(destroyed.len(), 1, "one object shed: {destroyed:?}");
        assert_stats!(pool, idle: 1, in_use: 0, destroyed: 1, dropped: 1);
        assert_eq!(pool.waiting(), 0, "the surplus mark is cleared");
        assert_balanced(&pool);
    });
}

/// `min_size` 1 in a pool of two, both out: two threads discard one each,
/// and each refills. Exactly one replacement is made.
#[test]
fn racing_discards_refill_to_min_size_exactly() {
    check(Exhaustive, || {
        let pool = bounded(2, 1);
        let mut main = Tally::new(0);
        pool.refill(&mut main).unwrap();
        let a = pool.get(&mut main, None).unwrap();
        let b = pool.get(&mut main, None).unwrap();
        let other = Arc::clone(&pool);
        let discard = thread::spawn(move || other.discard(&mut Tally::new(100), a).unwrap());
        pool.discard(&mut main, b).unwrap();
        discard.join().unwrap();
        assert_stats!(pool, created: 3, destroyed: 2, idle: 1, in_use: 0);
        assert_balanced(&pool);
    });
}
