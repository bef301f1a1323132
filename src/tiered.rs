//! A family of pools, one per size class: the layered pool's get, put and
//! close, written once for [`crate::blocks::BlockPool`] and the Python
//! `TieredPool`.
//!
//! Invariants:
//! - Class `i` is served by its own unbounded, unchecked [`Pool`], built on
//!   first use from the configuration given for it (so unused classes cost
//!   no storage).
//! - A request for `n` is served by the smallest class of at least `n`, or
//!   (from the class `take_larger_from` names up, when that class has
//!   nothing idle) by an idle object of a larger class: every class's
//!   objects are at least its size, so any class at or above `n`'s serves
//!   `n`, and the object still belongs to the class that served it.
//!   Requests above the largest class are "oversize": the hooks make an
//!   exact object, which is never stored. A returned object is filed by its
//!   size now, as [`Filing`] says; an object no class takes (oversize, or
//!   smaller than every class) is destroyed.
//! - Accounting follows the object, not its size. A checked family records
//!   every object out in one [`Ledger`], with its origin (its class, or
//!   oversize), so its `put` is counted where it was handed out. An object
//!   that comes back at another class's size (it grew or shrank) *moves*:
//!   its origin counts its return and its departure (`Put`, `Destroyed`),
//!   and the class that files it counts its arrival (`Created`), then keeps
//!   it as a returned object. So once quiescent every class balances,
//!   `created - destroyed == idle + in_use`, and so do the objects outside
//!   the classes (`outside`). The merged totals subtract the moves: they
//!   count factory and destroy calls.
//! - An unchecked family keeps no record, so it trusts the caller: a put is
//!   counted in the class the object's size files it in. An object that
//!   changed class unbalances the two classes' counters (the totals stay
//!   exact), as a foreign object unbalances an unchecked pool's.
//! - `discard` ends an object's holding as `put` does (checked: the ledger
//!   says where it came from; unchecked: the class its size files it in),
//!   and that pool (or `outside`) counts it `discarded` and destroys it: its
//!   books balance as after a put and a destroy.
//! - `close` marks the family closed behind a `SeqCst` fence, then closes
//!   every class pool built so far. A put that stores into a class pool
//!   looks at the mark again after the pool's own fence (see
//!   [`Pool::put`]), so either `close` found that pool or the put closes it:
//!   nothing stays idle after `close`. After `close` a returned object is
//!   destroyed, counted where it came from.

use crate::classes::SizeClasses;
use crate::counters::{Counters, Event, Snapshot};
use crate::ledger::Ledger;
use crate::limit::Park;
use crate::pool::{Config, ConfigError, GetError, Hooks, NotOut, Pool, PutError};
use crate::shards::default_shard_count;
use crate::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use crate::sync::OnceLock;

/// An object coming back to a family ([`Tiered::put`], [`Tiered::put_ref`]):
/// the caller's own reference, or one the caller goes on holding.
enum Returned<'a, T> {
    Owned(T),
    Held(&'a T),
}

impl<T> Returned<'_, T> {
    fn get(&self) -> &T {
        match self {
            Returned::Owned(item) => item,
            Returned::Held(item) => item,
        }
    }

    /// A reference for the family to keep: the caller's, or a copy.
    fn into_owned<H: Hooks<T>>(self, hooks: &mut H) -> T {
        match self {
            Returned::Owned(item) => item,
            Returned::Held(item) => hooks.duplicate(item),
        }
    }
}

/// Which class a returned object of size `s` is filed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filing {
    /// Only the class of exactly `s` (blocks: a class holds its own size,
    /// which its idle byte budget charges).
    Exact,
    /// The largest class of at most `s`: every object of a class can serve
    /// every request routed to it (objects whose size may change).
    Floor,
}

/// Where an object handed out came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Class(usize),
    Oversize,
}

/// The family's own reference to an object out, and where it came from.
struct Out<T> {
    item: T,
    origin: Origin,
}

/// One pool per size class, with the family's record of the objects out
/// (when checked) and the counters of the objects outside the classes.
pub struct Tiered<T> {
    classes: SizeClasses,
    configs: Box<[Config]>,
    pools: Box<[OnceLock<Pool<T>>]>,
    filing: Filing,
    /// The objects out of a checked family, by identity.
    ledger: Option<Ledger<Out<T>>>,
    /// Oversize objects, and (unchecked) objects no class takes.
    outside: Counters,
    oversize: AtomicU64,
    /// Objects that came back at another class's size and moved there.
    moved: AtomicU64,
    max_in_use: AtomicU64,
    closed: AtomicBool,
    /// The first class whose requests may take a larger class's idle object
    /// (see `take_larger_from`; the number of classes: none).
    larger_from: usize,
}

impl<T: Send> Tiered<T> {
    /// `config(size)` is the configuration of the class of that size. Each
    /// is checked now, so that building a class later cannot fail. A class
    /// pool is unbounded and unchecked: with `checked` the family keeps the
    /// record for all of them.
    pub fn new(
        classes: SizeClasses,
        filing: Filing,
        checked: bool,
        config: impl Fn(usize) -> Config,
    ) -> Result<Self, ConfigError> {
        let configs: Box<[Config]> = classes.sizes().iter().map(|&s| config(s)).collect();
        let mut shards = default_shard_count();
        for c in configs.iter() {
            if c.max_size.is_some() || c.checked {
                return Err(ConfigError {
                    field: "max_size",
                    message: "a class pool is unbounded and unchecked".into(),
                });
            }
            shards = Pool::<T>::check(c)?.1;
        }
        Ok(Tiered {
            pools: configs.iter().map(|_| OnceLock::new()).collect(),
            configs,
            classes,
            filing,
            ledger: checked.then(|| Ledger::new(shards)),
            outside: Counters::default(),
            oversize: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            max_in_use: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            larger_from: usize::MAX,
        })
    }

    /// The class sizes.
    pub fn classes(&self) -> &SizeClasses {
        &self.classes
    }

    /// Whether the family records the objects out (refusing foreign and
    /// repeated returns, and counting each where it came from).
    pub fn is_checked(&self) -> bool {
        self.ledger.is_some()
    }

    /// The pool of class `i`. Built out of line (once a class): with
    /// `get_or_init` inline, every get and put set up the building
    /// closure before looking (5 instructions each).
    #[inline(always)]
    fn pool(&self, class: usize) -> &Pool<T> {
        match self.pools[class].get() {
            Some(pool) => pool,
            None => self.build_pool(class),
        }
    }

    /// The pool of class `i`, built if no thread has built it yet.
    #[cold]
    #[inline(never)]
    fn build_pool(&self, class: usize) -> &Pool<T> {
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

    /// The class serving a request for `n`, or `None` for an oversize one.
    #[inline]
    pub(crate) fn route(&self, n: usize) -> Option<usize> {
        self.classes.serving(n)
    }

    /// The class a returned object of `size` is filed in, if any takes it.
    #[inline]
    fn filing(&self, size: usize) -> Option<usize> {
        match self.filing {
            Filing::Exact => self
                .classes
                .serving(size)
                .filter(|&class| self.classes.size(class) == size),
            Filing::Floor => (size <= self.classes.max())
                .then(|| self.classes.filing(size))
                .flatten(),
        }
    }

    /// An object for a request of `n`: from the smallest class of at least
    /// `n` (idle, or made by `hooks(class size)`), or, above the largest
    /// class, made by `hooks(n)`. Also returns the class (`None`: oversize).
    pub fn get<H: Hooks<T>>(
        &self,
        n: usize,
        hooks: impl Fn(usize) -> H,
    ) -> Result<(T, Option<usize>), GetError<H::Error>> {
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        match self.route(n) {
            Some(class) => {
                // One pool get for both cases, inlined here: a second one
                // (for the larger classes) would move it out of line.
                let class = if class < self.larger_from {
                    class
                } else {
                    self.idle_class_from(class)
                };
                self.get_in(class, hooks)
            }
            None => {
                let mut hooks = hooks(n);
                let item = hooks.create().map_err(GetError::Hook)?;
                // As a checked pool's `create`: an object out already is not
                // counted, and stays its holder's.
                let item = record_out(self.ledger.as_ref(), &mut hooks, item, Origin::Oversize)
                    .ok_or(GetError::AlreadyOut)?;
                self.oversize.fetch_add(1, Ordering::Relaxed);
                self.outside.bump(Event::Created);
                self.outside.bump(Event::Miss);
                Ok((item, None))
            }
        }
    }

    /// An object of class `class`: idle, or made by `hooks(class size)`.
    #[inline(always)]
    fn get_in<H: Hooks<T>>(
        &self,
        class: usize,
        hooks: impl Fn(usize) -> H,
    ) -> Result<(T, Option<usize>), GetError<H::Error>> {
        let mut hooks = Recording {
            hooks: hooks(self.classes.size(class)),
            ledger: self.ledger.as_ref(),
            origin: Origin::Class(class),
        };
        let item = self.pool(class).get(&mut hooks, None)?;
        Ok((item, Some(class)))
    }

    /// From now on a request whose class is `class` or above and has
    /// nothing idle is served by an idle object of the nearest larger class
    /// that has one, if any, rather than by a new object: memory already
    /// made (and recently used) rather than fresh memory, and no more
    /// objects than the requests at once need (see `idle_class_from`).
    pub(crate) fn take_larger_from(mut self, class: usize) -> Self {
        self.larger_from = class;
        self
    }

    /// The class that serves a request of class `class` (at least
    /// `larger_from`): `class` if it has an object idle, else the nearest
    /// larger class that has one, else `class` (which makes a new one). The
    /// object belongs to the class that served it, and comes back there (it
    /// is filed by its size). Which classes hold something idle is a
    /// moment's reading: if another thread takes that object first, the
    /// larger class makes a new one.
    #[cold]
    #[inline(never)]
    fn idle_class_from(&self, class: usize) -> usize {
        let pool = |c: usize| self.pools[c].get();
        if pool(class).is_some_and(Pool::idle_at_home) {
            return class;
        }
        let idle_in = |c: usize| pool(c).map_or(0, Pool::idle);
        (class..self.classes.len())
            .find(|&c| idle_in(c) > 0)
            .unwrap_or(class)
    }

    /// Takes back an object whose size is now `size`: kept in the class
    /// that files it, moved there from another class, or destroyed. A
    /// checked family refuses an object it has not handed out (foreign, or
    /// returned already), changing nothing. A failing reset destroys the
    /// object and returns the error. Returns the class whose pool received
    /// the object (and kept it, or destroyed it after `close`), or `None`
    /// when no class did and it was destroyed.
    #[inline]
    pub fn put<H: Hooks<T>>(
        &self,
        item: T,
        size: usize,
        hooks: impl Fn(usize) -> H,
    ) -> Result<Option<usize>, PutError<H::Error>> {
        self.put_returned(Returned::Owned(item), size, hooks)
    }

    /// [`Tiered::put`] of an object the caller goes on holding (a Python
    /// argument): a checked family keeps the ledger's reference, an
    /// unchecked one takes a copy ([`Hooks::duplicate`]), so no copy is
    /// made only to be dropped.
    #[inline]
    pub fn put_ref<H: Hooks<T>>(
        &self,
        item: &T,
        size: usize,
        hooks: impl Fn(usize) -> H,
    ) -> Result<Option<usize>, PutError<H::Error>> {
        self.put_returned(Returned::Held(item), size, hooks)
    }

    #[inline(always)]
    fn put_returned<H: Hooks<T>>(
        &self,
        item: Returned<'_, T>,
        size: usize,
        hooks: impl Fn(usize) -> H,
    ) -> Result<Option<usize>, PutError<H::Error>> {
        let (item, origin) = match &self.ledger {
            None => (item.into_owned(&mut hooks(size)), None),
            Some(ledger) => match ledger.check_in_outlined(hooks(size).identity(item.get())) {
                // Keep the family's reference; the holder's, if given, is
                // dropped.
                Some(out) => (out.item, Some(out.origin)),
                None => return Err(PutError::NotOut { index: 0 }),
            },
        };
        // Which class pool receives it, and whether it arrives from another.
        let (class, adopt) = match (origin, self.filing(size)) {
            // Unchecked: the class its size files it in takes it.
            (None, Some(class)) => (class, false),
            // Back at its own class's size; or closed, and its own class
            // destroys it.
            (Some(Origin::Class(own)), Some(class)) if class == own => (own, false),
            (Some(Origin::Class(own)), _) if self.is_closed() => (own, false),
            // It grew or shrank into another class: it moves there.
            (Some(Origin::Class(own)), Some(class)) => {
                self.pool(own).count_departure(false);
                self.moved.fetch_add(1, Ordering::Relaxed);
                (class, true)
            }
            (Some(Origin::Oversize), Some(class)) if !self.is_closed() => {
                self.outside.bump(Event::Put);
                self.outside.bump(Event::Destroyed);
                self.moved.fetch_add(1, Ordering::Relaxed);
                (class, true)
            }
            // No class takes it: destroyed, counted where it came from.
            (Some(Origin::Class(own)), None) => {
                self.pool(own).count_departure(true);
                hooks(size).destroy(item);
                return Ok(None);
            }
            (None | Some(Origin::Oversize), _) => {
                self.destroy_outside(item, hooks(size));
                return Ok(None);
            }
        };
        self.put_in(class, item, adopt, &hooks)
            .map(|()| Some(class))
            .map_err(PutError::Hook)
    }

    /// Whether an object of `size` returned to this family would be filed
    /// in class `hint` (any value), for [`Tiered::put_filed`]: in an
    /// unchecked family filing exactly, the class of exactly `size` is the
    /// one `put` picks (the class sizes are distinct). A caller that knows
    /// where an object came from so skips looking its class up from its
    /// size.
    #[inline(always)]
    pub fn files_in(&self, hint: usize, size: usize) -> bool {
        self.ledger.is_none()
            && self.filing == Filing::Exact
            && self.classes.sizes().get(hint) == Some(&size)
    }

    /// [`Tiered::put`] of an object of `size` for which
    /// [`Tiered::files_in`]`(class, size)` holds: what `put` does with it,
    /// without the lookup.
    #[inline(always)]
    pub fn put_filed<H: Hooks<T>>(
        &self,
        item: T,
        class: usize,
        hooks: impl Fn(usize) -> H,
    ) -> Result<(), H::Error> {
        debug_assert!(self.ledger.is_none());
        debug_assert!(self.files_in(class, self.classes.size(class)));
        self.put_in(class, item, false, &hooks)
    }

    /// Destroys an object handed out instead of taking it back (see
    /// [`Pool::discard`]), counted `discarded` where it came from. A
    /// checked family refuses an object it has not handed out, changing
    /// nothing; an unchecked one counts it in the class its `size` files it
    /// in (or outside the classes) and destroys it. Only an unchecked family
    /// reads `size` (a checked one knows where the object came from), so a
    /// caller may skip measuring a broken object there.
    #[cold]
    pub fn discard<H: Hooks<T>>(
        &self,
        item: T,
        size: usize,
        hooks: impl Fn(usize) -> H,
    ) -> Result<(), NotOut> {
        let (item, origin) = match &self.ledger {
            None => (
                item,
                self.filing(size).map_or(Origin::Oversize, Origin::Class),
            ),
            Some(ledger) => {
                let out = ledger.check_in(hooks(size).identity(&item)).ok_or(NotOut)?;
                (out.item, out.origin)
            }
        };
        match origin {
            Origin::Class(own) => {
                let mut hooks = hooks(self.classes.size(own));
                self.pool(own)
                    .discard(&mut hooks, item)
                    .expect("class pools are unchecked");
            }
            Origin::Oversize => {
                self.outside.bump(Event::Discarded);
                self.outside.bump(Event::Destroyed);
                hooks(size).destroy(item);
            }
        }
        Ok(())
    }

    /// Puts `item` in class `class` (`adopt`: it arrives from elsewhere),
    /// closing the class pool if the family was closed meanwhile.
    #[inline(always)]
    fn put_in<H: Hooks<T>>(
        &self,
        class: usize,
        item: T,
        adopt: bool,
        hooks: &impl Fn(usize) -> H,
    ) -> Result<(), H::Error> {
        let pool = self.pool(class);
        let mut hooks = hooks(self.classes.size(class));
        if self.is_closed() && !pool.is_closed() {
            // Built after `close` looked (by this put): close it first, so
            // that the object is destroyed as in any closed pool, without a
            // reset.
            pool.close(&mut hooks);
        }
        let result = if adopt {
            pool.adopt(&mut hooks, item)
        } else {
            match pool.put(&mut hooks, item) {
                Ok(()) => Ok(()),
                Err(PutError::Hook(e)) => Err(e),
                Err(PutError::NotOut { .. }) => unreachable!("class pools are unchecked"),
            }
        };
        // `close` may have looked for class pools before this one was built
        // (by this put, or by a get racing `close`), while the check above
        // missed its mark. A put that stores the object ends with a `SeqCst`
        // fence (see `Pool::store_idle`) that pairs with the one in
        // `Tiered::close`: either `close` found this pool and closes it, or
        // this sees the mark and closes it here, so nothing stays idle after
        // `close`.
        if self.is_closed() && !pool.is_closed() {
            pool.close(&mut hooks);
        }
        result
    }

    /// Destroys a returned object no class keeps with `hooks` (counted
    /// outside the classes; dropped unless the family is closed, as for a
    /// pool).
    fn destroy_outside<H: Hooks<T>>(&self, item: T, mut hooks: H) {
        self.outside.bump(Event::Put);
        if !self.is_closed() {
            self.outside.bump(Event::Dropped);
        }
        self.outside.bump(Event::Destroyed);
        hooks.destroy(item);
    }

    /// Marks the family closed and closes every class pool built so far:
    /// idle objects are destroyed, later gets refused, returned objects
    /// destroyed. Returns `(class size, objects destroyed)` per class pool.
    pub fn close<H: Hooks<T>>(&self, hooks: impl Fn(usize) -> H) -> Vec<(usize, usize)> {
        self.closed.store(true, Ordering::SeqCst);
        // Orders the mark before `used`'s look at the pools, against a put
        // that stores into a pool it just built (see `put_in`).
        fence(Ordering::SeqCst);
        self.used()
            .map(|(size, pool)| (size, pool.close(&mut hooks(size))))
            .collect()
    }

    /// Whether [`Tiered::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Oversize objects handed out so far.
    pub fn oversize(&self) -> u64 {
        self.oversize.load(Ordering::Relaxed)
    }

    /// Objects that came back at another class's size and moved there.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Objects out of a checked family.
    pub fn outstanding(&self) -> Option<usize> {
        self.ledger.as_ref().map(Ledger::len)
    }

    /// Counters merged over every class and the objects outside them. A
    /// move counts `Destroyed` in one class and `Created` in another; the
    /// totals leave both out, so they count factory and destroy calls.
    pub fn stats(&self) -> Snapshot {
        let moved = self.moved();
        let pools = self.pools.iter().filter_map(OnceLock::get);
        let mut s = Snapshot::merge(
            pools
                .clone()
                .flat_map(Pool::counters)
                .chain([&self.outside]),
        );
        s.created = s.created.saturating_sub(moved);
        s.destroyed = s.destroyed.saturating_sub(moved);
        s.idle = pools.clone().map(|p| p.idle() as u64).sum();
        // At least the busiest single tier's peak, and whatever was seen here.
        let tier_peak = pools.map(|p| p.stats().max_in_use).max().unwrap_or(0);
        let seen = s.in_use.max(tier_peak);
        s.max_in_use = self.max_in_use.fetch_max(seen, Ordering::Relaxed).max(seen);
        s
    }

    /// The counters of class `i` (all zero while it is unused).
    pub fn class_stats(&self, class: usize) -> Snapshot {
        self.pools[class].get().map(Pool::stats).unwrap_or_default()
    }

    /// Every class as `(size, counters)`, smallest first.
    pub fn classes_stats(&self) -> Vec<(usize, Snapshot)> {
        let sizes = self.classes.sizes().iter().enumerate();
        sizes
            .map(|(i, &size)| (size, self.class_stats(i)))
            .collect()
    }

    /// Every class as `(size, max_idle)`, smallest first.
    pub fn classes_max_idle(&self) -> Vec<(usize, usize)> {
        let sizes = self.classes.sizes().iter().enumerate();
        sizes.map(|(i, &size)| (size, self.max_idle(i))).collect()
    }

    /// In every class used, destroys expired idle objects, then the oldest
    /// until at most `keep` remain ([`Pool::trim`]); returns how many.
    pub fn trim<H: Hooks<T>>(&self, keep: usize, hooks: impl Fn(usize) -> H) -> usize {
        let trimmed = self
            .used()
            .map(|(size, pool)| pool.trim(&mut hooks(size), keep));
        trimmed.sum()
    }

    /// Every pool in use, with its class size.
    pub fn used(&self) -> impl Iterator<Item = (usize, &Pool<T>)> {
        self.pools
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.get().map(|p| (self.classes.size(i), p)))
    }

    /// Idle objects over all classes.
    pub fn idle(&self) -> usize {
        self.used().map(|(_, pool)| pool.idle()).sum()
    }

    /// Shows every object the family holds a reference to (idle ones, and
    /// the ledger's) to `f`: for a garbage collector's traversal, with the
    /// promise of [`Pool::visit`].
    pub fn visit<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> Result<(), E> {
        for (_, pool) in self.used() {
            pool.visit(&mut f)?;
        }
        match &self.ledger {
            Some(ledger) => ledger.visit(|out| f(&out.item)),
            None => Ok(()),
        }
    }

    /// Drops every reference the family holds, without running hooks (see
    /// [`Pool::release_references`]).
    pub fn release_references(&self) {
        for (_, pool) in self.used() {
            pool.release_references();
        }
        if let Some(ledger) = &self.ledger {
            ledger.clear();
        }
    }
}

/// Records `item` as out, from `origin`, in a checked family's ledger;
/// `None` (and `item` dropped) if it is out already.
#[inline]
fn record_out<T, H: Hooks<T>>(
    ledger: Option<&Ledger<Out<T>>>,
    hooks: &mut H,
    item: T,
    origin: Origin,
) -> Option<T> {
    let Some(ledger) = ledger else {
        return Some(item);
    };
    let own = hooks.duplicate(&item);
    ledger
        .check_out(hooks.identity(&item), Out { item: own, origin })
        .ok()?;
    Some(item)
}

/// A class pool's hooks in a family: the caller's, plus the family's
/// record of each object handed out (see [`Hooks::record_out`]).
struct Recording<'a, T, H> {
    hooks: H,
    ledger: Option<&'a Ledger<Out<T>>>,
    origin: Origin,
}

impl<T, H: Hooks<T>> Hooks<T> for Recording<'_, T, H> {
    type Error = H::Error;

    #[inline]
    fn create(&mut self) -> Result<T, H::Error> {
        self.hooks.create()
    }

    #[inline]
    fn reset(&mut self, item: &T) -> Result<(), H::Error> {
        self.hooks.reset(item)
    }

    #[inline]
    fn validate(&mut self, item: &T) -> Result<bool, H::Error> {
        self.hooks.validate(item)
    }

    #[inline]
    fn destroy(&mut self, item: T) {
        self.hooks.destroy(item);
    }

    #[inline]
    fn keep(&mut self, item: &T) -> bool {
        self.hooks.keep(item)
    }

    #[inline]
    fn identity(&self, item: &T) -> usize {
        self.hooks.identity(item)
    }

    #[inline]
    fn duplicate(&mut self, item: &T) -> T {
        self.hooks.duplicate(item)
    }

    fn park(
        &mut self,
        waiter: &dyn Park,
        deadline: Option<std::time::Instant>,
    ) -> Result<bool, H::Error> {
        self.hooks.park(waiter, deadline)
    }

    #[inline(always)]
    fn record_out(&mut self, item: T) -> Option<T> {
        record_out(self.ledger, &mut self.hooks, item, self.origin)
    }
}

// Built with std types; under loom only the models in `loom_tests` run.
#[cfg(all(test, not(loom)))]
mod tests;
