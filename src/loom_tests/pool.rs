//! The pool's own orderings (`pool.rs`): `close` racing `put`, a waiting
//! `get` woken by a `put`, and a timed-out `get` racing a `put`, on the real
//! `Pool` with its shards, counters, ledger and bound.
//!
//! For every interleaving within the bound these models prove:
//! - close racing put strands nothing: after both, no object is idle, and
//!   every object was destroyed exactly once (the `SeqCst` fences in
//!   `close` and after a put's push pair up; without them loom finds an
//!   object left idle in a closed pool);
//! - a put wakes a waiting get with the object (no lost wake-up: a waiter
//!   that is never woken is a deadlock to loom), also while `close` races
//!   both;
//! - a get that times out while the object comes back either has it or
//!   leaves it idle in the pool: never lost, never handed out twice;
//! - a `get_many` waiting on a full pool holds nothing: a holder's second
//!   `get` is served meanwhile, the batch is served once both objects come
//!   back, and the counters count what the callers did (the batch's two
//!   hits, no put or hit for objects it never handed out);
//! - a non-blocking get finished at any moment while a put decides it
//!   (`finish_wait` called before, during or after the grant) takes the
//!   object, or leaves it idle once given up: its waiter is never left
//!   queued for a grant no one takes;
//! - a checked `put_many` refused at an object it cannot check in leaves
//!   the objects before it out again, while another thread puts one of
//!   them: that object ends idle once or still out, never both, never lost;
//! - the counters are exact once the threads are joined:
//!   `created == destroyed + idle + in_use`, and the ledger's `outstanding`
//!   matches what the threads hold.

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;

use super::Bound::{Exhaustive, Preemptions};
use super::{check, spawn_with};
use crate::pool::{Config, GetError, Hooks, Pool, PutError, Step};

/// Objects are numbers, unique per thread (`base + n`); destroyed ones are
/// recorded. (The `sizing` models use it too.)
pub(super) struct Tally {
    next: usize,
    pub(super) destroyed: Vec<usize>,
}

impl Tally {
    pub(super) fn new(base: usize) -> Self {
        Tally {
            next: base,
            destroyed: Vec::new(),
        }
    }
}

impl Hooks<usize> for Tally {
    type Error = ();
    fn create(&mut self) -> Result<usize, ()> {
        self.next += 1;
        Ok(self.next)
    }
    fn destroy(&mut self, item: usize) {
        self.destroyed.push(item);
    }
    fn identity(&self, item: &usize) -> usize {
        *item
    }
    fn duplicate(&mut self, item: &usize) -> usize {
        *item
    }
}

fn pool(max_size: Option<usize>) -> Arc<Pool<usize>> {
    Arc::new(
        Pool::new(Config {
            max_idle: Some(2),
            max_size,
            shards: Some(1),
            ..Config::default()
        })
        .unwrap(),
    )
}

/// A pool bounded at `max_size`, the main thread's hooks, and the object
/// the main thread holds.
fn one_out(max_size: usize) -> (Arc<Pool<usize>>, Tally, usize) {
    let pool = pool(Some(max_size));
    let mut main = Tally::new(0);
    let out = pool.get(&mut main, None).unwrap();
    (pool, main, out)
}

/// A thread that puts `item` back with hooks numbered from `base`; it
/// returns what they destroyed.
fn spawn_put(pool: &Arc<Pool<usize>>, base: usize, item: usize) -> thread::JoinHandle<Vec<usize>> {
    let pool = Arc::clone(pool);
    thread::spawn(move || {
        let mut hooks = Tally::new(base);
        pool.put(&mut hooks, item).unwrap();
        hooks.destroyed
    })
}

/// A thread that gets an object with hooks numbered from `base`.
fn spawn_get(
    pool: &Arc<Pool<usize>>,
    base: usize,
    timeout: Option<Duration>,
) -> thread::JoinHandle<Result<usize, GetError<()>>> {
    let pool = Arc::clone(pool);
    thread::spawn(move || pool.get(&mut Tally::new(base), timeout))
}

/// A thread that gets `n` objects at once with hooks numbered from `base`.
fn spawn_get_many(
    pool: &Arc<Pool<usize>>,
    base: usize,
    n: usize,
) -> thread::JoinHandle<Result<Vec<usize>, GetError<()>>> {
    let pool = Arc::clone(pool);
    thread::spawn(move || pool.get_many(&mut Tally::new(base), n, None))
}

/// `created == destroyed + idle + in_use`.
pub(super) fn assert_balanced(pool: &Pool<usize>) {
    let s = pool.stats();
    assert_eq!(s.created, s.destroyed + s.idle + s.in_use, "{s:?}");
}

/// An unbounded pool with one idle object and one handed out: a put of the
/// handed-out one races `close`. Both objects are destroyed, once each.
#[test]
fn close_racing_put_strands_nothing() {
    check(Exhaustive, || {
        let pool = pool(None);
        let mut main = Tally::new(0);
        pool.prefill(&mut main, 2).unwrap();
        let out = pool.get(&mut main, None).unwrap();
        let put = spawn_put(&pool, 100, out);
        pool.close(&mut main);
        let mut destroyed = put.join().unwrap();
        destroyed.extend(main.destroyed);
        destroyed.sort_unstable();
        assert_eq!(destroyed, [1, 2], "each object destroyed exactly once");
        assert_eq!(pool.idle(), 0, "nothing stays idle in a closed pool");
        assert_stats!(pool, created: 2, destroyed: 2, hits: 1, puts: 1);
        assert_balanced(&pool);
    });
}

/// A bounded pool of one, handed out: a get waits for it, and the put that
/// returns it wakes the get, which gets that very object.
#[test]
fn put_wakes_a_waiting_get() {
    check(Exhaustive, || {
        let (pool, mut main, out) = one_out(1);
        let get = spawn_get(&pool, 100, None);
        pool.put(&mut main, out).unwrap();
        assert_eq!(get.join().unwrap(), Ok(out));
        assert_eq!(pool.outstanding(), Some(1));
        assert_eq!(pool.idle(), 0);
        assert_stats!(pool, created: 1, misses: 1, hits: 1, puts: 1);
        assert_balanced(&pool);
    });
}

/// A bounded pool of one, handed out: a get waits, and a discard of the
/// object (destroyed, its slot released through the path every destroy
/// takes) lets the get create a new one in the freed slot.
#[test]
fn discard_lets_a_waiting_get_create() {
    check(Exhaustive, || {
        let (pool, mut main, out) = one_out(1);
        let get = spawn_get(&pool, 100, None);
        pool.discard(&mut main, out).unwrap();
        assert_eq!(main.destroyed, [out]);
        let got = get.join().unwrap().unwrap();
        assert_ne!(got, out, "a discarded object is never handed out");
        assert_eq!(pool.outstanding(), Some(1));
        assert_stats!(pool, created: 2, destroyed: 1, discarded: 1, in_use: 1);
        assert_balanced(&pool);
    });
}

/// As above while `close` races both: the get has the object or is told the
/// pool closed; no thread is left waiting, and once the object is back every
/// object is destroyed and none is idle.
#[test]
fn close_racing_put_and_a_waiting_get() {
    check(Preemptions(3), || {
        let (pool, mut main, out) = one_out(1);
        let get = spawn_with(&pool, move |pool| {
            let mut hooks = Tally::new(100);
            let got = pool.get(&mut hooks, None);
            (got, hooks.destroyed)
        });
        let put = spawn_put(&pool, 200, out);
        pool.close(&mut main);
        let (got, mut destroyed) = get.join().unwrap();
        destroyed.extend(put.join().unwrap());
        match got {
            // The holder returns it after the close: it is destroyed. (If
            // the put found the pool closed and destroyed `out`, a get that
            // had started before the close may have used the freed slot to
            // create a new object.)
            Ok(item) => pool.put(&mut main, item).unwrap(),
            Err(e) => assert_eq!(e, GetError::Closed),
        }
        destroyed.extend(main.destroyed);
        destroyed.sort_unstable();
        let s = pool.stats();
        assert!(destroyed.contains(&out));
        assert!(destroyed.windows(2).all(|w| w[0] != w[1]), "destroyed once");
        assert_eq!(destroyed.len() as u64, s.created, "every object destroyed");
        assert_eq!(s.destroyed, s.created);
        assert_eq!(pool.idle(), 0);
        assert_eq!(pool.outstanding(), Some(0));
        assert_balanced(&pool);
    });
}

/// A get whose deadline passes while the object comes back: it has the
/// object, or the object is idle in the pool. Never both, never neither.
#[test]
fn timed_out_get_racing_put_loses_nothing() {
    check(Exhaustive, || {
        let (pool, mut main, out) = one_out(1);
        let get = spawn_get(&pool, 100, Some(Duration::from_secs(1)));
        pool.put(&mut main, out).unwrap();
        let held = match get.join().unwrap() {
            Ok(item) => {
                assert_eq!(item, out);
                1
            }
            Err(e) => {
                assert_eq!(e, GetError::Timeout);
                0
            }
        };
        assert_eq!(pool.idle() + held, 1);
        assert_eq!(pool.outstanding(), Some(held));
        assert!(main.destroyed.is_empty());
        assert_stats!(pool, created: 1, destroyed: 0, timeouts: 1 - held as u64);
        assert_balanced(&pool);
    });
}

/// Issue 11: a bounded pool of two, one object held by the main thread,
/// `get_many(2)` waiting in another. The main thread's second `get` is
/// served (the batch holds nothing); once both come back the batch has
/// them, and the counters show the callers' 4 gets and 2 puts exactly.
#[test]
fn a_waiting_batch_holds_nothing_and_counts_only_what_callers_did() {
    check(Preemptions(3), || {
        let (pool, mut main, first) = one_out(2);
        let batch = spawn_get_many(&pool, 100, 2);
        let second = pool.get(&mut main, None).unwrap();
        pool.put(&mut main, first).unwrap();
        pool.put(&mut main, second).unwrap();
        let mut got = batch.join().unwrap().unwrap();
        got.sort_unstable();
        assert_eq!(got, [first.min(second), first.max(second)]);
        let s = pool.stats();
        assert_eq!((s.hits, s.misses, s.puts, s.created), (2, 2, 2, 2));
        assert_eq!((s.waits <= 1, s.timeouts, s.cancelled), (true, 0, 0));
        assert_eq!(pool.outstanding(), Some(2));
        pool.put_many(&mut main, got).unwrap();
        assert_eq!(pool.idle(), 2);
        assert_balanced(&pool);
    });
}

/// A non-blocking get (the asyncio path) finished while a put decides it,
/// in any order: `finish_wait` before the grant withdraws the waiter (a
/// timeout), during it takes what was granted, after it takes the object;
/// a lost race (woken, the object gone) waits again and is given up.
/// Either way the object is held once or idle, and no waiter is left.
#[test]
fn a_pending_get_finished_while_a_put_decides_it_loses_nothing() {
    check(Exhaustive, || {
        let (pool, mut main, out) = one_out(1);
        let Ok(Step::Wait(pending)) = pool.get_or_enqueue(&mut main) else {
            panic!("a full pool queues the get");
        };
        let put = spawn_put(&pool, 100, out);
        let held = match pool.finish_wait(&mut main, &pending) {
            Ok(Step::Ready(item)) => {
                assert_eq!(item, out);
                1
            }
            Ok(Step::Wait(again)) => {
                pool.abandon_wait(&mut main, &again, false);
                0
            }
            Err(e) => {
                assert_eq!(e, GetError::Timeout);
                0
            }
        };
        assert!(put.join().unwrap().is_empty());
        let s = pool.stats();
        assert_eq!((pool.idle() + held, s.waiting), (1, 0), "{s:?}");
        assert_eq!(pool.outstanding(), Some(held));
        assert_balanced(&pool);
    });
}

/// A checked `put_many([out, foreign])` (refused: `foreign` was never
/// handed out) checks `out` in, then out again (`check_in_all`), while
/// another thread puts `out`. That put comes before the batch (the batch is
/// refused at `out`), after it, or between its check-in and its undo (then
/// it is refused, a second return of `out`): `out` ends idle once or still
/// out, never both and never lost, and the counters balance.
#[test]
fn a_refused_put_many_racing_a_put_of_its_object_loses_nothing() {
    check(Exhaustive, || {
        let config = Config {
            checked: true,
            max_idle: Some(2),
            shards: Some(1),
            ..Config::default()
        };
        let pool = Arc::new(Pool::new(config).unwrap());
        let mut main = Tally::new(0);
        let out = pool.get(&mut main, None).unwrap();
        let put = spawn_with(&pool, move |pool| {
            pool.put(&mut Tally::new(100), out).is_ok()
        });
        let refused = pool.put_many(&mut main, vec![out, 999]);
        let put_ok = put.join().unwrap();
        match refused {
            Err(PutError::NotOut { index: 0 }) => {
                assert!(put_ok, "refused at an object that was out")
            }
            Err(PutError::NotOut { index: 1 }) => {}
            other => panic!("{other:?}"),
        }
        let held = usize::from(!put_ok);
        assert_eq!((pool.idle(), pool.outstanding()), (1 - held, Some(held)));
        assert_eq!(pool.stats().in_use, held as u64);
        assert_balanced(&pool);
    });
}
