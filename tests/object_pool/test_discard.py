"""ObjectPool.discard and discard_on: a broken object is destroyed instead of
put back, its max_size slot is freed at once and a waiter (thread or task)
is served; a foreign or returned object is refused, changing nothing; a
borrow() block that discarded its object, or raised one of discard_on, is
not put back; counted in stats().discarded; books balance under load."""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from typing import Any

import pytest

from shardpool import ObjectPool, PoolTimeout

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


def test_discard_destroys_the_object_and_counts_it():
    destroy = Recorder()
    pool = ObjectPool(Thing, destroy=destroy)
    a = pool.get()
    pool.discard(a)
    assert destroy.calls == [a]
    s = pool.stats()
    assert (s.discarded, s.destroyed, s.puts, s.in_use, s.idle) == (1, 1, 0, 0, 0)
    assert s.as_dict()["discarded"] == 1
    assert balanced(pool)
    # Never handed out again: the next get makes a new object.
    assert pool.get() is not a


def test_discard_frees_the_slot_and_serves_a_waiting_thread():
    pool = ObjectPool(Thing, max_size=1)
    a = pool.get()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(pool.get(timeout=10)))
    waiter.start()
    while pool.stats().waits == 0:
        threading.Event().wait(0.001)
    pool.discard(a)
    waiter.join(10)
    assert not waiter.is_alive()
    assert got
    assert got[0] is not a
    s = pool.stats()
    assert (s.created, s.destroyed, s.discarded, s.in_use) == (2, 1, 1, 1)
    assert balanced(pool)


def test_discard_serves_a_waiting_task():
    pool = ObjectPool(Thing, max_size=1)

    async def main() -> Thing:
        a = pool.get()
        task = asyncio.ensure_future(pool.aget(timeout=10))
        while pool.stats().waits == 0:
            await asyncio.sleep(0.001)
        pool.discard(a)
        b = await task
        assert b is not a
        return b

    b = asyncio.run(main())
    assert pool.stats().in_use == 1
    pool.put(b)
    assert balanced(pool)


def test_a_lost_object_no_longer_holds_its_slot_for_ever():
    # The case: a full pool whose object broke; discard frees it.
    pool = ObjectPool(Thing, max_size=1)
    broken = pool.get()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    pool.discard(broken)
    assert pool.get(timeout=0) is not broken


@pytest.mark.parametrize("bounded", [False, True])
def test_foreign_and_repeated_discards_are_refused_changing_nothing(bounded):
    destroy = Recorder()
    pool = ObjectPool(Thing, destroy=destroy, max_size=4 if bounded else None)
    held, returned = pool.get(), pool.get()
    pool.put(returned)
    before = snapshot(pool)
    for stranger in (Thing(), returned, ObjectPool(Thing).get()):
        with pytest.raises(ValueError, match=r"discard.*not handed out"):
            pool.discard(stranger)
        assert snapshot(pool) == before
    assert destroy.calls == []
    pool.discard(held)
    with pytest.raises(ValueError, match="discarded already"):
        pool.discard(held)
    with pytest.raises(ValueError, match="not handed out"):
        pool.put(held)
    assert pool.stats().discarded == 1
    assert destroy.calls == [held]


def test_an_unchecked_pool_destroys_and_counts_whatever_it_is_given():
    destroy = Recorder()
    pool = ObjectPool(Thing, checked=False, destroy=destroy)
    a = pool.get()
    pool.discard(a)
    stranger = Thing()
    pool.discard(stranger)  # cannot tell: documented
    assert destroy.calls == [a, stranger]
    assert pool.stats().discarded == 2


def test_discard_on_a_closed_pool_destroys_the_object():
    destroy = Recorder()
    pool = ObjectPool(Thing, destroy=destroy)
    a = pool.get()
    pool.close()
    pool.discard(a)
    assert destroy.calls == [a]
    assert pool.stats().discarded == 1
    assert balanced(pool)


def test_a_failing_destroy_hook_is_reported_as_for_put(pool_log):
    # As when put destroys an object: the error is logged (the shardpool
    # logger, ERROR), the object is gone and its slot freed all the same.
    def destroy(obj):
        raise Boom("destroy failed")

    pool = ObjectPool(Thing, max_size=1, destroy=destroy)
    a = pool.get()
    pool.discard(a)
    [error] = pool_log.errors()
    assert isinstance(error, Boom)
    s = pool.stats()
    assert (s.discarded, s.destroyed, s.in_use) == (1, 1, 0)
    assert pool.get(timeout=0) is not a


def test_a_destroy_hook_raising_base_exception_still_frees_the_slot(pool_log, default_sigint):
    def destroy(obj):
        raise KeyboardInterrupt

    pool = ObjectPool(Thing, max_size=1, destroy=destroy)
    # Logged, and raised again as Ctrl-C is (main thread, next check).
    with pytest.raises(KeyboardInterrupt):
        call_then_let_interrupts_in(pool.discard, pool.get())
    assert pool.stats().discarded == 1
    pool.get(timeout=0)


def test_discard_inside_borrow_ends_the_holding():
    destroy = Recorder()
    pool = ObjectPool(Thing, destroy=destroy, max_size=2)
    with pool.borrow() as obj:
        pool.discard(obj)
    s = pool.stats()
    assert (s.discarded, s.puts, s.idle, s.in_use) == (1, 0, 0, 0)
    assert destroy.calls == [obj]
    assert balanced(pool)


@pytest.mark.parametrize("checked", [True, False])
def test_discard_inside_borrow_of_any_pool_is_not_put_back(checked):
    destroy = Recorder()
    pool = ObjectPool(Thing, checked=checked, destroy=destroy)
    with pool.borrow() as obj:
        pool.discard(obj)
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.discarded, s.puts, s.idle) == (1, 0, 0)
    assert balanced(pool)


def test_a_put_inside_borrow_still_makes_the_exit_refuse_it():
    # Unlike a discard: the exit's second return is an error, as before.
    pool = ObjectPool(Thing)
    with pytest.raises(ValueError, match="not handed out"), pool.borrow() as obj:
        pool.put(obj)
    assert (pool.stats().puts, pool.stats().discarded) == (1, 0)


def test_a_discard_by_another_pool_does_not_end_the_block():
    pool, other = ObjectPool(Thing, checked=False), ObjectPool(Thing, checked=False)
    with pool.borrow() as obj:
        other.discard(obj)  # an unchecked pool takes it: counted there
    assert (pool.stats().puts, pool.stats().discarded) == (1, 0)
    assert other.stats().discarded == 1


def test_nested_borrows_each_end_their_own_object():
    pool = ObjectPool(Thing, max_size=2)
    with pool.borrow() as outer:
        with pool.borrow() as inner:
            pool.discard(outer)
        assert (pool.stats().puts, pool.stats().discarded) == (1, 1)
    s = pool.stats()
    assert (s.puts, s.discarded, s.in_use, s.idle) == (1, 1, 0, 1)
    assert pool.get() is inner


def test_discard_inside_a_raising_borrow_lets_the_exception_through():
    pool = ObjectPool(Thing)
    held: list = []

    def block() -> None:
        with pool.borrow() as obj:
            held.append(obj)
            pool.discard(obj)
            raise Boom

    with pytest.raises(Boom):
        block()
    assert (pool.stats().discarded, pool.stats().puts) == (1, 0)


def test_discard_inside_aborrow_ends_the_holding():
    pool = ObjectPool(Thing, max_size=1)

    async def main() -> None:
        async with pool.aborrow() as obj:
            pool.discard(obj)
        async with pool.aborrow(timeout=0) as again:
            assert again is not obj

    asyncio.run(main())
    s = pool.stats()
    assert (s.discarded, s.puts, s.idle) == (1, 1, 1)
    assert balanced(pool)


class Broken(Exception):
    pass


class VeryBroken(Broken):
    pass


def test_discard_on_discards_when_the_block_raises_a_listed_exception():
    destroy = Recorder()
    pool = ObjectPool(Thing, destroy=destroy, max_size=1, discard_on=(KeyError, Broken))
    assert pool.discard_on == (KeyError, Broken)
    # A subclass matches, as in `except`.
    with pytest.raises(VeryBroken), pool.borrow() as obj:
        raise VeryBroken
    assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.discarded, s.puts, s.in_use, s.idle) == (1, 0, 0, 0)
    # The slot is free again.
    assert pool.get(timeout=0) is not obj


class RaisingCheck(type):
    """A metaclass whose isinstance check raises: a discard_on class can
    run Python code at a block's exit."""

    def __instancecheck__(cls, obj: object) -> bool:
        raise LookupError("the check failed")


class Checked(Exception, metaclass=RaisingCheck):
    pass


def test_a_discard_on_check_that_raises_still_gives_the_object_back():
    # The block's holder lets go of the object at its exit: a failing
    # discard_on check must not leave it out for good (a bounded pool
    # would lose the slot). It goes back; the block's exception propagates
    # with the check's error noted on it, as for a failing reset.
    pool = ObjectPool(Thing, max_size=1, discard_on=Checked)

    def block():
        with pool.borrow():
            raise ValueError("in the block")

    with pytest.raises(ValueError, match="in the block") as caught:
        block()
    assert any("the check failed" in note for note in caught.value.__notes__)
    s = pool.stats()
    assert (s.in_use, s.idle, s.puts) == (0, 1, 1)
    assert pool.get(timeout=0) is not None  # the slot is free again


def test_discard_on_puts_back_for_other_exceptions_and_normal_exits():
    pool = ObjectPool(Thing, discard_on=KeyError)
    assert pool.discard_on == (KeyError,)
    with pytest.raises(ValueError, match="not listed"), pool.borrow() as obj:
        raise ValueError("not listed")
    with pool.borrow() as again:
        pass
    assert again is obj
    s = pool.stats()
    assert (s.discarded, s.puts, s.idle) == (0, 2, 1)


def test_discard_on_defaults_to_nothing():
    pool = ObjectPool(Thing)
    assert pool.discard_on == ()
    assert ObjectPool(Thing, discard_on=()).discard_on == ()
    with pytest.raises(KeyError), pool.borrow():
        raise KeyError
    assert (pool.stats().discarded, pool.stats().puts) == (0, 1)


def test_discard_on_with_base_exceptions():
    pool = ObjectPool(Thing, discard_on=(KeyboardInterrupt,))
    with pytest.raises(KeyboardInterrupt), pool.borrow():
        raise KeyboardInterrupt
    assert pool.stats().discarded == 1
    # Not listed: put back, though it is a BaseException too.
    with pytest.raises(SystemExit), pool.borrow():
        raise SystemExit
    assert (pool.stats().discarded, pool.stats().puts) == (1, 1)
    # BaseException lists everything.
    everything = ObjectPool(Thing, discard_on=BaseException)
    with pytest.raises(GeneratorExit), everything.borrow():
        raise GeneratorExit
    assert everything.stats().discarded == 1


def test_discard_on_in_aborrow_and_on_cancellation():
    pool = ObjectPool(Thing, max_size=1, discard_on=(Broken, asyncio.CancelledError))

    async def main() -> None:
        with pytest.raises(Broken):
            async with pool.aborrow():
                raise Broken
        assert pool.stats().discarded == 1
        started = asyncio.Event()

        async def holder() -> None:
            async with pool.aborrow():
                started.set()
                await asyncio.sleep(60)

        task = asyncio.ensure_future(holder())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats().discarded == 2
        async with pool.aborrow(timeout=0):
            pass

    asyncio.run(main())
    s = pool.stats()
    assert (s.discarded, s.puts, s.in_use) == (2, 1, 0)
    assert balanced(pool)


def test_discard_on_and_a_discard_in_the_block_destroy_once():
    destroy = Recorder()
    pool = ObjectPool(Thing, destroy=destroy, discard_on=Broken)
    held: list = []

    def block() -> None:
        with pool.borrow() as obj:
            held.append(obj)
            pool.discard(obj)
            raise Broken

    with pytest.raises(Broken):
        block()
    obj = held[0]
    assert destroy.calls == [obj]
    assert pool.stats().discarded == 1


def test_discard_on_runs_no_reset():
    reset = Recorder()
    pool = ObjectPool(Thing, reset=reset, discard_on=Broken)
    with pytest.raises(Broken), pool.borrow():
        raise Broken
    assert reset.calls == []


def test_discards_under_load_keep_the_books_and_one_holder_per_object():
    # 16 threads on a pool of 4: random gets, puts, discards and borrows
    # that raise a discard_on exception. Every object is claimed while held:
    # a second holder, or a destroyed object handed out, is caught.
    check = HolderCheck()
    pool = ObjectPool(check.make, max_size=4, destroy=check.destroyed, discard_on=Broken)

    def work(me: int) -> None:
        rng = random.Random(me)
        for _ in range(1500):
            choice = rng.random()
            if choice < 0.5:
                obj = pool.get(timeout=30)
                check.claim(obj, me)
                check.release(obj)
                if rng.random() < 0.3:
                    pool.discard(obj)
                else:
                    pool.put(obj)
            else:
                try:
                    with pool.borrow(timeout=30) as obj:
                        check.claim(obj, me)
                        check.release(obj)
                        if choice < 0.6:
                            pool.discard(obj)
                        elif choice < 0.7:
                            raise Broken
                except Broken:
                    pass

    assert run_threads(work, 16, timeout=240) == []
    assert check.problems == []
    s = pool.stats()
    assert s.created - s.destroyed == s.idle + s.in_use
    assert s.in_use == 0
    assert s.discarded > 0
    assert s.destroyed >= s.discarded
    assert s.hits + s.misses == s.puts + s.discarded
    assert s.created <= s.destroyed + 4


# --- discard from another thread while a block holds the object ---


def test_a_discard_from_another_thread_ends_the_blocks_holding():
    # The exit used to put the object back and raise ValueError: the note
    # "discarded while lent" was the block's thread's own.
    destroy = Recorder()
    pool = ObjectPool(Thing, max_size=1, destroy=destroy)
    with pool.borrow() as obj:
        helper = threading.Thread(target=pool.discard, args=(obj,))
        helper.start()
        helper.join(5)
        assert destroy.calls == [obj]
    s = pool.stats()
    assert (s.discarded, s.puts, s.in_use, s.idle) == (1, 0, 0, 0)
    assert pool.get(timeout=0) is not obj  # the slot was freed, once


def test_a_discard_from_a_worker_thread_ends_an_aborrow_block():
    pool = ObjectPool(Thing, max_size=1)

    async def main():
        async with pool.aborrow() as obj:
            await asyncio.to_thread(pool.discard, obj)
        return obj

    obj = asyncio.run(main())
    s = pool.stats()
    assert (s.discarded, s.puts, s.in_use) == (1, 0, 0)
    assert pool.get(timeout=0) is not obj


def test_a_refused_discard_from_another_thread_leaves_the_block_to_put_back():
    pool = ObjectPool(Thing, max_size=2)
    other = ObjectPool(Thing, max_size=2)
    with pool.borrow() as obj:
        errors = []

        def discard_elsewhere():
            try:
                other.discard(obj)  # not that pool's: refused, nothing marked
            except ValueError as e:
                errors.append(e)

        helper = threading.Thread(target=discard_elsewhere)
        helper.start()
        helper.join(5)
        assert len(errors) == 1
    s = pool.stats()
    assert (s.discarded, s.puts, s.idle, s.in_use) == (0, 1, 1, 0)


def test_discards_from_other_threads_racing_block_exits_keep_the_books():
    # Holders borrow in a loop and publish what they hold; a killer thread
    # discards held objects at random. Whichever comes first wins: the exit
    # does nothing more, or the discard is refused (given back already).
    # No exit raises, nothing is lost or counted twice.
    pool = ObjectPool(Thing, max_size=4, timeout=30)
    held: set[int] = set()
    objects: dict[int, Thing] = {}
    lock = threading.Lock()
    done = threading.Event()
    discarded = refused = 0

    def holder(i: int) -> None:
        for _ in range(300):
            with pool.borrow() as obj:
                with lock:
                    held.add(id(obj))
                    objects[id(obj)] = obj
                obj.data.append(i)
                time.sleep(0.0002)  # held a while, GIL released: the killer runs
                with lock:
                    held.discard(id(obj))
                obj.data.clear()

    def killer() -> None:
        nonlocal discarded, refused
        rng = random.Random(7)
        while not done.is_set():
            with lock:
                victim = objects.get(rng.choice(sorted(held))) if held else None
            if victim is None:
                time.sleep(0.0001)
                continue
            try:
                pool.discard(victim)
                discarded += 1
            except ValueError:
                refused += 1

    killing = threading.Thread(target=killer)
    killing.start()
    try:
        errors = run_threads(holder, 4)
    finally:
        done.set()
        killing.join(10)
    assert errors == []
    s = pool.stats()
    assert discarded > 0
    assert s.discarded == discarded
    assert s.in_use == 0
    assert s.hits + s.misses == s.puts + s.discarded
    assert balanced(pool)


def test_a_block_exited_on_another_thread_leaves_no_entry_to_strand_a_later_one() -> None:
    # Blocks are entered and exited on different threads when a generator
    # holding one is resumed from a thread pool (a sync streaming response
    # run in a threadpool, one next() per worker). The factory returns one
    # object: after a discard destroyed it, the next is "a new object at the
    # same address", as CPython's allocator often gives.
    only = Thing()
    pool = ObjectPool(lambda: only, max_size=2)
    jobs: queue.Queue[Any] = queue.Queue()
    results: queue.Queue[Any] = queue.Queue()

    def worker() -> None:
        while (job := jobs.get()) is not None:
            results.put(job())

    def on_worker(job: Any) -> Any:
        jobs.put(job)
        return results.get()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        first = pool.borrow()
        on_worker(first.__enter__)  # entered on the worker...
        first.__exit__(None, None, None)  # ...exited here: its entry stays there
        pool.discard(pool.get())  # out again, discarded: the stale entry is marked
        second = pool.borrow()
        assert second.__enter__() is only  # entered here, the same address
        on_worker(lambda: second.__exit__(None, None, None))  # exited on the worker
    finally:
        jobs.put(None)
        thread.join()
    s = pool.stats()
    assert (s.in_use, s.idle) == (0, 1), "the second block's object was never put back"
