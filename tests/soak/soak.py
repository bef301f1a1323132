"""Soak test: many threads hammer every kind of pool for a set time.

    python tests/soak/soak.py --duration 600 [--threads 16] [--seed 1]

Sixteen threads (by default) run a random mix of operations on an unbounded
checked ObjectPool, a small bounded ObjectPool (waiters, validate/reset
hooks), an ObjectPool whose hooks fail at random (factory, reset, validate,
destroy), a TieredPool, two BlockPools (zero on release; never zero), and a
BufferPool. Threads hold up to two objects at once across operations, keep
views of blocks and buffers past the end of their ``with`` blocks, and once
in a while close a pool while the others use it and put a new one in its
place.

What is checked:

- continuously: every object, block and buffer carries its holder's mark
  (a token in an object, a pattern written over a block or buffer) and is
  checked before it goes back, so two holders sharing one, a reset that did
  not happen, a destroyed object handed out, or bytes of a previous holder
  showing through a zeroing pool is a violation; so is any unexpected
  exception, and a bounded ``get`` that waits longer than 60 s (a stranded
  waiter);
- every ``--check-every`` seconds: the threads return everything and stop
  at a barrier, and the counters of every pool (and of every pool closed
  since the last check) must balance exactly: ``created == destroyed +
  idle`` with nothing in use, ``hits + misses`` equal to the objects the
  threads themselves counted as got and ``puts`` to those they counted as
  given back (not only to each other: a pool that counted an object twice
  on both sides would balance), the factory and destroy hooks called
  exactly ``created`` and ``destroyed`` times, idle within its caps, every
  injected failure accounted for.

It prints the operations done, the violations (must be 0) and the resident
memory after the warm-up and at the end (must stay flat), and exits with
status 1 on any violation or if the RSS grew by more than
``--max-rss-growth-mib``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shardpool import BlockPool, BufferPool, ObjectPool, PoolClosed, PoolTimeout, TieredPool

# A bounded get that waits this long has lost a wake-up (a stranded waiter).
STRANDED = 60.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident memory after a full collection, with free heap memory given
    back to the system first (glibc keeps freed memory in per-thread arenas,
    which would make the reading swing by tens of MiB with no leak)."""
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def load_libc():
    """glibc, for malloc_trim; None elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (present?)
        return libc
    except (OSError, AttributeError):
        return None


LIBC = load_libc()


class Injected(Exception):
    """A failure injected into a hook."""


class Violation(Exception):
    """An invariant did not hold."""


class Report:
    """Violations, and counters the threads add to (under the GIL)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.violations: list[str] = []
        self.ops = 0
        self.closed_seen = 0
        self.injected = 0
        self.destroy_failures = 0  # injected into destroy hooks, over all pools

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def violation(self, message: str) -> None:
        with self.lock:
            self.violations.append(message)
        if len(self.violations) <= 20:
            print(f"VIOLATION: {message}", file=sys.stderr, flush=True)


REPORT = Report()


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Violation(message)


# --- pooled objects and their hooks ---


class Tally:
    """What the hooks of one pool did (``hooked`` pools), and what the
    threads did with it, counted exactly: objects (blocks, buffers) got and
    given back."""

    def __init__(self, hooked: bool = True) -> None:
        self.lock = threading.Lock()
        self.hooked = hooked
        self.created = 0
        self.destroyed = 0
        self.gets = 0
        self.puts = 0
        self.injected = dict.fromkeys(("factory", "reset", "validate", "destroy"), 0)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def inject(self, hook: str) -> None:
        with self.lock:
            self.injected[hook] += 1
        if hook == "destroy":
            REPORT.add("destroy_failures")
        raise Injected(hook)


class Item:
    """A pooled object: its holder's token, and a flag set when destroyed."""

    __slots__ = ("data", "dead", "owner", "size")

    def __init__(self, size: int = 0) -> None:
        self.owner: object = None
        self.data: list = []
        self.dead = False
        self.size = size

    def __len__(self) -> int:
        return self.size


class Hooks:
    """Factory, reset, validate and destroy hooks that count their calls and
    fail at random with probability `fail` (a per-thread random, seeded)."""

    def __init__(self, tally: Tally, fail: float = 0.0, reject: float = 0.0) -> None:
        self.tally = tally
        self.fail = fail
        self.reject = reject
        self.local = threading.local()

    def rng(self) -> random.Random:
        rng = getattr(self.local, "rng", None)
        if rng is None:
            rng = self.local.rng = random.Random(threading.get_ident())
        return rng

    def failing(self) -> bool:
        return self.fail > 0 and self.rng().random() < self.fail

    def factory(self, size: int = 0) -> Item:
        if self.failing():
            self.tally.inject("factory")
        self.tally.add("created")
        return Item(size)

    def reset(self, obj: Item) -> None:
        if obj.owner is not None:
            raise Violation("reset ran on an object still held")
        if self.failing():
            self.tally.inject("reset")
        obj.data.clear()

    def validate(self, obj: Item) -> bool:
        if obj.owner is not None or obj.dead:
            raise Violation("validate ran on a held or destroyed object")
        if self.failing():
            self.tally.inject("validate")
        return not (self.reject and self.rng().random() < self.reject)

    def destroy(self, obj: Item) -> None:
        if obj.dead:
            raise Violation("an object was destroyed twice")
        if obj.owner is not None:
            raise Violation("destroy ran on an object still held")
        obj.dead = True
        self.tally.add("destroyed")
        if self.failing():
            self.tally.inject("destroy")


# --- pools that can be closed and replaced while in use ---


@dataclass
class Slot:
    """A pool in use, which any thread may close and replace; the old ones
    are kept until the next check, to balance their books too."""

    name: str
    make: Callable[[], tuple[object, Tally]]
    pool: object = None
    tally: Tally = field(default_factory=Tally)
    retired: list = field(default_factory=list)
    recycled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.pool, self.tally = self.make()

    def current(self) -> tuple[object, Tally]:
        """The pool in use and its tally, read together."""
        with self.lock:
            return self.pool, self.tally

    def recycle(self) -> None:
        with self.lock:
            old = (self.pool, self.tally)
            self.pool, self.tally = self.make()
            self.retired.append(old)
            self.recycled += 1
        old[0].close()


def object_pool(**kwargs) -> Callable[[], tuple[object, Tally]]:
    fail = kwargs.pop("fail", 0.0)
    reject = kwargs.pop("reject", 0.0)

    def make():
        tally = Tally()
        hooks = Hooks(tally, fail, reject)
        pool = ObjectPool(
            hooks.factory,
            reset=hooks.reset,
            validate=hooks.validate if (fail or reject) else None,
            destroy=hooks.destroy,
            **kwargs,
        )
        return pool, tally

    return make


def tiered_pool() -> tuple[object, Tally]:
    tally = Tally()
    hooks = Hooks(tally, reject=0.02)
    pool = TieredPool(
        hooks.factory,
        [(64, 32), (1024, 16), (16384, 8)],
        reset=hooks.reset,
        validate=hooks.validate,
        destroy=hooks.destroy,
    )
    return pool, tally


BOUNDED_MAX = 4


def make_slots() -> dict[str, Slot]:
    return {
        "objects": Slot("objects", object_pool(checked=True, max_idle=64)),
        "bounded": Slot("bounded", object_pool(max_size=BOUNDED_MAX, reject=0.05)),
        "faulty": Slot("faulty", object_pool(max_size=8, fail=0.03, reset_on="get")),
        "tiered": Slot("tiered", tiered_pool),
        "blocks": Slot(
            "blocks",
            lambda: (
                BlockPool(
                    classes=[(256, 64), (4096, 32), (65536, 8), (1 << 20, 4)],
                    max_idle_bytes=8 << 20,
                    zero="release",
                ),
                Tally(hooked=False),
            ),
        ),
        "raw_blocks": Slot(
            "raw_blocks", lambda: (BlockPool(max_block=1 << 18), Tally(hooked=False))
        ),
        "buffers": Slot("buffers", lambda: (BufferPool(max_idle=64), Tally(hooked=False))),
    }


# --- the threads ---


class _Borrowed:
    """``with pool.borrow() as obj:`` that counts, once the block is entered,
    one get and one put in the pool's tally (the put also when it raises)."""

    def __init__(self, pool, tally: Tally, timeout: float | None) -> None:
        self.borrow = pool.borrow(timeout=timeout)
        self.tally = tally

    def __enter__(self):
        obj = self.borrow.__enter__()
        self.tally.add("gets")
        return obj

    def __exit__(self, *exc):
        try:
            return self.borrow.__exit__(*exc)
        finally:
            self.tally.add("puts")


@dataclass
class Held:
    slot: str
    pool: object
    tally: Tally
    thing: object
    token: int
    views: list = field(default_factory=list)


class Worker(threading.Thread):
    def __init__(self, index: int, slots: dict[str, Slot], control: Control, seed: int) -> None:
        super().__init__(name=f"soak-{index}", daemon=True)
        self.index = index
        self.slots = slots
        self.control = control
        self.rng = random.Random(seed * 1_000_003 + index)
        self.holding: list[Held] = []
        self.deferred: list[Held] = []  # left `with` while a view was alive
        self.ops = 0
        self.next_token = index << 40
        self.ops_table = [
            (self.object_op, 4),
            (self.bounded_op, 3),
            (self.faulty_op, 2),
            (self.tiered_op, 2),
            (self.block_op, 3),
            (self.buffer_op, 2),
            (self.return_one, 2),
            (self.recycle_op, 1),
        ]
        self.choices = [op for op, weight in self.ops_table for _ in range(weight)]

    def token(self) -> int:
        self.next_token += 1
        return self.next_token

    def run(self) -> None:
        c = self.control
        while not c.stop.is_set():
            if c.pause.is_set():
                self.return_all()
                c.barrier.wait()  # everything returned
                c.barrier.wait()  # checked
                continue
            op = self.rng.choice(self.choices)
            try:
                op()
            except PoolClosed:
                REPORT.add("closed_seen")
            except Injected:
                REPORT.add("injected")
            except Violation as e:
                REPORT.violation(f"{self.name}: {e}")
            except Exception as e:
                REPORT.violation(f"{self.name}: {op.__name__}: {type(e).__name__}: {e}")
        self.return_all()
        REPORT.add("ops", self.ops)

    # -- holding things --

    def claim(self, obj: Item, token: int) -> None:
        expect(isinstance(obj, Item), f"pool handed out {obj!r}")
        expect(not obj.dead, "a destroyed object was handed out")
        expect(obj.owner is None, "an object was handed to two holders")
        obj.owner = token
        expect(obj.data == [], "an object came out not reset")
        obj.data.append(token)

    def unclaim(self, obj: Item, token: int) -> None:
        expect(obj.owner == token and obj.data == [token], "a held object was changed")
        obj.owner = None

    def keep_or_return(self, held: Held) -> None:
        if len(self.holding) < 2 and self.rng.random() < 0.3:
            self.holding.append(held)
        else:
            self.give_back(held)

    def give_back(self, h: Held) -> None:
        self.ops += 1
        if isinstance(h.thing, Item):
            self.unclaim(h.thing, h.token)
            try:
                h.pool.put(h.thing)
            except Injected:
                REPORT.add("injected")  # the reset failed: the object is destroyed
            finally:
                h.tally.add("puts")  # a put whose reset failed was made too
        elif h.slot in ("blocks", "raw_blocks"):
            check_pattern(h.thing, h.token)
            self.end_block(h)
        else:
            expect(h.thing.getvalue() == buffer_pattern(h.token), "a buffer's contents changed")
            self.end_buffer(h)

    def return_one(self) -> None:
        if self.holding:
            self.give_back(self.holding.pop(self.rng.randrange(len(self.holding))))
        if self.deferred:
            h = self.deferred.pop(0)
            check_view(h)
            h.views.clear()  # the last view: the block or buffer goes back now
            h.tally.add("puts")

    def return_all(self) -> None:
        while self.holding:
            self.give_back(self.holding.pop())
        while self.deferred:
            h = self.deferred.pop()
            check_view(h)
            h.views.clear()
            h.tally.add("puts")

    def holds_from(self, slot: str) -> bool:
        return any(h.slot == slot for h in self.holding)

    def holds_bounded(self) -> bool:
        """Whether this thread holds an object of a bounded pool."""
        return self.holds_from("bounded") or self.holds_from("faulty")

    # -- operations --

    def borrowed(self, pool, tally: Tally, timeout: float | None = None):
        """``pool.borrow()``, counted in ``tally`` once entered (a get, and
        the put on leaving, also when that put raises)."""
        return _Borrowed(pool, tally, timeout)

    def object_op(self) -> None:
        pool, tally = self.slots["objects"].current()
        token = self.token()
        if self.rng.random() < 0.5:
            self.ops += 1
            obj = pool.get()
            tally.add("gets")
            self.claim(obj, token)
            self.keep_or_return(Held("objects", pool, tally, obj, token))
        else:
            self.ops += 2
            with self.borrowed(pool, tally) as obj:
                self.claim(obj, token)
                self.unclaim(obj, token)

    def bounded_op(self) -> None:
        # Never wait for a bounded pool while holding an object of one: with
        # fewer objects than threads, holding one pool's object while
        # waiting for the other's (and others doing the reverse) is a
        # circular wait, a deadlock of the test's own making.
        if self.holds_bounded():
            return
        pool, tally = self.slots["bounded"].current()
        r = self.rng.random()
        start = time.monotonic()
        try:
            if r < 0.4:
                self.ops += 1
                obj = pool.get(timeout=STRANDED)
                tally.add("gets")
                self.claim(obj, token := self.token())
                self.keep_or_return(Held("bounded", pool, tally, obj, token))
            elif r < 0.8:
                self.ops += 2
                with self.borrowed(pool, tally, None if r < 0.6 else STRANDED) as obj:
                    self.claim(obj, token := self.token())
                    self.unclaim(obj, token)
            else:
                self.ops += 2
                objs = pool.get_many(2, timeout=STRANDED)
                tally.add("gets", len(objs))
                tokens = [self.token() for _ in objs]
                expect(objs[0] is not objs[1], "get_many handed out one object twice")
                for obj, token in zip(objs, tokens, strict=True):
                    self.claim(obj, token)
                for obj, token in zip(objs, tokens, strict=True):
                    self.unclaim(obj, token)
                try:
                    pool.put_many(objs)
                finally:
                    tally.add("puts", len(objs))
        except PoolTimeout:
            raise Violation(f"a bounded get waited {time.monotonic() - start:.0f} s") from None

    def faulty_op(self) -> None:
        if self.holds_bounded():  # see bounded_op
            return
        pool, tally = self.slots["faulty"].current()
        self.ops += 1
        try:
            obj = pool.get(timeout=STRANDED)
        except PoolTimeout:
            raise Violation("a bounded get on the faulty pool was stranded") from None
        tally.add("gets")
        self.claim(obj, token := self.token())
        self.keep_or_return(Held("faulty", pool, tally, obj, token))

    def tiered_op(self) -> None:
        pool, tally = self.slots["tiered"].current()
        size = self.rng.choice([10, 64, 500, 1024, 5000, 16384, 100_000])
        self.ops += 1
        obj = pool.get(size)
        tally.add("gets")
        expect(len(obj) >= size, "a tiered object too small for the request")
        self.claim(obj, token := self.token())
        self.keep_or_return(Held("tiered", pool, tally, obj, token))

    def block_op(self) -> None:
        name = self.rng.choice(["blocks", "raw_blocks"])
        pool, tally = self.slots[name].current()
        n = self.rng.choice([0, 1, 100, 256, 3000, 4096, 50_000, 70_000, 1 << 20, 2 << 20])
        zeroed = self.rng.random() < 0.2
        self.ops += 1
        block = pool.get(n, zeroed=zeroed)
        tally.add("gets")
        expect(len(block) == n and block.capacity >= n, "a block of the wrong size")
        if name == "blocks" or zeroed:
            # Zeroing pool (or zeroed=True): never a previous holder's bytes.
            expect(not np.frombuffer(block, np.uint8).any(), "a block came out not zeroed")
        token = self.token()
        write_pattern(block, token)
        held = Held(name, pool, tally, block, token)
        r = self.rng.random()
        if r < 0.15 and n:
            # Keep a view past the with-block: the last view returns the block.
            held.views.append(np.frombuffer(block, np.uint8))
            check_pattern(block, token)
            self.ops += 1
            block.__exit__(None, None, None)
            expect(block.released, "a block left with views alive is not released")
            self.deferred.append(held)
        else:
            self.keep_or_return(held)

    def end_block(self, h: Held) -> None:
        if self.rng.random() < 0.5:
            h.thing.release()
        else:
            with h.thing:
                pass
        h.tally.add("puts")
        expect(h.thing.released, "a block was not released")

    def buffer_op(self) -> None:
        pool, tally = self.slots["buffers"].current()
        self.ops += 1
        buf = pool.get()
        tally.add("gets")
        expect(len(buf) == 0, "a buffer came out not empty")
        token = self.token()
        data = buffer_pattern(token)
        for i in range(0, len(data), 1000):
            buf.write(data[i : i + 1000])
        held = Held("buffers", pool, tally, buf, token)
        if self.rng.random() < 0.15:
            held.views.append(memoryview(buf))
            self.ops += 1
            buf.__exit__(None, None, None)
            self.deferred.append(held)
        else:
            self.keep_or_return(held)

    def end_buffer(self, h: Held) -> None:
        if self.rng.random() < 0.5:
            h.thing.release()
        else:
            with h.thing:
                pass
        h.tally.add("puts")

    def recycle_op(self) -> None:
        # Rarely: close a pool while the others use it, and replace it.
        if self.rng.random() < 0.0005:
            self.ops += 1
            self.slots[self.rng.choice(list(self.slots))].recycle()


def write_pattern(block, token: int) -> None:
    view = np.frombuffer(block, np.uint8)
    view[:] = token % 251 + 1
    if len(view) >= 8:
        view[:8] = np.frombuffer(token.to_bytes(8, "little"), np.uint8)


def check_pattern(block, token: int) -> None:
    view = np.frombuffer(block, np.uint8)
    expected = np.full(len(view), token % 251 + 1, np.uint8)
    if len(view) >= 8:
        expected[:8] = np.frombuffer(token.to_bytes(8, "little"), np.uint8)
    expect(np.array_equal(view, expected), "a block's bytes changed under its holder")


def check_view(h: Held) -> None:
    if h.slot == "buffers":
        expect(bytes(h.views[0]) == buffer_pattern(h.token), "a kept buffer view changed")
    else:
        check_pattern(h.views[0], h.token)


def buffer_pattern(token: int) -> bytes:
    return token.to_bytes(8, "little") * (1 + token % 700)


# --- checks at a barrier ---


class Control:
    def __init__(self, threads: int) -> None:
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.barrier = threading.Barrier(threads + 1)


def check_pool(name: str, pool, tally: Tally) -> None:
    """Everything is back: the books must balance exactly, and the counters
    must count what the threads did."""
    s = pool.stats()
    expect(
        s.hits + s.misses == tally.gets,
        f"{name}: gets {s.hits + s.misses} counted, {tally.gets} made by the threads",
    )
    expect(s.puts == tally.puts, f"{name}: puts {s.puts} counted, {tally.puts} made")
    if isinstance(pool, BlockPool):
        expect(s.bytes_in_use == 0, f"{name}: bytes_in_use {s.bytes_in_use} with nothing out")
        expect(s.in_use == 0 and s.idle == len(pool), f"{name}: in_use/idle off ({s!r})")
        expect(s.hits + s.misses == s.puts, f"{name}: gets {s.hits + s.misses} != puts {s.puts}")
        expect(s.created == s.destroyed + len(pool), f"{name}: created != destroyed + idle")
        expect(s.bytes_idle <= s.max_idle_bytes, f"{name}: idle bytes above the cap")
        rows = sum(r.size * r.idle for r in s.classes)
        expect(rows == s.bytes_idle, f"{name}: class rows do not add up to bytes_idle")
        expect(all(r.in_use == 0 for r in s.classes), f"{name}: a class has blocks in use")
        return
    expect(s.in_use == 0, f"{name}: in_use {s.in_use} with nothing out")
    expect(s.hits + s.misses == s.puts, f"{name}: gets {s.hits + s.misses} != puts {s.puts}")
    expect(s.created == s.destroyed + s.idle, f"{name}: created != destroyed + idle ({s!r})")
    expect(s.idle == len(pool), f"{name}: len() != idle")
    expect(s.timeouts <= s.waits, f"{name}: more timeouts than waits")
    if pool.closed:
        expect(s.idle == 0, f"{name}: a closed pool keeps idle objects")
    if isinstance(pool, ObjectPool):
        expect(s.idle <= pool.max_idle, f"{name}: idle above max_idle")
    if isinstance(pool, TieredPool):
        for size, t in pool.tier_stats().items():
            expect(t.idle <= dict(pool.tiers)[size], f"{name}: tier {size} above its cap")
    if tally.hooked:
        expect(s.created == tally.created, f"{name}: created {s.created} != factory calls")
        expect(s.destroyed == tally.destroyed, f"{name}: destroyed {s.destroyed} != destroys")
        expect(
            s.reset_errors == tally.injected["reset"],
            f"{name}: reset_errors {s.reset_errors} != reset failures",
        )
        if isinstance(pool, ObjectPool) and pool.max_size is not None:
            alive = tally.created - tally.destroyed
            expect(alive <= pool.max_size, f"{name}: {alive} objects alive > max_size")


class LoggedFailures(logging.Handler):
    """Counts what the ``shardpool`` logger records: injected destroy
    failures (ERROR) and injected validator failures (WARNING: a raising
    validator rejects the object). Anything else is a violation. Counts,
    not records: a record keeps its traceback's frames alive."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.destroy_failures = 0

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        injected = isinstance(exc, Injected)
        if injected and record.levelno == logging.ERROR and exc.args == ("destroy",):
            self.destroy_failures += 1
        elif not (injected and record.levelno == logging.WARNING and exc.args == ("validate",)):
            REPORT.violation(f"unexpected log record: {record.getMessage()} ({exc!r})")


def check_all(slots: dict[str, Slot], unraisable: list, logged: LoggedFailures) -> int:
    checks = 0
    for slot in slots.values():
        with slot.lock:
            pools = [*slot.retired, (slot.pool, slot.tally)]
            slot.retired.clear()
        for pool, tally in pools:
            try:
                check_pool(slot.name, pool, tally)
            except Violation as e:
                REPORT.violation(f"check: {e}")
            checks += 1
    # Every failing destroy hook was logged (the shardpool logger), and
    # nothing reached sys.unraisablehook.
    for u in unraisable:
        REPORT.violation(f"unexpected unraisable exception: {u.exc_value!r}")
    unraisable.clear()
    if logged.destroy_failures != REPORT.destroy_failures:
        REPORT.violation(
            f"{REPORT.destroy_failures} destroy hooks failed, {logged.destroy_failures} logged"
        )
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, required=True, help="seconds to run")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--check-every", type=float, default=10.0, help="seconds between checks")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds before the first RSS reading"
    )
    parser.add_argument("--max-rss-growth-mib", type=float, default=32.0)
    parser.add_argument("--switch-interval", type=float, default=1e-4)
    parser.add_argument("--progress", action="store_true", help="print a line at every check")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, args.duration / 5)

    sys.setswitchinterval(args.switch_interval)
    unraisable: list = []
    sys.unraisablehook = unraisable.append
    logged = LoggedFailures()
    logging.getLogger("shardpool").addHandler(logged)
    threading.excepthook = lambda a: REPORT.violation(f"thread died: {a.exc_value!r}")

    slots = make_slots()
    control = Control(args.threads)
    workers = [Worker(i, slots, control, args.seed) for i in range(args.threads)]
    print(
        f"soak: {args.threads} threads, {args.duration:.0f} s, seed {args.seed}, "
        f"checks every {args.check_every:.0f} s",
        flush=True,
    )
    start = time.monotonic()
    for w in workers:
        w.start()

    def quiesce() -> bool:
        control.pause.set()
        try:
            control.barrier.wait(timeout=STRANDED * 2)
        except threading.BrokenBarrierError:
            REPORT.violation("threads did not reach the check (stranded or deadlocked)")
            return False
        control.pause.clear()
        return True

    checks = 0
    rss_start = None
    rss_samples: list[int] = []
    deadline = start + args.duration
    next_check = start + min(args.check_every, warmup or args.check_every)
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(max(0.0, min(next_check, deadline) - now))
        if time.monotonic() < next_check:
            continue
        if not quiesce():
            break
        checks += check_all(slots, unraisable, logged)
        rss = rss_bytes()
        rss_samples.append(rss)
        if rss_start is None and time.monotonic() - start >= warmup:
            rss_start = rss
        if args.progress:
            print(
                f"  {time.monotonic() - start:6.0f} s: {sum(w.ops for w in workers):>12,} ops, "
                f"RSS {rss / (1 << 20):6.1f} MiB, violations {len(REPORT.violations)}",
                flush=True,
            )
        control.barrier.wait()
        next_check = time.monotonic() + args.check_every

    # The last reading is taken as every other one: at a check, with the
    # threads alive and everything returned. Once the threads have exited,
    # glibc's per-thread arenas keep much of what they freed resident, even
    # after malloc_trim: a reading then was 30 to 170 MiB higher on a
    # free-threaded build, the pools holding the same (docs/free-threading.md).
    rss_end = None
    if not control.pause.is_set() and quiesce():
        checks += check_all(slots, unraisable, logged)
        rss_end = rss_bytes()  # the pools still hold their idle objects, as at every check
        rss_samples.append(rss_end)
        control.stop.set()
        control.barrier.wait()  # the threads go on, see `stop` and end
    control.stop.set()
    if control.pause.is_set():
        control.barrier.abort()
    for w in workers:
        w.join(timeout=STRANDED * 2)
    alive = [w.name for w in workers if w.is_alive()]
    if alive:
        REPORT.violation(f"threads still running at the end: {alive}")
    elapsed = time.monotonic() - start
    checks += check_all(slots, unraisable, logged)
    if rss_end is None:  # the threads did not reach the last check
        rss_end = rss_bytes()
        rss_samples.append(rss_end)
    for slot in slots.values():
        slot.pool.close()
    checks += check_all(slots, unraisable, logged)
    rss_closed = rss_bytes()
    if rss_start is None:
        rss_start = rss_samples[0]
    growth = rss_end - rss_start
    mib = 1 << 20
    recycled = sum(slot.recycled for slot in slots.values())
    print(f"duration: {elapsed:.1f} s, threads: {args.threads}, seed: {args.seed}")
    print(f"operations: {REPORT.ops:,} ({REPORT.ops / elapsed:,.0f}/s)")
    print(
        f"checks: {checks} pool balances at {len(rss_samples)} barriers; "
        f"pools closed and replaced under load: {recycled}; "
        f"PoolClosed seen by threads: {REPORT.closed_seen}; "
        f"injected hook failures seen by threads: {REPORT.injected}, "
        f"in destroy hooks (logged): {REPORT.destroy_failures}"
    )
    print(f"invariant violations: {len(REPORT.violations)}")
    print(
        f"RSS: start {rss_start / mib:.1f} MiB (after {warmup:.0f} s warm-up), "
        f"end {rss_end / mib:.1f} MiB, growth {growth / mib:+.1f} MiB "
        f"(limit {args.max_rss_growth_mib:.0f} MiB); "
        f"min {min(rss_samples) / mib:.1f}, max {max(rss_samples) / mib:.1f} MiB "
        f"over {len(rss_samples)} readings; {rss_closed / mib:.1f} MiB once all pools closed"
    )
    ok = not REPORT.violations and growth <= args.max_rss_growth_mib * mib
    print(f"result: {'PASS' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
