//! The block pool's close (`blocks.rs` over `tiered.rs`): a class pool is
//! built on first use, so `close` can only close the class pools it finds,
//! and a `put` closes a class pool that `close` missed. `tiered` has the
//! models of the protocol itself; this one runs it as `BlockPool` does.
//!
//! For every interleaving within the bound: a get and put of a block racing
//! `close` leave nothing idle after both, and the block is freed (the idle
//! byte count is back to zero).

use loom::sync::Arc;
use loom::thread;

use super::check;
use super::Bound::{Exhaustive, Preemptions};
use crate::blocks::{BlockConfig, BlockError, BlockPool, InPlace};

/// A block is taken from a class used for the first time (so its pool is
/// built now) and put back, while the main thread closes the block pool.
#[test]
fn close_racing_first_get_and_put_strands_nothing() {
    check(Exhaustive, || {
        let pool = Arc::new(
            BlockPool::new(BlockConfig {
                classes: Some(vec![(64, Some(2))]),
                shards: Some(1),
                ..BlockConfig::default()
            })
            .unwrap(),
        );
        let user = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || match pool.get(64, false, &InPlace) {
                Ok(block) => pool.put(block, &InPlace),
                Err(e) => assert_eq!(e, BlockError::Closed),
            })
        };
        pool.close(&InPlace);
        user.join().unwrap();
        assert_eq!(pool.idle_blocks(), 0, "a block stayed idle after close");
        let s = pool.stats();
        assert_eq!(s.bytes_idle, 0);
        assert_eq!(s.totals.created, s.totals.destroyed);
    });
}

/// The spare slots (`blocks::spares`): an offer, a take and a close race.
/// Every handle comes out exactly once (to the offerer refused, the taker,
/// a discard, or the close), and nothing is left in a slot after all three.
#[test]
fn spares_racing_offer_take_and_close_lose_and_duplicate_nothing() {
    use std::ptr::NonNull;

    use crate::blocks::spares::{Spares, Verdict};
    use loom::sync::Mutex;

    check(Preemptions(3), || {
        // Two distinct addresses as handles (never dereferenced).
        let handles: [NonNull<u8>; 2] = [NonNull::dangling(), NonNull::dangling()];
        let handles = [
            handles[0],
            NonNull::new(handles[1].as_ptr().wrapping_add(1)).unwrap(),
        ];
        let spares = Arc::new(Spares::<u8>::default());
        spares.offer(handles[0]).unwrap();
        let out: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
        let record = |out: &Mutex<Vec<usize>>, h: NonNull<u8>| {
            out.lock().unwrap().push(h.as_ptr() as usize);
        };
        let offerer = {
            let (spares, out) = (Arc::clone(&spares), Arc::clone(&out));
            thread::spawn(move || {
                if let Err(h) = spares.offer(handles[1]) {
                    record(&out, h);
                }
            })
        };
        let taker = {
            let (spares, out) = (Arc::clone(&spares), Arc::clone(&out));
            thread::spawn(move || {
                let mut discarded = Vec::new();
                // Keep the first handle (someone holds it), reuse the other.
                let judge = |h: NonNull<u8>| {
                    if h == handles[0] {
                        Verdict::Keep
                    } else {
                        Verdict::Reuse
                    }
                };
                if let Some(h) = spares.take(judge, |h| discarded.push(h)) {
                    record(&out, h);
                }
                for h in discarded {
                    record(&out, h);
                }
            })
        };
        spares.close(|h| record(&out, h));
        offerer.join().unwrap();
        taker.join().unwrap();
        let mut seen = out.lock().unwrap().clone();
        seen.sort_unstable();
        let mut expected: Vec<usize> = handles.iter().map(|h| h.as_ptr() as usize).collect();
        expected.sort_unstable();
        assert_eq!(seen, expected, "a handle lost or handed out twice");
        assert_eq!(
            spares.take(|_| Verdict::Reuse, |_| unreachable!()),
            None,
            "a handle stayed after close"
        );
    });
}
