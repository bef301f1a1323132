//! A waiter: one blocked `get` or `get_many`, and how its outcome reaches
//! the caller (a parked thread, or an event loop's notification).
//!
//! Invariants:
//! - A waiter's state goes `Waiting` → `Decided` → `Taken`, or `Waiting` →
//!   `Taken` when it is withdrawn undecided. Only the queue decides it
//!   (under the queue lock); only its caller takes the outcome.
//! - Its notification ([`Waiter::on_decided`]) runs exactly once, after
//!   the outcome is decided and outside every lock of the limit, or is
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
    /// Blocks until the wait is decided (`true`) or `deadline` passes
    /// (`false`; `None` waits forever).
    fn park(&self, deadline: Option<Instant>) -> bool;
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
            thread: thread_index(),
            generation: fork_generation(),
            started: Instant::now(),
        }
    }

    /// How long it has waited.
    pub fn waited(&self) -> Duration {
        self.started.elapsed()
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
            State::Decided(_) => {
                drop(state);
                notify.notify();
            }
            State::Taken => {
                drop(state);
                drop(notify);
            }
        }
    }

    /// Marks a waiter just removed from the queue undecided as finished
    /// (it will never be decided), and returns its notification for the
    /// caller to drop outside every lock.
    pub(super) fn withdraw(&self) -> Option<Box<dyn Notify>> {
        let mut state = lock(&self.state);
        if matches!(*state, State::Waiting) {
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
