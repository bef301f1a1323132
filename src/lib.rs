//! shardpool: thread-safe, sharded pools with a plain-Rust core.
//!
//! The core knows nothing of Python. [`Pool`] is generic over the pooled
//! type and over [`Hooks`], the caller's factory/reset/validate/destroy
//! policy, so the same sharding, bounds and accounting serve the PyO3
//! binding (behind the `python` feature) and plain Rust users alike.
//!
//! Module map, one concept each:
//! - [`counters`]: per-shard event counters, merged when read.
//! - [`shards`]: bounded idle storage split into cache-padded shards, with a
//!   per-thread home shard and stealing.
//! - [`limit`]: the `max_size` bound and its fair (FIFO) queue of waiters.
//! - [`ledger`]: which objects are currently handed out, for checked pools.
//! - [`budget`]: an idle byte budget shared by several pools.
//! - [`pool`]: the pool that composes them.
//! - [`classes`] and [`tiered`]: size classes, and one pool per class (the
//!   layered pool).
//! - [`memory`] and [`lease`]: aligned blocks owned by Rust, and the
//!   export/release protocol of a block handed out.
//! - [`blocks`]: the byte-block pool; [`calibration`] and [`buffers`]: the pool
//!   of growable buffers that learns the sizes of recent use, and
//!   [`buffer_lease`]: the export/release protocol of a buffer handed out.

pub mod blocks;
pub mod budget;
pub mod buffer_lease;
pub mod buffers;
pub mod calibration;
pub mod classes;
pub mod counters;
pub mod lease;
pub mod ledger;
pub mod limit;
pub mod memory;
pub mod pool;
pub mod shards;
mod sync;
pub mod tiered;

#[cfg(all(test, loom))]
mod loom_tests;

pub use budget::IdleBudget;
pub use counters::{Event, Snapshot};
pub use limit::{Grant, Waiter};
pub use pool::{Charge, Config, GetError, Hooks, Idle, Pool, PutError, ResetOn, Step};

#[cfg(feature = "python")]
mod python;
