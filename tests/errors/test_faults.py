"""Fault injection under threads: factories, resets, validators, destroyers
(and, for TieredPool, size_of) that raise at random points, decided by a
seeded random per thread, while eight threads get, put, borrow, get_many
and wait on bounded pools. Afterwards the books must balance exactly:

- every counter matches what the hooks saw (``created`` = factory calls
  that returned, ``destroyed`` = destroy calls, ``reset_errors`` = resets
  that raised, ``invalid`` = validations that raised or said no);
- every exception a hook raised reached exactly one caller (or, from a
  destroy hook or a validator, the ``shardpool`` logger: a raising
  validator rejects the object), and no other exception did;
- ``created == destroyed + idle`` with nothing in use, ``hits + misses ==
  puts``;
- no object was ever held by two holders at once, handed out after it was
  destroyed, or reset/validated/destroyed while held;
- a bounded pool never had more than ``max_size`` objects alive (counted
  from inside the factory and destroy hooks), and no waiter was stranded:
  every thread finishes within a generous join timeout although some wait
  with ``timeout=None``.

The single-threaded error paths are tested in test_object_pool_errors.py
and test_tiered_pool.py; ``close()`` waking waiters in
test_object_pool_threads.py (test_close_wakes_every_waiter_with_pool_closed).
Here: the same under concurrency, with faults, and close racing with them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field

import pytest

from shardpool import BlockPool, BufferPool, ObjectPool, PoolClosed, PoolTimeout, TieredPool

from helpers import Boom, LogRecords, run_threads

THREADS = 8
OPS = 2000  # per thread
JOIN_TIMEOUT = 60.0  # generous: the machine is shared; a stranded waiter never returns
STRANDED = 30.0  # a bounded get that waits this long has lost a wake-up


# Switch threads as often as the interpreter can, to interleave more.
pytestmark = pytest.mark.usefixtures("fast_switching")


class Item:
    __slots__ = ("data", "dead", "holder", "size")

    def __init__(self, size: int = 0) -> None:
        self.holder: object = None
        self.data: list = []
        self.dead = False
        self.size = size

    def __len__(self) -> int:
        return self.size


@dataclass
class Faults:
    """Hooks that fail at random (per-thread seeded randoms), and an exact
    tally of what they did. Every failure is a fresh Boom, remembered, so
    that each can be traced to exactly one caller."""

    rates: dict[str, float]
    max_size: int | None = None
    seed: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: dict[str, int] = field(default_factory=dict)
    raised: dict[int, Boom] = field(default_factory=dict)
    rejected: int = 0
    alive: int = 0
    violations: list[str] = field(default_factory=list)
    local: threading.local = field(default_factory=threading.local)

    def rng(self) -> random.Random:
        if not hasattr(self.local, "rng"):
            self.local.rng = random.Random(f"{self.seed}-{threading.current_thread().name}")
        return self.local.rng

    def count(self, name: str) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def maybe_fail(self, hook: str) -> None:
        if self.rng().random() < self.rates.get(hook, 0.0):
            exc = Boom(hook)
            with self.lock:
                self.raised[id(exc)] = exc
                self.calls[f"{hook} raised"] = self.calls.get(f"{hook} raised", 0) + 1
            raise exc

    def hooks(self) -> dict:
        """The pool options that call the failing hooks."""
        return {"reset": self.reset, "validate": self.validate, "destroy": self.destroy}

    def violation(self, message: str) -> None:
        with self.lock:
            self.violations.append(message)

    def n(self, name: str) -> int:
        return self.calls.get(name, 0)

    # -- the hooks --

    def factory(self, size: int = 0) -> Item:
        self.count("factory")
        self.maybe_fail("factory")
        with self.lock:
            if self.max_size is not None and self.alive >= self.max_size:
                self.violations.append(f"factory called with {self.alive} objects alive")
            self.alive += 1
        self.count("created")
        return Item(size)

    def reset(self, obj: Item) -> None:
        if obj.holder is not None:
            self.violation("reset ran on an object still held")
        self.count("reset")
        self.maybe_fail("reset")
        obj.data.clear()

    def validate(self, obj: Item) -> bool:
        if obj.holder is not None or obj.dead:
            self.violation("validate ran on a held or destroyed object")
        self.count("validate")
        self.maybe_fail("validate")
        if self.rng().random() < self.rates.get("reject", 0.0):
            with self.lock:
                self.rejected += 1
            return False
        return True

    def destroy(self, obj: Item) -> None:
        if obj.dead:
            self.violation("an object was destroyed twice")
        if obj.holder is not None:
            self.violation("destroy ran on an object still held")
        obj.dead = True
        with self.lock:
            self.alive -= 1
        self.count("destroy")
        self.maybe_fail("destroy")

    def size_of(self, obj: Item) -> int:
        self.maybe_fail("size_of")
        return obj.size


class Holders:
    """Who holds what: an object handed to two holders at once is caught."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.lock = threading.Lock()
        self.out: set[int] = set()

    def take(self, obj: Item, me: object) -> None:
        if not isinstance(obj, Item):
            self.faults.violation(f"handed out {obj!r}")
            return
        if obj.dead:
            self.faults.violation("handed out a destroyed object")
        with self.lock:
            if id(obj) in self.out:
                self.faults.violation("one object handed to two holders")
            self.out.add(id(obj))
        if obj.holder is not None or obj.data:
            self.faults.violation("handed out an object that was held or not reset")
        obj.holder = me
        obj.data.append(me)

    def give(self, obj: Item, me: object) -> None:
        if obj.holder is not me or obj.data != [me]:
            self.faults.violation("a held object was changed by someone else")
        obj.holder = None
        with self.lock:
            self.out.discard(id(obj))


# --- ObjectPool ---

CONFIGS = {
    "unbounded-unchecked": {},
    "unbounded-checked": {"checked": True},
    "bounded-3": {"max_size": 3},
    "bounded-1-reset-on-get": {"max_size": 1, "reset_on": "get"},
    "bounded-2-small-idle": {"max_size": 2, "max_idle": 1},
}
RATES = {
    "rare": {"factory": 0.05, "reset": 0.05, "validate": 0.05, "destroy": 0.05, "reject": 0.05},
    "often": {"factory": 0.3, "reset": 0.2, "validate": 0.2, "destroy": 0.3, "reject": 0.2},
}


@pytest.mark.parametrize("rates", list(RATES), ids=list(RATES))
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_object_pool_with_failing_hooks_in_threads_keeps_exact_books(config, rates, pool_log):
    kwargs = CONFIGS[config]
    max_size = kwargs.get("max_size")
    faults = Faults(RATES[rates], max_size=max_size, seed=f"{config}-{rates}")
    pool = ObjectPool(faults.factory, shards=4, **faults.hooks(), **kwargs)
    holders = Holders(faults)
    caught: list[Boom] = []

    def worker(i: int) -> None:
        rng = random.Random(f"{config}-{rates}-{i}")
        me = object()
        held: list[Item] = []
        for _ in range(OPS):
            r = rng.random()
            try:
                if held and (r < 0.4 or len(held) == 2 or max_size is not None):
                    obj = held.pop()
                    holders.give(obj, me)
                    pool.put(obj)
                elif r < 0.6:
                    # Waiting forever is fine: a stranded waiter shows at the join.
                    timeout = None if rng.random() < 0.5 else STRANDED
                    obj = pool.get(timeout=timeout)
                    holders.take(obj, me)
                    held.append(obj)
                elif r < 0.8:
                    with pool.borrow(timeout=STRANDED) as obj:
                        holders.take(obj, me)
                        holders.give(obj, me)
                elif not held:
                    objs = pool.get_many(min(2, max_size or 2), timeout=STRANDED)
                    for obj in objs:
                        holders.take(obj, me)
                    for obj in objs:
                        holders.give(obj, me)
                    # One at a time: put_many reports only the first failure.
                    for obj in objs:
                        try:
                            pool.put(obj)
                        except Boom as e:
                            caught.append(e)
            except Boom as e:
                caught.append(e)
            except PoolTimeout:
                faults.violation("a bounded get waited 30 s: stranded waiter")
        for obj in held:
            holders.give(obj, me)
            try:
                pool.put(obj)
            except Boom as e:
                caught.append(e)

    errors = run_threads(worker, THREADS, JOIN_TIMEOUT)
    assert errors == []
    assert faults.violations == []

    s = pool.stats()
    assert s.in_use == 0
    assert s.hits + s.misses == s.puts
    assert s.created == faults.n("created")
    assert s.destroyed == faults.n("destroy")
    assert s.created == s.destroyed + s.idle
    assert s.idle == len(pool) <= pool.max_idle
    assert s.reset_errors == faults.n("reset raised")
    assert s.invalid == faults.n("validate raised") + faults.rejected
    assert s.timeouts == 0
    assert holders.out == set()
    # Every failure of a hook reached exactly one caller; destroy and
    # validate failures were logged; nothing else was raised.
    assert_reported_once(faults, caught, pool_log)
    if max_size is not None:
        assert faults.alive <= max_size
    # And the pool still works.
    faults.rates = {}
    pool.put(pool.get(timeout=STRANDED))
    pool.close()
    assert pool.stats().idle == 0


def assert_reported_once(faults: Faults, caught: list[Boom], pool_log: LogRecords) -> None:
    """Each failure of a hook reached one caller, or (destroy: ERROR,
    validate: WARNING) the shardpool logger, and nothing else was raised."""
    from_callers = {id(e) for e in caught}
    assert len(from_callers) == len(caught), "one failure reported twice"
    logged = {
        "destroy": pool_log.errors(logging.ERROR),
        "validate": pool_log.errors(logging.WARNING),
    }
    for hook, errors in logged.items():
        assert all(isinstance(e, Boom) and e.args == (hook,) for e in errors)
        assert len(errors) == faults.n(f"{hook} raised")
        assert {id(e) for e in errors} == {k for k, e in faults.raised.items() if e.args == (hook,)}
    expected = {k for k, e in faults.raised.items() if e.args not in (("destroy",), ("validate",))}
    assert from_callers == expected


def test_factory_failing_with_waiters_hands_the_slot_on():
    """max_size=1, every reset fails (the object is destroyed on put) and
    the factory fails half the time: each destroyed object and each failed
    creation must hand the one slot to the next waiter, or someone waits
    forever."""
    faults = Faults({"factory": 0.5, "reset": 1.0}, max_size=1, seed="slot")
    pool = ObjectPool(faults.factory, max_size=1, reset=faults.reset, destroy=faults.destroy)
    caught: list[Boom] = []
    got: list[Item] = []

    def worker(i: int) -> None:
        for _ in range(200):
            try:
                obj = pool.get(timeout=None)
            except Boom as e:
                caught.append(e)
                continue
            got.append(obj)
            time.sleep(0.0001)  # hold it, GIL released: the others queue up
            try:
                pool.put(obj)
            except Boom as e:
                caught.append(e)

    assert run_threads(worker, THREADS, JOIN_TIMEOUT) == []
    s = pool.stats()
    assert faults.n("factory raised") > 0
    assert {id(e) for e in caught} == set(faults.raised)
    assert len(got) == s.misses == s.created == s.destroyed == faults.n("created")
    assert s.reset_errors == s.puts == len(got)
    assert (s.hits, s.in_use, s.idle) == (0, 0, 0)
    assert faults.violations == []
    assert s.waits > 0, "the test did not make threads wait"


@pytest.mark.parametrize("holders_put_back", [True, False])
def test_close_wakes_faulty_waiters_of_every_kind_and_the_books_balance(holders_put_back, pool_log):
    """Waiters in get, borrow and get_many (timeout=None) on a full bounded
    pool whose destroy hook fails: close() fails them all with PoolClosed;
    objects returned afterwards are destroyed."""
    faults = Faults({"destroy": 0.5}, max_size=3, seed="close")
    pool = ObjectPool(faults.factory, max_size=3, destroy=faults.destroy)
    held = pool.get_many(3)
    started = threading.Barrier(7)
    results: list = []

    def waiter(i: int) -> None:
        started.wait()
        try:
            if i % 3 == 0:
                pool.get(timeout=None)
            elif i % 3 == 1:
                with pool.borrow(timeout=None):
                    pass
            else:
                pool.get_many(2, timeout=None)
            results.append("got")
        except PoolClosed:
            results.append("closed")

    threads = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    started.wait()
    deadline = time.monotonic() + JOIN_TIMEOUT
    while pool.stats().waits < 4 and time.monotonic() < deadline:
        time.sleep(0.005)  # the get_many waiters queue behind a gate, not all count
    pool.close()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "close() left a waiter stranded"
    assert results == ["closed"] * 6
    if holders_put_back:
        for obj in held:
            pool.put(obj)
        s = pool.stats()
        assert s.created == s.destroyed == 3
        assert (s.in_use, s.idle, len(pool)) == (0, 0, 0)
    s = pool.stats()
    assert s.created == s.destroyed + s.idle + s.in_use
    assert s.timeouts == 0
    assert len(pool_log.errors()) == faults.n("destroy raised")
    with pytest.raises(PoolClosed):
        pool.get(timeout=0)


# --- TieredPool ---


def test_tiered_pool_with_failing_hooks_in_threads_keeps_exact_books(pool_log):
    faults = Faults(
        {
            "factory": 0.1,
            "reset": 0.1,
            "validate": 0.1,
            "destroy": 0.1,
            "size_of": 0.1,
            "reject": 0.1,
        },
        seed="tiered",
    )
    pool = TieredPool(
        faults.factory,
        [(16, 4), (256, 4), (4096, 2)],
        size_of=faults.size_of,
        shards=3,
        **faults.hooks(),
    )
    holders = Holders(faults)
    caught: list[Boom] = []

    def worker(i: int) -> None:
        rng = random.Random(f"tiered-{i}")
        me = object()
        held: list[Item] = []

        def give_back() -> None:
            obj = held.pop()
            holders.give(obj, me)
            try:
                pool.put(obj)
            except Boom as e:
                caught.append(e)
                if e.args == ("size_of",):
                    # Refused before anything happened: still ours, retry later.
                    obj.data.clear()
                    holders.take(obj, me)
                    held.append(obj)

        for _ in range(OPS):
            if held and (rng.random() < 0.5 or len(held) == 3):
                give_back()
                continue
            size = rng.choice([0, 10, 16, 100, 256, 1000, 4096, 10_000])
            try:
                obj = pool.get(size)
            except Boom as e:
                caught.append(e)
                continue
            if len(obj) < size:
                faults.violation("tiered object too small")
            holders.take(obj, me)
            held.append(obj)
        while held:
            give_back()

    assert run_threads(worker, THREADS, JOIN_TIMEOUT) == []
    assert faults.violations == []
    s = pool.stats()
    assert s.in_use == 0
    assert s.hits + s.misses == s.puts
    assert s.created == faults.n("created")
    assert s.destroyed == faults.n("destroy")
    assert s.created == s.destroyed + s.idle == s.destroyed + len(pool)
    assert s.reset_errors == faults.n("reset raised")
    assert s.invalid == faults.n("validate raised") + faults.rejected
    tiers = pool.tier_stats()
    assert sum(t.idle for t in tiers.values()) == s.idle
    assert all(tiers[size].idle <= cap for size, cap in pool.tiers)
    assert_reported_once(faults, caught, pool_log)
    pool.close()


# --- BlockPool and BufferPool: no user hooks; faults are exceptions in the
# holder's code, impossible allocations, and misuse, all in threads ---


def test_block_pool_survives_failing_holders_in_threads():
    pool = BlockPool(
        classes=[(64, 8), (4096, 4), (65536, 2)], max_idle_bytes=1 << 18, zero="release"
    )
    errors: list[str] = []

    def worker(i: int) -> None:
        rng = random.Random(f"blocks-{i}")
        for _ in range(OPS):
            n = rng.choice([0, 10, 64, 1000, 4096, 60_000, 100_000])
            r = rng.random()
            try:
                if r < 0.05:
                    pool.get(2**62)  # cannot be allocated
                    errors.append("an impossible block was allocated")
                with pool.get(n) as block:
                    view = memoryview(block)
                    if view.tobytes() != bytes(n):
                        errors.append("a zeroing pool handed out dirty bytes")
                    view[:] = bytes([i + 1]) * n
                    if r < 0.3:
                        # Leaving with a view alive: the view returns it.
                        raise Boom("holder")
                    if r < 0.4:
                        with pytest.raises(BufferError):
                            block.release()  # a view is alive
                    view.release()
                    if bytes(block) != bytes([i + 1]) * n:
                        errors.append("a block changed under its holder")
                    if r < 0.5:
                        block.release()
                        with pytest.raises(ValueError, match="released already"):
                            block.release()
            except Boom:
                view = None  # the last view: the block goes back now
            except MemoryError:
                pass

    assert run_threads(worker, THREADS, JOIN_TIMEOUT) == []
    assert errors == []
    s = pool.stats()
    assert s.bytes_in_use == 0
    assert s.hits + s.misses == s.puts
    assert s.created == s.destroyed + len(pool)
    assert s.bytes_idle == sum(r.size * r.idle for r in s.classes) <= 1 << 18
    pool.close()
    assert pool.stats().bytes_idle == 0


def test_buffer_pool_survives_failing_holders_in_threads():
    pool = BufferPool(max_idle=4, max_capacity=1 << 16)
    errors: list[str] = []

    def worker(i: int) -> None:
        rng = random.Random(f"buffers-{i}")
        for _ in range(OPS):
            r = rng.random()
            try:
                with pool.get() as buf:
                    if len(buf):
                        errors.append("a buffer came out with a previous holder's bytes")
                    data = bytes([i + 1]) * rng.choice([0, 10, 5000, 100_000])
                    buf.write(data)
                    if r < 0.2:
                        buf.write("not bytes")  # TypeError, buffer unchanged
                    if r < 0.4:
                        raise Boom("holder")
                    view = memoryview(buf)
                    with pytest.raises(BufferError):
                        buf.write(b"x")  # frozen while exported
                    if bytes(view) != data:
                        errors.append("a buffer changed under its holder")
                    view.release()
            except (Boom, TypeError):
                pass

    assert run_threads(worker, THREADS, JOIN_TIMEOUT) == []
    assert errors == []
    s = pool.stats()
    assert s.in_use == 0
    assert s.hits + s.misses == s.puts
    assert s.created == s.destroyed + s.idle
    assert s.idle == len(pool) <= 4
    pool.close()
