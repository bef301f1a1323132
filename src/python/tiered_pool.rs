//! `TieredPool`: the layered object pool, one `Pool` per size tier.

use std::collections::BTreeMap;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use super::aio::aio_methods;
use super::args;
use super::borrow::{lending_pool, Borrow, BorrowArgs, Lend, SpareBorrows};
use super::class_macros::{core_getters, generic_class};
use super::discard::{self, DiscardOn};
use super::errors::{config_error, get_error};
use super::hooks::{self, ObjectHooks};
use super::pool_class::{self, pool_methods, PoolClass, Shared};
use super::stats::PoolStats;
use super::tracking::object_key as key;
use crate::classes::SizeClasses;
use crate::tiered::{Filing, Tiered};
use crate::Config;

/// A layered pool: objects of several sizes, one sharded pool per tier.
///
/// ``TieredPool(factory, tiers, *, size_of=None, reset=None, validate=None,
/// destroy=None, reset_on="put", idle_timeout=None, shards=None,
/// checked=True, name=None, track=False, discard_on=())``
///
/// ``get(size)`` returns an object from the smallest tier whose size is at
/// least ``size``, made by ``factory(tier_size)`` when that tier has none
/// idle. ``put(obj)`` files the object by ``size_of(obj)`` (``len`` by
/// default) in the largest tier it can serve. A request above the largest
/// tier gets ``factory(size)``; an object no tier can take when it comes
/// back (above the largest tier, or smaller than every tier) is destroyed.
///
/// An object that comes back at another tier's size (it grew or shrank)
/// moves to that tier, and the counters follow it: its own tier counts it
/// returned and gone (``puts``, ``destroyed``), the new one counts it
/// arrived (``created``), so every row of ``tier_stats()`` balances
/// (``created - destroyed == idle + in_use``). ``stats()`` leaves moves out:
/// its ``created`` and ``destroyed`` count ``factory`` and ``destroy`` calls.
///
/// Args:
///     factory: ``factory(size) -> object``.
///     tiers: ``(size, max_idle)`` pairs, e.g. the layered example
///         ``[(4096, 1000), (65536, 500), (1 << 20, 100)]``; a bare size keeps
///         ``DEFAULT_MAX_IDLE``.
///     size_of: ``size_of(obj) -> int``; ``None`` means ``len``.
///     reset: As for ``ObjectPool``, applied in every tier.
///     validate: As for ``ObjectPool``.
///     destroy: As for ``ObjectPool``.
///     reset_on: As for ``ObjectPool``.
///     idle_timeout: As for ``ObjectPool``, in every tier.
///     shards: Shards per tier (default: the number of CPUs).
///     checked: Refuse (``ValueError``, changing nothing) a ``put`` of an
///         object this pool has not handed out, or one returned twice (on
///         by default), as ``ObjectPool`` does. The record also tells which
///         tier each object came from. ``False`` saves a hash-table insert
///         and remove per round trip, but a double ``put`` then hands one
///         object to two holders, and a ``put`` is counted in the tier the
///         object's size files it in, so an object that changed tier leaves
///         two rows of ``tier_stats()`` unbalanced (``stats()`` stays exact).
///     name: A name for ``repr()``, warnings and metrics labels.
///     track: Record where each object is acquired, for ``outstanding()``
///         and the ``ResourceWarning`` of ``close()``.
///     discard_on: As for ``ObjectPool``: exception classes whose raising
///         in a ``borrow()`` or ``aborrow()`` block discards the object.
///
/// Raises:
///     TypeError, ValueError: for bad arguments, naming the argument.
#[pyclass(frozen, weakref, subclass, module = "shardpool", name = "TieredPool")]
pub struct TieredPool {
    /// What the pool shares with its `Borrow`s (which hold it, spares
    /// included, instead of this object: see `borrow`).
    state: Py<TieredPoolState>,
}

/// A `TieredPool`'s state, shared with its `Borrow`s: a hidden Python object,
/// so that the collector counts its holders (see `borrow`).
#[pyclass(frozen, module = "shardpool", name = "_TieredPoolState")]
pub struct TieredPoolState {
    /// `Borrow`s whose block exited, for the next `borrow()`; each holds
    /// this state: the pool object's `Drop` lets go of them.
    borrows: SpareBorrows,
    core: Shared<Tiered<Py<PyAny>>>,
    hooks: ObjectHooks,
    size_of: Option<Py<PyAny>>,
    discard_on: DiscardOn,
}

impl TieredPoolState {
    fn get_sized(&self, py: Python<'_>, size: usize) -> PyResult<Py<PyAny>> {
        let (obj, _) = self
            .core
            .get(size, |tier| self.hooks.bound(py, Some(tier)))
            .map_err(|e| get_error(e, None, None))?;
        self.core.tracking.acquired(py, key(&obj));
        Ok(obj)
    }

    fn size_of(&self, obj: &Bound<'_, PyAny>) -> PyResult<usize> {
        match &self.size_of {
            None => obj.len(),
            Some(f) => {
                let n = f.bind(obj.py()).call1((obj,))?;
                args::count(&n, "size_of(obj)")
            }
        }
    }

    fn put_object(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put_sized(obj, self.size_of(obj)?)
    }

    /// The put at the end of a `borrow()`/`aborrow()` block, whose holder
    /// lets go of the object: one that cannot be measured (`size_of`
    /// raised) is destroyed by a checked pool, as a failing reset destroys
    /// it, instead of staying out for good, kept alive by the pool's
    /// record; the error propagates. (An unchecked pool keeps no record:
    /// the object is let go of, as one never given back.)
    fn give_back(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.size_of(obj) {
            Ok(size) => self.put_sized(obj, size),
            Err(e) => {
                if self.core.is_checked() {
                    // Refused only if the object is not out, which the
                    // block's record (`lent`) rules out: nothing to add.
                    let _ = self.discard_object(obj);
                }
                Err(e)
            }
        }
    }

    fn put_sized(&self, obj: &Bound<'_, PyAny>, size: usize) -> PyResult<()> {
        let hooks = |tier| self.hooks.bound(obj.py(), Some(tier));
        let put = || self.core.put_ref(obj.as_unbound(), size, hooks).map(drop);
        self.core.tracking.put_object(obj, put)
    }

    fn discard_object(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        // A checked pool knows the object's tier: a broken object is not
        // measured (its `size_of` might fail).
        let size = if self.core.is_checked() {
            0
        } else {
            self.size_of(obj)?
        };
        let hooks = |tier| self.hooks.bound(obj.py(), Some(tier));
        let discard = || self.core.discard(obj.clone().unbind(), size, hooks);
        self.core.tracking.discard_object(obj, discard)
    }
}

lending_pool!(TieredPool, TieredPoolState);

impl Lend for TieredPoolState {
    fn lend(&self, py: Python<'_>, args: &BorrowArgs) -> PyResult<Py<PyAny>> {
        self.get_sized(py, args.size)
    }

    fn take_back(&self, obj: &Bound<'_, PyAny>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.end_borrow(obj, exc)
    }

    fn spare_borrows(&self) -> &SpareBorrows {
        &self.borrows
    }

    fn describe(&self) -> &str {
        self.hooks.pool()
    }

    /// The hooks, the spare `Borrow`s (with a GIL), every idle object of
    /// every tier, and the checked record's objects out.
    fn traverse_state(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.hooks.traverse(visit)?;
        self.borrows.traverse_held(visit)?;
        visit.call(&self.size_of)?;
        self.discard_on.traverse(visit)?;
        self.core.visit(|obj| visit.call(obj))
    }

    fn clear_state(&self) {
        Python::attach(|py| self.borrows.close(py));
        self.core.release_references();
    }
}

impl PoolClass for TieredPool {
    fn close_core(&self, py: Python<'_>) {
        self.borrows.close(py);
        self.core.close(|size| self.hooks.bound(py, Some(size)));
    }

    fn repr_fields(&self, _py: Python<'_>) -> PyResult<String> {
        let (s, sizes) = (self.core.stats(), self.core.classes().sizes());
        Ok(format!(
            "tiers={sizes:?} idle={} in_use={}",
            s.idle, s.in_use
        ))
    }
}

pool_methods!(
    TieredPool,
    "object",
    idle,
    /// Close every tier: destroy idle objects; ``get`` raises ``PoolClosed``
    /// and returned objects are destroyed from now on.
    /// With ``track=True``, warns (``ResourceWarning``) where the objects
    /// still out were acquired.
);

core_getters!(TieredPool {
    /// Whether returns are checked against the objects handed out.
    checked: bool = is_checked,
});
generic_class!(TieredPool);
discard::discard_methods!(
    TieredPool,
    TieredPoolState,
    /// Destroy an object from ``get`` instead of giving it back (it is
    /// broken, or must not be reused): ``destroy`` runs, counted in
    /// ``stats().discarded`` in the tier it came from. A checked pool raises
    /// ``ValueError`` (changing nothing) for an object it has not handed
    /// out, or one returned or discarded already (an unchecked pool cannot
    /// tell: it destroys whatever it is given, counted in the tier
    /// ``size_of(obj)`` files it in). Inside a ``borrow()`` or ``aborrow()``
    /// block, the block's exit then does nothing more.
);

aio_methods!(
    TieredPool, |slf|
    (size: &Bound<'_, PyAny>, timeout: Option<&Bound<'_, PyAny>>) (size, timeout=None) => {
        let size = args::count(size, "size")?;
        args::seconds(timeout, "timeout")?;
        size
    },
    /// ``await pool.aget(size)``: ``get(size)`` for asyncio. A tiered pool is
    /// unbounded, so it never waits; ``timeout`` is accepted (and checked)
    /// for symmetry with ``ObjectPool.aget``.
    aget: "aget_sized";
    /// ``async with pool.aborrow(size) as obj:``: ``aget(size)`` on entry,
    /// ``put`` on exit (also when the block raises or the task is cancelled).
    aborrow: "AsyncBorrow";
);

#[pymethods]
impl TieredPool {
    #[new]
    #[pyo3(signature = (
        factory, tiers, /, *, size_of=None, reset=None, validate=None, destroy=None,
        reset_on=None, idle_timeout=None, shards=None, checked=None, name=None, track=None,
        discard_on=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        factory: Bound<'_, PyAny>,
        tiers: Bound<'_, PyAny>,
        size_of: Option<Bound<'_, PyAny>>,
        reset: Option<Bound<'_, PyAny>>,
        validate: Option<Bound<'_, PyAny>>,
        destroy: Option<Bound<'_, PyAny>>,
        reset_on: Option<Bound<'_, PyAny>>,
        idle_timeout: Option<Bound<'_, PyAny>>,
        shards: Option<Bound<'_, PyAny>>,
        checked: Option<Bound<'_, PyAny>>,
        name: Option<Bound<'_, PyAny>>,
        track: Option<Bound<'_, PyAny>>,
        discard_on: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = factory.py();
        let mut hooks = ObjectHooks::new(factory, reset, validate, destroy)?;
        let discard_on = DiscardOn::new(discard_on.as_ref())?;
        let labels = pool_class::labels(name.as_ref(), track.as_ref())?;
        hooks.describe_pool_as(labels.0.describe("TieredPool"));
        let reset_on = args::choice(reset_on.as_ref(), "reset_on", &hooks::RESET_ON)?;
        let specs = args::size_specs(&tiers, "tiers", "tier")?;
        let classes =
            SizeClasses::new(specs.iter().map(|s| s.0).collect(), "tiers").map_err(config_error)?;
        let size_of = args::optional_callable(size_of, "size_of")?;
        let shards = args::optional_count(shards.as_ref(), "shards")?;
        let (idle_timeout, _) = args::seconds(idle_timeout.as_ref(), "idle_timeout")?;
        let checked = args::optional_bool(checked.as_ref(), "checked")?.unwrap_or(true);
        let tiers = Tiered::new(classes, Filing::Floor, checked, |size| Config {
            max_idle: Some(
                specs
                    .iter()
                    .find(|s| s.0 == size)
                    .and_then(|s| s.1)
                    .unwrap_or(Config::DEFAULT_MAX_IDLE),
            ),
            shards,
            idle_timeout,
            reset_on,
            ..Config::default()
        })
        .map_err(config_error)?;
        let borrows = SpareBorrows::new(py)?;
        let state = TieredPoolState {
            borrows,
            core: Shared::new(tiers, labels),
            hooks,
            size_of,
            discard_on,
        };
        TieredPool::with_state(py, state)
    }

    /// An object from the smallest tier of at least ``size``: an idle one,
    /// or ``factory(tier_size)``. Above the largest tier: ``factory(size)``.
    /// Raises ``PoolClosed`` on a closed pool.
    fn get(&self, py: Python<'_>, size: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.get_sized(py, args::count(size, "size")?)
    }

    /// Give back an object; it is filed by ``size_of(obj)``. If its reset
    /// raises, the object is destroyed and the exception propagates. A
    /// checked pool raises ``ValueError`` (changing nothing) for an object
    /// it has not handed out, or one returned already.
    #[pyo3(signature = (obj, /))]
    fn put(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put_object(obj)
    }

    /// A context manager: ``get(size)`` on entry, ``put`` on exit (also when
    /// the block raises).
    fn borrow<'py>(
        slf: &Bound<'py, Self>,
        size: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, Borrow>> {
        let args = BorrowArgs {
            timeout: None,
            size: args::count(size, "size")?,
        };
        Borrow::lent_by(slf.get().state.bind(slf.py()), args)
    }

    /// Counters over all tiers (``PoolStats``).
    fn stats(&self) -> PoolStats {
        self.core.stats().into()
    }

    /// ``{tier_size: PoolStats}`` for every tier. A tier's ``created`` and
    /// ``destroyed`` include objects that moved in or out of it.
    fn tier_stats(&self) -> BTreeMap<usize, PoolStats> {
        let rows = self.core.classes_stats().into_iter();
        rows.map(|(size, s)| (size, s.into())).collect()
    }

    /// In every tier, destroy expired idle objects, then the oldest until at
    /// most ``keep`` remain. Returns how many were destroyed.
    #[pyo3(signature = (keep=None))]
    fn trim(&self, py: Python<'_>, keep: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let keep = args::optional_count(keep, "keep")?.unwrap_or(0);
        Ok(self
            .core
            .trim(keep, |size| self.hooks.bound(py, Some(size))))
    }

    /// Destroy every idle object. Returns how many were destroyed.
    fn clear(&self, py: Python<'_>) -> usize {
        self.core.trim(0, |size| self.hooks.bound(py, Some(size)))
    }

    /// The tiers as ``(size, max_idle)`` pairs, smallest first.
    #[getter]
    fn tiers(&self) -> Vec<(usize, usize)> {
        self.core.classes_max_idle()
    }
}
