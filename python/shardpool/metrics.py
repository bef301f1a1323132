"""Prometheus metrics for shardpool pools (needs ``pip install 'shardpool[prometheus]'``).

A ``PoolCollector`` publishes the ``stats()`` of every pool added to it each
time Prometheus scrapes the registry it is registered with:

    from prometheus_client import start_http_server

    from shardpool import ObjectPool
    from shardpool.metrics import register

    pool = ObjectPool(dict, name="sessions")
    register(pool)  # the default registry, which start_http_server serves
    start_http_server(9100)

Every sample has the labels ``pool`` (the pool's ``name``, or a generated
``"<kind>-<n>"`` for an unnamed pool) and ``kind`` (``object``, ``tiered``,
``block`` or ``buffer``). The metric names are stable:

- counters of every kind: ``shardpool_created_total``,
  ``shardpool_destroyed_total``, ``shardpool_hits_total``,
  ``shardpool_misses_total``, ``shardpool_puts_total``,
  ``shardpool_dropped_total``, ``shardpool_expired_total``;
- counters of object, tiered and buffer pools:
  ``shardpool_reset_errors_total``, ``shardpool_invalid_total``,
  ``shardpool_waits_total``, ``shardpool_timeouts_total``,
  ``shardpool_cancelled_total``;
- counters of block pools: ``shardpool_oversize_total``;
- gauges: ``shardpool_idle`` and ``shardpool_in_use`` (every kind);
  ``shardpool_max_in_use`` and ``shardpool_waiting`` (callers waiting now;
  object, tiered, buffer); ``shardpool_max_size``
  (an object pool with ``max_size``); ``shardpool_idle_bytes``,
  ``shardpool_in_use_bytes`` and ``shardpool_max_idle_bytes`` (block);
- per size class of a block pool or tier of a tiered pool (label ``size``):
  ``shardpool_class_idle``, ``shardpool_class_in_use``,
  ``shardpool_class_hits_total``, ``shardpool_class_misses_total``,
  ``shardpool_class_dropped_total``.

The collector holds weak references: it never keeps a pool alive, and a pool
that is garbage-collected disappears from the next scrape.

``monitor_gc()`` (opt-in) also times every collection of CPython's cyclic
garbage collector, which ``prometheus_client``'s own GC collector counts but
does not time, and publishes the pauses as two histograms labelled
``generation``: ``shardpool_gc_pause_seconds`` (wall time) and
``shardpool_gc_pause_cpu_seconds`` (CPU time of the collecting thread). A
``GcMonitor`` also works without Prometheus: ``with GcMonitor() as m:`` and
``m.stats()``.

Every function and method is safe to call from any thread.
"""

from __future__ import annotations

import gc
import math
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from types import TracebackType
from typing import Any, Literal, TypeAlias, cast

try:
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "shardpool.metrics needs prometheus_client: pip install 'shardpool[prometheus]'"
    ) from e

from shardpool import BlockPool, BufferPool, ObjectPool, PoolStats, TieredPool
from shardpool._core import _GcClock  # pyright: ignore[reportPrivateUsage]  # compiled half

__all__ = [
    "DEFAULT_GC_BUCKETS",
    "GcMonitor",
    "GcPauses",
    "Pool",
    "PoolCollector",
    "monitor_gc",
    "register",
    "unregister",
]

Pool: TypeAlias = ObjectPool[Any] | TieredPool[Any] | BlockPool | BufferPool
"""Any shardpool pool."""

_Kind: TypeAlias = Literal["object", "tiered", "block", "buffer"]


@dataclass(frozen=True, slots=True)
class _Spec:
    """One metric family: its name without the ``shardpool_`` prefix."""

    name: str
    help: str
    counter: bool


_POOL_SPECS = (
    _Spec("created", "Objects, blocks or buffers the pool created.", True),
    _Spec("destroyed", "Objects, blocks or buffers the pool discarded, for any reason.", True),
    _Spec("hits", "Requests served with an idle (reused) object.", True),
    _Spec("misses", "Requests served with a newly created object.", True),
    _Spec("puts", "Objects given back to the pool.", True),
    _Spec("dropped", "Returned objects discarded because the idle caps were reached.", True),
    _Spec("expired", "Objects discarded after idle_timeout or max_lifetime.", True),
    _Spec("reset_errors", "Returned objects discarded because their reset raised.", True),
    _Spec("invalid", "Idle objects discarded because validate rejected them.", True),
    _Spec("waits", "Requests that waited for a pool at max_size.", True),
    _Spec("timeouts", "Waits that ended with PoolTimeout.", True),
    _Spec("cancelled", "Waits given up before their timeout (cancelled or interrupted).", True),
    _Spec("discarded", "Objects their holders discarded (discard(), or discard_on).", True),
    _Spec("rejected", "Requests refused with PoolTooBusy (max_waiting callers waited).", True),
    _Spec("oversize", "Blocks larger than max_block, allocated exactly and not pooled.", True),
    _Spec("idle", "Objects idle in the pool.", False),
    _Spec("in_use", "Objects handed out and not yet returned.", False),
    _Spec("max_in_use", "The highest in_use observed.", False),
    _Spec("waiting", "Callers (threads and tasks) waiting now for a pool at max_size.", False),
    _Spec("max_size", "The most objects that may exist at once (bounded pools).", False),
    _Spec("idle_bytes", "Bytes held idle by a block pool.", False),
    _Spec("in_use_bytes", "Bytes of blocks handed out and not yet released.", False),
    _Spec("max_idle_bytes", "The most bytes a block pool keeps idle.", False),
)

_CLASS_SPECS = (
    _Spec("class_idle", "Idle objects of one size class or tier.", False),
    _Spec("class_in_use", "Objects of one size class or tier handed out.", False),
    _Spec("class_hits", "Requests of one size class or tier served with a reused object.", True),
    _Spec("class_misses", "Requests of one size class or tier served with a new object.", True),
    _Spec("class_dropped", "Returned objects of one size class or tier discarded.", True),
)

_LABELS = ("pool", "kind")
_CLASS_LABELS = ("pool", "kind", "size")


def _kind(pool: Pool) -> _Kind:
    if isinstance(pool, ObjectPool):
        return "object"
    if isinstance(pool, TieredPool):
        return "tiered"
    if isinstance(pool, BlockPool):
        return "block"
    if isinstance(pool, BufferPool):  # pyright: ignore[reportUnnecessaryIsInstance]
        return "buffer"
    raise TypeError(f"not a shardpool pool: {type(pool).__name__}")


def _from_pool_stats(s: PoolStats) -> dict[str, float]:
    return {
        "created": s.created,
        "destroyed": s.destroyed,
        "hits": s.hits,
        "misses": s.misses,
        "puts": s.puts,
        "dropped": s.dropped,
        "expired": s.expired,
        "reset_errors": s.reset_errors,
        "invalid": s.invalid,
        "waits": s.waits,
        "timeouts": s.timeouts,
        "cancelled": s.cancelled,
        "idle": s.idle,
        "in_use": s.in_use,
        "max_in_use": s.max_in_use,
        "waiting": s.waiting,
    }


def _from_class_stats(
    idle: int, in_use: int, hits: int, misses: int, dropped: int
) -> dict[str, float]:
    return {
        "class_idle": idle,
        "class_in_use": in_use,
        "class_hits": hits,
        "class_misses": misses,
        "class_dropped": dropped,
    }


def _sample(pool: Pool) -> tuple[dict[str, float], list[tuple[int, dict[str, float]]]]:
    """The pool's values by metric name, and those of each size class or tier."""
    if isinstance(pool, BlockPool):
        b = pool.stats()
        values: dict[str, float] = {
            "created": b.created,
            "destroyed": b.destroyed,
            "hits": b.hits,
            "misses": b.misses,
            "puts": b.puts,
            "dropped": b.dropped,
            "expired": b.expired,
            "oversize": b.oversize,
            "idle": b.idle,
            "in_use": b.in_use,
            "idle_bytes": b.bytes_idle,
            "in_use_bytes": b.bytes_in_use,
            "max_idle_bytes": b.max_idle_bytes,
        }
        classes = [
            (c.size, _from_class_stats(c.idle, c.in_use, c.hits, c.misses, c.dropped))
            for c in b.classes
        ]
        return values, classes
    stats = pool.stats()
    values = _from_pool_stats(stats)
    if isinstance(pool, ObjectPool | TieredPool):
        values["discarded"] = stats.discarded
    if isinstance(pool, ObjectPool) and pool.max_size is not None:
        values["max_size"] = pool.max_size
        values["rejected"] = stats.rejected
    if isinstance(pool, TieredPool):
        tiers = [
            (size, _from_class_stats(t.idle, t.in_use, t.hits, t.misses, t.dropped))
            for size, t in pool.tier_stats().items()
        ]
        return values, tiers
    return values, []


_Family: TypeAlias = CounterMetricFamily | GaugeMetricFamily

_WAIT_HELP = "How long requests waited for a pool at max_size (served or timed out)."


def _wait_family() -> HistogramMetricFamily:
    return HistogramMetricFamily("shardpool_wait_seconds", _WAIT_HELP, labels=_LABELS)


def _add_waits(family: HistogramMetricFamily, labels: list[str], pool: Pool) -> None:
    """The wait-time histogram of a bounded ``ObjectPool``, cumulative as
    Prometheus wants it."""
    if not isinstance(pool, ObjectPool):
        return
    histogram = pool.wait_histogram()
    if histogram is None:
        return
    bounds, counts, total = histogram
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        buckets.append((repr(bound), running))
    buckets.append(("+Inf", running + counts[-1]))
    family.add_metric(labels, buckets, sum_value=total)


def _families() -> tuple[dict[str, _Family], dict[str, _Family]]:
    def family(spec: _Spec, labels: tuple[str, ...]) -> _Family:
        name = f"shardpool_{spec.name}"
        if spec.counter:
            return CounterMetricFamily(name, spec.help, labels=labels)
        return GaugeMetricFamily(name, spec.help, labels=labels)

    return (
        {s.name: family(s, _LABELS) for s in _POOL_SPECS},
        {s.name: family(s, _CLASS_LABELS) for s in _CLASS_SPECS},
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    ref: weakref.ReferenceType[Pool]
    label: str
    kind: _Kind


class PoolCollector(Collector):
    """A ``prometheus_client`` collector for any number of pools.

    ``add()`` pools to it and register it with a ``CollectorRegistry``
    (``registry.register(collector)``), or let ``register()`` do both for
    you. Each scrape calls every live pool's ``stats()``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Keyed by id(pool); an entry whose pool died is pruned on the next
        # add() or collect(), and its id may then be reused by a new pool.
        self._entries: dict[int, _Entry] = {}
        self._generated: dict[_Kind, int] = {}

    def add(self, pool: Pool) -> str:
        """Publish ``pool``'s metrics; returns its ``pool`` label.

        The label is ``pool.name``, or for an unnamed pool ``"<kind>-<n>"``
        (``object-1``, ``block-2``, ...), fixed for the pool's life. Adding
        a pool twice returns its label. Raises ``ValueError`` if another live
        pool of this collector has the same label, since Prometheus would
        merge the two series, and ``TypeError`` for anything but a pool.
        """
        kind = _kind(pool)
        with self._lock:
            self._prune()
            entry = self._entries.get(id(pool))
            if entry is not None:
                return entry.label
            label = pool.name
            if label is None:
                n = self._generated.get(kind, 0) + 1
                self._generated[kind] = n
                label = f"{kind}-{n}"
            if any(e.label == label for e in self._entries.values()):
                raise ValueError(
                    f"a pool labelled {label!r} is already published by this collector"
                )
            self._entries[id(pool)] = _Entry(weakref.ref(pool), label, kind)
            return label

    def remove(self, pool: Pool) -> bool:
        """Stop publishing ``pool``; returns whether it was published."""
        with self._lock:
            entry = self._entries.get(id(pool))
            if entry is None or entry.ref() is not pool:
                return False
            del self._entries[id(pool)]
            return True

    def labels(self) -> list[str]:
        """The ``pool`` labels of the live pools, in the order they were added."""
        return [label for label, _, _ in self._live()]

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (for the registry's name checks)."""
        pools, classes = _families()
        yield from pools.values()
        yield from classes.values()
        yield _wait_family()

    def collect(self) -> Iterator[Metric]:
        """The metric families with one sample per live pool (and size class)."""
        pools, classes = _families()
        waits = _wait_family()
        for label, kind, pool in self._live():
            _add_waits(waits, [label, kind], pool)
            values, rows = _sample(pool)
            for name, value in values.items():
                pools[name].add_metric([label, kind], value)
            for size, row in rows:
                for name, value in row.items():
                    classes[name].add_metric([label, kind, str(size)], value)
        yield from pools.values()
        yield from classes.values()
        yield waits

    def _live(self) -> list[tuple[str, _Kind, Pool]]:
        # Strong references for the duration of one scrape; stats() is called
        # outside the lock so a slow pool does not block add() or remove().
        with self._lock:
            self._prune()
            live: list[tuple[str, _Kind, Pool]] = []
            for entry in self._entries.values():
                pool = entry.ref()
                if pool is not None:
                    live.append((entry.label, entry.kind, pool))
            return live

    def _prune(self) -> None:
        dead = [key for key, entry in self._entries.items() if entry.ref() is None]
        for key in dead:
            del self._entries[key]


_registry_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, PoolCollector] = (
    weakref.WeakKeyDictionary()
)


def register(pool: Pool, registry: CollectorRegistry = REGISTRY) -> PoolCollector:
    """Publish ``pool``'s metrics in ``registry`` (the default registry).

    The first call for a registry registers one ``PoolCollector`` with
    it; later calls add to that collector, which is returned. The ``pool``
    label is ``pool.name`` (see ``PoolCollector.add()``).
    """
    with _registry_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = PoolCollector()
            registry.register(collector)
            _collectors[registry] = collector
    collector.add(pool)
    return collector


def unregister(pool: Pool, registry: CollectorRegistry = REGISTRY) -> bool:
    """Stop publishing ``pool`` in ``registry``; returns whether it was published."""
    with _registry_lock:
        collector = _collectors.get(registry)
    return collector is not None and collector.remove(pool)


# Garbage collector pauses -----------------------------------------------------------------------

DEFAULT_GC_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Upper bounds (seconds) of the pause histograms: a young collection takes
tens of microseconds, a full one of a large heap hundreds of milliseconds."""


@dataclass(frozen=True, slots=True)
class GcPauses:
    """The collections of one generation seen by a ``GcMonitor``, and their pauses.

    Wall time is how long every other thread was stopped (a collection
    holds the GIL); CPU time is what the collecting thread spent, which on a
    busy machine can be a small part of the wall time. Totals and maxima
    are in seconds; ``wall_buckets`` and ``cpu_buckets`` count the pauses at
    or below each bound of ``GcMonitor.buckets``, cumulatively, as
    Prometheus histograms do (``collections`` is the ``+Inf`` bucket).
    """

    generation: int
    collections: int
    collected: int
    """Unreachable objects the collections found (and freed, or kept in ``gc.garbage``)."""
    uncollectable: int
    wall_seconds: float
    cpu_seconds: float
    max_wall_seconds: float
    max_cpu_seconds: float
    wall_buckets: tuple[int, ...]
    cpu_buckets: tuple[int, ...]


def _cumulative(counts: list[int]) -> tuple[int, ...]:
    """Per-bucket counts (overflow last) to Prometheus' cumulative ones (overflow dropped)."""
    total = 0
    out: list[int] = []
    for c in counts[:-1]:
        total += c
        out.append(total)
    return tuple(out)


class GcMonitor(Collector):
    """Times every collection of the cyclic garbage collector, per generation.

    Off until ``start()`` (or ``with``): a monitor that is not running adds
    nothing to the interpreter. Running, it adds a clock to
    ``gc.callbacks`` that reads two clocks when a collection starts and
    updates its totals when it stops. The clock is compiled: a Python
    callback would let other threads run in the middle of a collection,
    and on CPython 3.11 what they allocate then is never counted towards
    the next collection, so a monitor written in Python would itself make
    a threaded program collect less often. ``stop()`` removes the clock;
    the totals stay.

    Register it with a ``CollectorRegistry`` (or let ``monitor_gc()`` do it)
    to publish ``shardpool_gc_pause_seconds`` and
    ``shardpool_gc_pause_cpu_seconds``, histograms with a ``generation``
    label. Collections run with the GIL held, so the wall-clock pause is
    time no other thread of the process ran; CPU time, from
    ``time.thread_time_ns()`` in the collecting thread, is what the
    collection itself cost, without the time the machine gave other
    processes.
    """

    def __init__(self, buckets: Iterable[float] = DEFAULT_GC_BUCKETS) -> None:
        """``buckets``: the histograms' upper bounds in seconds, increasing, finite, at
        least a nanosecond.

        Raises:
            TypeError: a bound is not a real number.
            ValueError: no bounds, or bounds not finite, increasing and at least 1e-9.
        """
        bounds: list[float] = []
        for b in buckets:
            value = cast(object, b)  # checked at run time too, for untyped callers
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"buckets must be numbers, got {type(value).__name__}")
            bounds.append(float(value))
        if not bounds:
            raise ValueError("buckets must hold at least one bound")
        if not all(math.isfinite(b) and b >= 1e-9 for b in bounds):
            raise ValueError(f"buckets must be finite and at least 1e-9, got {bounds}")
        nanoseconds = [round(b * 1e9) for b in bounds]
        if any(a >= b for a, b in pairwise(nanoseconds)):
            raise ValueError(f"buckets must be strictly increasing, got {bounds}")
        self._bounds = tuple(bounds)
        self._clock = _GcClock(nanoseconds)
        self._lock = threading.Lock()  # start() and stop()
        self._running = False

    @property
    def buckets(self) -> tuple[float, ...]:
        """The histograms' upper bounds, in seconds (``+Inf`` implied)."""
        return self._bounds

    @property
    def running(self) -> bool:
        """Whether collections are being timed."""
        return self._running

    def start(self) -> GcMonitor:
        """Time collections from now on; returns the monitor. Starting a running monitor does
        nothing."""
        with self._lock:
            if not self._running:
                gc.callbacks.append(self._clock)
                self._running = True
        return self

    def stop(self) -> None:
        """Stop timing (the totals stay). Stopping a stopped monitor does nothing."""
        with self._lock:
            if self._running:
                gc.callbacks.remove(self._clock)
                self._running = False

    def __enter__(self) -> GcMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stats(self) -> tuple[GcPauses, ...]:
        """One ``GcPauses`` per generation (0, 1, 2), oldest last, counted since the monitor
        was made."""
        return tuple(
            GcPauses(
                generation=g,
                collections=collections,
                collected=collected,
                uncollectable=uncollectable,
                wall_seconds=wall_ns / 1e9,
                cpu_seconds=cpu_ns / 1e9,
                max_wall_seconds=max_wall_ns / 1e9,
                max_cpu_seconds=max_cpu_ns / 1e9,
                wall_buckets=_cumulative(wall_counts),
                cpu_buckets=_cumulative(cpu_counts),
            )
            for g, (
                collections,
                collected,
                uncollectable,
                wall_ns,
                cpu_ns,
                max_wall_ns,
                max_cpu_ns,
                wall_counts,
                cpu_counts,
            ) in enumerate(self._clock.snapshot())
        )

    def _histograms(self) -> tuple[HistogramMetricFamily, HistogramMetricFamily]:
        labels = ["generation"]
        return (
            HistogramMetricFamily(
                "shardpool_gc_pause_seconds",
                "Wall-clock pauses of the cyclic garbage collector, per generation.",
                labels=labels,
            ),
            HistogramMetricFamily(
                "shardpool_gc_pause_cpu_seconds",
                "CPU time of the thread running the cyclic garbage collector, per collection.",
                labels=labels,
            ),
        )

    def describe(self) -> Iterator[Metric]:
        """The two histogram families, without samples (for the registry's name checks)."""
        yield from self._histograms()

    def collect(self) -> Iterator[Metric]:
        """The two histograms, one series per generation."""
        wall, cpu = self._histograms()
        bounds = [str(b) for b in self._bounds] + ["+Inf"]
        for s in self.stats():
            gen = [str(s.generation)]
            for family, counts, total in (
                (wall, s.wall_buckets, s.wall_seconds),
                (cpu, s.cpu_buckets, s.cpu_seconds),
            ):
                values = [*counts, s.collections]
                family.add_metric(gen, list(zip(bounds, values, strict=True)), total)
        yield wall
        yield cpu


_monitors: weakref.WeakKeyDictionary[CollectorRegistry, GcMonitor] = weakref.WeakKeyDictionary()


def monitor_gc(
    registry: CollectorRegistry = REGISTRY, *, buckets: Iterable[float] = DEFAULT_GC_BUCKETS
) -> GcMonitor:
    """Time every garbage collection from now on and publish the pauses in ``registry``.

    The first call for a registry makes a ``GcMonitor``, registers it and
    starts it; later calls return that monitor, started again if it was
    stopped (their ``buckets`` are ignored). ``monitor.stop()`` stops the
    timing; ``registry.unregister(monitor)`` the publishing.
    """
    with _registry_lock:
        monitor = _monitors.get(registry)
        if monitor is None:
            monitor = GcMonitor(buckets)
            registry.register(monitor)
            _monitors[registry] = monitor
    return monitor.start()
