"""pytest-benchmark groups: ObjectPool beside its references.

pytest benches --benchmark-enable            (measure)
pytest benches                               (the default: each runs once, as a test)
"""

from __future__ import annotations

import queue
from collections import deque
from typing import Any

import pytest

from shardpool import ObjectPool
from shardpool.bench import ClassBorrow, MinimalPool, generator_borrow


@pytest.mark.benchmark(group="get+put round trip")
def test_deque_pair(benchmark: Any) -> None:
    d: deque[object] = deque([object()])

    def op() -> None:
        d.append(d.pop())

    benchmark(op)
    assert len(d) == 1


@pytest.mark.benchmark(group="get+put round trip")
def test_minimal_python_pool(benchmark: Any) -> None:
    pool = MinimalPool(object)

    def op() -> None:
        pool.put(pool.get())

    benchmark(op)
    assert len(pool._idle) == 1


@pytest.mark.benchmark(group="get+put round trip")
def test_simple_queue(benchmark: Any) -> None:
    q: queue.SimpleQueue[object] = queue.SimpleQueue()
    q.put(object())

    def op() -> None:
        q.put(q.get_nowait())

    benchmark(op)
    assert q.qsize() == 1


@pytest.mark.benchmark(group="get+put round trip")
@pytest.mark.parametrize("config", [{}, {"checked": False}, {"max_size": 1024}], ids=str)
def test_object_pool(benchmark: Any, config: dict[str, Any]) -> None:
    pool: ObjectPool[object] = ObjectPool(object, **config)

    def op() -> None:
        pool.put(pool.get())

    benchmark(op)
    s = pool.stats()
    assert s.created == 1
    assert s.in_use == 0


@pytest.mark.benchmark(group="get_many/put_many(64)")
@pytest.mark.parametrize("checked", [True, False])
def test_object_pool_batch(benchmark: Any, checked: bool) -> None:
    pool: ObjectPool[object] = ObjectPool(object, max_idle=64, checked=checked)
    pool.put_many(pool.get_many(64))

    def op() -> None:
        pool.put_many(pool.get_many(64))

    benchmark(op)
    s = pool.stats()
    assert s.created == 64
    assert s.in_use == 0
    assert s.idle == 64


@pytest.mark.benchmark(group="borrow")
def test_object_pool_borrow(benchmark: Any) -> None:
    pool: ObjectPool[object] = ObjectPool(object)

    def op() -> None:
        with pool.borrow():
            pass

    benchmark(op)
    assert pool.stats().created == 1


@pytest.mark.benchmark(group="borrow")
def test_class_based_context_manager(benchmark: Any) -> None:
    pool = MinimalPool(object)

    def op() -> None:
        with ClassBorrow(pool):
            pass

    benchmark(op)
    assert len(pool._idle) == 1


@pytest.mark.benchmark(group="borrow")
def test_generator_context_manager(benchmark: Any) -> None:
    pool = MinimalPool(object)

    def op() -> None:
        with generator_borrow(pool):
            pass

    benchmark(op)
    assert len(pool._idle) == 1


class _Item:
    """An ordinary instance, for the libraries that want a class."""


def _peer(name: str) -> tuple[Any, Any]:
    """(get, put) of a Python pool library, skipping when it is not installed."""
    if name == "object-pool":
        peer = pytest.importorskip("object_pool").ObjectPool(_Item)
        return peer.get, peer.put
    if name == "syncpool-py":
        module = pytest.importorskip("syncpool_py.pools.syncpool")
        sync = module.SyncObjectPool(obj=_Item)
        # Its get() returns None when empty instead of creating: prime it.
        sync.put(sync.get_new_obj())
        return sync.get, sync.put
    fa = pytest.importorskip("fastalloc").ThreadSafePool(_Item, 64)
    return fa.get, fa.release


@pytest.mark.benchmark(group="get+put round trip")
@pytest.mark.parametrize("name", ["object-pool", "fastalloc", "syncpool-py"])
def test_python_peer(benchmark: Any, name: str) -> None:
    get, put = _peer(name)
    put(get())

    def op() -> None:
        put(get())

    benchmark(op)
    assert isinstance(get(), _Item)
