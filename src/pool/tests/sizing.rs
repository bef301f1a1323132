//! `min_size`, `max_lifetime`, `resize`, `max_waiting` and the wait-time
//! histogram.

use super::*;

fn with_min(min_size: usize, max_size: Option<usize>) -> Pool<Item> {
    let p = pool(Config {
        min_size,
        max_size,
        shards: Some(2),
        ..Config::default()
    });
    p.refill(&mut TestHooks::default()).unwrap();
    p
}

#[test]
fn min_size_is_made_at_once_and_after_every_destroy() {
    for max_size in [None, Some(4)] {
        let p = with_min(2, max_size);
        let mut h = TestHooks::default();
        assert_eq!((p.stats().created, p.stats().idle), (2, 2), "{max_size:?}");
        let a = p.get(&mut h, None).unwrap();
        let b = p.get(&mut h, None).unwrap();
        // Both in use: the floor holds, nothing more is made.
        assert_eq!(p.stats().created, 2);
        p.discard(&mut h, a).unwrap();
        let s = p.stats();
        assert_eq!((s.created, s.destroyed, s.idle, s.in_use), (3, 1, 1, 1));
        // Destroyed in a trim, replaced; clear never goes below the floor.
        p.put(&mut h, b).unwrap();
        assert_eq!(p.trim(&mut h, 0), 0, "trim(0) keeps min_size");
        assert_eq!(p.stats().idle, 2);
        assert_balanced(&p);
    }
}

#[test]
fn min_size_refills_after_a_rejection_and_reports_factory_errors() {
    let p = with_min(1, Some(2));
    let mut h = TestHooks::default();
    let a = p.get(&mut h, None).unwrap();
    put_invalid(&p, &mut h, a);
    // The get rejects the invalid idle object; the refill makes one, which
    // the get then hands out.
    let b = p.get(&mut h, None).unwrap();
    assert!(b.valid.load(Ordering::Relaxed));
    let s = p.stats();
    assert_eq!((s.invalid, s.created, s.in_use), (1, 2, 1));
    // A failing factory while refilling is reported, not returned.
    h.fail_create = true;
    p.discard(&mut h, b).unwrap();
    assert_eq!(h.reported, vec!["create failed"]);
    let s = p.stats();
    assert_eq!((s.created, s.destroyed, s.idle, s.in_use), (2, 2, 0, 0));
    assert_eq!(p.waiting(), 0);
    // Its slot was released: the next get creates.
    h.fail_create = false;
    p.get(&mut h, None).unwrap();
}

#[test]
fn min_size_is_checked_against_max_size_and_max_idle() {
    // (the bound min_size is above, max_size, max_idle)
    let cases = [("max_size", Some(2), None), ("max_idle", None, Some(2))];
    for (bound, max_size, max_idle) in cases {
        let err = Pool::<Item>::new(Config {
            min_size: 3,
            max_size,
            max_idle,
            ..Config::default()
        })
        .err()
        .unwrap();
        assert_eq!(err.field, "min_size");
        let expected = format!("at most {bound} (2), got 3");
        assert!(err.message.contains(&expected), "{err}");
    }
}

fn lifetime(max_lifetime: Duration, min_size: usize) -> Pool<Item> {
    let p = pool(Config {
        max_lifetime: Some(max_lifetime),
        min_size,
        checked: true,
        shards: Some(1),
        ..Config::default()
    });
    p.refill(&mut TestHooks::default()).unwrap();
    p
}

#[test]
fn an_object_past_max_lifetime_is_destroyed_at_get_put_and_trim() {
    let tiny = Duration::from_nanos(1);
    let pause = || std::thread::sleep(Duration::from_millis(2));
    let p = lifetime(tiny, 0);
    let mut h = TestHooks::default();
    // At put: destroyed, counted as returned and expired.
    let a = p.get(&mut h, None).unwrap();
    pause();
    p.put(&mut h, Arc::clone(&a)).unwrap();
    let s = p.stats();
    assert_eq!(
        (s.puts, s.expired, s.destroyed, s.idle, s.in_use),
        (1, 1, 1, 0, 0)
    );
    assert_eq!(h.reset_calls, 0, "an expired object is not reset");
    // At get: an idle object that aged meanwhile is not handed out.
    let q = lifetime(tiny, 0);
    q.prefill(&mut h, 1).unwrap();
    pause();
    let b = q.get(&mut h, None).unwrap();
    let s = q.stats();
    assert_eq!((s.expired, s.hits, s.misses, s.created), (1, 0, 1, 2));
    assert!(h.destroyed.iter().all(|d| !Arc::ptr_eq(d, &b)));
    assert_balanced(&p);
    assert_balanced(&q);
}

#[test]
fn a_long_max_lifetime_never_expires_and_trim_expires_old_idle_objects() {
    let p = lifetime(Duration::from_secs(3600), 0);
    let mut h = TestHooks::default();
    let a = p.get(&mut h, None).unwrap();
    p.put(&mut h, Arc::clone(&a)).unwrap();
    let b = p.get(&mut h, None).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "reused within its lifetime");
    p.put(&mut h, b).unwrap();
    assert_eq!(p.stats().expired, 0);
    // Idle past a tiny lifetime: trim destroys it (expired), and refills
    // to min_size with a new one.
    let q = lifetime(Duration::from_nanos(1), 1);
    std::thread::sleep(Duration::from_millis(2));
    let first = q.stats();
    assert_eq!((first.created, first.idle), (1, 1));
    assert_eq!(q.trim(&mut h, 5), 1);
    let s = q.stats();
    assert_eq!((s.expired, s.created, s.destroyed, s.idle), (1, 2, 1, 1));
}

#[test]
fn max_lifetime_needs_a_checked_pool() {
    let err = Pool::<Item>::new(Config {
        max_lifetime: Some(Duration::from_secs(1)),
        checked: false,
        ..Config::default()
    })
    .err()
    .unwrap();
    assert_eq!(err.field, "max_lifetime");
    let err = Pool::<Item>::new(Config {
        max_lifetime: Some(Duration::ZERO),
        checked: true,
        ..Config::default()
    })
    .err()
    .unwrap();
    assert_eq!(err.message, "max_lifetime must be positive, got 0");
}

fn sizes(max_size: Option<usize>, min_size: Option<usize>) -> Sizes {
    Sizes { max_size, min_size }
}

#[test]
fn growing_max_size_serves_a_waiter_at_once() {
    let (p, mut h, _a, _b) = both_out_of_two();
    let waiter = spawn_get(&p, Some(Duration::from_secs(10)));
    while p.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let resized = p.resize(&mut h, sizes(Some(3), None)).unwrap();
    let (before, after) = ((Some(2), 0), (Some(3), 0));
    assert_eq!(resized, Resized { before, after });
    assert!(waiter.join().unwrap().is_ok());
    assert_eq!(
        (p.max_size(), p.stats().in_use, p.waiting()),
        (Some(3), 3, 0)
    );
}

#[test]
fn shrinking_destroys_idle_surplus_now_and_returned_surplus_later() {
    let p = bounded(4);
    let mut h = TestHooks::default();
    let out = get_n(&p, &mut h, 4);
    p.put(&mut h, Arc::clone(&out[0])).unwrap();
    p.put(&mut h, Arc::clone(&out[1])).unwrap();
    // 2 idle, 2 out; shrink to 1: both idle go now.
    p.resize(&mut h, sizes(Some(1), None)).unwrap();
    let s = p.stats();
    assert_eq!((s.idle, s.in_use, s.destroyed, s.dropped), (0, 2, 2, 2));
    // No new object while over the bound.
    assert_eq!(p.get(&mut h, Some(Duration::ZERO)), Err(GetError::Timeout));
    // The first one back is surplus; the second is kept (1 == max_size).
    p.put(&mut h, Arc::clone(&out[2])).unwrap();
    assert_eq!((p.stats().idle, p.stats().destroyed), (0, 3));
    p.put(&mut h, Arc::clone(&out[3])).unwrap();
    let s = p.stats();
    assert_eq!((s.idle, s.in_use, s.destroyed), (1, 0, 3));
    assert_eq!(p.waiting(), 0, "the surplus mark is cleared");
    let again = p.get(&mut h, None).unwrap();
    assert!(Arc::ptr_eq(&again, &out[3]));
    assert_balanced(&p);
}

#[test]
fn resize_refuses_what_it_cannot_do_changing_nothing() {
    let unbounded = with_min(0, None);
    let mut h = TestHooks::default();
    let err = unbounded.resize(&mut h, sizes(Some(2), None)).unwrap_err();
    assert_eq!(err.field, "max_size");
    assert_eq!(unbounded.max_size(), None);
    // min_size works without a bound.
    unbounded.resize(&mut h, sizes(None, Some(3))).unwrap();
    assert_eq!((unbounded.min_size(), unbounded.stats().idle), (3, 3));

    let p = Arc::new(bounded(4));
    assert_eq!(
        p.resize(&mut h, sizes(Some(0), None)).unwrap_err().field,
        "max_size"
    );
    assert_eq!(
        p.resize(&mut h, sizes(Some(2), Some(3))).unwrap_err().field,
        "min_size"
    );
    assert_eq!((p.max_size(), p.min_size()), (Some(4), 0));
    // A waiting get_many(3) would be stranded by max_size=2.
    let _out = get_n(&p, &mut h, 4);
    let batch = spawn_get_many(&p, 3, Some(Duration::from_secs(10)));
    while p.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let err = p.resize(&mut h, sizes(Some(2), None)).unwrap_err();
    assert!(err.message.contains("get_many(3)"), "{err}");
    assert_eq!(p.max_size(), Some(4));
    p.resize(&mut h, sizes(Some(7), None)).unwrap();
    assert_eq!(batch.join().unwrap().unwrap().len(), 3);
}

#[test]
fn max_waiting_refuses_one_more_waiter_at_once() {
    let p = Arc::new(pool(Config {
        max_size: Some(1),
        max_waiting: Some(1),
        ..Config::default()
    }));
    let mut h = TestHooks::default();
    let a = p.get(&mut h, None).unwrap();
    let waiter = spawn_get(&p, Some(Duration::from_secs(10)));
    while p.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(p.get(&mut h, None), Err(GetError::TooBusy));
    let s = p.stats();
    assert_eq!((s.rejected, s.waits, s.timeouts), (1, 1, 0));
    p.put(&mut h, a).unwrap();
    assert!(waiter.join().unwrap().is_ok());
    // max_waiting=0: never waits, yet takes what is free.
    let q = pool(Config {
        max_size: Some(1),
        max_waiting: Some(0),
        ..Config::default()
    });
    let b = q.get(&mut h, None).unwrap();
    assert_eq!(q.get(&mut h, None), Err(GetError::TooBusy));
    q.put(&mut h, b).unwrap();
    assert!(q.get(&mut h, None).is_ok());
}

#[test]
fn waits_that_end_are_counted_in_the_histogram() {
    let (p, mut h, a, _b) = both_out_of_two();
    assert_eq!(
        p.get(&mut h, Some(Duration::from_millis(1))),
        Err(GetError::Timeout)
    );
    let waiter = spawn_get(&p, Some(Duration::from_secs(10)));
    while p.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    p.put(&mut h, a).unwrap();
    waiter.join().unwrap().unwrap();
    let (counts, sum) = p.wait_times().unwrap();
    assert_eq!(counts.len(), crate::limit::WAIT_BUCKETS.len() + 1);
    assert_eq!(counts.iter().sum::<u64>(), 2, "{counts:?}");
    assert!(
        sum > 0.0009,
        "the timed-out wait lasted 1 ms at least: {sum}"
    );
    assert_eq!(pool(Config::default()).wait_times(), None);
}

#[test]
fn stats_reset_peak_restarts_max_in_use_from_in_use() {
    let p = pool(Config::default());
    let mut h = TestHooks::default();
    let out = get_n(&p, &mut h, 3);
    for item in out {
        p.put(&mut h, item).unwrap();
    }
    let _one = p.get(&mut h, None).unwrap();
    assert_eq!(p.stats_reset_peak().max_in_use, 3);
    assert_eq!(p.stats().max_in_use, 1);
}
