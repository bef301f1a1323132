//! The `max_size` bound and its waiters (`limit.rs`), on its own; the
//! models in `pool` drive it through a bounded pool.
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
//! - the gate admits one thread at a time (a loom cell checks it), is
//!   re-entrant, and hands over on `leave` without a lost wake-up.

use std::time::Instant;

use loom::cell::UnsafeCell;
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::check;
use super::Bound::{Exhaustive, Preemptions};
use crate::limit::{Enqueued, Grant, Limit, Outcome, Park};

/// A bound of one, already taken by the model's main thread.
fn full() -> Arc<Limit<u32>> {
    let limit = Arc::new(Limit::new(1));
    assert!(limit.try_reserve());
    limit
}

/// Queues (or takes what is free) and blocks until served; `Closed` if the
/// bound is closed. What `Pool::get` does with no deadline.
fn wait_forever(limit: &Limit<u32>) -> Outcome<u32> {
    match limit.enqueue(|| None) {
        Enqueued::Ready(grant) => Outcome::Granted(grant),
        Enqueued::Closed => Outcome::Closed,
        Enqueued::Queued(waiter) => {
            assert!(waiter.park(None));
            waiter.take().expect("decided when park returns")
        }
    }
}

/// As `Pool::wait` with a deadline: a timed-out wait withdraws, and keeps
/// what it was granted meanwhile (`None`: nothing).
fn wait_until_deadline(limit: &Limit<u32>) -> Option<Outcome<u32>> {
    match limit.enqueue(|| None) {
        Enqueued::Ready(grant) => Some(Outcome::Granted(grant)),
        Enqueued::Closed => Some(Outcome::Closed),
        Enqueued::Queued(waiter) => {
            if waiter.park(Some(Instant::now())) {
                waiter.take().or_else(|| limit.cancel(&waiter))
            } else {
                limit.cancel(&waiter)
            }
        }
    }
}

/// A release wakes a waiter (or lets it take the slot as it queues).
#[test]
fn release_wakes_a_waiter() {
    check(Exhaustive, || {
        let limit = full();
        let waiter = {
            let limit = Arc::clone(&limit);
            thread::spawn(move || wait_forever(&limit))
        };
        limit.release();
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
        let limit = full();
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiters: Vec<_> = (0..2)
            .map(|i| {
                let (limit, order) = (Arc::clone(&limit), Arc::clone(&order));
                thread::spawn(move || {
                    let queued = limit.enqueue(|| {
                        // Runs under the queue lock just before queueing.
                        order.lock().unwrap().push(i);
                        None
                    });
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
        assert_eq!(limit.offer(7), Ok(()));
        limit.release();
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
        assert_eq!(limit.offer(8), Err(8), "nobody waits any more");
    });
}

/// A waiter times out and withdraws while the slot is released: the slot
/// is the waiter's or the bound's, never lost and never counted twice.
#[test]
fn timeout_racing_release_never_loses_the_slot() {
    check(Exhaustive, || {
        let limit = full();
        let waiter = {
            let limit = Arc::clone(&limit);
            thread::spawn(move || wait_until_deadline(&limit))
        };
        limit.release();
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
    check(Exhaustive, || {
        let limit = full();
        let waiter = {
            let limit = Arc::clone(&limit);
            thread::spawn(move || wait_until_deadline(&limit))
        };
        let kept = limit.offer(7).err();
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
    check(Exhaustive, || {
        let limit = full();
        let waiter = {
            let limit = Arc::clone(&limit);
            thread::spawn(move || wait_forever(&limit))
        };
        limit.close();
        assert_eq!(waiter.join().unwrap(), Outcome::Closed);
        assert!(matches!(limit.enqueue(|| None), Enqueued::Closed));
        assert_eq!(limit.waiting(), 0);
    });
}

/// Two threads pass the gate, one re-entering it: never two inside at once
/// (the loom cell would report it), and nobody is left blocked.
#[test]
fn the_gate_admits_one_at_a_time() {
    check(Exhaustive, || {
        let limit: Arc<Limit<u32>> = Arc::new(Limit::new(1));
        let inside = Arc::new(UnsafeCell::new(0u32));
        let enter = |limit: &Limit<u32>, inside: &UnsafeCell<u32>, depth: usize| {
            for _ in 0..depth {
                assert!(limit.gate().park(None));
            }
            // SAFETY: the gate's exclusion is what loom checks here.
            inside.with_mut(|p| unsafe { *p += 1 });
            for _ in 0..depth {
                limit.gate().leave();
            }
        };
        let other = {
            let (limit, inside) = (Arc::clone(&limit), Arc::clone(&inside));
            thread::spawn(move || enter(&limit, &inside, 1))
        };
        enter(&limit, &inside, 2);
        other.join().unwrap();
        // SAFETY: every other thread has been joined.
        assert_eq!(inside.with(|p| unsafe { *p }), 2);
        // Free again: a timed park (which gives up at once under loom)
        // enters.
        assert!(limit.gate().park(Some(Instant::now())));
        limit.gate().leave();
    });
}
