//! A family of pools, one per size class: the layered pool.
//!
//! Invariants:
//! - Class `i` is served by its own [`Pool`], built on first use from the
//!   configuration given for it (so unused classes cost no storage).
//! - Requests above the largest class are "oversize": the caller makes an
//!   exact object and disposes of it when it comes back; such objects are
//!   never stored. Objects the caller makes or destroys outside the class
//!   pools are counted in `outside`, so the merged counters still balance.

use crate::classes::SizeClasses;
use crate::counters::{Counters, Event, Snapshot};
use crate::pool::{Config, ConfigError, Pool};
use crate::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use crate::sync::OnceLock;

pub struct Tiered<T> {
    classes: SizeClasses,
    configs: Box<[Config]>,
    pools: Box<[OnceLock<Pool<T>>]>,
    outside: Counters,
    oversize: AtomicU64,
    max_in_use: AtomicU64,
    closed: AtomicBool,
}

impl<T: Send> Tiered<T> {
    /// `config(size)` is the configuration of the class of that size. Each
    /// is checked now, so that building a class later cannot fail.
    pub fn new(
        classes: SizeClasses,
        config: impl Fn(usize) -> Config,
    ) -> Result<Self, ConfigError> {
        let configs: Box<[Config]> = classes.sizes().iter().map(|&s| config(s)).collect();
        for c in configs.iter() {
            Pool::<T>::check(c)?;
        }
        Ok(Tiered {
            pools: configs.iter().map(|_| OnceLock::new()).collect(),
            configs,
            classes,
            outside: Counters::default(),
            oversize: AtomicU64::new(0),
            max_in_use: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    pub fn classes(&self) -> &SizeClasses {
        &self.classes
    }

    /// The pool of class `i`.
    #[inline]
    pub fn pool(&self, class: usize) -> &Pool<T> {
        self.pools[class]
            .get_or_init(|| Pool::new(self.configs[class].clone()).expect("checked in Tiered::new"))
    }

    /// The most idle objects class `i` keeps (without building its pool).
    pub fn max_idle(&self, class: usize) -> usize {
        match self.pools[class].get() {
            Some(pool) => pool.max_idle(),
            None => Pool::<T>::check(&self.configs[class]).map_or(0, |(max_idle, _)| max_idle),
        }
    }

    /// The pool of class `i` if it was ever used.
    pub fn pool_if_used(&self, class: usize) -> Option<&Pool<T>> {
        self.pools[class].get()
    }

    /// The class serving a request for `n`, or `None` for an oversize one.
    #[inline]
    pub fn route(&self, n: usize) -> Option<usize> {
        self.classes.serving(n)
    }

    /// The caller made an oversize object and handed it out.
    pub fn note_oversize(&self) {
        self.oversize.fetch_add(1, Ordering::Relaxed);
        self.outside.bump(Event::Created);
        self.outside.bump(Event::Miss);
    }

    /// The caller destroyed a returned object that no class takes (oversize,
    /// or smaller than every class).
    pub fn note_unfiled(&self) {
        self.outside.bump(Event::Put);
        self.outside.bump(Event::Destroyed);
        self.outside.bump(Event::Dropped);
    }

    /// Marks the family closed. The caller then closes every pool in
    /// [`Tiered::used`] with its hooks; classes first used afterwards are
    /// refused by checking [`Tiered::is_closed`] before routing.
    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Orders the mark before `used`'s look at the pools, against a put
        // that stores into a pool it just built (see `BlockPool::put`).
        fence(Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Oversize objects handed out so far.
    pub fn oversize(&self) -> u64 {
        self.oversize.load(Ordering::Relaxed)
    }

    /// Counters merged over every class and the objects outside them.
    pub fn stats(&self) -> Snapshot {
        let pools = self.pools.iter().filter_map(OnceLock::get);
        let mut s = Snapshot::merge(
            pools
                .clone()
                .flat_map(Pool::counters)
                .chain([&self.outside]),
        );
        s.idle = pools.clone().map(|p| p.idle() as u64).sum();
        // At least the busiest single tier's peak, and whatever was seen here.
        let tier_peak = pools.map(|p| p.stats().max_in_use).max().unwrap_or(0);
        let seen = s.in_use.max(tier_peak);
        s.max_in_use = self.max_in_use.fetch_max(seen, Ordering::Relaxed).max(seen);
        s
    }

    /// Every pool in use, with its class size.
    pub fn used(&self) -> impl Iterator<Item = (usize, &Pool<T>)> {
        self.pools
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.get().map(|p| (self.classes.size(i), p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_built_lazily_with_their_own_config() {
        let classes = SizeClasses::new(vec![4096, 65536, 1 << 20], "tiers").unwrap();
        let caps = [(4096, 1000), (65536, 500), (1 << 20, 100)];
        let t: Tiered<Vec<u8>> = Tiered::new(classes, |size| Config {
            max_idle: caps.iter().find(|c| c.0 == size).map(|c| c.1),
            shards: Some(2),
            ..Config::default()
        })
        .unwrap();
        assert_eq!(t.used().count(), 0);
        assert_eq!(t.max_idle(2), 100);
        assert_eq!(t.used().count(), 0, "asking for a cap builds nothing");
        assert_eq!(t.route(5000), Some(1));
        assert_eq!(t.pool(1).max_idle(), 500);
        assert_eq!(t.used().map(|(s, _)| s).collect::<Vec<_>>(), vec![65536]);
        assert_eq!(t.route(2 << 20), None);
        t.note_oversize();
        t.note_unfiled();
        assert_eq!(t.oversize(), 1);
        let s = t.stats();
        assert_eq!(
            (s.created, s.misses, s.puts, s.destroyed, s.in_use),
            (1, 1, 1, 1, 0)
        );
    }

    #[test]
    fn bad_class_config_fails_up_front() {
        let classes = SizeClasses::new(vec![8], "tiers").unwrap();
        let r = Tiered::<u8>::new(classes, |_| Config {
            shards: Some(0),
            ..Config::default()
        });
        assert_eq!(r.err().unwrap().field, "shards");
    }
}
