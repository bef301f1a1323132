//! The waiters' queue of a [`Limit`], and `serve`, which decides who gets
//! the units that can be drawn.
//!
//! Invariants (the walk's rules are in the `limit` module's header):
//! - A waiter is in `Queue::waiters` exactly while its outcome is
//!   undecided (woken or not), and `Limit::waiting` equals the queue's
//!   length whenever the lock is free.
//! - Outcomes are decided only under the queue lock, by `serve` (or by
//!   `settle`, for a woken waiter that wins its race); wake-ups run after it
//!   is released (a notification may enter an interpreter).
//! - `Queue::woken` is the number of queued waiters with `roused` set, and
//!   a waiter's `roused` is set exactly while its state is `Woken`: every
//!   path that removes a waiter or settles it goes through
//!   `Queue::unrouse`.
//! - A grant is a move: what `serve` grants belongs to that waiter alone;
//!   [`Limit::cancel`] returns it (with what was set aside for a preferred
//!   batch) to a waiter that gave up at the same moment.
//! - `set_aside` holds units for the preferred batch only, except after a
//!   fork forgot that batch: then they are spare, and drawn first.

use std::collections::VecDeque;

use std::time::Duration;

use super::{
    fork_generation, lock, survives_forks, Enqueued, Grant, Limit, Notify, Outcome, Settled, Store,
    Units, Waiter, SURPLUS,
};
use crate::sync::atomic::{fence, Ordering};
use crate::sync::{Arc, MutexGuard};

pub(super) struct Queue<I> {
    pub(super) waiters: VecDeque<Arc<Waiter<I>>>,
    /// Waiters woken to compete that have not settled (normal mode).
    pub(super) woken: usize,
    /// Batches among `waiters`.
    pub(super) batches: usize,
    pub(super) closed: bool,
    /// The [`fork_generation`] the queue was last used in.
    pub(super) generation: u64,
    /// The batch units are set aside for, if any (it is in `waiters`).
    pub(super) preferred: Option<Arc<Waiter<I>>>,
    /// Units set aside for `preferred`. Without a preferred batch (only
    /// after a fork forgot it), spare units that `serve` hands out first.
    pub(super) set_aside: Units<I>,
}

impl<I> Queue<I> {
    pub(super) fn is_preferred(&self, waiter: &Arc<Waiter<I>>) -> bool {
        self.preferred
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, waiter))
    }

    pub(super) fn position(&self, waiter: &Arc<Waiter<I>>) -> Option<usize> {
        self.waiters.iter().position(|w| Arc::ptr_eq(w, waiter))
    }

    /// Wakes `waiter` to compete (normal mode); the caller wakes it once
    /// the lock is released.
    fn rouse(&mut self, waiter: &Waiter<I>) {
        waiter.roused.store(true, Ordering::Relaxed);
        self.woken += 1;
        waiter.rouse();
    }

    /// Takes back the wake-up of a waiter being settled, decided or
    /// removed, if it had one; whether it had.
    fn unrouse(&mut self, waiter: &Waiter<I>) -> bool {
        let roused = waiter.roused.swap(false, Ordering::Relaxed);
        if roused {
            self.woken -= 1;
        }
        roused
    }

    /// Once the preferred batch is served or gives up: the turn passes to
    /// the first batch that asked for it meanwhile, if any.
    pub(super) fn pass_turn(&mut self) {
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

/// What `serve` draws units from, besides spare set-aside units and free
/// slots: an item being returned, then the store.
struct Draw<'a, I> {
    offered: Option<I>,
    store: &'a dyn Store<I>,
    /// Hand units over in arrival order whatever the mode: the item
    /// offered would be destroyed otherwise (the store cannot keep it).
    hand_off: bool,
}

/// Where `serve`'s walk goes after a waiter: `Stay` at the same index (the
/// waiter there was served and left the queue), `Next` past it, `Restart`
/// from the front, or `Stop`.
enum Step {
    Stay,
    Next,
    Restart,
    Stop,
}

impl<I> Limit<I> {
    /// The waiters' queue, locked; after a fork, first without the waiters
    /// whose threads do not exist in this process.
    pub(super) fn lock_queue(&self) -> MutexGuard<'_, Queue<I>> {
        let mut queue = lock(&self.queue);
        let generation = fork_generation();
        if queue.generation != generation {
            queue.generation = generation;
            let before = queue.waiters.len();
            queue.waiters.retain(|w| survives_forks(w, generation));
            self.waiting
                .fetch_sub(before - queue.waiters.len(), Ordering::Relaxed);
            queue.woken = queue
                .waiters
                .iter()
                .filter(|w| w.roused.load(Ordering::Relaxed))
                .count();
            queue.batches = queue.waiters.iter().filter(|w| w.batch).count();
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

    /// `serve` under the lock, then the wake-ups; gives back `offered` if
    /// no waiter took it.
    #[cold]
    pub(super) fn serve_locked(&self, offered: Option<I>, store: &dyn Store<I>) -> Option<I> {
        let (offered, woken) = self.serve_and_unlock(self.lock_queue(), offered, store);
        woken.iter().for_each(|w| w.wake());
        offered
    }

    /// `serve` in hand-off mode whatever the waiters' waits, for `item`;
    /// gives it back if no waiter took it.
    #[cold]
    pub(super) fn hand_over_locked(&self, item: I, store: &dyn Store<I>) -> Option<I> {
        let mut queue = self.lock_queue();
        let mut draw = Draw {
            offered: Some(item),
            store,
            hand_off: true,
        };
        let mut woken = Vec::new();
        self.serve(&mut queue, &mut draw, &mut woken, None);
        drop(queue);
        woken.iter().for_each(|w| w.wake());
        draw.offered
    }

    /// `serve` on the locked `queue`, then releases the lock. Returns
    /// `offered` if no waiter took it, and the waiters decided, which the
    /// caller wakes (outside the lock, as it is now).
    pub(super) fn serve_and_unlock(
        &self,
        queue: MutexGuard<'_, Queue<I>>,
        offered: Option<I>,
        store: &dyn Store<I>,
    ) -> (Option<I>, Vec<Arc<Waiter<I>>>) {
        self.serve_running(queue, offered, store, None)
    }

    /// [`Limit::serve_and_unlock`] for `running`, a waiter whose own
    /// thread serves: a unit the walk reaches it with is granted to it in
    /// normal mode too (it is running: no context switch to save).
    fn serve_running(
        &self,
        mut queue: MutexGuard<'_, Queue<I>>,
        offered: Option<I>,
        store: &dyn Store<I>,
        running: Option<&Arc<Waiter<I>>>,
    ) -> (Option<I>, Vec<Arc<Waiter<I>>>) {
        let mut draw = Draw {
            offered,
            store,
            hand_off: false,
        };
        let mut woken = Vec::new();
        self.serve(&mut queue, &mut draw, &mut woken, running);
        drop(queue);
        (draw.offered, woken)
    }

    /// Whether a single waiter has waited long enough to be handed units
    /// (hand-off mode) rather than woken to compete for them.
    fn starved(&self, waiter: &Waiter<I>) -> bool {
        self.handoff_after == Duration::ZERO
            || (self.handoff_after != Duration::MAX && waiter.waited() >= self.handoff_after)
    }

    /// Records whether the next put must hand its item to the waiters
    /// rather than store it (see `offer_slowly`): a batch waits (batches
    /// keep the protocol they had: units offered to the walk, which a
    /// running thread cannot take first; stored first, they were served
    /// twenty times slower in `tests/stress.rs`), or the first single
    /// waiter is starved. Normal mode is for queues of single waiters.
    pub(super) fn note_mode(&self, queue: &Queue<I>) {
        let handing_off = queue.batches > 0
            || queue
                .waiters
                .iter()
                .find(|w| !w.batch)
                .is_some_and(|w| self.starved(w));
        self.handing_off.store(handing_off, Ordering::Relaxed);
    }

    /// Decides what the units that can be drawn now allow, walking the queue
    /// in arrival order (see the module's invariants). The caller wakes
    /// `woken` once it has released the lock.
    fn serve(
        &self,
        queue: &mut Queue<I>,
        draw: &mut Draw<'_, I>,
        woken: &mut Vec<Arc<Waiter<I>>>,
        running: Option<&Arc<Waiter<I>>>,
    ) {
        // The surplus of a shrinking resize is shed once the bound holds
        // again: cleared here, under the lock that `resize` sets it under.
        if self.waiting.load(Ordering::Relaxed) & SURPLUS != 0 && !self.is_over() {
            self.waiting.fetch_and(!SURPLUS, Ordering::SeqCst);
        }
        let mut i = 0;
        // Whether the walk passed a single waiter in normal mode: no waiter
        // behind it is then handed a unit for being starved. Each waiter's
        // age is read as the walk reaches it, so a waiter behind one found
        // not starved could be found starved a moment later (the walk
        // preempted in between) and overtake it: the woken one then lost
        // its race to a parked waiter behind it.
        let mut young_ahead = false;
        while i < queue.waiters.len() {
            let step = if queue.waiters[i].batch {
                self.serve_batch(queue, draw, woken, i)
            } else {
                self.serve_single(queue, draw, woken, running, i, &mut young_ahead)
            };
            match step {
                Step::Stay => {}
                Step::Next => i += 1,
                Step::Restart => i = 0,
                Step::Stop => break,
            }
        }
        self.set_aside_items
            .store(queue.set_aside.items.len(), Ordering::Relaxed);
        self.note_mode(queue);
    }

    /// `serve` at the single waiter at `i`: hands it a unit if it is owed
    /// one (hand-off mode, starved with no younger waiter ahead, or the
    /// running waiter itself), else wakes it to compete (normal mode).
    fn serve_single(
        &self,
        queue: &mut Queue<I>,
        draw: &mut Draw<'_, I>,
        woken: &mut Vec<Arc<Waiter<I>>>,
        running: Option<&Arc<Waiter<I>>>,
        i: usize,
        young_ahead: &mut bool,
    ) -> Step {
        let waiter = &queue.waiters[i];
        let handed = draw.hand_off
            || (!*young_ahead && self.starved(waiter))
            || running.is_some_and(|r| Arc::ptr_eq(r, waiter));
        if !handed {
            *young_ahead = true;
            // Normal mode: wake it to compete, if a unit is left that no
            // woken waiter is looking for already.
            if waiter.roused.load(Ordering::Relaxed) {
                return Step::Next;
            }
            if queue.woken >= self.available(queue, draw) {
                return Step::Stop;
            }
            let waiter = Arc::clone(waiter);
            queue.rouse(&waiter);
            woken.push(waiter);
            return Step::Next;
        }
        let Some(grant) = self.draw_unit(queue, draw) else {
            return Step::Stop;
        };
        self.grant(queue, i, grant, woken);
        Step::Stay
    }

    /// `serve` at the batch at `i`: the preferred batch takes what is set
    /// aside for it; another is served only when all it needs looks free.
    fn serve_batch(
        &self,
        queue: &mut Queue<I>,
        draw: &mut Draw<'_, I>,
        woken: &mut Vec<Arc<Waiter<I>>>,
        i: usize,
    ) -> Step {
        let need = queue.waiters[i].need;
        if queue.is_preferred(&queue.waiters[i]) {
            while queue.set_aside.len() < need {
                match self.draw_fresh(draw) {
                    Some(unit) => queue.set_aside.push(unit),
                    None => break,
                }
            }
            if queue.set_aside.len() < need {
                return Step::Stop; // everything drawn is kept for it
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
            // The next preferred batch may be ahead of here: walk again.
            return if queue.preferred.is_some() {
                Step::Restart
            } else {
                Step::Stay
            };
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
                return Step::Stay;
            }
            // Fewer than counted: a concurrent get took some. Keep them
            // for this batch (the spare ones were drawn first, so none is
            // left), as if its preferred turn had begun.
            queue.preferred = Some(Arc::clone(&queue.waiters[i]));
            queue.set_aside = units;
            return Step::Stop;
        }
        Step::Next // passed by: those behind it may be served
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
        let free = self.max().saturating_sub(self.alive.load(Ordering::SeqCst));
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
        queue.batches -= usize::from(waiter.batch);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        queue.unrouse(&waiter);
        waiter.decide(Outcome::Granted(grant));
        woken.push(waiter);
    }

    /// Joins the queue for one unit, unless the waiters can be served
    /// (this one included) at once.
    pub fn enqueue(&self, store: &dyn Store<I>) -> Enqueued<I> {
        self.join(1, false, store, true)
    }

    /// [`Limit::enqueue`] for a caller that waited already and queues again
    /// (the object it was granted was rejected): never refused for
    /// `max_waiting`, which caps callers, not their turns.
    pub fn requeue(&self, store: &dyn Store<I>) -> Enqueued<I> {
        self.join(1, false, store, false)
    }

    /// Joins the queue for `n` units at once (see the module's invariants),
    /// unless they are free now. A caller that asks for more than `max` waits
    /// for ever: check first.
    pub fn enqueue_batch(&self, n: usize, store: &dyn Store<I>) -> Enqueued<I> {
        self.join(n, true, store, true)
    }

    fn join(&self, need: usize, batch: bool, store: &dyn Store<I>, capped: bool) -> Enqueued<I> {
        let mut queue = self.lock_queue();
        if queue.closed {
            return Enqueued::Closed;
        }
        if capped && queue.waiters.len() >= self.max_waiting {
            // Those already queued come first (FIFO): a unit free now is
            // theirs. With none queued (`max_waiting == 0`), a unit freed
            // since the caller looked is this caller's.
            if queue.waiters.is_empty() && !batch {
                let mut draw = Draw {
                    offered: None,
                    store,
                    hand_off: false,
                };
                if let Some(grant) = self.draw_unit(&mut queue, &mut draw) {
                    return Enqueued::Ready(grant);
                }
            }
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Enqueued::Busy;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let waiter = Arc::new(Waiter::new(need, batch));
        queue.waiters.push_back(Arc::clone(&waiter));
        queue.batches += usize::from(batch);
        let (_, mut woken) = self.serve_running(queue, None, store, Some(&waiter));
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

    /// What a parked waiter found when it woke: its outcome if it was
    /// decided (taken, as [`Waiter::take`] does); if it was woken to
    /// compete, a unit for itself if one is free now (it is running: it
    /// takes it as a barging caller would), else [`Settled::Lost`], and it
    /// waits again where it was, its start unchanged (see the module's
    /// invariants).
    pub fn settle(&self, waiter: &Arc<Waiter<I>>, store: &dyn Store<I>) -> Settled<I> {
        if let Some(outcome) = waiter.take() {
            return Settled::Decided(outcome); // handed over: no lock
        }
        let mut queue = self.lock_queue();
        let Some(index) = queue.position(waiter) else {
            drop(queue);
            // Decided (or withdrawn) since it looked.
            return waiter.take().map_or(Settled::Undecided, Settled::Decided);
        };
        if !queue.unrouse(waiter) {
            return Settled::Undecided;
        }
        waiter.unrouse();
        // A preferred batch ahead of it keeps every unit for itself.
        let behind_a_batch = queue
            .preferred
            .as_ref()
            .and_then(|p| queue.position(p))
            .is_some_and(|p| p < index);
        let mut draw = Draw {
            offered: None,
            store,
            hand_off: false,
        };
        let grant = if behind_a_batch {
            None
        } else {
            self.draw_unit(&mut queue, &mut draw)
        };
        let Some(grant) = grant else {
            self.note_mode(&queue);
            return Settled::Lost;
        };
        queue.waiters.remove(index);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let notify = waiter.withdraw();
        // More units may be free: wake (or serve) those behind it.
        let (_, woken) = self.serve_and_unlock(queue, None, store);
        drop(notify);
        woken.iter().for_each(|w| w.wake());
        Settled::Decided(Outcome::Granted(grant))
    }

    /// Withdraws a waiter that stopped waiting, and drops its notification.
    /// `None` if it was still queued with nothing set aside for it;
    /// otherwise what it was given meanwhile, which the caller now owns: its
    /// outcome, or (a preferred batch) a [`Grant::Batch`] of the units set
    /// aside for it, fewer than it needs, to give back.
    /// A waiter woken to compete passes its wake-up on to the next waiter,
    /// for a unit of `store`.
    pub fn cancel(&self, waiter: &Arc<Waiter<I>>, store: &dyn Store<I>) -> Option<Outcome<I>> {
        let mut queue = self.lock_queue();
        let mut roused = false;
        let withdrawn = queue.position(waiter).map(|index| {
            queue.waiters.remove(index);
            queue.batches -= usize::from(waiter.batch);
            roused = queue.unrouse(waiter);
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
        self.note_mode(&queue);
        let mut woken = Vec::new();
        if roused {
            // It was woken for a unit it will not take: the next waiter
            // competes for it instead.
            woken = self.serve_and_unlock(queue, None, store).1;
        } else {
            drop(queue);
        }
        woken.iter().for_each(|w| w.wake());
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

    /// Wakes every waiter with [`Outcome::Closed`]; later waits fail at
    /// once. Returns the units set aside (for the caller to destroy).
    pub fn close(&self) -> Units<I> {
        let mut queue = self.lock_queue();
        queue.closed = true;
        queue.preferred = None;
        let set_aside = std::mem::take(&mut queue.set_aside);
        self.set_aside_items.store(0, Ordering::Relaxed);
        let closed: Vec<_> = queue.waiters.drain(..).collect();
        queue.batches = 0;
        self.waiting.fetch_sub(closed.len(), Ordering::Relaxed);
        for waiter in &closed {
            queue.unrouse(waiter);
        }
        for waiter in &closed {
            waiter.decide(Outcome::Closed);
        }
        drop(queue);
        closed.iter().for_each(|w| w.wake());
        set_aside
    }

    /// Shows the items set aside to `f`, for a garbage collector's
    /// traversal (skipped if the queue is locked: a collector never blocks).
    pub(crate) fn visit_set_aside<E>(&self, f: impl FnMut(&I) -> Result<(), E>) -> Result<(), E> {
        match self.queue.try_lock() {
            Ok(queue) => queue.set_aside.items.iter().try_for_each(f),
            Err(_) => Ok(()),
        }
    }

    /// Takes the units set aside (to break a reference cycle): the batch
    /// they were for gathers again.
    pub(crate) fn take_set_aside(&self) -> Units<I> {
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
