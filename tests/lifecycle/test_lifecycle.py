"""Process lifecycle: fork, interpreter shutdown, signals and close.

- ``os.fork()``: the child's pools work (inherited ones and new ones, of
  every kind), also when other threads of the parent were hammering them
  at the moment of the fork, or waiting on a bounded pool (in get, or in
  get_many holding the batch gate). Each child runs under a deadline: a
  deadlock fails the test instead of hanging it.
- Interpreter shutdown with pools, blocks (with live views), buffers and
  daemon threads that wait on a bounded pool, zero large blocks without
  the GIL, or hammer the pools: the process exits with status 0 and
  nothing on stderr.
- A get blocked on a full bounded pool (``timeout=None``) is interrupted by
  a signal handler that raises, by ``KeyboardInterrupt`` (from
  ``_thread.interrupt_main`` and from a real SIGINT), and keeps waiting
  through a handler that does not raise; the pool stays consistent.

Already covered elsewhere, not repeated here: ``close()`` waking waiters
with ``PoolClosed`` (test_object_pool_threads.py::
test_close_wakes_every_waiter_with_pool_closed, and, for get, borrow and
get_many waiters with failing destroy hooks,
test_faults.py::test_close_wakes_faulty_waiters_of_every_kind_and_the_books_balance);
a SIGALRM handler interrupting ``get(timeout=10)``
(test_object_pool_threads.py::
test_wait_is_interrupted_by_a_signal_handler_and_the_pool_stays_consistent).
"""

from __future__ import annotations

import _thread
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import pytest

from shardpool import BlockPool, BufferPool, ObjectPool, PoolClosed, PoolTimeout, TieredPool

from helpers import Interrupted, alarm, fork, run_script

CHILD_DEADLINE = 30.0  # a child still running after this is deadlocked
CRASH_MARKERS = ("Fatal Python error", "panicked", "Segmentation fault", "Aborted", "core dump")


class Thing:
    def __init__(self, size: int = 0) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def imbalance(pool) -> int:
    """Objects made but neither destroyed, idle nor in use: 0 once the pool
    is quiescent. In a child forked while another thread was in the middle
    of a return (zeroing a large block without the GIL, or running a Python
    reset hook), that object stays in between for good: the thread that
    was moving it does not exist in the child."""
    s = pool.stats()
    if isinstance(pool, BlockPool):
        return s.created - s.destroyed - len(pool) - (s.hits + s.misses - s.puts)
    return s.created - s.destroyed - s.idle - s.in_use


def balanced(pool) -> bool:
    return imbalance(pool) == 0


def fork_and_check(child) -> None:
    """Runs `child()` in a forked process; fails if it raises, or if it does
    not finish within CHILD_DEADLINE (killed: a deadlock)."""
    read_end, write_end = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            child()
            code = 0
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + CHILD_DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            pytest.fail(f"the forked child did not finish in {CHILD_DEADLINE} s (deadlock)")
        time.sleep(0.005)
    with os.fdopen(read_end, "rb") as f:
        report = f.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, report or f"child status {status}"


class Pools:
    """One pool of every kind, and what the child checks on each."""

    def __init__(self) -> None:
        self.objects = ObjectPool(Thing, checked=True)
        self.bounded = ObjectPool(Thing, max_size=16)
        self.tiered = TieredPool(Thing, [16, 256, 4096])
        self.blocks = BlockPool(zero="release")
        self.buffers = BufferPool()

    def all(self):
        return (self.objects, self.bounded, self.tiered, self.blocks, self.buffers)

    def hammer(self, rng: random.Random) -> None:
        """One round of everything, as a parent thread does it."""
        obj = self.objects.get()
        self.objects.put(obj)
        with self.bounded.borrow(timeout=30):
            pass
        self.tiered.put(self.tiered.get(rng.choice([1, 100, 1000, 10_000])))
        with self.blocks.get(rng.choice([10, 5000, 300_000, 2 << 20])) as block:
            view = memoryview(block)
            view[:1] = b"x"
            view.release()
        with self.buffers.get() as buf:
            buf.write(b"y" * 500)

    def use_in_child(self) -> None:
        """What a child does with inherited pools: every operation, with
        exact accounting of its own part."""
        inherited = {id(pool): imbalance(pool) for pool in self.all()}
        for pool in (self.objects, self.bounded, self.tiered):
            before = pool.stats()
            got = [pool.get(100) if pool is self.tiered else pool.get() for _ in range(5)]
            assert len({id(o) for o in got}) == 5
            for obj in got:
                pool.put(obj)
            after = pool.stats()
            assert after.hits + after.misses == before.hits + before.misses + 5
            assert after.puts == before.puts + 5
            assert after.in_use == before.in_use  # what parent threads held stays out
        before = self.blocks.stats()
        for n in (10, 5000, 300_000, 3 << 20):
            with self.blocks.get(n) as block:
                assert bytes(block) == bytes(n)  # zero="release": nothing leaks
                memoryview(block)[:] = b"c" * n
        del block  # exported: the last block's memory comes back with the object
        after = self.blocks.stats()
        assert after.puts == before.puts + 4
        assert after.bytes_in_use == before.bytes_in_use
        with self.buffers.get() as buf:
            buf.write(b"child")
            assert buf.getvalue() == b"child"
        for pool in self.all():
            assert imbalance(pool) == inherited[id(pool)], pool
        for pool in self.all():
            pool.close()
            assert pool.closed
        with pytest.raises(PoolClosed):
            self.objects.get()


def fresh_pools_work() -> None:
    pools = Pools()
    for _ in range(3):
        pools.hammer(random.Random(0))
    pools.use_in_child()


# --- fork ---


def test_fork_child_uses_inherited_and_new_pools_of_every_kind():
    pools = Pools()
    rng = random.Random(1)
    for _ in range(20):
        pools.hammer(rng)
    held_block = pools.blocks.get(1000)
    memoryview(held_block)[:] = b"p" * 1000
    view = memoryview(held_block)
    held_buffer = pools.buffers.get()
    held_buffer.write(b"parent")

    def child() -> None:
        # No other thread at the fork: the books balance in the child too.
        assert all(balanced(pool) for pool in pools.all())
        # What the parent held is the child's too: each process gives back
        # its own copy (no double free: the memory is not shared).
        assert bytes(view) == b"p" * 1000
        view.release()
        held_block.release()
        held_buffer.release()
        pools.use_in_child()
        fresh_pools_work()

    fork_and_check(child)
    # The parent's copies are untouched by the child.
    assert bytes(view) == b"p" * 1000
    view.release()
    held_block.release()
    assert held_buffer.getvalue() == b"parent"
    held_buffer.release()
    for pool in pools.all():
        pool.close()


def test_fork_while_other_threads_hammer_every_pool():
    pools = Pools()
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                pools.hammer(rng)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(2)
        for _ in range(8):
            time.sleep(rng.random() * 0.02)  # fork at a random moment of the hammering
            fork_and_check(pools.use_in_child)
    finally:
        stop.set()
        for t in threads:
            t.join(CHILD_DEADLINE)
    assert errors == []
    for pool in pools.all():
        assert balanced(pool), pool
        pool.close()


def test_fork_while_threads_wait_on_a_bounded_pool_leaves_the_other_pools_usable():
    """Threads wait (GIL released, on the pool's condition variables) and
    one holds the batch gate of get_many at the moment of the fork. The
    child does not touch that pool's queue: everything else works, and
    closing the pool (which fails the queued waiters) does not hang."""
    pools = Pools()
    full = ObjectPool(Thing, max_size=1)
    held = full.get()
    waiters = [
        threading.Thread(target=lambda: full.put(full.get()), daemon=True),
        threading.Thread(target=lambda: full.put(full.get()), daemon=True),
        threading.Thread(target=lambda: full.put_many(full.get_many(1)), daemon=True),
    ]
    for t in waiters:
        t.start()
    deadline = time.monotonic() + CHILD_DEADLINE
    while full.stats().waits < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert full.stats().waits == 3

    def child() -> None:
        pools.use_in_child()
        fresh_pools_work()
        with pytest.raises(PoolTimeout):
            full.get(timeout=0)
        full.close()
        with pytest.raises(PoolClosed):
            full.get(timeout=0)

    fork_and_check(child)
    full.put(held)  # the parent's waiters are served, one after another
    for t in waiters:
        t.join(CHILD_DEADLINE)
    assert not any(t.is_alive() for t in waiters)
    s = full.stats()
    assert (s.waits, s.timeouts, s.in_use, s.idle, s.created) == (3, 0, 0, 1, 1)
    full.close()
    for pool in pools.all():
        pool.close()


def test_fork_child_does_not_lose_objects_to_a_batch_waiting_in_the_parent():
    """A thread of the parent waits in get_many (holding the batch gate, and
    queued as a waiter) when the process forks: in the child, that thread
    does not exist, so a put must go idle, not to its waiter, and a batch in
    the child must not wait for its gate. (Found on an older main, where the
    object was lost; main fixed it meanwhile: test_fork_waiters.py covers
    waiters in get, this the batch gate and the books.)"""
    pool = ObjectPool(Thing, max_size=1)
    held = pool.get()
    thread = threading.Thread(target=lambda: pool.put_many(pool.get_many(1)), daemon=True)
    thread.start()
    deadline = time.monotonic() + CHILD_DEADLINE
    while pool.stats().waits < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pool.stats().waits == 1

    def child() -> None:
        pool.put(held)  # no thread waits in this process: it must go idle
        s = pool.stats()
        assert (s.idle, s.in_use) == (1, 0), s
        assert balanced(pool), s
        assert pool.get_many(1, timeout=1) == [held]
        pool.put(held)
        assert balanced(pool)

    try:
        fork_and_check(child)
    finally:
        pool.put(held)
        thread.join(CHILD_DEADLINE)
        pool.close()
    assert not thread.is_alive()


# --- interpreter shutdown ---

SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import atexit, random, sys, threading, time
    from shardpool import BlockPool, BufferPool, ObjectPool, PoolClosed, TieredPool

    class Thing:
        pass

    mode = sys.argv[1]
    bounded = ObjectPool(Thing, max_size=2)
    held = [bounded.get(), bounded.get()]
    blocks = BlockPool()
    buffers = BufferPool()
    tiered = TieredPool(bytearray, [16, 256])
    objects = ObjectPool(Thing)
    # Left alive at exit: a block with a live view, a buffer exported and
    # left in a with-block, an unreleased block and buffer.
    kept_block = blocks.get(1000)
    view = memoryview(kept_block)
    exported = buffers.get()
    exported.write(b"data")
    export = memoryview(exported)
    exported.__exit__(None, None, None)
    loose = [blocks.get(50), buffers.get()]
    # A pool in a reference cycle, collected (or not) at shutdown.
    cycle = ObjectPool(list, checked=False)
    cycle.put([cycle])

    def until_closed(work):
        def run(*args):
            try:
                work(*args)
            except PoolClosed:  # close-at-exit: expected
                pass
        return run

    def wait_forever():
        bounded.get(timeout=None)

    def batch_forever():
        bounded.get_many(2, timeout=None)

    def zero_big_blocks():
        while True:
            with blocks.get(16 << 20, zeroed=True):
                pass

    def hammer(seed):
        rng = random.Random(seed)
        while True:
            tiered.put(tiered.get(rng.choice([1, 100, 1000])))
            with buffers.get() as buf:
                buf.write(b"x" * rng.randrange(10000))
            objects.put(objects.get())
            with blocks.get(rng.choice([10, 100000, 1 << 20])):
                pass

    targets = [wait_forever] * 3 + [batch_forever] * 2 + [zero_big_blocks] * 2
    threads = [threading.Thread(target=until_closed(t), daemon=True) for t in targets]
    threads += [
        threading.Thread(target=until_closed(hammer), args=(i,), daemon=True) for i in range(3)
    ]
    for t in threads:
        t.start()
    while bounded.stats().waits < 4:
        time.sleep(0.005)
    time.sleep(0.2)
    if mode == "close-at-exit":
        # Waiters are failed with PoolClosed while the interpreter shuts down.
        atexit.register(bounded.close)
        atexit.register(blocks.close)
    if mode == "sys-exit":
        sys.exit(0)
    print("main thread done", flush=True)
    """
)


@pytest.mark.parametrize("mode", ["fall-off-the-end", "sys-exit", "close-at-exit"])
def test_interpreter_exits_cleanly_with_pools_blocks_and_waiting_threads_alive(mode):
    for _ in range(2):  # the threads are at different points each time
        done = run_script(SHUTDOWN_SCRIPT, mode)
        assert done.returncode == 0, done.stderr
        assert not any(marker in done.stderr for marker in CRASH_MARKERS), done.stderr
        assert done.stderr == ""


# --- signals ---


@pytest.fixture
def full_pool():
    pool = ObjectPool(Thing, max_size=1)
    held = pool.get()
    yield pool, held
    pool.close()


def assert_no_phantom_waiter(pool: ObjectPool, held) -> None:
    """The abandoned wait left nothing queued to swallow the next put."""
    s = pool.stats()
    assert (s.in_use, s.idle, s.created) == (1, 0, 1)
    pool.put(held)
    assert len(pool) == 1
    assert pool.get(timeout=0) is held
    pool.put(held)


def wait_forever(pool: ObjectPool, call: str) -> None:
    if call == "get":
        pool.get(timeout=None)
    elif call == "borrow":
        with pool.borrow(timeout=None):
            pass
    else:
        pool.get_many(1, timeout=None)


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt during the test, as in a foreground
    interpreter. A process started in the background inherits SIGINT
    ignored, and then ``_thread.interrupt_main`` does nothing: the blocked
    get would wait forever."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set from the main thread")
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.usefixtures("sigint_raises")
@pytest.mark.parametrize("call", ["get", "borrow", "get_many"])
def test_keyboard_interrupt_interrupts_a_get_blocked_forever(full_pool, call):
    pool, held = full_pool
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            wait_forever(pool, call)
    finally:
        timer.cancel()
    assert time.monotonic() - start < CHILD_DEADLINE
    assert pool.stats().timeouts == 0
    assert_no_phantom_waiter(pool, held)


def test_signal_handler_that_raises_interrupts_get_many_blocked_forever(full_pool):
    pool, held = full_pool

    with alarm(0.2), pytest.raises(Interrupted):
        pool.get_many(1, timeout=None)
    assert_no_phantom_waiter(pool, held)


def test_signal_handler_that_returns_does_not_end_the_wait(full_pool):
    pool, held = full_pool
    seen: list[int] = []

    def put_after_two_handlers() -> None:
        # Once the get waits and two handlers ran (at most 10 s: then the
        # assertions below say which did not happen), not after a fixed
        # delay, which a loaded machine can outlast before the get starts.
        deadline = time.monotonic() + 10
        while (len(seen) < 2 or pool.stats().waits == 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        pool.put(held)

    putter = threading.Thread(target=put_after_two_handlers, daemon=True)
    try:
        # every 0.1 s
        with alarm(0.1, 0.1, lambda signum, frame: seen.append(signum)):
            putter.start()
            got = pool.get(timeout=None)
    finally:
        putter.join()
    assert got is held
    assert len(seen) >= 2, "the handlers ran while the get waited"
    s = pool.stats()
    assert (s.waits, s.timeouts, s.hits, s.in_use) == (1, 0, 1, 1)
    pool.put(got)


SIGINT_SCRIPT = textwrap.dedent(
    """
    import signal
    from shardpool import ObjectPool

    # Started from a background process, the child inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    pool = ObjectPool(object, max_size=1)
    held = pool.get()
    print("waiting", flush=True)
    try:
        pool.get(timeout=None)
    except KeyboardInterrupt:
        s = pool.stats()
        assert (s.in_use, s.idle, s.waits, s.timeouts) == (1, 0, 1, 0), s
        pool.put(held)
        assert pool.get(timeout=0) is held
        print("interrupted", flush=True)
    """
)


def test_sigint_interrupts_a_get_blocked_forever_in_another_process():
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "waiting\n"
        time.sleep(0.2)  # into the wait
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=CHILD_DEADLINE)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out == "interrupted\n"
