//! `TieredPool`: the layered object pool, one `Pool` per size tier.

use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyGenericAlias, PyType};
use pyo3::PyTraverseError;

use super::args;
use super::borrow::{Borrow, Lender};
use super::errors::{config_error, get_error};
use super::identity::Identity;
use super::object_pool::{aio, key};
use super::policy::{self, Policy};
use super::stats::PoolStats;
use crate::classes::SizeClasses;
use crate::tiered::Tiered;
use crate::{Config, Hooks, PutError, ResetOn};

/// A layered pool: objects of several sizes, one sharded pool per tier.
///
/// ``TieredPool(factory, tiers, *, size_of=None, reset=None, validate=None,
/// destroy=None, reset_on="put", idle_timeout=None, shards=None, name=None,
/// track=False)``
///
/// ``get(size)`` returns an object from the smallest tier whose size is at
/// least ``size``, made by ``factory(tier_size)`` when that tier has none
/// idle. ``put(obj)`` files the object by ``size_of(obj)`` (``len`` by
/// default) in the largest tier it can serve. A request above the largest
/// tier gets ``factory(size)``, and is destroyed when it comes back, as is
/// an object smaller than every tier.
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
///     name: A name for ``repr()``, warnings and metrics labels.
///     track: Record where each object is acquired, for ``outstanding()``
///         and the ``ResourceWarning`` of ``close()``.
#[pyclass(frozen, weakref, subclass, module = "shardpool", name = "TieredPool")]
pub struct TieredPool {
    tiers: Tiered<Py<PyAny>>,
    policy: Policy,
    size_of: Option<Py<PyAny>>,
    identity: Identity,
}

impl TieredPool {
    pub(super) fn get_sized(&self, py: Python<'_>, size: usize) -> PyResult<Py<PyAny>> {
        let obj = self.make_or_reuse(py, size)?;
        self.identity.acquired(py, key(&obj));
        Ok(obj)
    }

    fn make_or_reuse(&self, py: Python<'_>, size: usize) -> PyResult<Py<PyAny>> {
        if self.tiers.is_closed() {
            return Err(get_error(crate::GetError::Closed, None, None));
        }
        match self.tiers.route(size) {
            Some(class) => {
                let tier = self.tiers.classes().size(class);
                self.tiers
                    .pool(class)
                    .get(&mut self.policy.hooks(py, Some(tier)), None)
                    .map_err(|e| get_error(e, None, None))
            }
            None => {
                let obj = self.policy.hooks(py, Some(size)).create()?;
                self.tiers.note_oversize();
                Ok(obj)
            }
        }
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

    pub(super) fn put_object(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = obj.py();
        let size = self.size_of(obj)?;
        // From here the object is back (kept or destroyed), whatever happens.
        self.identity.returned(obj.as_ptr() as u64);
        let class = (!self.tiers.is_closed() && size <= self.tiers.classes().max())
            .then(|| self.tiers.classes().filing(size))
            .flatten();
        let Some(class) = class else {
            // Oversize, smaller than every tier, or closed: not kept.
            self.tiers.note_unfiled();
            self.policy.hooks(py, None).destroy(obj.clone().unbind());
            return Ok(());
        };
        let tier = self.tiers.classes().size(class);
        let pool = self.tiers.pool(class);
        let mut hooks = self.policy.hooks(py, Some(tier));
        let result = pool.put(&mut hooks, obj.clone().unbind());
        // As in the block pool's put: `close` may have looked for tier pools
        // before this one was built while the check above missed its mark.
        // The put's fence pairs with `Tiered::mark_closed`'s: either `close`
        // found this pool, or this sees the mark and closes it here.
        if self.tiers.is_closed() && !pool.is_closed() {
            pool.close(&mut hooks);
        }
        match result {
            Ok(()) => Ok(()),
            Err(PutError::Hook(e)) => Err(e),
            Err(PutError::NotOut { .. }) => unreachable!("tier pools are unchecked"),
        }
    }
}

#[pymethods]
impl TieredPool {
    #[new]
    #[pyo3(signature = (
        factory, tiers, /, *, size_of=None, reset=None, validate=None, destroy=None,
        reset_on=None, idle_timeout=None, shards=None, name=None, track=None
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
        name: Option<Bound<'_, PyAny>>,
        track: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let policy = Policy::new(factory, reset, validate, destroy)?;
        let identity = Identity::new(name.as_ref(), track.as_ref())?;
        let reset_on: ResetOn = policy::reset_on(reset_on.as_ref())?;
        let specs = args::size_specs(&tiers, "tiers", "tier")?;
        let classes =
            SizeClasses::new(specs.iter().map(|s| s.0).collect(), "tiers").map_err(config_error)?;
        let size_of = args::optional_callable(size_of, "size_of")?;
        let shards = args::optional_count(shards.as_ref(), "shards")?;
        let (idle_timeout, _) = args::seconds(idle_timeout.as_ref(), "idle_timeout")?;
        let tiers = Tiered::new(classes, |size| Config {
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
        Ok(TieredPool {
            tiers,
            policy,
            size_of,
            identity,
        })
    }

    /// An object from the smallest tier of at least ``size``: an idle one,
    /// or ``factory(tier_size)``. Above the largest tier: ``factory(size)``.
    /// Raises ``PoolClosed`` on a closed pool.
    fn get(&self, py: Python<'_>, size: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.get_sized(py, args::count(size, "size")?)
    }

    /// Give back an object; it is filed by ``size_of(obj)``. If its reset
    /// raises, the object is destroyed and the exception propagates.
    #[pyo3(signature = (obj, /))]
    fn put(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put_object(obj)
    }

    /// ``await pool.aget(size)``: ``get(size)`` for asyncio. A tiered pool is
    /// unbounded, so it never waits; ``timeout`` is accepted (and checked)
    /// for symmetry with ``ObjectPool.aget``.
    #[pyo3(signature = (size, timeout=None))]
    fn aget<'py>(
        slf: &Bound<'py, Self>,
        size: &Bound<'py, PyAny>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let size = args::count(size, "size")?;
        args::seconds(timeout, "timeout")?;
        aio(slf.py())?.getattr("aget_sized")?.call1((slf, size))
    }

    /// ``async with pool.aborrow(size) as obj:``: ``aget(size)`` on entry,
    /// ``put`` on exit (also when the block raises or the task is cancelled).
    #[pyo3(signature = (size, timeout=None))]
    fn aborrow<'py>(
        slf: &Bound<'py, Self>,
        size: &Bound<'py, PyAny>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let size = args::count(size, "size")?;
        args::seconds(timeout, "timeout")?;
        aio(slf.py())?.getattr("AsyncBorrow")?.call1((slf, size))
    }

    /// A context manager: ``get(size)`` on entry, ``put`` on exit (also when
    /// the block raises).
    fn borrow(slf: &Bound<'_, Self>, size: &Bound<'_, PyAny>) -> PyResult<Borrow> {
        Ok(Borrow::new(Lender::Tiers {
            pool: slf.clone().unbind(),
            size: args::count(size, "size")?,
        }))
    }

    /// Counters over all tiers (``PoolStats``).
    fn stats(&self) -> PoolStats {
        self.tiers.stats().into()
    }

    /// ``{tier_size: PoolStats}`` for every tier.
    fn tier_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (class, &size) in self.tiers.classes().sizes().iter().enumerate() {
            let stats: PoolStats = self
                .tiers
                .pool_if_used(class)
                .map(|p| p.stats())
                .unwrap_or_default()
                .into();
            d.set_item(size, stats)?;
        }
        Ok(d)
    }

    /// Idle objects in all tiers.
    fn __len__(&self) -> usize {
        self.tiers.used().map(|(_, p)| p.idle()).sum()
    }

    /// In every tier, destroy expired idle objects, then the oldest until at
    /// most ``keep`` remain. Returns how many were destroyed.
    #[pyo3(signature = (keep=None))]
    fn trim(&self, py: Python<'_>, keep: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let keep = args::optional_count(keep, "keep")?.unwrap_or(0);
        Ok(self
            .tiers
            .used()
            .map(|(size, p)| p.trim(&mut self.policy.hooks(py, Some(size)), keep))
            .sum())
    }

    /// Destroy every idle object. Returns how many were destroyed.
    fn clear(&self, py: Python<'_>) -> usize {
        self.tiers
            .used()
            .map(|(size, p)| p.trim(&mut self.policy.hooks(py, Some(size)), 0))
            .sum()
    }

    /// Close every tier: destroy idle objects; ``get`` raises ``PoolClosed``
    /// and returned objects are destroyed from now on.
    /// With ``track=True``, warns (``ResourceWarning``) where the objects
    /// still out were acquired.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.tiers.mark_closed();
        for (size, p) in self.tiers.used() {
            p.close(&mut self.policy.hooks(py, Some(size)));
        }
        self.identity
            .warn_if_outstanding(py, "TieredPool", "object(s)")
    }

    /// Where each object still out was acquired (formatted stacks, oldest
    /// first). Needs ``track=True``; raises ``RuntimeError`` otherwise.
    fn outstanding(&self) -> PyResult<Vec<String>> {
        self.identity.outstanding_sites()
    }

    /// The pool's name (``name=``), or ``None``.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.identity.name()
    }

    /// Whether acquisition sites are recorded (``track=True``).
    #[getter]
    fn track(&self) -> bool {
        self.identity.is_tracking()
    }

    /// Whether ``close()`` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.tiers.is_closed()
    }

    /// The tiers as ``(size, max_idle)`` pairs, smallest first.
    #[getter]
    fn tiers(&self) -> Vec<(usize, usize)> {
        self.tiers
            .classes()
            .sizes()
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, self.tiers.max_idle(i)))
            .collect()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let pool = slf.get();
        let s = pool.tiers.stats();
        Ok(format!(
            "<{}{}{} tiers={:?} idle={} in_use={}>",
            slf.get_type().qualname()?,
            pool.identity.repr_part(),
            if pool.tiers.is_closed() {
                " closed"
            } else {
                ""
            },
            pool.tiers.classes().sizes(),
            s.idle,
            s.in_use,
        ))
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "cannot pickle 'TieredPool' object: a pool holds live objects and hooks",
        ))
    }

    /// ``TieredPool[T]`` for type annotations.
    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        PyGenericAlias::new(cls.py(), cls.as_any(), item).map(Bound::into_any)
    }

    /// The hooks, and every idle object of every tier (see `ObjectPool`).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.policy.traverse(&visit)?;
        visit.call(&self.size_of)?;
        for (_, pool) in self.tiers.used() {
            pool.visit(|obj| visit.call(obj))?;
        }
        Ok(())
    }

    /// Breaks a reference cycle the collector found unreachable.
    fn __clear__(&self) {
        for (_, pool) in self.tiers.used() {
            pool.release_references();
        }
    }
}
