//! The pool: sharded idle storage, an optional `max_size` bound with fair
//! waiting, an optional ledger of handed-out objects, expiry, and counters.
//!
//! Invariants (beyond those of the parts, stated in their modules):
//! - An object is in exactly one place: idle in a shard, granted to one
//!   waiter, handed out to one holder, or being created/destroyed by one
//!   thread. Every transition moves it, so nothing is duplicated or lost.
//! - In a bounded pool, every object that exists (and every creation under
//!   way) is charged to the [`Limit`]; discarding an object releases its
//!   charge after the `destroy` hook has run, so `max_size` also bounds the
//!   resources that objects hold.
//! - Hooks (user code) never run while a lock of the pool is held.
//! - Once quiescent, `created == destroyed + idle + in_use` (`idle`
//!   includes objects the limit sets aside for a waiting batch).
//! - The counters count what callers did: `hits + misses` the objects
//!   handed to callers, `puts` the objects callers gave back. Objects a
//!   failed `get_many` took and gave back count as neither.
//! - A batch (`get_many`) of a bounded pool is served by the limit all at
//!   once (see `limit`): it holds nothing while it waits, and then checks
//!   (expiry, reset on get, validate) and creates its objects without
//!   waiting again: a rejected object's charge is kept for its replacement.
//! - `close` marks the pool closed, fails current and future waits, and
//!   destroys the idle objects. Objects returned afterwards are destroyed:
//!   a put that stores an object then re-reads `closed` behind a `SeqCst`
//!   fence that pairs with one in `close`, so either `close` drains the
//!   object or the put sees the pool closed and destroys it.
//!
//! - With `min_size`, a thread that destroys objects below it creates
//!   replacements after the destroy, outside every lock, within `max_size`
//!   (see `sizing`).
//!
//! One concern a module: [`config`](Config) (settings), [`Hooks`] (the
//! caller's policy), `get` (one object out), `wait` (a full bounded pool),
//! `batch` (`get_many`, `put_many`), `put` (objects back), `idle` (idle
//! storage, stamps and expiry), `lifetime` (`max_lifetime`), `sizing`
//! (`min_size`, `resize`), `lifecycle` (prefill, trim, close, and what a
//! garbage collector needs). Each states its own invariants.

mod batch;
mod config;
mod error;
mod get;
mod hooks;
mod idle;
mod lifecycle;
mod lifetime;
mod put;
mod sizing;
mod wait;

use std::time::{Duration, Instant};

pub(crate) use config::refuse;
pub use config::{Charge, Config, ConfigError, ResetOn, MAX_IDLE_LIMIT, MAX_SHARDS};
pub use error::{GetError, NotOut, OpenError, PutError};
pub use hooks::Hooks;
pub use sizing::{Resized, Sizes};
pub use wait::Pending;

use crate::counters::{Counters, Event, Snapshot};
use crate::ledger::Ledger;
use crate::limit::{Limit, Store};
use crate::shards::Shards;
use crate::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use crate::sync::Mutex;
use lifetime::Lifetime;

/// `Pool::flags`: `close` was called.
const CLOSED: u8 = 1;
/// `Pool::flags`: objects have a `max_lifetime`, checked as they come back.
const AGES: u8 = 2;

/// A shard samples `in_use` for `max_in_use` once in this many hits.
const IN_USE_SAMPLE_EVERY: u64 = 64;

/// An idle object and when it became idle: nanoseconds since the pool's
/// epoch, or 0 when unstamped (only pools with an `idle_timeout` read the
/// clock, which costs more than the rest of a put).
pub struct Idle<T> {
    item: T,
    since: u64,
}

impl<T> Idle<T> {
    /// The object.
    pub fn item(&self) -> &T {
        &self.item
    }
}

/// Bytes an idle entry of `T` takes in a shard (without the queue's stamp).
#[cfg(feature = "python")]
pub(crate) fn idle_entry_size<T>() -> usize {
    std::mem::size_of::<Idle<T>>()
}

/// A thread-safe, sharded pool of `T` (see the module's invariants). The
/// caller's [`Hooks`] are passed to each call that may run them.
pub struct Pool<T> {
    shards: Shards<Idle<T>>,
    /// Boxed: `Limit` is cache-padded (128-byte aligned), and a `Pool` must
    /// fit in memory aligned like any other value (a Python object is only
    /// 16-byte aligned).
    limit: Option<Box<Limit<Idle<T>>>>,
    ledger: Option<Ledger<T>>,
    idle_timeout: Option<Duration>,
    reset_on: ResetOn,
    charge: Option<Charge>,
    epoch: Instant,
    /// [`CLOSED`], and [`AGES`] for a pool with a `max_lifetime`: one load
    /// tells a put whether it must take its slow path, so a pool without a
    /// lifetime pays nothing for the check.
    flags: AtomicU8,
    /// Whether idle objects can expire (`idle_timeout` or `max_lifetime`):
    /// one test on a get for both.
    ages: bool,
    max_in_use: AtomicU64,
    /// How many rejected idle objects a `get` goes through before it stops
    /// looking at idle objects (more than the pool can hold idle).
    max_rejects: usize,
    /// The fewest objects kept in existence (see `sizing`).
    min_size: AtomicUsize,
    /// Serializes `resize` calls, so that `min_size <= max_size` holds
    /// between them.
    resizing: Mutex<()>,
    /// `max_lifetime` and the creation times (see `lifetime`).
    lifetime: Option<Lifetime>,
}

enum Source<T> {
    Idle(Idle<T>),
    Slot,
}

/// The first step of a `get` that must not block (an event loop's): an
/// object now, or a place in the queue of a full bounded pool.
pub enum Step<T> {
    /// An object, at once.
    Ready(T),
    /// Queued: wait until the waiter is decided (see
    /// [`Waiter::on_decided`](crate::Waiter::on_decided)), then
    /// [`Pool::finish_wait`], or give up with
    /// [`Pool::abandon_wait`]. One of the two must follow.
    Wait(Pending<T>),
}

/// The idle storage as the limit draws from it: a thread's home shard
/// first.
struct Idles<'a, T> {
    pool: &'a Pool<T>,
    home: usize,
}

impl<T: Send> Store<Idle<T>> for Idles<'_, T> {
    fn take(&self) -> Option<Idle<T>> {
        self.pool.take_idle(self.home)
    }

    fn count(&self) -> usize {
        self.pool.shards.len()
    }
}

/// Where [`Pool::file`] put an object.
enum Filed {
    /// Idle in a shard.
    Shelved,
    /// Granted to a waiter.
    Handed,
    /// Destroyed as surplus.
    Discarded,
}

impl<T: Send> Pool<T> {
    /// Checks a configuration without building anything, and returns the
    /// effective `(max_idle, shards)` it would get.
    pub fn check(config: &Config) -> Result<(usize, usize), ConfigError> {
        config::resolve(config)
    }

    /// Builds a pool, or names the setting of `config` it refuses.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let (max_idle, shards) = config::resolve(&config)?;
        let checked = config.checked || config.max_size.is_some();
        Ok(Pool {
            shards: Shards::new(shards, max_idle),
            limit: config
                .max_size
                .map(|max| Box::new(Limit::with_max_waiting(max, config.max_waiting))),
            ledger: checked.then(|| Ledger::new(shards)),
            idle_timeout: config.idle_timeout,
            reset_on: config.reset_on,
            charge: config.charge,
            epoch: Instant::now(),
            flags: AtomicU8::new(if config.max_lifetime.is_some() {
                AGES
            } else {
                0
            }),
            ages: config.idle_timeout.is_some() || config.max_lifetime.is_some(),
            max_in_use: AtomicU64::new(0),
            max_rejects: max_idle + shards,
            min_size: AtomicUsize::new(config.min_size),
            resizing: Mutex::new(()),
            lifetime: config.max_lifetime.map(|max| Lifetime::new(max, shards)),
        })
    }

    /// The most objects kept idle.
    pub fn max_idle(&self) -> usize {
        self.shards.capacity()
    }

    /// The bound on objects in existence (`None`: unbounded).
    pub fn max_size(&self) -> Option<usize> {
        self.limit.as_ref().map(|limit| limit.max())
    }

    /// How many shards the idle storage has.
    pub fn shard_count(&self) -> usize {
        self.shards.count()
    }

    /// How long an object may stay idle (`None`: for ever).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// When objects are reset.
    pub fn reset_on(&self) -> ResetOn {
        self.reset_on
    }

    /// Whether the pool refuses objects it did not hand out.
    pub fn is_checked(&self) -> bool {
        self.ledger.is_some()
    }

    /// Whether [`Pool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.flags.load(Ordering::Acquire) & CLOSED != 0
    }

    /// The per-shard counter blocks, for merging across pools.
    pub(crate) fn counters(&self) -> impl Iterator<Item = &Counters> + Clone {
        self.shards.all_counters()
    }

    /// Whether the calling thread's home shard holds an idle object (a
    /// moment's reading): cheaper than [`Pool::idle`], which reads every
    /// shard.
    pub(crate) fn idle_at_home(&self) -> bool {
        self.shards.holds(self.shards.home())
    }

    /// Idle objects right now (with those set aside for a waiting batch).
    pub fn idle(&self) -> usize {
        self.shards.len() + self.set_aside()
    }

    fn set_aside(&self) -> usize {
        self.limit.as_ref().map_or(0, |limit| limit.set_aside())
    }

    /// Callers waiting for a bounded pool now (threads and tasks).
    pub fn waiting(&self) -> usize {
        self.limit.as_ref().map_or(0, |limit| limit.waiting())
    }

    #[inline]
    fn idles(&self, home: usize) -> Idles<'_, T> {
        Idles { pool: self, home }
    }

    /// Counters merged over the shards, with the gauges.
    ///
    /// `max_in_use` is a high-water mark sampled whenever the pool creates an
    /// object or starts waiting, on every 64th reuse in a shard, and when
    /// asked for stats: keeping it exact would put one counter shared by all
    /// threads on every get and put. A peak reached and left between samples
    /// (through reuse alone) can be missed.
    pub fn stats(&self) -> Snapshot {
        let mut s = Snapshot::merge(self.shards.all_counters());
        s.idle = self.idle() as u64;
        s.cancelled = self.limit.as_ref().map_or(0, |limit| limit.cancelled());
        s.waiting = self.waiting() as u64;
        s.rejected = self.limit.as_ref().map_or(0, |limit| limit.rejected());
        s.max_in_use = self.sample_in_use(s.in_use);
        s
    }

    /// [`Pool::stats`], then the high-water mark starts again from the
    /// current `in_use`: a scraper that asks each interval sees the peak of
    /// that interval (a peak reached between samples may be missed, as
    /// [`Pool::stats`] says).
    pub fn stats_reset_peak(&self) -> Snapshot {
        let s = self.stats();
        self.max_in_use.store(s.in_use, Ordering::Relaxed);
        s
    }

    /// The wait-time histogram of a bounded pool: counts per bucket of
    /// [`WAIT_BUCKETS`](crate::limit::WAIT_BUCKETS) (then `+Inf`), not
    /// cumulative, and the sum in seconds. `None` for an unbounded pool.
    pub fn wait_times(&self) -> Option<(Vec<u64>, f64)> {
        self.limit
            .as_ref()
            .map(|limit| limit.wait_times().snapshot())
    }

    /// The most callers that may wait at once, if capped.
    pub fn max_waiting(&self) -> Option<usize> {
        self.limit.as_ref().and_then(|limit| limit.max_waiting())
    }

    /// How long an object may live (`None`: for ever).
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.lifetime.as_ref().map(Lifetime::max)
    }

    fn sample_in_use(&self, in_use: u64) -> u64 {
        self.max_in_use
            .fetch_max(in_use, Ordering::Relaxed)
            .max(in_use)
    }

    fn note_in_use(&self) {
        let s = Snapshot::merge(self.shards.all_counters());
        self.sample_in_use(s.in_use);
    }

    /// Objects a checked pool has handed out and not had back.
    pub fn outstanding(&self) -> Option<usize> {
        self.ledger.as_ref().map(Ledger::len)
    }
}

// Built with std types; under loom only the models in `loom_tests` run.
#[cfg(all(test, not(loom)))]
mod tests;
