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

use std::any::Any;
use std::collections::VecDeque;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::shards::thread_index;
use crate::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// How long a waiting batch may be passed by (see the module's invariants)
/// before units are set aside for it; also the shortest preferred turn. Go's
/// `sync.Mutex` switches to hand-off after a waiter has waited as long.
pub const PATIENCE: Duration = Duration::from_millis(1);

/// Units granted at once: idle items, and slots (room to create one object
/// each, already charged to `alive`).
#[derive(Debug, PartialEq, Eq)]
pub struct Units<I> {
    pub items: Vec<I>,
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
    pub fn len(&self) -> usize {
        self.items.len() + self.slots
    }

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
    fn notify(self: Box<Self>);
    /// What the notification is, for a binding that must show what it
    /// refers to a garbage collector (see [`Limit::visit_notifications`]).
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
    notify: Mutex<Option<Box<dyn Notify>>>,
    /// Units it waits for; a batch takes them all at once.
    need: usize,
    batch: bool,
    /// A batch refused a preferred turn (another batch had it): it gets
    /// the turn as soon as that batch is served or gives up. Only read and
    /// written under the queue lock.
    wants_turn: AtomicBool,
    /// The waiting thread ([`thread_index`]) and the fork generation it
    /// queued in: what decides whether it survives a fork.
    thread: usize,
    generation: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; if something did, the data
    // is still consistent, so keep going rather than poison the pool.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<I> Waiter<I> {
    fn new(need: usize, batch: bool) -> Self {
        Waiter {
            state: Mutex::new(State::Waiting),
            cond: Condvar::new(),
            notify: Mutex::new(None),
            need,
            batch,
            wants_turn: AtomicBool::new(false),
            thread: thread_index(),
            generation: fork_generation(),
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
    fn withdraw(&self) -> Option<Box<dyn Notify>> {
        let mut state = lock(&self.state);
        if matches!(*state, State::Waiting) {
            *state = State::Taken;
        }
        let notify = lock(&self.notify).take();
        drop(state);
        notify
    }

    /// Takes the notification, leaving the waiter queued (unnotified).
    fn forget_notify(&self) -> Option<Box<dyn Notify>> {
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

struct Queue<I> {
    waiters: VecDeque<Arc<Waiter<I>>>,
    closed: bool,
    /// The [`fork_generation`] the queue was last used in.
    generation: u64,
    /// The batch units are set aside for, if any (it is in `waiters`).
    preferred: Option<Arc<Waiter<I>>>,
    /// Units set aside for `preferred`. Without a preferred batch (only
    /// after a fork forgot it), spare units that `serve` hands out first.
    set_aside: Units<I>,
}

impl<I> Queue<I> {
    fn is_preferred(&self, waiter: &Arc<Waiter<I>>) -> bool {
        self.preferred
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, waiter))
    }

    fn position(&self, waiter: &Arc<Waiter<I>>) -> Option<usize> {
        self.waiters.iter().position(|w| Arc::ptr_eq(w, waiter))
    }

    /// Once the preferred batch is served or gives up: the turn passes to
    /// the first batch that asked for it meanwhile, if any.
    fn pass_turn(&mut self) {
        self.preferred = self
            .waiters
            .iter()
            .find(|w| w.wants_turn.load(Ordering::Relaxed))
            .cloned();
        if let Some(next) = &self.preferred {
            next.wants_turn.store(false, Ordering::Relaxed);
        }
    }
}

// The fork log: process-wide statics, always std's atomics (outside what
// the loom models cover). Written only by `note_fork`, in a child process
// just forked, where no other thread exists.
static FORK_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// 1 + the [`thread_index`] of the thread that made the last fork.
static FORKER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The generation of that thread's first fork in its unbroken run of forks.
static FORKER_SINCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Tells every limit that this process is a child just forked by the
/// calling thread. Only that thread exists in the child: waiters of other
/// threads are forgotten the next time each queue is used (a `put` in the
/// child is never granted to a thread that will not take it), and the
/// caller's own waiters (an event loop's tasks, if it forked from a
/// coroutine) stay queued and are served. Call it right after the fork, in
/// the child, from the thread that forked (the Python binding registers it
/// with `os.register_at_fork`).
pub fn note_fork() {
    use std::sync::atomic::Ordering::SeqCst;
    let me = thread_index() + 1;
    let generation = FORK_GENERATION.fetch_add(1, SeqCst) + 1;
    if FORKER.swap(me, SeqCst) != me {
        FORKER_SINCE.store(generation, SeqCst);
    }
}

fn fork_generation() -> u64 {
    FORK_GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether `waiter`'s thread exists in this process: it queued after the
/// last fork, or it made every fork since it queued.
fn survives_forks<I>(waiter: &Waiter<I>, generation: u64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    waiter.generation == generation
        || (FORKER.load(Relaxed) == waiter.thread + 1
            && waiter.generation + 1 >= FORKER_SINCE.load(Relaxed))
}

/// What `serve` draws units from, besides spare set-aside units and free
/// slots: an item being returned, then the store.
struct Draw<'a, I> {
    offered: Option<I>,
    store: &'a dyn Store<I>,
}

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

    pub fn max(&self) -> usize {
        self.max
    }

    /// The waiters' queue, locked; after a fork, first without the waiters
    /// whose threads do not exist in this process.
    fn lock_queue(&self) -> MutexGuard<'_, Queue<I>> {
        let mut queue = lock(&self.queue);
        let generation = fork_generation();
        if queue.generation != generation {
            queue.generation = generation;
            let before = queue.waiters.len();
            queue.waiters.retain(|w| survives_forks(w, generation));
            self.waiting
                .fetch_sub(before - queue.waiters.len(), Ordering::Relaxed);
            if queue
                .preferred
                .as_ref()
                .is_some_and(|p| !survives_forks(p, generation))
            {
                // What was set aside for it is spare: the next waiters
                // served get it first.
                queue.preferred = None;
            }
        }
        queue
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
    pub fn note_cancelled(&self) {
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
    pub fn serve_from(&self, store: &dyn Store<I>) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) != 0 {
            self.serve_locked(None, store);
        }
    }

    /// `serve` under the lock, then the wake-ups; gives back `offered` if
    /// no waiter took it.
    #[cold]
    fn serve_locked(&self, offered: Option<I>, store: &dyn Store<I>) -> Option<I> {
        let mut queue = self.lock_queue();
        let mut draw = Draw { offered, store };
        let mut woken = Vec::new();
        self.serve(&mut queue, &mut draw, &mut woken);
        drop(queue);
        woken.iter().for_each(|w| w.wake());
        draw.offered
    }

    /// Decides what the units that can be drawn now allow, walking the queue
    /// in arrival order (see the module's invariants). The caller wakes
    /// `woken` once it has released the lock.
    fn serve(&self, queue: &mut Queue<I>, draw: &mut Draw<'_, I>, woken: &mut Vec<Arc<Waiter<I>>>) {
        let mut i = 0;
        while i < queue.waiters.len() {
            let waiter = &queue.waiters[i];
            let need = waiter.need;
            if !waiter.batch {
                let Some(grant) = self.draw_unit(queue, draw) else {
                    break;
                };
                self.grant(queue, i, grant, woken);
                continue;
            }
            if queue.is_preferred(waiter) {
                while queue.set_aside.len() < need {
                    match self.draw_fresh(draw) {
                        Some(unit) => queue.set_aside.push(unit),
                        None => break,
                    }
                }
                if queue.set_aside.len() < need {
                    break; // everything drawn is kept for it
                }
                // Exactly `need`: spare units left by a forgotten batch (see
                // `lock_queue`) may have made the set-aside larger.
                let units = if queue.set_aside.len() == need {
                    std::mem::take(&mut queue.set_aside)
                } else {
                    let mut units = Units::default();
                    while units.len() < need {
                        units.push(queue.set_aside.pop().expect("counted above"));
                    }
                    units
                };
                self.grant(queue, i, Grant::Batch(units), woken);
                queue.pass_turn();
                if queue.preferred.is_some() {
                    i = 0; // it may be ahead of here: walk again
                }
                continue;
            }
            // Gather for a batch only when all of it looks free, and never
            // ahead of a preferred batch (further back in the queue).
            if queue.preferred.is_none() && self.available(queue, draw) >= need {
                let mut units = Units::default();
                while units.len() < need {
                    match self.draw_unit(queue, draw) {
                        Some(unit) => units.push(unit),
                        None => break,
                    }
                }
                if units.len() == need {
                    self.grant(queue, i, Grant::Batch(units), woken);
                    continue;
                }
                // Fewer than counted: a concurrent get took some. Keep them
                // for this batch (the spare ones were drawn first, so none is
                // left), as if its preferred turn had begun.
                queue.preferred = Some(Arc::clone(&queue.waiters[i]));
                queue.set_aside = units;
                break;
            }
            i += 1; // passed by: those behind it may be served
        }
        self.set_aside_items
            .store(queue.set_aside.items.len(), Ordering::Relaxed);
    }

    /// The next unit for whoever is served: spare set-aside units first (a
    /// fork forgot the batch they were for), then fresh ones.
    fn draw_unit(&self, queue: &mut Queue<I>, draw: &mut Draw<'_, I>) -> Option<Grant<I>> {
        if queue.preferred.is_none() {
            if let Some(unit) = queue.set_aside.pop() {
                return Some(unit);
            }
        }
        self.draw_fresh(draw)
    }

    /// An item being returned, else an idle one, else a free slot.
    fn draw_fresh(&self, draw: &mut Draw<'_, I>) -> Option<Grant<I>> {
        if let Some(item) = draw.offered.take() {
            return Some(Grant::Item(item));
        }
        if let Some(item) = draw.store.take() {
            return Some(Grant::Item(item));
        }
        self.try_reserve().then_some(Grant::Slot)
    }

    /// Units that could be drawn now (a moment's reading: a concurrent get
    /// may take some first).
    fn available(&self, queue: &Queue<I>, draw: &Draw<'_, I>) -> usize {
        let spare = if queue.preferred.is_none() {
            queue.set_aside.len()
        } else {
            0
        };
        let free = self.max.saturating_sub(self.alive.load(Ordering::SeqCst));
        spare + usize::from(draw.offered.is_some()) + draw.store.count() + free
    }

    /// Decides the waiter at `index` and removes it from the queue.
    fn grant(
        &self,
        queue: &mut Queue<I>,
        index: usize,
        grant: Grant<I>,
        woken: &mut Vec<Arc<Waiter<I>>>,
    ) {
        let waiter = queue.waiters.remove(index).expect("caller checked");
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        waiter.decide(Outcome::Granted(grant));
        woken.push(waiter);
    }

    /// Joins the queue for one unit, unless the waiters can be served
    /// (this one included) at once.
    pub fn enqueue(&self, store: &dyn Store<I>) -> Enqueued<I> {
        self.join(1, false, store)
    }

    /// Joins the queue for `n` units at once (see the module's invariants),
    /// unless they are free now. A caller that asks for more than `max` waits
    /// for ever: check first.
    pub fn enqueue_batch(&self, n: usize, store: &dyn Store<I>) -> Enqueued<I> {
        self.join(n, true, store)
    }

    fn join(&self, need: usize, batch: bool, store: &dyn Store<I>) -> Enqueued<I> {
        let mut queue = self.lock_queue();
        if queue.closed {
            return Enqueued::Closed;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let waiter = Arc::new(Waiter::new(need, batch));
        queue.waiters.push_back(Arc::clone(&waiter));
        let mut woken = Vec::new();
        self.serve(
            &mut queue,
            &mut Draw {
                offered: None,
                store,
            },
            &mut woken,
        );
        drop(queue);
        let served = woken.iter().position(|w| Arc::ptr_eq(w, &waiter));
        if let Some(index) = served {
            woken.swap_remove(index);
        }
        woken.iter().for_each(|w| w.wake());
        match served.and_then(|_| waiter.take()) {
            Some(Outcome::Granted(grant)) => Enqueued::Ready(grant),
            _ => Enqueued::Queued(waiter),
        }
    }

    /// Withdraws a waiter that stopped waiting, and drops its notification.
    /// `None` if it was still queued with nothing set aside for it;
    /// otherwise what it was given meanwhile, which the caller now owns: its
    /// outcome, or (a preferred batch) a [`Grant::Batch`] of the units set
    /// aside for it, fewer than it needs, to give back.
    pub fn cancel(&self, waiter: &Arc<Waiter<I>>) -> Option<Outcome<I>> {
        let mut queue = self.lock_queue();
        let withdrawn = queue.position(waiter).map(|index| {
            queue.waiters.remove(index);
            // Still under the queue lock, so no `serve` can decide it now.
            let notify = waiter.withdraw();
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            let mut units = Units::default();
            if queue.is_preferred(waiter) {
                units = std::mem::take(&mut queue.set_aside);
                self.set_aside_items.store(0, Ordering::Relaxed);
                queue.pass_turn();
            }
            (units, notify)
        });
        drop(queue);
        // A decided waiter's notification was taken by its wake-up, or will
        // be: the caller owns the outcome now either way.
        let withdrawn = withdrawn.map(|(units, notify)| {
            drop(notify);
            units
        });
        match withdrawn {
            Some(units) if units.is_empty() => None,
            Some(units) => Some(Outcome::Granted(Grant::Batch(units))),
            None => waiter.take(),
        }
    }

    /// Starts a batch's preferred turn: units drawn from now on are set
    /// aside for it (and what is free now is, at once). `false` if another
    /// batch is preferred (or `waiter` is no batch); `true` if this one is
    /// (or was decided meanwhile).
    pub fn prefer(&self, waiter: &Arc<Waiter<I>>, store: &dyn Store<I>) -> bool {
        if !waiter.batch {
            return false;
        }
        let mut queue = self.lock_queue();
        if queue.position(waiter).is_none() {
            return true;
        }
        if let Some(preferred) = &queue.preferred {
            let mine = Arc::ptr_eq(preferred, waiter);
            if !mine {
                waiter.wants_turn.store(true, Ordering::Relaxed);
            }
            return mine;
        }
        queue.preferred = Some(Arc::clone(waiter));
        let mut woken = Vec::new();
        self.serve(
            &mut queue,
            &mut Draw {
                offered: None,
                store,
            },
            &mut woken,
        );
        drop(queue);
        woken.iter().for_each(|w| w.wake());
        true
    }

    /// Ends a batch's preferred turn if others wait behind it: returns the
    /// units set aside for it, which the caller gives back (to them).
    /// `None` (nothing changes) if nobody else waits or it is not preferred.
    pub fn unprefer(&self, waiter: &Arc<Waiter<I>>) -> Option<Units<I>> {
        let mut queue = self.lock_queue();
        if !queue.is_preferred(waiter) || queue.waiters.len() <= 1 {
            return None;
        }
        queue.preferred = None;
        self.set_aside_items.store(0, Ordering::Relaxed);
        Some(std::mem::take(&mut queue.set_aside))
    }

    /// Wakes every waiter with [`Outcome::Closed`]; later waits fail at
    /// once. Returns the units set aside (for the caller to destroy).
    pub fn close(&self) -> Units<I> {
        let mut queue = self.lock_queue();
        queue.closed = true;
        queue.preferred = None;
        let set_aside = std::mem::take(&mut queue.set_aside);
        self.set_aside_items.store(0, Ordering::Relaxed);
        let closed: Vec<_> = queue.waiters.drain(..).collect();
        self.waiting.fetch_sub(closed.len(), Ordering::Relaxed);
        for waiter in &closed {
            waiter.decide(Outcome::Closed);
        }
        drop(queue);
        closed.iter().for_each(|w| w.wake());
        set_aside
    }

    /// Shows the items set aside to `f`, for a garbage collector's
    /// traversal (skipped if the queue is locked: a collector never blocks).
    pub fn visit_set_aside<E>(&self, f: impl FnMut(&I) -> Result<(), E>) -> Result<(), E> {
        match self.queue.try_lock() {
            Ok(queue) => queue.set_aside.items.iter().try_for_each(f),
            Err(_) => Ok(()),
        }
    }

    /// Takes the units set aside (to break a reference cycle): the batch
    /// they were for gathers again.
    pub fn take_set_aside(&self) -> Units<I> {
        let mut queue = self.lock_queue();
        self.set_aside_items.store(0, Ordering::Relaxed);
        std::mem::take(&mut queue.set_aside)
    }

    /// Shows the notifications of the queued waiters to `f` (they belong to
    /// the queue), for a garbage collector's traversal; skips what another
    /// thread holds locked (a collector never blocks).
    pub fn visit_notifications<E>(
        &self,
        mut f: impl FnMut(&dyn Notify) -> Result<(), E>,
    ) -> Result<(), E> {
        let Ok(queue) = self.queue.try_lock() else {
            return Ok(());
        };
        for waiter in &queue.waiters {
            if let Ok(notify) = waiter.notify.try_lock() {
                if let Some(notify) = notify.as_deref() {
                    f(notify)?;
                }
            }
        }
        Ok(())
    }

    /// Takes the notifications of the queued waiters (to break a reference
    /// cycle; the caller drops them). Those waiters stay queued, unnotified.
    pub fn take_notifications(&self) -> Vec<Box<dyn Notify>> {
        let queue = self.lock_queue();
        queue
            .waiters
            .iter()
            .filter_map(|w| w.forget_notify())
            .collect()
    }
}

/// The turns of a waiting batch (see the module's invariants): passed by
/// for [`PATIENCE`], then preferred for as long as it has waited, and so
/// on. The batch's thread keeps it and calls [`Turns::next`] whenever
/// [`Turns::ends`] passes.
pub struct Turns {
    start: Instant,
    ends: Instant,
    preferred: bool,
}

impl Turns {
    pub fn new(start: Instant) -> Self {
        Turns {
            start,
            ends: start + PATIENCE,
            preferred: false,
        }
    }

    /// When the current turn ends.
    pub fn ends(&self) -> Instant {
        self.ends
    }

    /// Whether units are set aside for the batch now.
    pub fn is_preferred(&self) -> bool {
        self.preferred
    }

    /// Starts the next turn at `now`. Returns the units set aside for the
    /// batch when it yields them: the caller gives them back.
    pub fn next<I>(
        &mut self,
        limit: &Limit<I>,
        waiter: &Arc<Waiter<I>>,
        store: &dyn Store<I>,
        now: Instant,
    ) -> Option<Units<I>> {
        let waited = PATIENCE.max(now.saturating_duration_since(self.start));
        let mut yielded = None;
        let length = if self.preferred {
            yielded = limit.unprefer(waiter);
            self.preferred = yielded.is_none();
            if self.preferred {
                waited
            } else {
                PATIENCE
            }
        } else if limit.prefer(waiter, store) {
            self.preferred = true;
            waited
        } else {
            PATIENCE
        };
        self.ends = now.checked_add(length).unwrap_or(now);
        yielded
    }
}

// Built with std types; under loom only the models in `loom_tests` run.
#[cfg(all(test, not(loom)))]
mod tests;
