"""pytest-benchmark groups: ObjectPool beside its references.

pytest benches --benchmark-enable            (measure)
pytest benches                               (the default: each runs once, as a test)
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from shardpool import ObjectPool
from shardpool.bench import MinimalPool


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
@pytest.mark.parametrize("config", [{}, {"checked": True}, {"max_size": 64}], ids=str)
def test_object_pool(benchmark: Any, config: dict[str, Any]) -> None:
    pool: ObjectPool[object] = ObjectPool(object, **config)

    def op() -> None:
        pool.put(pool.get())

    benchmark(op)
    s = pool.stats()
    assert s.created == 1
    assert s.in_use == 0


@pytest.mark.benchmark(group="borrow")
def test_object_pool_borrow(benchmark: Any) -> None:
    pool: ObjectPool[object] = ObjectPool(object)

    def op() -> None:
        with pool.borrow():
            pass

    benchmark(op)
    assert pool.stats().created == 1
