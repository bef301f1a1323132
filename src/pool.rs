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

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::budget::IdleBudget;
use crate::counters::{Counters, Event, Snapshot, Tally};
use crate::ledger::Ledger;
use crate::limit::{Enqueued, Grant, Limit, Notify, Outcome, Park, Store, Turns, Units, Waiter};
use crate::shards::{default_shard_count, Shards};
use crate::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use crate::sync::Arc;

/// The most idle objects a pool may be configured to keep. Idle storage is
/// allocated up front (about 32 bytes a slot), so a typo such as `10**9`
/// must fail cleanly instead of exhausting memory.
pub const MAX_IDLE_LIMIT: usize = 1 << 24;

/// A shard samples `in_use` for `max_in_use` once in this many hits.
const IN_USE_SAMPLE_EVERY: u64 = 64;

/// The most shards a pool may be configured with.
pub const MAX_SHARDS: usize = 1024;

/// When an object is reset: as it comes back (idle objects hold no data), or
/// just before it is handed out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetOn {
    Put,
    Get,
}

/// How a pool is built. `max_idle` of `None` keeps `max_size` idle objects in
/// a bounded pool (at most [`Config::DEFAULT_BOUNDED_MAX_IDLE`]) and
/// [`Config::DEFAULT_MAX_IDLE`] otherwise.
#[derive(Clone, Debug)]
pub struct Config {
    pub max_idle: Option<usize>,
    pub max_size: Option<usize>,
    pub shards: Option<usize>,
    pub idle_timeout: Option<Duration>,
    pub reset_on: ResetOn,
    /// Track handed-out objects so that foreign and repeated returns are
    /// refused. Always on in a bounded pool.
    pub checked: bool,
    /// A budget that this pool's idle objects are charged against, shared
    /// with other pools (the byte cap of a block pool's size classes).
    pub charge: Option<Charge>,
}

/// What each idle object of a pool costs against a shared [`IdleBudget`].
#[derive(Clone, Debug)]
pub struct Charge {
    pub budget: Arc<IdleBudget>,
    pub weight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_idle: None,
            max_size: None,
            shards: None,
            idle_timeout: None,
            reset_on: ResetOn::Put,
            checked: false,
            charge: None,
        }
    }
}

impl Config {
    pub const DEFAULT_MAX_IDLE: usize = 1024;
    /// A bounded pool keeps up to `max_size` objects idle, but no more than
    /// this by default: idle storage is allocated up front.
    pub const DEFAULT_BOUNDED_MAX_IDLE: usize = 65_536;
}

/// A configuration the pool refuses, naming the setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

fn refuse(field: &'static str, message: String) -> ConfigError {
    ConfigError { field, message }
}

/// The caller's policy: how objects are made, cleaned, checked and disposed
/// of, and how a thread blocks. The pool decides *when* each runs.
pub trait Hooks<T> {
    type Error;
    /// Makes a new object.
    fn create(&mut self) -> Result<T, Self::Error>;
    /// Clears an object's state (a no-op if the policy has no reset).
    fn reset(&mut self, item: &T) -> Result<(), Self::Error>;
    /// Whether an idle object may be handed out again.
    fn validate(&mut self, item: &T) -> Result<bool, Self::Error>;
    /// Disposes of an object the pool no longer keeps. Cannot fail: report
    /// errors out of band.
    fn destroy(&mut self, item: T);
    /// Whether a returned (already reset) object is worth keeping idle; a
    /// `false` destroys it, counted as dropped. For policies that bound what
    /// they keep by more than count, such as a buffer's capacity.
    fn keep(&mut self, _item: &T) -> bool {
        true
    }
    /// A stable identity of the object (its address), for checked pools.
    fn identity(&self, item: &T) -> usize;
    /// A second reference to the same object, for checked pools: one goes to
    /// the holder, the pool keeps the other in its ledger.
    fn duplicate(&mut self, item: &T) -> T;
    /// Records `item` as handed out in a record the caller keeps across
    /// several pools (the ledger of a [`crate::tiered::Tiered`], whose class
    /// pools are unchecked), just before the pool counts it as handed out.
    /// `None` refuses it as out already: the pool drops this reference and
    /// fails the get with [`GetError::AlreadyOut`], as a checked pool does.
    /// Pools with a ledger of their own expect the default, which records
    /// nothing.
    #[inline(always)]
    fn record_out(&mut self, item: T) -> Option<T> {
        Some(item)
    }
    /// Blocks on `waiter` until it is served (`Ok(true)`) or `deadline`
    /// passes (`Ok(false)`). Override to block without holding a lock the
    /// caller holds, or to wake up for interrupts (an `Err` abandons the
    /// wait; the pool takes back whatever it was given meanwhile).
    fn park(&mut self, waiter: &dyn Park, deadline: Option<Instant>) -> Result<bool, Self::Error> {
        Ok(waiter.park(deadline))
    }
}

/// Why `get` gave no object.
#[derive(Debug, PartialEq, Eq)]
pub enum GetError<E> {
    /// A hook (factory, reset, validate, park) failed.
    Hook(E),
    /// A bounded pool stayed full until the timeout.
    Timeout,
    /// The pool is closed.
    Closed,
    /// The factory returned an object that is handed out already.
    AlreadyOut,
    /// `get_many` asked for more objects than the pool may ever hold.
    TooMany { requested: usize, max_size: usize },
}

/// Why `put` refused or failed.
#[derive(Debug, PartialEq, Eq)]
pub enum PutError<E> {
    /// A reset hook failed; the object was destroyed.
    Hook(E),
    /// A checked pool was given an object it has not handed out (foreign, or
    /// returned already). Nothing changed. For `put_many`, the position.
    NotOut { index: usize },
}

/// An idle object and when it became idle: nanoseconds since the pool's
/// epoch, or 0 when unstamped (only pools with an `idle_timeout` read the
/// clock, which costs more than the rest of a put).
pub struct Idle<T> {
    item: T,
    since: u64,
}

/// `d` in nanoseconds, or `u64::MAX` if it does not fit.
#[inline]
fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<T> Idle<T> {
    /// The object.
    pub fn item(&self) -> &T {
        &self.item
    }
}

/// Bytes an idle entry of `T` takes in a shard (without the queue's stamp).
pub fn idle_entry_size<T>() -> usize {
    std::mem::size_of::<Idle<T>>()
}

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
    closed: AtomicBool,
    max_in_use: AtomicU64,
    /// How many rejected idle objects a `get` goes through before it stops
    /// looking at idle objects (more than the pool can hold idle).
    max_rejects: usize,
}

enum Source<T> {
    Idle(Idle<T>),
    Slot,
}

/// The first step of a `get` that must not block (an event loop's): an
/// object now, or a place in the queue of a full bounded pool.
pub enum Step<T> {
    Ready(T),
    /// Queued: wait until the waiter is decided (see
    /// [`Waiter::on_decided`]), then [`Pool::finish_wait`], or give up with
    /// [`Pool::abandon_wait`]. One of the two must follow.
    Wait(Arc<Waiter<Idle<T>>>),
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
        Self::resolve(config)
    }

    fn resolve(config: &Config) -> Result<(usize, usize), ConfigError> {
        if let Some(0) = config.max_size {
            return Err(refuse(
                "max_size",
                "max_size must be at least 1, got 0".into(),
            ));
        }
        let max_idle = match (config.max_idle, config.max_size) {
            (Some(idle), Some(size)) => idle.min(size),
            (Some(idle), None) => idle,
            (None, Some(size)) => size.min(Config::DEFAULT_BOUNDED_MAX_IDLE),
            (None, None) => Config::DEFAULT_MAX_IDLE,
        };
        if max_idle > MAX_IDLE_LIMIT {
            return Err(refuse(
                "max_idle",
                format!("max_idle must be at most {MAX_IDLE_LIMIT}, got {max_idle}"),
            ));
        }
        let shards = config.shards.unwrap_or_else(default_shard_count);
        if shards == 0 || shards > MAX_SHARDS {
            return Err(refuse(
                "shards",
                format!("shards must be between 1 and {MAX_SHARDS}, got {shards}"),
            ));
        }
        if let Some(t) = config.idle_timeout {
            if t.is_zero() {
                return Err(refuse(
                    "idle_timeout",
                    "idle_timeout must be positive, got 0".into(),
                ));
            }
        }
        Ok((max_idle, shards))
    }

    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let (max_idle, shards) = Self::resolve(&config)?;
        let checked = config.checked || config.max_size.is_some();
        Ok(Pool {
            shards: Shards::new(shards, max_idle),
            limit: config.max_size.map(|max| Box::new(Limit::new(max))),
            ledger: checked.then(|| Ledger::new(shards)),
            idle_timeout: config.idle_timeout,
            reset_on: config.reset_on,
            charge: config.charge,
            epoch: Instant::now(),
            closed: AtomicBool::new(false),
            max_in_use: AtomicU64::new(0),
            max_rejects: max_idle + shards,
        })
    }

    pub fn max_idle(&self) -> usize {
        self.shards.capacity()
    }

    pub fn max_size(&self) -> Option<usize> {
        self.limit.as_ref().map(|limit| limit.max())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.count()
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    pub fn reset_on(&self) -> ResetOn {
        self.reset_on
    }

    pub fn is_checked(&self) -> bool {
        self.ledger.is_some()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The per-shard counter blocks, for merging across pools.
    pub fn counters(&self) -> impl Iterator<Item = &Counters> + Clone {
        self.shards.all_counters()
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
        s.max_in_use = self.sample_in_use(s.in_use);
        s
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

    /// Creates `n` idle objects up front.
    pub fn prefill<H: Hooks<T>>(&self, hooks: &mut H, n: usize) -> Result<(), GetError<H::Error>> {
        let (home, counters) = self.shards.local();
        for _ in 0..n {
            if let Some(limit) = &self.limit {
                if !limit.try_reserve() {
                    return Err(GetError::TooMany {
                        requested: n,
                        max_size: limit.max(),
                    });
                }
            }
            let item = match hooks.create() {
                Ok(item) => item,
                Err(e) => {
                    self.release_charge();
                    return Err(GetError::Hook(e));
                }
            };
            counters.bump(Event::Created);
            self.store(hooks, home, item);
        }
        Ok(())
    }

    /// An idle object (reset, validated, not expired), a new one from the
    /// factory, or, in a full bounded pool, one returned within `timeout`
    /// (`None` waits forever).
    pub fn get<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        timeout: Option<Duration>,
    ) -> Result<T, GetError<H::Error>> {
        self.acquire(hooks, timeout, true)
    }

    /// `get`, or with `may_wait == false` a [`GetError::Timeout`] (not
    /// counted) where `get` would wait.
    fn acquire<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        timeout: Option<Duration>,
        may_wait: bool,
    ) -> Result<T, GetError<H::Error>> {
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        let (home, counters) = self.shards.local();
        let mut rejects = 0;
        let mut deadline = None;
        let mut waited = false;
        loop {
            let idle = if rejects < self.max_rejects {
                self.take_idle(home)
            } else {
                None
            };
            let source = match (idle, &self.limit) {
                (Some(idle), _) => Source::Idle(idle),
                (None, None) => Source::Slot,
                (None, Some(limit)) if limit.waiting() == 0 && limit.try_reserve() => Source::Slot,
                (None, Some(_)) if !may_wait => return Err(GetError::Timeout),
                (None, Some(limit)) => {
                    let deadline = *deadline
                        .get_or_insert_with(|| timeout.and_then(|t| Instant::now().checked_add(t)));
                    match self.wait(hooks, limit, home, deadline, &mut waited)? {
                        Grant::Item(idle) => Source::Idle(idle),
                        Grant::Slot => Source::Slot,
                        Grant::Batch(_) => unreachable!("a single waiter is granted one unit"),
                    }
                }
            };
            let idle = match source {
                Source::Slot => return self.create(hooks, counters),
                Source::Idle(idle) => idle,
            };
            match self.vet(hooks, counters, idle, false) {
                Ok(Some(item)) => return self.hand_out(hooks, counters, item, Event::Hit),
                Ok(None) => rejects += 1,
                Err(e) => return Err(GetError::Hook(e)),
            }
        }
    }

    /// `get` for a caller that must not block: an object if one comes
    /// without waiting, else a place in the waiters' queue (counted as a
    /// wait when `count_wait`; a caller that re-queues after a rejected
    /// grant passes `false`, so one `get` counts one wait).
    pub fn get_or_enqueue<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        count_wait: bool,
    ) -> Result<Step<T>, GetError<H::Error>> {
        loop {
            match self.acquire(hooks, None, false) {
                Err(GetError::Timeout) => {}
                other => return other.map(Step::Ready),
            }
            let Some(limit) = &self.limit else {
                unreachable!("only a bounded pool makes a get wait");
            };
            let home = self.shards.home();
            match limit.enqueue(&self.idles(home)) {
                Enqueued::Closed => return Err(GetError::Closed),
                Enqueued::Queued(waiter) => {
                    if count_wait {
                        self.shards.counters(home).bump(Event::Wait);
                        self.note_in_use();
                    }
                    return Ok(Step::Wait(waiter));
                }
                Enqueued::Ready(grant) => {
                    if let Some(item) = self.redeem(hooks, grant)? {
                        return Ok(Step::Ready(item));
                    }
                }
            }
        }
    }

    /// After a [`Step::Wait`] was decided: the object, or `None` if the
    /// granted object was rejected (expired, or refused by `validate`) and
    /// the caller should queue again.
    pub fn finish_wait<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        waiter: &Waiter<Idle<T>>,
    ) -> Result<Option<T>, GetError<H::Error>> {
        match waiter.take() {
            Some(Outcome::Granted(grant)) => self.redeem(hooks, grant),
            Some(Outcome::Closed) => Err(GetError::Closed),
            // Not decided (or taken already): nothing was granted.
            None => Err(GetError::Timeout),
        }
    }

    /// Gives up a [`Step::Wait`]: withdraws the waiter, and gives back
    /// whatever it was granted meanwhile, so nothing is lost. Counted as a
    /// timeout when `timed_out`, else as cancelled (a cancelled task, one
    /// whose event loop closed or that was collected).
    pub fn abandon_wait<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        waiter: &Arc<Waiter<Idle<T>>>,
        timed_out: bool,
    ) {
        let Some(limit) = &self.limit else {
            return;
        };
        if let Some(Outcome::Granted(grant)) = limit.cancel(waiter) {
            self.give_back(hooks, grant);
        }
        if timed_out {
            self.shards.local().1.bump(Event::Timeout);
        } else {
            limit.note_cancelled();
        }
    }

    /// Turns a grant into an object to hand out: a new one for a slot, the
    /// granted one if it passes the checks of `get`, else `None` (it was
    /// destroyed).
    fn redeem<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        grant: Grant<Idle<T>>,
    ) -> Result<Option<T>, GetError<H::Error>> {
        let (_, counters) = self.shards.local();
        let idle = match grant {
            Grant::Slot => return self.create(hooks, counters).map(Some),
            Grant::Item(idle) => idle,
            Grant::Batch(_) => unreachable!("a single waiter is granted one unit"),
        };
        match self.vet(hooks, counters, idle, false) {
            Ok(Some(item)) => self.hand_out(hooks, counters, item, Event::Hit).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(GetError::Hook(e)),
        }
    }

    /// `n` objects, all or none. In a full bounded pool, waits (up to
    /// `timeout`) until `n` are free at once, holding none meanwhile (see
    /// `limit`). On failure nothing is handed out, and nothing counts as
    /// handed out or returned: what the call took goes back.
    pub fn get_many<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<T>, GetError<H::Error>> {
        if let Some(max_size) = self.max_size() {
            if n > max_size {
                return Err(GetError::TooMany {
                    requested: n,
                    max_size,
                });
            }
        }
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let home = self.shards.home();
        let units = match &self.limit {
            None => self.gather(home, n),
            Some(limit) => self.wait_batch(hooks, limit, home, n, timeout)?,
        };
        self.redeem_batch(hooks, home, units)
    }

    /// Up to `n` idle objects, and slots for the rest: a batch of an
    /// unbounded pool.
    fn gather(&self, home: usize, n: usize) -> Units<Idle<T>> {
        let mut items = Vec::with_capacity(n.min(self.max_idle()));
        while items.len() < n {
            match self.take_idle(home) {
                Some(idle) => items.push(idle),
                None => break,
            }
        }
        let slots = n - items.len();
        Units { items, slots }
    }

    /// The `n` units of a batch of a bounded pool: at once if they are free
    /// together, else once the limit serves the batch, within `timeout`.
    /// The batch holds nothing while it waits; its thread keeps its turns
    /// (see [`Turns`]).
    fn wait_batch<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        limit: &Limit<Idle<T>>,
        home: usize,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<Units<Idle<T>>, GetError<H::Error>> {
        let store = self.idles(home);
        let waiter = match limit.enqueue_batch(n, &store) {
            Enqueued::Ready(Grant::Batch(units)) => return Ok(units),
            Enqueued::Ready(_) => unreachable!("a batch is granted its units at once"),
            Enqueued::Closed => return Err(GetError::Closed),
            Enqueued::Queued(waiter) => waiter,
        };
        let counters = self.shards.counters(home);
        counters.bump(Event::Wait);
        self.note_in_use();
        let start = Instant::now();
        let deadline = timeout.and_then(|t| start.checked_add(t));
        let mut turns = Turns::new(start);
        loop {
            // loom has no clock: there a batch waits for its deadline only,
            // and the models drive the turns on the limit itself.
            let until = if cfg!(loom) {
                deadline
            } else {
                Some(deadline.map_or(turns.ends(), |d| d.min(turns.ends())))
            };
            if let Err(e) = hooks.park(&*waiter, until) {
                if let Some(Outcome::Granted(grant)) = limit.cancel(&waiter) {
                    self.give_back(hooks, grant);
                }
                limit.note_cancelled();
                return Err(GetError::Hook(e));
            }
            match waiter.take() {
                Some(Outcome::Granted(Grant::Batch(units))) => return Ok(units),
                Some(Outcome::Granted(_)) => unreachable!("a batch is granted its units at once"),
                Some(Outcome::Closed) => return Err(GetError::Closed),
                None => {}
            }
            let now = Instant::now();
            if cfg!(loom) || deadline.is_some_and(|d| now >= d) {
                match limit.cancel(&waiter) {
                    // Served as the deadline passed: take it.
                    Some(Outcome::Granted(Grant::Batch(units))) if units.len() == n => {
                        return Ok(units)
                    }
                    // What was set aside for it goes back.
                    Some(Outcome::Granted(grant)) => self.give_back(hooks, grant),
                    Some(Outcome::Closed) => return Err(GetError::Closed),
                    None => {}
                }
                counters.bump(Event::Timeout);
                return Err(GetError::Timeout);
            }
            if now >= turns.ends() {
                if let Some(yielded) = turns.next(limit, &waiter, &store, now) {
                    self.give_back(hooks, Grant::Batch(yielded));
                }
            }
        }
    }

    /// Turns a batch's units into objects to hand out: each idle one checked
    /// as `get` checks it (a rejected one is replaced by the next idle one,
    /// or by a new one made in its slot: the batch never waits again), a new
    /// one for each slot; then all are counted as handed out at once. On
    /// failure everything goes back, counted neither as handed out nor as
    /// returned.
    fn redeem_batch<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        home: usize,
        units: Units<Idle<T>>,
    ) -> Result<Vec<T>, GetError<H::Error>> {
        let counters = self.shards.counters(home);
        // Grown as objects come: an absurd `n` (unbounded pool) must fail
        // as the objects run out, not abort on one huge allocation.
        let mut out = Vec::with_capacity(units.len().min(self.max_idle().max(64)));
        let mut pending: VecDeque<Idle<T>> = units.items.into();
        let mut slots = units.slots;
        let (mut hits, mut misses, mut rejects) = (0, 0, 0);
        let mut failure = None;
        while let Some(idle) = pending.pop_front() {
            match self.vet(hooks, counters, idle, true) {
                Ok(Some(item)) => match self.check_out(hooks, item) {
                    Some(item) => {
                        out.push(item);
                        hits += 1;
                    }
                    None => {
                        // As in `hand_out`: the idle copy was a second
                        // reference.
                        counters.bump(Event::Destroyed);
                        self.release_charge();
                        failure = Some(GetError::AlreadyOut);
                        break;
                    }
                },
                // Destroyed, its charge kept: for the next idle object
                // (which brings its own charge), else for a new one.
                Ok(None) => {
                    rejects += 1;
                    let next = if rejects < self.max_rejects {
                        self.take_idle(home)
                    } else {
                        None
                    };
                    match next {
                        Some(next) => {
                            self.release_charge();
                            pending.push_front(next);
                        }
                        None => slots += 1,
                    }
                }
                Err(e) => {
                    slots += 1; // the destroyed one's charge, released below
                    failure = Some(GetError::Hook(e));
                    break;
                }
            }
        }
        while failure.is_none() && slots > 0 {
            // `make` uses the slot, or releases it when it fails.
            slots -= 1;
            match self.make(hooks, counters) {
                Ok(item) => {
                    out.push(item);
                    misses += 1;
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(error) = failure {
            for item in out {
                self.return_unused(hooks, home, item);
            }
            for idle in pending {
                self.store_idle(hooks, home, idle);
            }
            for _ in 0..slots {
                self.release_charge();
            }
            return Err(error);
        }
        counters.add(Event::Hit, hits);
        counters.add(Event::Miss, misses);
        self.note_in_use();
        Ok(out)
    }

    /// Takes back an object this call checked out and never handed to its
    /// caller (a failed batch): no reset (it was never used), not counted.
    fn return_unused<H: Hooks<T>>(&self, hooks: &mut H, home: usize, item: T) {
        let item = match &self.ledger {
            None => item,
            Some(ledger) => match ledger.check_in(hooks.identity(&item)) {
                Some(own) => own,
                None => return, // unreachable: this call checked it out
            },
        };
        self.store(hooks, home, item);
    }

    /// Queues for one unit and waits for it until `deadline`. The first
    /// time a call queues (`waited` tells), it counts a wait. Kept out of
    /// line: inlined, it makes every `get` pay for its frame.
    #[inline(never)]
    fn wait<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        limit: &Limit<Idle<T>>,
        home: usize,
        deadline: Option<Instant>,
        waited: &mut bool,
    ) -> Result<Grant<Idle<T>>, GetError<H::Error>> {
        let waiter = match limit.enqueue(&self.idles(home)) {
            Enqueued::Ready(grant) => return Ok(grant),
            Enqueued::Closed => return Err(GetError::Closed),
            Enqueued::Queued(waiter) => waiter,
        };
        if !std::mem::replace(waited, true) {
            self.shards.counters(home).bump(Event::Wait);
            self.note_in_use();
        }
        let outcome = match hooks.park(&*waiter, deadline) {
            // A park that returns early (a custom hook) must not strand the
            // waiter in the queue: withdraw it like a timeout.
            Ok(true) => waiter.take().or_else(|| limit.cancel(&waiter)),
            Ok(false) => limit.cancel(&waiter),
            Err(e) => {
                if let Some(Outcome::Granted(grant)) = limit.cancel(&waiter) {
                    self.give_back(hooks, grant);
                }
                // Interrupted (a signal handler raised): not a timeout.
                limit.note_cancelled();
                return Err(GetError::Hook(e));
            }
        };
        match outcome {
            Some(Outcome::Granted(grant)) => Ok(grant),
            Some(Outcome::Closed) => Err(GetError::Closed),
            None => {
                self.shards.counters(home).bump(Event::Timeout);
                Err(GetError::Timeout)
            }
        }
    }

    /// Returns a grant that its waiter no longer wants.
    fn give_back<H: Hooks<T>>(&self, hooks: &mut H, grant: Grant<Idle<T>>) {
        let home = self.shards.home();
        match grant {
            Grant::Slot => self.release_charge(),
            Grant::Item(idle) => {
                self.store_idle(hooks, home, idle);
            }
            Grant::Batch(units) => {
                for idle in units.items {
                    self.store_idle(hooks, home, idle);
                }
                for _ in 0..units.slots {
                    self.release_charge();
                }
            }
        }
    }

    /// A new object handed out (a miss), in a slot already charged.
    fn create<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
    ) -> Result<T, GetError<H::Error>> {
        let out = self.make(hooks, counters)?;
        counters.bump(Event::Miss);
        self.note_in_use();
        Ok(out)
    }

    /// A new object, checked out, in a slot already charged (counted as
    /// created, not yet as handed out). On failure the slot is released.
    #[inline]
    fn make<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
    ) -> Result<T, GetError<H::Error>> {
        let item = match hooks.create() {
            Ok(item) => item,
            Err(e) => {
                self.release_charge();
                return Err(GetError::Hook(e));
            }
        };
        let Some(out) = self.check_out(hooks, item) else {
            // Not ours to destroy: its holder still uses it.
            self.release_charge();
            return Err(GetError::AlreadyOut);
        };
        counters.bump(Event::Created);
        Ok(out)
    }

    #[inline]
    fn hand_out<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        item: T,
        event: Event,
    ) -> Result<T, GetError<H::Error>> {
        let Some(out) = self.check_out(hooks, item) else {
            // The factory handed out an object that was also idle here: the
            // idle copy is a second reference to it, now dropped.
            counters.bump(Event::Destroyed);
            self.release_charge();
            return Err(GetError::AlreadyOut);
        };
        if counters.bump_counted(event) % IN_USE_SAMPLE_EVERY == 0 {
            self.note_in_use();
        }
        Ok(out)
    }

    /// The holder's reference to `item`; a checked pool records `item` in
    /// its ledger. `None` (and `item` dropped) if it is out already.
    #[inline(always)]
    fn check_out<H: Hooks<T>>(&self, hooks: &mut H, item: T) -> Option<T> {
        let item = hooks.record_out(item)?;
        let Some(ledger) = &self.ledger else {
            return Some(item);
        };
        let out = hooks.duplicate(&item);
        ledger.check_out(hooks.identity(&item), item).ok()?;
        Some(out)
    }

    /// Expire, reset (when due on get) and validate an idle object before
    /// it is handed out. `Ok(None)`: it was rejected and destroyed. A
    /// rejected object's charge is released, or kept for the caller with
    /// `keep_charge` (a batch makes a replacement in it).
    #[inline(always)]
    fn vet<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        idle: Idle<T>,
        keep_charge: bool,
    ) -> Result<Option<T>, H::Error> {
        if self.is_expired(&idle) {
            self.reject(hooks, counters, idle.item, Event::Expired, keep_charge);
            return Ok(None);
        }
        let item = idle.item;
        if self.reset_on == ResetOn::Get {
            if let Err(e) = hooks.reset(&item) {
                self.reject(hooks, counters, item, Event::ResetError, keep_charge);
                return Err(e);
            }
        }
        match hooks.validate(&item) {
            Ok(true) => Ok(Some(item)),
            Ok(false) => {
                self.reject(hooks, counters, item, Event::Invalid, keep_charge);
                Ok(None)
            }
            Err(e) => {
                self.reject(hooks, counters, item, Event::Invalid, keep_charge);
                Err(e)
            }
        }
    }

    #[inline]
    fn is_expired(&self, idle: &Idle<T>) -> bool {
        match self.idle_timeout {
            // Saturating: a timeout beyond u64 nanoseconds (585 years) never
            // expires, where a plain cast would wrap it to a short one.
            Some(timeout) if idle.since != 0 => {
                self.now().saturating_sub(idle.since) > saturating_nanos(timeout)
            }
            _ => false,
        }
    }

    /// Gives an object back. A checked pool refuses objects it has not handed
    /// out; a full pool destroys it; a closed pool destroys it.
    pub fn put<H: Hooks<T>>(&self, hooks: &mut H, item: T) -> Result<(), PutError<H::Error>> {
        self.put_inner(hooks, item, true)
    }

    fn put_inner<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        item: T,
        reset: bool,
    ) -> Result<(), PutError<H::Error>> {
        let item = match &self.ledger {
            None => item,
            Some(ledger) => match ledger.check_in(hooks.identity(&item)) {
                // Keep the pool's reference; the holder's one is dropped.
                Some(own) => own,
                None => return Err(PutError::NotOut { index: 0 }),
            },
        };
        self.take_in(hooks, Event::Put, item, reset)
            .map_err(PutError::Hook)
    }

    /// Takes in an object that another pool of a family handed out (see
    /// [`crate::tiered::Tiered`]): counted as created here, since it joins
    /// this pool's objects, then reset and kept as a returned object is (or
    /// destroyed when the pool is full or closed). Only for the unbounded,
    /// unchecked class pools of a `Tiered`: a bound or a ledger would not
    /// know the object.
    pub(crate) fn adopt<H: Hooks<T>>(&self, hooks: &mut H, item: T) -> Result<(), H::Error> {
        debug_assert!(self.limit.is_none() && self.ledger.is_none());
        self.take_in(hooks, Event::Created, item, true)
    }

    /// An object this pool handed out came back and leaves the pool without
    /// being stored (the caller destroys it, or another pool of the family
    /// adopts it): counts its return (`Put`) and its departure (`Destroyed`,
    /// and `Dropped` when `dropped`), so this pool's books still balance.
    pub(crate) fn count_departure(&self, dropped: bool) {
        let (_, counters) = self.shards.local();
        counters.bump(Event::Put);
        if dropped {
            counters.bump(Event::Dropped);
        }
        counters.bump(Event::Destroyed);
        self.release_charge();
    }

    /// Counts `event` (the object's arrival), then keeps the object: reset
    /// (if `reset` and due on put) and stored, or destroyed if the pool is
    /// closed. Inlined into each caller: `put`'s hot path stays one function.
    #[inline(always)]
    fn take_in<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        event: Event,
        item: T,
        reset: bool,
    ) -> Result<(), H::Error> {
        let (home, counters) = self.shards.local();
        counters.bump(event);
        if self.is_closed() {
            self.discard(hooks, counters, item);
            self.destroy_idle(hooks, counters);
            return Ok(());
        }
        let item = if reset {
            self.reset_returned(hooks, counters, item)?
        } else {
            item
        };
        self.store(hooks, home, item);
        Ok(())
    }

    /// Resets a returned object when resets are due on put. On failure the
    /// object is destroyed (counted) and the error returned.
    #[inline]
    fn reset_returned<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        item: T,
    ) -> Result<T, H::Error> {
        if self.reset_on == ResetOn::Put {
            if let Err(e) = hooks.reset(&item) {
                self.reject(hooks, counters, item, Event::ResetError, false);
                return Err(e);
            }
        }
        Ok(item)
    }

    /// Destroys an object that failed a check or a reset, counting why. Its
    /// charge is released, or kept for the caller with `keep_charge`. Cold:
    /// out of the way of the hot path it branches off.
    #[cold]
    fn reject<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        counters: Tally<'_>,
        item: T,
        why: Event,
        keep_charge: bool,
    ) {
        counters.bump(why);
        self.destroy(hooks, counters, item);
        if !keep_charge {
            self.release_charge();
        }
    }

    /// Gives back many objects. A checked pool first checks them all: if any
    /// was not handed out (or appears twice), nothing changes. A failing
    /// reset does not stop the others; the first error is returned.
    pub fn put_many<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        items: Vec<T>,
    ) -> Result<(), PutError<H::Error>> {
        self.check_many(hooks, &items)
            .map_err(|index| PutError::NotOut { index })?;
        self.put_each(hooks, items)
    }

    /// In a checked pool, the index of the first object in `items` that was
    /// not handed out or appears twice. Always `Ok` in an unchecked pool.
    pub fn check_many<H: Hooks<T>>(&self, hooks: &H, items: &[T]) -> Result<(), usize> {
        if let Some(ledger) = &self.ledger {
            let mut seen = HashSet::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let id = hooks.identity(item);
                if !seen.insert(id) || !ledger.contains(id) {
                    return Err(index);
                }
            }
        }
        Ok(())
    }

    /// `put` for each object, as one batch: an object that is refused
    /// (returned by another thread meanwhile) or fails its reset does not
    /// stop the others; the first error is returned.
    pub fn put_each<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        items: Vec<T>,
    ) -> Result<(), PutError<H::Error>> {
        let (home, counters) = self.shards.local();
        let mut first_error = None;
        // Check every object in first, and count the batch's puts before any
        // object is filed: once filed, another thread may take it and count
        // its get, and `in_use` must not count it twice meanwhile.
        let mut accepted = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match &self.ledger {
                None => accepted.push(item),
                Some(ledger) => match ledger.check_in(hooks.identity(&item)) {
                    Some(own) => accepted.push(own),
                    // Returned by another thread since the check.
                    None => {
                        first_error.get_or_insert(PutError::NotOut { index });
                    }
                },
            }
        }
        counters.add(Event::Put, accepted.len() as u64);
        let mut shelved = false;
        for item in accepted {
            if self.is_closed() {
                self.discard(hooks, counters, item);
                continue;
            }
            let item = match self.reset_returned(hooks, counters, item) {
                Ok(item) => item,
                Err(e) => {
                    first_error.get_or_insert(PutError::Hook(e));
                    continue;
                }
            };
            let since = self.stamp();
            shelved |= matches!(self.file(hooks, home, Idle { item, since }), Filed::Shelved);
        }
        // One fence (and one look for waiters) for the whole batch: a waiter
        // that queued before it is served; one that queued after it finds
        // the objects in the shards itself. It also destroys what was
        // shelved if the pool closed meanwhile.
        if shelved || self.is_closed() {
            self.after_shelving(hooks, home);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Files a clean object: to the longest waiter, else idle, else destroys
    /// it as surplus.
    #[inline]
    fn store<H: Hooks<T>>(&self, hooks: &mut H, home: usize, item: T) {
        let since = self.stamp();
        self.store_idle(hooks, home, Idle { item, since });
    }

    /// The idle stamp of an object stored now: 0 (none) unless objects expire.
    #[inline]
    fn stamp(&self) -> u64 {
        if self.idle_timeout.is_some() {
            self.now()
        } else {
            0
        }
    }

    /// Returns whether the object was kept (stored, or handed to a waiter).
    #[inline]
    fn store_idle<H: Hooks<T>>(&self, hooks: &mut H, home: usize, idle: Idle<T>) -> bool {
        match self.file(hooks, home, idle) {
            Filed::Shelved => {
                self.after_shelving(hooks, home);
                true
            }
            Filed::Handed => true,
            Filed::Discarded => false,
        }
    }

    /// Hands a clean object to the longest waiter, else shelves it in the
    /// shards, else destroys it as surplus. After `Filed::Shelved` the caller
    /// owes one [`Pool::after_shelving`] (a batch owes one for all).
    #[inline]
    fn file<H: Hooks<T>>(&self, hooks: &mut H, home: usize, idle: Idle<T>) -> Filed {
        let idle = match &self.limit {
            None => idle,
            Some(limit) => match limit.offer(idle, &self.idles(home)) {
                Ok(()) => return Filed::Handed,
                Err(idle) => idle,
            },
        };
        if !hooks.keep(&idle.item) || !self.charge_idle() {
            self.drop_surplus(hooks, home, idle.item);
            return Filed::Discarded;
        }
        match self.shards.push(home, idle) {
            Ok(()) => Filed::Shelved,
            Err(idle) => {
                self.uncharge_idle(1);
                self.drop_surplus(hooks, home, idle.item);
                Filed::Discarded
            }
        }
    }

    /// Destroys a returned object that the pool has no room (or no budget)
    /// to keep.
    #[cold]
    fn drop_surplus<H: Hooks<T>>(&self, hooks: &mut H, home: usize, item: T) {
        let counters = self.shards.counters(home);
        counters.bump(Event::Dropped);
        self.discard(hooks, counters, item);
    }

    /// Runs after objects were shelved: serves waiters that queued
    /// meanwhile, and destroys the idle objects if the pool closed. Out of
    /// line, as LLVM chose before the batch protocol: inlined into `store`
    /// it costs every put about ten instructions more (cachegrind).
    #[inline(never)]
    fn after_shelving<H: Hooks<T>>(&self, hooks: &mut H, home: usize) {
        // Orders the pushes before the `closed` read: either `close` drains
        // these objects, or this put sees the pool closed.
        match &self.limit {
            Some(limit) => limit.serve_from(&self.idles(home)),
            None => fence(Ordering::SeqCst),
        }
        if self.closed.load(Ordering::Relaxed) {
            self.destroy_idle(hooks, self.shards.counters(home));
        }
    }

    /// Nanoseconds since the pool's epoch, at least 1 (0 means unstamped).
    fn now(&self) -> u64 {
        saturating_nanos(self.epoch.elapsed()).max(1)
    }

    /// Takes an idle object (home shard first), ending its charge.
    #[inline]
    fn take_idle(&self, home: usize) -> Option<Idle<T>> {
        let idle = self.shards.pop(home)?;
        self.uncharge_idle(1);
        Some(idle)
    }

    /// Takes every idle object, ending their charges.
    fn drain_idle(&self) -> Vec<Idle<T>> {
        let idle = self.shards.drain();
        self.uncharge_idle(idle.len());
        idle
    }

    #[inline]
    fn charge_idle(&self) -> bool {
        self.charge
            .as_ref()
            .is_none_or(|c| c.budget.try_charge(c.weight))
    }

    #[inline]
    fn uncharge_idle(&self, n: usize) {
        if let Some(c) = &self.charge {
            c.budget.uncharge(c.weight * n);
        }
    }

    /// Destroys an object the pool no longer keeps, then frees its charge.
    fn discard<H: Hooks<T>>(&self, hooks: &mut H, counters: Tally<'_>, item: T) {
        self.destroy(hooks, counters, item);
        self.release_charge();
    }

    /// Destroys an object, keeping its charge (the caller's to release).
    fn destroy<H: Hooks<T>>(&self, hooks: &mut H, counters: Tally<'_>, item: T) {
        counters.bump(Event::Destroyed);
        hooks.destroy(item);
    }

    fn release_charge(&self) {
        if let Some(limit) = &self.limit {
            limit.release(&self.idles(self.shards.home()));
        }
    }

    fn destroy_idle<H: Hooks<T>>(&self, hooks: &mut H, counters: Tally<'_>) -> usize {
        let idle = self.drain_idle();
        let n = idle.len();
        for idle in idle {
            self.discard(hooks, counters, idle.item);
        }
        n
    }

    /// Destroys expired idle objects, then the oldest until at most `keep`
    /// remain. Returns how many it destroyed.
    pub fn trim<H: Hooks<T>>(&self, hooks: &mut H, keep: usize) -> usize {
        let (home, counters) = self.shards.local();
        let (mut fresh, expired): (Vec<_>, Vec<_>) = self
            .drain_idle()
            .into_iter()
            .partition(|entry| !self.is_expired(entry));
        // Oldest first; unstamped entries keep their drain order.
        fresh.sort_by_key(|entry| entry.since);
        let surplus: Vec<_> = fresh.drain(..fresh.len().saturating_sub(keep)).collect();
        // The keepers go back before any hook runs, so that concurrent gets
        // find them while the others are destroyed.
        let mut removed = 0;
        for entry in fresh {
            removed += usize::from(!self.store_idle(hooks, home, entry));
        }
        for entry in expired {
            counters.bump(Event::Expired);
            self.discard(hooks, counters, entry.item);
            removed += 1;
        }
        for entry in surplus {
            self.discard(hooks, counters, entry.item);
            removed += 1;
        }
        removed
    }

    /// Marks the pool closed, fails every wait, and destroys the idle
    /// objects. Returns how many it destroyed. Idempotent.
    pub fn close<H: Hooks<T>>(&self, hooks: &mut H) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        // Pairs with the fence after a put's push (see `store_idle`).
        fence(Ordering::SeqCst);
        let counters = self.shards.counters(self.shards.home());
        let mut destroyed = 0;
        if let Some(limit) = &self.limit {
            // What was set aside for a waiting batch is idle: destroyed too.
            let set_aside = limit.close();
            destroyed += set_aside.items.len();
            for idle in set_aside.items {
                self.discard(hooks, counters, idle.item);
            }
            for _ in 0..set_aside.slots {
                self.release_charge();
            }
        }
        destroyed + self.destroy_idle(hooks, counters)
    }

    /// Shows every object the pool holds a reference to (idle ones, those
    /// set aside for a waiting batch, and the ledger's handed-out ones) to
    /// `f`, changing nothing. For a garbage collector's traversal: no other
    /// thread may use the pool meanwhile (see [`Shards::visit`]).
    pub fn visit<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> Result<(), E> {
        let (result, homeless) = self.shards.visit(|idle| f(&idle.item));
        // Unreachable when the caller keeps its promise; never lose them.
        for idle in homeless {
            let _ = self.shards.push(0, idle);
        }
        result?;
        if let Some(limit) = &self.limit {
            limit.visit_set_aside(|idle| f(&idle.item))?;
        }
        match &self.ledger {
            Some(ledger) => ledger.visit(f),
            None => Ok(()),
        }
    }

    /// Drops every reference the pool holds (idle objects, those set aside
    /// for a waiting batch, the ledger's), without running hooks: for
    /// breaking a reference cycle that the garbage collector found
    /// unreachable. The pool stays usable.
    pub fn release_references(&self) {
        for idle in self.drain_idle() {
            drop(idle);
            self.release_charge();
        }
        if let Some(limit) = &self.limit {
            let set_aside = limit.take_set_aside();
            for _ in 0..set_aside.len() {
                self.release_charge();
            }
        }
        if let Some(ledger) = &self.ledger {
            ledger.clear();
        }
    }

    /// Shows the notifications of the callers queued for a bounded pool to
    /// `f` (see [`Limit::visit_notifications`]); for a garbage collector.
    pub fn visit_notifications<E>(
        &self,
        f: impl FnMut(&dyn Notify) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.limit {
            Some(limit) => limit.visit_notifications(f),
            None => Ok(()),
        }
    }

    /// Takes the notifications of the queued callers, for the caller to
    /// drop: breaks a reference cycle that the garbage collector found
    /// unreachable (no one can reach the pool to wake those callers).
    pub fn take_notifications(&self) -> Vec<Box<dyn Notify>> {
        self.limit
            .as_ref()
            .map_or_else(Vec::new, |limit| limit.take_notifications())
    }

    /// Objects a checked pool has handed out and not had back.
    pub fn outstanding(&self) -> Option<usize> {
        self.ledger.as_ref().map(Ledger::len)
    }
}

// Built with std types; under loom only the models in `loom_tests` run.
#[cfg(all(test, not(loom)))]
mod tests;
