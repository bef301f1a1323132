//! The `max_size` bound and its waiters (`limit.rs`), on its own; the
//! models in `pool` drive it through a bounded pool (in normal mode: under
//! loom a limit never starves by the clock).
//!
//! The models of grants and batches run in hand-off mode
//! (`handing_off_after(ZERO)`: every unit goes to the waiters in arrival
//! order); those of normal mode (`handing_off_after(MAX)`: a returned item
//! is stored and a waiter woken to compete for it) are at the end.
//!
//! A waiter that is never woken stays blocked in its condition variable, and
//! loom fails the model as a deadlock, so every model here proves the
//! absence of lost wake-ups for its race. They also prove, for every
//! interleaving within the bound:
//! - a freed slot or an offered item goes to the waiter, or stays with the
//!   bound/the offerer when the waiter is gone, never to both and never to
//!   neither (`alive` and `waiting` are exact afterwards);
//! - waiters are served in the order they queued (FIFO handoff);
//! - a waiter whose deadline passes (under loom a deadline has always
//!   passed) and withdraws with `cancel` keeps whatever it was granted
//!   meanwhile, so no slot or item is lost;
//! - `close` wakes every waiter and refuses later ones;
//! - a waiting batch holds nothing: a holder's second request is served
//!   while the batch waits, and the batch is served once both come back;
//! - a batch whose deadline passes while units come back ends with all of
//!   them or none, never a part;
//! - units set aside for a preferred batch are never lost or doubled when
//!   an offer, a release and the batch's withdrawal race;
//! - a preferred batch that yields, then gives up, leaves the single
//!   waiter behind it served (no lost wake-up through the set-aside units);
//! - in normal mode, a woken waiter that loses the race to a running thread
//!   waits again and is woken by the next put (no lost wake-up), and the
//!   item is never held by two at once;
//! - in normal mode, a woken waiter that times out loses nothing and passes
//!   its wake-up on to the next waiter;
//! - in hand-off mode, a put grants to the waiter and a running thread that
//!   asks at once finds nothing (no barging past a starved waiter).

use std::time::{Duration, Instant};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::Bound::{self, Exhaustive, Preemptions};
use super::{check, spawn_with};
use crate::limit::{
    Enqueued, Grant, Limit, NoStore, Offered, Outcome, Park, Settled, Store, Units,
};

/// An empty store that runs its function each time it is looked in (under
/// the queue lock).
struct Counting<F>(F);

impl<F: Fn() -> Option<u32>> Store<u32> for Counting<F> {
    fn take(&self) -> Option<u32> {
        (self.0)()
    }

    fn count(&self) -> usize {
        0
    }
}

/// Queues (or takes what is free) and blocks until served; `Closed` if the
/// bound is closed. What `Pool::get` does with no deadline.
fn wait_forever(limit: &Limit<u32>) -> Outcome<u32> {
    served(limit.enqueue(&NoStore))
}

/// A batch of `n`: queued (or served at once) and blocked until served.
fn batch_forever(limit: &Limit<u32>, n: usize) -> Outcome<u32> {
    served(limit.enqueue_batch(n, &NoStore))
}

/// The outcome of a request, blocked until served if it was queued.
fn served(enqueued: Enqueued<u32>) -> Outcome<u32> {
    match enqueued {
        Enqueued::Ready(grant) => Outcome::Granted(grant),
        Enqueued::Closed => Outcome::Closed,
        Enqueued::Busy => unreachable!("no max_waiting in these models"),
        Enqueued::Queued(waiter) => {
            assert!(waiter.park(None));
            waiter.take().expect("decided when park returns")
        }
    }
}

/// As `Pool::wait` with a deadline: a timed-out wait withdraws, and keeps
/// what it was granted meanwhile (`None`: nothing).
fn wait_until_deadline(limit: &Limit<u32>) -> Option<Outcome<u32>> {
    match limit.enqueue(&NoStore) {
        Enqueued::Ready(grant) => Some(Outcome::Granted(grant)),
        Enqueued::Closed => Some(Outcome::Closed),
        Enqueued::Busy => unreachable!("no max_waiting in these models"),
        Enqueued::Queued(waiter) => {
            if waiter.park(Some(Instant::now())) {
                waiter.take().or_else(|| limit.cancel(&waiter, &NoStore))
            } else {
                limit.cancel(&waiter, &NoStore)
            }
        }
    }
}

/// A bound of `max` in hand-off mode (every unit to the waiters, in
/// arrival order).
fn handing_off(max: usize) -> Limit<u32> {
    Limit::new(max).handing_off_after(Duration::ZERO)
}

/// A shared bound of `max` in hand-off mode, every unit already taken by
/// the model's main thread.
fn full(max: usize) -> Arc<Limit<u32>> {
    let limit = Arc::new(handing_off(max));
    for _ in 0..max {
        assert!(limit.try_reserve());
    }
    limit
}

/// A model of a bound of `max`, every unit held by the main thread:
/// `other` runs on its own thread, `main` on the main thread meanwhile
/// (with `other`'s handle).
fn on_a_full_bound<R: 'static>(
    bound: Bound,
    max: usize,
    other: fn(&Limit<u32>) -> R,
    main: fn(&Arc<Limit<u32>>, thread::JoinHandle<R>),
) {
    check(bound, move || {
        let limit = full(max);
        let handle = spawn_with(&limit, move |limit| other(&limit));
        main(&limit, handle);
    });
}

/// A release wakes a waiter (or lets it take the slot as it queues).
#[test]
fn release_wakes_a_waiter() {
    on_a_full_bound(Exhaustive, 1, wait_forever, |limit, waiter| {
        limit.release(&NoStore);
        assert_eq!(waiter.join().unwrap(), Outcome::Granted(Grant::Slot));
        assert_eq!(limit.alive(), 1, "the slot moved to the waiter");
        assert_eq!(limit.waiting(), 0);
    });
}

/// Two threads queue while the bound is full; then an item and a slot are
/// handed out: the first to queue gets the item, the second the slot.
#[test]
fn waiters_are_served_in_queue_order() {
    check(Preemptions(3), || {
        let limit = full(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiters: Vec<_> = (0..2)
            .map(|i| {
                let (limit, order) = (Arc::clone(&limit), Arc::clone(&order));
                thread::spawn(move || {
                    let queued = limit.enqueue(&Counting(|| {
                        // Runs under the queue lock as the thread queues.
                        order.lock().unwrap().push(i);
                        None
                    }));
                    let Enqueued::Queued(waiter) = queued else {
                        panic!("the bound is full");
                    };
                    assert!(waiter.park(None));
                    (i, waiter.take().unwrap())
                })
            })
            .collect();
        while limit.waiting() < 2 {
            thread::yield_now();
        }
        assert_eq!(limit.offer(7, &NoStore), Offered::Taken);
        limit.release(&NoStore);
        let mut got: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        let order = order.lock().unwrap().clone();
        got.sort_by_key(|(i, _)| order.iter().position(|o| o == i));
        let outcomes: Vec<_> = got.into_iter().map(|(_, o)| o).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Granted(Grant::Item(7)),
                Outcome::Granted(Grant::Slot)
            ]
        );
        assert_eq!(limit.alive(), 1);
        assert_eq!(limit.waiting(), 0);
        assert_eq!(
            limit.offer(8, &NoStore),
            Offered::Kept(8),
            "nobody waits any more"
        );
    });
}

/// A waiter times out and withdraws while the slot is released: the slot
/// is the waiter's or the bound's, never lost and never counted twice.
#[test]
fn timeout_racing_release_never_loses_the_slot() {
    on_a_full_bound(Exhaustive, 1, wait_until_deadline, |limit, waiter| {
        limit.release(&NoStore);
        let holds = match waiter.join().unwrap() {
            Some(Outcome::Granted(Grant::Slot)) => 1,
            None => 0,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(limit.alive(), holds);
        assert_eq!(limit.waiting(), 0);
        // The slot is free exactly when the waiter did not take it.
        assert_eq!(limit.try_reserve(), holds == 0);
    });
}

/// A waiter times out and withdraws while an item is offered: exactly one
/// of them ends up with the item.
#[test]
fn timeout_racing_offer_never_loses_the_item() {
    on_a_full_bound(Exhaustive, 1, wait_until_deadline, |limit, waiter| {
        let kept = match limit.offer(7, &NoStore) {
            Offered::Kept(item) | Offered::Surplus(item) => Some(item),
            Offered::Taken => None,
        };
        let given = match waiter.join().unwrap() {
            Some(Outcome::Granted(Grant::Item(item))) => Some(item),
            None => None,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!([kept, given].into_iter().flatten().collect::<Vec<_>>(), [7]);
        assert_eq!(limit.alive(), 1);
        assert_eq!(limit.waiting(), 0);
    });
}

/// `close` wakes a waiter (or turns it away), and refuses later ones.
#[test]
fn close_wakes_a_waiter() {
    on_a_full_bound(Exhaustive, 1, wait_forever, |limit, waiter| {
        limit.close();
        assert_eq!(waiter.join().unwrap(), Outcome::Closed);
        assert!(matches!(limit.enqueue(&NoStore), Enqueued::Closed));
        assert_eq!(limit.waiting(), 0);
    });
}

fn slots(n: usize) -> Outcome<u32> {
    Outcome::Granted(Grant::Batch(Units {
        items: Vec::new(),
        slots: n,
    }))
}

/// Issue 11's deadlock: a bound of two, one unit held by the main thread,
/// a batch of two waits. The batch holds nothing, so the main thread's
/// second request is served however the two interleave; once it gives both
/// back, the batch is served (no lost wake-up).
#[test]
fn a_waiting_batch_holds_nothing() {
    check(Exhaustive, || {
        let limit: Arc<Limit<u32>> = Arc::new(handing_off(2));
        assert!(limit.try_reserve());
        let batch = spawn_with(&limit, move |limit| batch_forever(&limit, 2));
        assert!(
            matches!(limit.enqueue(&NoStore), Enqueued::Ready(Grant::Slot)),
            "the holder's second request is served"
        );
        limit.release(&NoStore);
        limit.release(&NoStore);
        assert_eq!(batch.join().unwrap(), slots(2));
        assert_eq!((limit.alive(), limit.waiting()), (2, 0));
    });
}

/// A batch of two on a full bound times out while both units come back:
/// it ends with both or with none.
#[test]
fn batch_timeout_racing_releases_takes_all_or_nothing() {
    on_a_full_bound(
        Exhaustive,
        2,
        |limit| match limit.enqueue_batch(2, &NoStore) {
            Enqueued::Ready(Grant::Batch(units)) => units.slots,
            Enqueued::Queued(waiter) => {
                let outcome = if waiter.park(Some(Instant::now())) {
                    waiter.take()
                } else {
                    limit.cancel(&waiter, &NoStore)
                };
                match outcome {
                    Some(Outcome::Granted(Grant::Batch(units))) => {
                        assert_eq!(units.slots, 2, "never a part");
                        2
                    }
                    None => 0,
                    other => panic!("unexpected {other:?}"),
                }
            }
            _ => panic!("unexpected"),
        },
        |limit, batch| {
            limit.release(&NoStore);
            limit.release(&NoStore);
            let holds = batch.join().unwrap();
            assert_eq!(limit.alive(), holds);
            assert_eq!((limit.waiting(), limit.set_aside()), (0, 0));
        },
    );
}

/// A batch becomes preferred and then withdraws while the main thread
/// offers an item and releases a slot: the item and the slot each end up
/// exactly once with the offerer, the batch, or back in the bound.
#[test]
fn set_aside_units_are_never_lost_or_doubled() {
    on_a_full_bound(
        Preemptions(5),
        2,
        |limit| match limit.enqueue_batch(2, &NoStore) {
            Enqueued::Ready(Grant::Batch(units)) => units,
            Enqueued::Queued(waiter) => {
                limit.prefer(&waiter, &NoStore);
                match limit.cancel(&waiter, &NoStore) {
                    Some(Outcome::Granted(Grant::Batch(units))) => units,
                    None => Units::default(),
                    other => panic!("unexpected {other:?}"),
                }
            }
            _ => panic!("unexpected"),
        },
        |limit, batch| {
            let kept = match limit.offer(7, &NoStore) {
                Offered::Kept(item) | Offered::Surplus(item) => Some(item),
                Offered::Taken => None,
            };
            limit.release(&NoStore);
            let units = batch.join().unwrap();
            let items: Vec<u32> = kept
                .into_iter()
                .chain(units.items.iter().copied())
                .collect();
            assert_eq!(items, [7], "the item is the offerer's or the batch's");
            // Charged: the item (wherever it is) and what the batch holds.
            assert_eq!(limit.alive(), 1 + units.slots);
            assert_eq!((limit.waiting(), limit.set_aside()), (0, 0));
        },
    );
}

/// A preferred batch with a unit set aside yields it (the single waiter
/// behind it gets it through the batch's give-back), then gives up: the
/// single waiter is served whatever the interleaving.
#[test]
fn a_yielding_batch_leaves_the_waiter_behind_it_served() {
    on_a_full_bound(
        Preemptions(3),
        2,
        |limit| {
            let give_back = |units: Units<u32>| {
                assert!(units.items.is_empty());
                for _ in 0..units.slots {
                    limit.release(&NoStore);
                }
            };
            let waiter = match limit.enqueue_batch(2, &NoStore) {
                Enqueued::Queued(waiter) => waiter,
                _ => panic!("one unit is held throughout"),
            };
            limit.prefer(&waiter, &NoStore);
            if let Some(units) = limit.unprefer(&waiter) {
                give_back(units);
            }
            match limit.cancel(&waiter, &NoStore) {
                Some(Outcome::Granted(Grant::Batch(units))) => give_back(units),
                None => {}
                other => panic!("unexpected {other:?}"),
            }
        },
        |limit, batch| {
            let single = spawn_with(limit, move |limit| wait_forever(&limit));
            limit.release(&NoStore); // one of the main thread's two
            batch.join().unwrap();
            assert_eq!(single.join().unwrap(), Outcome::Granted(Grant::Slot));
            assert_eq!(limit.alive(), 2);
            assert_eq!((limit.waiting(), limit.set_aside()), (0, 0));
        },
    );
}

// --- normal mode: returned items are stored, waiters woken to compete ---

/// Idle items, as a pool's shards keep them: the store a woken waiter
/// competes for, and that a running thread takes from without the queue.
#[derive(Default)]
struct Shelf(Mutex<Vec<u32>>);

impl Store<u32> for Shelf {
    fn take(&self) -> Option<u32> {
        self.0.lock().unwrap().pop()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Who holds the one item: asserts it is never held by two at once.
#[derive(Default)]
struct Holders(AtomicUsize);

impl Holders {
    fn took(&self) {
        assert_eq!(self.0.fetch_add(1, Ordering::SeqCst), 0, "held by two");
    }

    fn gave(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Shared {
    limit: Limit<u32>,
    shelf: Shelf,
    holders: Holders,
}

/// A bound of one, in normal mode, its item held by the main thread.
fn normal_mode_one_out() -> Arc<Shared> {
    let shared = Shared {
        limit: Limit::new(1).handing_off_after(Duration::MAX),
        shelf: Shelf::default(),
        holders: Holders::default(),
    };
    assert!(shared.limit.try_reserve());
    shared.holders.took();
    Arc::new(shared)
}

/// As `Pool::put` does: offer the item, store it if no waiter took it,
/// then serve (wake) the waiters.
fn put(shared: &Shared, item: u32) {
    shared.holders.gave();
    match shared.limit.offer(item, &shared.shelf) {
        Offered::Taken => {}
        Offered::Kept(item) => {
            shared.shelf.0.lock().unwrap().push(item);
            shared.limit.serve_from(&shared.shelf);
        }
        Offered::Surplus(_) => unreachable!("the bound never shrinks here"),
    }
}

/// As `Pool::get` with a deadline (`timed`: under loom it has always
/// passed) or without: an idle item if there is one (barging), else a
/// place in the queue; woken, it settles (takes what is free or waits
/// again in its place); a timed-out wait withdraws and keeps what it was
/// granted. The item, if it got it.
fn get(shared: &Shared, timed: bool) -> Option<u32> {
    let (limit, shelf) = (&shared.limit, &shared.shelf);
    let got = match shelf.take() {
        Some(item) => Some(item),
        None => match limit.enqueue(shelf) {
            Enqueued::Ready(Grant::Item(item)) => Some(item),
            Enqueued::Queued(waiter) => loop {
                let deadline = timed.then(Instant::now);
                if !waiter.park(deadline) {
                    match limit.cancel(&waiter, shelf) {
                        Some(Outcome::Granted(Grant::Item(item))) => break Some(item),
                        None => break None,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                match limit.settle(&waiter, shelf) {
                    Settled::Decided(Outcome::Granted(Grant::Item(item))) => break Some(item),
                    Settled::Lost => {}
                    other => panic!("unexpected {other:?}"),
                }
            },
            _ => panic!("the one unit is charged: no slot, no close"),
        },
    };
    if got.is_some() {
        shared.holders.took();
    }
    got
}

/// A waiter is woken by a put; a running thread takes the item first (it
/// asked at once) and puts it back: the waiter, having lost, waits again
/// and is woken by that second put. It ends with the item, which no two
/// ever held at once.
#[test]
fn a_woken_waiter_that_loses_is_woken_by_the_next_put() {
    check(Preemptions(3), || {
        let shared = normal_mode_one_out();
        let waiter = spawn_with(&shared, |shared| get(&shared, false));
        put(&shared, 7);
        // Barging: the running thread asks again at once.
        if let Some(item) = shared.shelf.take() {
            shared.holders.took();
            put(&shared, item);
        }
        assert_eq!(waiter.join().unwrap(), Some(7));
        assert_eq!(shared.limit.waiting(), 0);
        assert!(shared.shelf.0.lock().unwrap().is_empty());
    });
}

/// Two waiters, one timed: the put wakes the first in line. A timed waiter
/// that times out as it is woken loses nothing (it never held the item)
/// and passes its wake-up on; one that won gives the item back. Either
/// way the other waiter ends with the item.
#[test]
fn a_waiter_timing_out_as_it_is_woken_loses_nothing() {
    check(Preemptions(2), || {
        let shared = normal_mode_one_out();
        let timed = spawn_with(&shared, |shared| {
            if let Some(item) = get(&shared, true) {
                put(&shared, item);
            }
        });
        let patient = spawn_with(&shared, |shared| get(&shared, false));
        put(&shared, 7);
        timed.join().unwrap();
        assert_eq!(patient.join().unwrap(), Some(7));
        assert_eq!(shared.limit.waiting(), 0);
        assert!(shared.shelf.0.lock().unwrap().is_empty());
    });
}

/// Hand-off mode (the waiter has starved): the put grants the item to the
/// waiter, and the running thread that asks at once finds nothing.
#[test]
fn hand_off_mode_grants_to_the_waiter_and_nothing_is_barged() {
    check(Exhaustive, || {
        let shared = Arc::new(Shared {
            limit: handing_off(1),
            shelf: Shelf::default(),
            holders: Holders::default(),
        });
        assert!(shared.limit.try_reserve());
        shared.holders.took();
        let waiter = spawn_with(&shared, |shared| get(&shared, false));
        while shared.limit.waiting() == 0 {
            thread::yield_now();
        }
        put(&shared, 7);
        assert_eq!(shared.shelf.take(), None, "granted, not stored");
        assert_eq!(waiter.join().unwrap(), Some(7));
        assert_eq!(shared.limit.waiting(), 0);
    });
}
