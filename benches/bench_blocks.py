"""pytest-benchmark groups: BlockPool get+release beside bytearray(n), per size,
and BufferPool beside the buffers one builds by hand.

pytest benches --benchmark-enable -k blocks
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest

from shardpool import BlockPool, BufferPool

SIZES = [64, 4096, 65536, 1 << 20, 16 << 20]
DATA = bytes(100)


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


@pytest.mark.parametrize("n", SIZES)
def test_block_pool_with(benchmark: Any, pool: BlockPool, n: int) -> None:
    benchmark.group = f"block of {n} bytes"

    def op() -> int:
        with pool.get(n) as block:
            return len(block)

    assert benchmark(op) == n
    assert pool.stats().bytes_in_use == 0


@pytest.mark.benchmark(group="100 B of output")
def test_bytearray_build(benchmark: Any) -> None:
    def op() -> int:
        b = bytearray()
        b += DATA
        return len(b)

    assert benchmark(op) == 100


@pytest.mark.benchmark(group="100 B of output")
def test_bytesio_build(benchmark: Any) -> None:
    def op() -> int:
        b = BytesIO()
        return b.write(DATA)

    assert benchmark(op) == 100


@pytest.mark.benchmark(group="100 B of output")
def test_buffer_pool(benchmark: Any) -> None:
    buffers = BufferPool()

    def op() -> int:
        b = buffers.get()
        written = b.write(DATA)
        b.release()
        return written

    assert benchmark(op) == 100
    s = buffers.stats()
    assert s.created == 1
    assert s.in_use == 0
