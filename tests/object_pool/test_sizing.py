"""ObjectPool's sizing options (issue 15): min_size kept alive and refilled,
max_lifetime, resize() at run time (threads and tasks waiting), max_waiting
(PoolTooBusy), the wait-time histogram and stats(reset_peak=True); books
balance and no object has two holders under load while objects are
discarded and the pool resized."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time

import pytest

import shardpool
from shardpool import ObjectPool, PoolTimeout, PoolTooBusy

from helpers import (
    Boom,
    HolderCheck,
    Recorder,
    Thing,
    balanced,
    call_then_let_interrupts_in,
    run_threads,
    snapshot,
)

TINY = 1e-9  # a max_lifetime every object has outlived when the pool next looks


def wait_until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


# --- min_size ---


def test_min_size_objects_exist_from_construction():
    pool = ObjectPool(Thing, min_size=3, max_size=5)
    s = pool.stats()
    assert (s.created, s.idle, pool.min_size) == (3, 3, 3)


def test_min_size_is_refilled_after_discard_validation_and_clear():
    pool = ObjectPool(Thing, min_size=1, shards=1, validate=lambda o: not o.data)
    a = pool.get()  # the object made at construction
    pool.discard(a)
    assert (pool.stats().created, pool.stats().idle) == (2, 1)
    b = pool.get()
    b.data.append("broken")  # validate refuses it once idle
    pool.put(b)
    c = pool.get()
    assert c is not b
    s = pool.stats()
    assert (s.invalid, s.created, s.misses) == (1, 3, 0), "c is the refill"
    pool.put(c)
    assert pool.clear() == 0, "clear() never goes below min_size"
    assert pool.trim(0) == 0
    assert len(pool) == 1
    assert balanced(pool)


def test_a_refill_factory_error_is_logged_not_raised(pool_log):
    fail = [False]

    def factory() -> Thing:
        if fail[0]:
            raise Boom("refill")
        return Thing()

    pool = ObjectPool(factory, min_size=1, max_size=2, name="refilled")
    obj = pool.get()
    fail[0] = True
    pool.discard(obj)  # the discard itself succeeds
    [error] = pool_log.errors()
    assert type(error) is Boom
    [record] = pool_log.at(logging.ERROR)
    assert "'refilled'" in record.getMessage()
    assert "min_size" in record.getMessage()
    s = pool.stats()
    assert (s.created, s.destroyed, s.idle, s.in_use) == (1, 1, 0, 0)
    fail[0] = False
    assert pool.get(timeout=0) is not obj, "the failed refill freed its slot"


def test_a_keyboard_interrupt_in_a_refill_factory_is_raised_not_only_logged(
    pool_log, default_sigint
):
    # Ctrl-C while a refill's factory runs: the refill has no caller to raise
    # it to (a Boom is logged, above), but swallowing the interrupt would
    # leave the program running: it is raised again, as Ctrl-C is, in the
    # main thread at its next check.
    fail = [False]

    def factory() -> Thing:
        if fail[0]:
            raise KeyboardInterrupt
        return Thing()

    pool = ObjectPool(factory, min_size=1, max_size=2, name="refilled")
    obj = pool.get()
    fail[0] = True
    with pytest.raises(KeyboardInterrupt):
        call_then_let_interrupts_in(pool.discard, obj)
    [record] = pool_log.at(logging.WARNING)
    assert "KeyboardInterrupt" in record.getMessage()
    s = pool.stats()
    assert (s.created, s.destroyed, s.idle, s.in_use) == (1, 1, 0, 0)
    fail[0] = False
    assert pool.get(timeout=0) is not obj, "the failed refill freed its slot"
    assert balanced(pool)


def test_a_get_whose_refill_is_interrupted_ends_with_it_holding_nothing(pool_log, default_sigint):
    # validate rejects the idle object, the refill's factory is interrupted:
    # the get ends there with the KeyboardInterrupt, rather than make and
    # return an object that the interrupt, raised at the next bytecode,
    # would strand out of the pool (its slot taken for good).
    fail, bad = [False], set()

    def factory() -> Thing:
        if fail[0]:
            fail[0] = False  # once: the get's own factory call would succeed
            raise KeyboardInterrupt
        return Thing()

    pool = ObjectPool(factory, min_size=1, max_size=1, validate=lambda o: id(o) not in bad)
    [first] = pool.get_many(1)
    pool.put(first)
    bad.add(id(first))
    fail[0] = True
    with pytest.raises(KeyboardInterrupt):
        pool.get(timeout=0)
    s = pool.stats()
    assert (s.created, s.destroyed, s.in_use, s.idle) == (1, 1, 0, 0)
    assert pool.get(timeout=0) is not first, "the slot is free"
    assert balanced(pool)


def test_a_get_many_whose_destroy_is_interrupted_ends_with_it_holding_nothing(
    pool_log, default_sigint
):
    bad: set[int] = set()

    def destroy(obj: Thing) -> None:
        raise KeyboardInterrupt

    pool = ObjectPool(Thing, max_size=2, validate=lambda o: id(o) not in bad, destroy=destroy)
    a, b = pool.get_many(2)
    pool.put_many([a, b])
    bad.add(id(a))
    with pytest.raises(KeyboardInterrupt):
        pool.get_many(2)
    s = pool.stats()
    assert (s.destroyed, s.in_use, s.idle) == (1, 0, 1)
    assert len(pool.get_many(2)) == 2, "both slots free"
    assert balanced(pool)


def test_a_resize_is_logged_with_the_bounds_before_and_after(pool_log):
    pool = ObjectPool(Thing, max_size=2, name="resized")
    assert not pool_log.records, "construction logs nothing"
    pool.resize(max_size=4, min_size=1)
    [record] = pool_log.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "ObjectPool 'resized': resized: max_size 2 -> 4, min_size 0 -> 1"
    )
    with pytest.raises(ValueError, match="min_size"):
        pool.resize(min_size=5)
    assert len(pool_log.records) == 1, "a refused resize changes nothing and logs nothing"


def test_a_factory_error_at_construction_raises():
    def factory() -> Thing:
        raise Boom

    with pytest.raises(Boom):
        ObjectPool(factory, min_size=1)


# --- max_lifetime ---


def test_an_object_past_max_lifetime_is_destroyed_not_reused():
    destroy = Recorder()
    pool = ObjectPool(Thing, max_lifetime=TINY, destroy=destroy)
    a = pool.get()
    time.sleep(0.001)
    pool.put(a)
    s = pool.stats()
    assert (s.puts, s.expired, s.destroyed, s.idle) == (1, 1, 1, 0)
    assert destroy.calls == [a]
    assert pool.get() is not a
    assert pool.max_lifetime == TINY


def test_a_long_max_lifetime_reuses_and_trim_expires_idle_objects():
    pool = ObjectPool(Thing, max_lifetime=3600)
    a = pool.get()
    pool.put(a)
    assert pool.get() is a
    pool.put(a)
    assert pool.stats().expired == 0
    # Idle objects that outlive a tiny lifetime: trim expires them, and
    # min_size makes a new one.
    q = ObjectPool(Thing, max_lifetime=TINY, prefill=1)
    time.sleep(0.001)
    assert q.trim(5) == 1
    assert (q.stats().expired, len(q)) == (1, 0)
    r = ObjectPool(Thing, max_lifetime=TINY, min_size=1)
    time.sleep(0.001)
    assert r.trim(5) == 1
    s = r.stats()
    assert (s.expired, s.created, s.idle) == (1, 2, 1)
    assert balanced(r)


# --- resize ---


def test_growing_max_size_serves_a_waiting_thread_and_task():
    pool = ObjectPool(Thing, max_size=1)
    held = pool.get()
    got: list = []
    thread = threading.Thread(target=lambda: got.append(pool.get(timeout=10)))
    thread.start()
    wait_until(lambda: pool.stats().waits == 1)

    async def main() -> Thing:
        task = asyncio.ensure_future(pool.aget(timeout=10))
        while pool.stats().waits < 2:
            await asyncio.sleep(0.001)
        pool.resize(max_size=3)
        return await task

    from_task = asyncio.run(main())
    thread.join(10)
    assert len(got) == 1
    assert from_task is not held
    assert got[0] is not from_task
    s = pool.stats()
    assert (pool.max_size, s.in_use, s.timeouts) == (3, 3, 0)


def test_shrinking_sheds_idle_now_and_returned_objects_later():
    pool = ObjectPool(Thing, max_size=4)
    objs = pool.get_many(4)
    pool.put(objs[0])
    pool.resize(max_size=2)
    s = pool.stats()
    assert (s.idle, s.in_use, s.destroyed) == (0, 3, 1)
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    pool.put(objs[1])  # 3 exist, max 2: destroyed
    assert pool.stats().idle == 0
    pool.put(objs[2])
    pool.put(objs[3])
    s = pool.stats()
    assert (s.idle, s.in_use, s.destroyed, s.dropped) == (2, 0, 2, 2)
    assert balanced(pool)


def test_resize_min_size_fills_now_and_refusals_change_nothing():
    pool = ObjectPool(Thing, max_size=3)
    pool.resize(min_size=2)
    assert (pool.min_size, len(pool)) == (2, 2)
    before = snapshot(pool)
    with pytest.raises(ValueError, match="min_size"):
        pool.resize(max_size=1)  # below min_size
    assert (snapshot(pool), pool.max_size, pool.min_size) == (before, 3, 2)
    unbounded = ObjectPool(Thing)
    with pytest.raises(ValueError, match="built without max_size"):
        unbounded.resize(max_size=2)
    assert unbounded.max_size is None


# --- max_waiting ---


def test_max_waiting_refuses_one_more_thread_or_task_at_once():
    assert issubclass(PoolTooBusy, PoolTimeout)
    assert shardpool.PoolTooBusy is PoolTooBusy
    pool = ObjectPool(Thing, max_size=1, max_waiting=1)
    held = pool.get()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(pool.get(timeout=10)))
    waiter.start()
    wait_until(lambda: pool.stats().waits == 1)
    start = time.monotonic()
    with pytest.raises(PoolTooBusy, match="max_waiting"):
        pool.get(timeout=10)
    assert time.monotonic() - start < 5, "refused at once, not after the timeout"

    async def one_more_task() -> None:
        await pool.aget(timeout=10)

    with pytest.raises(PoolTooBusy):
        asyncio.run(one_more_task())
    s = pool.stats()
    assert (s.rejected, s.waits, s.timeouts) == (2, 1, 0)
    pool.put(held)
    waiter.join(10)
    assert got == [held]
    assert pool.max_waiting == 1


# --- metrics ---


def test_the_wait_histogram_counts_waits_that_ended():
    pool = ObjectPool(Thing, max_size=1)
    assert pool.wait_histogram() == (
        [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0],
        [0] * 13,
        0.0,
    )
    held = pool.get()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.02)
    bounds, counts, total = pool.wait_histogram()
    assert sum(counts) == 1
    # 20 ms at least, and the bucket holding it is above 0.01 s.
    assert total >= 0.02
    assert bounds[counts.index(1)] > 0.01
    pool.put(held)
    assert ObjectPool(Thing).wait_histogram() is None


def test_the_wait_histogram_counts_a_task_served_after_waiting():
    pool = ObjectPool(Thing, max_size=1)
    held = pool.get()

    async def main() -> Thing:
        task = asyncio.ensure_future(pool.aget(timeout=10))
        while pool.stats().waits == 0:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)
        pool.put(held)
        return await task

    assert asyncio.run(main()) is held
    _, counts, total = pool.wait_histogram()
    assert sum(counts) == 1
    assert total >= 0.02


def test_stats_reset_peak_returns_then_restarts_the_peak():
    pool = ObjectPool(Thing)
    objs = [pool.get() for _ in range(3)]
    for obj in objs[1:]:
        pool.put(obj)
    assert pool.stats(reset_peak=True).max_in_use == 3
    assert pool.stats().max_in_use == 1


# --- under load ---


def test_discard_and_resize_under_load_keep_the_books_and_one_holder():
    """16 threads get, put, discard and borrow while another thread resizes
    max_size between 1 and 6 and min_size between 0 and 1, and objects
    expire: every object has one holder at a time, none is destroyed while
    held, and the books balance at the end."""
    check = HolderCheck()
    pool = ObjectPool(
        check.make, max_size=4, destroy=check.destroyed, max_lifetime=0.005, min_size=1
    )
    stop = threading.Event()

    def work(me: int) -> None:
        rng = random.Random(me)
        for _ in range(600):
            try:
                obj = pool.get(timeout=30)
            except PoolTimeout:
                check.problems.append("timed out")
                return
            check.claim(obj, me)
            check.release(obj)
            if rng.random() < 0.2:
                pool.discard(obj)
            else:
                pool.put(obj)

    def resizer() -> None:
        rng = random.Random(99)
        while not stop.is_set():
            pool.resize(max_size=rng.randint(1, 6), min_size=rng.randint(0, 1))
            time.sleep(0.0005)

    resizing = threading.Thread(target=resizer)
    resizing.start()
    try:
        errors = run_threads(work, 16, timeout=240)
    finally:
        stop.set()
        resizing.join(30)
    assert errors == []
    assert check.problems == []
    pool.resize(max_size=6)
    s = pool.stats()
    assert s.in_use == 0
    assert s.created - s.destroyed == s.idle + s.in_use
    assert s.hits + s.misses == s.puts + s.discarded
    assert s.discarded > 0
    assert s.idle <= 6
