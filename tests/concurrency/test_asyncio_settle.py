"""aget()'s `_Waiting` (the core's `Pending`) is settled exactly once, and
what it was granted is taken or given back, whichever way the wait ends:
cancelled at its await point after each kind of wake-up, re-queued after a
rejected grant, finished early, its hooks raising BaseException."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from shardpool import ObjectPool, PoolTimeout
from shardpool._core import _Waiting

from helpers import Boom, Recorder, Thing, balanced, queued_aget, run, until


def test_a_wait_finished_before_it_is_decided_is_withdrawn() -> None:
    # Found in review: the core settled the wait and left its waiter queued,
    # so the next put was granted to it and lost; the pool (max_size 1)
    # then had no object to give.
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    held = pool.get()
    step = pool._get_or_wait()
    assert isinstance(step, _Waiting)
    assert not step.decided
    # No wait with a limit ran out: the message must not claim one did
    # ("within 0 s", as it said before).
    with pytest.raises(PoolTimeout, match=r"finished before it was decided \(max_size=1\)") as err:
        step.finish()
    assert "within" not in str(err.value)
    step.abandon()  # settled already: nothing
    s = pool.stats()
    assert (s.waiting, s.waits, s.timeouts) == (0, 1, 1)
    pool.put(held)
    assert len(pool) == 1
    assert pool.get(timeout=0) is held
    assert balanced(pool)


def test_cancelled_after_losing_the_race_it_was_woken_for() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
    lost = 0

    async def main() -> None:
        nonlocal lost
        held = await pool.aget()
        task = asyncio.create_task(pool.aget())
        await asyncio.sleep(0)  # the task queues
        pool.put(held)  # wakes the task to compete (normal mode) ...
        try:
            again = pool.get(timeout=0)  # ... and the putter takes it back first
        except PoolTimeout:
            # It had waited 1 ms already: handed to it (hand-off mode).
            pool.put(await task)
            return
        assert again is held
        await asyncio.sleep(0)  # the task finds it lost, and waits again
        await asyncio.sleep(0)
        assert not task.done()
        assert pool.stats().waiting == 1
        lost += 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats().waiting == 0
        pool.put(again)

    for _ in range(20):
        run(main())
        s = pool.stats()
        assert (s.waiting, s.in_use, len(pool), s.created) == (0, 0, 1, 1)
        assert s.cancelled == lost
        assert balanced(pool)
    assert lost > 0, "never lost the race: the test showed nothing"


def test_cancelled_after_a_rejected_grant_requeued_it() -> None:
    bad: set[int] = set()
    destroy = Recorder()
    pool: ObjectPool[Thing] = ObjectPool(
        Thing, max_size=2, validate=lambda o: id(o) not in bad, destroy=destroy
    )
    got: list[Thing] = []

    async def main() -> None:
        a, b = await pool.aget(), await pool.aget()
        task = asyncio.create_task(pool.aget())
        await until(lambda: pool.stats().waiting == 1)
        # A thread queues behind the task.
        thread = threading.Thread(target=lambda: got.append(pool.get(timeout=10)))
        thread.start()
        await until(lambda: pool.stats().waiting == 2)
        # Both starved (waited past the 1 ms of normal mode): served in
        # arrival order, no barging. (In normal mode the re-queued task may
        # take the slot the thread was woken to compete for: documented.)
        time.sleep(0.01)
        # The task is granted `a`, which validate refuses: its slot goes to
        # the thread (next in line), and the task queues again, at the back.
        bad.add(id(a))
        pool.put(a)
        await until(lambda: bool(got))
        await until(lambda: pool.stats().waiting == 1)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        thread.join(10)
        pool.put(got[0])
        pool.put(b)

    run(main())
    s = pool.stats()
    # One get, one wait: the re-queue counts no second wait.
    assert (s.waits, s.cancelled, s.invalid, s.waiting, s.in_use) == (2, 1, 1, 0, 0)
    assert len(destroy.calls) == 1
    assert (len(pool), s.created) == (2, 3)
    assert balanced(pool)


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt, SystemExit])
def test_a_granted_slot_whose_factory_raises_is_freed(exc: type[BaseException]) -> None:
    failing = False

    def factory() -> Thing:
        if failing:
            raise exc("factory")
        return Thing()

    destroy = Recorder()
    pool: ObjectPool[Thing] = ObjectPool(factory, max_size=1, destroy=destroy)

    async def main() -> None:
        nonlocal failing
        held, task = await queued_aget(pool)
        failing = True
        pool.discard(held)  # its slot granted to the task
        await task

    # asyncio lets KeyboardInterrupt and SystemExit out of the loop.
    with pytest.raises(exc):
        run(main())
    failing = False
    s = pool.stats()
    assert (s.in_use, s.waiting, s.idle) == (0, 0, 0)
    assert pool.get(timeout=0) is not None  # the slot is free
    assert balanced(pool)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_a_granted_object_whose_validate_raises_is_destroyed_and_its_slot_freed(
    exc: type[BaseException],
) -> None:
    raising = False
    destroy = Recorder()

    def validate(obj: Thing) -> bool:
        if raising:
            raise exc("validate")
        return True

    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1, validate=validate, destroy=destroy)

    async def main() -> None:
        nonlocal raising
        held, task = await queued_aget(pool)
        raising = True
        pool.put(held)
        await task

    with pytest.raises(exc):
        run(main())
    raising = False
    assert len(destroy.calls) == 1
    s = pool.stats()
    assert (s.in_use, s.waiting, s.idle, s.destroyed) == (0, 0, 0, 1)
    pool.get(timeout=0)
    assert balanced(pool)


@pytest.mark.parametrize("when", ["queued", "granted"])
def test_timeout_racing_each_wake_up_loses_nothing(when: str) -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)

    async def main() -> None:
        held, task = await queued_aget(pool, timeout=0.05)
        if when != "queued":
            time.sleep(0.1)  # the deadline passes while the loop is blocked
            pool.put(held)
        try:
            got = await task
        except PoolTimeout:
            pass
        else:
            pool.put(got)
        if when != "granted":
            pool.put(held)

    run(main())
    s = pool.stats()
    assert (s.in_use, s.waiting, s.created, len(pool)) == (0, 0, 1, 1)
    assert balanced(pool)


def test_a_settled_wait_shows_the_collector_nothing_it_does_not_own() -> None:
    # Found in review: a `_Waiting` that lost its race is settled, and its
    # place goes on in a new `_Waiting` over the same waiter. Both showed
    # the object later granted to that waiter to the garbage collector: two
    # references reported for the one the waiter holds (a refcount the
    # collector's count drives below zero).
    for _ in range(50):
        pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1)
        held = pool.get()
        step = pool._get_or_wait()
        pool.put(held)  # wakes the wait to compete (normal mode) ...
        try:
            held = pool.get(timeout=0)  # ... and takes the object back first
        except PoolTimeout:
            step.abandon()  # handed over already (hand-off mode): try again
            continue
        again = step.finish()  # lost: the same place, in a new `_Waiting`
        assert isinstance(again, _Waiting)
        time.sleep(0.002)  # waited 1 ms: the next put hands the object over
        pool.put(held)
        assert again.decided
        assert any(r is held for r in gc.get_referents(again))
        assert not any(r is held for r in gc.get_referents(step))
        assert again.finish() is held
        return
    pytest.fail("never lost the race: the test showed nothing")
