//! The layered pool's protocol itself (`tiered.rs`), as the Python
//! `TieredPool` and `BlockPool` both run it: a class pool is built on first
//! use, a checked family records every object out with its origin, and an
//! object that comes back at another class's size moves there.
//!
//! For every interleaving within the bound these models prove:
//! - `close` racing a get and a put that moves the object into a class pool
//!   the put builds strands nothing: after both, nothing is idle, every
//!   object made was destroyed exactly once, and every class balances;
//! - of two racing puts of one object (one at its class's size, one at
//!   another's, which would move it), exactly one is accepted: the object
//!   is idle once, in the class the winner's size files it in, and every
//!   class balances;
//! - two gets racing for one idle object of a larger class (`take_larger_from`,
//!   issue 13) hand it to one of them only: the other takes a new object
//!   (of its class, or of the larger one if it lost the race after looking;
//!   the idle one is always taken),
//!   both come back to the class that served them, and every class balances.

use std::cell::{Cell, RefCell};

use loom::sync::Arc;
use loom::thread;

use super::Bound::{Exhaustive, Preemptions};
use super::{check, spawn_with};
use crate::classes::SizeClasses;
use crate::pool::{Config, GetError, Hooks, PutError};
use crate::tiered::{Filing, Tiered};

/// One thread's hooks: objects are numbers unique to the thread (`base +
/// n`), made and destroyed ones are recorded.
struct Tally {
    next: Cell<usize>,
    created: RefCell<Vec<usize>>,
    destroyed: RefCell<Vec<usize>>,
}

impl Tally {
    fn new(base: usize) -> Self {
        Tally {
            next: Cell::new(base),
            created: RefCell::default(),
            destroyed: RefCell::default(),
        }
    }

    fn hooks<'a>(&'a self) -> impl Fn(usize) -> Calls<'a> {
        move |_| Calls(self)
    }
}

struct Calls<'a>(&'a Tally);

impl Hooks<usize> for Calls<'_> {
    type Error = ();
    fn create(&mut self) -> Result<usize, ()> {
        let item = self.0.next.get() + 1;
        self.0.next.set(item);
        self.0.created.borrow_mut().push(item);
        Ok(item)
    }
    fn destroy(&mut self, item: usize) {
        self.0.destroyed.borrow_mut().push(item);
    }
    fn identity(&self, item: &usize) -> usize {
        *item
    }
    fn duplicate(&mut self, item: &usize) -> usize {
        *item
    }
}

/// Classes of 8 and 32, checked, one shard each.
fn family() -> Arc<Tiered<usize>> {
    let classes = SizeClasses::new(vec![8, 32], "tiers").unwrap();
    Arc::new(
        Tiered::new(classes, Filing::Floor, true, |_| Config {
            max_idle: Some(2),
            shards: Some(1),
            ..Config::default()
        })
        .unwrap(),
    )
}

fn assert_every_class_balances(t: &Tiered<usize>) {
    for class in 0..t.classes().len() {
        let s = t.class_stats(class);
        assert_eq!(s.created, s.destroyed + s.idle + s.in_use, "{class}: {s:?}");
    }
    let s = t.stats();
    assert_eq!(s.created, s.destroyed + s.idle + s.in_use, "{s:?}");
}

/// A user takes an object from class 8 (building its pool) and returns it
/// grown to 32, so it moves into class 32, whose pool the put builds, while
/// the main thread closes the family.
#[test]
fn close_racing_a_get_and_a_moving_put_strands_nothing() {
    check(Preemptions(3), || {
        let t = family();
        let user = spawn_with(&t, move |t| {
            let mine = Tally::new(100);
            match t.get(8, mine.hooks()) {
                Ok((item, _)) => {
                    t.put(item, 32, mine.hooks()).unwrap();
                }
                Err(e) => assert_eq!(e, GetError::Closed),
            }
            (mine.created.take(), mine.destroyed.take())
        });
        let main = Tally::new(0);
        t.close(main.hooks());
        let (created, mut destroyed) = user.join().unwrap();
        destroyed.extend(main.destroyed.take());
        destroyed.sort_unstable();
        assert_eq!(destroyed, created, "every object destroyed exactly once");
        assert_eq!(t.idle(), 0, "an object stayed idle after close");
        assert_eq!(t.outstanding(), Some(0));
        let s = t.stats();
        assert_eq!(
            (s.created, s.destroyed),
            (created.len() as u64, created.len() as u64)
        );
        assert_every_class_balances(&t);
    });
}

/// One object out of class 8 is put back twice at once: at 8 by the main
/// thread, and grown to 32 by another. Exactly one put is accepted.
#[test]
fn racing_puts_of_one_object_are_accepted_once() {
    check(Exhaustive, || {
        let t = family();
        let main = Tally::new(0);
        let (item, _) = t.get(8, main.hooks()).unwrap();
        let other = {
            let t = Arc::clone(&t);
            thread::spawn(move || match t.put(item, 32, Tally::new(100).hooks()) {
                Ok(class) => Some(class),
                Err(e) => {
                    assert_eq!(e, PutError::NotOut { index: 0 });
                    None
                }
            })
        };
        let mine = t.put(item, 8, main.hooks());
        let theirs = other.join().unwrap();
        match (mine, theirs) {
            (Ok(Some(0)), None) => assert_eq!(t.class_stats(0).idle, 1),
            (Err(PutError::NotOut { index: 0 }), Some(Some(1))) => {
                assert_eq!(t.class_stats(1).idle, 1);
                assert_eq!(t.moved(), 1);
            }
            other => panic!("not exactly one put accepted: {other:?}"),
        }
        assert_eq!(t.idle(), 1);
        assert_eq!(t.outstanding(), Some(0));
        assert!(main.destroyed.borrow().is_empty());
        assert_every_class_balances(&t);
    });
}

/// Issue 13: one idle object in class 32, and two threads asking for 8 in a
/// family whose class 8 may take a larger idle object. Each gets its own
/// object; whichever way the race goes, both come back where they belong.
#[test]
fn racing_gets_take_a_larger_idle_object_once() {
    check(Exhaustive, || {
        let t = Arc::new(
            Arc::try_unwrap(family())
                .unwrap_or_else(|_| unreachable!())
                .take_larger_from(0),
        );
        let main = Tally::new(0);
        let (idle, _) = t.get(32, main.hooks()).unwrap();
        t.put(idle, 32, main.hooks()).unwrap();
        let other = spawn_with(&t, |t| {
            let theirs = Tally::new(100);
            let got = t.get(8, theirs.hooks()).unwrap();
            (got, theirs.created.take())
        });
        let mine = t.get(8, main.hooks()).unwrap();
        let (theirs, created) = other.join().unwrap();
        assert_ne!(mine.0, theirs.0, "one object handed to two holders");
        // Nothing else takes it, so one of them always does; the other made
        // one new object.
        assert!(
            mine.0 == idle || theirs.0 == idle,
            "the idle object passed over"
        );
        assert_eq!(created.len() + main.created.borrow().len(), 2);
        for (item, class) in [mine, theirs] {
            let size = t.classes().size(class.unwrap());
            assert_eq!(t.put(item, size, main.hooks()).unwrap(), class);
        }
        assert_eq!(t.outstanding(), Some(0));
        assert_eq!(t.moved(), 0);
        assert_every_class_balances(&t);
    });
}
