//! `ObjectPool`: the pool of Python objects, over the core's `Pool`.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use super::aio::aio_methods;
use super::args;
use super::borrow::{lending_pool, Borrow, BorrowArgs, Lend, SpareBorrows};
use super::class_macros::{core_getters, generic_class};
use super::discard::{self, DiscardOn};
use super::errors::{config_error, get_error, not_out, put_error};
use super::hooks::{self, ObjectHooks, PyHooks};
use super::pool_class::{self, pool_methods, PoolClass, Shared};
use super::raw_method;
use super::sizing::sizing_methods;
use super::stats::PoolStats;
use super::timeout::{self, TimeoutArg, Wait};
use super::tracking::object_key as key;
use super::waiting::{PendingObject, PyNotify, WaitQueue, Waiting};
use crate::{Config, GetError, OpenError, Pool, Step};

/// A thread-safe pool of reusable Python objects, sharded to avoid contention.
///
/// ``ObjectPool(factory, *, max_idle=None, max_size=None, reset=None,
/// validate=None, destroy=None, reset_on="put", idle_timeout=None,
/// prefill=0, shards=None, checked=True, name=None, track=False,
/// discard_on=(), timeout=..., min_size=0, max_lifetime=None, max_waiting=None)``
///
/// ``get()`` hands out an idle object, or one new from ``factory()`` when
/// none is idle; ``put(obj)`` gives it back for reuse. ``borrow()`` does both
/// in a ``with`` block.
///
/// Args:
///     factory: Zero-argument callable that makes a new object.
///     max_idle: How many idle objects to keep; a ``put`` beyond that
///         destroys the object (counted as ``dropped``). Default: ``max_size``
///         for a bounded pool (at most 65536), else ``DEFAULT_MAX_IDLE`` (1024).
///     max_size: The most objects alive at once, idle plus handed out
///         (``None``: unbounded). A ``get`` on a full pool waits for a
///         ``put``, without holding the GIL; waiters are served in order.
///     reset: How returned objects are cleaned. ``None`` (default): call
///         ``obj.reset()`` if the object's class defines a callable
///         ``reset`` (the ``Resetter`` protocol); a callable: call
///         ``reset(obj)``; ``False``: never reset.
///     validate: ``validate(obj) -> bool``, run before an idle object is
///         handed out. ``False``, or an ``Exception`` it raises (logged),
///         rejects the object: it is destroyed and the next one tried. A
///         result that is not a ``bool`` is a ``TypeError``.
///     destroy: ``destroy(obj)``, run whenever the pool discards an object.
///         Its exceptions are logged on the ``shardpool`` logger (ERROR).
///     reset_on: ``"put"`` (default: idle objects hold no data) or ``"get"``.
///     idle_timeout: Seconds an object may stay idle before it is destroyed
///         instead of reused. Checked on ``get`` and ``trim``; no thread runs.
///     prefill: Objects to create up front.
///     shards: Number of shards (default: the number of CPUs).
///     checked: Refuse (``ValueError``, changing nothing) a ``put`` of an
///         object this pool has not handed out, or one returned twice (on
///         by default, always with ``max_size``). ``False`` saves a hash-table
///         insert and remove per round trip (~13 ns), but a double ``put``
///         then hands one object to two holders.
///     name: A name for ``repr()``, warnings and metrics labels.
///     track: Record where each object is acquired (a formatted stack; a
///         few microseconds per ``get``), for ``outstanding()`` and for the
///         ``ResourceWarning`` that ``close()`` gives while objects are out.
///     discard_on: An exception class, or a tuple of them (as ``except``
///         takes): when a ``borrow()`` or ``aborrow()`` block raises one, its
///         object is discarded (``discard``) instead of put back. Default
///         ``()``: always put back.
///     timeout: Seconds a call that leaves its own ``timeout`` out waits for
///         a full bounded pool (``get``, ``get_many``, ``borrow``, ``aget``,
///         ``aborrow``). Default: 30 with ``max_size``, else ``None``;
///         ``None``: no limit.
///     min_size: The fewest objects kept in existence, idle or in use:
///         created at construction (a factory error there raises), and
///         created again whenever the pool destroys objects below it
///         (discard, expiry, validation, a failed reset, ``trim``,
///         ``clear``), on the thread that destroyed them, within
///         ``max_size``. A factory error while refilling is logged on
///         the ``shardpool`` logger (``ERROR``); a ``KeyboardInterrupt``
///         is also raised again, as Ctrl-C is (in the main thread). At
///         most ``max_size`` and ``max_idle``.
///     max_lifetime: Seconds an object may live, since it was created,
///         before it is destroyed (counted as ``expired``) instead of being
///         handed out again or kept: checked on ``get``, ``put`` and
///         ``trim``; no thread runs. Needs a checked pool.
///     max_waiting: The most callers (threads and asyncio tasks together)
///         that may wait at once for a full bounded pool; one more raises
///         ``PoolTooBusy`` at once (counted in ``stats().rejected``).
///         Needs ``max_size``. Default ``None``: no cap.
///
/// Hooks run synchronously: an ``async def`` hook is a ``TypeError`` (see
/// the asyncio section of the guide). What the pool swallows or decides on
/// its own is logged on the ``shardpool`` logger.
///
/// Raises:
///     TypeError, ValueError: for bad arguments, naming the argument.
#[pyclass(frozen, weakref, subclass, module = "shardpool", name = "ObjectPool")]
pub struct ObjectPool {
    /// What the pool shares with its `Borrow`s (which hold it, spares
    /// included, instead of this object: see `borrow`).
    state: Py<ObjectPoolState>,
}

/// An `ObjectPool`'s state, shared with its `Borrow`s: a hidden Python object,
/// so that the collector counts its holders (see `borrow`).
#[pyclass(frozen, module = "shardpool", name = "_ObjectPoolState")]
pub struct ObjectPoolState {
    /// `Borrow`s whose block exited, for the next `borrow()`; each holds
    /// this state: the pool object's `Drop` lets go of them.
    borrows: SpareBorrows,
    core: Shared<Pool<Py<PyAny>>>,
    hooks: ObjectHooks,
    discard_on: DiscardOn,
    /// The wait of a call that leaves `timeout` out.
    timeout: Wait,
}

impl ObjectPool {
    /// `borrow(timeout)`: `timeout` as for [`ObjectPoolState::get_object`],
    /// checked now, so that a bad one fails at the call, not at `with`.
    fn borrow_object<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<&Py<PyAny>>,
    ) -> PyResult<Bound<'py, Borrow>> {
        let py = slf.py();
        slf.get().timeout.resolve(timeout, py)?;
        let args = BorrowArgs {
            timeout: timeout.map(|t| t.clone_ref(py)),
            size: 0,
        };
        Borrow::lent_by(slf.get().state.bind(py), args)
    }
}

impl ObjectPoolState {
    fn call_hooks<'a, 'py>(&'a self, py: Python<'py>) -> PyHooks<'a, 'py> {
        self.hooks.bound(py, None)
    }

    /// `get(timeout)`: `timeout` is the object given, `None` if left out.
    /// Inlined into the method's entry (a frame and a result through
    /// memory less).
    #[inline(always)]
    fn get_object(&self, py: Python<'_>, timeout: Option<&Py<PyAny>>) -> PyResult<Py<PyAny>> {
        // The pool's wait by reference when `timeout` is left out: the get
        // reads only its limit, the seconds are for a failure's message (a
        // copy of the whole cost every get 4 instructions).
        let given;
        let wait = match timeout {
            None => &self.timeout,
            Some(_) => {
                given = self.timeout.resolve(timeout, py)?;
                &given
            }
        };
        let obj = self
            .core
            .get(&mut self.call_hooks(py), wait.limit)
            .map_err(|e| self.get_failed(e, wait.secs))?;
        self.core.tracking.acquired(py, key(&obj));
        Ok(obj)
    }

    /// What a failed get raises; a timeout's message describes the pool.
    fn get_failed(&self, e: GetError<PyErr>, secs: Option<f64>) -> PyErr {
        match e {
            GetError::Timeout => self.timed_out(secs),
            e => get_error(e, secs, self.core.max_size()),
        }
    }

    fn timed_out(&self, secs: Option<f64>) -> PyErr {
        timeout::timed_out(
            &self.core.naming,
            secs,
            self.core.max_size(),
            self.core.stats().in_use,
            self.core.waiting(),
        )
    }

    /// A non-blocking get's step: the object, or a `_Waiting` in the queue
    /// of a full bounded pool (`slf`).
    fn step(
        &self,
        slf: &Py<ObjectPool>,
        py: Python<'_>,
        step: Result<Step<Py<PyAny>>, GetError<PyErr>>,
    ) -> PyResult<Py<PyAny>> {
        match step.map_err(|e| get_error(e, None, self.core.max_size()))? {
            Step::Ready(obj) => {
                self.core.tracking.acquired(py, key(&obj));
                Ok(obj)
            }
            Step::Wait(waiter) => {
                Ok(Py::new(py, Waiting::new(waiter, Box::new(slf.clone_ref(py))))?.into_any())
            }
        }
    }

    /// `put(obj)`. By reference: a checked pool keeps the ledger's
    /// reference, so the caller's is neither copied nor dropped. Without
    /// tracking, the core's put is called here, inlined: through
    /// `Tracking::put_object`'s closure (called from two places) it was a
    /// function of its own, about 10 instructions a put.
    #[inline(always)]
    fn put_object(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.core.tracking.is_tracking() {
            return self.put_tracked(obj);
        }
        self.core
            .put_ref(&mut self.call_hooks(obj.py()), obj.as_unbound())
            .map_err(|e| put_error(e, obj))
    }

    /// The put at the end of a `borrow()`/`aborrow()` block.
    #[inline(always)]
    fn give_back(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put_object(obj)
    }

    #[cold]
    #[inline(never)]
    fn put_tracked(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let put = || {
            self.core
                .put_ref(&mut self.call_hooks(obj.py()), obj.as_unbound())
        };
        self.core.tracking.put_object(obj, put)
    }

    fn discard_object(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let discard = || {
            self.core
                .discard(&mut self.call_hooks(obj.py()), obj.clone().unbind())
        };
        self.core.tracking.discard_object(obj, discard)
    }
}

impl WaitQueue for Py<ObjectPool> {
    /// A wait to wait on again comes in a new `_Waiting` (this one is
    /// settled).
    fn finish(&self, py: Python<'_>, waiter: &PendingObject) -> PyResult<Py<PyAny>> {
        let pool = self.get();
        pool.step(
            self,
            py,
            pool.core.finish_wait(&mut pool.call_hooks(py), waiter),
        )
    }

    fn abandon(&self, py: Python<'_>, waiter: &PendingObject, timed_out: bool) {
        let pool = self.get();
        pool.core
            .abandon_wait(&mut pool.call_hooks(py), waiter, timed_out);
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(self)
    }
}

lending_pool!(ObjectPool, ObjectPoolState);

impl Lend for ObjectPoolState {
    fn lend(&self, py: Python<'_>, args: &BorrowArgs) -> PyResult<Py<PyAny>> {
        self.get_object(py, args.timeout.as_ref())
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

    /// The hooks, every object the pool holds (idle objects, those set
    /// aside for a waiting batch, and in a checked pool its references to
    /// handed-out ones), the spare `Borrow`s (with a GIL), and the wake-up
    /// callbacks of the tasks queued in ``aget()``.
    fn traverse_state(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.hooks.traverse(visit)?;
        self.discard_on.traverse(visit)?;
        self.borrows.traverse_held(visit)?;
        self.core.visit(|obj| visit.call(obj))?;
        self.core
            .visit_notifications(|notify| match notify.as_any().downcast_ref::<PyNotify>() {
                Some(py_notify) => visit.call(&py_notify.callback),
                None => Ok(()),
            })
    }

    /// Drops the pool's references to its objects and the callbacks of
    /// queued tasks (no hooks run; nothing can reach the pool to wake those
    /// tasks), and its spare `Borrow`s.
    fn clear_state(&self) {
        Python::attach(|py| self.borrows.close(py));
        self.core.release_references();
        drop(self.core.take_notifications());
    }
}

impl PoolClass for ObjectPool {
    fn close_core(&self, py: Python<'_>) {
        self.borrows.close(py);
        self.core.close(&mut self.call_hooks(py));
    }

    fn repr_fields(&self, py: Python<'_>) -> PyResult<String> {
        let s = self.core.stats();
        let max_size = self.core.max_size();
        Ok(format!(
            "factory={} idle={} in_use={} max_idle={} max_size={}",
            self.hooks.factory().bind(py).repr()?,
            s.idle,
            s.in_use,
            self.core.max_idle(),
            max_size.map_or_else(|| "None".into(), |m| m.to_string()),
        ))
    }
}

pool_methods!(
    ObjectPool,
    "object",
    idle,
    /// Close the pool: destroy the idle objects and fail every waiting and
    /// later ``get`` with ``PoolClosed``. Objects returned later are
    /// destroyed. Calling it again does nothing. With ``track=True``, warns
    /// (``ResourceWarning``) where the objects still out were acquired.
);

core_getters!(ObjectPool {
    /// The most idle objects kept.
    max_idle: usize = max_idle,
    /// The most objects alive at once, or ``None``.
    max_size: Option<usize> = max_size,
    /// The number of shards.
    shards: usize = shard_count,
    /// Whether returns are checked against the objects handed out.
    checked: bool = is_checked,
});
generic_class!(ObjectPool);
sizing_methods!(ObjectPool);
discard::discard_methods!(
    ObjectPool,
    ObjectPoolState,
    /// Destroy an object from ``get`` instead of giving it back (it is
    /// broken, or must not be reused): ``destroy`` runs, and its ``max_size``
    /// slot is freed at once for the longest waiter (which gets a new
    /// object). Counted in ``stats().discarded``.
    ///
    /// Raises ``ValueError`` (changing nothing) in a checked or bounded pool
    /// for an object the pool has not handed out, or one returned or
    /// discarded already; an unchecked pool (``checked=False``, no
    /// ``max_size``) keeps no record, so it destroys and counts whatever it
    /// is given, as its ``put`` takes whatever it is given. Called while a
    /// ``with pool.borrow() as obj:`` (or ``aborrow()``) block holds the
    /// object, from any thread, the block's exit then does nothing more.
);

aio_methods!(
    ObjectPool, |slf| (timeout: TimeoutArg) (timeout=TimeoutArg::Omitted) => {
        slf.get().timeout.resolve(timeout.given(), slf.py())?.secs
    },
    /// ``await pool.aget()``: ``get()`` for asyncio. Waiting for a full
    /// bounded pool never blocks the event loop: the task joins the same
    /// queue as threads blocked in ``get()``, served in arrival order, and
    /// resumes when a ``put`` (from any thread or task) hands it an object.
    /// A task cancelled or timed out while it waits loses nothing: an object
    /// granted meanwhile goes back to the pool. Raises ``PoolTimeout`` after
    /// ``timeout`` seconds (left out: the pool's ``timeout``; ``None``: no
    /// limit), ``PoolClosed`` if the pool closes.
    aget: "aget";
    /// ``async with pool.aborrow() as obj:``: ``aget()`` on entry, ``put``
    /// on exit (also when the block raises or the task is cancelled).
    aborrow: "AsyncBorrow";
);

// `ObjectPool.get` and `put`: hand-written method-table entries (see
// `raw_method`), installed on the class by `install_raw_methods`.
raw_method::pyo3_signature_method!(
    static GET: ObjectPool, "get",
    raw_method::one_param("ObjectPool", "get", &["timeout"], 0),
    "($self, timeout=...)",
    "Get an object: an idle one if any, else a new one from ``factory``.\n\
     \n\
     In a bounded pool that is full, wait for a ``put`` (other threads run\n\
     meanwhile) for at most ``timeout`` seconds (left out: the pool's\n\
     ``timeout``; ``None``: no limit; ``0``: do not wait), then raise\n\
     ``PoolTimeout``. Raises ``PoolClosed`` on a closed pool, whatever\n\
     ``factory`` or ``reset`` raise, and ``TypeError`` for a ``validate``\n\
     result that is not a ``bool``.",
    |slf, py, args| {
        let [timeout] = args;
        slf.get().get_object(py, timeout.as_ref().map(|t| t.as_unbound()))
    }
);

raw_method::pyo3_signature_method!(
    static PUT: ObjectPool, "put",
    raw_method::one_param("ObjectPool", "put", &["obj"], 1),
    "($self, obj, /)",
    "Give back an object from ``get``: it is reset and kept for reuse, or\n\
     destroyed if ``max_idle`` objects are idle or the pool is closed.\n\
     \n\
     Raises ``ValueError`` (changing nothing) in a checked or bounded pool\n\
     for an object the pool has not handed out. If the reset raises, the\n\
     object is destroyed and the exception propagates.",
    |slf, _py, args| {
        let [Some(obj)] = args else {
            unreachable!("the parser checks that a required argument is given")
        };
        slf.get().put_object(&obj)
    }
);

raw_method::pyo3_signature_method!(
    static BORROW: ObjectPool, "borrow",
    raw_method::one_param("ObjectPool", "borrow", &["timeout"], 0),
    "($self, timeout=...)",
    "A context manager that gets an object on entry and puts it back on\n\
     exit, also when the block raises: ``with pool.borrow() as obj: ...``.\n\
     ``timeout`` as for ``get``. If the block raised, an ``Exception`` from\n\
     giving the object back (a failing reset) does not replace the\n\
     block's: it is added to it as a note and logged.",
    |slf, _py, args| {
        let [timeout] = args;
        ObjectPool::borrow_object(&slf, timeout.as_ref().map(|t| t.as_unbound()))
    }
);

/// Adds `get`, `put` and `borrow` to the class (once, at module
/// initialisation).
pub fn install_raw_methods(py: Python<'_>) -> PyResult<()> {
    raw_method::install(&py.get_type::<ObjectPool>(), &[&GET, &PUT, &BORROW])
}

#[pymethods]
impl ObjectPool {
    #[new]
    #[pyo3(signature = (
        factory, /, *, max_idle=None, max_size=None, reset=None, validate=None, destroy=None,
        reset_on=None, idle_timeout=None, prefill=None, shards=None, checked=None, name=None,
        track=None, discard_on=None, timeout=TimeoutArg::Omitted, min_size=None,
        max_lifetime=None, max_waiting=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        factory: Bound<'_, PyAny>,
        max_idle: Option<Bound<'_, PyAny>>,
        max_size: Option<Bound<'_, PyAny>>,
        reset: Option<Bound<'_, PyAny>>,
        validate: Option<Bound<'_, PyAny>>,
        destroy: Option<Bound<'_, PyAny>>,
        reset_on: Option<Bound<'_, PyAny>>,
        idle_timeout: Option<Bound<'_, PyAny>>,
        prefill: Option<Bound<'_, PyAny>>,
        shards: Option<Bound<'_, PyAny>>,
        checked: Option<Bound<'_, PyAny>>,
        name: Option<Bound<'_, PyAny>>,
        track: Option<Bound<'_, PyAny>>,
        discard_on: Option<Bound<'_, PyAny>>,
        timeout: TimeoutArg,
        min_size: Option<Bound<'_, PyAny>>,
        max_lifetime: Option<Bound<'_, PyAny>>,
        max_waiting: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut hooks = ObjectHooks::new(factory, reset, validate, destroy)?;
        let discard_on = DiscardOn::new(discard_on.as_ref())?;
        let labels = pool_class::labels(name.as_ref(), track.as_ref())?;
        hooks.describe_pool_as(labels.0.describe("ObjectPool"));
        let reset_on = args::choice(reset_on.as_ref(), "reset_on", &hooks::RESET_ON)?;
        let checked = args::optional_bool(checked.as_ref(), "checked")?.unwrap_or(true);
        let max_idle = args::optional_count(max_idle.as_ref(), "max_idle")?;
        let max_size = args::optional_count(max_size.as_ref(), "max_size")?;
        let shards = args::optional_count(shards.as_ref(), "shards")?;
        let prefill = args::optional_count(prefill.as_ref(), "prefill")?.unwrap_or(0);
        let (idle_timeout, _) = args::seconds(idle_timeout.as_ref(), "idle_timeout")?;
        let timeout = Wait::pool_default(&timeout, py, max_size.is_some())?;
        let min_size = args::optional_count(min_size.as_ref(), "min_size")?.unwrap_or(0);
        let (max_lifetime, _) = args::seconds(max_lifetime.as_ref(), "max_lifetime")?;
        let max_waiting = args::optional_count(max_waiting.as_ref(), "max_waiting")?;
        let config = Config {
            max_idle,
            max_size,
            shards,
            idle_timeout,
            reset_on,
            checked,
            charge: None,
            min_size,
            max_lifetime,
            max_waiting,
        };
        // Made before the pool opens, so that its failure leaves no objects made.
        let borrows = SpareBorrows::new(py)?;
        let core = match Pool::open(config, prefill, &mut hooks.bound(py, None)) {
            Ok(core) => core,
            Err(OpenError::Config(e)) => return Err(config_error(e)),
            Err(OpenError::Fill(e)) => return Err(get_error(e, None, max_size)),
        };
        let state = ObjectPoolState {
            borrows,
            core: Shared::new(core, labels),
            hooks,
            discard_on,
            timeout,
        };
        ObjectPool::with_state(py, state)
    }

    /// For ``shardpool._aio``: an object, or a ``_Waiting`` if a full
    /// bounded pool makes the caller wait.
    fn _get_or_wait(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let (pool, py) = (slf.get(), slf.py());
        let step = pool.core.get_or_enqueue(&mut pool.call_hooks(py));
        pool.step(slf.as_unbound(), py, step)
    }

    /// Get ``n`` objects in one call, as a list: all of them or, on error,
    /// none (those already taken go back). ``timeout`` bounds the whole call
    /// (left out: the pool's ``timeout``).
    #[pyo3(signature = (n, timeout=TimeoutArg::Omitted))]
    fn get_many(
        &self,
        py: Python<'_>,
        n: &Bound<'_, PyAny>,
        timeout: TimeoutArg,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let n = args::count(n, "n")?;
        let wait = self.timeout.resolve(timeout.given(), py)?;
        let objs = self
            .core
            .get_many(&mut self.call_hooks(py), n, wait.limit)
            .map_err(|e| self.get_failed(e, wait.secs))?;
        if self.core.tracking.is_tracking() {
            for obj in &objs {
                self.core.tracking.acquired(py, key(obj));
            }
        }
        Ok(objs)
    }

    /// Give back many objects in one call. In a checked pool, if any object
    /// was not handed out (or appears twice), raise ``ValueError`` and change
    /// nothing. A reset that raises does not stop the others; the first
    /// exception propagates after all objects are handled.
    #[pyo3(signature = (objs, /))]
    fn put_many(&self, py: Python<'_>, objs: &Bound<'_, PyAny>) -> PyResult<()> {
        let items = args::collect_objects(objs, "objs")?;
        let mut hooks = self.call_hooks(py);
        let items = self
            .core
            .check_in_all(&hooks, items)
            .map_err(|(index, items)| not_out(items[index].bind(py)))?;
        if self.core.tracking.is_tracking() {
            for obj in &items {
                self.core.tracking.returned(key(obj));
            }
        }
        self.core.put_checked_in(&mut hooks, items)
    }

    /// A ``PoolStats`` snapshot of the counters. With ``reset_peak=True``,
    /// ``max_in_use`` then starts again from the current ``in_use``, so a
    /// scraper that asks each interval sees the peak of that interval.
    #[pyo3(signature = (*, reset_peak=false))]
    fn stats(&self, reset_peak: bool) -> PoolStats {
        if reset_peak {
            self.core.stats_reset_peak().into()
        } else {
            self.core.stats().into()
        }
    }

    /// Destroy expired idle objects, then the oldest until at most ``keep``
    /// remain. Returns how many were destroyed.
    #[pyo3(signature = (keep=None))]
    fn trim(&self, py: Python<'_>, keep: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let keep = args::optional_count(keep, "keep")?.unwrap_or(0);
        Ok(self.core.trim(&mut self.call_hooks(py), keep))
    }

    /// Destroy every idle object. Returns how many were destroyed.
    fn clear(&self, py: Python<'_>) -> usize {
        self.core.trim(&mut self.call_hooks(py), 0)
    }

    /// The seconds a ``get``, ``get_many``, ``borrow``, ``aget`` or
    /// ``aborrow`` that leaves ``timeout`` out waits for a full bounded pool
    /// (``None``: no limit). ``timeout=`` at construction; 30 by default in
    /// a bounded pool.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout.seconds()
    }

    /// For ``shardpool._aio``: the ``PoolTimeout`` of an ``aget()`` whose
    /// wait of ``seconds`` ran out. Not public API.
    #[pyo3(signature = (seconds, /))]
    fn _timeout_error(&self, py: Python<'_>, seconds: Option<f64>) -> Py<PyAny> {
        self.timed_out(seconds).into_value(py).into_any()
    }

    /// Seconds an idle object is kept, or ``None``.
    #[getter]
    fn idle_timeout(&self) -> Option<f64> {
        self.core.idle_timeout().map(|d| d.as_secs_f64())
    }

    /// ``"put"`` or ``"get"``.
    #[getter]
    fn reset_on(&self) -> &'static str {
        args::choice_name(&hooks::RESET_ON, self.core.reset_on())
    }

    /// The factory.
    #[getter]
    fn factory(&self, py: Python<'_>) -> Py<PyAny> {
        self.hooks.factory().clone_ref(py)
    }
}
