"""Helpers shared by the Python tests, imported as ``from helpers import ...``
(``tests/`` is on ``sys.path`` through its ``conftest.py``). Fixtures live in
``conftest.py``; plain functions, classes and constants live here.

No third-party import at the top here: scripts/free-threaded leaves out a test file whose
own imports name a package that is not installed, which it could not see
through this module."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib.util
import inspect
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from shardpool import Block, BlockPool, Borrow, Buffer, BufferPool

ROOT = Path(__file__).resolve().parent.parent
"""The repository's top folder."""

TESTS = ROOT / "tests"

FREE_THREADED_BUILD = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
"""A free-threaded interpreter (3.13t, 3.14t), with the GIL on or off: its
garbage collector is Python/gc_free_threading.c, which has no young
generation to fill. It counts container objects allocated minus those freed
(so objects freed by reference counting never start a collection), and past
the threshold still waits until the process's memory grew 10% since the last
collection, unless the second threshold is 0 (``gc.set_threshold(n, 0)``).
Each collection stops the world and visits the whole heap."""

# The fields of an object pool's ``stats()`` (ObjectPool, TieredPool and its
# tiers, BufferPool), and of a block pool's.
_COMMON_COUNTERS = ("created", "destroyed", "hits", "misses", "puts", "dropped", "expired")
OBJECT_COUNTERS = (*_COMMON_COUNTERS, "reset_errors", "invalid", "waits", "timeouts", "cancelled")
OBJECT_GAUGES = ("in_use", "waiting", "idle", "max_in_use")
# discarded: object and tiered pools only (a buffer pool reports 0);
# rejected: bounded object pools only (max_waiting; others report 0).
STAT_FIELDS = (*OBJECT_COUNTERS, "rejected", "discarded", *OBJECT_GAUGES)
BLOCK_COUNTERS = (*_COMMON_COUNTERS, "oversize")


@contextlib.contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """Threads switch every `seconds` meanwhile (1e-6: as often as the
    interpreter can, to interleave more; 100: hardly ever)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def run_threads(target: Any, n: int, timeout: float = 60.0) -> list[BaseException]:
    """Runs ``target(index)`` in `n` threads (index 0 to n - 1), started
    together, and returns what they raised. A thread still running after
    `timeout` seconds (for all of them: generous, the machine is shared)
    fails the test: a stranded waiter, or a deadlock."""
    errors: list[BaseException] = []
    # All start together: on a loaded machine (or without the GIL) a thread
    # may otherwise finish before the next one starts, and a test meant to
    # make threads meet (wait, race) would run them one after another.
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait(timeout)
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), name=f"t{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads never finished (stranded waiters or a deadlock): {stuck}"
    return errors


class Interrupted(Exception):
    """Raised by the SIGALRM handler of ``alarm()``."""


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted


@contextlib.contextmanager
def alarm(seconds: float, interval: float = 0.0, handler: Any = _interrupt) -> Iterator[None]:
    """SIGALRM after `seconds` (then every `interval`) meanwhile, handled by
    `handler` (by default: raise ``Interrupted``, as a Ctrl-C would raise
    KeyboardInterrupt); the timer is off and the old handler back after."""
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds, interval)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_script(script: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -c script *args`` in a fresh interpreter, its output
    captured; a hang fails the calling test (``AssertionError``) instead of
    the run. For scenarios that could crash or hang the interpreter. A hung
    interpreter is first sent ``SIGABRT`` (where there is one), so that
    its ``faulthandler`` writes every thread's Python stack into the
    error's ``stderr``: a rare hang then says where it was."""
    command = [sys.executable, "-X", "faulthandler", "-c", script, *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            if os.name == "posix":
                process.send_signal(signal.SIGABRT)
            try:
                stdout, stderr = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            raise AssertionError(
                f"the script hung (over {timeout} s); its output: {stdout!r}; "
                f"its stderr (the threads' stacks, if it could write them):\n{stderr}"
            ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


STATE_CLASSES = ("_ObjectPoolState", "_TieredPoolState")
"""The hidden classes that hold an ObjectPool's or a TieredPool's fields
(src/python/borrow.rs): the pool object and each of its Borrows hold one."""


def pool_state(pool: object) -> object:
    """The state of `pool` (an ObjectPool or a TieredPool), as the pool
    object shows it to the collector. Keep it in a container, not a
    variable, where ``state_references`` is to count it."""
    return next(r for r in gc.get_referents(pool) if type(r).__name__ in STATE_CLASSES)


def spare_count(state: object) -> int:
    """How many spare Borrows the pool whose state is `state` keeps in its
    slots: a spare is untracked by the collector there, and the state shows
    on its behalf, once for each, the spare's reference to the state."""
    return sum(r is state for r in gc.get_referents(state))


def state_references(box: list[object]) -> tuple[int, int]:
    """``(shown, counted)`` of the state in ``box[0]``: how many references
    to it the collector is shown (by the tracked objects that refer to it,
    the state itself on behalf of its spares included) and how many it has.
    The design shows each reference by exactly one holder, so the two are
    equal when only collector-tracked objects hold it (the box is one:
    the caller must hold the state in no variable)."""
    holders = gc.get_referrers(box[0])
    shown = sum(sum(r is box[0] for r in gc.get_referents(h)) for h in holders)
    # `holders` refers to the state too when the state is its own referrer.
    in_holders = sum(h is box[0] for h in holders)
    return shown, sys.getrefcount(box[0]) - 1 - in_holders


def is_borrow(obj: object) -> bool:
    """`obj` is a ``Borrow`` (a plain ``isinstance`` narrows to a Borrow of
    an unknown type, which pyright's strict mode refuses to pass on)."""
    return isinstance(obj, Borrow)


def borrow_holding(obj: object) -> int:
    """The id of the Borrow whose block holds `obj` (inside the block a
    Borrow is tracked and shows the object it holds). Only the id: a
    reference kept past the block would keep that Borrow from being a spare."""
    (borrow,) = [id(r) for r in gc.get_referrers(obj) if is_borrow(r)]
    return borrow


def listed_borrows() -> int:
    """How many Borrows ``gc.get_objects()`` lists (never a spare: spares
    are untracked while their pool keeps them)."""
    return sum(is_borrow(o) for o in gc.get_objects())


def fork() -> int:
    """``os.fork()``, without the DeprecationWarning Python 3.12+ gives when
    other threads run: that forking then may deadlock the child is what the
    fork tests test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


class LogRecords(logging.Handler):
    """What the ``shardpool`` logger records, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == level]

    def errors(self, level: int = logging.ERROR) -> list[BaseException]:
        """The exceptions logged (``exc_info``) at ``level``."""
        return [r.exc_info[1] for r in self.at(level) if r.exc_info and r.exc_info[1]]


@contextlib.contextmanager
def shardpool_log() -> Iterator[LogRecords]:
    """Collects every record of the ``shardpool`` logger while it runs."""
    logger = logging.getLogger("shardpool")
    handler, level = LogRecords(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class Boom(Exception):
    """Raised by the hooks under test."""


def call_then_let_interrupts_in(f: Callable[..., object], *args: object) -> None:
    """``f(*args)``, then a few bytecodes: where the main thread looks for a
    pending interrupt (Ctrl-C) at the latest."""
    f(*args)
    for _ in range(100):
        pass


class Thing:
    """A plain pooled object without a reset method; holders write to ``data``."""

    def __init__(self) -> None:
        self.data: list = []


class HolderCheck:
    """Who holds which pooled object, for threaded tests: ``claim`` when a
    thread gets one, ``release`` before it gives it back, and ``destroyed``
    as (or inside) the pool's ``destroy`` hook. Records a problem for an
    object with two holders, one handed out after it was destroyed, or one
    destroyed while held. ``make`` is a factory that keeps every object
    alive, so that no ``id`` is reused during the test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders: dict[int, int] = {}
        self.gone: set[int] = set()
        self.alive: list[Thing] = []
        self.problems: list[str] = []

    def make(self) -> Thing:
        obj = Thing()
        with self.lock:
            self.alive.append(obj)
        return obj

    def claim(self, obj: object, me: int) -> None:
        with self.lock:
            if id(obj) in self.gone:
                self.problems.append("a destroyed object handed out")
            if self.holders.setdefault(id(obj), me) != me:
                self.problems.append("two holders")

    def release(self, obj: object) -> None:
        with self.lock:
            del self.holders[id(obj)]

    def destroyed(self, obj: object) -> None:
        with self.lock:
            if id(obj) in self.holders:
                self.problems.append("destroyed while held")
            self.gone.add(id(obj))


class Recorder:
    """A hook (destroy, validate, reset) that remembers its calls and returns
    a fixed result."""

    def __init__(self, result: Any = None) -> None:
        self.calls: list = []
        self.result = result

    def __call__(self, obj: Any) -> Any:
        self.calls.append(obj)
        return self.result


def balanced(pool: Any) -> bool:
    """The books of an object pool balance: every object made is idle, in
    use or destroyed."""
    s = pool.stats()
    return s.created == s.destroyed + s.idle + s.in_use


def run(coro: Any) -> Any:
    """Runs `coro` to its end in a new event loop."""
    return asyncio.run(coro)


async def until(predicate: Any, limit: float = 5.0) -> None:
    """Yields to the loop until `predicate()` holds (fails after `limit` s)."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.001)


async def queued_aget(pool: Any, **aget: Any) -> tuple[Any, asyncio.Task[Any]]:
    """A bounded pool's object taken, and a task whose ``aget(**aget)`` waits
    in its queue (the object is not given back)."""
    held = await pool.aget()
    task = asyncio.create_task(pool.aget(**aget))
    await until(lambda: pool.stats().waiting == 1)
    return held, task


def refusal(
    pool: Any,
    call: Callable[[], object],
    exc: type[BaseException] | tuple[type[BaseException], ...] = (TypeError, ValueError),
) -> str:
    """The message of the `exc` that `call()` must raise, after checking that
    the refused call left ``pool.stats()`` as they were."""
    stats = pool.stats()
    try:
        call()
    except exc as e:
        assert pool.stats() == stats
        return str(e)
    raise AssertionError(f"{call} raised nothing")


def snapshot(pool: Any) -> tuple:
    """Everything a pool shows of its state, to compare before and after a
    call that must change nothing: ``stats()`` (as a dict, with the class rows
    of a block pool), ``len()``, and the tier rows of a TieredPool and the
    calibrated capacities of a BufferPool."""
    state: list = [pool.stats().as_dict(), len(pool)]
    if hasattr(pool, "tier_stats"):
        state.append({size: s.as_dict() for size, s in pool.tier_stats().items()})
    if hasattr(pool, "typical_capacity"):
        state += [pool.typical_capacity, pool.large_capacity]
    return tuple(state)


def address(buffer: Any) -> int:
    """Where the memory of a buffer (a Block, a Buffer) starts: its identity.
    An export, though a brief one: a block's memory then goes back only when
    its ``Block`` object is collected, so tests ``del`` it after its release."""
    view = memoryview(buffer)
    if view.readonly:
        import numpy as np  # ctypes takes the address of writable memory only

        probe: Any = np.frombuffer(view, np.uint8)
        start = probe.ctypes.data
    else:
        probe = (ctypes.c_char * 0).from_buffer(view)
        start = ctypes.addressof(probe)
    del probe
    view.release()  # raises if the address probe left an export behind
    return start


def load_module(name: str, path: Path) -> ModuleType:
    """The module at ``path``, imported as ``name`` (a script or example that is
    not on ``sys.path``), and registered in ``sys.modules``, where dataclasses
    look their module up."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def assert_hand_written_method(cls: type, name: str, text: str, shown: str, doc: str) -> None:
    """``cls.name`` is one of the hand-written method-table entries
    (src/python/raw_method.rs) and looks as PyO3's method did: a method
    descriptor with its name, ``__text_signature__`` ``text``, signature
    ``shown`` and a docstring starting with ``doc``."""
    method = getattr(cls, name)
    assert type(method).__name__ == "method_descriptor"
    assert method.__name__ == name
    assert method.__qualname__ == f"{cls.__name__}.{name}"
    assert method.__text_signature__ == text
    assert str(inspect.signature(method)) == shown
    assert method.__doc__.startswith(doc)
    assert "--" not in method.__doc__.splitlines()[0]


class Kind:
    """One type of object that its pool reuses after its release
    (tests/block_pool/test_object_reuse*.py): its class, how to make its
    pool and get one."""

    def __init__(self, name: str, cls: type, pool: Callable[..., Any], get: Callable[[Any], Any]):
        self.name, self.cls, self.pool, self.get = name, cls, pool, get

    def __repr__(self) -> str:
        return self.name


KINDS = [
    Kind("block", Block, BlockPool, lambda p: p.get(64)),
    Kind("buffer", Buffer, BufferPool, lambda p: p.get()),
]
