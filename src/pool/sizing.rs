//! `min_size` (the fewest objects kept in existence) and `resize` (new
//! bounds for a live pool).
//!
//! Invariants:
//! - After building (the caller runs [`Pool::refill`]), whenever the pool
//!   destroys objects (discard, expiry, lifetime, validation, a failed
//!   reset, trim, clear) it refills up to `min_size` on the same thread,
//!   after the destroy, outside every lock. A bounded pool charges each
//!   replacement through [`Limit::try_reserve_below`](crate::Limit), so
//!   concurrent refills never make more than `min_size` (nor exceed
//!   `max_size`); an unbounded one counts `created - destroyed`, a moment's
//!   reading, so racing refills may make a few more (they are idle, and
//!   `trim` takes them).
//! - A refill is bounded: at most `min_size` creations a call, and it stops
//!   at the first factory error, which goes to [`Hooks::report`] (never to
//!   the caller whose call caused the destruction).
//! - `trim` never destroys fresh idle objects below `min_size`.
//! - `resize` checks the new sizes together and changes nothing if it
//!   refuses; resizes are serialized, so `min_size <= max_size` holds
//!   between them. Growing `max_size` serves waiters at once; shrinking
//!   destroys surplus idle objects now and returned ones as they come back
//!   (see `limit::resize`). A pool built without `max_size` has no bound to
//!   change: a `max_size` for it is refused.

use super::config::{check_sizes, refuse};
use super::{ConfigError, Event, Hooks, Pool};
use crate::counters::Snapshot;
use crate::limit::ResizeError;
use crate::sync::atomic::Ordering;

/// New sizes for [`Pool::resize`]; `None` keeps the current one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sizes {
    /// The new `max_size` (only for a pool built with one).
    pub max_size: Option<usize>,
    /// The new `min_size`.
    pub min_size: Option<usize>,
}

/// What [`Pool::resize`] did: `(max_size, min_size)` before and after,
/// both read under the lock that serializes resizes, so a racing resize
/// shows in neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resized {
    /// `(max_size, min_size)` before.
    pub before: (Option<usize>, usize),
    /// `(max_size, min_size)` after.
    pub after: (Option<usize>, usize),
}

impl<T: Send> Pool<T> {
    /// The fewest objects kept in existence.
    pub fn min_size(&self) -> usize {
        self.min_size.load(Ordering::Relaxed)
    }

    /// Objects in existence (idle, handed out, being created): the units
    /// charged to the bound, or `created - destroyed` in an unbounded pool.
    fn population(&self) -> usize {
        match &self.limit {
            Some(limit) => limit.alive(),
            None => {
                let s = Snapshot::merge(self.shards.all_counters());
                usize::try_from(s.created.saturating_sub(s.destroyed)).unwrap_or(usize::MAX)
            }
        }
    }

    /// Room for one more object below `floor` (charged, in a bounded pool).
    fn reserve_below(&self, floor: usize) -> bool {
        match &self.limit {
            Some(limit) => limit.try_reserve_below(floor),
            None => self.population() < floor,
        }
    }

    /// Creates idle objects until `min_size` exist (see the module's
    /// invariants). Returns how many it created, or the first factory
    /// error (the objects made before it stay).
    pub fn refill<H: Hooks<T>>(&self, hooks: &mut H) -> Result<usize, H::Error> {
        let floor = self.min_size();
        let (home, counters) = self.shards.local();
        let mut made = 0;
        while made < floor && !self.is_closed() && self.reserve_below(floor) {
            let item = match hooks.create() {
                Ok(item) => item,
                Err(e) => {
                    self.release_charge();
                    return Err(e);
                }
            };
            counters.bump(Event::Created);
            self.note_birth(hooks, &item);
            self.store(hooks, home, item);
            made += 1;
        }
        Ok(made)
    }

    /// [`Pool::refill`] after a destroy: a factory error goes to
    /// [`Hooks::report`], not to the caller.
    #[cold]
    pub(super) fn refill_quietly<H: Hooks<T>>(&self, hooks: &mut H) {
        if self.min_size() == 0 {
            return;
        }
        if let Err(e) = self.refill(hooks) {
            hooks.report(e);
        }
    }

    /// Idle objects `trim` may destroy beyond the expired ones, so as not to
    /// fall below `min_size`.
    pub(super) fn spare(&self) -> usize {
        match self.min_size() {
            0 => usize::MAX,
            floor => self.population().saturating_sub(floor),
        }
    }

    /// Changes `max_size` and/or `min_size` (see the module's invariants).
    /// Refused, changing nothing: a `max_size` of 0, or for a pool built
    /// without one; a `min_size` above `max_size` or `max_idle`; a
    /// `max_size` below what a waiting `get_many` needs; a closed pool.
    pub fn resize<H: Hooks<T>>(&self, hooks: &mut H, sizes: Sizes) -> Result<Resized, ConfigError> {
        let serial = self.resizing.lock().unwrap_or_else(|e| e.into_inner());
        let before = (self.max_size(), self.min_size());
        if self.is_closed() {
            return Err(refuse("resize", "the pool is closed".into()));
        }
        let max_size = match (sizes.max_size, &self.limit) {
            (Some(_), None) => {
                return Err(refuse(
                    "max_size",
                    "this pool was built without max_size: it has no bound to resize \
                     (build it with max_size to resize it later)"
                        .into(),
                ))
            }
            (Some(0), Some(_)) => {
                return Err(refuse(
                    "max_size",
                    "max_size must be at least 1, got 0".into(),
                ))
            }
            (new, limit) => new.or(limit.as_ref().map(|l| l.max())),
        };
        let min_size = sizes.min_size.unwrap_or_else(|| self.min_size());
        check_sizes(min_size, max_size, self.max_idle())?;
        if let (Some(limit), Some(max)) = (&self.limit, sizes.max_size) {
            let home = self.shards.home();
            limit.resize(max, &self.idles(home)).map_err(|e| match e {
                ResizeError::BatchWaiting { need } => refuse(
                    "max_size",
                    format!(
                        "max_size must be at least {need} while a get_many({need}) \
                             waits, got {max}"
                    ),
                ),
                ResizeError::Zero => refuse("max_size", "max_size must be at least 1".into()),
                ResizeError::Closed => refuse("resize", "the pool is closed".into()),
            })?;
            self.min_size.store(min_size, Ordering::Relaxed);
            // Shrunk below what exists: the idle surplus goes now.
            while limit.is_over() {
                let Some(idle) = self.take_idle(home) else {
                    break;
                };
                self.drop_surplus(hooks, home, idle.item);
            }
        } else {
            self.min_size.store(min_size, Ordering::Relaxed);
        }
        let after = (self.max_size(), self.min_size());
        drop(serial);
        self.refill_quietly(hooks);
        Ok(Resized { before, after })
    }
}
