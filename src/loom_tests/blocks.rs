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
use super::Bound::Exhaustive;
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
