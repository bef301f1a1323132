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
//!   class balances.

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
