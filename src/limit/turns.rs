//! The turns of a waiting batch: overtaking bounded in time.
//!
//! Invariants:
//! - A batch is passed by for at most [`PATIENCE`]; then it is preferred
//!   (units are set aside for it) for as long as it has waited so far. If
//!   that turn ends incomplete while others wait behind it, it yields what
//!   was set aside and is passed by for another [`PATIENCE`], then
//!   preferred again for a turn twice as long. No caller waits on a batch
//!   longer than the batch has waited before it.
//! - At most one batch is preferred; one refused the turn gets it as soon
//!   as the preferred batch is served or gives up (not when it yields).

use std::time::{Duration, Instant};

use super::{Limit, Store, Units, Waiter};
use crate::sync::atomic::Ordering;
use crate::sync::Arc;

/// How long a waiting batch may be passed by (see the module's invariants)
/// before units are set aside for it; also the shortest preferred turn. Go's
/// `sync.Mutex` switches to hand-off after a waiter has waited as long.
pub const PATIENCE: Duration = Duration::from_millis(1);

impl<I> Limit<I> {
    /// Starts a batch's preferred turn: units drawn from now on are set
    /// aside for it (and what is free now is, at once). `false` if another
    /// batch is preferred (or `waiter` is no batch); `true` if this one is
    /// (or was decided meanwhile).
    pub(crate) fn prefer(&self, waiter: &Arc<Waiter<I>>, store: &dyn Store<I>) -> bool {
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
        let (_, woken) = self.serve_and_unlock(queue, None, store);
        woken.iter().for_each(|w| w.wake());
        true
    }

    /// Ends a batch's preferred turn if others wait behind it: returns the
    /// units set aside for it, which the caller gives back (to them).
    /// `None` (nothing changes) if nobody else waits or it is not preferred.
    pub(crate) fn unprefer(&self, waiter: &Arc<Waiter<I>>) -> Option<Units<I>> {
        let mut queue = self.lock_queue();
        if !queue.is_preferred(waiter) || queue.waiters.len() <= 1 {
            return None;
        }
        queue.preferred = None;
        self.set_aside_items.store(0, Ordering::Relaxed);
        self.note_mode(&queue);
        Some(std::mem::take(&mut queue.set_aside))
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
    /// The turns of a batch that started waiting at `start`: first passed by.
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
