//! A pool's life beyond get and put: prefilling, trimming, closing,
//! destroying, and what a garbage collector needs (visiting and dropping
//! the references the pool holds).
//!
//! Invariants:
//! - A destroyed object's charge is released only after its `destroy` hook
//!   has run, so `max_size` also bounds the resources objects hold.
//! - `close` fails every wait and destroys the idle objects (those set aside
//!   for a waiting batch too); see `put` for why none is stored afterwards.
//! - `visit` and `release_references` run no hook: a collector calls them.

use super::{refuse, Config, Event, GetError, Hooks, OpenError, Pool};
use crate::counters::Tally;
use crate::limit::Notify;
use crate::sync::atomic::{fence, Ordering};

impl<T: Send> Pool<T> {
    /// A pool of `config`, ready: `prefill` idle objects made up front, then
    /// those `min_size` needs. Refused, with what was made destroyed: a bad
    /// `config`, a `prefill` above `max_idle` (it would be dropped at
    /// once), a failing factory.
    pub fn open<H: Hooks<T>>(
        config: Config,
        prefill: usize,
        hooks: &mut H,
    ) -> Result<Self, OpenError<H::Error>> {
        let pool = Pool::new(config).map_err(OpenError::Config)?;
        let max_idle = pool.max_idle();
        if prefill > max_idle {
            let message = format!("prefill must be at most max_idle ({max_idle}), got {prefill}");
            return Err(OpenError::Config(refuse("prefill", message)));
        }
        let filled = pool.prefill(hooks, prefill);
        if let Err(e) = filled.and_then(|()| pool.refill(hooks).map_err(GetError::Hook)) {
            pool.close(hooks);
            return Err(OpenError::Fill(e));
        }
        Ok(pool)
    }

    /// Creates `n` idle objects up front.
    pub fn prefill<H: Hooks<T>>(&self, hooks: &mut H, n: usize) -> Result<(), GetError<H::Error>> {
        let (home, counters) = self.shards.local();
        for _ in 0..n {
            if let Some(limit) = &self.limit {
                if !limit.try_reserve() {
                    return Err(GetError::TooMany {
                        requested: n,
                        max_size: limit.max(),
                    });
                }
            }
            let item = match hooks.create() {
                Ok(item) => item,
                Err(e) => {
                    self.release_charge();
                    return Err(GetError::Hook(e));
                }
            };
            counters.bump(Event::Created);
            self.note_birth(hooks, &item);
            self.store(hooks, home, item);
        }
        Ok(())
    }

    /// Destroys an object the pool no longer keeps, then frees its charge.
    pub(super) fn scrap<H: Hooks<T>>(&self, hooks: &mut H, counters: Tally<'_>, item: T) {
        self.destroy(hooks, counters, item);
        self.release_charge();
    }

    /// Destroys an object, keeping its charge (the caller's to release).
    pub(super) fn destroy<H: Hooks<T>>(&self, hooks: &mut H, counters: Tally<'_>, item: T) {
        counters.bump(Event::Destroyed);
        self.forget_birth(hooks, &item);
        hooks.destroy(item);
    }

    pub(super) fn release_charge(&self) {
        if let Some(limit) = &self.limit {
            limit.release(&self.idles(self.shards.home()));
        }
    }

    pub(super) fn destroy_idle<H: Hooks<T>>(&self, hooks: &mut H, counters: Tally<'_>) -> usize {
        let idle = self.drain_idle();
        let n = idle.len();
        for idle in idle {
            self.scrap(hooks, counters, idle.item);
        }
        n
    }

    /// Destroys expired idle objects (idle too long, or past
    /// `max_lifetime`), then the oldest until at most `keep` remain, but
    /// none below `min_size`; then refills to `min_size` (see `sizing`).
    /// Returns how many it destroyed.
    pub fn trim<H: Hooks<T>>(&self, hooks: &mut H, keep: usize) -> usize {
        let (home, counters) = self.shards.local();
        let spare = self.spare();
        let (mut fresh, expired): (Vec<_>, Vec<_>) = self
            .drain_idle()
            .into_iter()
            .partition(|entry| !self.is_expired(entry) && !self.outlived(hooks, &entry.item));
        // Oldest first; unstamped entries keep their drain order.
        fresh.sort_by_key(|entry| entry.since);
        let cut = fresh
            .len()
            .saturating_sub(keep)
            .min(spare.saturating_sub(expired.len()));
        let surplus: Vec<_> = fresh.drain(..cut).collect();
        // The keepers go back before any hook runs, so that concurrent gets
        // find them while the others are destroyed.
        let mut removed = 0;
        for entry in fresh {
            removed += usize::from(!self.store_idle(hooks, home, entry));
        }
        for entry in expired {
            counters.bump(Event::Expired);
            self.scrap(hooks, counters, entry.item);
            removed += 1;
        }
        for entry in surplus {
            self.scrap(hooks, counters, entry.item);
            removed += 1;
        }
        if removed > 0 {
            self.refill_quietly(hooks);
        }
        removed
    }

    /// Marks the pool closed, fails every wait, and destroys the idle
    /// objects. Returns how many it destroyed. Idempotent.
    pub fn close<H: Hooks<T>>(&self, hooks: &mut H) -> usize {
        self.flags.fetch_or(super::CLOSED, Ordering::SeqCst);
        // Pairs with the fence after a put's push (see `store_idle`).
        fence(Ordering::SeqCst);
        let counters = self.shards.counters(self.shards.home());
        let mut destroyed = 0;
        if let Some(limit) = &self.limit {
            // What was set aside for a waiting batch is idle: destroyed too.
            let set_aside = limit.close();
            destroyed += set_aside.items.len();
            for idle in set_aside.items {
                self.scrap(hooks, counters, idle.item);
            }
            for _ in 0..set_aside.slots {
                self.release_charge();
            }
        }
        destroyed + self.destroy_idle(hooks, counters)
    }

    /// Shows every object the pool holds a reference to (idle ones, those
    /// set aside for a waiting batch, and the ledger's handed-out ones) to
    /// `f`, changing nothing. For a garbage collector's traversal: no other
    /// thread may use the pool meanwhile (see `Shards::visit`).
    pub fn visit<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> Result<(), E> {
        let (result, homeless) = self.shards.visit(|idle| f(&idle.item));
        // Unreachable when the caller keeps its promise; never lose them.
        for idle in homeless {
            let _ = self.shards.push(0, idle);
        }
        result?;
        if let Some(limit) = &self.limit {
            limit.visit_set_aside(|idle| f(&idle.item))?;
        }
        match &self.ledger {
            Some(ledger) => ledger.visit(f),
            None => Ok(()),
        }
    }

    /// Drops every reference the pool holds (idle objects, those set aside
    /// for a waiting batch, the ledger's), without running hooks: for
    /// breaking a reference cycle that the garbage collector found
    /// unreachable. The pool stays usable.
    pub fn release_references(&self) {
        if let Some(lifetime) = &self.lifetime {
            lifetime.clear();
        }
        for idle in self.drain_idle() {
            drop(idle);
            self.release_charge();
        }
        if let Some(limit) = &self.limit {
            let set_aside = limit.take_set_aside();
            for _ in 0..set_aside.len() {
                self.release_charge();
            }
        }
        if let Some(ledger) = &self.ledger {
            ledger.clear();
        }
    }

    /// Shows the notifications of the callers queued for a bounded pool to
    /// `f` (see [`Limit::visit_notifications`](crate::Limit::visit_notifications)); for a garbage collector.
    pub fn visit_notifications<E>(
        &self,
        f: impl FnMut(&dyn Notify) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.limit {
            Some(limit) => limit.visit_notifications(f),
            None => Ok(()),
        }
    }

    /// Takes the notifications of the queued callers, for the caller to
    /// drop: breaks a reference cycle that the garbage collector found
    /// unreachable (no one can reach the pool to wake those callers).
    pub fn take_notifications(&self) -> Vec<Box<dyn Notify>> {
        self.limit
            .as_ref()
            .map_or_else(Vec::new, |limit| limit.take_notifications())
    }
}
