//! The `max_size` bound of a pool and its fair queue of waiters.
//!
//! Invariants:
//! - `alive` counts the objects charged against `max`: idle, handed out,
//!   being created, or granted to a waiter. It never exceeds `max`: it only
//!   rises through [`Limit::try_reserve`]'s compare-and-swap.
//! - A waiter is in `queue.waiters` exactly while its outcome is undecided,
//!   and `waiting` equals the queue's length whenever the lock is free.
//! - Outcomes are decided only under the queue lock, and always for the
//!   front waiter: waiters are served in arrival order. (A thread that
//!   arrives just as an object is returned may take it before the front
//!   waiter is served; it never takes one that was granted.)
//! - A grant is a move: an item or a slot granted to a waiter belongs to it
//!   alone. It is taken with [`Waiter::take`], or comes back from
//!   [`Limit::cancel`] when the waiter gave up at the same moment, so a
//!   timed-out or interrupted waiter never loses an object or a slot.
//! - No lost wake-up: whoever frees capacity (decrements `alive`, stores an
//!   idle item) then reads `waiting`; a waiter raises `waiting` (under the
//!   lock) then retries `try_reserve` and the idle storage. Both sides put a
//!   `SeqCst` fence between their write and their read, so at least one of
//!   them sees the other.
//!
//! - A waiter's notification ([`Waiter::on_decided`]) runs exactly once,
//!   after its outcome is decided and outside the queue lock.
//!
//! No lock here is ever held while user code (a factory, a hook, Python,
//! a notification) runs, and no lock is taken while another is held except
//! the waiter's own locks inside the queue lock.

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use crate::sync::thread::{self, ThreadId};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What a waiter is given.
#[derive(Debug, PartialEq, Eq)]
pub enum Grant<I> {
    /// An object returned by another holder.
    Item(I),
    /// Room to create one object (already charged to `alive`).
    Slot,
}

/// How a wait ended, when it did not time out.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<I> {
    Granted(Grant<I>),
    Closed,
}

/// The result of joining the queue.
pub enum Enqueued<I> {
    /// Capacity was free after all; nothing to wait for.
    Ready(Grant<I>),
    /// Queued: park on the waiter, then take its outcome.
    Queued(Arc<Waiter<I>>),
    Closed,
}

/// Something a thread can block on until it is served or a deadline passes.
/// Type-erased so that a binding can block without naming the item type.
pub trait Park: Sync {
    /// Blocks until the wait is decided (`true`) or `deadline` passes
    /// (`false`; `None` waits forever).
    fn park(&self, deadline: Option<Instant>) -> bool;
}

enum State<I> {
    Waiting,
    Decided(Outcome<I>),
    Taken,
}

/// Runs once a waiter's outcome is decided, after the limit's locks are
/// released (so it may take other locks, or enter an interpreter).
pub type Notify = Box<dyn FnOnce() + Send>;

/// One blocked `get`: a thread parked on it, or (with [`Waiter::on_decided`])
/// an event loop told when to look.
pub struct Waiter<I> {
    state: Mutex<State<I>>,
    cond: Condvar,
    /// Lock order: `state`, then `notify`.
    notify: Mutex<Option<Notify>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; if something did, the data
    // is still consistent, so keep going rather than poison the pool.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<I> Waiter<I> {
    fn new() -> Self {
        Waiter {
            state: Mutex::new(State::Waiting),
            cond: Condvar::new(),
            notify: Mutex::new(None),
        }
    }

    /// Decides the outcome. The caller owes a [`Waiter::wake`] once it has
    /// released the queue lock.
    fn decide(&self, outcome: Outcome<I>) {
        *lock(&self.state) = State::Decided(outcome);
        self.cond.notify_one();
    }

    /// Runs the notification set by [`Waiter::on_decided`], if any.
    fn wake(&self) {
        let notify = lock(&self.notify).take();
        if let Some(notify) = notify {
            notify();
        }
    }

    /// Runs `notify` once the outcome is decided: later, from the thread
    /// that decides it (outside every lock of the limit), or now, here, if
    /// it is decided already. Replaces an earlier notification.
    pub fn on_decided(&self, notify: Notify) {
        let state = lock(&self.state);
        if matches!(*state, State::Waiting) {
            // Stored under the state lock: `decide` cannot slip in between
            // the check and the store, so the notification is never missed.
            *lock(&self.notify) = Some(notify);
            return;
        }
        drop(state);
        notify();
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

struct Queue<I> {
    waiters: VecDeque<Arc<Waiter<I>>>,
    closed: bool,
    /// The [`fork_generation`] the waiters were queued in.
    generation: u64,
}

/// Bumped in a child process after `fork()` (see [`note_fork`]). Always
/// std's atomic: a process-wide static, outside what the loom models cover.
static FORK_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Tells every limit that this process is a child just forked: the threads
/// queued as waiters belong to the parent and do not exist here, so they
/// are forgotten the next time each queue is used, and a `put` in the child
/// is never granted to a thread that will not take it. Call it right after
/// the fork, in the child (the Python binding registers it with
/// `os.register_at_fork`).
pub fn note_fork() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// Admits one thread at a time; the others block in [`Park::park`].
/// Batches (`get_many`) pass it before waiting while holding objects. It is
/// re-entrant: a hook of the holding thread may run a batch on the same pool
/// without blocking on itself.
pub struct Gate {
    /// The holding thread and how many times it entered.
    holder: Mutex<Option<(ThreadId, usize)>>,
    /// The [`fork_generation`] of the holder; written under `holder`'s lock.
    generation: AtomicU64,
    cond: Condvar,
}

impl Gate {
    fn new() -> Self {
        Gate {
            holder: Mutex::new(None),
            generation: AtomicU64::new(fork_generation()),
            cond: Condvar::new(),
        }
    }

    /// The holder, locked; after a fork, first without a holder from the
    /// parent (its thread does not exist in this process).
    fn lock_holder(&self) -> MutexGuard<'_, Option<(ThreadId, usize)>> {
        let mut holder = lock(&self.holder);
        let generation = fork_generation();
        if self.generation.load(Ordering::Relaxed) != generation {
            self.generation.store(generation, Ordering::Relaxed);
            *holder = None;
        }
        holder
    }

    /// Leaves once. Only for the holder, once per successful park.
    pub fn leave(&self) {
        let mut holder = self.lock_holder();
        if let Some((_, depth)) = holder.as_mut() {
            *depth -= 1;
            if *depth == 0 {
                *holder = None;
                self.cond.notify_one();
            }
        }
    }
}

impl Park for Gate {
    /// Blocks until this thread holds the gate (`true`) or `deadline`.
    fn park(&self, deadline: Option<Instant>) -> bool {
        let me = thread::current().id();
        let held = wait_while(&self.cond, self.lock_holder(), deadline, |h| {
            h.is_some_and(|(owner, _)| owner != me)
        });
        match held {
            Some(mut holder) => {
                let depth = holder.map_or(0, |(_, d)| d);
                *holder = Some((me, depth + 1));
                true
            }
            None => false,
        }
    }
}

pub struct Limit<I> {
    max: usize,
    gate: Gate,
    alive: CachePadded<AtomicUsize>,
    waiting: CachePadded<AtomicUsize>,
    queue: Mutex<Queue<I>>,
}

impl<I> Limit<I> {
    pub fn new(max: usize) -> Self {
        Limit {
            max,
            gate: Gate::new(),
            alive: CachePadded::new(AtomicUsize::new(0)),
            waiting: CachePadded::new(AtomicUsize::new(0)),
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                closed: false,
                generation: fork_generation(),
            }),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The waiters' queue, locked; after a fork, first without the parent's
    /// waiters (their threads do not exist in this process).
    fn lock_queue(&self) -> MutexGuard<'_, Queue<I>> {
        let mut queue = lock(&self.queue);
        let generation = fork_generation();
        if queue.generation != generation {
            queue.generation = generation;
            let ghosts = queue.waiters.len();
            queue.waiters.clear();
            self.waiting.fetch_sub(ghosts, Ordering::Relaxed);
        }
        queue
    }

    /// The gate batches pass before they wait holding objects.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Objects currently charged against the bound.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Threads queued for an object.
    #[inline]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
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

    /// One charged object is gone (destroyed, or its creation failed): the
    /// slot goes to the front waiter, or back to the pool.
    pub fn release(&self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut queue = self.lock_queue();
        let mut served = Vec::new();
        while !queue.waiters.is_empty() && self.try_reserve() {
            served.push(self.serve_front(&mut queue, Grant::Slot));
        }
        drop(queue);
        served.iter().for_each(|w| w.wake());
    }

    /// Hands `item` to the front waiter, or gives it back if none waits.
    #[inline]
    pub fn offer(&self, item: I) -> Result<(), I> {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return Err(item);
        }
        let mut queue = self.lock_queue();
        if queue.waiters.is_empty() {
            return Err(item);
        }
        let served = self.serve_front(&mut queue, Grant::Item(item));
        drop(queue);
        served.wake();
        Ok(())
    }

    /// Called after storing an idle item: serves queued waiters from `take`
    /// (the idle storage) in case one queued while the item was stored.
    #[inline]
    pub fn serve_from(&self, mut take: impl FnMut() -> Option<I>) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut queue = self.lock_queue();
        let mut served = Vec::new();
        while !queue.waiters.is_empty() {
            match take() {
                Some(item) => served.push(self.serve_front(&mut queue, Grant::Item(item))),
                None => break,
            }
        }
        drop(queue);
        served.iter().for_each(|w| w.wake());
    }

    /// Decides the front waiter's outcome and returns it, to be woken once
    /// the queue lock is released.
    fn serve_front(&self, queue: &mut Queue<I>, grant: Grant<I>) -> Arc<Waiter<I>> {
        let waiter = queue.waiters.pop_front().expect("caller checked");
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        waiter.decide(Outcome::Granted(grant));
        waiter
    }

    /// Joins the queue, unless `take_idle` (the idle storage) or the bound
    /// has something after all.
    pub fn enqueue(&self, mut take_idle: impl FnMut() -> Option<I>) -> Enqueued<I> {
        let mut queue = self.lock_queue();
        if queue.closed {
            return Enqueued::Closed;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let ready = match take_idle() {
            Some(item) => Some(Grant::Item(item)),
            None => self.try_reserve().then_some(Grant::Slot),
        };
        if let Some(grant) = ready {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Enqueued::Ready(grant);
        }
        let waiter = Arc::new(Waiter::new());
        queue.waiters.push_back(Arc::clone(&waiter));
        Enqueued::Queued(waiter)
    }

    /// Withdraws a waiter that stopped waiting. `None` if it was still
    /// queued; otherwise the outcome it was given meanwhile, which the
    /// caller now owns.
    pub fn cancel(&self, waiter: &Arc<Waiter<I>>) -> Option<Outcome<I>> {
        let mut queue = self.lock_queue();
        if let Some(pos) = queue.waiters.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            queue.waiters.remove(pos);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        drop(queue);
        waiter.take()
    }

    /// Wakes every waiter with [`Outcome::Closed`]; later waits fail at once.
    pub fn close(&self) {
        let mut queue = self.lock_queue();
        queue.closed = true;
        let closed: Vec<_> = queue.waiters.drain(..).collect();
        self.waiting.fetch_sub(closed.len(), Ordering::Relaxed);
        for waiter in &closed {
            waiter.decide(Outcome::Closed);
        }
        drop(queue);
        closed.iter().for_each(|w| w.wake());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn queued<I>(e: Enqueued<I>) -> Arc<Waiter<I>> {
        match e {
            Enqueued::Queued(w) => w,
            _ => panic!("expected to queue"),
        }
    }

    #[test]
    fn reserve_never_exceeds_max() {
        let l: Limit<u32> = Limit::new(2);
        assert!(l.try_reserve());
        assert!(l.try_reserve());
        assert!(!l.try_reserve());
        assert_eq!(l.alive(), 2);
        l.release();
        assert!(l.try_reserve());
    }

    #[test]
    fn enqueue_takes_free_capacity_instead_of_waiting() {
        let l: Limit<u32> = Limit::new(1);
        assert!(matches!(l.enqueue(|| None), Enqueued::Ready(Grant::Slot)));
        assert!(matches!(
            l.enqueue(|| Some(5)),
            Enqueued::Ready(Grant::Item(5))
        ));
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let l: Limit<u32> = Limit::new(1);
        assert!(l.try_reserve());
        let a = queued(l.enqueue(|| None));
        let b = queued(l.enqueue(|| None));
        assert_eq!(l.waiting(), 2);
        assert_eq!(l.offer(1), Ok(()));
        assert_eq!(a.take(), Some(Outcome::Granted(Grant::Item(1))));
        assert_eq!(b.take(), None);
        l.release();
        assert_eq!(b.take(), Some(Outcome::Granted(Grant::Slot)));
        assert_eq!(l.waiting(), 0);
        assert_eq!(l.offer(2), Err(2));
    }

    #[test]
    fn park_times_out_and_cancel_withdraws() {
        let l: Limit<u32> = Limit::new(1);
        assert!(l.try_reserve());
        let w = queued(l.enqueue(|| None));
        let start = Instant::now();
        assert!(!w.park(Some(start + Duration::from_millis(20))));
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(l.cancel(&w), None);
        assert_eq!(l.waiting(), 0);
        // The slot was not consumed by the cancelled waiter.
        l.release();
        assert_eq!(l.alive(), 0);
    }

    #[test]
    fn notification_runs_once_decided_or_at_once_if_decided_already() {
        use std::sync::atomic::AtomicUsize;
        let l: Limit<u32> = Limit::new(1);
        assert!(l.try_reserve());
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = |calls: &Arc<AtomicUsize>| -> Notify {
            let calls = Arc::clone(calls);
            Box::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
            })
        };
        let w = queued(l.enqueue(|| None));
        w.on_decided(counter(&calls));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(!w.is_decided());
        l.offer(3).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(w.is_decided());
        // Set after the decision: runs at once, and only that once.
        w.on_decided(counter(&calls));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(w.take(), Some(Outcome::Granted(Grant::Item(3))));
        // Closing notifies every queued waiter.
        let a = queued(l.enqueue(|| None));
        let b = queued(l.enqueue(|| None));
        a.on_decided(counter(&calls));
        b.on_decided(counter(&calls));
        l.close();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(a.take(), Some(Outcome::Closed));
        assert_eq!(b.take(), Some(Outcome::Closed));
    }

    #[test]
    fn cancel_after_grant_returns_the_grant() {
        let l: Limit<u32> = Limit::new(1);
        assert!(l.try_reserve());
        let w = queued(l.enqueue(|| None));
        l.offer(9).unwrap();
        assert_eq!(l.cancel(&w), Some(Outcome::Granted(Grant::Item(9))));
    }

    #[test]
    fn close_wakes_everyone_and_refuses_new_waiters() {
        let l: Arc<Limit<u32>> = Arc::new(Limit::new(1));
        assert!(l.try_reserve());
        let w = queued(l.enqueue(|| None));
        let t = {
            let w = Arc::clone(&w);
            std::thread::spawn(move || w.park(None))
        };
        std::thread::sleep(Duration::from_millis(10));
        l.close();
        assert!(t.join().unwrap());
        assert_eq!(w.take(), Some(Outcome::Closed));
        assert!(matches!(l.enqueue(|| None), Enqueued::Closed));
    }

    #[test]
    fn the_gate_is_reentrant_for_its_holder() {
        let l: Limit<u32> = Limit::new(1);
        assert!(l.gate().park(None));
        assert!(
            l.gate().park(Some(Instant::now())),
            "the holder enters again"
        );
        l.gate().leave();
        let other = std::thread::scope(|s| {
            s.spawn(|| {
                l.gate()
                    .park(Some(Instant::now() + Duration::from_millis(10)))
            })
            .join()
            .unwrap()
        });
        assert!(!other, "still held once");
        l.gate().leave();
        assert!(std::thread::scope(|s| s
            .spawn(|| l.gate().park(Some(Instant::now())))
            .join()
            .unwrap()));
    }

    #[test]
    fn the_gate_admits_one_at_a_time() {
        let l: Arc<Limit<u32>> = Arc::new(Limit::new(1));
        assert!(l.gate().park(None));
        let soon = Instant::now() + Duration::from_millis(20);
        let second = std::thread::scope(|s| s.spawn(|| l.gate().park(Some(soon))).join().unwrap());
        assert!(!second, "held: another thread times out");
        let t = {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                l.gate()
                    .park(Some(Instant::now() + Duration::from_secs(10)))
            })
        };
        std::thread::sleep(Duration::from_millis(10));
        l.gate().leave();
        assert!(t.join().unwrap());
    }

    #[test]
    fn release_wakes_a_parked_thread() {
        let l: Arc<Limit<u32>> = Arc::new(Limit::new(1));
        assert!(l.try_reserve());
        let w = queued(l.enqueue(|| None));
        let t = {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                l.release();
            })
        };
        assert!(w.park(Some(Instant::now() + Duration::from_secs(10))));
        t.join().unwrap();
        assert_eq!(w.take(), Some(Outcome::Granted(Grant::Slot)));
        assert_eq!(l.alive(), 1);
    }
}
