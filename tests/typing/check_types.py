"""The types that mypy --strict and pyright --strict infer for the public API.

Checked statically by both (scripts/check), and also run as a script by
tests/project/test_typing_files.py, so every line is valid at runtime too. A line
marked ``# type: ignore[code]`` must be an error: both checkers report an
ignore comment that suppresses nothing. Where such a line would also fail
at runtime, ``refused()`` checks that it does: the types and the runtime
refuse the same things.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Literal, assert_type

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

import shardpool
from shardpool import (
    DEFAULT_MAX_IDLE,
    Block,
    BlockClassStats,
    BlockPool,
    BlockPoolStats,
    Borrow,
    Buffer,
    BufferPool,
    ObjectPool,
    PoolClosed,
    PoolStats,
    PoolTimeout,
    Resetter,
    TieredPool,
    trim_on_gc,
)
from shardpool.metrics import PoolCollector, register, unregister


def refused(call: Callable[[], object]) -> None:
    try:
        call()
    except (TypeError, ValueError, KeyError):
        return
    raise AssertionError("the runtime accepted what the types refuse")


class Parser:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def reset(self) -> None:
        self.tokens.clear()


def check_returning_none(parser: Parser) -> None:
    """A psycopg-style check: raises when broken, returns None otherwise."""


def object_pool() -> None:
    pool = ObjectPool(Parser, max_size=4, name="parsers")
    assert_type(pool, ObjectPool[Parser])  # T inferred from the factory
    assert_type(pool.get(), Parser)
    assert_type(pool.get(timeout=0.5), Parser)
    # A string: Borrow is generic in the stubs only (not subscriptable at runtime).
    assert_type(pool.borrow(), "Borrow[Parser]")
    assert isinstance(pool.borrow(), Borrow)
    with pool.borrow(timeout=1) as parser:
        assert_type(parser, Parser)
        parser.tokens.append("x")
    batch = pool.get_many(2)
    assert_type(batch, list[Parser])
    pool.put_many(batch)
    pool.put(pool.get())
    refused(lambda: pool.put("not a parser"))  # type: ignore[arg-type]
    pool.discard(pool.get())
    refused(lambda: pool.discard("not a parser"))  # type: ignore[arg-type]
    assert_type(pool.discard_on, tuple[type[BaseException], ...])
    assert_type(pool.stats().discarded, int)
    assert_type(pool.stats().as_dict()["discarded"], int)
    ObjectPool(Parser, discard_on=OSError)
    ObjectPool(Parser, discard_on=(OSError, KeyboardInterrupt))
    refused(lambda: ObjectPool(Parser, discard_on=[OSError]))  # type: ignore[arg-type]
    refused(lambda: ObjectPool(Parser, discard_on=OSError()))  # type: ignore[arg-type]
    # timeout= left out: the pool's; None: no limit (both typed alike).
    assert_type(pool.timeout, float | None)
    assert_type(pool.get(timeout=None), Parser)
    assert_type(ObjectPool(Parser, max_size=2, timeout=None).timeout, float | None)
    assert_type(pool.stats().waiting, int)
    assert_type(pool.stats().as_dict()["waiting"], int)
    # validate answers True or False: a psycopg-style check (None) is refused.
    none_checked = ObjectPool(Parser, validate=check_returning_none)  # type: ignore[arg-type]
    none_checked.put(none_checked.get())
    refused(none_checked.get)  # the runtime refuses the None at the first check
    assert_type(pool.trim(), int)
    assert_type(pool.trim(keep=1), int)
    assert_type(pool.clear(), int)
    assert_type(len(pool), int)
    assert_type(pool.closed, bool)
    assert_type(pool.max_idle, int)
    assert_type(pool.max_size, int | None)
    assert_type(pool.shards, int)
    assert_type(pool.idle_timeout, float | None)
    assert_type(pool.reset_on, Literal["put", "get"])
    assert_type(pool.checked, bool)
    assert_type(pool.factory, Callable[[], Parser])
    assert_type(pool.name, str | None)
    assert_type(pool.track, bool)
    pool.close()

    # Hooks take the pool's type; lambdas are inferred from it.
    hooked = ObjectPool(
        Parser,
        reset=lambda p: p.tokens.clear(),
        validate=lambda p: not p.tokens,
        destroy=lambda p: p.tokens.clear(),
        reset_on="get",
        idle_timeout=30.0,
        prefill=1,
        shards=2,
        checked=True,
        track=True,
    )
    assert_type(hooked.outstanding(), list[str])
    ObjectPool(Parser, reset=False)
    refused(lambda: ObjectPool(Parser, reset_on="later"))  # type: ignore[arg-type]
    ObjectPool(Parser, reset=lambda p: p.missing)  # type: ignore[attr-defined]

    with ObjectPool(dict[str, int]) as counts:
        assert_type(counts, ObjectPool[dict[str, int]])
        assert_type(counts.get(), dict[str, int])

    annotated: ObjectPool[bytearray] = ObjectPool(bytearray)
    assert_type(annotated.get(), bytearray)


def tiered_pool() -> None:
    pool = TieredPool(bytearray, [(4096, 100), (65536, 10)], name="frames")
    assert_type(pool, TieredPool[bytearray])
    assert_type(pool.get(100), bytearray)
    with pool.borrow(5000) as frame:
        assert_type(frame, bytearray)
    frame = pool.get(4096)
    assert_type(frame, bytearray)
    pool.put(frame)
    pool.discard(pool.get(10))
    assert_type(
        TieredPool(bytearray, [16], discard_on=OSError).discard_on, tuple[type[BaseException], ...]
    )
    assert_type(pool.checked, bool)
    assert_type(pool.tier_stats(), dict[int, PoolStats])
    assert_type(pool.tiers, list[tuple[int, int]])
    assert_type(pool.stats(), PoolStats)
    sized = TieredPool(lambda n: [0] * n, [16, 256], size_of=len)
    assert_type(sized, TieredPool[list[int]])
    pool.close()
    sized.close()


def stats() -> None:
    s = ObjectPool(Parser).stats()
    assert_type(s, PoolStats)
    assert_type(s.hits, int)
    assert_type(s.misses, int)
    assert_type(s.in_use, int)
    assert_type(s.idle, int)
    assert_type(s.max_in_use, int)
    assert_type(s.hit_rate, float)
    d = s.as_dict()
    assert_type(d["hits"], int)
    assert_type(d["hit_rate"], float)
    refused(lambda: d["nonsense"])  # type: ignore[typeddict-item]
    total: int = d["created"] + d["destroyed"]
    assert total >= 0


def blocks() -> None:
    pool = BlockPool(zero="poison", max_idle_bytes=1 << 20, name="io", track=False)
    assert_type(pool.zero, Literal["never", "release", "acquire", "poison"])
    assert_type(pool.classes, list[int])
    block = pool.get(4096, zeroed=True)
    assert_type(block, Block)
    assert_type(block.capacity, int)
    assert_type(len(block), int)
    # Blocks are buffers: memoryview, hashlib and recv_into accept them.
    view = memoryview(block)
    assert_type(view, memoryview)
    view[0] = 1
    view.release()
    assert_type(hashlib.sha256(block).hexdigest(), str)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"hello")
        assert_type(b.recv_into(block), int)
    block.release()
    assert_type(block.released, bool)
    with pool.get(100) as other:
        assert_type(other, Block)
    s = pool.stats()
    assert_type(s, BlockPoolStats)
    assert_type(s.bytes_idle, int)
    assert_type(s.hit_rate, float)
    assert_type(s.classes, tuple[BlockClassStats, ...])
    assert_type(s.classes[0].size, int)
    d = s.as_dict()
    assert_type(d["bytes_in_use"], int)
    assert_type(d["hit_rate"], float)
    assert_type(d["classes"][0]["size"], int)
    assert_type(pool.trim(keep_bytes=0), int)
    refused(lambda: BlockPool(zero="sometimes"))  # type: ignore[arg-type]
    pool.close()


def buffers() -> None:
    pool = BufferPool(max_capacity=1 << 20, name="out")
    with pool.get() as buf:
        assert_type(buf, Buffer)
        assert_type(buf.write(b"head"), int)
        buf.extend(memoryview(b"er"))
        buf += bytearray(b"!")
        assert_type(buf, Buffer)
        assert_type(buf.getvalue(), bytes)
        assert_type(bytes(buf), bytes)  # exported through the buffer protocol
        refused(lambda: buf.write("text"))  # type: ignore[arg-type]
    assert_type(pool.stats(), PoolStats)
    assert_type(pool.typical_capacity, int)
    assert_type(pool.large_capacity, int | None)
    pool.close()


def errors_and_constants() -> None:
    assert_type(shardpool.__version__, str)
    assert_type(DEFAULT_MAX_IDLE, int)
    timeout: TimeoutError = PoolTimeout("full")
    closed: RuntimeError = PoolClosed("closed")
    assert timeout.args
    assert closed.args
    resettable: Resetter = Parser()
    resettable.reset()
    not_resettable: Resetter = object()  # type: ignore[assignment]
    assert isinstance(resettable, Resetter)
    assert not isinstance(not_resettable, Resetter)


def gc_trimming() -> None:
    pool = ObjectPool(Parser, prefill=2)
    stop = trim_on_gc(pool, keep=1)
    assert_type(stop, Callable[[], None])
    stop()
    trim_on_gc(BlockPool(), keep=1 << 20)()
    refused(lambda: trim_on_gc(Parser()))  # type: ignore[arg-type]


def numbers() -> None:
    """Sizes take what ``operator.index`` takes, durations what ``float()``
    takes from a number: numpy's scalars, ``Decimal``."""
    pool = ObjectPool(Parser, max_size=np.int64(2), idle_timeout=Decimal("1.5"), shards=np.uint8(1))
    assert_type(pool.get(timeout=np.int64(5)), Parser)
    assert_type(pool.get_many(np.int64(1), timeout=np.float32(0.5)), list[Parser])
    assert_type(pool.trim(np.int64(0)), int)
    blocks = BlockPool(max_block=np.int64(4096), idle_timeout=np.float64(60))
    with blocks.get(np.uint16(100)) as block:
        assert_type(block, Block)
    refused(lambda: blocks.get(1.5))  # type: ignore[arg-type]
    refused(lambda: pool.get(timeout="5"))  # type: ignore[arg-type]
    trim_on_gc(blocks, keep=np.int64(0))()


def metrics() -> None:
    registry = CollectorRegistry()
    pool = ObjectPool(Parser, name="typed")
    collector = register(pool, registry)
    assert_type(collector, PoolCollector)
    assert_type(collector.add(BlockPool()), str)
    assert_type(collector.labels(), list[str])
    assert_type(collector.collect(), Iterator[Metric])
    assert_type(unregister(pool, registry), bool)
    refused(lambda: collector.add(Parser()))  # type: ignore[arg-type]


if __name__ == "__main__":
    object_pool()
    tiered_pool()
    stats()
    blocks()
    buffers()
    errors_and_constants()
    gc_trimming()
    numbers()
    metrics()
