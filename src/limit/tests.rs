use super::*;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

fn queued<I>(e: Enqueued<I>) -> Arc<Waiter<I>> {
    match e {
        Enqueued::Queued(w) => w,
        _ => panic!("expected to queue"),
    }
}

/// A limit of `max` that hands every unit to its waiters in arrival order
/// (hand-off mode at once): what the tests of grants and batches drive.
fn handing_off<I>(max: usize) -> Limit<I> {
    Limit::new(max).handing_off_after(Duration::ZERO)
}

/// A limit of `max` with every unit charged.
fn full(max: usize) -> Limit<u32> {
    let l = handing_off(max);
    for _ in 0..max {
        assert!(l.try_reserve());
    }
    l
}

fn ready<I>(e: Enqueued<I>) -> Grant<I> {
    match e {
        Enqueued::Ready(g) => g,
        _ => panic!("expected to be served at once"),
    }
}

/// Idle items for the tests: a stack behind a lock.
#[derive(Default)]
struct Items(std::sync::Mutex<Vec<u32>>);

impl Items {
    fn with(items: &[u32]) -> Self {
        Items(std::sync::Mutex::new(items.to_vec()))
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl Store<u32> for Items {
    fn take(&self) -> Option<u32> {
        self.0.lock().unwrap().pop()
    }

    fn count(&self) -> usize {
        self.len()
    }
}

fn units(items: Vec<u32>, slots: usize) -> Grant<u32> {
    Grant::Batch(Units { items, slots })
}

#[test]
fn reserve_never_exceeds_max() {
    let l: Limit<u32> = handing_off(2);
    assert!(l.try_reserve());
    assert!(l.try_reserve());
    assert!(!l.try_reserve());
    assert_eq!(l.alive(), 2);
    l.release(&NoStore);
    assert!(l.try_reserve());
}

#[test]
fn enqueue_takes_free_capacity_instead_of_waiting() {
    let l: Limit<u32> = handing_off(1);
    assert_eq!(ready(l.enqueue(&NoStore)), Grant::Slot);
    assert_eq!(ready(l.enqueue(&Items::with(&[5]))), Grant::Item(5));
    assert_eq!(l.waiting(), 0);
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let l = full(1);
    let a = queued(l.enqueue(&NoStore));
    let b = queued(l.enqueue(&NoStore));
    assert_eq!(l.waiting(), 2);
    assert_eq!(l.offer(1, &NoStore), Offered::Taken);
    assert_eq!(a.take(), Some(Outcome::Granted(Grant::Item(1))));
    assert_eq!(b.take(), None);
    l.release(&NoStore);
    assert_eq!(b.take(), Some(Outcome::Granted(Grant::Slot)));
    assert_eq!(l.waiting(), 0);
    assert_eq!(l.offer(2, &NoStore), Offered::Kept(2));
}

#[test]
fn park_times_out_and_cancel_withdraws() {
    let l = full(1);
    let w = queued(l.enqueue(&NoStore));
    let start = Instant::now();
    assert!(!w.park(Some(start + Duration::from_millis(20))));
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(l.cancel(&w, &NoStore), None);
    assert_eq!(l.waiting(), 0);
    // The slot was not consumed by the cancelled waiter.
    l.release(&NoStore);
    assert_eq!(l.alive(), 0);
}

/// Runs `f` on a new thread with its own reference to `shared`.
fn spawn_with<T, R>(
    shared: &Arc<T>,
    f: impl FnOnce(Arc<T>) -> R + Send + 'static,
) -> std::thread::JoinHandle<R>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
{
    let shared = Arc::clone(shared);
    std::thread::spawn(move || f(shared))
}

/// A batch of `n` queued on `l`, and preferred.
fn preferred_batch(l: &Limit<u32>, n: usize) -> Arc<Waiter<u32>> {
    let batch = queued(l.enqueue_batch(n, &NoStore));
    assert!(l.prefer(&batch, &NoStore));
    batch
}

/// A waiter queued on `l` whose notification counts in `calls`.
fn queued_counting(l: &Limit<u32>, calls: &Arc<AtomicUsize>) -> Arc<Waiter<u32>> {
    let w = queued(l.enqueue(&NoStore));
    w.on_decided(counter(calls));
    w
}

fn counter(calls: &Arc<AtomicUsize>) -> Box<dyn Notify> {
    let calls = Arc::clone(calls);
    Box::new(move || {
        calls.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn notification_runs_once_decided_or_at_once_if_decided_already() {
    let l = full(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let w = queued_counting(&l, &calls);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(!w.is_decided());
    assert_eq!(l.offer(3, &NoStore), Offered::Taken);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(w.is_decided());
    // Set after the decision: runs at once, and only that once.
    w.on_decided(counter(&calls));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(w.take(), Some(Outcome::Granted(Grant::Item(3))));
    // Closing notifies every queued waiter.
    let a = queued(l.enqueue(&NoStore));
    let b = queued(l.enqueue(&NoStore));
    a.on_decided(counter(&calls));
    b.on_decided(counter(&calls));
    l.close();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(a.take(), Some(Outcome::Closed));
    assert_eq!(b.take(), Some(Outcome::Closed));
}

#[test]
fn a_withdrawn_waiter_drops_its_notification_and_never_runs_one() {
    // The notification of a withdrawn waiter is dropped at once: what it
    // refers to (an event loop's callback, which refers back to the
    // waiter) is not kept alive by the waiter.
    let l = full(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let w = queued_counting(&l, &calls);
    assert_eq!(Arc::strong_count(&calls), 2);
    assert_eq!(l.cancel(&w, &NoStore), None);
    assert_eq!(Arc::strong_count(&calls), 1, "dropped on withdrawal");
    // One set afterwards never runs, and is not kept either.
    w.on_decided(counter(&calls));
    assert_eq!(Arc::strong_count(&calls), 1);
    l.release(&NoStore);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(!w.is_decided());
}

#[test]
fn cancel_after_grant_returns_the_grant() {
    let l = full(1);
    let w = queued(l.enqueue(&NoStore));
    assert_eq!(l.offer(9, &NoStore), Offered::Taken);
    assert_eq!(
        l.cancel(&w, &NoStore),
        Some(Outcome::Granted(Grant::Item(9)))
    );
}

#[test]
fn close_wakes_everyone_and_refuses_new_waiters() {
    let l = Arc::new(full(1));
    let w = queued(l.enqueue(&NoStore));
    let t = spawn_with(&w, move |w| w.park(None));
    std::thread::sleep(Duration::from_millis(10));
    l.close();
    assert!(t.join().unwrap());
    assert_eq!(w.take(), Some(Outcome::Closed));
    assert!(matches!(l.enqueue(&NoStore), Enqueued::Closed));
    assert!(matches!(l.enqueue_batch(1, &NoStore), Enqueued::Closed));
}

#[test]
fn release_wakes_a_parked_thread() {
    let l = Arc::new(full(1));
    let w = queued(l.enqueue(&NoStore));
    let t = spawn_with(&l, move |l| {
        std::thread::sleep(Duration::from_millis(10));
        l.release(&NoStore);
    });
    assert!(w.park(Some(Instant::now() + Duration::from_secs(10))));
    t.join().unwrap();
    assert_eq!(w.take(), Some(Outcome::Granted(Grant::Slot)));
    assert_eq!(l.alive(), 1);
}

// --- batches ---

#[test]
fn a_batch_takes_all_its_units_at_once_when_they_are_free() {
    let l: Limit<u32> = handing_off(4);
    let idle = Items::with(&[1, 2]);
    assert!(l.try_reserve() && l.try_reserve()); // the two idle items
    assert_eq!(ready(l.enqueue_batch(3, &idle)), units(vec![2, 1], 1));
    assert_eq!((l.alive(), l.waiting(), idle.len()), (3, 0, 0));
}

#[test]
fn a_waiting_batch_holds_nothing_and_is_overtaken_by_singles() {
    // Issue 11, defect 4: max_size=2, B holds one, A waits for two. A holds
    // nothing, so B's second get is served from the free slot; once B gives
    // both back, A is served.
    let l: Limit<u32> = handing_off(2);
    assert!(l.try_reserve()); // B's object
    let a = queued(l.enqueue_batch(2, &NoStore));
    assert_eq!(l.alive(), 1, "the waiting batch holds no slot");
    assert_eq!(ready(l.enqueue(&NoStore)), Grant::Slot, "B is served");
    assert!(!a.is_decided());
    // B gives its first object back: one unit is not a batch of two, so it
    // stays with B's store (nobody else waits).
    assert_eq!(l.offer(10, &NoStore), Offered::Kept(10));
    let idle = Items::with(&[10]);
    // The second comes back: now two units are free together.
    assert_eq!(l.offer(11, &idle), Offered::Taken);
    assert_eq!(a.take(), Some(Outcome::Granted(units(vec![11, 10], 0))));
    assert_eq!((l.alive(), l.waiting()), (2, 0));
}

#[test]
fn singles_behind_a_batch_are_served_in_order_and_the_batch_after() {
    let l = full(2);
    let batch = queued(l.enqueue_batch(2, &NoStore));
    let one = queued(l.enqueue(&NoStore));
    let two = queued(l.enqueue(&NoStore));
    assert_eq!(l.waiting(), 3);
    l.release(&NoStore); // a slot: the batch cannot use one, `one` can
    assert_eq!(one.take(), Some(Outcome::Granted(Grant::Slot)));
    assert!(!batch.is_decided() && !two.is_decided());
    l.release(&NoStore);
    assert_eq!(two.take(), Some(Outcome::Granted(Grant::Slot)));
    // Both singles give back at once (their objects destroyed): the batch.
    l.release(&NoStore);
    assert!(!batch.is_decided());
    l.release(&NoStore);
    assert_eq!(batch.take(), Some(Outcome::Granted(units(vec![], 2))));
    assert_eq!((l.alive(), l.waiting()), (2, 0));
}

#[test]
fn a_preferred_batch_gets_every_unit_and_stops_overtaking() {
    let l = full(3);
    let batch = preferred_batch(&l, 3);
    let single = queued(l.enqueue(&NoStore));
    assert_eq!(
        l.offer(1, &NoStore),
        Offered::Taken,
        "set aside for the batch"
    );
    assert_eq!(l.set_aside(), 1);
    l.release(&NoStore);
    assert!(
        !single.is_decided(),
        "singles wait behind a preferred batch"
    );
    assert_eq!((l.alive(), l.set_aside()), (3, 1));
    // A newcomer queues too: it does not take what is set aside.
    let late = queued(l.enqueue(&NoStore));
    assert_eq!(l.offer(2, &NoStore), Offered::Taken);
    assert_eq!(batch.take(), Some(Outcome::Granted(units(vec![1, 2], 1))));
    assert_eq!(l.set_aside(), 0);
    // Then the singles, in order.
    l.release(&NoStore);
    assert_eq!(single.take(), Some(Outcome::Granted(Grant::Slot)));
    assert!(!late.is_decided());
    assert_eq!(l.cancel(&late, &NoStore), None);
    assert_eq!(l.waiting(), 0);
}

#[test]
fn a_preferred_batch_yields_to_waiters_behind_it() {
    // The caller that must get a second object before it gives back its
    // first is delayed by a preferred batch, never deadlocked.
    let l: Limit<u32> = handing_off(2);
    assert!(l.try_reserve()); // B holds one
    let a = preferred_batch(&l, 2);
    assert_eq!(l.alive(), 2, "the free slot is set aside for the batch");
    let b = queued(l.enqueue(&NoStore)); // B's second get waits
                                         // Nobody else waits: a batch alone keeps what is set aside.
    assert_eq!(l.unprefer(&b), None, "b is not preferred");
    let yielded = l.unprefer(&a).expect("b waits behind a");
    assert_eq!(yielded, Units::default().tap_slots(1));
    assert!(!b.is_decided(), "given back by the caller, not by unprefer");
    l.release(&NoStore); // the caller gives the slot back
    assert_eq!(b.take(), Some(Outcome::Granted(Grant::Slot)));
    assert!(!a.is_decided());
    // The batch is passed by again, then preferred again.
    assert!(l.prefer(&a, &NoStore));
    l.release(&NoStore);
    assert!(!a.is_decided());
    l.release(&NoStore);
    assert_eq!(a.take(), Some(Outcome::Granted(units(vec![], 2))));
}

impl<I> Units<I> {
    fn tap_slots(mut self, slots: usize) -> Self {
        self.slots = slots;
        self
    }
}

#[test]
fn a_lone_preferred_batch_keeps_what_is_set_aside() {
    let l = full(2);
    let a = preferred_batch(&l, 2);
    assert_eq!(l.offer(7, &NoStore), Offered::Taken);
    assert_eq!(l.unprefer(&a), None);
    assert_eq!(l.set_aside(), 1);
}

#[test]
fn only_one_batch_is_preferred_at_a_time() {
    let l = full(2);
    let a = queued(l.enqueue_batch(2, &NoStore));
    let b = preferred_batch(&l, 2);
    assert!(!l.prefer(&a, &NoStore), "b is preferred");
    assert!(l.prefer(&b, &NoStore), "still");
    l.release(&NoStore);
    l.release(&NoStore);
    // Units go to the preferred batch, although `a` came first.
    assert_eq!(b.take(), Some(Outcome::Granted(units(vec![], 2))));
    assert!(!a.is_decided());
}

#[test]
fn a_cancelled_preferred_batch_returns_what_was_set_aside() {
    let l = full(3);
    let a = preferred_batch(&l, 3);
    assert_eq!(l.offer(4, &NoStore), Offered::Taken);
    l.release(&NoStore);
    assert_eq!(
        l.cancel(&a, &NoStore),
        Some(Outcome::Granted(units(vec![4], 1)))
    );
    assert_eq!((l.waiting(), l.set_aside(), l.alive()), (0, 0, 3));
}

#[test]
fn close_returns_what_was_set_aside() {
    let l = full(2);
    let a = preferred_batch(&l, 2);
    assert_eq!(l.offer(4, &NoStore), Offered::Taken);
    let set_aside = l.close();
    assert_eq!(
        set_aside,
        Units {
            items: vec![4],
            slots: 0
        }
    );
    assert_eq!(a.take(), Some(Outcome::Closed));
    assert_eq!(l.set_aside(), 0);
}

#[test]
fn a_batch_that_finds_fewer_units_than_it_counted_keeps_them() {
    // A store whose count promises more than it gives (a concurrent get
    // took one between the count and the take).
    struct Fickle;
    impl Store<u32> for Fickle {
        fn take(&self) -> Option<u32> {
            None
        }
        fn count(&self) -> usize {
            1
        }
    }
    let l: Limit<u32> = handing_off(2);
    assert!(l.try_reserve());
    let a = queued(l.enqueue_batch(2, &Fickle));
    assert_eq!(l.alive(), 2, "the free slot is set aside: its turn began");
    assert_eq!(l.offer(5, &NoStore), Offered::Taken);
    assert_eq!(a.take(), Some(Outcome::Granted(units(vec![5], 1))));
}

#[test]
fn turns_pass_by_then_prefer_then_yield_then_prefer_for_longer() {
    let l = full(2);
    let start = Instant::now();
    let a = queued(l.enqueue_batch(2, &NoStore));
    let mut turns = Turns::new(start);
    assert_eq!(turns.ends(), start + PATIENCE);
    assert!(!turns.is_preferred());
    // First turn over: preferred for as long as it has waited.
    let t1 = start + Duration::from_millis(3);
    assert_eq!(turns.next(&l, &a, &NoStore, t1), None);
    assert!(turns.is_preferred());
    assert_eq!(turns.ends(), t1 + Duration::from_millis(3));
    l.release(&NoStore);
    assert_eq!(l.alive(), 2, "set aside");
    // Alone: it keeps its turn, for as long again.
    let t2 = start + Duration::from_millis(6);
    assert_eq!(turns.next(&l, &a, &NoStore, t2), None);
    assert!(turns.is_preferred());
    assert_eq!(turns.ends(), t2 + Duration::from_millis(6));
    // Someone waits behind it: it yields what it has.
    let b = queued(l.enqueue(&NoStore));
    let t3 = start + Duration::from_millis(12);
    assert_eq!(
        turns.next(&l, &a, &NoStore, t3),
        Some(Units::default().tap_slots(1))
    );
    assert!(!turns.is_preferred());
    assert_eq!(turns.ends(), t3 + PATIENCE);
    l.release(&NoStore); // the yielded slot goes back: to b
    assert_eq!(b.take(), Some(Outcome::Granted(Grant::Slot)));
}

#[test]
fn batches_and_singles_in_threads_are_all_served() {
    // Singles churn (never leaving two units free together for long) while
    // batches of the whole bound wait: every batch is served (the turns
    // bound the overtaking), nothing is lost, nothing exceeds the bound.
    const MAX: usize = 3;
    let l: Arc<Limit<u32>> = Arc::new(handing_off(MAX));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Singles served so far: the batches keep coming until the singles have
    // really contended with them (on a loaded machine the 50 batches can be
    // done before a single thread has started).
    let served_so_far = Arc::new(AtomicUsize::new(0));
    let singles: Vec<_> = (0..3)
        .map(|_| {
            let (l, stop) = (Arc::clone(&l), Arc::clone(&stop));
            let served_so_far = Arc::clone(&served_so_far);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let grant = match l.enqueue(&NoStore) {
                        Enqueued::Ready(g) => g,
                        Enqueued::Queued(w) => {
                            assert!(w.park(None));
                            match w.take() {
                                Some(Outcome::Granted(g)) => g,
                                other => panic!("{other:?}"),
                            }
                        }
                        Enqueued::Closed | Enqueued::Busy => unreachable!(),
                    };
                    assert_eq!(grant, Grant::Slot);
                    assert!(l.alive() <= MAX);
                    std::thread::yield_now();
                    l.release(&NoStore);
                    served_so_far.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut batches = 0;
    while batches < 50 || served_so_far.load(Ordering::Relaxed) < 100 {
        batches += 1;
        let start = Instant::now();
        let grant = match l.enqueue_batch(MAX, &NoStore) {
            Enqueued::Ready(g) => g,
            Enqueued::Queued(w) => {
                let mut turns = Turns::new(start);
                loop {
                    if w.park(Some(turns.ends())) {
                        break;
                    }
                    let now = Instant::now();
                    if now >= turns.ends() {
                        if let Some(units) = turns.next(&l, &w, &NoStore, now) {
                            for _ in 0..units.slots {
                                l.release(&NoStore);
                            }
                        }
                    }
                }
                match w.take() {
                    Some(Outcome::Granted(g)) => g,
                    other => panic!("{other:?}"),
                }
            }
            Enqueued::Closed | Enqueued::Busy => unreachable!(),
        };
        assert_eq!(grant, units(vec![], MAX));
        for _ in 0..MAX {
            l.release(&NoStore);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for single in singles {
        single.join().unwrap();
    }
    assert_eq!((l.alive(), l.waiting(), l.set_aside()), (0, 0, 0));
}

// --- normal mode: returned items are stored, waiters woken to compete ---

/// A limit of `max`, every unit charged, whose waiters starve after
/// `after` (`Duration::MAX`: never, so always normal mode).
fn full_starving_after(max: usize, after: Duration) -> Limit<u32> {
    let l = Limit::new(max).handing_off_after(after);
    for _ in 0..max {
        assert!(l.try_reserve());
    }
    l
}

/// As `Pool::put` does: offer, store what no waiter took, serve.
fn put(l: &Limit<u32>, store: &Items, item: u32) {
    match l.offer(item, store) {
        Offered::Taken => {}
        Offered::Kept(item) => {
            store.0.lock().unwrap().push(item);
            l.serve_from(store);
        }
        Offered::Surplus(_) => panic!("no surplus here"),
    }
}

type TwoWaiters = (Limit<u32>, Items, Arc<Waiter<u32>>, Arc<Waiter<u32>>);

/// A full bound of 1 in normal mode, `a` then `b` queued on it, and one
/// item put: stored, and `a` woken to compete for it.
fn two_waiters_and_a_put() -> TwoWaiters {
    let l = full_starving_after(1, Duration::MAX);
    let store = Items::default();
    let a = queued(l.enqueue(&store));
    let b = queued(l.enqueue(&store));
    put(&l, &store, 1);
    (l, store, a, b)
}

#[test]
fn a_put_wakes_the_front_waiter_and_a_running_caller_may_take_it_first() {
    let (l, store, a, b) = two_waiters_and_a_put();
    assert_eq!(store.len(), 1, "stored, not granted");
    assert!(a.is_woken() && !a.is_decided() && !b.is_woken());
    assert_eq!(l.waiting(), 2, "a woken waiter is still queued");
    // Barging: the running thread asks at once and takes it.
    assert_eq!(store.take(), Some(1));
    assert_eq!(l.settle(&a, &store), Settled::Lost);
    assert!(!a.is_woken() && !b.is_woken());
    // It kept its place: the next put wakes it again, not `b`.
    put(&l, &store, 1);
    assert!(a.is_woken() && !b.is_woken());
    assert_eq!(
        l.settle(&a, &store),
        Settled::Decided(Outcome::Granted(Grant::Item(1)))
    );
    assert_eq!((l.waiting(), store.len()), (1, 0));
    assert!(!b.is_woken(), "nothing left for it: not woken");
}

#[test]
fn the_walk_wakes_as_many_waiters_as_there_are_units() {
    let l = full_starving_after(2, Duration::MAX);
    let store = Items::default();
    let w: Vec<_> = (0..3).map(|_| queued(l.enqueue(&store))).collect();
    put(&l, &store, 1);
    put(&l, &store, 2);
    assert!(w[0].is_woken() && w[1].is_woken() && !w[2].is_woken());
    assert!(matches!(
        l.settle(&w[0], &store),
        Settled::Decided(Outcome::Granted(Grant::Item(_)))
    ));
    assert!(matches!(
        l.settle(&w[1], &store),
        Settled::Decided(Outcome::Granted(Grant::Item(_)))
    ));
    assert!(!w[2].is_woken() && !w[2].is_decided());
    assert_eq!(l.waiting(), 1);
}

#[test]
fn a_woken_waiter_that_gives_up_passes_its_wake_up_on() {
    let (l, store, a, b) = two_waiters_and_a_put();
    assert!(a.is_woken());
    // Timed out as it was woken: it held nothing, so it gives back nothing.
    assert_eq!(l.cancel(&a, &store), None);
    assert!(b.is_woken(), "the wake-up went on to the next waiter");
    assert_eq!(
        l.settle(&b, &store),
        Settled::Decided(Outcome::Granted(Grant::Item(1)))
    );
    assert_eq!((l.waiting(), store.len()), (0, 0));
}

/// A full bound of `max` whose waiters starve after a millisecond (the
/// threshold, returned), and an empty store.
fn starving_after_a_millisecond(max: usize) -> (Duration, Limit<u32>, Items) {
    let after = Duration::from_millis(1);
    (after, full_starving_after(max, after), Items::default())
}

#[test]
fn starved_waiters_are_handed_the_next_puts_in_arrival_order() {
    let (after, l, store) = starving_after_a_millisecond(2);
    let a = queued(l.enqueue(&store));
    let b = queued(l.enqueue(&store));
    // Both past the threshold. The first put after they starved finds the
    // mode hint stale: it stores its item, and the walk hands it over from
    // the store before any running thread can take it.
    std::thread::sleep(after * 5);
    put(&l, &store, 1);
    assert_eq!(store.take(), None, "handed over, not left to barge for");
    assert_eq!(a.take(), Some(Outcome::Granted(Grant::Item(1))));
    // The next put hands its item straight over.
    assert_eq!(l.offer(2, &store), Offered::Taken);
    assert_eq!(b.take(), Some(Outcome::Granted(Grant::Item(2))));
    assert_eq!(l.waiting(), 0);
    // Nobody waits: back to storing.
    assert_eq!(l.offer(3, &store), Offered::Kept(3));
}

#[test]
fn a_starved_woken_waiter_is_handed_the_unit_it_was_competing_for() {
    let (after, l, store) = starving_after_a_millisecond(1);
    let a = queued(l.enqueue(&store));
    // Woken (normal mode) before it starved, or handed over at once if it
    // starved already on a slow machine: either way it ends with the item.
    put(&l, &store, 1);
    if a.is_woken() {
        assert_eq!(store.take(), Some(1)); // barged
        std::thread::sleep(after * 5); // now it has starved, still woken
        put(&l, &store, 1);
        assert_eq!(store.len(), 0, "handed to the starved waiter");
    }
    assert_eq!(
        l.settle(&a, &store),
        Settled::Decided(Outcome::Granted(Grant::Item(1)))
    );
    assert_eq!(l.waiting(), 0);
}

// --- parking in slices (what a binding's `Hooks::park` runs) ---

#[test]
fn parking_in_slices_runs_between_slices_until_decided() {
    let (mut slices, mut between) = (Vec::new(), 0);
    let slice = Duration::from_secs(3600);
    let start = Instant::now();
    let decided = park_in_slices::<()>(
        None,
        slice,
        |until| {
            slices.push(until);
            slices.len() == 3
        },
        || {
            between += 1;
            Ok(())
        },
    );
    assert_eq!((decided, slices.len(), between), (Ok(true), 3, 2));
    // Without a deadline, each slice ends a slice from its start.
    assert!(slices.iter().all(|&u| u >= start + slice));
}

#[test]
fn parking_in_slices_stops_at_the_deadline_and_at_an_interrupt() {
    let past = Instant::now();
    let mut between = 0;
    let ends = park_in_slices::<()>(
        Some(past),
        Duration::from_secs(3600),
        |until| {
            // A slice never runs past the deadline.
            assert_eq!(until, past);
            false
        },
        || {
            between += 1;
            Ok(())
        },
    );
    assert_eq!((ends, between), (Ok(false), 0));
    let far = Some(Instant::now() + Duration::from_secs(3600));
    let interrupted = park_in_slices(far, Duration::ZERO, |_| false, || Err("signal"));
    assert_eq!(interrupted, Err("signal"));
}
