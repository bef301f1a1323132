"""A child forked while threads waited on a bounded pool does not hand its
objects to those threads (they do not exist in the child)."""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings

import pytest

from shardpool import ObjectPool, PoolTimeout

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def in_child(body: object) -> int:
    """Runs `body()` in a forked child; its exit code (1 on an exception)."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a multi-threaded process.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if body() else 2  # type: ignore[operator]
        finally:
            sys.stdout.flush()
            os._exit(code)
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
