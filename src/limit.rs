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
//! - A waiter is in `queue.waiters` exactly while its outcome is undecided,
//!   and `waiting` equals the queue's length whenever the lock is free.
//! - Outcomes are decided only under the queue lock, by `serve`, which walks
//!   the queue in arrival order handing out the units it can draw (an item a
//!   put offers, then idle items of the [`Store`], then free slots):
//!   - a single waiter takes the next unit; the walk stops when none is left,
//!     so single waiters are served in arrival order. (A thread that arrives
//!     just as an object is returned may take it before the front waiter is
//!     served; it never takes one that was granted.)
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
//!   them, so a batch is served once its `n` units are free together.
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
//! `fork` (which waiters survive a fork). Each states its own invariants.

mod fork;
mod queue;
mod turns;
mod waiter;

use std::collections::VecDeque;
use std::sync::PoisonError;

use crossbeam_utils::CachePadded;

pub use fork::note_fork;
use fork::{fork_generation, survives_forks};
use queue::Queue;
pub use turns::{Turns, PATIENCE};
pub use waiter::{Notify, Park, Waiter};

use crate::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
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
}

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
    max: usize,
    alive: CachePadded<AtomicUsize>,
    waiting: CachePadded<AtomicUsize>,
    /// Items in `queue.set_aside`, readable without the lock (they count as
    /// idle).
    set_aside_items: AtomicUsize,
    /// Waits given up before their timeout: rare, so one shared counter
    /// here rather than a slot in every shard's counters.
    cancelled: AtomicU64,
    queue: Mutex<Queue<I>>,
}

impl<I> Limit<I> {
    /// A bound of `max` units, none charged, nobody waiting.
    pub fn new(max: usize) -> Self {
        Limit {
            max,
            alive: CachePadded::new(AtomicUsize::new(0)),
            waiting: CachePadded::new(AtomicUsize::new(0)),
            set_aside_items: AtomicUsize::new(0),
            cancelled: AtomicU64::new(0),
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                closed: false,
                generation: fork_generation(),
                preferred: None,
                set_aside: Units::default(),
            }),
        }
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Objects currently charged against the bound.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Callers queued for capacity (threads and tasks, singles and batches).
    #[inline]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
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
        self.alive
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
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

    /// Hands `item` to the waiters (see `serve`), or gives it back if they
    /// cannot use it.
    #[inline]
    pub fn offer(&self, item: I, store: &dyn Store<I>) -> Result<(), I> {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return Err(item);
        }
        match self.serve_locked(Some(item), store) {
            Some(item) => Err(item),
            None => Ok(()),
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
