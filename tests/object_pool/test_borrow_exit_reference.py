"""A Borrow holds its pool's state (a hidden collector-tracked object,
_ObjectPoolState: the core pool, hooks, spare slots), not the Python pool
object, also as a spare, so a reused Borrow's block changes no reference
count of the pool object (src/python/borrow.rs). What would break if that
were mishandled: the pool object's count after blocks, a pool whose last
reference goes inside or before the block (the block still works, on the
state), a Borrow entered again while an exit of it runs (from its reset
hook, or from another thread), exits racing on several threads, and the
collector's view: the pool object and each Borrow out of the spare slots
show the state, the state shows its hooks and objects and what its spares
hold, each reference to the state shown once (cycles through the state:
test_borrow_state_gc.py)."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable

import pytest

from shardpool import Borrow, ObjectPool, PoolClosed

from helpers import Boom, Thing, fork, pool_state, run_threads, spare_count, state_references

# Long enough for a stuck thread to fail the test, not a timing assumption.
PATIENCE = 60.0


def test_blocks_of_every_kind_leave_the_pools_count_as_it_was() -> None:
    pool = ObjectPool(Thing, discard_on=(Boom,))
    before = sys.getrefcount(pool)
    kept = pool.borrow()
    for _ in range(100):
        with pool.borrow():  # the spare reused
            pass
        with kept:  # a named Borrow: not kept, its reference handed back
            pass
        with pool.borrow(), pool.borrow():  # two at once: one kept, one not
            pass
        with pytest.raises(ValueError, match="the block's"), pool.borrow():
            raise ValueError("the block's")
        with pytest.raises(Boom), pool.borrow():  # discarded on exit
            raise Boom
        with pool.borrow() as obj:  # discarded inside the block
            pool.discard(obj)
    del kept
    assert sys.getrefcount(pool) == before
    assert pool.stats().in_use == 0


@pytest.mark.usefixtures("no_gc")
def test_a_pool_made_for_its_block_is_freed_at_once_and_the_block_works() -> None:
    made: list[weakref.ref[ObjectPool[Thing]]] = []
    reset: list[Thing] = []

    def pool() -> ObjectPool[Thing]:
        p = ObjectPool(Thing, reset=reset.append)
        made.append(weakref.ref(p))
        return p

    for _ in range(3):
        with pool().borrow() as obj:
            # The Borrow holds the pool's state, not the pool object.
            assert made[-1]() is None
            assert isinstance(obj, Thing)
        assert reset[-1] is obj  # given back to the state's core


@pytest.mark.usefixtures("no_gc")
def test_a_borrow_made_then_its_pool_dropped_before_the_block_works() -> None:
    pool = ObjectPool(Thing)
    alive = weakref.ref(pool)
    borrow = pool.borrow()
    del pool
    assert alive() is None  # the Borrow holds the pool's state only
    got: list[Thing] = []
    for _ in range(3):
        with borrow as obj:
            got.append(obj)
    assert got[0] is got[1] is got[2]  # given back each time, and reused


@pytest.mark.usefixtures("no_gc")
def test_a_block_that_drops_the_last_other_reference_to_its_pool_ends_well() -> None:
    reset: list[Thing] = []
    pool = ObjectPool(Thing, reset=reset.append)
    alive = weakref.ref(pool)
    with pool.borrow() as obj:
        del pool  # the pool object's last reference
        assert alive() is None
    # The exit gave the object back (reset on put), to the pool's state.
    assert reset == [obj]


@pytest.mark.usefixtures("no_gc")
def test_a_collection_inside_the_exit_leaves_the_pool_the_exit_uses() -> None:
    seen: list[int] = []

    def pool_in_a_cycle() -> tuple[ObjectPool[Thing], weakref.ref[ObjectPool[Thing]]]:
        def reset(obj: Thing) -> None:
            assert cycle[0] is not None
            seen.append(gc.collect())

        cycle: list[ObjectPool[Thing] | None] = [None]
        p = ObjectPool(Thing, reset=reset)
        cycle[0] = p  # pool -> reset -> cell -> list -> pool
        return p, weakref.ref(p)

    p, alive = pool_in_a_cycle()
    with p.borrow():
        del p  # only the cycle and the block hold the pool now
    assert len(seen) == 1  # the reset ran, and the pool survived its collection
    gc.collect()
    assert alive() is None  # then collected as the cycle it is


def reentering_pool(
    kept: list[Borrow[Thing]], inner: Callable[[Borrow[Thing]], None]
) -> ObjectPool[Thing]:
    """A pool whose reset hook, at the first give-back, runs `inner` on the
    Borrow whose exit is running (the first in `kept`)."""
    calls: list[int] = []

    def reset(obj: Thing) -> None:
        calls.append(1)
        if len(calls) == 1:
            inner(kept[0])

    return ObjectPool(Thing, reset=reset)


@pytest.mark.usefixtures("no_gc")
def test_a_borrow_entered_and_exited_from_its_own_exits_reset_hook() -> None:
    kept: list[Borrow[Thing]] = []
    got: list[Thing] = []

    def inner(borrow: Borrow[Thing]) -> None:
        with borrow as obj:  # free again while its exit gives its object back
            got.append(obj)

    pool = reentering_pool(kept, inner)
    before = sys.getrefcount(pool)
    kept.append(pool.borrow())
    with kept[0] as outer:
        pass
    assert len(got) == 1
    assert got[0] is not outer  # the outer object was being reset, not idle
    assert pool.stats().in_use == 0
    assert sys.getrefcount(pool) == before  # a Borrow holds the state only
    alive = weakref.ref(pool)
    del pool
    assert alive() is None
    with kept[0] as obj:  # the Borrow still holds its pool's state
        assert isinstance(obj, Thing)
    kept.clear()
    assert alive() is None


@pytest.mark.usefixtures("no_gc")
def test_a_borrow_entered_from_its_own_exits_reset_hook_and_left_open() -> None:
    kept: list[Borrow[Thing]] = []
    got: list[Thing] = []

    def inner(borrow: Borrow[Thing]) -> None:
        got.append(borrow.__enter__())  # exited only after the outer exit ends

    pool = reentering_pool(kept, inner)
    before = sys.getrefcount(pool)
    kept.append(pool.borrow())
    with kept[0]:
        pass
    # The outer exit ended while the Borrow held an object again: the
    # Borrow owns its pool, the exit's own reference went.
    assert pool.stats().in_use == 1
    assert kept[0].__exit__(None, None, None) is False
    assert pool.stats().in_use == 0
    assert sys.getrefcount(pool) == before  # a Borrow holds the state only
    alive = weakref.ref(pool)
    del pool
    assert alive() is None
    kept.clear()


@pytest.mark.parametrize("b_outlasts_a", [True, False], ids=["b-ends-after", "b-ends-within"])
def test_a_borrow_whose_exit_runs_is_entered_by_another_thread(b_outlasts_a: bool) -> None:
    # Thread A's exit waits in the reset hook until thread B has entered the
    # same Borrow (free: A's exit took its object), and then, if B's block
    # is to end within A's exit, until it has; else B's block waits for A's
    # exit to end.
    in_exit, b_entered, a_done, b_done = (threading.Event() for _ in range(4))
    a_thread: list[int] = []

    def reset(obj: Thing) -> None:
        if threading.get_ident() == a_thread[0] and not in_exit.is_set():
            in_exit.set()
            assert b_entered.wait(PATIENCE)
            if not b_outlasts_a:
                assert b_done.wait(PATIENCE)

    pool = ObjectPool(Thing, reset=reset)
    before = sys.getrefcount(pool)
    shared = [pool.borrow()]
    held: list[Thing] = []

    def a() -> None:
        a_thread.append(threading.get_ident())
        with shared[0] as obj:
            held.append(obj)
        a_done.set()

    def b() -> None:
        assert in_exit.wait(PATIENCE)
        with shared[0] as obj:
            held.append(obj)
            b_entered.set()
            if b_outlasts_a:
                assert a_done.wait(PATIENCE)
        b_done.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE)
    assert not any(t.is_alive() for t in threads)
    assert a_done.is_set()
    assert b_done.is_set()
    assert len(held) == 2
    assert held[0] is not held[1]
    assert pool.stats().in_use == 0
    shared.clear()
    assert sys.getrefcount(pool) == before


def test_exits_racing_on_threads_over_one_named_borrow_keep_the_books() -> None:
    # Threads enter and exit one Borrow they share: an entry while another
    # thread's block holds it is refused ("already in use"), and one after
    # another's exit took its object runs while that exit gives it back
    # (the reset below gives the threads time to meet there).
    def reset(obj: Thing) -> None:
        for _ in range(50):
            pass

    pool = ObjectPool(Thing, reset=reset)
    before = sys.getrefcount(pool)
    shared = [pool.borrow()]
    blocks = [0] * 4
    refused: list[str] = []

    def work(i: int) -> None:
        for _ in range(3000):
            try:
                with shared[0] as obj:
                    assert isinstance(obj, Thing)
                    blocks[i] += 1
            except RuntimeError as e:
                refused.append(str(e))

    assert run_threads(work, 4, PATIENCE) == []
    assert sum(blocks) + len(refused) == 4 * 3000
    assert sum(blocks) > 0
    assert all("already in use" in message for message in refused)
    s = pool.stats()
    assert s.in_use == 0
    assert s.created == s.idle + s.destroyed
    assert sys.getrefcount(pool) == before  # a Borrow holds the state only
    del pool
    with shared[0] as obj:  # it holds its pool's state
        assert isinstance(obj, Thing)


def test_blocks_racing_on_threads_over_one_pool_leave_its_count_as_it_was() -> None:
    pool = ObjectPool(Thing)
    before = sys.getrefcount(pool)

    def work(i: int) -> None:
        for n in range(5000):
            if n % 7 == i:
                kept = pool.borrow()  # now and then a named one (not kept)
                with kept:
                    pass
            else:
                with pool.borrow():
                    pass

    assert run_threads(work, 4, PATIENCE) == []
    assert pool.stats().in_use == 0
    gc.collect()  # a Borrow let go on another thread may wait for it
    assert sys.getrefcount(pool) == before


def test_a_named_borrow_entered_while_another_thread_exits_it_is_refused_only_as_in_use() -> None:
    # An entry from another thread while an exit gives the object back (the
    # Borrow is free again from the exit's first step) runs, or is refused
    # as "already in use" while another block holds it; nothing else.
    pool = ObjectPool(Thing, reset=lambda obj: None)
    shared = pool.borrow()
    wrong: list[str] = []

    def work(i: int) -> None:
        for _ in range(3000):
            try:
                with shared:
                    pass
            except RuntimeError as e:
                if "already in use" not in str(e):
                    wrong.append(str(e))

    assert run_threads(work, 4, PATIENCE) == []
    assert wrong == []
    assert pool.stats().in_use == 0


@pytest.mark.usefixtures("no_gc")
@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt, SystemExit])
def test_an_exit_whose_reset_raises_leaves_the_borrow_usable(
    exc: type[BaseException],
) -> None:
    # The reset's exception (a BaseException too) ends the exit early: the
    # Borrow is free again (named) or kept as a spare, and the pool object's
    # count is as it was.
    def reset(obj: Thing) -> None:
        raise exc

    pool = ObjectPool(Thing, reset=reset)
    before = sys.getrefcount(pool)
    named = pool.borrow()
    for _ in range(50):
        with pytest.raises(exc), named:
            pass
        with pytest.raises(exc), pool.borrow():
            pass
        # The block's exception propagates, unless the reset's is not an
        # `Exception` (a BaseException stops the program as asked).
        propagated = ValueError if issubclass(exc, Exception) else exc
        with pytest.raises(propagated), named:
            raise ValueError("the block's")
    assert sys.getrefcount(pool) == before  # a Borrow holds the state only
    assert pool.stats().in_use == 0
    assert pool.stats().reset_errors == 150
    alive = weakref.ref(pool)
    del pool
    assert alive() is None
    with pytest.raises(exc), named as obj:  # it still holds its pool's state
        assert isinstance(obj, Thing)


def test_a_borrow_exited_twice_or_never_entered_is_refused_and_keeps_its_pool() -> None:
    pool = ObjectPool(Thing)
    before = sys.getrefcount(pool)
    named = pool.borrow()
    with pytest.raises(RuntimeError, match="exited without being entered"):
        named.__exit__(None, None, None)
    named.__enter__()
    assert named.__exit__(None, None, None) is False
    for _ in range(3):
        with pytest.raises(RuntimeError, match="exited without being entered"):
            named.__exit__(None, None, None)
    assert sys.getrefcount(pool) == before
    with named as obj:  # usable again
        assert isinstance(obj, Thing)
    assert pool.stats().in_use == 0
    del named
    assert sys.getrefcount(pool) == before


def test_a_borrow_entered_on_one_thread_and_exited_on_another() -> None:
    pool = ObjectPool(Thing, reset=lambda obj: None)
    before = sys.getrefcount(pool)
    shared = [pool.borrow()]
    results: list[object] = []

    def exit_there() -> None:
        results.append(shared[0].__exit__(None, None, None))

    for _ in range(100):
        obj = shared[0].__enter__()
        assert pool.stats().in_use == 1
        t = threading.Thread(target=exit_there)
        t.start()
        t.join(PATIENCE)
        assert results.pop() is False
        assert pool.stats().in_use == 0
        del obj
    shared.clear()
    gc.collect()
    assert sys.getrefcount(pool) == before


@pytest.mark.usefixtures("no_gc")
def test_a_reset_that_drops_the_last_name_of_the_exiting_borrow() -> None:
    # The exit's caller alone holds the Borrow by the end of the exit: it is
    # kept as a spare. A pool object dropped before is gone at once; the
    # block works on the state.
    names: list[Borrow[Thing]] = []

    def reset(obj: Thing) -> None:
        names.clear()

    pool = ObjectPool(Thing, reset=reset)
    before = sys.getrefcount(pool)
    for _ in range(50):
        names.append(pool.borrow())
        with names[0]:
            pass
        assert names == []
    assert sys.getrefcount(pool) == before
    assert pool.stats().in_use == 0
    alive = weakref.ref(pool)
    names.append(pool.borrow())
    del pool
    with names[0]:
        pass
    assert alive() is None  # nothing held the pool object


@pytest.mark.usefixtures("no_gc")
def test_a_reset_that_uses_other_borrows_of_the_pool_during_an_exit() -> None:
    # Another block of the same pool from inside an exit's reset: it takes
    # the spare slot first, so the exiting Borrow finds it taken and is let
    # go of; a block left open there is exited later, after the outer exit.
    open_blocks: list[Borrow[Thing]] = []
    depth = [0]

    def reset(obj: Thing) -> None:
        if depth[0]:  # not from the inner blocks, nor once draining
            return
        depth[0] += 1
        try:
            with pool.borrow():
                pass
            b = pool.borrow()
            b.__enter__()
            open_blocks.append(b)
        finally:
            depth[0] -= 1

    pool = ObjectPool(Thing, reset=reset)
    before = sys.getrefcount(pool)
    for _ in range(50):
        with pool.borrow():
            pass
        named = pool.borrow()
        with named:
            pass
        del named
    assert pool.stats().in_use == 100
    depth[0] = 1
    while open_blocks:
        assert open_blocks.pop().__exit__(None, None, None) is False
    assert pool.stats().in_use == 0
    gc.collect()
    assert sys.getrefcount(pool) == before


@pytest.mark.usefixtures("no_gc")
def test_a_pool_closed_by_the_reset_of_an_exit() -> None:
    made: list[ObjectPool[Thing]] = []

    def reset(obj: Thing) -> None:
        made[0].close()

    pool = ObjectPool(Thing, reset=reset)
    before = sys.getrefcount(pool)
    made.append(pool)
    named = pool.borrow()
    with named:
        pass
    assert pool.closed
    with pytest.raises(PoolClosed), pool.borrow():
        pass
    with pytest.raises(PoolClosed), named:
        pass
    del named
    made.clear()
    assert sys.getrefcount(pool) == before
    alive = weakref.ref(pool)
    del pool
    assert alive() is None


@pytest.mark.usefixtures("no_gc")
def test_a_collection_in_the_reset_of_an_exit_of_a_borrow_in_a_cycle() -> None:
    # The Borrow, its pool's state and the object in one cycle, collected
    # from the reset that its own exit runs; once the pool object is gone
    # the Borrow, the state's last holder, shows the state to the collector.
    collected: list[int] = []

    def reset(obj: Thing) -> None:
        collected.append(gc.collect())

    for _ in range(10):
        pool = ObjectPool(Thing, reset=reset)
        alive = weakref.ref(pool)
        b = pool.borrow()
        with b as obj:
            obj.borrow = b  # type: ignore[attr-defined]  # obj -> Borrow -> pool -> obj
            del pool, b
        del obj
        assert alive() is not None or collected  # freed by now, or collectable
        gc.collect()
        assert alive() is None


# The collector sees the pool's state from the pool object and from every
# Borrow out of the spare slots (each shows its own reference), and the
# state shows its hooks, its idle objects and what its spares hold: a state
# is freed by the collector only when every holder is garbage too.


class Marker:
    """Something a hook's closure holds, whose death shows the cycle went."""


@pytest.mark.usefixtures("no_gc")
def test_a_pool_in_a_cycle_with_its_hook_and_with_spares_is_collected() -> None:
    def make() -> tuple[ObjectPool[Thing], weakref.ref[Marker]]:
        marker = Marker()
        cell: list[object] = [None, marker]
        p = ObjectPool(Thing, reset=lambda obj: cell)
        cell[0] = p  # pool -> state -> reset -> cell -> pool
        return p, weakref.ref(marker)

    pool, marker = make()
    alive = weakref.ref(pool)
    for _ in range(3):
        with pool.borrow():  # a spare kept (with a GIL), holding the state
            pass
    del pool
    assert alive() is not None  # the cycle holds it
    gc.collect()
    assert alive() is None
    assert marker() is None


@pytest.mark.usefixtures("no_gc")
def test_a_borrow_its_pools_hook_holds_is_collected_once_the_pool_object_is_gone() -> None:
    def make() -> tuple[weakref.ref[ObjectPool[Thing]], weakref.ref[Marker]]:
        marker = Marker()
        cell: list[object] = [None, marker]
        pool = ObjectPool(Thing, reset=lambda obj: cell)
        named = pool.borrow()
        cell[0] = named  # state -> reset -> cell -> Borrow -> state
        with named, pool.borrow():  # and a spare, let go with the pool object
            pass
        return weakref.ref(pool), weakref.ref(marker)

    alive, marker_alive = make()
    assert alive() is None  # nothing held the pool object
    assert marker_alive() is not None  # the cycle through the state holds it
    gc.collect()  # the Borrow, the state's last holder, is garbage with it
    assert marker_alive() is None


@pytest.mark.usefixtures("no_gc")
def test_a_pool_in_a_cycle_is_not_collected_while_a_kept_borrow_holds_its_state() -> None:
    resets: list[ObjectPool[Thing]] = []

    def make() -> ObjectPool[Thing]:
        cell: list[ObjectPool[Thing]] = []
        p = ObjectPool(Thing, reset=lambda obj: resets.append(cell[0]))
        cell.append(p)  # pool -> state -> reset -> cell -> pool
        return p

    pool = make()
    alive = weakref.ref(pool)
    kept = pool.borrow()
    del pool
    gc.collect()  # the Borrow, outside the cycle, keeps the state and so the cycle
    assert alive() is not None
    with kept as obj:
        assert isinstance(obj, Thing)
    assert resets == [alive()]  # the reset ran, its pool intact
    resets.clear()
    del kept
    gc.collect()
    assert alive() is None


def test_the_pool_and_its_borrows_show_the_state_and_the_state_shows_the_hooks() -> None:
    def reset(obj: Thing) -> None:
        pass

    pool = ObjectPool(Thing, reset=reset)
    box = [pool_state(pool)]  # held in no variable: see state_references
    assert gc.is_tracked(box[0])
    # The pool object shows its state only; the state, its hooks.
    assert box[0] in gc.get_referents(pool)
    assert reset not in gc.get_referents(pool)
    assert reset in gc.get_referents(box[0])
    assert state_references(box) == (2, 2)  # the pool object, the box
    with pool.borrow() as obj:
        assert state_references(box) == (3, 3)  # and the Borrow in the block
    assert spare_count(box[0]) == 1
    assert obj in gc.get_referents(box[0])  # idle, in the state
    assert state_references(box) == (3, 3)  # the state shows the spare's
    kept = pool.borrow()  # the spare, out of its slot, shows its own
    assert box[0] in gc.get_referents(kept)
    assert spare_count(box[0]) == 0
    assert state_references(box) == (3, 3)
    with pool.borrow(), pool.borrow():  # two more, both kept as spares
        assert state_references(box) == (5, 5)
    assert spare_count(box[0]) == 2
    assert state_references(box) == (5, 5)
    alive = weakref.ref(pool)
    del pool  # its slots closed: the spares go
    assert alive() is None
    assert state_references(box) == (2, 2)  # the box and the kept Borrow
    assert reset in gc.get_referents(box[0])  # the state works on
    with kept as again:
        assert isinstance(again, Thing)


def test_pool_objects_dropped_while_other_threads_run_blocks_on_their_state() -> None:
    # Thread 0 makes pools, hands each to the others through a list and
    # drops its own reference at once, and collects now and then (the
    # traversal reads the state's holders while blocks come and go); the
    # others run blocks on whichever pool is current, some on a Borrow
    # whose pool object they let go of first, so pool objects are freed
    # (their spare slots closed) while blocks exit and offer their Borrows
    # on other threads. Nothing crashes or strands a thread, and every pool
    # object is freed in the end.
    current: list[ObjectPool[Thing] | None] = [None]
    made: list[weakref.ref[ObjectPool[Thing]]] = []
    done = threading.Event()
    blocks = [0, 0, 0]

    def work(i: int) -> None:
        if i == 0:
            try:
                for n in range(300):
                    pool = ObjectPool(Thing, reset=lambda obj: None)
                    made.append(weakref.ref(pool))
                    current[0] = pool
                    del pool
                    if n % 50 == 0:
                        gc.collect()
                    for _ in range(200):
                        pass
                current[0] = None
            finally:
                done.set()
            return
        while not done.is_set():
            pool = current[0]
            if pool is None:
                continue
            borrow = pool.borrow()
            with pool.borrow():
                pass
            del pool  # the next block runs on the state only, now and then
            with borrow as obj:
                assert isinstance(obj, Thing)
            del borrow
            blocks[i] += 2

    assert run_threads(work, 3, PATIENCE) == []
    assert blocks[1] > 0 or blocks[2] > 0
    current[0] = None
    gc.collect()
    assert all(ref() is None for ref in made)


def test_a_child_forked_while_another_thread_exits_a_borrow_uses_that_borrow() -> None:
    # The fork copies a Borrow whose exit (on a thread the child does not
    # have) is in its reset and will never end there: the child enters that
    # Borrow (free again once its exit took the object) and uses the pool.
    in_reset, forked = threading.Event(), threading.Event()
    exiter: list[int] = []

    def reset(obj: Thing) -> None:
        if threading.get_ident() in exiter and not in_reset.is_set():
            in_reset.set()
            assert forked.wait(PATIENCE)

    pool = ObjectPool(Thing, reset=reset, max_size=3, timeout=PATIENCE)
    named = pool.borrow()

    def exit_in_thread() -> None:
        exiter.append(threading.get_ident())
        with named:
            pass

    thread = threading.Thread(target=exit_in_thread, daemon=True)
    thread.start()
    assert in_reset.wait(PATIENCE)
    pid = fork()
    if pid == 0:  # pragma: no cover - the child's result is its exit code
        code = 1
        try:
            signal.alarm(int(PATIENCE))  # a hang fails the test, not the run
            with named as obj:
                assert isinstance(obj, Thing)
            for _ in range(5):
                with pool.borrow():
                    pass
            code = 0 if pool.stats().in_use == 0 else 2
        finally:
            os._exit(code)
    forked.set()
    thread.join(PATIENCE)
    assert not thread.is_alive()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    s = pool.stats()
    assert (s.in_use, s.idle) == (0, 1)
