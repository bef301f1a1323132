"""Reuse of released ``Block`` and ``Buffer`` objects: a ``get`` after a
``release`` may hand out the same Python object with a new lease, but only an
object that nothing else holds or can reach again. A holder of a released
block never sees it come back to life as another; a weak reference never
revives a reused object; an exported block is never reused; tracking pools
reuse nothing; and threads never share one object. All of it holds on
free-threaded builds too, where each thread group keeps its own spares and
an object is reused only when ``PyUnstable_Object_IsUniquelyReferenced``
says that no other thread holds or can reach it."""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from typing import Any

import numpy as np
import pytest

from shardpool import Block, Buffer

from helpers import KINDS, Kind, run_threads


def released_objects(kind: Kind) -> int:
    """How many released objects of `kind` the garbage collector sees."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind.cls and o.released)


def assert_fresh(kind: Kind, obj: Any) -> None:
    """`obj` is a live, usable object of `kind`, just handed out."""
    assert not obj.released
    if kind.cls is Block:
        assert len(obj) == 64
        with memoryview(obj) as m:
            m[:4] = b"abcd"
            assert bytes(m[:4]) == b"abcd"
    else:
        assert len(obj) == 0
        obj.write(b"abcd")
        assert obj.getvalue() == b"abcd"


@pytest.fixture(params=KINDS, ids=repr)
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param


def test_a_released_object_still_held_is_never_handed_out_again(kind: Kind) -> None:
    pool = kind.pool()
    held = kind.get(pool)
    held.release()
    with kind.get(pool) as other:
        pass
    later = [kind.get(pool) for _ in range(4)]
    assert all(o is not held and o is not other for o in later)
    assert held.released
    assert other.released
    with pytest.raises(ValueError, match="released"):
        len(held)
    for o in later:
        assert_fresh(kind, o)
        o.release()


def test_a_released_object_comes_back_fresh(kind: Kind) -> None:
    """Whether the object is reused or new, the next get is a fresh lease; the
    released object waits, visible to the GC, released."""
    pool = kind.pool()
    for _ in range(3):
        kind.get(pool).release()
        assert released_objects(kind) == 1
        obj = kind.get(pool)
        assert released_objects(kind) == 0
        assert_fresh(kind, obj)
        obj.release()
        del obj


def test_a_spare_reached_through_the_gc_is_not_reused(kind: Kind) -> None:
    """A reference obtained without the pool (gc.get_objects) keeps the
    released object released: the next get hands out another."""
    pool = kind.pool()
    kind.get(pool).release()
    found = [o for o in gc.get_objects() if type(o) is kind.cls and o.released]
    assert len(found) == 1
    fresh = [kind.get(pool) for _ in range(3)]
    for f in found:
        assert f.released
        assert all(f is not o for o in fresh)
    for o in fresh:
        assert_fresh(kind, o)
        o.release()


def test_a_weakly_referenced_object_dies_when_let_go_and_is_never_reused(kind: Kind) -> None:
    pool = kind.pool()
    obj = kind.get(pool)
    ref = weakref.ref(obj)
    obj.release()
    del obj
    assert ref() is None, "the pool kept a weakly referenced object"
    # A weak reference made after the release: the object is dropped, not
    # reused, at the next get.
    obj = kind.get(pool)
    obj.release()
    late = weakref.ref(obj)
    del obj
    fresh = kind.get(pool)
    assert late() is None
    assert_fresh(kind, fresh)
    fresh.release()


def test_an_exported_object_is_never_reused(kind: Kind) -> None:
    """np.ndarray(buffer=...) keeps the address and a reference, no export:
    the object stays released, its memory intact, while the array lives."""
    pool = kind.pool()
    obj = kind.get(pool)
    if kind.cls is Buffer:
        obj.write(b"\x07" * 64)
        array = np.ndarray((64,), np.uint8, buffer=obj)
    else:
        array = np.ndarray((64,), np.uint8, buffer=obj)
        array[:] = 7
    obj.release()
    del obj
    others = [kind.get(pool) for _ in range(4)]
    for o in others:
        assert o is not array.base
        assert_fresh(kind, o)
        if kind.cls is Block:
            with memoryview(o) as m:
                m[:] = b"\xff" * 64
    assert array.base.released
    assert (array == 7).all(), "an exported object's memory was handed on"
    for o in others:
        o.release()


def test_a_tracking_pool_reuses_nothing(kind: Kind) -> None:
    pool = kind.pool(track=True)
    kind.get(pool).release()
    assert released_objects(kind) == 0
    obj = kind.get(pool)
    assert len(pool.outstanding()) == 1
    obj.release()
    assert pool.outstanding() == []


def test_close_and_collection_let_go_of_spares(kind: Kind) -> None:
    pool = kind.pool()
    kind.get(pool).release()
    pool.close()
    assert released_objects(kind) == 0
    pool = kind.pool()
    held = kind.get(pool)
    pool.close()
    held.release()
    del held
    assert released_objects(kind) == 0, "a closed pool kept a released object"
    pool = kind.pool()
    kind.get(pool).release()
    alive = weakref.ref(pool)
    del pool
    assert alive() is None
    assert released_objects(kind) == 0, "a spare outlived its pool"


def test_threads_never_share_an_object(kind: Kind) -> None:
    """Eight threads get, hold, check and release objects of one pool (with
    and without `with`), the GIL switching threads every few microseconds:
    no object is ever held by two of them at once."""
    pool = kind.pool()
    lock = threading.Lock()
    holders: dict[int, int] = {}
    rounds = 300

    def hold(i: int, obj: Any) -> None:
        with lock:
            assert holders.setdefault(id(obj), i) == i, "one object, two holders"
        assert not obj.released
        if kind.cls is Block:
            with memoryview(obj) as m:
                m[:] = bytes([i]) * 64
                assert bytes(m) == bytes([i]) * 64
        else:
            obj.write(bytes([i]) * 8)
            assert obj.getvalue() == bytes([i]) * 8
        with lock:
            del holders[id(obj)]

    def work(i: int) -> None:
        for n in range(rounds):
            if n % 2:
                with kind.get(pool) as obj:
                    hold(i, obj)
            else:
                obj = kind.get(pool)
                hold(i, obj)
                obj.release()
            del obj

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        errors = run_threads(work, 8)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert holders == {}


def test_an_object_held_on_another_thread_is_never_handed_out_again(kind: Kind) -> None:
    """A released object that another thread still holds (a reference that
    thread took, or a weak reference it made) is never reused, by the thread
    that released it or by the holder; once the holder lets go, gets go on
    with fresh objects."""
    pool = kind.pool()
    obj = kind.get(pool)
    obj.release()
    held: list[Any] = [obj]
    ready, done = threading.Event(), threading.Event()

    def holder() -> None:
        mine = held.pop()
        ref = weakref.ref(mine)
        ready.set()
        done.wait()
        for _ in range(50):
            with kind.get(pool) as o:
                assert o is not mine
                assert_fresh(kind, o)
        assert ref() is mine
        assert mine.released

    thread = threading.Thread(target=holder)
    thread.start()
    del obj
    ready.wait()
    for _ in range(50):
        o = kind.get(pool)
        assert all(o is not h for h in held)
        assert_fresh(kind, o)
        o.release()
        del o
    done.set()
    thread.join()
    fresh = kind.get(pool)
    assert_fresh(kind, fresh)
    fresh.release()
