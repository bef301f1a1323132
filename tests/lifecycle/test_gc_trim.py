"""trim_on_gc(): idle memory given back after full collections, opt-in."""

from __future__ import annotations

import gc
import weakref

import pytest

from shardpool import BlockPool, BufferPool, ObjectPool, TieredPool, trim_on_gc


def test_off_by_default() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list)
    pool.put_many(pool.get_many(5))
    gc.collect()
    assert len(pool) == 5


def test_full_collection_trims_to_keep_and_stop_ends_it() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list)
    stop = trim_on_gc(pool, keep=2)
    pool.put_many(pool.get_many(5))
    gc.collect(1)  # not a full collection
    assert len(pool) == 5
    gc.collect()
    assert len(pool) == 2
    stop()
    pool.put_many(pool.get_many(5))
    gc.collect()
    assert len(pool) == 5


def test_every_pool_kind_is_trimmed() -> None:
    objects: ObjectPool[list[int]] = ObjectPool(list)
    tiered: TieredPool[bytearray] = TieredPool(bytearray, [64])
    blocks = BlockPool()
    buffers = BufferPool()
    stops = [trim_on_gc(p) for p in (objects, tiered, blocks, buffers)]
    objects.put(objects.get())
    tiered.put(tiered.get(10))
    blocks.get(4096).release()
    with buffers.get() as buf:
        buf.write(b"x")
    assert (len(objects), len(tiered), len(blocks), len(buffers)) == (1, 1, 1, 1)
    gc.collect()
    assert (len(objects), len(tiered), len(blocks), len(buffers)) == (0, 0, 0, 0)
    for stop in stops:
        stop()


def test_registration_does_not_keep_the_pool_alive() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list)
    trim_on_gc(pool)
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None
    gc.collect()  # the dead entry is dropped quietly


def test_closed_pools_are_skipped() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list)
    stop = trim_on_gc(pool)
    pool.close()
    gc.collect()
    stop()


@pytest.mark.parametrize(
    ("pool", "keep", "error"),
    [(object(), 0, TypeError), (None, 0, TypeError), ("pool", 0, TypeError)],
)
def test_bad_pool(pool: object, keep: int, error: type[Exception]) -> None:
    with pytest.raises(error, match="pool"):
        trim_on_gc(pool, keep=keep)  # type: ignore[arg-type]


@pytest.mark.parametrize(("keep", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_keep(keep: object, error: type[Exception]) -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list)
    with pytest.raises(error, match="keep"):
        trim_on_gc(pool, keep=keep)  # type: ignore[arg-type]
    gc.collect()
    assert not pool.closed
