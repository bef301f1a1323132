"""The pool-level ``timeout=``: the default wait of ``get``, ``get_many``,
``borrow``, ``aget`` and ``aborrow`` when a call leaves ``timeout`` out;
``None`` (at construction or in a call) waits without limit; the message
of ``PoolTimeout`` names the pool and tells who holds and who waits."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import pytest

from shardpool import ObjectPool, PoolTimeout


def test_a_bounded_pool_waits_30_seconds_by_default_an_unbounded_one_never():
    assert ObjectPool(object, max_size=2).timeout == 30.0
    assert ObjectPool(object).timeout is None
    assert ObjectPool(object, max_size=2, timeout=None).timeout is None
    assert ObjectPool(object, max_size=2, timeout=0.25).timeout == 0.25
    assert ObjectPool(object, max_size=2, timeout=0).timeout == 0.0


def test_the_default_appears_as_left_out_in_the_signatures():
    # `...` marks "left out": distinct from None, which waits without limit.
    for method in (ObjectPool.get, ObjectPool.borrow, ObjectPool.aget, ObjectPool.aborrow):
        assert inspect.signature(method).parameters["timeout"].default is Ellipsis
    assert inspect.signature(ObjectPool.get_many).parameters["timeout"].default is Ellipsis


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.get(),
        lambda p: p.get_many(1),
        lambda p: p.borrow().__enter__(),
        lambda p: asyncio.run(p.aget()),
        lambda p: asyncio.run(p.aborrow().__aenter__()),
    ],
    ids=["get", "get_many", "borrow", "aget", "aborrow"],
)
def test_a_call_that_leaves_timeout_out_waits_as_long_as_the_pool_says(call):
    pool = ObjectPool(object, max_size=1, timeout=0.05, name="db")
    held = pool.get()
    started = time.monotonic()
    with pytest.raises(PoolTimeout, match=r"ObjectPool 'db'.*within 0\.05 s"):
        call(pool)
    assert time.monotonic() - started >= 0.05
    s = pool.stats()
    assert (s.timeouts, s.in_use, s.waiting) == (1, 1, 0)
    pool.put(held)
    assert pool.get() is held  # nothing lost


def test_a_call_timeout_overrides_the_pool_default():
    pool = ObjectPool(object, max_size=1, timeout=60)
    held = pool.get()
    with pytest.raises(PoolTimeout, match=r"within 0\.01 s"):
        pool.get(timeout=0.01)
    with pytest.raises(PoolTimeout, match=r"within 0 s"):
        pool.get(0)
    with pytest.raises(PoolTimeout, match=r"within 0\.01 s"):
        asyncio.run(pool.aget(0.01))
    pool.put(held)


def test_none_in_a_call_waits_without_limit_even_if_the_pool_has_one():
    pool = ObjectPool(object, max_size=1, timeout=0.01)
    held = pool.get()
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.get(timeout=None)))
    waiter.start()
    time.sleep(0.2)  # far beyond the pool's 0.01 s
    assert waiter.is_alive()
    assert pool.stats().timeouts == 0
    pool.put(held)
    waiter.join(5)
    assert got == [held]


def test_timeout_none_at_construction_waits_without_limit():
    pool = ObjectPool(object, max_size=1, timeout=None)
    held = pool.get()

    async def main():
        task = asyncio.ensure_future(pool.aget())
        await asyncio.sleep(0.2)
        assert not task.done()
        pool.put(held)
        return await task

    assert asyncio.run(main()) is held


def test_the_message_says_how_many_are_in_use_and_how_many_others_wait():
    pool = ObjectPool(object, max_size=2, timeout=None)
    held = [pool.get(), pool.get()]
    waiters = [threading.Thread(target=pool.get) for _ in range(2)]
    for t in waiters:
        t.start()
    deadline = time.monotonic() + 5
    while pool.stats().waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(PoolTimeout) as caught:
        pool.get(timeout=0.01)
    message = str(caught.value)
    assert "ObjectPool (no name=)" in message
    assert "max_size=2, in use: 2, other callers waiting: 2" in message
    for obj in held:
        pool.put(obj)
    for t in waiters:
        t.join(5)
    assert pool.stats().in_use == 2


def test_a_full_pool_no_longer_hangs_forever_by_default(monkeypatch):
    # The case: a lost object of a max_size=1 pool. The default
    # wait now ends, with the pool's state in the message.
    pool = ObjectPool(object, max_size=1, timeout=0.02)
    lost = pool.get()
    del lost
    with pytest.raises(PoolTimeout, match="in use: 1"):
        pool.get()


# --- stats().waiting: the callers waiting now ---


def test_waiting_counts_threads_and_tasks_waiting_now():
    pool = ObjectPool(object, max_size=1, timeout=None)
    held = pool.get()
    assert pool.stats().waiting == 0
    thread = threading.Thread(target=lambda: pool.put(pool.get()))
    thread.start()
    deadline = time.monotonic() + 5
    while pool.stats().waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.005)

    async def main():
        task = asyncio.ensure_future(pool.aget())
        await asyncio.sleep(0.05)
        assert pool.stats().waiting == 2  # a thread and a task
        pool.put(held)  # the thread first (arrival order), then the task
        return await task

    obj = asyncio.run(main())
    thread.join(5)
    s = pool.stats()
    assert (s.waiting, s.waits, s.in_use) == (0, 2, 1)
    assert s.as_dict()["waiting"] == 0
    pool.put(obj)


def test_a_timed_out_or_cancelled_waiter_no_longer_counts():
    pool = ObjectPool(object, max_size=1)
    held = pool.get()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.01)
    assert pool.stats().waiting == 0

    async def main():
        task = asyncio.ensure_future(pool.aget(timeout=None))
        await asyncio.sleep(0.02)
        assert pool.stats().waiting == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert pool.stats().waiting == 0
    pool.put(held)
