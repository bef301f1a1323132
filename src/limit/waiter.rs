//! A waiter: one blocked `get` or `get_many`, and how its outcome reaches
//! the caller (a parked thread, or an event loop's notification).
//!
//! Invariants:
//! - A waiter's state goes `Waiting` → `Decided` → `Taken`, or `Waiting` →
//!   `Taken` when it is withdrawn undecided. In normal mode (see `limit`)
//!   it may also go `Waiting` → `Woken` (told to compete for a returned
//!   unit, still queued, holding nothing), and from `Woken` back to
//!   `Waiting` (it lost the race and keeps its place), to `Decided` (a
//!   hand-off, or `close`), or to `Taken` (withdrawn). Only the queue
//!   decides or wakes it, and only the queue puts it back to `Waiting`
//!   (all under the queue lock); only its caller takes the outcome.
//! - Its notification ([`Waiter::on_decided`]) runs exactly once, after
//!   the outcome is decided or the waiter is woken, and outside every lock
//!   of the limit, or is
//!   dropped (outside the locks) when the waiter is withdrawn or taken: it
//!   is stored under the state lock, so `decide` never slips in between the
//!   check and the store and a notification is never missed.
//! - Lock order: `state`, then `notify`; both only ever inside the queue
//!   lock or on their own.

use std::any::Any;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::{fork_generation, lock, Grant, Outcome};
use crate::shards::thread_index;
use crate::sync::atomic::AtomicBool;
use crate::sync::{Condvar, Mutex, MutexGuard};

/// Something a thread can block on until it is served or a deadline passes.
/// Type-erased so that a binding can block without naming the item type.
pub trait Park: Sync {
    /// Blocks until the wait is decided or woken to compete (`true`) or
    /// `deadline` passes (`false`; `None` waits forever).
    fn park(&self, deadline: Option<Instant>) -> bool;
}

/// Parks until `deadline` (`None`: forever) in slices of at most `slice`:
/// `park(until)` blocks for one slice (a binding lets other threads run
/// meanwhile) and says whether the wait was decided or woken; after each
/// slice that ends undecided before the deadline, `between` runs (a binding
/// checks for interrupts there) and its `Err` ends the wait. `Ok(true)`:
/// decided or woken; `Ok(false)`: the deadline passed.
pub fn park_in_slices<E>(
    deadline: Option<Instant>,
    slice: Duration,
    mut park: impl FnMut(Instant) -> bool,
    mut between: impl FnMut() -> Result<(), E>,
) -> Result<bool, E> {
    loop {
        let slice_end = Instant::now() + slice;
        if park(deadline.map_or(slice_end, |d| d.min(slice_end))) {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        between()?;
    }
}

/// Runs once a waiter's outcome is decided, after the limit's locks are
/// released (so it may take other locks, or enter an interpreter).
pub trait Notify: Send {
    /// Runs the notification (once: it is consumed).
    fn notify(self: Box<Self>);
    /// What the notification is, for a binding that must show what it
    /// refers to a garbage collector (see [`Limit::visit_notifications`](super::Limit::visit_notifications)).
    fn as_any(&self) -> &dyn Any;
}

impl<F: FnOnce() + Send + 'static> Notify for F {
    fn notify(self: Box<Self>) {
        self()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

enum State<I> {
    Waiting,
    /// Woken to compete for a unit (normal mode): nothing is granted, and
    /// the waiter is still queued (see `Limit::settle`).
    Woken,
    Decided(Outcome<I>),
    Taken,
}

/// One blocked `get` or `get_many`: a thread parked on it, or (with
/// [`Waiter::on_decided`]) an event loop told when to look.
pub struct Waiter<I> {
    state: Mutex<State<I>>,
    cond: Condvar,
    /// Lock order: `state`, then `notify`.
    pub(super) notify: Mutex<Option<Box<dyn Notify>>>,
    /// Units it waits for; a batch takes them all at once.
    pub(super) need: usize,
    pub(super) batch: bool,
    /// A batch refused a preferred turn (another batch had it): it gets
    /// the turn as soon as that batch is served or gives up. Only read and
    /// written under the queue lock.
    pub(super) wants_turn: AtomicBool,
    /// Woken to compete and not back yet (state `Woken`): counted in the
    /// queue's `woken`. Only read and written under the queue lock.
    pub(super) roused: AtomicBool,
    /// The waiting thread ([`thread_index`]) and the fork generation it
    /// queued in: what decides whether it survives a fork.
    pub(super) thread: usize,
    pub(super) generation: u64,
    /// When it queued, for the wait-time histogram.
    started: Instant,
}

impl<I> Waiter<I> {
    pub(super) fn new(need: usize, batch: bool) -> Self {
        Waiter {
            state: Mutex::new(State::Waiting),
            cond: Condvar::new(),
            notify: Mutex::new(None),
            need,
            batch,
            wants_turn: AtomicBool::new(false),
            roused: AtomicBool::new(false),
            thread: thread_index(),
            generation: fork_generation(),
            started: Instant::now(),
        }
    }

    /// How long it has waited, since it first queued (a waiter that loses
    /// the race it was woken for keeps its place and its start).
    pub fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    /// Wakes the waiter to compete for a unit, granting nothing (normal
    /// mode). Under the queue lock; the caller owes a [`Waiter::wake`] once
    /// it has released it, as after [`Waiter::decide`].
    pub(super) fn rouse(&self) {
        let mut state = lock(&self.state);
        if matches!(*state, State::Waiting) {
            *state = State::Woken;
            self.cond.notify_one();
        }
    }

    /// Puts a woken waiter back to waiting (it lost the race; under the
    /// queue lock). Its notification was run by the wake-up: the caller
    /// sets a new one if it needs one.
    pub(super) fn unrouse(&self) {
        let mut state = lock(&self.state);
        if matches!(*state, State::Woken) {
            *state = State::Waiting;
        }
    }

    /// Whether it was woken to compete and has not settled yet: its caller
    /// calls [`Limit::settle`](super::Limit::settle).
    pub fn is_woken(&self) -> bool {
        matches!(*lock(&self.state), State::Woken)
    }

    /// Decides the outcome. The caller owes a [`Waiter::wake`] once it has
    /// released the queue lock.
    pub(super) fn decide(&self, outcome: Outcome<I>) {
        *lock(&self.state) = State::Decided(outcome);
        self.cond.notify_one();
    }

    /// Runs the notification set by [`Waiter::on_decided`], if any.
    pub(super) fn wake(&self) {
        let notify = lock(&self.notify).take();
        if let Some(notify) = notify {
            notify.notify();
        }
    }

    /// Runs `notify` once the outcome is decided: later, from the thread
    /// that decides it (outside every lock of the limit), or now, here, if
    /// it is decided already. Replaces an earlier notification. One set on
    /// a waiter withdrawn or taken already never runs (it is dropped).
    pub fn on_decided(&self, notify: Box<dyn Notify>) {
        let state = lock(&self.state);
        match *state {
            State::Waiting => {
                // Stored under the state lock: `decide` cannot slip in
                // between the check and the store, so it is never missed.
                let old = lock(&self.notify).replace(notify);
                drop(state);
                drop(old);
            }
            State::Decided(_) | State::Woken => {
                drop(state);
                notify.notify();
            }
            State::Taken => {
                drop(state);
                drop(notify);
            }
        }
    }

    /// Marks a waiter just removed from the queue undecided (or woken) as finished
    /// (it will never be decided), and returns its notification for the
    /// caller to drop outside every lock.
    pub(super) fn withdraw(&self) -> Option<Box<dyn Notify>> {
        let mut state = lock(&self.state);
        if matches!(*state, State::Waiting | State::Woken) {
            *state = State::Taken;
        }
        let notify = lock(&self.notify).take();
        drop(state);
        notify
    }

    /// Takes the notification, leaving the waiter queued (unnotified).
    pub(super) fn forget_notify(&self) -> Option<Box<dyn Notify>> {
        lock(&self.notify).take()
    }

    /// Whether the outcome is decided (and not yet taken).
    pub fn is_decided(&self) -> bool {
        matches!(*lock(&self.state), State::Decided(_))
    }

    /// The outcome, once decided; afterwards `None`.
    pub fn take(&self) -> Option<Outcome<I>> {
        let mut state = lock(&self.state);
        match std::mem::replace(&mut *state, State::Taken) {
            State::Decided(outcome) => Some(outcome),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Shows the items of a decided, untaken grant to `f`, for a garbage
    /// collector's traversal. Skips them if another thread holds the state
    /// (a collector must never block).
    pub fn visit_granted<E>(&self, mut f: impl FnMut(&I) -> Result<(), E>) -> Result<(), E> {
        let Ok(state) = self.state.try_lock() else {
            return Ok(());
        };
        match &*state {
            State::Decided(Outcome::Granted(Grant::Item(item))) => f(item),
            State::Decided(Outcome::Granted(Grant::Batch(units))) => {
                units.items.iter().try_for_each(f)
            }
            _ => Ok(()),
        }
    }
}

impl<I: Send> Park for Waiter<I> {
    fn park(&self, deadline: Option<Instant>) -> bool {
        let state = lock(&self.state);
        wait_while(&self.cond, state, deadline, |s| matches!(s, State::Waiting)).is_some()
    }
}

/// Waits on `cond` while `blocked` holds, until `deadline` (`None`: no
/// limit). Returns the guard once `blocked` is false, `None` on timeout.
fn wait_while<'a, T>(
    cond: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    mut blocked: impl FnMut(&T) -> bool,
) -> Option<MutexGuard<'a, T>> {
    while blocked(&guard) {
        guard = match deadline {
            None => cond.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let now = Instant::now();
                // loom has no clock (its timed wait never times out): there,
                // a deadline has always passed by the time a thread would
                // block, so the models explore a timeout racing each grant.
                if cfg!(loom) || now >= deadline {
                    return None;
                }
                cond.wait_timeout(guard, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
    Some(guard)
}
