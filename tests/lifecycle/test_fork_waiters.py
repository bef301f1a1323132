"""A child forked while threads waited on a bounded pool does not hand its
objects to those threads (they do not exist in the child), and does serve
the waiters of the thread that forked (an event loop's tasks)."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time

import pytest

from shardpool import ObjectPool, PoolTimeout

from helpers import fork

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def in_child(body: object) -> int:
    """Runs `body()` in a forked child; its exit code (1 on an exception)."""
    pid = fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if body() else 2  # type: ignore[operator]
        finally:
            sys.stdout.flush()
            os._exit(code)
    return wait_for_child(pid)


# CPython 3.14 clears the forking thread's running loop and current task in
# the child (PyOS_AfterFork_Child: reset_asyncio_state), so no task, the
# coroutine that forked included, can take another step there ("loop ... is
# not the running loop"): the child's loop waits forever. There the child can
# check that the pool handed the object to the task's waiter, not that the
# task then finished.
TASKS_RUN_IN_A_FORKED_CHILD = sys.version_info < (3, 14)


def wait_for_child(pid: int) -> int:
    """The exit code of child `pid`; kills it if it hangs."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the child hung")


def test_child_serves_itself_not_the_parents_waiting_threads() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list, max_size=1)
    held = pool.get()
    outcomes: list[str] = []

    def wait_in_parent() -> None:
        try:
            obj = pool.get(timeout=2)
        except PoolTimeout:
            outcomes.append("timeout")
        else:
            outcomes.append("served")
            pool.put(obj)

    waiters = [threading.Thread(target=wait_in_parent) for _ in range(3)]
    for t in waiters:
        t.start()
    deadline = time.monotonic() + 5
    while pool.stats().waits < 3:
        assert time.monotonic() < deadline
        time.sleep(0.001)

    def child() -> bool:
        pool.put(held)
        again = pool.get(timeout=2)
        pool.put(again)
        with pool.borrow(timeout=2):
            pass
        batch = pool.get_many(1, timeout=2)
        pool.put_many(batch)
        return again is held and len(pool) == 1

    assert in_child(child) == 0
    # In the parent, the waiting threads are still served, in turn.
    pool.put(held)
    for t in waiters:
        t.join(10)
    assert outcomes == ["served"] * 3


def test_a_task_of_the_forking_event_loop_is_served_in_the_child() -> None:
    # Issue 11, defect 5: a task waits in aget(); the event loop's own
    # coroutine forks. The task belongs to the forking thread, so it exists
    # in the child: a put there must serve it. b8685cd forgot every waiter
    # queued before the fork, and the task waited until its timeout.
    pool: ObjectPool[list[int]] = ObjectPool(list, max_size=1)
    held = pool.get()

    async def main() -> int:
        task = asyncio.create_task(pool.aget(timeout=5))
        while pool.stats().waits < 1:
            await asyncio.sleep(0.001)
        pid = fork()
        if pid == 0:
            code = 1
            try:
                pool.put(held)
                # The put went to the task's waiter: nothing idle, nobody
                # waiting (b8685cd left the object idle and the waiter queued).
                stats = pool.stats()
                if (stats.idle, stats.waiting) != (0, 0):
                    code = 3
                elif not TASKS_RUN_IN_A_FORKED_CHILD:
                    code = 0
                else:
                    # Only sleep(0) here: from Python 3.12 the child has no
                    # running loop to look up, though this coroutine still runs
                    # in it.
                    deadline = time.monotonic() + 5
                    while not task.done() and time.monotonic() < deadline:
                        await asyncio.sleep(0)
                        time.sleep(0.001)
                    code = 0 if task.done() and task.result() is held else 2
            finally:
                sys.stdout.flush()
                os._exit(code)
        code = wait_for_child(pid)
        pool.put(held)  # in the parent the task is served as usual
        assert await asyncio.wait_for(task, 5) is held
        return code

    assert asyncio.run(main()) == 0


def test_a_batch_of_another_thread_is_forgotten_with_what_was_set_aside_for_it() -> None:
    # Fork handling keyed on the waiter's thread, for batches: a thread of
    # the parent waits in get_many(2), long enough for the free slot to be
    # set aside for it. In the child that thread does not exist: its place
    # and the set-aside slot serve the child. (On b8685cd the batch held an
    # object while it waited, which stayed charged in the child for ever.)
    pool: ObjectPool[list[int]] = ObjectPool(list, max_size=2)
    held = pool.get()
    results: list[object] = []
    batch = threading.Thread(target=lambda: results.append(pool.get_many(2, timeout=10)))
    batch.start()
    deadline = time.monotonic() + 5
    while pool.stats().waits < 1:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(0.05)  # long enough to be preferred

    def child() -> bool:
        second = pool.get(timeout=2)
        pool.put(second)
        pool.put(held)
        both = pool.get_many(2, timeout=2)
        pool.put_many(both)
        s = pool.stats()
        return len(both) == 2 and s.in_use == 0 and len(pool) == 2

    assert in_child(child) == 0
    pool.put(held)
    batch.join(10)
    [objs] = results
    pool.put_many(objs)  # type: ignore[arg-type]
    assert pool.stats().in_use == 0


def test_a_lock_held_by_another_thread_at_fork_does_not_hang_the_child() -> None:
    # State owned by a thread that does not exist in the child, again: the
    # lock of trim_on_gc's registry, held by another thread at the fork,
    # made the child's next full collection hang on b8685cd.
    from shardpool import _gc, trim_on_gc

    pool: ObjectPool[list[int]] = ObjectPool(list)
    pool.put(pool.get())
    stop = trim_on_gc(pool)
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with _gc._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(5)

        def child() -> bool:
            gc.collect()  # trims the registered pool
            return len(pool) == 0

        assert in_child(child) == 0
    finally:
        release.set()
        holder.join(10)
        stop()
