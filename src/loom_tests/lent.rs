//! The marks of discarded objects on the lists of lent ones (`lent.rs`):
//! a discard from another thread racing the exit of the block that holds
//! the object, with the pool's check-in (a checked pool's ledger) as one
//! compare-and-swap that both the exit's put and the discard's destroy must
//! win.
//!
//! For every interleaving: exactly one of them wins; the exit never
//! attempts a put that the ledger refuses (a block whose object was
//! discarded ends without giving it back); a refused discard unmarks
//! nothing it should not (two discards racing). The
//! first model failed on the protocol as first moved here (an exit
//! removed its entry before its put, so a discard in between found nothing
//! and destroyed the object): see `lent`'s invariants.

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

use super::check;
use super::Bound::{Exhaustive, Preemptions};
use crate::lent::{Key, Local, Registry};

const KEY: Key = Key { pool: 1, obj: 2 };

struct Shared {
    registry: Registry,
    /// The ledger's entry: whether the object is out.
    out: AtomicBool,
    destroyed: AtomicUsize,
    returned: AtomicUsize,
}

/// The object out, lent to a block on the main thread: its `Local` and
/// the block's entry id.
fn lent_to_a_block() -> (Arc<Shared>, Local, u64) {
    let shared = Arc::new(Shared {
        registry: Registry::default(),
        out: AtomicBool::new(true),
        destroyed: AtomicUsize::new(0),
        returned: AtomicUsize::new(0),
    });
    let local = Local::new();
    let id = local.lend(&shared.registry, KEY);
    (shared, local, id)
}

impl Shared {
    fn assert_destroyed_or_returned_once(&self) {
        let (destroyed, returned) = (self.destroyed.load(SeqCst), self.returned.load(SeqCst));
        assert_eq!(
            destroyed + returned,
            1,
            "destroyed {destroyed}, returned {returned}"
        );
    }
}

/// A `pause` that gives up at once: a discard refused while another
/// thread's block gives the object back.
fn never_wait() -> bool {
    false
}

/// A discard as the binding's: marks, then the pool's check-in; undone if
/// the pool refuses. Here refused at once while the block gives the object
/// back (the binding's waits: see the last model).
fn discard(shared: &Shared) {
    if let Ok(marks) = shared
        .registry
        .mark_discarded(&Local::new(), KEY, never_wait)
    {
        if shared
            .out
            .compare_exchange(true, false, SeqCst, SeqCst)
            .is_ok()
        {
            shared.destroyed.fetch_add(1, SeqCst);
        } else {
            marks.undo();
        }
    }
}

/// A block's exit as the binding's: nothing more if discarded, else the
/// put (the pool's check-in), which must not be refused.
fn exit(local: &Local, shared: &Shared, id: u64) {
    if let Some(returning) = local.exit(&shared.registry, KEY, id) {
        assert!(
            shared
                .out
                .compare_exchange(true, false, SeqCst, SeqCst)
                .is_ok(),
            "the exit gave back an object that was discarded"
        );
        shared.returned.fetch_add(1, SeqCst);
        returning.done(local);
    }
}

/// The main thread runs a block holding the object and exits it while
/// another thread discards the object.
#[test]
fn discard_racing_a_blocks_exit_destroys_or_returns_exactly_once() {
    check(Exhaustive, || {
        let (shared, local, id) = lent_to_a_block();
        let discarder = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || discard(&shared))
        };
        exit(&local, &shared, id);
        discarder.join().unwrap();
        shared.assert_destroyed_or_returned_once();
    });
}

/// Two discards of the object race the exit of the block that holds it:
/// the loser's refusal (its marks undone) never unmarks the winner's, and
/// the block gives the object back only if neither destroyed it.
#[test]
fn two_discards_racing_a_blocks_exit_destroy_or_return_exactly_once() {
    check(Preemptions(3), || {
        let (shared, local, id) = lent_to_a_block();
        let discarders = [0, 1].map(|_| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || discard(&shared))
        });
        exit(&local, &shared, id);
        for discarder in discarders {
            discarder.join().unwrap();
        }
        shared.assert_destroyed_or_returned_once();
    });
}

/// The main thread's block exits and puts the object back; another thread
/// gets it at once, in a block of its own, and discards it while the first
/// exit may not yet have recorded that its give-back is over (its key still
/// returning). The discard waits that out and succeeds: the new holder's
/// block is marked, the object destroyed once, and that block gives
/// nothing back. (Refusing at once, as before, refused this holder's own
/// discard: the free-threaded build showed it.)
#[test]
fn a_new_holders_discard_during_the_last_holders_exit_destroys_the_object() {
    check(Preemptions(3), || {
        let (shared, local, id) = lent_to_a_block();
        let holder = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                // The pool hands the object out once it is back.
                while shared
                    .out
                    .compare_exchange(false, true, SeqCst, SeqCst)
                    .is_err()
                {
                    thread::yield_now();
                }
                let local = Local::new();
                let id = local.lend(&shared.registry, KEY);
                let marks = shared.registry.mark_discarded(&local, KEY, || {
                    thread::yield_now();
                    true
                });
                assert!(marks.is_ok(), "the holder's discard was refused");
                assert!(
                    shared
                        .out
                        .compare_exchange(true, false, SeqCst, SeqCst)
                        .is_ok(),
                    "the pool refused the holder's discard"
                );
                shared.destroyed.fetch_add(1, SeqCst);
                assert!(
                    local.exit(&shared.registry, KEY, id).is_none(),
                    "a block whose object was discarded gave it back"
                );
            })
        };
        exit(&local, &shared, id);
        holder.join().unwrap();
        assert_eq!(shared.destroyed.load(SeqCst), 1);
        assert_eq!(shared.returned.load(SeqCst), 1);
    });
}

/// A block entered on the main thread exits on another (a generator
/// resumed by a thread pool) while a third thread discards the object:
/// the exit's removal of the entry and its record of the give-back, on the
/// entering thread's list, are one step under that list's lock, so the
/// discard finds the mark's target or the give-back, and the object is
/// destroyed or returned exactly once.
#[test]
fn discard_racing_an_exit_on_another_thread_destroys_or_returns_exactly_once() {
    check(Exhaustive, || {
        let (shared, _local, id) = lent_to_a_block();
        let exiter = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || exit(&Local::new(), &shared, id))
        };
        discard(&shared);
        exiter.join().unwrap();
        shared.assert_destroyed_or_returned_once();
    });
}
