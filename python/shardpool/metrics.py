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
  ``shardpool_max_in_use`` (object, tiered, buffer); ``shardpool_max_size``
  (an object pool with ``max_size``); ``shardpool_idle_bytes``,
  ``shardpool_in_use_bytes`` and ``shardpool_max_idle_bytes`` (block);
- per size class of a block pool or tier of a tiered pool (label ``size``):
  ``shardpool_class_idle``, ``shardpool_class_in_use``,
  ``shardpool_class_hits_total``, ``shardpool_class_misses_total``,
  ``shardpool_class_dropped_total``.

The collector holds weak references: it never keeps a pool alive, and a pool
that is garbage-collected disappears from the next scrape. Every function
and method is safe to call from any thread.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

try:
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "shardpool.metrics needs prometheus_client: pip install 'shardpool[prometheus]'"
    ) from e

from shardpool import BlockPool, BufferPool, ObjectPool, PoolStats, TieredPool

__all__ = ["Pool", "PoolCollector", "register", "unregister"]

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
    _Spec("expired", "Idle objects discarded after idle_timeout.", True),
    _Spec("reset_errors", "Returned objects discarded because their reset raised.", True),
    _Spec("invalid", "Idle objects discarded because validate rejected them.", True),
    _Spec("waits", "Requests that waited for a pool at max_size.", True),
    _Spec("timeouts", "Waits that ended with PoolTimeout.", True),
    _Spec("cancelled", "Waits given up before their timeout (cancelled or interrupted).", True),
    _Spec("oversize", "Blocks larger than max_block, allocated exactly and not pooled.", True),
    _Spec("idle", "Objects idle in the pool.", False),
    _Spec("in_use", "Objects handed out and not yet returned.", False),
    _Spec("max_in_use", "The highest in_use observed.", False),
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
    values = _from_pool_stats(pool.stats())
    if isinstance(pool, ObjectPool) and pool.max_size is not None:
        values["max_size"] = pool.max_size
    if isinstance(pool, TieredPool):
        tiers = [
            (size, _from_class_stats(t.idle, t.in_use, t.hits, t.misses, t.dropped))
            for size, t in pool.tier_stats().items()
        ]
        return values, tiers
    return values, []


_Family: TypeAlias = CounterMetricFamily | GaugeMetricFamily


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

    def collect(self) -> Iterator[Metric]:
        """The metric families with one sample per live pool (and size class)."""
        pools, classes = _families()
        for label, kind, pool in self._live():
            values, rows = _sample(pool)
            for name, value in values.items():
                pools[name].add_metric([label, kind], value)
            for size, row in rows:
                for name, value in row.items():
                    classes[name].add_metric([label, kind, str(size)], value)
        yield from pools.values()
        yield from classes.values()

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
