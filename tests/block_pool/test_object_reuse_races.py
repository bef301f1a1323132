"""Adversarial races on the reuse of released ``Block`` and ``Buffer``
objects (``src/python/reuse.rs``), written for free-threaded builds (they run
on GIL builds too, where the GIL's switches interleave them less).

Each test lets other threads reach released objects the ways Python code
can without the pool: through ``gc.get_objects()`` (which lists the spares:
``Block`` and ``Buffer`` are GC types), through a list another thread reads,
through a weak reference, or by passing objects between threads. The rule
checked throughout: an object a thread holds, once seen released, stays
released while that thread holds it (a reuse would make it live again under
the holder), a weak reference never revives an object as a live one, and an
object handed out by ``get`` is held by no one else."""

from __future__ import annotations

import gc
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from shardpool import Block

from helpers import KINDS, Kind, run_threads, switch_interval


@pytest.fixture(params=KINDS, ids=repr)
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param


def stamp(kind: Kind, obj: Any, tag: int) -> None:
    """Checks that `obj` was just handed out live; a buffer gets `tag`
    written and read back."""
    assert not obj.released, "get handed out a released object"
    data = bytes([tag]) * 16
    if kind.cls is Block:
        # No export (memoryview) here: an exported block is never reused,
        # and these tests want reuse to happen.
        assert len(obj) == 64
    else:
        obj.write(data)
        assert obj.getvalue() == data


class Owners:
    """Which thread holds each object handed out by a get (by identity, the
    object kept alive meanwhile so its id is not recycled)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[int, tuple[int, Any]] = {}
        self.found: dict[int, Any] = {}

    def got(self, who: int, obj: Any) -> None:
        with self.lock:
            assert id(obj) not in self.found, (
                "get handed out a released object another thread holds"
            )
            prev = self.held.setdefault(id(obj), (who, obj))
            assert prev[0] == who, f"one object handed to threads {prev[0]} and {who}"

    def letting_go(self, who: int, obj: Any) -> None:
        with self.lock:
            assert self.held.pop(id(obj))[0] == who


def worker(kind: Kind, pool: Any, owners: Owners, who: int, rounds: int) -> Callable[[], None]:
    def work() -> None:
        for n in range(rounds):
            if n % 3 == 0:
                with kind.get(pool) as obj:
                    owners.got(who, obj)
                    stamp(kind, obj, who)
                    owners.letting_go(who, obj)
            else:
                obj = kind.get(pool)
                owners.got(who, obj)
                stamp(kind, obj, who)
                owners.letting_go(who, obj)
                obj.release()
            del obj

    return work


def reuse_happens(kind: Kind) -> bool:
    """Whether this build reuses a released object (else the races below
    only check the ordinary path): the released object stays alive, kept by
    the pool, and the next get hands it out again."""
    pool = kind.pool()
    kind.get(pool).release()
    gc.collect()
    spares = [id(o) for o in gc.get_objects() if type(o) is kind.cls and o.released]
    again = kind.get(pool)
    reused = spares == [id(again)]
    again.release()
    return reused


SCANS = 40
"""How many times the scanner reads the whole heap while the workers run."""

HOLD = 2000
"""How many times a holder reads `released` of what it holds (long enough
for the other threads to get and release many times meanwhile)."""


def test_reuse_happens_here(kind: Kind) -> None:
    """The races below are about reuse: make sure there is some."""
    assert reuse_happens(kind)


def test_spares_reached_through_gc_get_objects_stay_released(kind: Kind) -> None:
    """Workers get, stamp and release; a scanner thread takes every released
    object of the class from ``gc.get_objects()`` (spares included), holds
    them, makes weak references to some, and checks that what it holds stays
    released and that no weak reference ever revives a live object. No get
    hands out an object the scanner holds."""
    pool = kind.pool()
    owners = Owners()
    stop = threading.Event()
    scans = [0]
    refs: list[weakref.ref[Any]] = []

    def scanner() -> None:
        while scans[0] < SCANS:
            mine = [o for o in gc.get_objects() if type(o) is kind.cls]
            released = [o for o in mine if o.released]
            del mine
            with owners.lock:
                owners.found.update((id(o), o) for o in released)
            refs.extend(weakref.ref(o) for o in released[::2])
            for _ in range(HOLD):
                assert all(o.released for o in released), (
                    "a released object came back to life under its holder"
                )
            with owners.lock:
                for key in [id(o) for o in released]:
                    owners.found.pop(key, None)
            del released
            revived = [o for o in (r() for r in refs[-200:]) if o is not None and not o.released]
            assert not revived, "a weak reference revived a reused object"
            scans[0] += 1

    def run(i: int) -> None:
        if i == 0:
            try:
                scanner()
            finally:
                stop.set()
        else:
            work = worker(kind, pool, owners, i, 200)
            while not stop.is_set():
                work()

    errors = run_threads(run, 3, timeout=240)
    assert not errors, errors
    assert scans[0] == SCANS


def test_a_list_read_on_another_thread_never_sees_a_released_object_revive(kind: Kind) -> None:
    """One thread publishes each object it gets in a list, then clears the
    slot, releases the object and counts the release; another keeps reading
    the slot (CPython's lock-free list read) and holds what it reads until
    the publisher has released it and got the next one: the object it holds
    is then released, and stays so while it holds it."""
    pool = kind.pool()
    slot: list[Any] = [None]
    releases = [0]
    stop = threading.Event()
    checked = [0]

    def publisher() -> None:
        try:
            for _ in range(1_000_000):
                if checked[0] >= 200:
                    break
                obj = kind.get(pool)
                slot[0] = obj
                stamp(kind, obj, 1)
                slot[0] = None
                obj.release()
                del obj
                releases[0] += 1
        finally:
            stop.set()

    def reader() -> None:
        while not stop.is_set():
            obj = slot[0]
            if obj is None:
                continue
            # `obj` was published before release number `seen + 1` (or
            # before `seen`): past `seen + 2` it is released, and the
            # publisher has got another object since.
            seen = releases[0]
            while releases[0] < seen + 2 and not stop.is_set():
                pass
            if releases[0] >= seen + 2:
                checked[0] += 1
                for _ in range(HOLD // 10):
                    assert obj.released, "a released object came back to life under its holder"
            del obj

    def run(i: int) -> None:
        (publisher if i == 0 else reader)()

    with switch_interval(1e-6):
        errors = run_threads(run, 2, timeout=240)
    assert not errors, errors
    assert checked[0] > 0


def test_objects_passed_between_threads_are_never_shared(kind: Kind) -> None:
    """Objects got on one thread are released on another (and the other way
    round) while both get their own: whatever group their release offers
    them to, no get hands one out that another thread holds."""
    pool = kind.pool()
    owners = Owners()
    lanes = [queue.SimpleQueue[Any](), queue.SimpleQueue[Any]()]
    rounds = 4000

    def run(i: int) -> None:
        out, back = lanes[i], lanes[1 - i]
        done = False
        for n in range(rounds):
            obj = kind.get(pool)
            owners.got(i, obj)
            stamp(kind, obj, i)
            if n % 2:
                owners.letting_go(i, obj)
                out.put(obj)
            else:
                owners.letting_go(i, obj)
                obj.release()
            del obj
            if done:
                continue
            try:
                theirs = back.get_nowait()
            except queue.Empty:
                continue
            if theirs is None:
                done = True
                continue
            assert not theirs.released
            theirs.release()
            assert theirs.released
            del theirs
        out.put(None)
        while not done and (theirs := back.get(timeout=60)) is not None:
            theirs.release()
            del theirs

    errors = run_threads(run, 2, timeout=240)
    assert not errors, errors


def test_a_weak_reference_made_while_another_thread_reuses_never_revives(kind: Kind) -> None:
    """A thread hands each released object to another, which makes a weak
    reference to it and lets it go, racing the first thread's next gets: a
    weak reference that still answers gives a released object, never a live
    one."""
    pool = kind.pool()
    lane = queue.SimpleQueue[Any]()
    refs: list[weakref.ref[Any]] = []
    rounds = 5000

    def run(i: int) -> None:
        if i == 0:
            for n in range(rounds):
                obj = kind.get(pool)
                stamp(kind, obj, 1)
                obj.release()
                if n % 2:
                    lane.put(obj)
                del obj
            lane.put(None)
        else:
            while (obj := lane.get(timeout=60)) is not None:
                refs.append(weakref.ref(obj))
                del obj
                for r in refs[-8:]:
                    o = r()
                    if o is not None:
                        assert o.released, "a weak reference revived a reused object"
                    del o

    errors = run_threads(run, 2, timeout=240)
    assert not errors, errors
    for r in refs:
        o = r()
        assert o is None or o.released
