use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

/// A pooled test object: the size it was made for.
#[derive(Debug)]
struct Obj {
    made_for: usize,
}

type Item = Arc<Obj>;

/// What the hooks did, shared by every call's hooks.
#[derive(Default)]
struct Log {
    created: AtomicUsize,
    resets: AtomicUsize,
    destroyed: Mutex<Vec<Item>>,
    fail_reset: AtomicBool,
    /// When set, the factory returns this object instead of a new one.
    give: Mutex<Option<Item>>,
}

impl Log {
    fn destroyed(&self) -> usize {
        self.destroyed.lock().unwrap().len()
    }
}

struct TestHooks<'a> {
    log: &'a Log,
    size: usize,
}

impl Hooks<Item> for TestHooks<'_> {
    type Error = &'static str;
    fn create(&mut self) -> Result<Item, &'static str> {
        self.log.created.fetch_add(1, Ordering::Relaxed);
        if let Some(item) = &*self.log.give.lock().unwrap() {
            return Ok(Arc::clone(item));
        }
        Ok(Arc::new(Obj {
            made_for: self.size,
        }))
    }
    fn reset(&mut self, _: &Item) -> Result<(), &'static str> {
        self.log.resets.fetch_add(1, Ordering::Relaxed);
        if self.log.fail_reset.load(Ordering::Relaxed) {
            return Err("reset failed");
        }
        Ok(())
    }
    fn destroy(&mut self, item: Item) {
        self.log.destroyed.lock().unwrap().push(item);
    }
    fn identity(&self, item: &Item) -> usize {
        Arc::as_ptr(item) as usize
    }
    fn duplicate(&mut self, item: &Item) -> Item {
        Arc::clone(item)
    }
}

fn hooks<'a>(log: &'a Log) -> impl Fn(usize) -> TestHooks<'a> {
    move |size| TestHooks { log, size }
}

/// Classes of 8, 32 and 128, at most `cap` idle each, one shard.
fn family(checked: bool, cap: usize) -> Tiered<Item> {
    let classes = SizeClasses::new(vec![8, 32, 128], "tiers").unwrap();
    Tiered::new(classes, Filing::Floor, checked, |_| Config {
        max_idle: Some(cap),
        shards: Some(1),
        ..Config::default()
    })
    .unwrap()
}

/// A family (see [`family`]) with one object out, got for `size`, and the
/// log of its hooks.
fn one_out(checked: bool, cap: usize, size: usize) -> (Tiered<Item>, Log, Item) {
    let (t, log) = (family(checked, cap), Log::default());
    let (a, _) = t.get(size, hooks(&log)).unwrap();
    (t, log, a)
}

fn balanced(s: &Snapshot) -> bool {
    s.created == s.destroyed + s.idle + s.in_use
}

/// Every class balances, and the totals count the factory and destroy
/// calls, with `out` objects handed out.
fn assert_books(t: &Tiered<Item>, log: &Log, out: u64) {
    for class in 0..t.classes().len() {
        let s = t.class_stats(class);
        assert!(balanced(&s), "class {class}: {s:?}");
    }
    let s = t.stats();
    assert!(balanced(&s), "totals: {s:?}");
    assert_eq!(s.in_use, out, "{s:?}");
    assert_eq!(s.created, log.created.load(Ordering::Relaxed) as u64);
    assert_eq!(s.destroyed, log.destroyed() as u64);
    assert_eq!(s.idle, t.idle() as u64);
}

#[test]
fn classes_are_built_lazily_with_their_own_config() {
    let classes = SizeClasses::new(vec![4096, 65536, 1 << 20], "tiers").unwrap();
    let caps = [(4096, 1000), (65536, 500), (1 << 20, 100)];
    let t: Tiered<Item> = Tiered::new(classes, Filing::Floor, true, |size| Config {
        max_idle: caps.iter().find(|c| c.0 == size).map(|c| c.1),
        shards: Some(2),
        ..Config::default()
    })
    .unwrap();
    let log = Log::default();
    assert_eq!(t.used().count(), 0);
    assert_eq!(t.max_idle(2), 100);
    assert_eq!(t.used().count(), 0, "asking for a cap builds nothing");
    let (item, class) = t.get(5000, hooks(&log)).unwrap();
    assert_eq!((item.made_for, class), (65536, Some(1)));
    assert_eq!(t.max_idle(1), 500);
    assert_eq!(t.used().map(|(s, _)| s).collect::<Vec<_>>(), vec![65536]);
    let (big, class) = t.get(2 << 20, hooks(&log)).unwrap();
    assert_eq!((big.made_for, class), (2 << 20, None));
    assert_eq!(t.oversize(), 1);
    assert_eq!(t.put(big, 2 << 20, hooks(&log)), Ok(None));
    assert_eq!(t.put(item, 65536, hooks(&log)), Ok(Some(1)));
    let s = t.stats();
    assert_eq!(
        (s.created, s.misses, s.puts, s.destroyed, s.dropped, s.idle),
        (2, 2, 2, 1, 1, 1)
    );
    assert_books(&t, &log, 0);
    assert_eq!(t.classes_max_idle(), caps);
    let rows = t.classes_stats();
    let idle: Vec<_> = rows.iter().map(|(size, s)| (*size, s.idle)).collect();
    assert_eq!(idle, [(4096, 0), (65536, 1), (1 << 20, 0)]);
}

#[test]
fn bad_class_config_fails_up_front() {
    let classes = || SizeClasses::new(vec![8], "tiers").unwrap();
    let r = Tiered::<u8>::new(classes(), Filing::Floor, false, |_| Config {
        shards: Some(0),
        ..Config::default()
    });
    assert_eq!(r.err().unwrap().field, "shards");
    let bounded = Tiered::<u8>::new(classes(), Filing::Floor, false, |_| Config {
        max_size: Some(1),
        ..Config::default()
    });
    assert_eq!(bounded.err().unwrap().field, "max_size");
}

#[test]
fn a_checked_family_refuses_a_repeated_or_foreign_put_changing_nothing() {
    let (t, log, a) = one_out(true, 4, 16);
    let copy = Arc::clone(&a);
    assert_eq!(t.put(a, 32, hooks(&log)), Ok(Some(1)));
    let before = (t.stats(), t.class_stats(1), t.idle());
    assert_eq!(
        t.put(copy, 32, hooks(&log)),
        Err(PutError::NotOut { index: 0 }),
        "a second put of one object"
    );
    let foreign = Arc::new(Obj { made_for: 32 });
    assert_eq!(
        t.put(foreign, 32, hooks(&log)),
        Err(PutError::NotOut { index: 0 })
    );
    assert_eq!((t.stats(), t.class_stats(1), t.idle()), before);
    // The object is handed to one holder at a time.
    let (x, _) = t.get(16, hooks(&log)).unwrap();
    let (y, _) = t.get(16, hooks(&log)).unwrap();
    assert!(!Arc::ptr_eq(&x, &y));
    assert_eq!(t.outstanding(), Some(2));
    t.put(x, 32, hooks(&log)).unwrap();
    t.put(y, 32, hooks(&log)).unwrap();
    assert_books(&t, &log, 0);
}

#[test]
fn put_ref_keeps_the_ledgers_reference_or_a_copy_and_refuses_as_put_does() {
    // Checked: the family keeps the reference its ledger held; the caller's
    // stays the caller's (2 counts: the caller's and the idle one).
    let (t, log, a) = one_out(true, 4, 16);
    assert_eq!(Arc::strong_count(&a), 2);
    assert_eq!(t.put_ref(&a, 32, hooks(&log)), Ok(Some(1)));
    assert_eq!(Arc::strong_count(&a), 2);
    assert_eq!(t.idle(), 1);
    let before = (t.stats(), t.idle());
    assert_eq!(
        t.put_ref(&a, 32, hooks(&log)),
        Err(PutError::NotOut { index: 0 })
    );
    assert_eq!((t.stats(), t.idle()), before);
    // Unchecked: a copy is kept.
    let (t, log) = (family(false, 4), Log::default());
    let foreign = Arc::new(Obj { made_for: 0 });
    assert_eq!(t.put_ref(&foreign, 40, hooks(&log)), Ok(Some(1)));
    assert_eq!(Arc::strong_count(&foreign), 2);
    let (got, _) = t.get(20, hooks(&log)).unwrap();
    assert!(Arc::ptr_eq(&got, &foreign));
}

#[test]
fn an_unchecked_family_takes_any_object_by_its_size() {
    let (t, log) = (family(false, 4), Log::default());
    assert!(!t.is_checked());
    let foreign = Arc::new(Obj { made_for: 0 });
    assert_eq!(t.put(Arc::clone(&foreign), 40, hooks(&log)), Ok(Some(1)));
    let (got, _) = t.get(20, hooks(&log)).unwrap();
    assert!(Arc::ptr_eq(&got, &foreign));
    assert_eq!(t.outstanding(), None);
}

#[test]
fn an_object_that_grew_into_another_class_moves_and_every_class_balances() {
    let (t, log, a) = one_out(true, 4, 8);
    // It grew to 40: class 32 files it, class 8 gave it out.
    assert_eq!(t.put(Arc::clone(&a), 40, hooks(&log)), Ok(Some(1)));
    assert_eq!(t.moved(), 1);
    let (small, middle) = (t.class_stats(0), t.class_stats(1));
    assert_eq!(
        (small.misses, small.puts, small.created, small.destroyed),
        (1, 1, 1, 1)
    );
    assert_eq!((small.in_use, small.idle), (0, 0));
    assert_eq!((middle.created, middle.puts, middle.idle), (1, 0, 1));
    assert_eq!(log.resets.load(Ordering::Relaxed), 1, "reset once");
    assert_eq!(log.destroyed(), 0, "moved, not destroyed");
    assert_books(&t, &log, 0);
    // It serves the class it moved to, and comes back there.
    let (again, class) = t.get(30, hooks(&log)).unwrap();
    assert!(Arc::ptr_eq(&again, &a));
    assert_eq!(class, Some(1));
    assert_eq!(t.put(again, 40, hooks(&log)), Ok(Some(1)));
    assert_eq!(t.class_stats(1).hits, 1);
    assert_books(&t, &log, 0);
}

#[test]
fn an_object_that_shrank_moves_down_or_is_destroyed_in_its_own_class() {
    let (t, log, a) = one_out(true, 4, 100);
    let (b, _) = t.get(100, hooks(&log)).unwrap();
    t.put(a, 10, hooks(&log)).unwrap();
    assert_eq!(t.class_stats(0).idle, 1);
    // Smaller than every class: destroyed, counted where it came from.
    assert_eq!(t.put(b, 3, hooks(&log)), Ok(None));
    let s = t.class_stats(2);
    assert_eq!(
        (s.misses, s.puts, s.dropped, s.destroyed, s.in_use),
        (2, 2, 1, 2, 0)
    );
    assert_eq!(t.stats().dropped, 1);
    assert_books(&t, &log, 0);
}

#[test]
fn an_oversize_object_that_shrank_into_a_class_moves_there() {
    let (t, log) = (family(true, 4), Log::default());
    let (big, class) = t.get(1000, hooks(&log)).unwrap();
    assert_eq!(class, None);
    assert_eq!(t.put(big, 100, hooks(&log)), Ok(Some(1)));
    let s = t.stats();
    assert_eq!(t.class_stats(1).idle, 1);
    assert_eq!((s.created, s.misses, s.puts, s.destroyed), (1, 1, 1, 0));
    assert_books(&t, &log, 0);
}

#[test]
fn a_moved_object_whose_reset_fails_is_destroyed_in_its_new_class() {
    let (t, log) = (family(true, 4), Log::default());
    // Gets reset nothing (resets are due on put): only the put's fails.
    log.fail_reset.store(true, Ordering::Relaxed);
    let (a, _) = t.get(8, hooks(&log)).unwrap();
    assert_eq!(
        t.put(a, 128, hooks(&log)),
        Err(PutError::Hook("reset failed"))
    );
    let s = t.class_stats(2);
    assert_eq!(
        (s.created, s.reset_errors, s.destroyed, s.idle),
        (1, 1, 1, 0)
    );
    assert_books(&t, &log, 0);
}

#[test]
fn a_moved_object_beyond_the_new_classes_cap_is_dropped_there() {
    let (t, log, a) = one_out(true, 0, 8);
    t.put(a, 32, hooks(&log)).unwrap();
    let s = t.class_stats(1);
    assert_eq!((s.created, s.dropped, s.destroyed), (1, 1, 1));
    assert_books(&t, &log, 0);
}

#[test]
fn after_close_a_returned_object_is_destroyed_in_its_own_class() {
    for checked in [true, false] {
        let (t, log) = (family(checked, 4), Log::default());
        let (idle, _) = t.get(8, hooks(&log)).unwrap();
        let (a, _) = t.get(8, hooks(&log)).unwrap();
        let (big, _) = t.get(1000, hooks(&log)).unwrap();
        t.put(idle, 8, hooks(&log)).unwrap();
        assert_eq!(t.close(hooks(&log)), vec![(8, 1)]);
        assert!(t.is_closed());
        assert_eq!(t.get(8, hooks(&log)).err(), Some(GetError::Closed));
        assert_eq!(t.put(a, 8, hooks(&log)), Ok(Some(0)));
        assert_eq!(t.put(big, 1000, hooks(&log)), Ok(None));
        let s = t.stats();
        assert_eq!(
            (s.puts, s.destroyed, s.dropped),
            (3, 3, 0),
            "as a pool counts"
        );
        assert_eq!(t.idle(), 0);
        assert_books(&t, &log, 0);
    }
}

#[test]
fn after_close_a_class_pool_first_built_by_a_put_destroys_without_a_reset() {
    let (t, log) = (family(false, 4), Log::default());
    t.close(hooks(&log));
    let foreign = Arc::new(Obj { made_for: 0 });
    assert_eq!(t.put(foreign, 32, hooks(&log)), Ok(Some(1)));
    assert_eq!(
        log.resets.load(Ordering::Relaxed),
        0,
        "no reset after close"
    );
    let s = t.class_stats(1);
    assert_eq!((s.puts, s.destroyed, s.dropped, s.idle), (1, 1, 0, 0));
}

#[test]
fn a_checked_object_resized_after_close_is_destroyed_in_its_own_class() {
    let (t, log, a) = one_out(true, 4, 8);
    t.close(hooks(&log));
    assert_eq!(t.put(a, 100, hooks(&log)), Ok(Some(0)));
    assert_eq!(t.used().count(), 1, "no class pool is built after close");
    let s = t.class_stats(0);
    assert_eq!((s.puts, s.destroyed, s.in_use), (1, 1, 0));
    assert_books(&t, &log, 0);
}

#[test]
fn a_factory_returning_an_object_out_already_is_refused_and_counted_nowhere() {
    let (t, log, a) = one_out(true, 4, 8);
    *log.give.lock().unwrap() = Some(Arc::clone(&a));
    let before = t.stats();
    assert_eq!(t.get(20, hooks(&log)).err(), Some(GetError::AlreadyOut));
    assert_eq!(t.get(500, hooks(&log)).err(), Some(GetError::AlreadyOut));
    let after = t.stats();
    assert_eq!(
        (after.created, after.misses),
        (before.created, before.misses)
    );
    *log.give.lock().unwrap() = None;
    t.put(a, 8, hooks(&log)).unwrap();
    assert_eq!(t.outstanding(), Some(0));
}

#[test]
fn exact_filing_keeps_only_a_class_own_size() {
    let classes = SizeClasses::new(vec![64, 128], "classes").unwrap();
    let t: Tiered<Item> = Tiered::new(classes, Filing::Exact, false, |_| Config {
        shards: Some(1),
        ..Config::default()
    })
    .unwrap();
    let log = Log::default();
    let odd = Arc::new(Obj { made_for: 100 });
    assert_eq!(t.put(odd, 100, hooks(&log)), Ok(None));
    assert_eq!(
        t.put(Arc::new(Obj { made_for: 128 }), 128, hooks(&log)),
        Ok(Some(1))
    );
    assert_eq!((t.idle(), log.destroyed()), (1, 1));
}

#[test]
fn threads_resizing_objects_leave_every_class_balanced() {
    let t = Arc::new(family(true, 2));
    let log = Arc::new(Log::default());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (t, log) = (Arc::clone(&t), Arc::clone(&log));
            std::thread::spawn(move || {
                let sizes = [0, 8, 20, 32, 100, 128, 300, 3];
                for n in 0..2000 {
                    let want = sizes[(n + i) % sizes.len()];
                    let (item, _) = t.get(want, hooks(&log)).unwrap();
                    let back = sizes[(n * 7 + i * 3) % sizes.len()];
                    t.put(item, back, hooks(&log)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(t.moved() > 0);
    assert_eq!(t.stats().puts, 8000);
    assert_books(&t, &log, 0);
    t.close(hooks(&log));
    assert_books(&t, &log, 0);
    assert_eq!(t.idle(), 0);
}

#[test]
fn trim_keeps_at_most_keep_idle_in_each_class() {
    let (t, log) = (family(true, 4), Log::default());
    let got: Vec<_> = [8, 8, 8, 32]
        .map(|size| (t.get(size, hooks(&log)).unwrap().0, size))
        .into();
    for (item, size) in got {
        t.put(item, size, hooks(&log)).unwrap();
    }
    assert_eq!(t.trim(1, hooks(&log)), 2, "two of the three of size 8");
    assert_eq!(t.idle(), 2);
    assert_eq!(t.trim(0, hooks(&log)), 2);
    assert_eq!(t.idle(), 0);
}

#[test]
fn discard_destroys_where_the_object_came_from_and_refuses_what_is_not_out() {
    let (t, log, a) = one_out(true, 4, 16);
    let (big, _) = t.get(10_000, hooks(&log)).unwrap();
    let before = (t.stats(), t.class_stats(1));
    let foreign = Arc::new(Obj { made_for: 16 });
    assert_eq!(t.discard(foreign, 16, hooks(&log)), Err(NotOut));
    assert_eq!((t.stats(), t.class_stats(1)), before);
    // Its size now files it in another class: still counted where it came
    // from.
    t.discard(Arc::clone(&a), 200, hooks(&log)).unwrap();
    assert_eq!(t.discard(a, 16, hooks(&log)), Err(NotOut), "twice");
    t.discard(big, 10_000, hooks(&log)).unwrap();
    let s = t.stats();
    assert_eq!((s.discarded, s.destroyed, s.in_use, s.puts), (2, 2, 0, 0));
    assert_eq!(t.class_stats(1).discarded, 1);
    assert_eq!(log.destroyed(), 2);
    assert_books(&t, &log, 0);
}

#[test]
fn an_unchecked_family_discards_in_the_class_the_size_files() {
    let (t, log, a) = one_out(false, 4, 32);
    t.discard(a, 32, hooks(&log)).unwrap();
    let s = t.stats();
    assert_eq!((s.discarded, s.destroyed, s.in_use), (1, 1, 0));
    assert_books(&t, &log, 0);
}
