"""A checked pool's put keeps the ledger's reference to the object instead of
a copy of the caller's (src/pool/put.rs, `Pool::put_ref`), its ledger's slots
are guarded by a hand-written flag lock (src/ledger.rs, `Lock`), and
automatic reset skips an object whose class is the one seen first without a
`reset` by one pointer comparison (src/python/hooks.rs, `no_reset`). What
would show a mistake there: an object's reference count drifting over many
puts on any path (a put refused, a reset or a check failing, the object
destroyed), a destructor that uses the pool from inside one of its calls
spinning forever on a flag its own thread holds (run in a subprocess, so
that such a hang fails the test instead of the suite), and `reset` called
for other objects than before."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from shardpool import ObjectPool, TieredPool

from helpers import Boom, Thing, run_script

ROUNDS = 500


def raising(exc: type[BaseException]) -> Callable[[object], None]:
    """A hook raising a new `exc` each time (one kept would keep its last
    traceback, and with it the object)."""

    def hook(obj: object) -> None:
        raise exc

    return hook


# A pool of `Thing`s, and the exception its put raises (None: none).
PUT_PATHS: dict[str, tuple[Callable[[], Any], type[BaseException] | None]] = {
    "checked": (lambda: ObjectPool(Thing), None),
    "unchecked": (lambda: ObjectPool(Thing, checked=False), None),
    "reset raises": (lambda: ObjectPool(Thing, reset=raising(Boom)), Boom),
    "reset raises KeyboardInterrupt": (
        lambda: ObjectPool(Thing, reset=raising(KeyboardInterrupt)),
        KeyboardInterrupt,
    ),
    "reset raises SystemExit": (lambda: ObjectPool(Thing, reset=raising(SystemExit)), SystemExit),
    "unchecked, reset raises": (
        lambda: ObjectPool(Thing, checked=False, reset=raising(Boom)),
        Boom,
    ),
    "reset on get": (lambda: ObjectPool(Thing, reset_on="get", reset=lambda obj: None), None),
    "validate fails": (lambda: ObjectPool(Thing, validate=lambda obj: False), None),
    "max_idle=0": (lambda: ObjectPool(Thing, max_idle=0), None),
    "max_idle=0, destroy": (lambda: ObjectPool(Thing, max_idle=0, destroy=lambda obj: None), None),
    "max_size": (lambda: ObjectPool(Thing, max_size=2), None),
    "tracked": (lambda: ObjectPool(Thing, track=True), None),
    "tracked, reset raises": (lambda: ObjectPool(Thing, track=True, reset=raising(Boom)), Boom),
}


@pytest.mark.parametrize("path", PUT_PATHS)
def test_a_put_on_every_path_leaves_the_objects_count_as_it_was(path: str) -> None:
    make, raised = PUT_PATHS[path]
    pool = make()
    checked = "unchecked" not in path
    for _ in range(ROUNDS):
        obj = pool.get()
        before = sys.getrefcount(obj)
        caught: type[BaseException] | None = None
        try:
            pool.put(obj)
        except BaseException as e:  # not kept: its traceback holds `obj`
            caught = type(e)
        assert caught is raised
        # One object goes round: the pool keeps it idle (a reference) or
        # destroyed it (none), and a checked pool's ledger let go of its
        # own; the caller's reference is never taken or dropped.
        kept = pool.stats().idle
        assert kept in (0, 1)
        assert sys.getrefcount(obj) == before + kept - checked, path
        del obj
    assert pool.stats().in_use == 0


def test_a_refused_put_leaves_the_objects_count_as_it_was() -> None:
    pool = ObjectPool(Thing)
    out = pool.get()
    pool.put(out)
    foreign = Thing()
    counts = (sys.getrefcount(out), sys.getrefcount(foreign))
    for _ in range(ROUNDS):
        with pytest.raises(ValueError, match="has not handed out"):
            pool.put(out)  # twice
        with pytest.raises(ValueError, match="has not handed out"):
            pool.put(foreign)  # never out
    assert (sys.getrefcount(out), sys.getrefcount(foreign)) == counts


def test_a_put_to_a_closed_pool_and_a_discard_let_go_of_the_pools_reference_only() -> None:
    for _ in range(ROUNDS // 10):
        pool = ObjectPool(Thing)
        obj = pool.get()
        held = sys.getrefcount(obj)  # the caller's, the ledger's, the call's
        pool.discard(obj)
        assert sys.getrefcount(obj) == held - 1
        with pytest.raises(ValueError, match="has not handed out"):
            pool.discard(obj)
        assert sys.getrefcount(obj) == held - 1
        obj = pool.get()
        pool.close()
        pool.put(obj)
        assert sys.getrefcount(obj) == held - 1


@pytest.mark.parametrize("checked", [True, False])
def test_a_tiered_put_leaves_the_objects_count_as_it_was(checked: bool) -> None:
    pool = TieredPool(bytearray, [8, 64], checked=checked)
    counts: set[tuple[int, int]] = set()
    for _ in range(ROUNDS):
        obj = pool.get(8)
        before = sys.getrefcount(obj)
        pool.put(obj)
        counts.add((before, sys.getrefcount(obj)))
    assert len(counts) == 1, counts


# A destructor that uses the pool its object came from, from inside the
# pool's calls that let go of objects: a lock its own thread holds then
# (a ledger slot's flag) would spin forever. Run in a subprocess, with a
# timeout, and compared with what the destructors did.
REENTRANT = textwrap.dedent(
    """
    import gc, sys
    from shardpool import ObjectPool, TieredPool

    POOL = None
    BUDGET = 0
    log = []

    class Haunt:
        def __init__(self):
            self.buddy = None
        def __del__(self):
            global BUDGET
            p = POOL
            if p is None or BUDGET <= 0:
                return
            BUDGET -= 1  # each destructor makes and destroys another
            try:
                o = p.get()
                p.put(o)
                p.stats()
                if self.buddy is not None:
                    p.put(self.buddy)
                p.clear()
                log.append("ok")
            except BaseException as e:
                log.append(type(e).__name__)

    def max_idle_0():
        global POOL
        POOL = ObjectPool(Haunt, max_idle=0)
        for _ in range(50):
            o = POOL.get(); POOL.put(o); del o

    def clear_idle():
        global POOL
        POOL = ObjectPool(Haunt)
        os = [POOL.get() for _ in range(20)]
        POOL.put_many(os)
        del os
        POOL.clear()

    def close_idle():
        global POOL
        POOL = ObjectPool(Haunt)
        os = [POOL.get() for _ in range(20)]
        POOL.put_many(os)
        del os
        POOL.close()

    def reset_raises(error=ValueError):
        global POOL
        def reset(o):
            raise error
        POOL = ObjectPool(Haunt, reset=reset)
        for _ in range(20):
            o = POOL.get()
            try:
                POOL.put(o)
            except error:
                log.append("raised")
            del o

    def reset_raises_base_exception():
        reset_raises(KeyboardInterrupt)

    def validate_fails():
        global POOL
        POOL = ObjectPool(Haunt, validate=lambda o: False)
        for _ in range(20):
            o = POOL.get(); POOL.put(o); del o

    def discard():
        global POOL
        POOL = ObjectPool(Haunt)
        for _ in range(20):
            o = POOL.get(); POOL.discard(o); del o

    def put_returns_another():
        global POOL
        POOL = ObjectPool(Haunt, max_idle=0)
        for _ in range(20):
            a = POOL.get(); a.buddy = POOL.get()
            POOL.put(a); del a

    def put_many_overflowing():
        global POOL
        POOL = ObjectPool(Haunt, max_idle=2, shards=1)
        for _ in range(20):
            os = [POOL.get() for _ in range(10)]
            POOL.put_many(os); del os

    def collected_with_objects_out():
        # The pool and the objects out (the ledger's only) in one cycle: the
        # collector clears the pool's references (its ledger's among them).
        global POOL
        class Holder:
            def make(self):
                return Haunt()
        for _ in range(5):
            h = Holder()
            h.pool = ObjectPool(h.make, shards=1)  # through its factory
            POOL = h.pool
            for _ in range(20):
                o = POOL.get(); o.holder = h; del o
            POOL = None
            del h
            gc.collect()

    class Late:
        # Made by a destructor during a collection, after the collector
        # chose what to finalize: its own destructor runs when the pool's
        # cleared ledger lets go of the object holding it.
        def __init__(self, pool):
            self.pool = pool
        def __del__(self):
            try:
                out = [self.pool.get() for _ in range(64)]  # in every slot
                self.pool.put_many(out)
                del out
                log.append("late")
            except BaseException as e:
                log.append(type(e).__name__)

    class Finalized:
        def __init__(self, holder):
            self.holder = holder
        def __del__(self):
            self.late = Late(self.holder.pool)

    def cleared_by_the_collector():
        class Holder:
            def make(self):
                return Finalized(self)
        for _ in range(5):
            h = Holder()
            h.pool = ObjectPool(h.make, shards=1)  # a cycle through its factory
            for _ in range(20):
                h.pool.get()  # out: the ledger's reference only
            del h
            gc.collect()

    def tiered():
        global POOL
        class Tiers:
            def __init__(self, t):
                self.t = t
            def get(self):
                return self.t.get(8)
            def put(self, o):
                self.t.put(o)
            def stats(self):
                return self.t.stats()
            def clear(self):
                return self.t.clear()
        t = TieredPool(lambda n: Haunt(), [(8, 0), (64, 0)], size_of=lambda o: 8)
        POOL = Tiers(t)
        for _ in range(20):
            o = t.get(8); t.put(o); del o

    scenario = globals()[sys.argv[1]]
    BUDGET = 200
    scenario()
    gc.collect()
    print(sorted(set(log)))
    """
)

SCENARIOS = {
    "max_idle_0": ["ok"],
    "clear_idle": ["ok"],
    "close_idle": ["PoolClosed"],
    "reset_raises": ["ValueError", "raised"],
    "reset_raises_base_exception": ["KeyboardInterrupt", "raised"],
    "validate_fails": ["ok"],
    "discard": ["ok"],
    "put_returns_another": ["ok"],
    "put_many_overflowing": ["ok"],
    "collected_with_objects_out": None,  # whatever the destructors could do
    "cleared_by_the_collector": ["late"],
    "tiered": ["ok"],
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_destructor_using_the_pool_from_inside_its_calls_does_not_hang(scenario: str) -> None:
    done = run_script(REENTRANT, scenario)
    assert done.returncode == 0, done.stderr
    expected = SCENARIOS[scenario]
    if expected is not None:
        assert done.stdout.strip() == repr(expected), done.stderr


def test_automatic_reset_is_called_for_the_objects_whose_class_has_one() -> None:
    """The class seen first decides for its objects; any other class is
    looked up at each put (as on main 64d1119, compared there)."""
    calls: list[tuple[str, str]] = []

    class A:
        def reset(self) -> None:
            calls.append(("A", type(self).__name__))

    class B:
        pass

    class C(A):
        pass

    class D(B):
        def reset(self) -> None:
            calls.append(("D", type(self).__name__))

    def run(
        kinds: list[type], change: Callable[[int, Any], None] | None = None
    ) -> list[tuple[str, str]]:
        calls.clear()
        made = iter(kinds)
        pool = ObjectPool(lambda: next(made)())
        out = [pool.get() for _ in kinds]
        for i, obj in enumerate(out):
            if change is not None:
                change(i, obj)
            pool.put(obj)
        out = [pool.get() for _ in kinds]
        pool.put_many(out)
        return sorted(calls)

    assert run([B, A, B, A]) == [("A", "A")] * 4
    assert run([A, B, A, B]) == [("A", "A")] * 4
    assert run([B, C]) == [("A", "C")] * 2
    assert run([B, D, B]) == [("D", "D")] * 2

    def reassign(i: int, obj: Any) -> None:
        obj.__class__ = D

    # The class seen first is B (no reset); an object of B made a D later
    # is reset as a D, at its put and the next.
    assert run([B, B], lambda i, obj: reassign(i, obj) if i == 1 else None) == [("D", "D")] * 2
    assert run([B, B], lambda i, obj: reassign(i, obj) if i == 0 else None) == [("D", "D")] * 2
