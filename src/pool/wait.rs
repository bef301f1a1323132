//! Waiting in a full bounded pool, blocking ([`Pool::get`] parks its
//! thread) or not (an event loop's: [`Pool::get_or_enqueue`], then
//! [`Pool::finish_wait`] or [`Pool::abandon_wait`]). The queue itself is the
//! limit's (see `limit`, whose invariants say why no wake-up is lost).
//!
//! Invariants:
//! - A waiter that gives up (timeout, interrupt, cancel) withdraws itself,
//!   and gives back whatever it was granted meanwhile: a grant is a move,
//!   so nothing is lost and nothing is handed to two holders.
//! - One `get` counts one wait, however often it queues; a timeout counts
//!   as a timeout, any other abandoned wait as cancelled.
//! - A non-blocking get's place in the queue ([`Pending`]) is settled
//!   exactly once, finished or abandoned, whichever comes first (an event
//!   loop's result, its cancellation, the collection of its task), so
//!   what it was granted is taken or given back once.

use std::ops::Deref;
use std::time::Instant;

use super::{Event, GetError, Hooks, Idle, Pool, Step};
use crate::limit::{Enqueued, Grant, Limit, Outcome, Settled, Waiter};
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::Arc;

/// A non-blocking get's place in the waiters' queue ([`Step::Wait`]): its
/// waiter (to be told when the wait is decided), settled once by
/// [`Pool::finish_wait`] or [`Pool::abandon_wait`]; a later settle of
/// either kind does nothing.
pub struct Pending<T> {
    waiter: Arc<Waiter<Idle<T>>>,
    settled: AtomicBool,
}

impl<T> Pending<T> {
    fn new(waiter: Arc<Waiter<Idle<T>>>) -> Self {
        Pending {
            waiter,
            settled: AtomicBool::new(false),
        }
    }

    /// True for the one caller that settles it.
    fn settle(&self) -> bool {
        !self.settled.swap(true, Ordering::AcqRel)
    }

    /// Whether it was finished or abandoned.
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }
}

impl<T> Deref for Pending<T> {
    type Target = Waiter<Idle<T>>;

    fn deref(&self) -> &Self::Target {
        &self.waiter
    }
}

impl<T: Send> Pool<T> {
    /// `get` for a caller that must not block: an object if one comes
    /// without waiting, else a place in the waiters' queue, counted as a
    /// wait (then [`Pool::finish_wait`] or [`Pool::abandon_wait`]).
    pub fn get_or_enqueue<H: Hooks<T>>(
        &self,
        hooks: &mut H,
    ) -> Result<Step<T>, GetError<H::Error>> {
        self.step(hooks, true)
    }

    /// [`Pool::get_or_enqueue`]; a wait is counted when `count_wait` (a
    /// `get` that queues again after a rejected grant passes `false`, so
    /// one `get` counts one wait).
    fn step<H: Hooks<T>>(
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
            let queued = if count_wait {
                limit.enqueue(&self.idles(home))
            } else {
                limit.requeue(&self.idles(home))
            };
            match queued {
                Enqueued::Closed => return Err(GetError::Closed),
                Enqueued::Busy => return Err(GetError::TooBusy),
                Enqueued::Queued(waiter) => {
                    if count_wait {
                        self.shards.counters(home).bump(Event::Wait);
                        self.note_in_use();
                    }
                    return Ok(Step::Wait(Pending::new(waiter)));
                }
                Enqueued::Ready(grant) => {
                    if let Some(item) = self.redeem(hooks, grant)? {
                        return Ok(Step::Ready(item));
                    }
                }
            }
        }
    }

    /// After a [`Step::Wait`] was decided or woken: the object
    /// ([`Step::Ready`]), or a waiter to wait on again ([`Step::Wait`]):
    /// the same one if it was woken to compete and lost (it keeps its
    /// place), a new one at the back if the granted object was rejected
    /// (expired, or refused by `validate`) and no other came at once. Either
    /// way the same `get`: it counts no second wait. [`GetError::Settled`]
    /// if `pending` was settled already; [`GetError::Timeout`] (counted as
    /// one, the waiter withdrawn) if it was neither decided nor woken.
    pub fn finish_wait<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        pending: &Pending<T>,
    ) -> Result<Step<T>, GetError<H::Error>> {
        let Some(limit) = &self.limit else {
            unreachable!("only a bounded pool makes a get wait");
        };
        if !pending.settle() {
            return Err(GetError::Settled);
        }
        let waiter = &pending.waiter;
        let store = self.idles(self.shards.home());
        let settled = match limit.settle(waiter, &store) {
            // Finished before it was decided or woken (a caller that did
            // not wait for the notification). `pending` is settled now, so
            // nothing would ever withdraw the waiter: withdrawn here, as
            // the blocking `wait` does for a park that returns early, else
            // the next unit returned would be granted to a wait no one
            // takes, and lost to the pool.
            Settled::Undecided => match limit.cancel(waiter, &store) {
                Some(outcome) => Settled::Decided(outcome),
                None => {
                    limit.wait_times().record(waiter.waited());
                    self.shards.local().1.bump(Event::Timeout);
                    return Err(GetError::Timeout);
                }
            },
            settled => settled,
        };
        match settled {
            Settled::Decided(Outcome::Granted(grant)) => {
                self.note_wait_ended(waiter);
                match self.redeem(hooks, grant)? {
                    Some(item) => Ok(Step::Ready(item)),
                    None => self.step(hooks, false),
                }
            }
            Settled::Decided(Outcome::Closed) => Err(GetError::Closed),
            Settled::Lost => Ok(Step::Wait(Pending::new(Arc::clone(waiter)))),
            Settled::Undecided => unreachable!("withdrawn above"),
        }
    }

    /// Gives up a [`Step::Wait`]: withdraws the waiter, and gives back
    /// whatever it was granted meanwhile, so nothing is lost. Counted as a
    /// timeout when `timed_out`, else as cancelled (a cancelled task, one
    /// whose event loop closed or that was collected). Does nothing if
    /// `pending` was settled already.
    pub fn abandon_wait<H: Hooks<T>>(&self, hooks: &mut H, pending: &Pending<T>, timed_out: bool) {
        let Some(limit) = &self.limit else {
            return;
        };
        if !pending.settle() {
            return;
        }
        let waiter = &pending.waiter;
        if let Some(Outcome::Granted(grant)) = limit.cancel(waiter, &self.idles(self.shards.home()))
        {
            self.give_back(hooks, grant);
        }
        if timed_out {
            limit.wait_times().record(waiter.waited());
            self.shards.local().1.bump(Event::Timeout);
        } else {
            limit.note_cancelled();
        }
    }

    /// Queues for one unit and waits for it until `deadline`. The first
    /// time a call queues (`waited` tells), it counts a wait. Kept out of
    /// line: inlined, it makes every `get` pay for its frame.
    #[inline(never)]
    pub(super) fn wait<H: Hooks<T>>(
        &self,
        hooks: &mut H,
        limit: &Limit<Idle<T>>,
        home: usize,
        deadline: Option<Instant>,
        waited: &mut bool,
    ) -> Result<Grant<Idle<T>>, GetError<H::Error>> {
        let queued = if *waited {
            limit.requeue(&self.idles(home))
        } else {
            limit.enqueue(&self.idles(home))
        };
        let waiter = match queued {
            Enqueued::Ready(grant) => return Ok(grant),
            Enqueued::Closed => return Err(GetError::Closed),
            Enqueued::Busy => return Err(GetError::TooBusy),
            Enqueued::Queued(waiter) => waiter,
        };
        if !std::mem::replace(waited, true) {
            self.shards.counters(home).bump(Event::Wait);
            self.note_in_use();
        }
        let store = self.idles(home);
        let outcome = loop {
            match hooks.park(&*waiter, deadline) {
                Ok(true) => match limit.settle(&waiter, &store) {
                    Settled::Decided(outcome) => break Some(outcome),
                    // Woken, it lost the race: it waits again in its place,
                    // until the same deadline.
                    Settled::Lost => {}
                    // A park that returns early (a custom hook) must not
                    // strand the waiter in the queue: withdraw it like a
                    // timeout.
                    Settled::Undecided => break limit.cancel(&waiter, &store),
                },
                Ok(false) => break limit.cancel(&waiter, &store),
                Err(e) => {
                    if let Some(Outcome::Granted(grant)) = limit.cancel(&waiter, &store) {
                        self.give_back(hooks, grant);
                    }
                    // Interrupted (a signal handler raised): not a timeout.
                    limit.note_cancelled();
                    return Err(GetError::Hook(e));
                }
            }
        };
        match outcome {
            Some(Outcome::Granted(grant)) => {
                limit.wait_times().record(waiter.waited());
                Ok(grant)
            }
            Some(Outcome::Closed) => Err(GetError::Closed),
            None => {
                limit.wait_times().record(waiter.waited());
                self.shards.counters(home).bump(Event::Timeout);
                Err(GetError::Timeout)
            }
        }
    }

    /// Counts a wait that ended served, in the wait-time histogram.
    fn note_wait_ended(&self, waiter: &Waiter<Idle<T>>) {
        if let Some(limit) = &self.limit {
            limit.wait_times().record(waiter.waited());
        }
    }

    /// Returns a grant that its waiter no longer wants.
    pub(super) fn give_back<H: Hooks<T>>(&self, hooks: &mut H, grant: Grant<Idle<T>>) {
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
}
