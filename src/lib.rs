//! shardpool: thread-safe, sharded pools with a plain-Rust core.
//!
//! The core knows nothing of Python. [`Pool`] is generic over the pooled
//! type and over [`Hooks`], the caller's factory/reset/validate/destroy
//! policy, so the same sharding, bounds and accounting serve the PyO3
//! binding (behind the `python` feature) and plain Rust users alike.
//!
//! The modules are private; what a Rust user needs is re-exported here.
//! Module map, one concept each (each states its invariants at its top):
//! - `counters`: per-thread event counters, merged when read ([`Snapshot`]).
//! - `shards`: bounded idle storage split into cache-padded shards, with a
//!   per-thread home shard and stealing.
//! - `limit`: the `max_size` bound and its fair (FIFO) queue of waiters
//!   ([`Limit`]); `pool` builds on it, and it can be used alone.
//! - `ledger`: which objects are currently handed out, for checked pools.
//! - `budget`: an idle byte budget shared by several pools ([`IdleBudget`]).
//! - `pool`: the pool that composes them ([`Pool`]).
//! - `classes` and `tiered`: size classes ([`SizeClasses`]), and one pool
//!   per class (the layered pool, [`Tiered`]).
//! - `memory` and `lease`: aligned blocks owned by Rust ([`OwnedBlock`]),
//!   and the export/release protocol of a block handed out ([`Leased`]).
//! - `blocks`: the byte-block pool ([`BlockPool`]); `calibration` and
//!   `buffers`: the pool of growable buffers that learns the sizes of
//!   recent use ([`BufferPool`]), and `buffer_lease`: the export/release
//!   protocol of a buffer handed out ([`LeasedBuffer`]).
//! - `sync`: the primitives the protocols are built from (std's and
//!   crossbeam's, or loom's instrumented ones under `--cfg loom`), and
//!   `FlagLock`, the lock of one flag that `ledger` and `lent` use.
//! - `sites`, `pauses` and `lent` (used by the binding only): where each
//!   item still out was acquired (`track=True`), the garbage collector's
//!   pause totals per generation (`GcMonitor`), and which objects the
//!   blocks on each thread hold, so that a discard from any thread ends
//!   them without a second give-back (`borrow()`).

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

/// `assert_stats!(pool, waits: 1, timeouts: 0, ...)` (tests and loom
/// models): those counters of `pool.stats()`, compared all at once.
#[cfg(test)]
macro_rules! assert_stats {
    ($pool:expr, $($field:ident: $value:expr),+ $(,)?) => {{
        let s = $pool.stats();
        assert_eq!(($(s.$field,)+), ($($value,)+), stringify!($($field),+));
    }};
}

mod blocks;
mod budget;
mod buffer_lease;
mod buffers;
mod calibration;
mod classes;
mod counters;
mod lease;
mod ledger;
// Used by the binding only; tested here with the rest of the core.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod lent;
mod limit;
mod memory;
// Used by the binding only; tested here with the rest of the core.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod pauses;
mod pool;
mod shards;
// Used by the binding only, as `pauses`.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod sites;
mod sync;
mod tiered;

#[cfg(all(test, loom))]
mod loom_tests;

pub use blocks::spares::{ShardedSpares, Spares, Verdict};
pub use blocks::{
    BlockConfig, BlockError, BlockPool, BlockStats, ClassStats, InPlace, Offload, ZeroMode, POISON,
};
pub use budget::IdleBudget;
pub use buffer_lease::{BufferError, LeasedBuffer};
pub use buffers::BufferPool;
pub use classes::SizeClasses;
pub use counters::{Event, Snapshot};
pub use lease::{LeaseError, Leased};
pub use limit::{
    note_fork, park_in_slices, Enqueued, Grant, Limit, NoStore, Notify, Offered, Outcome, Park,
    ResizeError, Settled, Store, Turns, Units, WaitTimes, Waiter, HANDOFF_AFTER, PATIENCE,
    WAIT_BUCKETS,
};
pub use memory::{AllocError, OwnedBlock};
pub use pool::{
    Charge, Config, ConfigError, GetError, Hooks, Idle, NotOut, OpenError, Pending, Pool, PutError,
    ResetOn, Resized, Sizes, Step, MAX_IDLE_LIMIT, MAX_SHARDS,
};
pub use tiered::{Filing, Tiered};

#[cfg(feature = "python")]
mod python;
