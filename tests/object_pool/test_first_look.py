"""The first look at the idle objects, taken ahead of the wait loop (core
`acquire`): a rejected first object is destroyed once, its slot freed once,
and every counter balances, whatever the hooks do (return False, raise,
raise BaseException, call the same pool)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from shardpool import ObjectPool, PoolClosed, PoolTimeout

from helpers import Boom, Recorder, Thing, balanced


def rejecting(
    pool_kw: dict[str, Any] | None = None,
) -> tuple[ObjectPool[Thing], set[int], Recorder]:
    """A pool whose `validate` refuses the objects whose id is in `bad`."""
    bad: set[int] = set()
    destroy = Recorder()
    pool: ObjectPool[Thing] = ObjectPool(
        Thing, validate=lambda obj: id(obj) not in bad, destroy=destroy, **(pool_kw or {})
    )
    return pool, bad, destroy


@pytest.mark.parametrize("max_size", [None, 1, 2])
def test_a_rejected_first_object_is_destroyed_once_and_its_slot_freed_once(
    max_size: int | None,
) -> None:
    pool, bad, destroy = rejecting({"max_size": max_size})
    first = pool.get()
    pool.put(first)
    bad.add(id(first))
    second = pool.get(timeout=0)
    assert second is not first
    assert destroy.calls == [first]
    s = pool.stats()
    assert (s.created, s.destroyed, s.invalid, s.hits, s.misses, s.in_use, s.idle) == (
        2,
        1,
        1,
        0,
        2,
        1,
        0,
    )
    if max_size == 1:
        # The slot was freed once: the pool is full again, not over its bound.
        with pytest.raises(PoolTimeout):
            pool.get(timeout=0)
    pool.put(second)
    assert pool.get(timeout=0) is second
    assert balanced(pool)


def test_an_expired_first_object_at_max_size_is_replaced_in_its_slot() -> None:
    destroy = Recorder()
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1, max_lifetime=0.001, destroy=destroy)
    first = pool.get()
    pool.put(first)
    time.sleep(0.01)
    second = pool.get(timeout=0)
    assert second is not first
    assert destroy.calls == [first]
    s = pool.stats()
    assert (s.created, s.destroyed, s.expired, s.misses, s.in_use, s.waits) == (2, 1, 1, 2, 1, 0)
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    assert balanced(pool)


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("where", ["validate", "reset"])
def test_a_first_object_whose_hook_raises_is_destroyed_and_its_slot_freed(
    exc: type[BaseException], where: str
) -> None:
    raising = False
    destroy = Recorder()

    def hook(obj: Thing) -> bool:
        if raising:
            raise exc("hook")
        return True

    kw: dict[str, Any] = {where: hook}
    if where == "reset":
        kw["reset_on"] = "get"
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1, destroy=destroy, **kw)
    first = pool.get()
    pool.put(first)
    raising = True
    # An Exception from validate is logged and counted as invalid (the get
    # goes on with a new object); a BaseException reaches the caller.
    try:
        second = pool.get(timeout=0)
    except exc:
        assert exc is not Boom or where == "reset"
        raising = False
        assert destroy.calls == [first]
        s = pool.stats()
        assert (s.in_use, s.idle, s.destroyed, s.created) == (0, 0, 1, 1)
        # Its slot is free: a new object, at once.
        second = pool.get(timeout=0)
    else:
        assert (exc, where) == (Boom, "validate")
    raising = False
    assert destroy.calls == [first]
    assert second is not first
    assert pool.stats().in_use == 1
    assert balanced(pool)


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt, SystemExit])
def test_a_factory_raising_after_a_rejected_first_object_frees_both_slots(
    exc: type[BaseException],
) -> None:
    failing = False
    bad: set[int] = set()

    def factory() -> Thing:
        if failing:
            raise exc("factory")
        return Thing()

    pool: ObjectPool[Thing] = ObjectPool(factory, max_size=1, validate=lambda o: id(o) not in bad)
    first = pool.get()
    pool.put(first)
    bad.add(id(first))
    failing = True
    with pytest.raises(exc):
        pool.get(timeout=0)
    failing = False
    s = pool.stats()
    assert (s.in_use, s.idle, s.destroyed, s.invalid) == (0, 0, 1, 1)
    assert pool.get(timeout=0) is not first
    assert balanced(pool)


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt, SystemExit])
def test_a_destroy_raising_while_the_first_object_is_rejected_loses_no_slot(
    exc: type[BaseException], default_sigint: None
) -> None:
    bad: set[int] = set()

    def destroy(obj: Thing) -> None:
        raise exc("destroy")

    pool: ObjectPool[Thing] = ObjectPool(
        Thing, max_size=1, validate=lambda o: id(o) not in bad, destroy=destroy
    )
    first = pool.get()
    pool.put(first)
    bad.add(id(first))
    # What destroy raises is logged (the pool no longer holds the object).
    # A KeyboardInterrupt is also raised again as Ctrl-C is, and the get
    # looks for it after the reject: it ends there, holding nothing, rather
    # than return an object the interrupt would strand at the next bytecode
    # (the slot of a pool of one, for good).
    if exc is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt):
            pool.get(timeout=0)
        s = pool.stats()
        assert (s.in_use, s.idle, s.destroyed) == (0, 0, 1)
    second = pool.get(timeout=0)
    assert second is not first
    s = pool.stats()
    assert (s.in_use, s.idle, s.destroyed) == (1, 0, 1)
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    assert balanced(pool)


def test_a_validate_that_gets_and_puts_on_the_same_pool() -> None:
    calls = 0
    pool: ObjectPool[Thing]

    def validate(obj: Thing) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            # Re-entrant: the pool is usable from inside its own hook.
            other = pool.get(timeout=0)
            assert other is not obj
            pool.put(other)
            assert pool.stats().in_use == 0
        return calls != 1

    pool = ObjectPool(Thing, max_size=2, prefill=1, validate=validate)
    got = pool.get(timeout=0)
    pool.put(got)
    s = pool.stats()
    assert (s.in_use, s.invalid) == (0, 1)
    assert balanced(pool)
    assert s.created == s.destroyed + s.idle


def test_a_validate_that_closes_the_pool_fails_the_get_and_leaks_nothing() -> None:
    destroy = Recorder()
    pool: ObjectPool[Thing]

    def validate(obj: Thing) -> bool:
        pool.close()
        return True

    pool = ObjectPool(Thing, max_size=1, prefill=1, validate=validate, destroy=destroy)
    try:
        obj = pool.get(timeout=0)
    except PoolClosed:
        obj = None
    if obj is not None:
        pool.put(obj)  # after close: destroyed, not kept
    s = pool.stats()
    assert (s.in_use, s.idle) == (0, 0)
    assert s.created == s.destroyed == len(destroy.calls) == 1


def test_a_get_on_a_closed_pool_changes_nothing() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=1, prefill=1)
    pool.close()
    before = pool.stats().as_dict()
    with pytest.raises(PoolClosed):
        pool.get(timeout=0)
    with pytest.raises(PoolClosed):
        pool.get()
    assert pool.stats().as_dict() == before


def test_gets_racing_close_leave_the_books_balanced() -> None:
    destroy = Recorder()
    for max_size in (None, 2):
        pool: ObjectPool[Thing] = ObjectPool(
            Thing, max_size=max_size, validate=lambda o: True, destroy=destroy, shards=2
        )

        def worker(pool: ObjectPool[Thing] = pool) -> None:
            while True:
                try:
                    obj = pool.get(timeout=1)
                except PoolClosed:
                    return
                pool.put(obj)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        pool.close()
        for t in threads:
            t.join(10)
            assert not t.is_alive()
        s = pool.stats()
        assert (s.in_use, s.idle, s.waiting) == (0, 0, 0)
        assert s.created == s.destroyed


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("fail_at", [1, 3])
def test_open_destroys_what_it_made_when_the_factory_raises(
    exc: type[BaseException], fail_at: int
) -> None:
    # prefill=2 then min_size=4: the factory fails during the prefill
    # (fail_at=1) or during the min_size refill (fail_at=3).
    made: list[Thing] = []

    def factory() -> Thing:
        if len(made) == fail_at:
            raise exc("factory")
        made.append(Thing())
        return made[-1]

    destroy = Recorder()
    with pytest.raises(exc):
        ObjectPool(factory, prefill=2, min_size=4, max_size=4, destroy=destroy)
    assert sorted(map(id, destroy.calls)) == sorted(map(id, made))
    assert len(made) == fail_at


def test_resize_racing_gets_keeps_the_bound_and_the_books() -> None:
    pool: ObjectPool[Thing] = ObjectPool(Thing, max_size=2)
    problems: list[str] = []
    lock = threading.Lock()
    out = 0
    stop = threading.Event()

    def worker() -> None:
        nonlocal out
        while not stop.is_set():
            try:
                obj = pool.get(timeout=0.05)
            except PoolTimeout:
                continue
            with lock:
                out += 1
                if out > 4:
                    problems.append(f"{out} out, bound at most 4")
            with lock:
                out -= 1
            pool.put(obj)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        pool.resize(max_size=1 + i % 4)
    stop.set()
    for t in threads:
        t.join(10)
    assert not problems
    s = pool.stats()
    assert (s.in_use, s.waiting) == (0, 0)
    assert balanced(pool)
