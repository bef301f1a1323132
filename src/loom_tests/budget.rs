//! The idle byte budget shared by several pools (`budget.rs`), alone and
//! through two pools that share it.
//!
//! For every interleaving within the bound these models prove:
//! - `used` never exceeds the limit: no value any thread can read is above
//!   it, and two charges that do not fit together never both succeed;
//! - every charge is ended by exactly one refund: once the threads are
//!   joined, `used` equals the weight of the objects idle in the pools;
//! - with credits (charged ahead per thread group): the same, and once the
//!   other thread is done, credit left in its group does not refuse a
//!   charge that fits what is held.

use loom::sync::Arc;
use loom::thread;

use super::Bound::{Exhaustive, Preemptions};
use super::{check, spawn_with};
use crate::budget::IdleBudget;
use crate::pool::{Charge, Config, Hooks, Pool};

/// Charges `weight`, observes, refunds; reports whether it fit.
fn charge_and_refund(budget: &IdleBudget, weight: usize) -> bool {
    let fit = budget.try_charge(weight, crate::shards::current().index);
    assert!(budget.used() <= budget.limit());
    if fit {
        budget.uncharge(weight, crate::shards::current().index);
    }
    fit
}

/// The end of a model with credits, its other threads joined: exactly
/// `held` is used, and the rest of the limit fits from the main thread's
/// group whatever credit the others left in theirs; then nothing more fits.
fn used_is_held_and_the_rest_fits(budget: &IdleBudget, held: usize) {
    assert_eq!(budget.used(), held);
    let home = crate::shards::current().index;
    assert!(
        budget.try_charge(budget.limit() - held, home),
        "credit elsewhere taken back"
    );
    assert_eq!(budget.used(), budget.limit());
    assert!(!budget.try_charge(1, home));
}

/// Two charges of 6 and 5 against a limit of 10, each refunded, and an
/// observer: never more than 10 used, and not both at once.
#[test]
fn charges_never_exceed_the_limit() {
    check(Exhaustive, || {
        let budget = Arc::new(IdleBudget::new(10));
        let six = spawn_with(&budget, move |budget| charge_and_refund(&budget, 6));
        let observer = spawn_with(&budget, move |budget| assert!(budget.used() <= 10));
        let five = budget.try_charge(5, crate::shards::current().index);
        six.join().unwrap();
        observer.join().unwrap();
        assert_eq!(budget.used(), if five { 5 } else { 0 });
        // Held charges that do not fit together: the 5 stays, so 6 fails.
        if five {
            assert!(!budget.try_charge(6, crate::shards::current().index));
        }
    });
}

/// Two threads over a budget of 10 whose credits are charged 3 at a time:
/// one charges and refunds 4 twice (its refunds can pass two chunks and
/// give back), the main thread holds 5 if it fits. Every reading is within
/// the limit; at the end exactly what is held is used, and the rest fits
/// again, whatever credit the other thread left in its group.
#[test]
fn credits_never_let_the_idle_weight_pass_the_limit() {
    check(Preemptions(3), || {
        let budget = Arc::new(IdleBudget::with_chunk(10, 3));
        let four = spawn_with(&budget, move |budget| {
            charge_and_refund(&budget, 4);
            charge_and_refund(&budget, 4);
        });
        let held = budget.try_charge(5, crate::shards::current().index);
        assert!(budget.used() <= 10);
        four.join().unwrap();
        used_is_held_and_the_rest_fits(&budget, if held { 5 } else { 0 });
    });
}

/// Credits with the weight actually idle tracked beside the budget (a
/// ghost count, raised after a charge succeeds and lowered before its
/// refund), and a refund landing in another group than its charge, as in
/// the pools (a put on one thread charges its group, a get on another
/// refunds to that one's). Over a budget of 10 charged 3 at a time: one
/// thread charges 4 and leaves it idle for whoever takes it, then charges
/// and refunds 3; a second takes the 4 if it is idle yet (refunding to its
/// own group) and then holds 5 if it fits; the main thread holds 6 if it
/// fits. The idle weight never passes the limit (the earlier models only
/// assert `used() <= limit`, which holds by construction whatever the
/// credits do); at the end exactly what is held is used, and the rest fits.
#[test]
fn credits_keep_the_idle_weight_within_the_limit_across_groups() {
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

    /// Charges `weight` from the calling thread's group; if it fits, the
    /// idle weight with it must be within the limit.
    fn hold(budget: &IdleBudget, idle: &AtomicUsize, weight: usize) -> bool {
        let fit = budget.try_charge(weight, crate::shards::current().index);
        if fit {
            let now = idle.fetch_add(weight, SeqCst) + weight;
            assert!(now <= budget.limit(), "idle weight {now} past the limit");
        }
        fit
    }

    /// Ends a held `weight`, refunding to the calling thread's group.
    fn let_go(budget: &IdleBudget, idle: &AtomicUsize, weight: usize) {
        idle.fetch_sub(weight, SeqCst);
        budget.uncharge(weight, crate::shards::current().index);
    }

    check(Preemptions(3), || {
        let budget = Arc::new(IdleBudget::with_chunk(10, 3));
        let idle = Arc::new(AtomicUsize::new(0));
        let four_idle = Arc::new(AtomicBool::new(false));
        let putter = {
            let (budget, idle, four_idle) = (budget.clone(), idle.clone(), four_idle.clone());
            thread::spawn(move || {
                if hold(&budget, &idle, 4) {
                    four_idle.store(true, SeqCst);
                }
                if hold(&budget, &idle, 3) {
                    let_go(&budget, &idle, 3);
                }
            })
        };
        let taker = {
            let (budget, idle, four_idle) = (budget.clone(), idle.clone(), four_idle.clone());
            thread::spawn(move || {
                if four_idle.swap(false, SeqCst) {
                    let_go(&budget, &idle, 4);
                }
                hold(&budget, &idle, 5)
            })
        };
        hold(&budget, &idle, 6);
        putter.join().unwrap();
        taker.join().unwrap();
        if four_idle.swap(false, SeqCst) {
            let_go(&budget, &idle, 4);
        }
        used_is_held_and_the_rest_fits(&budget, idle.load(SeqCst));
    });
}

struct Plain;

impl Hooks<usize> for Plain {
    type Error = ();
    fn create(&mut self) -> Result<usize, ()> {
        Ok(0)
    }
    fn identity(&self, item: &usize) -> usize {
        *item
    }
    fn duplicate(&mut self, item: &usize) -> usize {
        *item
    }
}

/// Two pools share a budget with room for one idle object: each thread
/// puts one object back into its own pool while a third thread takes one
/// out of the first. Exactly the idle objects are charged, never more than
/// the budget allows, and the ones that did not fit were dropped.
#[test]
fn pools_sharing_a_budget_charge_exactly_their_idle_objects() {
    check(Preemptions(4), || {
        let budget = Arc::new(IdleBudget::new(1));
        let pools: Vec<_> = (0..2)
            .map(|_| {
                Arc::new(
                    Pool::new(Config {
                        max_idle: Some(1),
                        shards: Some(1),
                        charge: Some(Charge {
                            budget: Arc::clone(&budget),
                            weight: 1,
                        }),
                        ..Config::default()
                    })
                    .unwrap(),
                )
            })
            .collect();
        let putters: Vec<_> = pools
            .iter()
            .map(|pool| {
                let pool = Arc::clone(pool);
                thread::spawn(move || {
                    let item = pool.get(&mut Plain, None).unwrap();
                    pool.put(&mut Plain, item).unwrap();
                })
            })
            .collect();
        let taken = pools[0].get(&mut Plain, None).unwrap();
        assert!(budget.used() <= 1);
        for p in putters {
            p.join().unwrap();
        }
        let idle: usize = pools.iter().map(|p| p.idle()).sum();
        assert_eq!(budget.used(), idle, "charged exactly the idle objects");
        assert!(idle <= 1);
        pools[0].put(&mut Plain, taken).unwrap();
        let idle: usize = pools.iter().map(|p| p.idle()).sum();
        assert_eq!(budget.used(), idle);
        assert!(idle <= 1);
        // Every object is idle or was dropped for want of budget (or room).
        for s in pools.iter().map(|p| p.stats()) {
            assert_eq!(s.in_use, 0);
            assert_eq!(s.destroyed, s.dropped);
            assert_eq!(s.created, s.destroyed + s.idle, "{s:?}");
        }
    });
}
