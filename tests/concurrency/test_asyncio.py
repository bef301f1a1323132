"""asyncio: aget() and aborrow() wait without blocking the event loop, share
one fair queue with threads, and lose nothing when cancelled or timed out."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import time
import weakref
from typing import Any

import pytest

from shardpool import AsyncBorrow, ObjectPool, PoolClosed, PoolTimeout, TieredPool, _aio

from helpers import Thing, call_then_let_interrupts_in, run, until


def test_unbounded_aget_and_aborrow() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing)

    async def main() -> None:
        obj = await pool.aget()
        assert isinstance(obj, Thing)
        pool.put(obj)
        async with pool.aborrow() as again:
            assert again is obj
        assert len(pool) == 1

    run(main())
    s = pool.stats()
    assert (s.hits, s.misses, s.puts, s.waits, s.in_use) == (1, 1, 2, 0, 0)


def test_a_waiting_task_does_not_block_the_loop_and_gets_the_returned_object() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)

    async def main() -> None:
        held = await pool.aget()
        waiter = asyncio.create_task(pool.aget())
        ticks = 0
        while ticks < 20:  # the loop keeps running other tasks meanwhile
            await asyncio.sleep(0)
            ticks += 1
        assert not waiter.done()
        pool.put(held)
        assert await asyncio.wait_for(waiter, 5) is held
        pool.put(held)

    run(main())
    s = pool.stats()
    assert (s.waits, s.timeouts, s.in_use, s.created) == (1, 0, 0, 1)


def test_a_put_from_another_thread_wakes_the_task() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()

    async def main() -> Thing:
        threading.Timer(0.05, pool.put, (held,)).start()
        return await pool.aget(timeout=10)

    assert run(main()) is held


def test_threads_and_tasks_are_served_in_arrival_order() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()
    got: list[str] = []

    def thread_waiter() -> None:
        obj = pool.get(timeout=10)
        got.append("thread")
        pool.put(obj)

    async def main() -> None:
        t = threading.Thread(target=thread_waiter)
        t.start()
        await until(lambda: pool.stats().waits == 1)  # the thread queued first
        task = asyncio.create_task(pool.aget(timeout=10))
        await until(lambda: pool.stats().waits == 2)
        pool.put(held)  # goes to the thread, which puts it back to the task
        obj = await asyncio.wait_for(task, 10)
        got.append("task")
        t.join(10)
        pool.put(obj)

    run(main())
    assert got == ["thread", "task"]


def test_a_woken_task_that_loses_the_race_keeps_its_place() -> None:
    # Normal mode: a put wakes the waiting task to compete, and the running
    # code takes the object back first; the task waits again (a new
    # _Waiting, the same place in the queue) and gets the next put. A put
    # that found the task past the 1 ms threshold hands the object to it
    # instead; this counts the rounds that barged.
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()
    barged = 0

    async def main() -> None:
        nonlocal held, barged
        for _ in range(20):
            waits = pool.stats().waits
            task = asyncio.create_task(pool.aget(timeout=10))
            while pool.stats().waits == waits:  # no sleep: the task stays young
                await asyncio.sleep(0)
            pool.put(held)
            try:
                held = pool.get(timeout=0)
            except PoolTimeout:
                pass
            else:
                barged += 1
                await asyncio.sleep(0)  # the woken task finds nothing
                assert not task.done()
                pool.put(held)
            held = await asyncio.wait_for(task, 10)

    run(main())
    assert barged > 0
    s = pool.stats()
    # One wait per aget, however often it queued again, and one per get
    # that found the object handed over.
    assert (s.waits, s.timeouts, s.in_use, s.waiting) == (40 - barged, 20 - barged, 1, 0)


def test_timeout_raises_pool_timeout_and_keeps_the_slot() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()

    async def main() -> None:
        with pytest.raises(PoolTimeout, match="max_size=1"):
            await pool.aget(timeout=0.02)

    run(main())
    pool.put(held)
    assert pool.get(timeout=0) is held
    s = pool.stats()
    assert (s.waits, s.timeouts, s.in_use) == (1, 1, 1)


def test_cancelled_while_queued_loses_nothing() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()

    async def main() -> None:
        task = asyncio.create_task(pool.aget())
        await until(lambda: pool.stats().waits == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    pool.put(held)
    assert len(pool) == 1
    assert pool.stats().in_use == 0


def test_cancelled_after_the_grant_gives_the_object_back() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)

    async def main() -> None:
        held = await pool.aget()
        task = asyncio.create_task(pool.aget())
        await until(lambda: pool.stats().waits == 1)
        pool.put(held)  # granted to the task, which has not run yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    s = pool.stats()
    assert (len(pool), s.in_use, s.created) == (1, 0, 1)


def test_close_fails_waiting_tasks_with_pool_closed() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    pool.get()

    async def main() -> None:
        tasks = [asyncio.create_task(pool.aget()) for _ in range(3)]
        await until(lambda: pool.stats().waits == 3)
        pool.close()
        for task in tasks:
            with pytest.raises(PoolClosed):
                await asyncio.wait_for(task, 5)

    run(main())


def test_a_task_left_waiting_on_a_closed_loop_gives_back_its_grant() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()
    loop = asyncio.new_event_loop()
    task = loop.create_task(pool.aget())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert pool.stats().waits == 1
    loop.close()  # the task never finishes
    del task
    gc.collect()
    # Granted to the dead task's place in the queue, which cannot wake it
    # and so gives the object back: it goes idle.
    pool.put(held)
    assert len(pool) == 1
    assert pool.stats().in_use == 0


def test_aborrow_returns_the_object_on_error_and_is_single_use_at_a_time() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)

    async def main() -> None:
        borrow = pool.aborrow(timeout=1)
        assert isinstance(borrow, AsyncBorrow)

        async def failing_block() -> None:
            async with borrow as obj:
                assert isinstance(obj, Thing)
                raise KeyError("boom")

        with pytest.raises(KeyError):
            await failing_block()
        assert len(pool) == 1
        async with borrow:  # usable again once exited
            with pytest.raises(RuntimeError, match="already in use"):
                async with borrow:
                    pass

    run(main())
    assert pool.stats().in_use == 0


def test_an_aborrow_exited_while_its_entry_waits_is_refused_and_changes_nothing() -> None:
    # As a Borrow's exit during its entry: refused, and the entry, once its
    # wait ends, holds the object for its block, whose exit gives it back.
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()

    async def main() -> None:
        borrow = pool.aborrow(timeout=5)
        entering = asyncio.create_task(borrow.__aenter__())
        await until(lambda: pool.stats().waiting == 1)
        with pytest.raises(RuntimeError, match="exited without being entered"):
            await borrow.__aexit__(None, None, None)
        with pytest.raises(RuntimeError, match="already in use"):
            await borrow.__aenter__()
        pool.put(held)
        assert await entering is held
        assert pool.stats().in_use == 1
        await borrow.__aexit__(None, None, None)

    run(main())
    s = pool.stats()
    assert (s.in_use, s.idle, s.puts) == (0, 1, 2)


def test_bad_timeout_fails_at_the_call() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing)
    with pytest.raises(ValueError, match="timeout"):
        pool.aget(timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        pool.aborrow(timeout="soon")
    tiered: TieredPool[bytearray] = TieredPool(bytearray, [64])
    with pytest.raises(ValueError, match="timeout"):
        tiered.aget(10, timeout=float("nan"))
    with pytest.raises(ValueError, match="size"):
        tiered.aget(-1)


def test_tiered_aget_and_aborrow() -> None:
    pool: TieredPool[bytearray] = TieredPool(bytearray, [64, 256])

    async def main() -> None:
        buf = await pool.aget(100)
        assert len(buf) == 256
        pool.put(buf)
        async with pool.aborrow(200) as again:
            assert again is buf

    run(main())
    assert pool.stats().in_use == 0


def test_tasks_and_threads_share_a_bounded_pool_without_sharing_objects() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=3)
    holders: dict[int, str] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def hold(obj: Thing, who: str) -> None:
        with lock:
            if id(obj) in holders:
                errors.append(f"{who} got an object held by {holders[id(obj)]}")
            holders[id(obj)] = who

    def drop(obj: Thing) -> None:
        with lock:
            del holders[id(obj)]

    def thread_worker(n: int) -> None:
        for _ in range(50):
            with pool.borrow(timeout=30) as obj:
                hold(obj, f"thread {n}")
                time.sleep(0)
                drop(obj)

    async def task_worker(n: int) -> None:
        for _ in range(50):
            async with pool.aborrow(timeout=30) as obj:
                hold(obj, f"task {n}")
                await asyncio.sleep(0)
                drop(obj)

    async def main() -> None:
        threads = [threading.Thread(target=thread_worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        await asyncio.gather(*(task_worker(i) for i in range(12)))
        for t in threads:
            t.join(30)

    run(main())
    assert errors == []
    s = pool.stats()
    assert s.in_use == 0
    assert s.created <= 3
    assert s.hits + s.misses == 16 * 50


def test_a_collected_wait_gives_back_its_grant_or_its_place() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()
    queued = pool._get_or_wait()
    assert not isinstance(queued, Thing)
    assert not queued.decided
    pool.put(held)  # granted to the queued wait
    assert queued.decided
    del queued  # collected before anyone took the grant
    assert len(pool) == 1
    held = pool.get()
    queued = pool._get_or_wait()
    del queued  # collected while still queued: it leaves the queue
    pool.put(held)
    assert len(pool) == 1
    s = pool.stats()
    # Given up, not timed out.
    assert (s.waits, s.timeouts, s.cancelled, s.in_use) == (2, 0, 2, 0)


def live(kind: Any) -> list[Any]:
    """Objects the garbage collector tracks that `kind(obj)` picks."""
    return [o for o in gc.get_objects() if kind(o)]


def test_timed_out_and_cancelled_waits_leave_nothing_alive() -> None:
    # Issue 11, defect 6: on b8685cd every timed-out or cancelled aget()
    # left its _Waiting alive in a cycle through Rust (callback, _Waiting,
    # Rust waiter, callback), and with it the event loop.
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()
    loop_ref: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loop_ref.append(weakref.ref(asyncio.get_running_loop()))
        for _ in range(200):
            with pytest.raises(PoolTimeout):
                await pool.aget(timeout=0)
        for i in range(50):
            task = asyncio.create_task(pool.aget())
            await until(lambda i=i: pool.stats().waits == 200 + i + 1)  # queued
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())
    gc.collect()
    assert loop_ref[0]() is None, "the event loop outlived asyncio.run"
    assert live(lambda o: isinstance(o, functools.partial) and o.func is _aio._wake) == []
    assert live(lambda o: type(o).__name__ == "_Waiting") == []
    s = pool.stats()
    assert (s.waits, s.timeouts, s.cancelled) == (250, 200, 50)
    pool.put(held)
    assert len(pool) == 1


def test_a_cancelled_aget_is_counted_as_cancelled_not_as_a_timeout() -> None:
    # Issue 11, defect 9: timeouts counts only waits that ended with
    # PoolTimeout; b8685cd counted a cancelled task as a timeout.
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()

    async def main() -> None:
        task = asyncio.create_task(pool.aget(timeout=30))
        await until(lambda: pool.stats().waits == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The caller's own timeout cancels the wait: not a PoolTimeout.
        with pytest.raises(TimeoutError) as caught:
            await asyncio.wait_for(pool.aget(), 0.01)
        assert not isinstance(caught.value, PoolTimeout)
        with pytest.raises(PoolTimeout):
            await pool.aget(timeout=0.01)

    run(main())
    s = pool.stats()
    assert (s.waits, s.timeouts) == (3, 1)  # b8685cd counted 3 timeouts
    assert s.cancelled == 2
    pool.put(held)
    assert len(pool) == 1


def test_a_granted_wait_in_a_reference_cycle_is_collected_and_gives_back_its_object() -> None:
    # What a _Waiting holds (its pool, a granted object not yet taken) is
    # shown to the garbage collector: a cycle through the granted object
    # is found, the wait given up, and the object goes back to the pool.
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()
    queued = pool._get_or_wait()
    assert not isinstance(queued, Thing)
    # Past 1 ms a wait is handed the object given back (a younger one is
    # woken to compete for it, and the object stays idle).
    time.sleep(0.02)
    pool.put(held)  # granted to the queued wait, which nobody takes
    held.wait = queued  # type: ignore[attr-defined]
    del queued, held
    gc.collect()
    assert len(pool) == 1, "the granted object went back"
    s = pool.stats()
    assert (s.cancelled, s.in_use) == (1, 0)


def test_a_pool_reachable_only_from_its_waiting_task_is_collected() -> None:
    # The wake-up callback of a queued task is the pool's, shown to the
    # garbage collector: a pool that only its own waiting task refers to
    # (nobody can ever put or close it) is collected with the task, not
    # kept alive for ever by a reference from Rust.
    loop = asyncio.new_event_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        # No limit on the wait: a timed wait is rightly kept alive by the
        # loop's timer until it ends.
        pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1, timeout=None)
        held = pool.get()
        task = loop.create_task(pool.aget())
        loop.run_until_complete(asyncio.sleep(0.01))
        assert pool.stats().waits == 1
        ref = weakref.ref(pool)
        del pool, held, task
        gc.collect()
        assert ref() is None
        # asyncio reports the pending task it destroyed; nothing else.
        assert all("destroyed but it is pending" in c["message"] for c in reported)
    finally:
        loop.close()


def test_ctrl_c_as_a_put_wakes_a_task_still_wakes_it_and_is_raised(
    default_sigint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The put runs the task's wake-up (`_aio._wake`) on its own thread. A
    # KeyboardInterrupt there (Ctrl-C as it schedules the wake-up) went to
    # sys.unraisablehook: Ctrl-C was lost, and the task, never woken, waited
    # on with the object granted to it. The wake-up is now run again, then
    # the interrupt raised as Ctrl-C is (main thread, next check).
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        held = await pool.aget()
        waiter = asyncio.create_task(pool.aget(timeout=30))
        await until(lambda: pool.stats().waiting == 1)
        real = loop.call_soon_threadsafe
        calls = 0

        def interrupted_once(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise KeyboardInterrupt  # Ctrl-C as _wake schedules the wake-up
            return real(*args)

        monkeypatch.setattr(loop, "call_soon_threadsafe", interrupted_once)
        with pytest.raises(KeyboardInterrupt):
            call_then_let_interrupts_in(pool.put, held)
        assert await waiter is held  # woken all the same
        pool.put(held)

    # Not asyncio.run: its Runner turns Ctrl-C into cancelling the main task.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    s = pool.stats()
    assert (s.waits, s.timeouts, s.cancelled, s.in_use, s.idle) == (1, 0, 0, 0, 1)
