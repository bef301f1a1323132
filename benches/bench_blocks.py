"""pytest-benchmark groups: BlockPool get+release beside bytearray(n), per size.

pytest benches --benchmark-enable -k blocks
"""

from __future__ import annotations

from typing import Any

import pytest

from shardpool import BlockPool

SIZES = [64, 4096, 65536, 1 << 20, 16 << 20]


@pytest.fixture(scope="module")
def pool() -> BlockPool:
    return BlockPool()


@pytest.mark.parametrize("n", SIZES)
def test_bytearray(benchmark: Any, n: int) -> None:
    benchmark.group = f"block of {n} bytes"
    result = benchmark(bytearray, n)
    assert len(result) == n


@pytest.mark.parametrize("n", SIZES)
def test_block_pool(benchmark: Any, pool: BlockPool, n: int) -> None:
    benchmark.group = f"block of {n} bytes"

    def op() -> int:
        block = pool.get(n)
        size = len(block)
        block.release()
        return size

    assert benchmark(op) == n
    assert pool.stats().bytes_in_use == 0
