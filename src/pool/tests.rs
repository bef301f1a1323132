use super::*;
use crate::budget::IdleBudget;
use crate::limit::Park;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

/// A pooled test object: `dirty` is set by users and cleared by reset.
#[derive(Debug, Default)]
struct Obj {
    dirty: AtomicBool,
    valid: AtomicBool,
}

impl PartialEq for Obj {
    fn eq(&self, other: &Obj) -> bool {
        std::ptr::eq(self, other)
    }
}

type Item = Arc<Obj>;

/// Hooks with switches for failures, and a log of what ran.
#[derive(Default)]
struct TestHooks {
    fail_create: bool,
    fail_reset: bool,
    fail_validate: bool,
    /// `park` fails at once, as a Python signal handler raising would.
    interrupt_park: bool,
    /// `check_interrupts` fails, as after a `destroy` interrupted by Ctrl-C.
    interrupt_after_reject: bool,
    check_interrupts_calls: usize,
    reset_calls: usize,
    destroyed: Vec<Item>,
    /// Errors the pool reported instead of returning (refills).
    reported: Vec<&'static str>,
}

impl Hooks<Item> for TestHooks {
    type Error = &'static str;
    fn create(&mut self) -> Result<Item, &'static str> {
        if self.fail_create {
            return Err("create failed");
        }
        let obj = Obj::default();
        obj.valid.store(true, Ordering::Relaxed);
        Ok(Arc::new(obj))
    }
    fn reset(&mut self, item: &Item) -> Result<(), &'static str> {
        self.reset_calls += 1;
        if self.fail_reset {
            return Err("reset failed");
        }
        item.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }
    fn validate(&mut self, item: &Item) -> Result<bool, &'static str> {
        if self.fail_validate {
            return Err("validate failed");
        }
        Ok(item.valid.load(Ordering::Relaxed))
    }
    fn destroy(&mut self, item: Item) {
        self.destroyed.push(item);
    }
    fn report(&mut self, error: &'static str) {
        self.reported.push(error);
    }
    fn identity(&self, item: &Item) -> usize {
        Arc::as_ptr(item) as usize
    }
    fn duplicate(&mut self, item: &Item) -> Item {
        Arc::clone(item)
    }
    fn park(&mut self, waiter: &dyn Park, deadline: Option<Instant>) -> Result<bool, &'static str> {
        if self.interrupt_park {
            return Err("interrupted");
        }
        Ok(waiter.park(deadline))
    }
    fn check_interrupts(&mut self) -> Result<(), &'static str> {
        self.check_interrupts_calls += 1;
        if self.interrupt_after_reject {
            return Err("interrupted");
        }
        Ok(())
    }
}

mod sizing;

fn pool(config: Config) -> Pool<Item> {
    Pool::new(config).unwrap()
}

fn bounded(max_size: usize) -> Pool<Item> {
    pool(Config {
        max_size: Some(max_size),
        shards: Some(2),
        ..Config::default()
    })
}

type Got<T> = std::thread::JoinHandle<Result<T, GetError<&'static str>>>;

/// A thread that gets one object from `p` (with fresh hooks).
fn spawn_get(p: &Arc<Pool<Item>>, timeout: Option<Duration>) -> Got<Item> {
    let p = Arc::clone(p);
    std::thread::spawn(move || p.get(&mut TestHooks::default(), timeout))
}

/// A thread that gets `n` objects at once from `p` (with fresh hooks).
fn spawn_get_many(p: &Arc<Pool<Item>>, n: usize, timeout: Option<Duration>) -> Got<Vec<Item>> {
    let p = Arc::clone(p);
    std::thread::spawn(move || p.get_many(&mut TestHooks::default(), n, timeout))
}

/// `n` objects, one `get` each.
fn get_n<H: Hooks<Item>>(p: &Pool<Item>, h: &mut H, n: usize) -> Vec<Item>
where
    H::Error: std::fmt::Debug,
{
    (0..n).map(|_| p.get(h, None).unwrap()).collect()
}

/// `p`, shared, with fresh hooks and the object a first get took.
fn one_out(p: Pool<Item>) -> (Arc<Pool<Item>>, TestHooks, Item) {
    let p = Arc::new(p);
    let mut h = TestHooks::default();
    let a = p.get(&mut h, None).unwrap();
    (p, h, a)
}

/// A bounded pool of 2, shared, with both its objects out.
fn both_out_of_two() -> (Arc<Pool<Item>>, TestHooks, Item, Item) {
    let (p, mut h, a) = one_out(bounded(2));
    let b = p.get(&mut h, None).unwrap();
    (p, h, a, b)
}

/// A bounded pool of 1, shared, with its object out and a thread queued
/// for one (for 10 s at most).
fn one_out_and_a_waiter() -> (Arc<Pool<Item>>, TestHooks, Item, Got<Item>) {
    let (p, h, a) = one_out(bounded(1));
    let waiter = spawn_get(&p, Some(Duration::from_secs(10)));
    while p.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    (p, h, a, waiter)
}

/// Gives `item` back spoiled: `validate` rejects it when it is next taken.
fn put_invalid<H: Hooks<Item>>(p: &Pool<Item>, h: &mut H, item: Item)
where
    H::Error: std::fmt::Debug,
{
    item.valid.store(false, Ordering::Relaxed);
    p.put(h, item).unwrap();
}

/// Why a `get_many(n)` without timeout failed.
fn batch_error(p: &Pool<Item>, h: &mut TestHooks, n: usize) -> GetError<&'static str> {
    p.get_many(h, n, None).unwrap_err()
}

/// Makes `n` objects idle at once (a batch out, then back).
fn fill_idle(p: &Pool<Item>, h: &mut TestHooks, n: usize) {
    let got = p.get_many(h, n, None).unwrap();
    p.put_many(h, got).unwrap();
}

/// An unbounded pool with one shard: every object in one queue.
fn single_shard() -> Pool<Item> {
    pool(Config {
        shards: Some(1),
        ..Config::default()
    })
}

/// An unbounded pool of `shards` shards sharing `max_idle` idle slots.
fn sharded(shards: usize, max_idle: usize) -> Pool<Item> {
    pool(Config {
        shards: Some(shards),
        max_idle: Some(max_idle),
        ..Config::default()
    })
}

fn assert_balanced(p: &Pool<Item>) {
    let s = p.stats();
    assert_eq!(s.created, s.destroyed + s.idle + s.in_use, "{s:?}");
}

#[test]
fn a_batch_larger_than_its_home_shard_uses_every_shard() {
    let (p, mut h) = (sharded(4, 64), TestHooks::default());
    let first = get_n(&p, &mut h, 64);
    p.put_many(&mut h, first.clone()).unwrap();
    assert_eq!(p.stats().idle, 64, "every shard filled");
    let again = p.get_many(&mut h, 64, None).unwrap();
    let s = p.stats();
    assert_eq!((s.hits, s.misses, s.idle, s.in_use), (64, 64, 0, 64));
    for item in &first {
        assert!(again.iter().any(|a| Arc::ptr_eq(a, item)));
    }
    p.put_many(&mut h, again).unwrap();
    assert_eq!(p.stats().dropped, 0);
    assert_balanced(&p);
}

#[test]
fn reuses_returned_objects_and_resets_them_on_put() {
    let (p, mut h, a) = one_out(pool(Config::default()));
    a.dirty.store(true, Ordering::Relaxed);
    p.put(&mut h, Arc::clone(&a)).unwrap();
    assert_eq!(h.reset_calls, 1);
    let b = p.get(&mut h, None).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!b.dirty.load(Ordering::Relaxed));
    let s = p.stats();
    assert_eq!(
        (s.created, s.hits, s.misses, s.puts, s.in_use),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(s.max_in_use, 1);
}

#[test]
fn reset_on_get_defers_the_reset() {
    let p = pool(Config {
        reset_on: ResetOn::Get,
        ..Config::default()
    });
    let mut h = TestHooks::default();
    let a = p.get(&mut h, None).unwrap();
    p.put(&mut h, a).unwrap();
    assert_eq!(h.reset_calls, 0);
    p.get(&mut h, None).unwrap();
    assert_eq!(h.reset_calls, 1);
}

#[test]
fn max_idle_bounds_storage_and_counts_drops() {
    let (p, mut h) = (sharded(4, 2), TestHooks::default());
    let items = get_n(&p, &mut h, 5);
    for item in items {
        p.put(&mut h, item).unwrap();
    }
    assert_stats!(p, idle: 2, dropped: 3, destroyed: 3);
    assert_eq!(h.destroyed.len(), 3);
    assert_balanced(&p);
}

#[test]
fn failing_factory_changes_nothing() {
    let p = bounded(1);
    let mut h = TestHooks {
        fail_create: true,
        ..TestHooks::default()
    };
    assert_eq!(p.get(&mut h, None), Err(GetError::Hook("create failed")));
    assert_eq!(p.stats(), Snapshot::default());
    // The slot was given back: a working factory can still fill the pool.
    h.fail_create = false;
    assert!(p.get(&mut h, Some(Duration::ZERO)).is_ok());
}

#[test]
fn failing_reset_destroys_and_reports() {
    let (p, mut h, a) = one_out(pool(Config::default()));
    h.fail_reset = true;
    assert_eq!(p.put(&mut h, a), Err(PutError::Hook("reset failed")));
    assert_stats!(p, reset_errors: 1, destroyed: 1, idle: 0, puts: 1);
    assert_eq!(h.destroyed.len(), 1);
    assert_balanced(&p);
}

#[test]
fn invalid_objects_are_destroyed_and_the_next_one_tried() {
    let p = single_shard();
    let mut h = TestHooks::default();
    let items = get_n(&p, &mut h, 3);
    items[0].valid.store(false, Ordering::Relaxed);
    items[1].valid.store(false, Ordering::Relaxed);
    let good = Arc::clone(&items[2]);
    for item in items {
        p.put(&mut h, item).unwrap();
    }
    let got = p.get(&mut h, None).unwrap();
    assert!(Arc::ptr_eq(&got, &good));
    assert_stats!(p, invalid: 2, destroyed: 2, hits: 1);
}

#[test]
fn a_rejected_first_look_in_a_full_bounded_pool_frees_the_slot_for_a_new_object() {
    // The first idle object is vetted ahead of the wait loop; when it is
    // rejected the loop goes on: its slot was released, so the get creates
    // at once, without waiting.
    let (p, mut h, a) = one_out(bounded(1));
    put_invalid(&p, &mut h, a);
    let b = p.get(&mut h, Some(Duration::ZERO)).unwrap();
    assert!(b.valid.load(Ordering::Relaxed));
    assert_stats!(p, invalid: 1, created: 2, misses: 2, hits: 0, waits: 0);
    p.put(&mut h, b).unwrap();
    assert_balanced(&p);
}

#[test]
fn an_interrupt_after_a_reject_ends_the_get_and_the_batch_holding_nothing() {
    // `Hooks::check_interrupts`, asked after each reject (first look, the
    // loop, a batch): an `Err` ends the call there, the rejected object's
    // slot freed, no new object made.
    let p = bounded(2);
    let mut h = TestHooks::default();
    let a = p.get(&mut h, None).unwrap();
    put_invalid(&p, &mut h, a);
    h.interrupt_after_reject = true;
    assert!(matches!(
        p.get(&mut h, Some(Duration::ZERO)),
        Err(GetError::Hook("interrupted"))
    ));
    assert_eq!(h.check_interrupts_calls, 1);
    let s = p.stats();
    assert_eq!((s.invalid, s.created, s.destroyed, s.in_use), (1, 1, 1, 0));
    h.interrupt_after_reject = false;
    let (b, c) = (
        p.get(&mut h, Some(Duration::ZERO)).unwrap(),
        p.get(&mut h, Some(Duration::ZERO)).unwrap(),
    );
    put_invalid(&p, &mut h, b);
    p.put(&mut h, c).unwrap();
    h.interrupt_after_reject = true;
    assert!(matches!(
        p.get_many(&mut h, 2, Some(Duration::ZERO)),
        Err(GetError::Hook("interrupted"))
    ));
    let s = p.stats();
    assert_eq!((s.invalid, s.in_use, s.idle), (2, 0, 1));
    h.interrupt_after_reject = false;
    let both = p.get_many(&mut h, 2, Some(Duration::ZERO)).unwrap();
    assert_eq!(both.len(), 2, "both slots free");
    for item in both {
        p.put(&mut h, item).unwrap();
    }
    assert_balanced(&p);
}

#[test]
fn an_empty_pool_is_looked_at_once_then_creates() {
    // Two shards, both empty: the get's first look steals from neither
    // and it creates, counted as one miss.
    let (p, mut h, a) = one_out(bounded(2));
    assert_stats!(p, created: 1, misses: 1, hits: 0, waits: 0, idle: 0);
    p.put(&mut h, a).unwrap();
    let again = p.get(&mut h, None).unwrap();
    assert_eq!((p.stats().hits, p.stats().created), (1, 1));
    p.put(&mut h, again).unwrap();
    assert_balanced(&p);
}

#[test]
fn validation_never_loops_forever() {
    let mut h = TestHooks::default();
    let p = pool(Config {
        max_idle: Some(3),
        shards: Some(1),
        ..Config::default()
    });
    for item in get_n(&p, &mut h, 3) {
        put_invalid(&p, &mut h, item);
    }
    // All idle objects are invalid: each is destroyed once, then a new one.
    let got = p.get(&mut h, None).unwrap();
    assert!(got.valid.load(Ordering::Relaxed));
    assert_stats!(p, invalid: 3, created: 4, misses: 4);
}

#[test]
fn a_raising_validator_destroys_and_propagates() {
    let (p, mut h, a) = one_out(pool(Config::default()));
    p.put(&mut h, a).unwrap();
    h.fail_validate = true;
    assert_eq!(p.get(&mut h, None), Err(GetError::Hook("validate failed")));
    assert_stats!(p, invalid: 1, destroyed: 1, idle: 0);
    assert_balanced(&p);
}

#[test]
fn idle_timeout_expires_objects_on_get_and_trim() {
    let p = pool(Config {
        idle_timeout: Some(Duration::from_millis(20)),
        shards: Some(1),
        ..Config::default()
    });
    let mut h = TestHooks::default();
    let a = p.get(&mut h, None).unwrap();
    let b = p.get(&mut h, None).unwrap();
    p.put(&mut h, a).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let fresh = p.get(&mut h, None).unwrap();
    assert_eq!(p.stats().expired, 1);
    assert_eq!(p.stats().created, 3);
    p.put(&mut h, b).unwrap();
    p.put(&mut h, fresh).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(p.trim(&mut h, 10), 2);
    assert_eq!(p.stats().expired, 3);
    assert_balanced(&p);
}

/// A timeout longer than `u64` nanoseconds never expires: a plain cast of
/// `2^64 + 1` ns once wrapped it to 1 ns.
#[test]
fn an_idle_timeout_beyond_u64_nanoseconds_never_expires() {
    for timeout in [
        Duration::new(18_446_744_073, 709_551_617),
        Duration::from_secs(18_446_744_074),
        Duration::MAX,
    ] {
        let p = pool(Config {
            idle_timeout: Some(timeout),
            shards: Some(1),
            ..Config::default()
        });
        let mut h = TestHooks::default();
        let a = p.get(&mut h, None).unwrap();
        p.put(&mut h, Arc::clone(&a)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            Arc::ptr_eq(&p.get(&mut h, None).unwrap(), &a),
            "{timeout:?}"
        );
        assert_eq!(p.trim(&mut h, usize::MAX), 0);
        assert_eq!(p.stats().expired, 0, "{timeout:?}");
    }
}

#[test]
fn trim_keeps_the_newest_and_clear_empties() {
    let mut h = TestHooks::default();
    let p = pool(Config {
        idle_timeout: Some(Duration::from_secs(60)),
        shards: Some(2),
        ..Config::default()
    });
    let items = get_n(&p, &mut h, 4);
    let newest = Arc::clone(&items[3]);
    for item in items {
        p.put(&mut h, item).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(p.trim(&mut h, 1), 3);
    assert_eq!(p.idle(), 1);
    assert!(Arc::ptr_eq(&p.get(&mut h, None).unwrap(), &newest));
    p.put(&mut h, newest).unwrap();
    assert_eq!(p.trim(&mut h, 0), 1);
    assert_eq!(p.idle(), 0);
}

#[test]
fn checked_pool_refuses_foreign_and_double_returns() {
    let p = pool(Config {
        checked: true,
        ..Config::default()
    });
    let mut h = TestHooks::default();
    let a = p.get(&mut h, None).unwrap();
    let foreign = h.create().unwrap();
    assert_eq!(p.put(&mut h, foreign), Err(PutError::NotOut { index: 0 }));
    p.put(&mut h, Arc::clone(&a)).unwrap();
    assert_eq!(p.put(&mut h, a), Err(PutError::NotOut { index: 0 }));
    assert_stats!(p, puts: 1, idle: 1);
}

#[test]
fn put_many_is_all_or_nothing_when_checked() {
    let (p, mut h) = (bounded(4), TestHooks::default());
    let items = p.get_many(&mut h, 3, None).unwrap();
    let mut bad = items.clone();
    bad.push(Arc::clone(&items[0]));
    assert_eq!(p.put_many(&mut h, bad), Err(PutError::NotOut { index: 3 }));
    assert_eq!(p.stats().in_use, 3);
    assert_eq!(p.outstanding(), Some(3));
    // A foreign object after some that were out: those are out again.
    let foreign = Arc::new(Obj::default());
    let mixed = vec![Arc::clone(&items[1]), foreign, Arc::clone(&items[2])];
    assert_eq!(
        p.put_many(&mut h, mixed),
        Err(PutError::NotOut { index: 1 })
    );
    assert_eq!(p.outstanding(), Some(3));
    assert_eq!((p.stats().in_use, p.stats().puts), (3, 0));
    p.put_many(&mut h, items).unwrap();
    assert_eq!(p.stats().idle, 3);
    assert_eq!(p.outstanding(), Some(0));
}

#[test]
fn get_many_gives_back_what_it_took_on_failure_and_counts_none_of_it() {
    let (p, mut h) = (bounded(3), TestHooks::default());
    assert_eq!(
        p.get_many(&mut h, 4, None),
        Err(GetError::TooMany {
            requested: 4,
            max_size: 3
        })
    );
    fill_idle(&p, &mut h, 2);
    let before = p.stats();
    // Two idle objects taken, the third must be made: the factory fails.
    h.fail_create = true;
    assert_eq!(batch_error(&p, &mut h, 3), GetError::Hook("create failed"));
    h.fail_create = false;
    let s = p.stats();
    assert_eq!(
        (s.hits, s.misses, s.puts),
        (before.hits, before.misses, before.puts)
    );
    assert_eq!((s.idle, s.in_use, s.created), (2, 0, 2));
    assert_eq!(p.outstanding(), Some(0));
    assert_eq!(p.limit.as_ref().unwrap().alive(), 2);
    // One slot free, two wanted, no wait allowed: nothing is taken or
    // created.
    let held = p.get(&mut h, None).unwrap();
    let _second = p.get(&mut h, None).unwrap();
    assert_eq!(
        p.get_many(&mut h, 2, Some(Duration::ZERO)),
        Err(GetError::Timeout)
    );
    assert_stats!(p, idle: 0, in_use: 2, created: 2, waits: 1, timeouts: 1);
    assert_eq!(p.outstanding(), Some(2));
    p.put(&mut h, held).unwrap();
    assert_balanced(&p);
}

#[test]
fn get_many_replaces_rejected_objects_without_waiting() {
    // A full bounded pool whose idle objects validate rejects: the batch
    // destroys them and makes new ones in their slots, at once.
    let (p, mut h) = (bounded(3), TestHooks::default());
    let three = p.get_many(&mut h, 3, None).unwrap();
    three[0].valid.store(false, Ordering::Relaxed);
    three[2].valid.store(false, Ordering::Relaxed);
    p.put_many(&mut h, three).unwrap();
    let got = p.get_many(&mut h, 3, Some(Duration::ZERO)).unwrap();
    assert_eq!(got.len(), 3);
    assert_stats!(p, invalid: 2, destroyed: 2, created: 5, hits: 1, misses: 5, waits: 0);
    assert_eq!(p.limit.as_ref().unwrap().alive(), 3);
    p.put_many(&mut h, got).unwrap();
    assert_balanced(&p);
}

#[test]
fn a_failing_validator_in_a_batch_gives_everything_back() {
    let (p, mut h) = (bounded(3), TestHooks::default());
    fill_idle(&p, &mut h, 3);
    h.fail_validate = true;
    let error = batch_error(&p, &mut h, 3);
    assert_eq!(error, GetError::Hook("validate failed"));
    h.fail_validate = false;
    let s = p.stats();
    // The object the validator failed on is destroyed (and its slot freed);
    // the others are idle again; nothing was handed out or returned.
    assert_eq!((s.invalid, s.destroyed, s.idle, s.in_use), (1, 1, 2, 0));
    assert_eq!((s.hits, s.misses, s.puts), (0, 3, 3));
    assert_eq!(p.limit.as_ref().unwrap().alive(), 2);
    assert_eq!(p.outstanding(), Some(0));
    assert_balanced(&p);
}

#[test]
fn bounded_pool_times_out_then_serves_after_put() {
    let (p, mut h) = (bounded(1), TestHooks::default());
    let a = p.get(&mut h, None).unwrap();
    let start = Instant::now();
    assert_eq!(
        p.get(&mut h, Some(Duration::from_millis(30))),
        Err(GetError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(p.get(&mut h, Some(Duration::ZERO)), Err(GetError::Timeout));
    p.put(&mut h, a).unwrap();
    assert!(p.get(&mut h, Some(Duration::ZERO)).is_ok());
    assert_stats!(p, waits: 2, timeouts: 2, created: 1);
}

#[test]
fn a_put_from_another_thread_wakes_the_waiter() {
    let (p, mut h, a, waiter) = one_out_and_a_waiter();
    p.put(&mut h, Arc::clone(&a)).unwrap();
    let got = waiter.join().unwrap().unwrap();
    assert!(Arc::ptr_eq(&got, &a));
    assert_eq!(p.stats().created, 1);
}

#[test]
fn destroying_an_object_lets_a_waiter_create() {
    let (p, mut h, a, waiter) = one_out_and_a_waiter();
    h.fail_reset = true;
    assert!(p.put(&mut h, a).is_err());
    let got = waiter.join().unwrap().unwrap();
    assert!(got.valid.load(Ordering::Relaxed));
    assert_eq!(p.stats().created, 2);
}

#[test]
fn discard_destroys_frees_the_slot_and_serves_a_waiter() {
    let (p, mut h, a, waiter) = one_out_and_a_waiter();
    p.discard(&mut h, Arc::clone(&a)).unwrap();
    assert!(h.destroyed.iter().any(|d| Arc::ptr_eq(d, &a)));
    // The waiter got the freed slot and a new object in it.
    let got = waiter.join().unwrap().unwrap();
    assert!(!Arc::ptr_eq(&got, &a));
    assert_stats!(p, created: 2, destroyed: 1, discarded: 1, puts: 0, in_use: 1);
    assert_eq!(p.outstanding(), Some(1));
    assert_balanced(&p);
}

#[test]
fn discard_refuses_foreign_and_returned_objects_changing_nothing() {
    let (p, mut h, a) = one_out(bounded(2));
    let b = p.get(&mut h, None).unwrap();
    p.put(&mut h, Arc::clone(&b)).unwrap();
    let before = p.stats();
    let foreign = h.create().unwrap();
    assert_eq!(p.discard(&mut h, foreign), Err(NotOut));
    assert_eq!(p.discard(&mut h, Arc::clone(&b)), Err(NotOut));
    assert_eq!(p.stats(), before);
    assert!(h.destroyed.is_empty());
    p.discard(&mut h, Arc::clone(&a)).unwrap();
    assert_eq!(p.discard(&mut h, a), Err(NotOut), "discarded twice");
    assert_stats!(p, discarded: 1, destroyed: 1, in_use: 0, idle: 1);
    assert_eq!(p.limit.as_ref().unwrap().alive(), 1);
    assert_balanced(&p);
}

#[test]
fn an_unchecked_pool_discards_whatever_it_is_given() {
    let (p, mut h, a) = one_out(pool(Config::default()));
    p.discard(&mut h, a).unwrap();
    assert_stats!(p, discarded: 1, destroyed: 1, in_use: 0);
    assert_balanced(&p);
    // It cannot tell a foreign object: destroyed and counted all the same.
    let foreign = h.create().unwrap();
    p.discard(&mut h, foreign).unwrap();
    assert_eq!((p.stats().discarded, h.destroyed.len()), (2, 2));
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let p = Arc::new(bounded(1));
    let a = p.get(&mut TestHooks::default(), None).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (pool, order) = (Arc::clone(&p), Arc::clone(&order));
            let t = std::thread::spawn(move || {
                let mut h = TestHooks::default();
                let obj = pool.get(&mut h, Some(Duration::from_secs(10))).unwrap();
                order.lock().unwrap().push(i);
                pool.put(&mut h, obj).unwrap();
            });
            // Let each thread queue before starting the next.
            while p.limit.as_ref().unwrap().waiting() < i + 1 {
                std::thread::yield_now();
            }
            t
        })
        .collect();
    p.put(&mut TestHooks::default(), a).unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
}

#[test]
fn close_destroys_idle_fails_waiters_and_destroys_later_returns() {
    let (p, mut h, a, b) = both_out_of_two();
    p.put(&mut h, b).unwrap();
    let _c = p.get(&mut h, None).unwrap();
    let waiter = spawn_get(&p, None);
    while p.limit.as_ref().unwrap().waiting() == 0 {
        std::thread::yield_now();
    }
    assert_eq!(p.close(&mut h), 0);
    assert_eq!(waiter.join().unwrap(), Err(GetError::Closed));
    assert_eq!(p.get(&mut h, None), Err(GetError::Closed));
    p.put(&mut h, a).unwrap();
    assert_eq!(p.idle(), 0);
    assert_eq!(p.stats().destroyed, 1);
}

#[test]
fn a_batch_no_memory_can_list_is_refused_before_anything_is_taken() {
    let (p, mut h) = (pool(Config::default()), TestHooks::default());
    p.prefill(&mut h, 1).unwrap();
    let n = usize::MAX / 2;
    assert_eq!(
        p.get_many(&mut h, n, None),
        Err(GetError::NoMemory { requested: n })
    );
    assert_stats!(p, idle: 1, in_use: 0, hits: 0, misses: 0);
}

#[test]
fn prefill_creates_idle_objects() {
    let (p, mut h) = (bounded(3), TestHooks::default());
    p.prefill(&mut h, 3).unwrap();
    assert_stats!(p, created: 3, idle: 3, misses: 0);
    assert!(matches!(
        p.prefill(&mut h, 1),
        Err(GetError::TooMany { .. })
    ));
}

/// Hooks whose factory fails from its `n`th call on.
struct FailingFrom(usize, TestHooks);

impl Hooks<Item> for FailingFrom {
    type Error = &'static str;
    fn create(&mut self) -> Result<Item, &'static str> {
        self.0 = self.0.checked_sub(1).ok_or("create failed")?;
        self.1.create()
    }
    fn destroy(&mut self, item: Item) {
        self.1.destroy(item);
    }
    fn identity(&self, item: &Item) -> usize {
        self.1.identity(item)
    }
    fn duplicate(&mut self, item: &Item) -> Item {
        self.1.duplicate(item)
    }
}

#[test]
fn open_prefills_then_refills_or_leaves_nothing_behind() {
    let config = |min_size| Config {
        max_size: Some(4),
        min_size,
        ..Config::default()
    };
    let p = Pool::open(config(3), 2, &mut FailingFrom(3, TestHooks::default())).unwrap();
    assert_stats!(p, created: 3, idle: 3);
    // The third object fails: the two made are destroyed.
    let mut h = FailingFrom(2, TestHooks::default());
    let failed = Pool::open(config(3), 2, &mut h).err();
    assert_eq!(
        failed,
        Some(OpenError::Fill(GetError::Hook("create failed")))
    );
    assert_eq!(h.1.destroyed.len(), 2);
    let refused = Pool::<Item>::open(config(0), 5, &mut TestHooks::default()).err();
    let Some(OpenError::Config(e)) = refused else {
        panic!("prefill above max_idle is a config error")
    };
    assert_eq!(e.message, "prefill must be at most max_idle (4), got 5");
}

#[test]
fn config_errors_name_the_setting() {
    let err = |c: Config| Pool::<Item>::new(c).err().unwrap().field;
    assert_eq!(
        err(Config {
            max_size: Some(0),
            ..Config::default()
        }),
        "max_size"
    );
    assert_eq!(
        err(Config {
            shards: Some(0),
            ..Config::default()
        }),
        "shards"
    );
    assert_eq!(
        err(Config {
            max_idle: Some(MAX_IDLE_LIMIT + 1),
            ..Config::default()
        }),
        "max_idle"
    );
    assert_eq!(
        err(Config {
            idle_timeout: Some(Duration::ZERO),
            ..Config::default()
        }),
        "idle_timeout"
    );
    // max_idle never exceeds max_size.
    let p = pool(Config {
        max_idle: Some(100),
        max_size: Some(5),
        ..Config::default()
    });
    assert_eq!(p.max_idle(), 5);
}

#[test]
fn factory_returning_an_object_already_out_is_refused() {
    struct Singleton(Item);
    impl Hooks<Item> for Singleton {
        type Error = ();
        fn create(&mut self) -> Result<Item, ()> {
            Ok(Arc::clone(&self.0))
        }
        fn identity(&self, item: &Item) -> usize {
            Arc::as_ptr(item) as usize
        }
        fn duplicate(&mut self, item: &Item) -> Item {
            Arc::clone(item)
        }
    }
    let p = bounded(3);
    let mut h = Singleton(Arc::default());
    p.get(&mut h, None).unwrap();
    assert_eq!(p.get(&mut h, None), Err(GetError::AlreadyOut));
    assert_eq!(p.stats().created, 1);
    assert_eq!(p.limit.as_ref().unwrap().alive(), 1);
}

/// Many threads, a small bounded pool: no object is ever held twice, every
/// count balances, and the bound holds throughout.
#[test]
fn stress_bounded_pool_never_double_hands_out() {
    const THREADS: usize = 8;
    const OPS: usize = 5_000;
    let p = Arc::new(bounded(5));
    let held = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (p, held) = (Arc::clone(&p), Arc::clone(&held));
            std::thread::spawn(move || {
                let mut h = TestHooks::default();
                let mut mine = Vec::new();
                for k in 0..OPS {
                    if (k + t) % 3 == 0 && !mine.is_empty() {
                        let obj: Item = mine.pop().unwrap();
                        assert!(obj.dirty.swap(false, Ordering::SeqCst), "held twice");
                        held.fetch_sub(1, Ordering::SeqCst);
                        p.put(&mut h, obj).unwrap();
                    } else if let Ok(obj) = p.get(&mut h, Some(Duration::from_millis(1))) {
                        assert!(!obj.dirty.swap(true, Ordering::SeqCst), "held twice");
                        assert!(held.fetch_add(1, Ordering::SeqCst) < 5, "bound broken");
                        mine.push(obj);
                    }
                }
                for obj in mine {
                    obj.dirty.store(false, Ordering::SeqCst);
                    held.fetch_sub(1, Ordering::SeqCst);
                    p.put(&mut h, obj).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = p.stats();
    assert_eq!(s.in_use, 0);
    assert!(s.created <= 5);
    assert_balanced(&p);
    assert_eq!(p.outstanding(), Some(0));
}

#[test]
fn stress_unbounded_pool_balances() {
    const THREADS: usize = 8;
    let p = Arc::new(pool(Config {
        max_idle: Some(16),
        ..Config::default()
    }));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                let mut h = TestHooks::default();
                for k in 0..20_000 {
                    let batch: Vec<_> = (0..(k % 4 + 1))
                        .map(|_| p.get(&mut h, None).unwrap())
                        .collect();
                    for obj in batch {
                        assert!(!obj.dirty.swap(true, Ordering::SeqCst), "held twice");
                        obj.dirty.store(false, Ordering::SeqCst);
                        p.put(&mut h, obj).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_balanced(&p);
    assert!(p.idle() <= 16);
}

#[test]
fn a_shared_budget_caps_idle_weight_across_pools() {
    let budget = Arc::new(IdleBudget::new(10));
    let make = |weight| {
        pool(Config {
            charge: Some(Charge {
                budget: Arc::clone(&budget),
                weight,
            }),
            ..Config::default()
        })
    };
    let (small, large) = (make(3), make(6));
    let mut h = TestHooks::default();
    let s: Vec<_> = (0..2).map(|_| small.get(&mut h, None).unwrap()).collect();
    let l: Vec<_> = (0..2).map(|_| large.get(&mut h, None).unwrap()).collect();
    small.put_many(&mut h, s).unwrap();
    large.put_many(&mut h, l).unwrap();
    // 3 + 3 fit, then one 6 would pass 10: dropped, and so is the second.
    assert_eq!(budget.used(), 6);
    assert_eq!((small.idle(), large.idle()), (2, 0));
    assert_eq!(large.stats().dropped, 2);
    // Taking idle objects ends their charge; trim and close do too.
    small.get(&mut h, None).unwrap();
    assert_eq!(budget.used(), 3);
    small.close(&mut h);
    assert_eq!(budget.used(), 0);
}

#[test]
fn keep_hook_refuses_objects_it_does_not_want() {
    struct Picky(TestHooks);
    impl Hooks<Item> for Picky {
        type Error = &'static str;
        fn create(&mut self) -> Result<Item, &'static str> {
            self.0.create()
        }
        fn reset(&mut self, item: &Item) -> Result<(), &'static str> {
            self.0.reset(item)
        }
        fn validate(&mut self, item: &Item) -> Result<bool, &'static str> {
            self.0.validate(item)
        }
        fn destroy(&mut self, item: Item) {
            self.0.destroy(item)
        }
        fn identity(&self, item: &Item) -> usize {
            self.0.identity(item)
        }
        fn duplicate(&mut self, item: &Item) -> Item {
            self.0.duplicate(item)
        }
        fn keep(&mut self, item: &Item) -> bool {
            item.valid.load(Ordering::Relaxed)
        }
    }
    let p = pool(Config::default());
    let mut h = Picky(TestHooks::default());
    let a = p.get(&mut h, None).unwrap();
    let b = p.get(&mut h, None).unwrap();
    put_invalid(&p, &mut h, a);
    p.put(&mut h, b).unwrap();
    assert_stats!(p, idle: 1, dropped: 1, destroyed: 1);
    assert_eq!(h.0.destroyed.len(), 1);
}

#[test]
fn concurrent_batches_do_not_deadlock() {
    // Two batches of 2 on a pool of 2: each alone can always be met.
    let p = Arc::new(bounded(2));
    let start = Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (p, start) = (Arc::clone(&p), Arc::clone(&start));
            std::thread::spawn(move || {
                let mut h = TestHooks::default();
                start.wait();
                for _ in 0..500 {
                    let got = p
                        .get_many(&mut h, 2, Some(Duration::from_secs(10)))
                        .unwrap();
                    p.put_many(&mut h, got).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_balanced(&p);
    assert_eq!(p.stats().timeouts, 0);
}

#[test]
fn a_pool_needs_no_more_than_ordinary_alignment() {
    // Python allocates objects 16-byte aligned; a pool lives inside one.
    assert!(std::mem::align_of::<Pool<Item>>() <= 16);
}

#[test]
fn put_racing_close_never_leaves_an_object_idle() {
    for _ in 0..200 {
        let p = Arc::new(pool(Config::default()));
        let items: Vec<_> = (0..4)
            .map(|_| p.get(&mut TestHooks::default(), None).unwrap())
            .collect();
        let putter = {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                let mut h = TestHooks::default();
                for item in items {
                    p.put(&mut h, item).unwrap();
                }
            })
        };
        p.close(&mut TestHooks::default());
        putter.join().unwrap();
        assert_eq!(p.idle(), 0);
        assert_balanced(&p);
    }
}

#[test]
fn trim_keeps_its_keepers_available_while_destroying() {
    let p = single_shard();
    struct Watch<'a>(&'a Pool<Item>, Vec<usize>);
    impl Hooks<Item> for Watch<'_> {
        type Error = ();
        fn create(&mut self) -> Result<Item, ()> {
            Ok(Arc::default())
        }
        fn destroy(&mut self, _: Item) {
            // What a concurrent get would find while trim destroys.
            self.1.push(self.0.idle());
        }
        fn identity(&self, item: &Item) -> usize {
            Arc::as_ptr(item) as usize
        }
        fn duplicate(&mut self, item: &Item) -> Item {
            Arc::clone(item)
        }
    }
    let mut h = Watch(&p, Vec::new());
    let items = get_n(&p, &mut h, 3);
    p.put_many(&mut h, items).unwrap();
    assert_eq!(p.trim(&mut h, 1), 2);
    assert_eq!(
        h.1,
        vec![1, 1],
        "the kept object was idle during every destroy"
    );
}

fn ready(step: Step<Item>) -> Item {
    match step {
        Step::Ready(item) => item,
        Step::Wait(_) => panic!("expected an object, not a wait"),
    }
}

fn wait(step: Step<Item>) -> Pending<Item> {
    match step {
        Step::Wait(waiter) => waiter,
        Step::Ready(_) => panic!("expected to wait"),
    }
}

/// In a pool of `max_size` 1: the object a non-blocking get takes, and the
/// waiter of a second one, queued for it.
fn out_and_queued(pool: &Pool<Item>, hooks: &mut TestHooks) -> (Item, Pending<Item>) {
    let held = ready(pool.get_or_enqueue(hooks).unwrap());
    (held, wait(pool.get_or_enqueue(hooks).unwrap()))
}

/// A new pool of `max_size` 1 and its hooks, with `out_and_queued`'s
/// object and waiter.
fn queued_behind_one() -> (Pool<Item>, TestHooks, Item, Pending<Item>) {
    let pool = bounded(1);
    let mut hooks = TestHooks::default();
    let (held, waiter) = out_and_queued(&pool, &mut hooks);
    (pool, hooks, held, waiter)
}

#[test]
fn non_blocking_get_queues_and_is_served_by_a_put() {
    let (pool, mut hooks, held, waiter) = queued_behind_one();
    assert!(!waiter.is_decided());
    pool.put(&mut hooks, Arc::clone(&held)).unwrap();
    // Handed over (hand-off mode) or woken to compete for it (normal
    // mode, where the object waits idle): either way it is this waiter's
    // to take, as nobody else asks.
    assert!(waiter.is_decided() || waiter.is_woken());
    let again = ready(pool.finish_wait(&mut hooks, &waiter).unwrap());
    assert!(Arc::ptr_eq(&held, &again));
    assert_stats!(pool, hits: 1, misses: 1, waits: 1, timeouts: 0, in_use: 1);
}

#[test]
fn a_pending_get_is_settled_once_whichever_comes_first() {
    // Finished, then abandoned and finished again: both do nothing.
    let (pool, mut hooks, held, waiter) = queued_behind_one();
    pool.put(&mut hooks, held).unwrap();
    let held = ready(pool.finish_wait(&mut hooks, &waiter).unwrap());
    pool.abandon_wait(&mut hooks, &waiter, false);
    assert!(waiter.is_settled());
    assert!(matches!(
        pool.finish_wait(&mut hooks, &waiter),
        Err(GetError::Settled)
    ));
    // Abandoned twice: counted once; then finishing it is refused.
    let waiter = wait(pool.get_or_enqueue(&mut hooks).unwrap());
    pool.abandon_wait(&mut hooks, &waiter, false);
    pool.abandon_wait(&mut hooks, &waiter, true);
    assert!(matches!(
        pool.finish_wait(&mut hooks, &waiter),
        Err(GetError::Settled)
    ));
    assert_stats!(pool, waits: 2, cancelled: 1, timeouts: 0, in_use: 1, waiting: 0);
    drop(held);
}

#[test]
fn a_rejected_grant_is_replaced_within_the_same_wait() {
    let (pool, mut hooks, held, waiter) = queued_behind_one();
    held.valid.store(false, Ordering::Relaxed);
    pool.put(&mut hooks, Arc::clone(&held)).unwrap();
    // The object it was granted fails `validate`: destroyed, and its slot
    // makes a new one for the same caller, without a second wait.
    let again = ready(pool.finish_wait(&mut hooks, &waiter).unwrap());
    assert!(!Arc::ptr_eq(&held, &again));
    assert!(Arc::ptr_eq(&hooks.destroyed[0], &held));
    assert_stats!(pool, waits: 1, invalid: 1, misses: 2, in_use: 1, waiting: 0);
}

#[test]
fn an_abandoned_wait_gives_back_what_it_was_granted() {
    // Granted, then abandoned before it was taken: the object goes idle.
    let (pool, mut hooks, held, waiter) = queued_behind_one();
    pool.put(&mut hooks, held).unwrap();
    pool.abandon_wait(&mut hooks, &waiter, true);
    assert_eq!(pool.idle(), 1);
    // Abandoned while queued (cancelled): the slot is not consumed.
    let (held, waiter) = out_and_queued(&pool, &mut hooks);
    pool.abandon_wait(&mut hooks, &waiter, false);
    pool.put(&mut hooks, held).unwrap();
    assert_stats!(pool, waits: 2, timeouts: 1, cancelled: 1, in_use: 0, idle: 1);
    assert!(hooks.destroyed.is_empty());
}

#[test]
fn closing_fails_a_queued_non_blocking_get() {
    let (pool, mut hooks, _held, waiter) = queued_behind_one();
    pool.close(&mut hooks);
    assert!(matches!(
        pool.finish_wait(&mut hooks, &waiter),
        Err(GetError::Closed)
    ));
    assert!(matches!(
        pool.get_or_enqueue(&mut hooks),
        Err(GetError::Closed)
    ));
}

// --- batches that wait (issue 11, defects 4 and 10) ---

/// Waits (up to 10 s) until `p` has `n` callers queued.
fn until_waiting(p: &Pool<Item>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.waiting() < n {
        assert!(Instant::now() < deadline, "never queued");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_waiting_batch_holds_nothing_so_a_holder_can_get_another() {
    // max_size=2; B holds one; A waits in get_many(2). A holds nothing:
    // in_use reads 1 and B's second get succeeds (on b8685cd it timed out,
    // and without timeouts both hung).
    let (p, mut h, first) = one_out(bounded(2));
    let batch = spawn_get_many(&p, 2, Some(Duration::from_secs(10)));
    until_waiting(&p, 1);
    assert_eq!(p.stats().in_use, 1, "the waiting batch holds nothing");
    let second = p.get(&mut h, Some(Duration::from_secs(10))).unwrap();
    p.put(&mut h, first).unwrap();
    p.put(&mut h, second).unwrap();
    let got = batch.join().unwrap().unwrap();
    assert_eq!(got.len(), 2);
    let s = p.stats();
    assert_eq!((s.timeouts, s.in_use, s.created), (0, 2, 2));
    // The batch waited; B's second get waited too if the batch had waited
    // `PATIENCE` by then (a loaded machine) and was preferred: B is then
    // served when the batch yields (the next test makes that happen).
    assert!(matches!(s.waits, 1 | 2), "waits: {}", s.waits);
    p.put_many(&mut h, got).unwrap();
    assert_balanced(&p);
}

#[test]
fn a_preferred_batch_yields_to_a_holder_that_needs_another() {
    // As above, but B asks for its second object only after the batch has
    // waited long enough for capacity to be set aside for it: B is delayed
    // until the batch yields, not deadlocked.
    let (p, mut h, first) = one_out(bounded(2));
    let batch = spawn_get_many(&p, 2, None);
    until_waiting(&p, 1);
    std::thread::sleep(crate::limit::PATIENCE * 20);
    assert_eq!(p.stats().in_use, 1);
    let second = p.get(&mut h, Some(Duration::from_secs(10))).unwrap();
    p.put(&mut h, first).unwrap();
    p.put(&mut h, second).unwrap();
    let got = batch.join().unwrap().unwrap();
    p.put_many(&mut h, got).unwrap();
    assert_stats!(p, waits: 2, timeouts: 0, in_use: 0);
    assert_balanced(&p);
}

#[test]
fn a_batch_that_waits_counts_what_callers_did() {
    // Defect 10: a, b out; b back; another thread puts a back 30 ms later
    // while this one waits in get_many(2), then gives both back. Callers
    // made 4 gets and 4 puts; b8685cd counted 5 and 5 (hit rate 0.6).
    let (p, mut h, a, b) = both_out_of_two();
    p.put(&mut h, b).unwrap();
    let late = {
        let p = Arc::clone(&p);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            p.put(&mut TestHooks::default(), a).unwrap();
        })
    };
    let objs = p.get_many(&mut h, 2, Some(Duration::from_secs(5))).unwrap();
    p.put_many(&mut h, objs).unwrap();
    late.join().unwrap();
    let s = p.stats();
    assert_eq!((s.hits, s.misses, s.puts), (2, 2, 4));
    assert_eq!(s.hit_rate(), 0.5);
    assert_eq!((s.waits, s.timeouts, s.cancelled), (1, 0, 0));
    assert_balanced(&p);
}

#[test]
fn an_interrupted_wait_counts_as_cancelled_not_timed_out() {
    let (p, mut h) = (bounded(1), TestHooks::default());
    let held = p.get(&mut h, None).unwrap();
    h.interrupt_park = true;
    assert_eq!(p.get(&mut h, None), Err(GetError::Hook("interrupted")));
    assert_eq!(batch_error(&p, &mut h, 1), GetError::Hook("interrupted"));
    h.interrupt_park = false;
    assert_stats!(p, waits: 2, timeouts: 0, cancelled: 2);
    assert_eq!(p.waiting(), 0);
    p.put(&mut h, held).unwrap();
    assert_eq!(p.idle(), 1, "no phantom waiter took it");
}

#[test]
fn batches_are_served_among_churning_singles() {
    // Singles keep the bound busy, never leaving the whole of it free for
    // long; batches of the whole bound must still be served (overtaking is
    // bounded), and no single waits for ever behind them.
    const MAX: usize = 3;
    let p = Arc::new(bounded(MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let singles: Vec<_> = (0..3)
        .map(|_| {
            let (p, stop) = (Arc::clone(&p), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut h = TestHooks::default();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let obj = p.get(&mut h, Some(Duration::from_secs(30))).unwrap();
                    std::thread::yield_now();
                    p.put(&mut h, obj).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut h = TestHooks::default();
    for _ in 0..30 {
        let got = p
            .get_many(&mut h, MAX, Some(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(got.len(), MAX);
        p.put_many(&mut h, got).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let singles: usize = singles.into_iter().map(|t| t.join().unwrap()).sum();
    let s = p.stats();
    assert_eq!(s.hits + s.misses, singles as u64 + 30 * MAX as u64);
    assert_eq!(s.puts, s.hits + s.misses);
    assert_eq!((s.timeouts, s.in_use, p.waiting()), (0, 0, 0));
    assert!(p.limit.as_ref().unwrap().alive() <= MAX);
    assert_balanced(&p);
}

#[test]
fn close_destroys_what_was_set_aside_for_a_batch() {
    let (p, mut h, a, b) = both_out_of_two();
    let batch = spawn_get_many(&p, 2, None);
    until_waiting(&p, 1);
    std::thread::sleep(crate::limit::PATIENCE * 20); // preferred by now
    p.put(&mut h, a).unwrap();
    assert_eq!(
        (p.idle(), p.stats().idle),
        (1, 1),
        "set aside, counted idle"
    );
    let mut found = 0;
    p.visit(|_| {
        found += 1;
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(found, 2, "the set-aside object and b (in the ledger)");
    assert_eq!(p.close(&mut h), 1);
    assert_eq!(batch.join().unwrap(), Err(GetError::Closed));
    p.put(&mut h, b).unwrap();
    assert_stats!(p, idle: 0, destroyed: 2, created: 2);
    assert_balanced(&p);
}

#[test]
fn stats_waiting_counts_the_callers_queued_now() {
    // A single get and a batch queue on a full pool: the snapshot's gauge
    // counts both while they wait, and neither once served or given up.
    let p = Arc::new(bounded(2));
    let mut h = TestHooks::default();
    let held = p.get_many(&mut h, 2, None).unwrap();
    assert_eq!(p.stats().waiting, 0);
    let batch = spawn_get_many(&p, 2, Some(Duration::from_secs(10)));
    until_waiting(&p, 1);
    assert_eq!(p.stats().waiting, 1);
    assert!(matches!(
        p.get(&mut h, Some(Duration::from_millis(5))),
        Err(GetError::Timeout)
    ));
    assert_eq!(p.stats().waiting, 1, "a timed-out caller no longer waits");
    p.put_many(&mut h, held).unwrap();
    let got = batch.join().unwrap().unwrap();
    assert_stats!(p, waiting: 0, waits: 2, timeouts: 1, in_use: 2);
    p.put_many(&mut h, got).unwrap();
    assert_balanced(&p);
}

#[test]
fn finishing_a_wait_before_it_is_decided_strands_nothing() {
    // `finish_wait` called before the wait was decided or woken (a binding's
    // caller that did not wait for the notification): it settles the
    // `Pending`, so its waiter must not stay queued, or the next put would
    // be granted to a wait no one will ever take, and the pool would lose
    // its only slot.
    let (pool, mut hooks, held, waiter) = queued_behind_one();
    assert!(matches!(
        pool.finish_wait(&mut hooks, &waiter),
        Err(GetError::Timeout)
    ));
    pool.abandon_wait(&mut hooks, &waiter, false);
    assert_eq!(pool.stats().waiting, 0);
    pool.put(&mut hooks, held).unwrap();
    assert_eq!(pool.idle(), 1);
    let again = pool.get(&mut hooks, Some(Duration::ZERO)).unwrap();
    assert_stats!(pool, waits: 1, timeouts: 1, in_use: 1, waiting: 0, hits: 1);
    drop(again);
}

#[test]
fn a_rejected_grant_frees_its_slot_for_the_next_in_line() {
    // The first waiter's grant fails `validate`: its slot goes to the
    // waiter behind it (both starved: arrival order), and the first queues
    // again, at the back, without counting a second wait.
    let pool = Arc::new(bounded(2));
    let mut hooks = TestHooks::default();
    let a = ready(pool.get_or_enqueue(&mut hooks).unwrap());
    let b = ready(pool.get_or_enqueue(&mut hooks).unwrap());
    let first = wait(pool.get_or_enqueue(&mut hooks).unwrap());
    let second = spawn_get(&pool, Some(Duration::from_secs(10)));
    while pool.stats().waiting < 2 {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(5)); // both starved: hand-off
    a.valid.store(false, Ordering::Relaxed);
    pool.put(&mut hooks, Arc::clone(&a)).unwrap();
    let again = wait(pool.finish_wait(&mut hooks, &first).unwrap());
    let got = second.join().unwrap().unwrap();
    assert_stats!(pool, waits: 2, invalid: 1, created: 3, destroyed: 1, in_use: 2, waiting: 1);
    // The first gets the next object back, then gives it up: nothing lost.
    pool.put(&mut hooks, got).unwrap();
    let last = ready(pool.finish_wait(&mut hooks, &again).unwrap());
    pool.abandon_wait(&mut hooks, &again, false);
    assert_stats!(pool, waits: 2, cancelled: 0, in_use: 2, waiting: 0);
    drop((last, b));
}
