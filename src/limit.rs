//! The `max_size` bound of a pool, its queue of waiters, and batches.
//!
//! A unit of capacity is an idle item or a free slot (room to create one
//! object). A single `get` needs one unit; a batch (`get_many(n)`) needs
//! `n` at once.
//!
//! Invariants:
//! - `alive` counts the units charged against `max`: objects idle, handed
//!   out, being created or destroyed, granted to a waiter or set aside for a
//!   batch, and slots granted or set aside. It never exceeds `max`: it only
//!   rises through [`Limit::try_reserve`]'s compare-and-swap.
//! - A waiter is in `queue.waiters` exactly while its outcome is undecided
//!   (a waiter woken to compete is undecided: it holds nothing), and
//!   `waiting` (less its `SURPLUS` bit, see `resize`) equals the queue's
//!   length whenever the lock is free.
//! - `max` changes only under the queue lock (`resize`); while `alive`
//!   exceeds it, `SURPLUS` is set and returned items are refused as surplus.
//! - At most `max_waiting` callers are queued: one more is refused under
//!   the lock (`Enqueued::Busy`), holding and taking nothing.
//! - Outcomes are decided only under the queue lock, by `serve`, which walks
//!   the queue in arrival order handing out the units it can draw (an item a
//!   put offers, then idle items of the [`Store`], then free slots), and by
//!   [`Limit::settle`] for a woken waiter that wins its race:
//!   - single waiters are served like Go's `sync.Mutex`, in two modes,
//!     decided per waiter by how long it has waited since it first queued
//!     (`handoff_after`, [`HANDOFF_AFTER`] by default):
//!     - hand-off mode, for a single waiter that has waited at least
//!       `handoff_after` (starved): it takes the next unit, as a grant; the
//!       walk stops when none is left, so starved waiters are served in
//!       arrival order, and no one overtakes them: a put that finds the
//!       front waiter starved hands its item over instead of storing it.
//!     - normal mode, for the others: a returned item goes to the store,
//!       not to a waiter, and the waiter is woken to compete for it
//!       (`Waiter::rouse`): a running thread that asks at once may take it
//!       first (barging, no context switch). The walk wakes waiters in
//!       arrival order while more units can be drawn than waiters are woken
//!       already (`queue.woken`), then stops. A woken waiter calls
//!       [`Limit::settle`]: under the lock it takes a unit for itself if one
//!       is free (then the walk goes on for those behind it), or, having
//!       lost, goes back to waiting where it was, with its start and its
//!       deadline unchanged, and is woken by the next unit that comes back.
//!       A woken waiter never holds anything, so one that gives up or times
//!       out meanwhile loses nothing; `cancel` passes its wake-up on.
//!
//!     Normal mode is for queues of single waiters: while a batch is
//!     queued, every put offers its item to the walk as before (stored
//!     first, units could be taken by running threads from under the
//!     batches: `tests/stress.rs` ran twenty times slower), and so the
//!     batches' turns below are unchanged.
//!
//!     A caller that joins the queue and finds a unit free (one came back
//!     since it looked) takes it, unless the walk reaches none for it. A
//!     thread that arrives just as an object is returned may take it before
//!     the front waiter is served in either mode; it never takes one that
//!     was granted. Once a waiter has waited `handoff_after`, every unit
//!     that comes back is granted in arrival order until it is served (no
//!     one can take a unit first: they go to the starved waiters, not to
//!     the store), so barging delays a waiter by at most `handoff_after`.
//!   - a batch takes its `n` units at once or nothing. While it cannot have
//!     them all, the walk passes it by and serves the waiters behind it
//!     (they overtake it). A waiting batch holds no object and no slot, so
//!     it never blocks a caller that must get a second object before it
//!     gives back its first (the deadlock of a batch holding capacity).
//!   - at most one batch is *preferred*. The walk stops at it: every unit it
//!     draws is set aside for the batch until the batch has `n`. Set-aside
//!     units are held by the queue, granted to no one (an item set aside
//!     counts as idle), and given back whole if the batch gives up or yields.
//!     When a preferred batch is served or gives up, the turn passes at once
//!     to the first batch that asked for it meanwhile (not when it yields:
//!     the yield is for the callers behind it).
//! - Overtaking is bounded in time ([`Turns`]): a batch is passed by for at
//!   most [`PATIENCE`]; then it is preferred for as long as it has waited so
//!   far. If that turn ends incomplete while others wait behind it, it
//!   yields what was set aside (so no caller waits on a batch for longer
//!   than the batch has waited before it, and a caller holding what the
//!   batch needs is delayed, never deadlocked) and is passed by for another
//!   [`PATIENCE`], then preferred again for a turn twice as long. A batch
//!   whose units come back within `t` of being handed out is thus served in
//!   its first preferred turn longer than `t`.
//! - A grant is a move: an item, a slot or a batch of units granted to a
//!   waiter belongs to it alone. It is taken with [`Waiter::take`], or comes
//!   back from [`Limit::cancel`] when the waiter gave up at the same moment
//!   (with what was set aside for a preferred batch), so a timed-out or
//!   interrupted waiter never loses an object or a slot.
//! - No lost wake-up: whoever frees capacity (decrements `alive`, stores an
//!   idle item) then reads `waiting`; a waiter raises `waiting` (under the
//!   lock) then looks at `alive` and the store. Both sides put a `SeqCst`
//!   fence between their write and their read, so at least one of them sees
//!   the other. The last of several concurrent frees therefore sees all of
//!   them, so a batch is served once its `n` units are free together. A
//!   woken waiter stays queued (counted in `waiting`) until it settles, and
//!   settles under the lock: a unit freed before it looks is seen by it;
//!   one freed after finds it waiting again, and wakes it.
//! - `queue.woken` counts exactly the queued waiters woken and not yet
//!   settled (each wake-up ends in `settle`, `cancel`, a grant or `close`,
//!   and `cancel` passes it on), so a unit is never left to a woken waiter
//!   that will not look for it while another waiter sleeps.
//! - A waiter's notification ([`Waiter::on_decided`]) runs exactly once,
//!   after its outcome is decided and outside the queue lock, or is dropped
//!   (outside the lock) when the waiter is withdrawn: a withdrawn waiter
//!   keeps no reference to its notification, so nothing cycles through it.
//!   While queued, the notification is the queue's (the binding shows it to
//!   a garbage collector through [`Limit::visit_notifications`]).
//! - After `fork()`, the child keeps exactly the waiters of the thread that
//!   forked (the only thread that exists there) and forgets the others' (see
//!   [`note_fork`]), so a `put` in the child is never granted to a thread
//!   that does not exist there, nor withheld from one that does.
//!
//! No lock here is ever held while user code (a factory, a hook, Python,
//! a notification) runs or a notification is dropped, and no lock is taken
//! while another is held except the waiter's own locks inside the queue
//! lock.
//!
//! One concern a module: this one, the bound (`alive` against `max`) and
//! its fast paths; `waiter` (one blocked caller and its notification);
//! `queue` (the waiters' queue and `serve`); `turns` (a batch's turns);
//! `fork` (which waiters survive a fork); `resize` (a new bound);
//! `wait_times` (the wait-time histogram). Each states its own invariants.

mod fork;
mod queue;
mod resize;
mod turns;
mod wait_times;
mod waiter;

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::time::Duration;

use crossbeam_utils::CachePadded;

pub use fork::note_fork;
use fork::{fork_generation, survives_forks};
use queue::Queue;
pub use resize::ResizeError;
pub use turns::{Turns, PATIENCE};
pub use wait_times::{WaitTimes, WAIT_BUCKETS};
pub use waiter::{park_in_slices, Notify, Park, Waiter};

use crate::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex, MutexGuard};

/// Units granted at once: idle items, and slots (room to create one object
/// each, already charged to `alive`).
#[derive(Debug, PartialEq, Eq)]
pub struct Units<I> {
    /// Idle items.
    pub items: Vec<I>,
    /// Slots: room to create one object each, already charged.
    pub slots: usize,
}

impl<I> Default for Units<I> {
    fn default() -> Self {
        Units {
            items: Vec::new(),
            slots: 0,
        }
    }
}

impl<I> Units<I> {
    /// Units in all.
    pub fn len(&self) -> usize {
        self.items.len() + self.slots
    }

    /// Whether there is no unit.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, grant: Grant<I>) {
        match grant {
            Grant::Item(item) => self.items.push(item),
            Grant::Slot => self.slots += 1,
            Grant::Batch(units) => {
                self.items.extend(units.items);
                self.slots += units.slots;
            }
        }
    }

    /// One unit: an item first (reuse before creating).
    fn pop(&mut self) -> Option<Grant<I>> {
        if let Some(item) = self.items.pop() {
            return Some(Grant::Item(item));
        }
        (self.slots > 0).then(|| {
            self.slots -= 1;
            Grant::Slot
        })
    }
}

/// How long a single waiter waits, since it first queued, before the units
/// that come back are handed to it rather than left for whoever asks first
/// (see the module's invariants). Go's `sync.Mutex` switches to hand-off
/// after 1 ms, and a batch is overtaken for [`PATIENCE`] (the same 1 ms).
/// Under loom (no clock) a limit never switches by itself: each model picks
/// its mode with [`Limit::handing_off_after`].
pub const HANDOFF_AFTER: Duration = if cfg!(loom) { Duration::MAX } else { PATIENCE };

/// What a waiter is given.
#[derive(Debug, PartialEq, Eq)]
pub enum Grant<I> {
    /// An object returned by another holder (single waiters).
    Item(I),
    /// Room to create one object, already charged to `alive` (single
    /// waiters).
    Slot,
    /// All the units of a batch at once. (Fewer only from
    /// [`Limit::cancel`], for a batch withdrawn while units were set aside
    /// for it: the caller gives them back.)
    Batch(Units<I>),
}

/// What a woken or decided waiter found ([`Limit::settle`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Settled<I> {
    /// Decided: granted (by a hand-off, or it won the race it was woken
    /// for), or closed.
    Decided(Outcome<I>),
    /// Woken, it lost the race: it waits again where it was in the queue
    /// (its start and deadline unchanged) until it is woken again.
    Lost,
    /// Neither decided nor woken (a park that returned early).
    Undecided,
}

/// How a wait ended, when it did not time out.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<I> {
    /// Served: what the waiter was given.
    Granted(Grant<I>),
    /// The limit was closed.
    Closed,
}

/// The result of joining the queue.
pub enum Enqueued<I> {
    /// Capacity was free after all; nothing to wait for.
    Ready(Grant<I>),
    /// Queued: park on the waiter, then take its outcome.
    Queued(Arc<Waiter<I>>),
    /// The limit was closed.
    Closed,
    /// `max_waiting` callers wait already: refused at once (counted in
    /// [`Limit::rejected`]).
    Busy,
}

/// What became of an item offered to the waiters ([`Limit::offer`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Offered<I> {
    /// A waiter took it.
    Taken,
    /// No waiter could use it, or none is starved (normal mode): the caller
    /// keeps it (stores it idle, then calls `serve_from`).
    Kept(I),
    /// The bound was lowered below the units charged ([`Limit::resize`]):
    /// the caller destroys it and releases its charge.
    Surplus(I),
}

/// The bit of `Limit::waiting` set while the bound is below the units
/// charged (after a shrinking [`Limit::resize`]): it sends every `offer`
/// and `release` to their slow paths, where a returned item is destroyed
/// instead of kept, without a second load on the fast path of a put.
const SURPLUS: usize = 1 << (usize::BITS - 1);

/// Where idle items wait: the limit draws from it to serve waiters.
pub trait Store<I> {
    /// Takes one idle item, if any.
    fn take(&self) -> Option<I>;
    /// How many items are idle (a moment's reading).
    fn count(&self) -> usize;
}

/// A store that is always empty: every unit is a slot.
pub struct NoStore;

impl<I> Store<I> for NoStore {
    fn take(&self) -> Option<I> {
        None
    }

    fn count(&self) -> usize {
        0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; if something did, the data
    // is still consistent, so keep going rather than poison the pool.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `max_size` bound of a pool and its fair queue of waiters (see the
/// module's invariants); `I` is the pool's idle item.
pub struct Limit<I> {
    /// The bound; changed only under the queue lock ([`Limit::resize`]).
    max: AtomicUsize,
    alive: CachePadded<AtomicUsize>,
    /// Callers queued, plus the [`SURPLUS`] bit.
    waiting: CachePadded<AtomicUsize>,
    /// The most callers queued at once (`usize::MAX`: no cap).
    max_waiting: usize,
    /// Callers refused because `max_waiting` were queued.
    rejected: AtomicU64,
    /// How long the waits that ended (served or timed out) took.
    wait_times: WaitTimes,
    /// Items in `queue.set_aside`, readable without the lock (they count as
    /// idle).
    set_aside_items: AtomicUsize,
    /// Waits given up before their timeout: rare, so one shared counter
    /// here rather than a slot in every shard's counters.
    cancelled: AtomicU64,
    /// How long a single waiter waits before it is starved (hand-off mode).
    handoff_after: Duration,
    /// When the queue was last looked at, its first single waiter was
    /// starved, or a batch was preferred: a put then offers its item to the
    /// waiters instead of storing it (where a running thread could take it
    /// first). A hint, written under the lock: `serve` decides by the
    /// clock, and a unit stored meanwhile is drawn from the store.
    handing_off: AtomicBool,
    queue: Mutex<Queue<I>>,
}

impl<I> Limit<I> {
    /// A bound of `max` units, none charged, nobody waiting.
    pub fn new(max: usize) -> Self {
        Self::with_max_waiting(max, None)
    }

    /// A bound of `max` units on which at most `max_waiting` callers wait
    /// at once (`None`: any number).
    pub fn with_max_waiting(max: usize, max_waiting: Option<usize>) -> Self {
        Limit {
            max: AtomicUsize::new(max),
            alive: CachePadded::new(AtomicUsize::new(0)),
            waiting: CachePadded::new(AtomicUsize::new(0)),
            max_waiting: max_waiting.unwrap_or(usize::MAX),
            rejected: AtomicU64::new(0),
            wait_times: WaitTimes::default(),
            set_aside_items: AtomicUsize::new(0),
            cancelled: AtomicU64::new(0),
            handoff_after: HANDOFF_AFTER,
            handing_off: AtomicBool::new(false),
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                woken: 0,
                batches: 0,
                closed: false,
                generation: fork_generation(),
                preferred: None,
                set_aside: Units::default(),
            }),
        }
    }

    /// The same limit, with single waiters starved (handed units in arrival
    /// order) once they have waited `after`: `Duration::ZERO` hands every
    /// unit over in arrival order, `Duration::MAX` never does.
    pub fn handing_off_after(mut self, after: Duration) -> Self {
        self.handoff_after = after;
        self
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// The most callers queued at once, if capped.
    pub fn max_waiting(&self) -> Option<usize> {
        (self.max_waiting != usize::MAX).then_some(self.max_waiting)
    }

    /// Callers refused at once because `max_waiting` were queued.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// How long the waits that ended (served or timed out) took.
    pub fn wait_times(&self) -> &WaitTimes {
        &self.wait_times
    }

    /// Whether more units are charged than the bound allows (after a
    /// shrinking [`Limit::resize`]).
    pub fn is_over(&self) -> bool {
        self.alive.load(Ordering::SeqCst) > self.max()
    }

    /// Objects currently charged against the bound.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Callers queued for capacity (threads and tasks, singles and batches).
    #[inline]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed) & !SURPLUS
    }

    /// Whether a caller must go the slow way: callers queued, or surplus
    /// to shed (one load for both, on a get's fast path).
    #[inline]
    pub(crate) fn is_contended(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) != 0
    }

    /// Items set aside for a batch: idle, but not in the store.
    pub fn set_aside(&self) -> usize {
        self.set_aside_items.load(Ordering::Relaxed)
    }

    /// Counts a wait given up before its timeout (cancelled, interrupted).
    pub(crate) fn note_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits given up before their timeout so far.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Charges one object against the bound, if there is room.
    #[inline]
    pub fn try_reserve(&self) -> bool {
        self.try_reserve_below(self.max())
    }

    /// Charges one object if fewer than `floor` (and fewer than the bound)
    /// are charged: how a pool refills up to its `min_size`, exactly, with
    /// other threads creating and destroying at once.
    #[inline]
    pub fn try_reserve_below(&self, floor: usize) -> bool {
        let max = self.max().min(floor);
        self.alive
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// One charged object is gone (destroyed, or its creation failed): its
    /// slot serves the waiters (see `serve`), or goes back to the pool.
    pub fn release(&self, store: &dyn Store<I>) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) != 0 {
            self.serve_locked(None, store);
        }
    }

    /// Hands `item` to the waiters (see `serve`); gives it back if they
    /// cannot use it, or as surplus if the bound was lowered below the
    /// units charged.
    #[inline]
    pub fn offer(&self, item: I, store: &dyn Store<I>) -> Offered<I> {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return Offered::Kept(item);
        }
        self.offer_slowly(item, store)
    }

    #[cold]
    fn offer_slowly(&self, item: I, store: &dyn Store<I>) -> Offered<I> {
        if self.waiting.load(Ordering::Relaxed) & SURPLUS != 0 && self.is_over() {
            return Offered::Surplus(item);
        }
        if self.handoff_after != Duration::ZERO && !self.handing_off.load(Ordering::Relaxed) {
            // Normal mode: the caller stores the item, and its `serve_from`
            // wakes a waiter to compete for it (or hands it over after all,
            // to a front waiter starved since).
            return Offered::Kept(item);
        }
        match self.serve_locked(Some(item), store) {
            Some(item) => Offered::Kept(item),
            None => Offered::Taken,
        }
    }

    /// Hands `item` to the first waiter that can use it, in arrival order,
    /// whatever the mode: for an item the store cannot keep (it would be
    /// destroyed), so that a waiter still gets it as before. Gives it back
    /// if no waiter can use it, or as surplus (see [`Limit::offer`]).
    pub fn hand_over(&self, item: I, store: &dyn Store<I>) -> Offered<I> {
        let waiting = self.waiting.load(Ordering::Relaxed);
        if waiting == 0 {
            return Offered::Kept(item);
        }
        if waiting & SURPLUS != 0 && self.is_over() {
            return Offered::Surplus(item);
        }
        match self.hand_over_locked(item, store) {
            Some(item) => Offered::Kept(item),
            None => Offered::Taken,
        }
    }

    /// Called after storing idle items: serves the waiters that queued
    /// while they were stored.
    #[inline]
    pub(crate) fn serve_from(&self, store: &dyn Store<I>) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) != 0 {
            self.serve_locked(None, store);
        }
    }
}

// Built with std types; under loom only the models in `loom_tests` run.
#[cfg(all(test, not(loom)))]
mod tests;
