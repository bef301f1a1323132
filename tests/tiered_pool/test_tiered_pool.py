"""TieredPool: objects of several sizes, one pool per tier. Routing by size,
filing by size_of, oversize objects, reset/validate/destroy hooks, idle
timeout, borrow, stats, closing, and every error path."""

from __future__ import annotations

import asyncio
import gc
import logging
import sysconfig
import threading
import time
import weakref

import numpy as np
import pytest

import shardpool
from shardpool import DEFAULT_MAX_IDLE, ObjectPool, PoolClosed, PoolStats, TieredPool

from helpers import (
    Boom,
    Recorder,
    balanced,
    borrow_holding,
    pool_state,
    run_threads,
    snapshot,
    spare_count,
)

LAYERED = [(4096, 1000), (65536, 500), (1 << 20, 100)]


class Factory:
    """bytearray(size), remembering the sizes asked for."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, size: int) -> bytearray:
        self.sizes.append(size)
        return bytearray(size)


class Sized:
    """An object with a settable size and a Resetter-style reset."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: list = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1
        self.data.clear()

    def __len__(self) -> int:
        return self.size


def every_tier_balanced(pool: TieredPool) -> bool:
    """The totals and every tier: created - destroyed == idle + in_use."""
    rows = [pool.stats(), *pool.tier_stats().values()]
    return all(s.created == s.destroyed + s.idle + s.in_use for s in rows)


@pytest.fixture
def used_pool():
    """A pool with history: objects out, objects idle in two tiers, counters set."""
    pool = TieredPool(bytearray, [(16, 4), (256, 4)], shards=1)
    held = [pool.get(10), pool.get(100)]
    for size in (5, 200, 200, 1000):
        pool.put(pool.get(size))
    yield pool
    for obj in held:
        pool.put(obj)


# --- package surface ---


def test_package_exports_the_name():
    assert "TieredPool" in shardpool.__all__
    assert shardpool.TieredPool is TieredPool


def test_help_documents_the_pool(capsys):
    help(TieredPool)
    text = capsys.readouterr().out
    for word in ("factory", "tiers", "size_of", "reset", "validate", "destroy", "reset_on"):
        assert word in text, word
    for method in ("get", "put", "borrow", "stats", "tier_stats", "trim", "clear", "close"):
        doc = getattr(TieredPool, method).__doc__
        assert doc, method


def test_tiers_property_sorted_with_idle_caps():
    pool = TieredPool(bytearray, [(65536, 500), 4096, (1 << 20, 100)])
    assert pool.tiers == [(4096, DEFAULT_MAX_IDLE), (65536, 500), (1 << 20, 100)]
    assert pool.closed is False
    assert len(pool) == 0
    assert repr(pool) == "<TieredPool tiers=[4096, 65536, 1048576] idle=0 in_use=0>"


def test_generic_alias_and_subclass():
    alias = TieredPool[bytearray]
    assert alias.__origin__ is TieredPool

    class Mine(TieredPool):
        pass

    pool = Mine(bytearray, [8])
    assert isinstance(pool, TieredPool)
    assert repr(pool).endswith("Mine tiers=[8] idle=0 in_use=0>")
    pool.put(pool.get(3))
    assert len(pool) == 1


# --- routing ---


def test_get_returns_an_object_from_the_smallest_tier_that_fits():
    factory = Factory()
    pool = TieredPool(factory, LAYERED)
    for size, tier in ((0, 4096), (1, 4096), (4096, 4096), (4097, 65536), (70_000, 1 << 20)):
        obj = pool.get(size)
        assert len(obj) == tier, size
        assert factory.sizes[-1] == tier
        pool.put(obj)
    assert factory.sizes == [4096, 65536, 1 << 20]  # the 4096 object was reused


def test_objects_are_reused_within_their_tier():
    pool = TieredPool(bytearray, LAYERED, shards=1)
    small = pool.get(100)
    pool.put(small)
    assert pool.get(4000) is small
    assert pool.tier_stats()[4096].hits == 1
    other = pool.get(5000)
    assert other is not small
    assert len(other) == 65536
    pool.put(small)
    pool.put(other)
    assert len(pool) == 2


def test_request_above_the_largest_tier_gets_an_exact_object_destroyed_on_put():
    factory = Factory()
    destroy = Recorder()
    pool = TieredPool(factory, LAYERED, destroy=destroy)
    big = pool.get((1 << 20) + 1)
    assert len(big) == (1 << 20) + 1
    assert factory.sizes == [(1 << 20) + 1]
    s = pool.stats()
    assert (s.created, s.misses, s.in_use) == (1, 1, 1)
    pool.put(big)
    assert destroy.calls == [big]
    assert len(pool) == 0
    s = pool.stats()
    assert (s.puts, s.destroyed, s.dropped, s.in_use, s.idle) == (1, 1, 1, 0, 0)
    assert all(t.created == 0 for t in pool.tier_stats().values())
    assert balanced(pool)


def test_put_files_by_size_of_in_the_largest_tier_it_can_serve():
    pool = TieredPool(bytearray, LAYERED, shards=1)
    buf = pool.get(100)
    buf.extend(bytes(904))  # 5000: between the 4096 and 65536 tiers, serves 4096
    pool.put(buf)
    assert pool.tier_stats()[4096].idle == 1
    assert pool.get(4096) is buf
    buf.extend(bytes(65536 - 5000))  # grown to 65536: serves that tier now
    pool.put(buf)
    assert pool.tier_stats()[65536].idle == 1
    assert pool.get(65536) is buf
    pool.put(buf)
    assert every_tier_balanced(pool)


def test_an_unchecked_pool_files_foreign_objects_by_size():
    pool = TieredPool(bytearray, LAYERED, shards=1, checked=False)
    assert pool.checked is False
    odd = bytearray(5000)  # never handed out: taken in all the same
    pool.put(odd)
    assert pool.tier_stats()[4096].idle == 1
    assert pool.get(4096) is odd
    exact = bytearray(65536)
    pool.put(exact)
    assert pool.tier_stats()[65536].idle == 1
    pool.put(odd)


def test_object_smaller_than_every_tier_is_destroyed_in_its_own_tier():
    destroy = Recorder()
    pool = TieredPool(bytearray, [4096, 65536], destroy=destroy)
    shrunk = pool.get(10)
    del shrunk[10:]  # 10 bytes now: no tier takes it
    pool.put(shrunk)
    assert destroy.calls == [shrunk]
    assert len(pool) == 0
    s = pool.stats()
    assert (s.puts, s.destroyed, s.dropped) == (1, 1, 1)
    t = pool.tier_stats()[4096]
    assert (t.created, t.puts, t.destroyed, t.dropped, t.in_use) == (1, 1, 1, 1, 0)
    assert every_tier_balanced(pool)


def test_custom_size_of():
    destroy = Recorder()
    pool = TieredPool(Sized, [10, 100], size_of=lambda o: o.size, destroy=destroy, shards=1)
    obj = pool.get(50)
    assert obj.size == 100
    obj.size = 10  # it shrank: filed in the smaller tier
    pool.put(obj)
    assert pool.tier_stats()[10].idle == 1
    assert pool.get(5) is obj
    obj.size = 1000  # above every tier: destroyed
    pool.put(obj)
    assert destroy.calls == [obj]
    assert every_tier_balanced(pool)


def test_tier_idle_caps():
    pool = TieredPool(bytearray, [(16, 2), (256, 0)], shards=1)
    objs = [pool.get(10) for _ in range(3)] + [pool.get(100)]
    for obj in objs:
        pool.put(obj)
    ts = pool.tier_stats()
    assert (ts[16].idle, ts[16].dropped) == (2, 1)
    assert (ts[256].idle, ts[256].dropped) == (0, 1)
    assert len(pool) == 2


# --- use cases: bytearrays and numpy arrays of several sizes ---


def test_pool_of_bytearrays_cleared_on_put():
    def wipe(buf: bytearray) -> None:
        buf[:] = bytes(len(buf))

    pool = TieredPool(bytearray, LAYERED, reset=wipe, shards=1)
    with pool.borrow(3000) as buf:
        assert len(buf) == 4096
        buf[:5] = b"hello"
    with pool.borrow(100) as again:
        assert again is buf
        assert again == bytearray(4096)
    with pool.borrow(60_000) as medium:
        assert len(medium) == 65536
    assert len(pool) == 2


def test_pool_of_numpy_arrays_reset_with_fill():
    pool = TieredPool(
        lambda n: np.zeros(n, dtype=np.float64),
        [256, 1024, 4096],
        reset=lambda a: a.fill(0),
        shards=1,
    )
    arrays = {}
    for n in (100, 1000, 4000):
        a = pool.get(n)
        assert a.dtype == np.float64
        assert a.size >= n
        a[:] = 7.5
        arrays[a.size] = a
        pool.put(a)
    assert sorted(arrays) == [256, 1024, 4096]
    for n, size in ((200, 256), (900, 1024), (3000, 4096)):
        a = pool.get(n)
        assert a is arrays[size]
        assert not a.any()  # reset by fill(0)
        pool.put(a)
    s = pool.stats()
    assert (s.created, s.hits, s.idle) == (3, 3, 3)


def test_pool_of_numpy_arrays_sized_in_bytes():
    pool = TieredPool(
        lambda nbytes: np.empty(nbytes // 8, dtype=np.float64),
        [1024, 8192],
        size_of=lambda a: a.nbytes,
        reset=lambda a: a.fill(0),
        shards=1,
    )
    a = pool.get(2000)
    assert a.nbytes == 8192
    a[:] = 1
    pool.put(a)
    assert pool.tier_stats()[8192].idle == 1
    b = pool.get(8000)
    assert b is a
    assert not b.any()
    pool.put(b)


def test_numpy_arrays_of_several_sizes_across_threads():
    pool = TieredPool(
        lambda n: np.zeros(n, dtype=np.uint8), [64, 512, 4096], reset=lambda a: a.fill(0)
    )

    def work(tid: int) -> None:
        for i in range(2000):
            n = (64, 500, 4000, 5000)[(i + tid) % 4]
            with pool.borrow(n) as a:
                assert a.size >= n
                assert not a.any(), "not reset"
                a[:] = tid
                assert (a == tid).all(), "shared with another thread"

    assert run_threads(lambda i: work(i + 1), 4) == []  # thread ids 1 to 4
    s = pool.stats()
    assert s.in_use == 0
    assert s.puts == 8000
    assert balanced(pool)


# --- hooks: reset, validate, destroy ---


def test_reset_runs_on_put_with_the_object():
    reset = Recorder()
    pool = TieredPool(bytearray, [16], reset=reset)
    obj = pool.get(1)
    assert reset.calls == []
    pool.put(obj)
    assert reset.calls == [obj]
    pool.get(1)
    assert reset.calls == [obj]


def test_reset_on_get_runs_before_reuse_instead():
    reset = Recorder()
    pool = TieredPool(bytearray, [16], reset=reset, reset_on="get")
    obj = pool.get(1)
    pool.put(obj)
    assert reset.calls == []
    assert pool.get(1) is obj
    assert reset.calls == [obj]
    pool.put(obj)


def test_resetter_objects_are_reset_by_default_and_reset_false_disables_it():
    pool = TieredPool(Sized, [10])
    obj = pool.get(5)
    obj.data.append(1)
    pool.put(obj)
    assert (obj.resets, obj.data) == (1, [])
    off = TieredPool(Sized, [10], reset=False)
    obj = off.get(5)
    obj.data.append(1)
    off.put(obj)
    assert (obj.resets, obj.data) == (0, [1])


def test_failing_reset_destroys_the_object_and_propagates():
    def reset(obj):
        raise Boom("reset failed")

    destroy = Recorder()
    pool = TieredPool(bytearray, [16, 256], reset=reset, destroy=destroy)
    obj = pool.get(100)
    with pytest.raises(Boom, match="reset failed"):
        pool.put(obj)
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.reset_errors, s.destroyed, s.idle, s.in_use) == (1, 1, 0, 0)
    assert pool.tier_stats()[256].reset_errors == 1
    assert balanced(pool)


def test_failing_reset_propagates_from_borrow_exit():
    def reset(obj):
        raise Boom("reset failed")

    pool = TieredPool(bytearray, [16], reset=reset)
    with pytest.raises(Boom, match="reset failed"), pool.borrow(1):
        pass
    s = pool.stats()
    assert (s.reset_errors, s.in_use, s.idle, s.destroyed) == (1, 0, 0, 1)


def test_validate_rejects_idle_objects_and_a_new_one_is_made():
    factory = Factory()
    destroy = Recorder()
    validate = Recorder(result=False)
    pool = TieredPool(factory, [16, 256], validate=validate, destroy=destroy)
    obj = pool.get(100)
    pool.put(obj)
    fresh = pool.get(100)
    assert fresh is not obj
    assert validate.calls == [obj]
    assert destroy.calls == [obj]
    assert factory.sizes == [256, 256]
    s = pool.stats()
    assert (s.invalid, s.destroyed, s.misses, s.hits) == (1, 1, 2, 0)
    pool.put(fresh)


def test_validate_error_is_a_rejection_logged_and_a_new_object_made(pool_log):
    def validate(obj):
        raise Boom("bad")

    pool = TieredPool(bytearray, [16], validate=validate)
    first = pool.get(1)
    pool.put(first)
    assert pool.get(1) is not first
    s = pool.stats()
    assert (s.invalid, s.idle, s.destroyed, s.misses) == (1, 0, 1, 2)
    assert [type(e) for e in pool_log.errors(logging.WARNING)] == [Boom]


def test_destroy_runs_for_trim_clear_and_close():
    destroy = Recorder()
    pool = TieredPool(bytearray, [(16, 10), (256, 10)], destroy=destroy, shards=1)
    small = [pool.get(1) for _ in range(3)]
    large = [pool.get(100) for _ in range(3)]
    for obj in small + large:
        pool.put(obj)
    assert pool.trim(keep=1) == 4  # in every tier, keep one
    assert len(pool) == 2
    assert len(destroy.calls) == 4
    assert pool.clear() == 2
    assert len(pool) == 0
    held = pool.get(1)
    pool.put(pool.get(100))
    pool.close()
    assert len(destroy.calls) == 7
    pool.put(held)  # after close: destroyed
    assert len(destroy.calls) == 8
    assert {id(o) for o in destroy.calls} >= {id(o) for o in small + large}


def test_destroy_error_is_logged(pool_log, unraisable):
    def destroy(obj):
        raise Boom("destroy failed")

    pool = TieredPool(bytearray, [16], destroy=destroy, name="t")
    obj = pool.get(1)
    obj.clear()
    pool.put(obj)  # smaller than every tier now: destroyed
    [record] = pool_log.at(logging.ERROR)
    assert isinstance(record.exc_info[1], Boom)
    assert "TieredPool 't': destroy(" in record.getMessage()
    assert unraisable == []


def test_idle_timeout_expires_objects():
    patient = TieredPool(bytearray, [16], idle_timeout=60)
    obj = patient.get(1)
    patient.put(obj)
    assert patient.trim(keep=10) == 0  # nothing expired
    assert patient.get(1) is obj
    factory = Factory()
    destroy = Recorder()
    pool = TieredPool(factory, [16, 256], idle_timeout=0.05, destroy=destroy, shards=1)
    small, large = pool.get(1), pool.get(100)
    pool.put(small)
    pool.put(large)
    time.sleep(0.15)
    held = pool.get(1)  # the expired one is not handed out
    assert held is not small
    assert factory.sizes == [16, 256, 16]
    assert destroy.calls == [small]
    assert pool.trim(keep=10) == 1  # the expired 256 one
    assert destroy.calls == [small, large]
    s = pool.stats()
    assert (s.expired, s.idle) == (2, 0)
    pool.put(held)


# --- borrow ---


def test_borrow_gets_on_entry_and_puts_on_exit():
    pool = TieredPool(bytearray, LAYERED)
    with pool.borrow(5000) as buf:
        assert len(buf) == 65536
        assert pool.stats().in_use == 1
    s = pool.stats()
    assert (s.in_use, s.idle, s.puts) == (0, 1, 1)


def test_borrow_puts_back_when_the_body_raises():
    pool = TieredPool(bytearray, LAYERED)
    with pytest.raises(KeyError), pool.borrow(10):
        raise KeyError("x")
    assert pool.stats().puts == 1
    assert len(pool) == 1


def test_borrow_above_the_largest_tier():
    destroy = Recorder()
    pool = TieredPool(bytearray, [16], destroy=destroy)
    with pool.borrow(100) as buf:
        assert len(buf) == 100
    assert destroy.calls == [buf]


def test_a_borrow_object_is_one_with_block_at_a_time():
    pool = TieredPool(bytearray, [16])
    borrow = pool.borrow(1)
    with borrow, pytest.raises(RuntimeError, match="already in use"):
        borrow.__enter__()
    with borrow:  # usable again after exit
        pass
    with pytest.raises(RuntimeError, match="without being entered"):
        borrow.__exit__(None, None, None)
    assert pool.stats().puts == 2


def test_a_borrow_works_on_its_pools_state_once_the_pool_object_is_gone():
    # As ObjectPool's (test_borrow_exit_reference.py): a Borrow holds the
    # pool's state, not the pool object, which is freed at once.
    pool = TieredPool(bytearray, [16])
    alive = weakref.ref(pool)
    borrow = pool.borrow(1)
    del pool
    assert alive() is None
    with borrow as first:
        pass
    with borrow as again:
        assert again is first  # given back to the state, and handed out again


def test_a_tiered_pool_in_a_cycle_with_its_factory_and_spares_is_collected():
    def make() -> TieredPool[bytearray]:
        cell: list[object] = []
        p = TieredPool(lambda n: (cell, bytearray(n))[1], [16])
        cell.append(p)  # pool -> state -> factory -> cell -> pool
        return p

    pool = make()
    alive = weakref.ref(pool)
    for _ in range(3):
        with pool.borrow(1):  # a spare kept (with a GIL), holding the state
            pass
    del pool
    gc.collect()
    assert alive() is None


GIL_BUILD = not sysconfig.get_config_var("Py_GIL_DISABLED")


@pytest.mark.skipif(not GIL_BUILD, reason="Borrows are reused only with a GIL")
def test_the_borrow_of_an_exited_block_is_reused_with_the_new_size():
    # As ObjectPool.borrow() does (test_borrow_reuse.py): a loop of blocks
    # allocates no Borrow after the first.
    pool = TieredPool(bytearray, LAYERED)
    with pool.borrow(10) as small:
        assert len(small) == 4096
        first = borrow_holding(small)
    assert spare_count(pool_state(pool)) == 1  # kept: alive, its id its own
    again = pool.borrow(5000)  # the spare, given this call's size
    assert id(again) == first
    assert spare_count(pool_state(pool)) == 0
    assert gc.is_tracked(again)
    with again as medium:
        assert len(medium) == 65536
    kept = pool.borrow(10)  # the user keeps it: never recycled under them
    with kept:
        pass
    assert all(pool.borrow(10) is not kept for _ in range(3))
    assert spare_count(pool_state(pool)) == 0  # named ones are not kept
    with pool.borrow(10):
        pass
    assert spare_count(pool_state(pool)) == 1
    pool.close()
    assert spare_count(pool_state(pool)) == 0
    s = pool.stats()
    assert (s.created, s.destroyed, s.in_use, s.idle) == (2, 2, 0, 0)


def test_a_pool_dropped_after_borrow_blocks_is_freed_at_once():
    pool = TieredPool(bytearray, LAYERED)
    for size in (10, 5000, 10):
        with pool.borrow(size):
            pass
    ref = weakref.ref(pool)
    gc.disable()
    try:
        del pool
        assert ref() is None  # no cycle through a spare Borrow
    finally:
        gc.enable()


# --- closing ---


def test_closed_pool_refuses_get_and_borrow_and_destroys_returns():
    destroy = Recorder()
    pool = TieredPool(bytearray, LAYERED, destroy=destroy)
    held = pool.get(10)
    pool.put(pool.get(5000))
    pool.close()
    assert pool.closed
    assert len(pool) == 0
    assert len(destroy.calls) == 1
    before = pool.stats()
    for size in (0, 10, 5000, 1 << 30):
        with pytest.raises(PoolClosed, match="closed"):
            pool.get(size)
    with pytest.raises(PoolClosed), pool.borrow(10):
        pass
    assert pool.stats() == before
    pool.put(held)
    assert destroy.calls[-1] is held
    assert len(pool) == 0
    assert pool.stats().in_use == 0
    pool.close()  # idempotent
    assert "closed" in repr(pool)


def test_borrow_exit_after_close_destroys_the_object():
    destroy = Recorder()
    pool = TieredPool(bytearray, [16], destroy=destroy)
    with pool.borrow(1) as buf:
        pool.close()
    assert destroy.calls == [buf]


def test_pool_as_context_manager_closes():
    with TieredPool(bytearray, [16]) as pool:
        pool.put(pool.get(1))
    assert pool.closed
    assert len(pool) == 0


# --- stats ---


def test_stats_merge_the_tiers_and_tier_stats_has_every_tier():
    pool = TieredPool(bytearray, [(16, 1), 256, 4096], shards=1)
    held = pool.get(200)
    a, b = pool.get(1), pool.get(2)
    pool.put(a)
    pool.put(b)  # dropped
    pool.put(pool.get(3))  # hit
    pool.put(pool.get(10_000))  # oversize
    s = pool.stats()
    assert isinstance(s, PoolStats)
    assert (s.created, s.hits, s.misses, s.puts) == (4, 1, 4, 4)
    assert (s.dropped, s.destroyed, s.idle, s.in_use) == (2, 2, 1, 1)
    assert s.hit_rate == pytest.approx(1 / 5)
    assert s.max_in_use >= 2
    ts = pool.tier_stats()
    assert sorted(ts) == [16, 256, 4096]
    assert all(isinstance(v, PoolStats) for v in ts.values())
    assert (ts[16].created, ts[16].hits, ts[16].puts, ts[16].dropped, ts[16].idle) == (
        2,
        1,
        3,
        1,
        1,
    )
    assert (ts[256].in_use, ts[256].misses) == (1, 1)
    assert ts[4096].as_dict() == dict.fromkeys(ts[4096].as_dict(), 0)
    assert balanced(pool)
    pool.put(held)
    assert balanced(pool)
    assert pool.stats().in_use == 0


# --- checked returns: a repeated or foreign put is refused (issue 11, defect 3) ---


def test_a_repeated_put_is_refused_and_changes_nothing():
    pool = TieredPool(bytearray, [(16, 4)])
    a = pool.get(16)
    pool.put(a)
    before = snapshot(pool)
    with pytest.raises(ValueError, match=r"not handed out \(foreign, or returned already\)"):
        pool.put(a)
    assert snapshot(pool) == before
    x, y = pool.get(16), pool.get(16)
    assert x is not y, "one object handed to two holders"
    assert a in (x, y)
    pool.put(x)
    pool.put(y)
    assert every_tier_balanced(pool)
    assert pool.checked is True


@pytest.mark.parametrize(
    "foreign",
    [bytearray(16), bytearray(5), bytearray(1000)],
    ids=["a tier's size", "below every tier", "above every tier"],
)
def test_a_foreign_put_is_refused_and_changes_nothing(foreign):
    destroy = Recorder()
    reset = Recorder()
    pool = TieredPool(bytearray, [16, 256], destroy=destroy, reset=reset, shards=1)
    held = pool.get(100)
    pool.put(pool.get(10))
    before = snapshot(pool)
    with pytest.raises(ValueError, match="not handed out") as info:
        pool.put(foreign)
    assert "bytearray" in str(info.value)
    assert snapshot(pool) == before
    assert destroy.calls == []
    assert reset.calls == [pool.get(1)]  # only the put before
    pool.put(held)


def test_an_object_of_another_tiered_pool_is_refused():
    pool, other = TieredPool(bytearray, [16]), TieredPool(bytearray, [16])
    theirs = other.get(1)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(theirs)
    assert (pool.stats().puts, len(pool)) == (0, 0)
    other.put(theirs)


def test_a_put_inside_borrow_makes_the_exit_refuse_the_second_one():
    pool = TieredPool(bytearray, [16])
    with pytest.raises(ValueError, match="not handed out"), pool.borrow(1) as buf:
        pool.put(buf)
    s = pool.stats()
    assert (s.puts, s.in_use, len(pool)) == (1, 0, 1)


def test_a_refused_put_keeps_the_acquisition_sites():
    pool = TieredPool(bytearray, [16], track=True)
    held = pool.get(1)
    returned = pool.get(1)
    pool.put(returned)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(returned)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(bytearray(16))
    assert len(pool.outstanding()) == 1
    pool.put(held)
    assert pool.outstanding() == []


def test_checked_false_takes_a_repeated_put_as_documented():
    """The opt-out trades the check for a hash-table insert and remove per
    round trip: a double put then hands one object to two holders."""
    pool = TieredPool(bytearray, [16], checked=False)
    a = pool.get(16)
    pool.put(a)
    pool.put(a)  # not refused
    assert len(pool) == 2
    assert pool.get(16) is pool.get(16) is a


def test_objects_out_are_visible_to_the_garbage_collector():
    """The checked record holds a reference to each object out; an object
    out that refers back to its pool must not keep the pair alive."""

    class Node:
        def __init__(self, size: int) -> None:
            self.size = size
            self.pool: object = None

        def __len__(self) -> int:
            return self.size

    pool = TieredPool(Node, [16])
    node = pool.get(1)
    node.pool = pool
    ref = weakref.ref(pool)
    del pool, node
    gc.collect()
    assert ref() is None


# --- objects that come back at another tier's size (issue 11, defect 8) ---


def test_an_object_that_grew_into_another_tier_moves_there_and_every_tier_balances():
    destroy = Recorder()
    factory = Factory()
    pool = TieredPool(factory, [16, 256, 4096], destroy=destroy, shards=1)
    obj = pool.get(10)
    obj.extend(bytes(290))  # 300 bytes now: the 256 tier files it
    pool.put(obj)
    ts = pool.tier_stats()
    # It left the 16 tier (returned, then gone) and joined the 256 tier.
    assert (ts[16].created, ts[16].destroyed, ts[16].idle, ts[16].in_use) == (1, 1, 0, 0)
    assert (ts[16].misses, ts[16].puts) == (1, 1)
    assert (ts[256].created, ts[256].destroyed, ts[256].idle, ts[256].in_use) == (1, 0, 1, 0)
    assert every_tier_balanced(pool)
    # The totals count the factory's and destroy's calls: one made, none gone.
    s = pool.stats()
    assert (s.created, s.destroyed, s.idle, s.in_use) == (1, 0, 1, 0)
    assert (factory.sizes, destroy.calls) == ([16], [])
    # It serves its new tier, and comes back there.
    assert pool.get(200) is obj
    pool.put(obj)
    assert pool.tier_stats()[256].hits == 1
    assert every_tier_balanced(pool)


def test_an_object_that_shrank_into_another_tier_moves_there():
    pool = TieredPool(Sized, [10, 100], size_of=lambda o: o.size, shards=1)
    obj = pool.get(50)
    obj.size = 20
    pool.put(obj)
    assert obj.resets == 1, "reset once, as it joined the 10 tier"
    ts = pool.tier_stats()
    assert (ts[100].in_use, ts[100].destroyed, ts[10].created, ts[10].idle) == (0, 1, 1, 1)
    assert every_tier_balanced(pool)
    assert pool.stats().created == 1


def test_an_oversize_object_that_shrank_into_a_tier_moves_there():
    pool = TieredPool(bytearray, [16, 256], shards=1)
    big = pool.get(1000)
    del big[256:]
    pool.put(big)
    assert pool.tier_stats()[256].idle == 1
    assert pool.get(256) is big
    pool.put(big)
    s = pool.stats()
    assert (s.created, s.misses, s.destroyed, s.idle, s.in_use) == (1, 1, 0, 1, 0)
    assert every_tier_balanced(pool)


def test_a_moved_object_the_new_tier_has_no_room_for_is_dropped_there():
    destroy = Recorder()
    pool = TieredPool(bytearray, [(16, 4), (256, 0)], destroy=destroy)
    obj = pool.get(1)
    obj.extend(bytes(240))
    pool.put(obj)
    assert destroy.calls == [obj]
    t = pool.tier_stats()[256]
    assert (t.created, t.dropped, t.destroyed) == (1, 1, 1)
    assert every_tier_balanced(pool)


def test_a_moved_object_whose_reset_raises_is_destroyed_in_its_new_tier():
    def reset(obj):
        raise Boom("reset failed")

    destroy = Recorder()
    pool = TieredPool(bytearray, [16, 256], reset=reset, destroy=destroy)
    obj = pool.get(1)
    obj.extend(bytes(240))
    with pytest.raises(Boom):
        pool.put(obj)
    assert destroy.calls == [obj]
    assert pool.tier_stats()[256].reset_errors == 1
    assert every_tier_balanced(pool)


def test_an_unchecked_pool_counts_a_put_where_the_size_files_it():
    """Without the checked record a pool cannot know where an object came
    from: the tier its size files it in counts the put (documented). The
    totals stay exact."""
    pool = TieredPool(bytearray, [16, 256], checked=False, shards=1)
    obj = pool.get(1)
    obj.extend(bytes(240))
    pool.put(obj)
    ts = pool.tier_stats()
    assert (ts[16].in_use, ts[256].puts, ts[256].idle) == (1, 1, 1)
    assert balanced(pool)
    assert pool.stats().in_use == 0


def test_threads_resizing_objects_leave_every_tier_balanced():
    pool = TieredPool(bytearray, [(16, 2), (256, 2), (4096, 2)])
    errors: list = []

    def work(tid: int) -> None:
        try:
            for i in range(1000):
                obj = pool.get((1, 20, 300, 5000)[(i + tid) % 4])
                new_size = (0, 8, 16, 200, 256, 4000, 4096, 10_000)[(i * 7 + tid) % 8]
                obj[:] = bytes(new_size)
                pool.put(obj)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pool.stats().puts == 4000
    assert pool.stats().in_use == 0
    assert every_tier_balanced(pool)


# --- a put after close (counted as ObjectPool counts it) ---


@pytest.mark.parametrize("size", [1, 1000], ids=["tier", "oversize"])
def test_a_put_after_close_counts_as_in_an_object_pool(size):
    tiered = TieredPool(bytearray, [16])
    objects = ObjectPool(bytearray)
    a, b = tiered.get(size), objects.get()
    tiered.close()
    objects.close()
    tiered.put(a)
    objects.put(b)
    t, o = tiered.stats(), objects.stats()
    assert (t.puts, t.destroyed, t.dropped, t.in_use) == (o.puts, o.destroyed, o.dropped, 0)
    assert (t.puts, t.destroyed, t.dropped) == (1, 1, 0)
    if size == 1:
        ts = tiered.tier_stats()[16]
        assert (ts.puts, ts.destroyed, ts.in_use) == (1, 1, 0)
    assert every_tier_balanced(tiered)


def test_after_close_an_unchecked_put_to_an_unused_tier_destroys_without_a_reset():
    reset, destroy = Recorder(), Recorder()
    pool = TieredPool(bytearray, [(16, 0), 256], reset=reset, destroy=destroy, checked=False)
    pool.close()
    foreign = bytearray(16)
    pool.put(foreign)
    assert (reset.calls, destroy.calls) == ([], [foreign])
    t = pool.tier_stats()[16]
    assert (t.puts, t.destroyed, t.dropped) == (1, 1, 0)


def test_a_resized_object_put_after_close_is_destroyed_in_its_own_tier():
    pool = TieredPool(bytearray, [16, 256])
    obj = pool.get(1)
    pool.close()
    obj.extend(bytes(240))
    pool.put(obj)
    ts = pool.tier_stats()
    assert (ts[16].puts, ts[16].destroyed, ts[256].puts) == (1, 1, 0)
    assert every_tier_balanced(pool)


# --- error paths: the right exception, naming the argument, nothing changed ---
# (bad arguments to every method, pickling and copying: the one table in
# tests/errors/test_bad_input.py)


def test_factory_and_tiers_are_positional_only_and_options_keyword_only():
    with pytest.raises(TypeError):
        TieredPool(factory=bytearray, tiers=[16])
    with pytest.raises(TypeError):
        TieredPool(bytearray, [16], len)
    with pytest.raises(TypeError, match="max_idle"):
        TieredPool(bytearray, [16], max_idle=3)


@pytest.mark.parametrize(
    ("size_of", "error", "match"),
    [
        (lambda o: "big", TypeError, "size_of"),
        (lambda o: 1.5, TypeError, "size_of"),
        (lambda o: -1, ValueError, "size_of"),
        (lambda o: None, TypeError, "size_of"),
        (lambda o: 2**70, ValueError, "size_of"),
    ],
    ids=["str", "float", "negative", "None", "huge"],
)
def test_bad_size_of_result_raises_naming_it_and_changes_nothing(size_of, error, match):
    destroy = Recorder()
    pool = TieredPool(bytearray, [16, 256], size_of=size_of, destroy=destroy)
    obj = pool.get(1)
    before = snapshot(pool)
    with pytest.raises(error, match=match):
        pool.put(obj)
    assert snapshot(pool) == before
    assert destroy.calls == []


def test_size_of_error_propagates_and_changes_nothing():
    def size_of(obj):
        raise Boom("no size")

    pool = TieredPool(bytearray, [16], size_of=size_of)
    obj = pool.get(1)
    before = snapshot(pool)
    with pytest.raises(Boom, match="no size"):
        pool.put(obj)
    assert snapshot(pool) == before


@pytest.mark.parametrize("raised", [None, KeyError("in the block")], ids=["clean", "raising"])
def test_a_checked_pools_block_whose_object_cannot_be_measured_destroys_it(raised):
    # The block's holder lets go of the object at its exit: a failing
    # size_of must not leave it out for good (the pool's record would keep
    # it alive and in use forever). It is destroyed, as a failing reset
    # destroys it, and the error propagates (or is noted on the block's).
    def size_of(obj):
        raise Boom("no size")

    destroy = Recorder()
    pool = TieredPool(bytearray, [16], size_of=size_of, destroy=destroy)
    got = []

    def block():
        with pool.borrow(1) as obj:
            got.append(obj)
            if raised is not None:
                raise raised

    with pytest.raises(Boom if raised is None else KeyError) as caught:
        block()
    assert destroy.calls == got
    s = pool.stats()
    assert (s.in_use, s.idle, s.destroyed) == (0, 0, 1)
    assert balanced(pool)
    if raised is not None:
        assert any("no size" in note for note in caught.value.__notes__)


async def _aborrow_unmeasurable(pool: TieredPool) -> None:
    async with pool.aborrow(1):
        pass


def test_a_checked_pools_aborrow_whose_object_cannot_be_measured_destroys_it():
    def size_of(obj):
        raise Boom("no size")

    destroy = Recorder()
    pool = TieredPool(bytearray, [16], size_of=size_of, destroy=destroy)
    with pytest.raises(Boom):
        asyncio.run(_aborrow_unmeasurable(pool))
    s = pool.stats()
    assert (s.in_use, s.idle, s.destroyed) == (0, 0, 1)
    assert len(destroy.calls) == 1


@pytest.mark.parametrize("size", [1, 100, 10_000])
def test_factory_error_propagates_from_get_and_changes_nothing(size):
    def factory(n):
        raise Boom(f"cannot make {n}")

    pool = TieredPool(factory, [16, 256])
    before = snapshot(pool)
    with pytest.raises(Boom, match="cannot make"):
        pool.get(size)
    with pytest.raises(Boom), pool.borrow(size):
        pass
    assert snapshot(pool) == before
